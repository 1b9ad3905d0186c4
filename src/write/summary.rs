//! `summary.html`: one self-contained page (inline CSS and SVG, no network fetches) with the
//! run's totals and, per account, a table and small charts of daily minutes and cost.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use polars::prelude::*;

use crate::rate::units_to_decimal;
use crate::time::format_date;

/// The run-wide figures shown at the top.
pub struct Headline {
    pub records_read: u64,
    pub legs: u64,
    pub interactions: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub billed_seconds: i64,
    pub rated_cost_units: i64,
    pub cost_units: i64,
    pub reseller_cost_units: i64,
    pub tz: String,
    pub rounding: String,
}

/// One account's day, from the daily report.
struct Day {
    date: String,
    legs: i64,
    answered: i64,
    minutes: f64,
    cost_units: i64,
}

/// Accounts shown with a section of their own; the rest are summed in one line.
const MAX_ACCOUNTS: usize = 200;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn group_digits(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A small bar chart, one bar per day.
fn bars(title: &str, days: &[(String, f64)], color: &str, label: impl Fn(f64) -> String) -> String {
    let (w, h, pad) = (500.0f64, 150.0f64, 24.0f64);
    let max = days.iter().map(|d| d.1).fold(0.0f64, f64::max).max(1e-9);
    let slot = (w - 2.0 * pad) / days.len().max(1) as f64;
    let bw = (slot * 0.7).clamp(2.0, 60.0);
    let mut s = format!(
        r##"<figure><figcaption>{}</figcaption><svg role="img" aria-label="{}" viewBox="0 0 {w} {h}" width="{w}" height="{h}"><line x1="{pad}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#999"/>"##,
        esc(title),
        esc(title),
        y0 = h - pad,
        x1 = w - pad
    );
    for (i, (date, v)) in days.iter().enumerate() {
        let bh = (v / max) * (h - 2.5 * pad);
        let x = pad + slot * i as f64 + (slot - bw) / 2.0;
        let y = h - pad - bh;
        let _ = write!(
            s,
            r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="{color}"><title>{}: {}</title></rect>"#,
            esc(date),
            esc(&label(*v))
        );
        if days.len() <= 16 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"#,
                x + bw / 2.0,
                h - pad + 12.0,
                esc(date.get(5..).unwrap_or(date))
            );
        }
    }
    let _ = write!(
        s,
        r#"<text x="{pad}" y="12" font-size="10">max {}</text></svg></figure>"#,
        esc(&label(max))
    );
    s
}

/// Renders the page from the headline figures and the daily report.
pub fn render(h: &Headline, daily: &DataFrame) -> PolarsResult<String> {
    let acct = daily.column("account_id")?.str()?;
    let date = daily.column("date")?.date()?.physical().clone();
    let legs = daily.column("legs")?.cast(&DataType::Int64)?;
    let legs = legs.i64()?;
    let ans = daily.column("answered_legs")?.cast(&DataType::Int64)?;
    let ans = ans.i64()?;
    let mins = daily.column("minutes_of_use")?.cast(&DataType::Float64)?;
    let mins = mins.f64()?;
    let cost = daily.column("cost_units")?.cast(&DataType::Int64)?;
    let cost = cost.i64()?;
    let mut accounts: BTreeMap<String, Vec<Day>> = BTreeMap::new();
    for i in 0..daily.height() {
        accounts
            .entry(acct.get(i).unwrap_or("_unassigned").to_owned())
            .or_default()
            .push(Day {
                date: date
                    .get(i)
                    .map_or_else(|| "no date".to_owned(), format_date),
                legs: legs.get(i).unwrap_or(0),
                answered: ans.get(i).unwrap_or(0),
                minutes: mins.get(i).unwrap_or(0.0),
                cost_units: cost.get(i).unwrap_or(0),
            });
    }
    let mut ranked: Vec<(String, Vec<Day>)> = accounts.into_iter().collect();
    ranked.sort_by_key(|(a, days)| (-days.iter().map(|d| d.cost_units).sum::<i64>(), a.clone()));

    let mut s = String::with_capacity(64 * 1024);
    s.push_str(r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>rerate summary</title><meta name="viewport" content="width=device-width, initial-scale=1"><style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.6em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left}.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:140px}.card b{display:block;font-size:1.3em}
.charts{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{font-size:.9em;color:#555}
</style></head><body><h1>rerate summary</h1>"#);
    let _ = write!(
        s,
        r#"<p>Report day in <b>{}</b>, rounding <b>{}</b>. Money in currency (units / 10,000).</p><div class="cards" id="totals">"#,
        esc(&h.tz),
        esc(&h.rounding)
    );
    let cards = [
        ("Records read", group_digits(h.records_read as i64)),
        ("Legs", group_digits(h.legs as i64)),
        ("Interactions", group_digits(h.interactions as i64)),
        ("Rejected", group_digits(h.rejected as i64)),
        ("Duplicates dropped", group_digits(h.duplicates as i64)),
        (
            "Billed minutes",
            format!("{:.1}", h.billed_seconds as f64 / 60.0),
        ),
        ("Rated cost", units_to_decimal(h.rated_cost_units)),
        ("Customer cost", units_to_decimal(h.cost_units)),
        ("Reseller cost", units_to_decimal(h.reseller_cost_units)),
    ];
    for (k, v) in cards {
        let _ = write!(s, r#"<div class="card">{}<b>{}</b></div>"#, esc(k), esc(&v));
    }
    s.push_str("</div>");

    let shown = ranked.len().min(MAX_ACCOUNTS);
    for (account, days) in &ranked[..shown] {
        let total: i64 = days.iter().map(|d| d.cost_units).sum();
        let _ = write!(
            s,
            r#"<section class="account"><h2>Account {} — {}</h2><div class="charts">"#,
            esc(account),
            esc(&units_to_decimal(total))
        );
        let m: Vec<(String, f64)> = days.iter().map(|d| (d.date.clone(), d.minutes)).collect();
        let c: Vec<(String, f64)> = days
            .iter()
            .map(|d| (d.date.clone(), d.cost_units as f64))
            .collect();
        s.push_str(&bars("Minutes of use per day", &m, "#3b6fb6", |v| {
            format!("{v:.1} min")
        }));
        s.push_str(&bars("Customer cost per day", &c, "#d9822b", |v| {
            units_to_decimal(v.round() as i64)
        }));
        s.push_str("</div><table><tr><th>Day</th><th>Legs</th><th>Answered</th><th>ASR</th><th>Minutes</th><th>Cost</th></tr>");
        for d in days {
            let asr = if d.legs > 0 {
                100.0 * d.answered as f64 / d.legs as f64
            } else {
                0.0
            };
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{asr:.1}%</td><td>{:.1}</td><td>{}</td></tr>",
                esc(&d.date),
                group_digits(d.legs),
                group_digits(d.answered),
                d.minutes,
                esc(&units_to_decimal(d.cost_units))
            );
        }
        s.push_str("</table></section>");
    }
    if ranked.len() > shown {
        let rest: i64 = ranked[shown..]
            .iter()
            .flat_map(|(_, d)| d.iter().map(|d| d.cost_units))
            .sum();
        let _ = write!(
            s,
            "<p>{} more accounts, {} in all: see the daily report.</p>",
            ranked.len() - shown,
            esc(&units_to_decimal(rest))
        );
    }
    s.push_str("</body></html>\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_grouping() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(group_digits(1_234_567), "1,234,567");
        assert_eq!(group_digits(-999), "-999");
    }
}
