//! `summary.html`: one self-contained page (inline CSS and SVG, no network fetches) that finance
//! can sign: the period, inputs, options and rerate version; the run's totals with unpriced legs
//! counted beside the priced money; the costliest accounts charted; daily totals over every day
//! of the period; the reconciliation by class; and a sorted table of every account. It prints on
//! A4. The page is a minijinja template (`templates/summary.html`, auto-escaped as HTML) filled
//! from the manifest and the `daily` and `reconciliation_daily` reports.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use polars::prelude::*;
use serde::Serialize;

use crate::time::format_date;
use crate::words::{bytes, count, minutes, money, thousands};
use crate::write::manifest::Manifest;

const TEMPLATE: &str = include_str!("templates/summary.html");

/// Accounts shown in the chart; the table has them all.
const TOP_ACCOUNTS: usize = 15;

/// What the page shows besides the run's own figures.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// The currency's name (`--currency`); KAZOO's rate documents carry none.
    pub currency: Option<String>,
    /// Account names by account_id (`--account-names`).
    pub account_names: HashMap<String, String>,
}

/// Reads `--account-names FILE`: `account_id,name` rows (a header row naming `account_id` is
/// skipped), with the `csv` crate. Errors name the file and line.
pub fn read_account_names(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .map_err(|e| anyhow::anyhow!("reading --account-names {}: {e}", path.display()))?;
    let mut names = HashMap::new();
    for (i, row) in rdr.records().enumerate() {
        let row = row.map_err(|e| anyhow::anyhow!("--account-names {}: {e}", path.display()))?;
        let line = row.position().map_or(i as u64 + 1, |p| p.line());
        let (Some(id), Some(name)) = (row.get(0), row.get(1)) else {
            anyhow::bail!(
                "--account-names {}, line {line}: expected account_id,name",
                path.display()
            );
        };
        let id = id.trim().trim_start_matches('\u{feff}');
        if i == 0 && id.eq_ignore_ascii_case("account_id") {
            continue;
        }
        names.insert(id.to_owned(), name.trim().to_owned());
    }
    Ok(names)
}

/// One account-day of the daily report.
struct Day {
    account: String,
    date: Option<i32>,
    legs: i64,
    answered: i64,
    billing_seconds: i64,
    cost_units: Option<i64>,
    unpriced: i64,
}

fn i64_col(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<i64>>> {
    match df.column(name) {
        Ok(c) => Ok(c.cast(&DataType::Int64)?.i64()?.to_vec()),
        Err(_) => Ok(vec![None; df.height()]),
    }
}

fn days_of(daily: &DataFrame) -> PolarsResult<Vec<Day>> {
    let acct = daily.column("account_id")?.str()?.clone();
    let date = daily.column("date")?.date()?.physical().clone();
    let legs = i64_col(daily, "legs")?;
    let ans = i64_col(daily, "answered_legs")?;
    let secs = i64_col(daily, "billing_seconds")?;
    let cost = i64_col(daily, "cost_units")?;
    let unpriced = i64_col(daily, "unpriced_legs")?;
    Ok((0..daily.height())
        .map(|i| Day {
            account: acct.get(i).unwrap_or("_unassigned").to_owned(),
            date: date.get(i),
            legs: legs[i].unwrap_or(0),
            answered: ans[i].unwrap_or(0),
            billing_seconds: secs[i].unwrap_or(0),
            cost_units: cost[i],
            unpriced: unpriced[i].unwrap_or(0),
        })
        .collect())
}

#[derive(Default)]
struct Account {
    legs: i64,
    billing_seconds: i64,
    cost_units: i64,
    unpriced: i64,
    recorded: Option<i64>,
    derived: Option<i64>,
    delta: Option<i64>,
}

#[derive(Serialize)]
struct Card {
    label: &'static str,
    value: String,
    note: String,
    warn: bool,
}

#[derive(Serialize)]
struct AccountRow {
    id: String,
    name: String,
    legs: String,
    minutes: String,
    cost: String,
    unpriced: String,
    recorded: String,
    derived: String,
    delta: String,
}

#[derive(Serialize)]
struct TopBar {
    label: String,
    value: String,
    y: f64,
    w: f64,
}

#[derive(Serialize)]
struct DayBar {
    date: String,
    legs: String,
    cost: String,
    tick: String,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

#[derive(Serialize)]
struct DayRow {
    date: String,
    legs: String,
    answered: String,
    minutes: String,
    cost: String,
    unpriced: String,
}

#[derive(Serialize)]
struct ClassRow {
    class: String,
    meaning: String,
    legs: String,
}

/// The reconciliation classes, in the order `reconcile` tries them, with what each means.
const CLASSES: &[(&str, &str)] = &[
    (
        "unrated",
        "a per_minute leg without a rate (KAZOO bills it 0)",
    ),
    (
        "billing_type",
        "money recorded on a leg that is not per_minute, or none on one that is",
    ),
    ("rate_mismatch", "the leg's rate differs from the deck's"),
    (
        "rounding",
        "within 1 unit: KAZOO's double arithmetic against exact",
    ),
    ("mismatch", "recorded and derived money differ"),
];

/// Renders the page. `daily`: the daily report; `recon_daily`: reconciliation_daily, if run.
pub fn render(
    m: &Manifest,
    daily: &DataFrame,
    recon_daily: Option<&DataFrame>,
    labels: &Labels,
) -> anyhow::Result<String> {
    let days = days_of(daily)?;
    let deck = m.options.get("rates").is_some_and(|v| !v.is_null());
    let opt = |k: &str| -> String {
        match m.options.get(k) {
            None | Some(serde_json::Value::Null) => "none".to_owned(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        }
    };

    // Accounts: the daily report's sums, and reconciliation_daily's recorded and derived money.
    let mut accounts: BTreeMap<String, Account> = BTreeMap::new();
    for d in &days {
        let a = accounts.entry(d.account.clone()).or_default();
        a.legs += d.legs;
        a.billing_seconds += d.billing_seconds;
        a.cost_units += d.cost_units.unwrap_or(0);
        a.unpriced += d.unpriced;
    }
    if let Some(r) = recon_daily {
        let acct = r.column("account_id")?.str()?.clone();
        let rec = i64_col(r, "recorded_cost_units")?;
        let der = i64_col(r, "derived_cost_units")?;
        let del = i64_col(r, "delta_units")?;
        for i in 0..r.height() {
            let a = accounts
                .entry(acct.get(i).unwrap_or("_unassigned").to_owned())
                .or_default();
            let add = |x: Option<i64>, y: Option<i64>| Some(x.unwrap_or(0) + y.unwrap_or(0));
            a.recorded = add(a.recorded, rec[i]);
            a.derived = add(a.derived, der[i]);
            a.delta = add(a.delta, del[i]);
        }
    }
    let mut ranked: Vec<(String, Account)> = accounts.into_iter().collect();
    ranked.sort_by(|(ia, a), (ib, b)| (b.cost_units, b.legs, ia).cmp(&(a.cost_units, a.legs, ib)));
    let opt_money = |v: Option<i64>| v.map_or_else(|| "—".to_owned(), money);
    let rows: Vec<AccountRow> = ranked
        .iter()
        .map(|(id, a)| AccountRow {
            id: id.clone(),
            name: labels.account_names.get(id).cloned().unwrap_or_default(),
            legs: thousands(a.legs),
            minutes: minutes(a.billing_seconds),
            cost: money(a.cost_units),
            unpriced: thousands(a.unpriced),
            recorded: opt_money(a.recorded),
            derived: opt_money(a.derived),
            delta: opt_money(a.delta),
        })
        .collect();
    let sum = |f: &dyn Fn(&Account) -> Option<i64>| -> Option<i64> {
        ranked
            .iter()
            .map(|(_, a)| f(a))
            .reduce(|x, y| match (x, y) {
                (None, None) => None,
                (x, y) => Some(x.unwrap_or(0) + y.unwrap_or(0)),
            })?
    };
    let total = AccountRow {
        id: String::new(),
        name: String::new(),
        legs: thousands(sum(&|a| Some(a.legs)).unwrap_or(0)),
        minutes: minutes(sum(&|a| Some(a.billing_seconds)).unwrap_or(0)),
        cost: money(sum(&|a| Some(a.cost_units)).unwrap_or(0)),
        unpriced: thousands(sum(&|a| Some(a.unpriced)).unwrap_or(0)),
        recorded: opt_money(sum(&|a| a.recorded)),
        derived: opt_money(sum(&|a| a.derived)),
        delta: opt_money(sum(&|a| a.delta)),
    };

    // The top accounts' chart.
    let (label_w, bar_w) = (190.0f64, 420.0f64);
    let top: Vec<&(String, Account)> = ranked
        .iter()
        .filter(|(_, a)| a.cost_units > 0)
        .take(TOP_ACCOUNTS)
        .collect();
    let top_max = top
        .iter()
        .map(|(_, a)| a.cost_units)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let top_bars: Vec<TopBar> = top
        .iter()
        .enumerate()
        .map(|(i, (id, a))| {
            let name = labels.account_names.get(id);
            let mut label = name.cloned().unwrap_or_else(|| id.clone());
            if label.chars().count() > 34 {
                label = label.chars().take(33).collect::<String>() + "…";
            }
            TopBar {
                label,
                value: money(a.cost_units),
                y: 4.0 + 17.0 * i as f64,
                w: (a.cost_units as f64 / top_max * bar_w).max(1.0),
            }
        })
        .collect();

    // Every day of the period, days without legs included.
    let dated: Vec<i32> = days.iter().filter_map(|d| d.date).collect();
    let (first, last) = (dated.iter().min().copied(), dated.iter().max().copied());
    let mut per_day: BTreeMap<i32, (i64, i64, i64, i64, i64)> = BTreeMap::new();
    if let (Some(f), Some(l)) = (first, last) {
        for day in f..=l {
            per_day.insert(day, (0, 0, 0, 0, 0));
        }
    }
    for d in &days {
        if let Some(e) = d.date.and_then(|k| per_day.get_mut(&k)) {
            e.0 += d.legs;
            e.1 += d.answered;
            e.2 += d.billing_seconds;
            e.3 += d.cost_units.unwrap_or(0);
            e.4 += d.unpriced;
        }
    }
    let (cw, ch, pad) = (700.0f64, 170.0f64, 24.0f64);
    let n = per_day.len().max(1) as f64;
    let slot = (cw - 2.0 * pad) / n;
    let bw = (slot * 0.8).clamp(0.5, 40.0);
    let day_max = per_day.values().map(|v| v.3).max().unwrap_or(0).max(1) as f64;
    let tick_every = (per_day.len() / 12).max(1);
    let base = ch - pad;
    let day_bars: Vec<DayBar> = per_day
        .iter()
        .enumerate()
        .map(|(i, (day, v))| {
            let h = v.3.max(0) as f64 / day_max * (ch - 2.2 * pad);
            let date = format_date(*day);
            DayBar {
                tick: if i % tick_every == 0 {
                    date.get(5..).unwrap_or(&date).to_owned()
                } else {
                    String::new()
                },
                date,
                legs: thousands(v.0),
                cost: money(v.3),
                x: pad + slot * i as f64 + (slot - bw) / 2.0,
                y: base - h,
                w: bw,
                h,
            }
        })
        .collect();
    let day_rows: Vec<DayRow> = per_day
        .iter()
        .map(|(day, v)| DayRow {
            date: format_date(*day),
            legs: thousands(v.0),
            answered: thousands(v.1),
            minutes: minutes(v.2),
            cost: money(v.3),
            unpriced: thousands(v.4),
        })
        .collect();

    // Reconciliation by class.
    let r = &m.reconciliation;
    // Every class reported, the customer's in the order they are tried, then the reseller's.
    let order = |c: &str| {
        let base = c.strip_prefix("reseller_").unwrap_or(c);
        let i = CLASSES
            .iter()
            .position(|(k, _)| *k == base)
            .unwrap_or(CLASSES.len());
        (c.starts_with("reseller_"), i, c.to_owned())
    };
    let mut classes: Vec<(&&str, &u64)> = r.by_class.iter().filter(|(_, n)| **n > 0).collect();
    classes.sort_by_key(|(c, _)| order(c));
    let recon_rows: Vec<ClassRow> = classes
        .into_iter()
        .map(|(class, n)| {
            let base = class.strip_prefix("reseller_").unwrap_or(class);
            let meaning = CLASSES
                .iter()
                .find(|(k, _)| *k == base)
                .map_or("", |(_, m)| *m);
            ClassRow {
                class: class.to_string(),
                meaning: if class.starts_with("reseller_") {
                    format!("the reseller's money: {meaning}")
                } else {
                    meaning.to_owned()
                },
                legs: thousands(*n as i64),
            }
        })
        .collect();
    let intro = match (deck, r.rows) {
        (true, 0) => format!(
            "Every leg agrees with the rate deck {}.",
            opt("rates")
        ),
        (true, _) => format!(
            "Legs whose money KAZOO recorded differs from what the rate deck {} derives, by class (the reconciliation/ table lists each).",
            opt("rates")
        ),
        (false, 0) => "No rate deck was given (--rates): nothing to reconcile against a deck, and no leg's recorded money differs from its own rate.".to_owned(),
        (false, _) => "No rate deck was given (--rates): legs whose recorded money differs from their own rate, by class.".to_owned(),
    };

    // Cards.
    let t = &m.totals;
    let c = &m.counts;
    let priced = c.legs_written.saturating_sub(t.unpriced_legs);
    let cards = vec![
        Card {
            label: "Legs",
            value: thousands(c.legs_written as i64),
            note: format!("{} interactions", thousands(m.interactions as i64)),
            warn: false,
        },
        Card {
            label: "Minutes of use",
            value: minutes(t.billing_seconds),
            note: format!("{} billed", minutes(t.billed_seconds)),
            warn: false,
        },
        Card {
            label: "Customer cost",
            value: money(t.cost_units),
            note: format!("over {}", count(priced, "priced leg", "priced legs")),
            warn: false,
        },
        Card {
            label: "Unpriced legs",
            value: thousands(t.unpriced_legs as i64),
            note: if t.unpriced_legs > 0 {
                "no rate: not in the cost above".to_owned()
            } else {
                "every leg priced".to_owned()
            },
            warn: t.unpriced_legs > 0,
        },
        Card {
            label: "Reseller cost",
            value: money(t.reseller_cost_units),
            note: format!("rated {}", money(t.rated_cost_units)),
            warn: false,
        },
        Card {
            label: "Rejected records",
            value: thousands(c.rejected as i64),
            note: format!(
                "of {} read; {} duplicates dropped",
                thousands(c.records_read as i64),
                thousands(c.dedup.duplicates_dropped as i64)
            ),
            warn: c.rejected > 0,
        },
    ];

    let input_bytes: u64 = m.inputs.iter().map(|f| f.input.bytes).sum();
    let names: Vec<String> = m
        .inputs
        .iter()
        .take(12)
        .map(|f| f.input.display.clone())
        .collect();
    let options: Vec<(&str, String)> = vec![
        ("Mode", opt("mode")),
        ("Rate deck", opt("rates")),
        ("Ratedeck map", opt("ratedeck_map")),
        ("Rounding", opt("rounding")),
        ("Report time zone", opt("tz")),
        ("Format", opt("format")),
        ("Own reports", opt("queries")),
    ];
    let period = serde_json::json!({
        "first": first.map_or_else(|| "none".to_owned(), format_date),
        "last": last.map_or_else(|| "none".to_owned(), format_date),
        "days": per_day.len(),
        "tz": opt("tz"),
    });
    let mut env = minijinja::Environment::new();
    env.add_template("summary.html", TEMPLATE)?;
    let html = env.get_template("summary.html")?.render(minijinja::context! {
        version => m.rerate_version,
        period => period,
        currency => labels.currency,
        currency_label => labels.currency.clone().unwrap_or_else(|| "currency units".to_owned()),
        deck => deck,
        cards => cards,
        inputs => serde_json::json!({
            "count": m.inputs.len(),
            "bytes": bytes(input_bytes),
            "names": names,
            "more": m.inputs.len().saturating_sub(names.len()),
        }),
        options => options,
        counts => format!(
            "{} read, {} written, {} rejected, {} duplicates dropped",
            thousands(c.records_read as i64),
            thousands(c.legs_written as i64),
            thousands(c.rejected as i64),
            thousands(c.dedup.duplicates_dropped as i64)
        ),
        top => serde_json::json!({
            "bars": top_bars,
            "label_w": label_w,
            "width": label_w + bar_w + 80.0,
            "height": 8.0 + 17.0 * top_bars.len() as f64,
        }),
        daily => serde_json::json!({
            "bars": day_bars,
            "rows": day_rows,
            "width": cw,
            "height": ch,
            "pad": pad,
            "base": base,
            "max": money(day_max as i64),
        }),
        recon => serde_json::json!({
            "rows": recon_rows,
            "intro": intro,
            "total": thousands(r.rows as i64),
            "delta": money(r.total_delta_units),
        }),
        billed_minutes => minutes(t.billed_seconds),
        names => !labels.account_names.is_empty(),
        accounts => rows,
        total => total,
    })?;
    Ok(html)
}
