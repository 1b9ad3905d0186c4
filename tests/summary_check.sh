#!/usr/bin/env bash
# Opens a run's summary.html in headless Chromium (Debian's package), with the network closed,
# and checks the rendered page: its totals, one table row per account, the top accounts' chart,
# one bar and one row per day of the period (per month beyond 92 days) with each stretch of two
# or more without legs collapsed into one row; then prints it to PDF on A4 and checks the first
# page is the headline (period, totals, recorded money, reconciliation) and the page count is the
# one README.md states for CASE. Saves a screenshot for a person to look at.
#
# usage: tests/summary_check.sh OUT_DIR [SCREENSHOT.png] [CASE]
#   CASE: the first cell of the README's "A4 pages" table row to check the page count against.
set -euo pipefail
out=$(cd "$1" && pwd)
shot=${2:-$out/summary.png}
case_name=${3:-}
if ! command -v chromium >/dev/null || ! command -v pdftotext >/dev/null; then
    apt-get update -qq >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils >/dev/null
fi
profile=$(mktemp -d)
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$profile"
       --proxy-server=127.0.0.1:9 --proxy-bypass-list='<-loopback>')
dom=$(chromium "${flags[@]}" --dump-dom "file://$out/summary.html" 2>/dev/null)
chromium "${flags[@]}" --window-size=1200,1600 --screenshot="$shot" "file://$out/summary.html" >/dev/null 2>&1
pdf="${shot%.png}.pdf"
chromium "${flags[@]}" --no-pdf-header-footer --print-to-pdf="$pdf" "file://$out/summary.html" >/dev/null 2>&1
rm -rf "$profile"

# How many times a string occurs in the page (0 is a count, not a failure).
n() { { grep -o -- "$1" <<<"$dom" || true; } | wc -l; }
accounts=$(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(len({p['account_id'] for p in m['partitions_written'] if p['table']=='legs'}))" "$out/manifest.json")
rows=$(n '<tr class="account">')
# Every day of a period up to 92 days, else every month of it (src/write/summary.rs DAILY_MAX_DAYS);
# a stretch of two or more without legs is one row ("gap") and one dashed mark, a lone one its own
# row. Worked out here from the manifest's partitions, apart from rerate's code.
read -r unit want_bars want_gaps <<<"$(python3 -c "
import json,sys,datetime as dt
m=json.load(open(sys.argv[1]))
d=sorted({p['date'] for p in m['partitions_written'] if p['table']=='legs' and p['date'] and p['date'][0].isdigit()})
if not d: print('day 0 0'); sys.exit()
a,b=dt.date.fromisoformat(d[0]),dt.date.fromisoformat(d[-1])
by_month=(b-a).days+1 > 92
key=(lambda x: x.year*12+x.month-1) if by_month else (lambda x: x.toordinal())
full={key(dt.date.fromisoformat(x)) for x in d}
ks=list(range(key(a), key(b)+1))
bars=gaps=i=0
while i < len(ks):
    j=i
    while j < len(ks) and ks[j] not in full: j+=1
    if j-i >= 2: gaps+=1; i=j
    else: bars+=1; i+=1
print('month' if by_month else 'day', bars, gaps)" "$out/manifest.json")"
bars=$(n '<rect class="bar"')
periods=$(n "<rect class=\"$unit\"")
period_rows=$(n "<tr class=\"$unit")
gap_rows=$(n '<tr class="gap"')
gap_marks=$(n '<line class="gap"')
[ "$rows" -eq "$accounts" ] || { echo "summary.html: $rows account rows, expected $accounts"; exit 1; }
[ "$bars" -gt 0 ] && [ "$bars" -le 15 ] || { echo "summary.html: $bars top-account bars, expected 1 to 15"; exit 1; }
[ "$periods" -eq "$want_bars" ] && [ "$period_rows" -eq "$want_bars" ] ||
    { echo "summary.html: $periods $unit bars and $period_rows rows, expected $want_bars"; exit 1; }
[ "$gap_rows" -eq "$want_gaps" ] && [ "$gap_marks" -eq "$want_gaps" ] ||
    { echo "summary.html: $gap_rows collapsed rows and $gap_marks marks, expected $want_gaps"; exit 1; }
if [ "$unit" = month ]; then grep -q 'id="by-month"' <<<"$dom" || { echo "summary.html: by month without saying so"; exit 1; }; fi
grep -q 'id="totals"' <<<"$dom" || { echo "summary.html: no totals"; exit 1; }
grep -q 'Period <b>' <<<"$dom" || { echo "summary.html: no period"; exit 1; }
[ -s "$shot" ] || { echo "no screenshot written"; exit 1; }

# Printed on A4: the first page is the headline finance signs, the tables follow.
pages=$(pdfinfo "$pdf" | awk '/^Pages:/ {print $2}')
first=$(pdftotext -f 1 -l 1 "$pdf" - | tr -s ' \n' ' ')
for want in "rerate summary" "Period" "Legs" "Customer cost" "Unpriced legs" "Recorded by KAZOO" "Reconciliation"; do
    grep -qF "$want" <<<"$first" || { echo "summary.pdf: the first page lacks '$want'"; exit 1; }
done
for not in "Top accounts by customer cost" "Inputs"; do
    ! grep -qF "$not" <<<"$first" || { echo "summary.pdf: '$not' is on the first page, which is the headline's"; exit 1; }
done
if [ -n "$case_name" ]; then
    # The README's table: | CASE | command | pages |
    stated=$(awk -F'|' -v c="$case_name" '$2 ~ c && $4 ~ /^ *[0-9]+ *$/ {gsub(/ /, "", $4); print $4; exit}' \
        "$(dirname "$0")/../README.md")
    [ -n "$stated" ] || { echo "README.md states no A4 page count for '$case_name'"; exit 1; }
    [ "$pages" -eq "$stated" ] ||
        { echo "summary.pdf ($case_name): $pages A4 pages, README.md says $stated"; exit 1; }
fi
echo "summary.html renders in $(chromium --version): $rows account rows, $bars top-account bars, $periods ${unit}s, $gap_rows collapsed; $pages A4 pages ($pdf); screenshot $shot"
