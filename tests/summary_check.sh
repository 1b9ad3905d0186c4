#!/usr/bin/env bash
# Opens a run's summary.html in headless Chromium (Debian's package), with the network closed,
# checks the rendered page has its totals and one chart section per account, and saves a
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

accounts=$(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(len({p['account_id'] for p in m['partitions'] if p['table']=='legs'}))" "$out/manifest.json")
sections=$(grep -o '<section class="account">' <<<"$dom" | wc -l)
bars=$(grep -o '<rect class="bar"' <<<"$dom" | wc -l)
[ "$sections" -eq "$accounts" ] || { echo "summary.html: $sections account sections, expected $accounts"; exit 1; }
[ "$bars" -gt 0 ] || { echo "summary.html: no chart bars rendered"; exit 1; }
grep -q 'id="totals"' <<<"$dom" || { echo "summary.html: no totals"; exit 1; }
[ -s "$shot" ] || { echo "no screenshot written"; exit 1; }
echo "summary.html renders in $(chromium --version): $sections accounts, $bars bars; screenshot $shot"
