#!/usr/bin/env bash
# Opens a run's summary.html in headless Chromium (Debian's package), with the network closed,
# checks the rendered page has its totals, one table row per account, the top accounts' chart
# and one bar per day of the period, and saves a screenshot for a person to look at.
#
# usage: tests/summary_check.sh OUT_DIR [SCREENSHOT.png]
set -euo pipefail
out=$(cd "$1" && pwd)
shot=${2:-$out/summary.png}
if ! command -v chromium >/dev/null; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
profile=$(mktemp -d)
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$profile"
       --proxy-server=127.0.0.1:9 --proxy-bypass-list='<-loopback>')
dom=$(chromium "${flags[@]}" --dump-dom "file://$out/summary.html" 2>/dev/null)
chromium "${flags[@]}" --window-size=1200,1600 --screenshot="$shot" "file://$out/summary.html" >/dev/null 2>&1
rm -rf "$profile"

accounts=$(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(len({p['account_id'] for p in m['partitions'] if p['table']=='legs'}))" "$out/manifest.json")
rows=$(grep -o '<tr class="account">' <<<"$dom" | wc -l)
bars=$(grep -o '<rect class="bar"' <<<"$dom" | wc -l)
days=$(grep -o '<rect class="day"' <<<"$dom" | wc -l)
want_days=$(python3 -c "
import json,sys,datetime as dt
m=json.load(open(sys.argv[1]))
d=sorted({p['date'] for p in m['partitions'] if p['table']=='legs' and p['date']})
print((dt.date.fromisoformat(d[-1])-dt.date.fromisoformat(d[0])).days+1 if d else 0)" "$out/manifest.json")
[ "$rows" -eq "$accounts" ] || { echo "summary.html: $rows account rows, expected $accounts"; exit 1; }
[ "$bars" -gt 0 ] && [ "$bars" -le 15 ] || { echo "summary.html: $bars top-account bars, expected 1 to 15"; exit 1; }
[ "$days" -eq "$want_days" ] || { echo "summary.html: $days day bars, expected every day of the period ($want_days)"; exit 1; }
grep -q 'id="totals"' <<<"$dom" || { echo "summary.html: no totals"; exit 1; }
grep -q 'Period <b>' <<<"$dom" || { echo "summary.html: no period"; exit 1; }
[ -s "$shot" ] || { echo "no screenshot written"; exit 1; }
echo "summary.html renders in $(chromium --version): $rows account rows, $bars top-account bars, $days days; screenshot $shot"
