#!/usr/bin/env bash
# Side by side on the same generated corpus and threads: `rerate run` against the same job written
# by an analyst in DuckDB (benches/duckdb_job.py), polars (benches/polars_job.py: lazy
# scan_ndjson, partitioned sink) and chdb, embedded ClickHouse (benches/chdb_job.py; skipped,
# saying so, where it does not install). Each writes the legs partitioned by account_id/date as
# Parquet with every field, the daily totals and the interactions. benches/check_outputs.py reads
# every output back and checks they hold the same legs, billed seconds, rated and charged cost
# units and account_id/date partitions; then the script prints wall time, CPU time and peak RSS
# of each, and the ratios. The outputs are deleted at the end (--keep keeps them).
#
# usage: benches/compare.sh [--legs N] [--accounts N] [--days N] [--skew uniform|zipf:S]
#                           [--threads N] [--corpus DIR] [--engines rerate,duckdb,polars,chdb]
#                           [--repeat N] [--smoke] [--keep]
#        benches/compare.sh LEGS [THREADS]     (the older form: 50 accounts x 7 days)
#   --legs 200000 --accounts 300 --days 7 --skew uniform --threads 2 by default.
#   --corpus DIR: the corpus to use; generated there with the shape flags if DIR does not exist
#     (default $WORK/corpus-<legs>-<accounts>x<days>[-<skew>]).
#   --repeat N: N rounds, each engine once a round in turn; each engine's best run (least wall
#     time) is compared, its median shown beside it (other work on a shared machine slows some).
#   --smoke: 2,000 legs over 20 accounts x 2 days with the debug binary, checks the totals agree
#     and prints no ratios (timings that small mean nothing).
#   env: RERATE (the binary; default target/release/rerate, built if missing), WORK (default
#     target/compare), VENV (default target/bench-venv: a Python venv made and filled with the
#     pinned duckdb, polars and chdb on first use). Needs python3 with venv and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."

DUCKDB=duckdb==2.0.0 POLARS=polars==2.1.0 CHDB=chdb==4.4.0
LEGS=200000 ACCOUNTS=300 DAYS=7 SKEW=uniform THREADS=2 CORPUS= ENGINES=rerate,duckdb,polars,chdb
SMOKE= KEEP= REPEAT=1
if [[ ${1:-} =~ ^[0-9]+$ ]]; then LEGS=$1 ACCOUNTS=50 THREADS=${2:-2}; shift $(($# < 2 ? $# : 2)); fi
while [ $# -gt 0 ]; do
    case $1 in
        --legs) LEGS=$2; shift 2 ;;
        --accounts) ACCOUNTS=$2; shift 2 ;;
        --days) DAYS=$2; shift 2 ;;
        --skew) SKEW=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --corpus) CORPUS=$2; shift 2 ;;
        --engines) ENGINES=$2; shift 2 ;;
        --smoke) SMOKE=1 LEGS=2000 ACCOUNTS=20 DAYS=2; shift ;;
        --keep) KEEP=1; shift ;;
        --repeat) REPEAT=$2; shift 2 ;;
        *) echo "compare.sh: unknown argument $1 (see the usage at the top of the script)" >&2; exit 2 ;;
    esac
done
WORK=${WORK:-target/compare}
VENV=${VENV:-target/bench-venv}
if [ -n "$SMOKE" ]; then BIN=${RERATE:-target/debug/rerate}; else BIN=${RERATE:-target/release/rerate}; fi
if [ ! -x "$BIN" ]; then
    if [ -n "$SMOKE" ]; then cargo build; else cargo build --release; fi
fi
command -v /usr/bin/time >/dev/null || { echo "compare.sh needs GNU time (apt-get install time)" >&2; exit 2; }

# Python engines in a venv of their own, pinned (a stock Debian python refuses `pip install`
# outside one); chdb is optional.
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
PY=$VENV/bin/python
pip_quiet() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }
"$PY" -c 'import duckdb, polars' 2>/dev/null || pip_quiet "$DUCKDB" "$POLARS"
if [[ ,$ENGINES, == *,chdb,* ]] && ! "$PY" -c 'import chdb' 2>/dev/null; then
    if ! pip_quiet "$CHDB"; then
        echo "chdb ($CHDB) does not install here: skipped"
        ENGINES=$(echo ",$ENGINES," | sed 's/,chdb,/,/; s/^,//; s/,$//')
    fi
fi

mkdir -p "$WORK"
if [ -z "$CORPUS" ]; then
    CORPUS="$WORK/corpus-$LEGS-${ACCOUNTS}x$DAYS"
    [ "$SKEW" = uniform ] || CORPUS="$CORPUS-${SKEW//:/}"
fi
if [ ! -d "$CORPUS" ]; then
    # Generated aside and renamed: a corpus directory is whole or absent, also to a second
    # script sharing the corpora.
    rm -rf "$CORPUS.tmp.$$"
    "$BIN" gen --legs "$LEGS" --accounts "$ACCOUNTS" --days "$DAYS" --account-skew "$SKEW" \
        --out "$CORPUS.tmp.$$"
    mv -T "$CORPUS.tmp.$$" "$CORPUS"
fi
# Every engine reads the corpus from the page cache.
cat "$CORPUS"/*.ndjson > /dev/null

# The previous outputs are moved aside now and deleted at the end: ext4 passes over the inodes of
# files deleted in the last minutes when it creates new ones, and with thousands of files just
# deleted, creating the next run's thousands cost rerate seconds of system time.
TRASH="$WORK/trash.$$"
mkdir -p "$TRASH"
for e in rerate duckdb polars chdb; do
    for d in "$e-out" "$e-out.tmp"; do [ ! -e "$WORK/$d" ] || mv "$WORK/$d" "$TRASH/"; done
done
cleanup() {
    rm -rf "$TRASH"
    if [ -z "$KEEP" ]; then
        for e in rerate duckdb polars chdb; do rm -rf "$WORK/$e-out" "$WORK/$e-out.tmp"; done
    fi
}
trap cleanup EXIT

run_engine() { # name round: runs it under GNU time into $WORK/<name>-out
    local name=$1 round=$2 out=$WORK/$1-out
    [ ! -e "$out" ] || mv "$out" "$TRASH/$name-out.$round"
    local cmd
    case $name in
        rerate) cmd=("$BIN" run "$CORPUS" --out "$out" -q --threads "$THREADS") ;;
        duckdb | chdb) cmd=("$PY" "benches/${name}_job.py" "$CORPUS" "$out" "$THREADS") ;;
        polars) cmd=(env POLARS_MAX_THREADS="$THREADS" "$PY" benches/polars_job.py "$CORPUS" "$out" "$THREADS") ;;
        *) echo "compare.sh: unknown engine $name" >&2; exit 2 ;;
    esac
    # The machine's load when the engine starts: other work on it slows every engine.
    cut -d' ' -f1 /proc/loadavg > "$WORK/$name.$round.load"
    /usr/bin/time -v "${cmd[@]}" > "$WORK/$name.out" 2> "$WORK/$name.$round.time" || {
        echo "$name failed:"; tail -20 "$WORK/$name.$round.time"; exit 1
    }
    rm -rf "$out.tmp"
}

IFS=, read -r -a ENGINE_LIST <<< "$ENGINES"
rm -f "$WORK"/*.time "$WORK"/*.load
for round in $(seq "$REPEAT"); do
    for e in "${ENGINE_LIST[@]}"; do run_engine "$e" "$round"; done
done
OUTS=()
for e in "${ENGINE_LIST[@]}"; do OUTS+=("$e=$WORK/$e-out"); done
TOTALS=$("$PY" benches/check_outputs.py "${OUTS[@]}")

# The commit the binary was built from, if not HEAD's: COMMIT=... benches/compare.sh
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
"$PY" - "$WORK" "$TOTALS" "$SMOKE" "$COMMIT" "$CORPUS" "$LEGS" "$ACCOUNTS" "$DAYS" "$SKEW" "$THREADS" \
    "$REPEAT" "${ENGINE_LIST[@]}" <<'PY'
import json, statistics, sys, time
work, totals, smoke, commit, corpus, legs, accounts, days, skew, threads, repeat, *engines = sys.argv[1:]
totals = json.loads(totals)
print(f"{corpus}: {totals['legs']:,} legs in {totals['partitions']:,} account/day partitions, "
      f"{threads} threads; the same totals from {', '.join(engines)}: "
      f"{totals['billed_seconds']:,} billed seconds, {totals['rated_cost_units']:,} rated units, "
      f"{totals['cost_units']:,} cost units")
if smoke:
    sys.exit(0)

def measure(name, round):
    t = {}
    for line in open(f"{work}/{name}.{round}.time"):
        k, _, v = line.strip().rpartition(": ")
        t[k] = v
    clock = [float(p) for p in t["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")]
    return {"wall_s": sum(p * 60 ** i for i, p in enumerate(reversed(clock))),
            "user_s": float(t["User time (seconds)"]), "sys_s": float(t["System time (seconds)"]),
            "peak_mb": int(t["Maximum resident set size (kbytes)"]) / 1024,
            "load": float(open(f"{work}/{name}.{round}.load").read())}

runs = {e: [measure(e, r) for r in range(1, int(repeat) + 1)] for e in engines}
# Each engine's best run, with the median wall time and every run's beside it.
m = {e: dict(min(rs, key=lambda x: x["wall_s"]), runs=rs,
             median_wall_s=statistics.median(x["wall_s"] for x in rs))
     for e, rs in runs.items()}
print(f"best of {repeat} run(s) of each:")
print(f"{'':8} {'wall s':>8} {'median':>8} {'user s':>8} {'sys s':>8} {'peak MB':>8} {'load':>5}  rerate is")
for e in engines:
    x = m[e]
    ratio = ""
    if e != "rerate" and "rerate" in m:
        ratio = (f"{x['wall_s'] / m['rerate']['wall_s']:.2f}x as fast, "
                 f"{m['rerate']['peak_mb'] / x['peak_mb']:.0%} of the memory")
    print(f"{e:8} {x['wall_s']:8.1f} {x['median_wall_s']:8.1f} {x['user_s']:8.1f} {x['sys_s']:8.1f} {x['peak_mb']:8.0f} "
          f"{x['load']:5.1f}  {ratio}")
peers = [e for e in ("duckdb", "polars") if e in m]
if "rerate" in m and peers:
    fast = min(peers, key=lambda e: m[e]["wall_s"])
    small = min(peers, key=lambda e: m[e]["peak_mb"])
    speed = m[fast]["wall_s"] / m["rerate"]["wall_s"]
    mem = m["rerate"]["peak_mb"] / m[small]["peak_mb"]
    print(f"against the faster of DuckDB and polars ({fast}): {speed:.2f}x "
          f"(target 1.5x: {'met' if speed >= 1.5 else 'not met'}); "
          f"against the smaller peak ({small}): {mem:.0%} (target 50%: {'met' if mem <= 0.5 else 'not met'})")
with open(f"{work}/results.jsonl", "a") as f:
    f.write(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit,
                        "corpus": corpus, "legs": int(legs), "accounts": int(accounts),
                        "days": int(days), "skew": skew, "threads": int(threads), "repeat": int(repeat),
                        "totals": totals, "engines": m}) + "\n")
PY
