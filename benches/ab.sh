#!/usr/bin/env bash
# Two rerate binaries on the same input, interleaved (A, B, A, B, ...) so that the machine's
# drift hits both alike: for each run its wall time, CPU time (user + system), peak RSS and the
# manifest's stages (`stages_ms`: read and parse, dedup, write), then each figure's median per
# binary. For a change's cost: build the old commit's binary aside, then
#
#   target/release/rerate gen --legs 200000 --accounts 300 --days 7 --files 8 --out target/perf-corpus
#   benches/ab.sh OLD_BINARY target/release/rerate target/perf-corpus [ROUNDS] [THREADS]
#
# Each run writes a new output folder (deleted after), so every run is a first run.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: benches/ab.sh BINARY_A BINARY_B INPUT [ROUNDS=5] [THREADS=2]" >&2
    exit 2
fi
a=$1 b=$2 input=$3 rounds=${4:-5} threads=${5:-2}
out=$(mktemp -d)
rows=$(mktemp)
trap 'rm -rf "$out" "$rows"' EXIT
for round in $(seq 1 "$rounds"); do
    for who in A B; do
        bin=$a
        [ "$who" = B ] && bin=$b
        rm -rf "$out/run"
        sync
        /usr/bin/time -f "%e %U %S %M" -o "$out/time" "$bin" run "$input" --out "$out/run" \
            --threads "$threads" -q
        python3 - "$who" "$round" "$out/time" "$out/run/manifest.json" >>"$rows" <<'EOF'
import json, sys
who, rnd, time_file, manifest = sys.argv[1:]
wall, user, sys_, rss = open(time_file).read().split()[-4:]
stages = json.load(open(manifest))["stages_ms"]
print(json.dumps({"who": who, "round": int(rnd), "wall_s": float(wall),
                  "cpu_s": round(float(user) + float(sys_), 2), "rss_mb": int(rss) // 1024,
                  "read_parse_ms": stages.get("2_read_parse"), "dedup_ms": stages.get("3_dedup"),
                  "write_ms": stages.get("7_write")}))
EOF
        tail -1 "$rows"
    done
done
python3 - "$rows" "$a" "$b" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = {"A": sys.argv[2], "B": sys.argv[3]}
keys = ["wall_s", "cpu_s", "rss_mb", "read_parse_ms", "dedup_ms", "write_ms"]
print("median of each figure:")
print("  " + " ".join(f"{k:>14}" for k in ["binary"] + keys))
for who in "AB":
    med = [statistics.median(r[k] for r in rows if r["who"] == who) for k in keys]
    print(f"  {who:>14} " + " ".join(f"{m:>14}" for m in med) + f"   {names[who]}")
EOF
