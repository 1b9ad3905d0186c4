#!/usr/bin/env bash
# Opens a run's summary.html in headless Chromium (Debian's package), with the network closed,
# checks the rendered page has its totals, one table row per account, the top accounts' chart
# and one bar and one row per day of the period (per month beyond 92 days), and saves a
# screenshot for a person to look at.
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

accounts=$(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(len({p['account_id'] for p in m['partitions_written'] if p['table']=='legs'}))" "$out/manifest.json")
rows=$(grep -o '<tr class="account">' <<<"$dom" | wc -l)
# Every day of a period up to 92 days, else every month of it (src/write/summary.rs DAILY_MAX_DAYS).
read -r unit want_bars <<<"$(python3 -c "
import json,sys,datetime as dt
m=json.load(open(sys.argv[1]))
d=sorted({p['date'] for p in m['partitions_written'] if p['table']=='legs' and p['date'] and p['date'][0].isdigit()})
if not d: print('day 0'); sys.exit()
a,b=dt.date.fromisoformat(d[0]),dt.date.fromisoformat(d[-1])
days=(b-a).days+1
print('day', days) if days <= 92 else print('month', (b.year*12+b.month)-(a.year*12+a.month)+1)" "$out/manifest.json")"
bars=$(grep -o '<rect class="bar"' <<<"$dom" | wc -l)
periods=$(grep -o "<rect class=\"$unit\"" <<<"$dom" | wc -l)
period_rows=$(grep -o "<tr class=\"$unit" <<<"$dom" | wc -l)
[ "$rows" -eq "$accounts" ] || { echo "summary.html: $rows account rows, expected $accounts"; exit 1; }
[ "$bars" -gt 0 ] && [ "$bars" -le 15 ] || { echo "summary.html: $bars top-account bars, expected 1 to 15"; exit 1; }
[ "$periods" -eq "$want_bars" ] && [ "$period_rows" -eq "$want_bars" ] ||
    { echo "summary.html: $periods $unit bars and $period_rows rows, expected every $unit of the period ($want_bars)"; exit 1; }
if [ "$unit" = month ]; then grep -q 'id="by-month"' <<<"$dom" || { echo "summary.html: by month without saying so"; exit 1; }; fi
grep -q 'id="totals"' <<<"$dom" || { echo "summary.html: no totals"; exit 1; }
grep -q 'Period <b>' <<<"$dom" || { echo "summary.html: no period"; exit 1; }
[ -s "$shot" ] || { echo "no screenshot written"; exit 1; }
echo "summary.html renders in $(chromium --version): $rows account rows, $bars top-account bars, $periods ${unit}s; screenshot $shot"
