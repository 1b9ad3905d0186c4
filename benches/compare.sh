#!/usr/bin/env bash
# Side by side on the same files and threads: `rerate run` against the same job written in DuckDB
# (benches/duckdb_job.py). Checks both give the same legs, billed_seconds, rated_cost_units and
# cost_units, then prints wall time, peak RSS and the ratios.
#
# usage: benches/compare.sh [LEGS=200000] [THREADS=2]
#   env: RERATE (binary, default target/release/rerate, built if missing), WORK (default target/compare)
set -euo pipefail
cd "$(dirname "$0")/.."
LEGS=${1:-200000}
THREADS=${2:-2}
WORK=${WORK:-target/compare}
BIN=${RERATE:-target/release/rerate}
[ -x "$BIN" ] || cargo build --release
python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install --quiet duckdb==2.0.0
mkdir -p "$WORK"
CORPUS="$WORK/corpus-$LEGS"
[ -d "$CORPUS" ] || "$BIN" gen --legs "$LEGS" --accounts 50 --days 7 --files 8 --out "$CORPUS"
# The previous outputs are moved aside now and deleted at the end: ext4 passes over the inodes of
# files deleted in the last minutes when it creates new ones, and with thousands of files just
# deleted, creating the next run's thousands cost rerate seconds of system time.
TRASH="$WORK/trash.$$"
mkdir -p "$TRASH"
for d in rerate-out duckdb-out duckdb-out.tmp; do [ ! -e "$WORK/$d" ] || mv "$WORK/$d" "$TRASH/"; done
trap 'rm -rf "$TRASH"' EXIT

measure() { # name, command...: runs it under /usr/bin/time -v, keeps stdout in $WORK/<name>.out
    local name=$1; shift
    /usr/bin/time -v "$@" > "$WORK/$name.out" 2> "$WORK/$name.time"
    local wall rss
    wall=$(grep "Elapsed (wall" "$WORK/$name.time" | awk '{print $NF}')
    rss=$(grep "Maximum resident" "$WORK/$name.time" | awk '{print $NF}')
    echo "$name $wall $rss"
}

R=$(measure rerate "$BIN" run "$CORPUS" --out "$WORK/rerate-out" -q --threads "$THREADS" --mode replace-all)
D=$(measure duckdb python3 benches/duckdb_job.py "$CORPUS" "$WORK/duckdb-out" "$THREADS")

python3 - "$WORK" "$R" "$D" "$LEGS" "$THREADS" <<'PY'
import json, sys
work, r, d, legs, threads = sys.argv[1:]
def secs(t):
    parts = [float(p) for p in t.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
_, rw, rk = r.split(); _, dw, dk = d.split()
m = json.load(open(f"{work}/rerate-out/manifest.json"))
mine = {"legs": m["counts"]["legs_written"], "billed_seconds": m["totals"]["billed_seconds"],
        "rated_cost_units": m["totals"]["rated_cost_units"], "cost_units": m["totals"]["cost_units"]}
theirs = json.load(open(f"{work}/duckdb.out"))
assert mine == theirs, f"the totals differ: rerate {mine}, duckdb {theirs}"
print(f"{legs} legs, {threads} threads; same totals: {mine}")
print(f"{'':8} {'wall s':>8} {'peak RSS MB':>12}")
print(f"{'rerate':8} {secs(rw):8.1f} {int(rk) / 1024:12.0f}")
print(f"{'duckdb':8} {secs(dw):8.1f} {int(dk) / 1024:12.0f}")
print(f"rerate is {secs(dw) / secs(rw):.1f}x faster and uses {int(rk) / int(dk):.0%} of DuckDB's memory")
PY
