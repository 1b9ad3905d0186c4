//! `summary.html`: one self-contained page (inline CSS and SVG, no network fetches) that finance
//! can sign: the period, inputs, options and rerate version; the run's totals with unpriced legs
//! counted beside the priced money; the costliest accounts charted; the totals of every day of
//! the period (of every month beyond [`DAILY_MAX_DAYS`]); the reconciliation by class; and a
//! sorted table of every account with recorded and derived money. It prints on A4. The page is
//! a minijinja template (`templates/summary.html`, auto-escaped as HTML) filled from the
//! manifest and the `daily` and `reconciliation_daily` reports (the latter as computed, before
//! a run without a deck drops its rows of zeros).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use polars::prelude::*;
use serde::Serialize;

use crate::time::{format_date, format_month, month_of};
use crate::words::{bytes, count, minutes, money, plural, thousands};
use crate::write::manifest::Manifest;

const TEMPLATE: &str = include_str!("templates/summary.html");

/// Why a leg is unpriced (its cost null): a crossbar CSV or listing leg without a deck rate.
pub(crate) const UNPRICED_WHY: &str = "crossbar CSV or listing legs without a deck rate: their export has the rate but no increment or minimum, flag no_deck_rate";

/// Accounts shown in the chart; the table has them all.
const TOP_ACCOUNTS: usize = 15;

/// What the page shows besides the run's own figures.
#[derive(Debug, Clone, Default)]
pub(crate) struct Labels {
    /// The currency's name (`--currency`); KAZOO's rate documents carry none.
    pub currency: Option<String>,
    /// Account names by account_id (`--account-names`).
    pub account_names: HashMap<String, String>,
}

/// Reads `--account-names FILE`: `account_id,name` rows (a header row naming `account_id` is
/// skipped), with the `csv` crate. Errors name the file and line.
pub(crate) fn read_account_names(path: &Path) -> anyhow::Result<HashMap<String, String>> {
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

/// Whether the run has legs and none of them is priced: its money is then `—` (nothing was
/// priced), not 0. The legs are those of the partitions written (this run's and those a merge
/// kept), of which the unpriced legs are a part.
pub(crate) fn none_priced(m: &Manifest) -> bool {
    let legs = m.counts.legs_in_written_partitions;
    legs > 0 && m.totals.unpriced_legs >= legs
}

/// What the minutes of use and the billed minutes each sum, in words: `45.9 of use (...), 35.8
/// billed (...)`. Minutes of use are every leg's `billing_seconds` / 60; billed minutes are the
/// priced legs' `billed_seconds` / 60 (after KAZOO's increments, minimums and no-charge time),
/// so with unpriced legs the two cover different legs, and the priced legs' use is given beside.
pub(crate) fn minutes_words(m: &Manifest) -> String {
    let t = &m.totals;
    // The totals are over the partitions written: this run's legs and those a merge kept.
    let legs = m.counts.legs_in_written_partitions;
    let priced = legs.saturating_sub(t.unpriced_legs);
    let after = "after increments, minimums and no-charge time";
    if none_priced(m) {
        return format!(
            "{} of use (billing seconds of all {}), none billed: no leg is priced",
            minutes(t.billing_seconds),
            count(legs, "leg", "legs"),
        );
    }
    if t.unpriced_legs == 0 {
        return format!(
            "{} of use (billing seconds of {}), {} billed ({after})",
            minutes(t.billing_seconds),
            count(legs, "leg", "legs"),
            minutes(t.billed_seconds),
        );
    }
    format!(
        "{} of use (billing seconds of all {}), {} billed on the {} ({after}; their use: {}); the {} ({} of use) {} not billed",
        minutes(t.billing_seconds),
        count(legs, "leg", "legs"),
        minutes(t.billed_seconds),
        count(priced, "priced leg", "priced legs"),
        minutes(t.billing_seconds - t.unpriced_billing_seconds),
        count(t.unpriced_legs, "unpriced leg", "unpriced legs"),
        minutes(t.unpriced_billing_seconds),
        plural(t.unpriced_legs, "is", "are"),
    )
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

/// The longest period, in days, whose every day the page lists; a longer one is shown by month
/// (a quarter of daily rows prints on two A4 pages; 13 years of days would take a hundred).
pub(crate) const DAILY_MAX_DAYS: i64 = 92;

/// The totals of one day or one month of the period.
#[derive(Default)]
struct Bucket {
    /// `YYYY-MM-DD`, or `YYYY-MM` by month.
    label: String,
    /// The chart's axis label: `MM-DD`, or `YYYY-MM`.
    tick: String,
    legs: i64,
    answered: i64,
    billing_seconds: i64,
    cost_units: i64,
    unpriced: i64,
}

impl Bucket {
    fn add(&mut self, d: &Day) {
        self.legs += d.legs;
        self.answered += d.answered;
        self.billing_seconds += d.billing_seconds;
        self.cost_units += d.cost_units.unwrap_or(0);
        self.unpriced += d.unpriced;
    }
}

/// The period of the daily report: first and last report day, and its totals for every day of
/// it (days without legs included) or, beyond [`DAILY_MAX_DAYS`], for every month of it.
struct Period {
    first: Option<i32>,
    last: Option<i32>,
    /// Days from first to last, both included.
    days: i64,
    by_month: bool,
    buckets: Vec<Bucket>,
    /// Legs with no report day (`date=__HIVE_DEFAULT_PARTITION__`: no time at all).
    undated: Bucket,
}

impl Period {
    fn of(days: &[Day]) -> Period {
        let dated = days.iter().filter_map(|d| d.date);
        let (first, last) = (dated.clone().min(), dated.max());
        let span = match (first, last) {
            (Some(f), Some(l)) => i64::from(l) - i64::from(f) + 1,
            _ => 0,
        };
        let by_month = span > DAILY_MAX_DAYS;
        // Each bucket's key: the day, or its month number.
        let key = |day: i32| if by_month { month_of(day) } else { Some(day) };
        let mut buckets: BTreeMap<i32, Bucket> = BTreeMap::new();
        if let (Some(f), Some(l)) = (first.and_then(key), last.and_then(key)) {
            for k in f..=l {
                let (label, tick) = if by_month {
                    (format_month(k), format_month(k))
                } else {
                    let date = format_date(k);
                    let tick = date.get(5..).unwrap_or(&date).to_owned();
                    (date, tick)
                };
                buckets.insert(
                    k,
                    Bucket {
                        label,
                        tick,
                        ..Bucket::default()
                    },
                );
            }
        }
        let mut undated = Bucket {
            label: "no time".to_owned(),
            ..Bucket::default()
        };
        for d in days {
            match d.date.and_then(key).and_then(|k| buckets.get_mut(&k)) {
                Some(b) => b.add(d),
                None => undated.add(d),
            }
        }
        Period {
            first,
            last,
            days: span,
            by_month,
            buckets: buckets.into_values().collect(),
            undated,
        }
    }
}

/// One row of the period's table and one slot of its chart: a day or month, or a stretch of two
/// or more consecutive ones without legs, collapsed into one row (13 years of months with legs in
/// three of them print as five rows, not 161).
enum Shown<'a> {
    Bucket(&'a Bucket),
    /// The first and last bucket of the stretch, and how many it spans.
    Empty(&'a Bucket, &'a Bucket, usize),
}

impl Period {
    /// The buckets as the page shows them: every bucket with legs, a lone empty one as itself,
    /// and each stretch of empty ones as one [`Shown::Empty`].
    fn shown(&self) -> Vec<Shown<'_>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.buckets.len() {
            let run = self.buckets[i..].iter().take_while(|b| b.legs == 0).count();
            if run >= 2 {
                out.push(Shown::Empty(
                    &self.buckets[i],
                    &self.buckets[i + run - 1],
                    run,
                ));
                i += run;
            } else {
                out.push(Shown::Bucket(&self.buckets[i]));
                i += 1;
            }
        }
        out
    }
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
    /// `day` or `month`; `gap` for a collapsed stretch, drawn as a marker, not a bar.
    class: &'static str,
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
    /// The row's class: `day`, `month`, or `gap` for a collapsed stretch without legs.
    class: &'static str,
    date: String,
    legs: String,
    answered: String,
    minutes: String,
    cost: String,
    unpriced: String,
}

impl DayRow {
    fn of(b: &Bucket, class: &'static str) -> DayRow {
        DayRow {
            class,
            date: b.label.clone(),
            legs: thousands(b.legs),
            answered: thousands(b.answered),
            minutes: minutes(b.billing_seconds),
            cost: priced_money(b.cost_units, b.legs, b.unpriced),
            unpriced: thousands(b.unpriced),
        }
    }
}

/// Money summed over `legs` of which `unpriced` have none: `—` when there are legs and none is
/// priced (nothing was priced, which is not 0); a day or account without legs costs 0.
pub(crate) fn priced_money(units: i64, legs: i64, unpriced: i64) -> String {
    if legs > 0 && unpriced >= legs {
        "—".to_owned()
    } else {
        money(units)
    }
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
        "a per_minute leg without a rate, or with a rate of 0 on a CSV export or listing (KAZOO bills it 0)",
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
pub(crate) fn render(
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
    // Over the legs whose customer money is both recorded and derived (`derived_legs`); an
    // account with none shows "—".
    let mut compared_legs = 0i64;
    if let Some(r) = recon_daily {
        let acct = r.column("account_id")?.str()?.clone();
        let n = i64_col(r, "derived_legs")?;
        let rec = i64_col(r, "recorded_cost_units")?;
        let der = i64_col(r, "derived_cost_units")?;
        let del = i64_col(r, "delta_units")?;
        for i in 0..r.height() {
            let legs = n[i].unwrap_or(0);
            if legs == 0 {
                continue;
            }
            compared_legs += legs;
            let a = accounts
                .entry(acct.get(i).unwrap_or("_unassigned").to_owned())
                .or_default();
            let add = |x: Option<i64>, y: Option<i64>| Some(x.unwrap_or(0) + y.unwrap_or(0));
            a.recorded = add(a.recorded, rec[i]);
            a.derived = add(a.derived, der[i]);
            a.delta = add(a.delta, del[i]);
        }
    }
    // What KAZOO recorded on the legs not compared (the unpriced ones): `daily` sums every
    // recorded leg.
    let recorded_all: i64 = i64_col(daily, "recorded_cost_units")?
        .into_iter()
        .flatten()
        .sum();
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
            cost: priced_money(a.cost_units, a.legs, a.unpriced),
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
        cost: priced_money(
            sum(&|a| Some(a.cost_units)).unwrap_or(0),
            sum(&|a| Some(a.legs)).unwrap_or(0),
            sum(&|a| Some(a.unpriced)).unwrap_or(0),
        ),
        unpriced: thousands(sum(&|a| Some(a.unpriced)).unwrap_or(0)),
        recorded: opt_money(sum(&|a| a.recorded)),
        derived: opt_money(sum(&|a| a.derived)),
        delta: opt_money(sum(&|a| a.delta)),
    };
    let all_legs = sum(&|a| Some(a.legs)).unwrap_or(0);
    let money_note = match recon_daily {
        None => "Recorded, Derived and Delta are not shown (—): the reconciliation_daily report did not run.".to_owned(),
        Some(_) => {
            let how = if deck {
                "the rate deck's price where it has the leg's rate, else the leg's own rate"
            } else {
                "without a deck, a JSON leg's own rate; a crossbar CSV or listing leg carries no increment or minimum, so it has none"
            };
            let mut t = format!(
                "Recorded is what KAZOO charged, Derived what rerate prices ({how}). Both, and Delta (derived minus recorded), are over the {} whose customer money is both recorded and derived",
                count(compared_legs as u64, "leg", "legs")
            );
            let others = all_legs - compared_legs;
            if others > 0 {
                let recorded_elsewhere = recorded_all - sum(&|a| a.recorded).unwrap_or(0);
                t += &format!(
                    ", not the other {} (unpriced, or with no recorded money){}",
                    thousands(others),
                    if recorded_elsewhere != 0 {
                        format!(", on which KAZOO recorded {}", money(recorded_elsewhere))
                    } else {
                        String::new()
                    }
                );
            }
            t + "; an account with no such leg shows —."
        }
    };

    // The headline's recorded money: all of it, then the part compared with rerate's price.
    let recorded_compared = sum(&|a| a.recorded);
    let recorded_note = match (recon_daily, recorded_compared) {
        (Some(_), Some(rec)) if compared_legs > 0 => {
            let mut t = format!(
                "on the {} compared: recorded {}, derived {}, delta {}",
                count(compared_legs as u64, "leg", "legs"),
                money(rec),
                opt_money(sum(&|a| a.derived)),
                opt_money(sum(&|a| a.delta)),
            );
            if recorded_all != rec {
                t += &format!("; {} on legs not compared", money(recorded_all - rec));
            }
            t
        }
        (None, _) => "the reconciliation_daily report did not run".to_owned(),
        _ => "no leg has both recorded and derived money to compare".to_owned(),
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

    // Every day of the period (by month on a long period), each stretch without legs one slot.
    let period = Period::of(&days);
    let unit = if period.by_month { "month" } else { "day" };
    let shown = period.shown();
    let (cw, ch, pad) = (700.0f64, 170.0f64, 24.0f64);
    let n = shown.len().max(1) as f64;
    let slot = (cw - 2.0 * pad) / n;
    let bw = (slot * 0.8).clamp(0.5, 40.0);
    let bucket_max = period
        .buckets
        .iter()
        .map(|b| b.cost_units)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let tick_every = (shown.len() / 12).max(1);
    let base = ch - pad;
    let units = |n: usize| count(n as u64, unit, &format!("{unit}s"));
    let day_bars: Vec<DayBar> = shown
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let x = pad + slot * i as f64 + (slot - bw) / 2.0;
            let tick = |t: &str| {
                if i % tick_every == 0 {
                    t.to_owned()
                } else {
                    String::new()
                }
            };
            match row {
                Shown::Bucket(b) => {
                    let h = b.cost_units.max(0) as f64 / bucket_max * (ch - 2.2 * pad);
                    DayBar {
                        class: unit,
                        tick: tick(&b.tick),
                        date: b.label.clone(),
                        legs: thousands(b.legs),
                        cost: priced_money(b.cost_units, b.legs, b.unpriced),
                        x,
                        y: base - h,
                        w: bw,
                        h,
                    }
                }
                Shown::Empty(first, last, n) => DayBar {
                    class: "gap",
                    tick: tick("…"),
                    date: format!(
                        "{} to {}, {} without legs",
                        first.label,
                        last.label,
                        units(*n)
                    ),
                    legs: "0".to_owned(),
                    cost: money(0),
                    x: x + bw / 2.0,
                    y: base - 12.0,
                    w: 0.0,
                    h: 12.0,
                },
            }
        })
        .collect();
    let day_rows: Vec<DayRow> = shown
        .iter()
        .map(|row| match row {
            Shown::Bucket(b) => DayRow::of(b, unit),
            Shown::Empty(first, last, n) => DayRow {
                class: "gap",
                date: format!("{} to {}", first.label, last.label),
                legs: format!("no legs in these {}", units(*n)),
                answered: String::new(),
                minutes: String::new(),
                cost: String::new(),
                unpriced: String::new(),
            },
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
        (true, 0) if r.no_deck_rate == 0 => format!(
            "Every leg agrees with the rate deck {}.",
            opt("rates")
        ),
        (true, 0) => format!(
            "The {} legs with a rate in the deck {} agree with it; {} legs have no rate in it and were not compared with it.",
            thousands(m.counts.legs_written.saturating_sub(r.no_deck_rate) as i64),
            opt("rates"),
            thousands(r.no_deck_rate as i64)
        ),
        (true, _) => format!(
            "Legs whose money KAZOO recorded differs from what the rate deck {} derives, by class (the reconciliation/ table lists each).",
            opt("rates")
        ),
        (false, rows) => {
            // Without a deck only legs with rating inputs (JSON) have derived money to compare.
            let compared = m.counts.legs_written.saturating_sub(r.not_derived);
            let mut t = if compared == 0 {
                "No rate deck was given (--rates): no leg has rating inputs (JSON) to compare with its own rate".to_owned()
            } else {
                format!(
                    "No rate deck was given (--rates): the {} with rating inputs (JSON) {} compared with {} own rate, {}",
                    count(compared, "leg", "legs"),
                    plural(compared, "was", "were"),
                    plural(compared, "its", "their"),
                    if rows == 0 {
                        "and none differs"
                    } else {
                        "and the rows that differ are below, by class"
                    },
                )
            };
            if r.not_derived > 0 {
                t += &format!(
                    "; the {} (crossbar CSV or listing: no increment or minimum) {} not compared: rerate derives no money for {} without a deck",
                    count(r.not_derived, "other leg", "other legs"),
                    plural(r.not_derived, "was", "were"),
                    plural(r.not_derived, "it", "them"),
                );
            }
            t + "."
        }
    };

    // Cards.
    let t = &m.totals;
    let c = &m.counts;
    // The totals cover the partitions written: this run's legs and those a merge kept.
    let legs = c.legs_in_written_partitions;
    let priced = legs.saturating_sub(t.unpriced_legs);
    let none_priced = none_priced(m);
    let interactions = count(m.interactions, "interaction", "interactions");
    let cards = vec![
        Card {
            label: "Legs",
            value: thousands(legs as i64),
            note: if m.merge.legs_kept > 0 {
                format!(
                    "{} from this run, {} kept from the dataset; {interactions}",
                    thousands(c.legs_written as i64),
                    thousands(m.merge.legs_kept as i64)
                )
            } else {
                interactions
            },
            warn: false,
        },
        Card {
            label: "Minutes of use",
            value: minutes(t.billing_seconds),
            note: format!("billing seconds / 60 of all {}", count(legs, "leg", "legs")),
            warn: false,
        },
        Card {
            label: "Billed minutes",
            value: if none_priced {
                "—".to_owned()
            } else {
                minutes(t.billed_seconds)
            },
            note: if none_priced {
                "none: no leg is priced".to_owned()
            } else if t.unpriced_legs > 0 {
                format!(
                    "the {} after increments and minimums (their use: {}); unpriced legs are not billed",
                    count(priced, "priced leg", "priced legs"),
                    minutes(t.billing_seconds - t.unpriced_billing_seconds)
                )
            } else {
                "after increments, minimums and no-charge time".to_owned()
            },
            warn: false,
        },
        Card {
            label: "Customer cost",
            value: priced_money(t.cost_units, legs as i64, t.unpriced_legs as i64),
            note: if priced > 0 {
                format!("over {}", count(priced, "priced leg", "priced legs"))
            } else {
                format!(
                    "no priced legs; {}",
                    count(t.unpriced_legs, "unpriced leg", "unpriced legs")
                )
            },
            warn: none_priced,
        },
        Card {
            label: "Unpriced legs",
            value: thousands(t.unpriced_legs as i64),
            note: if t.unpriced_legs > 0 {
                format!("{UNPRICED_WHY}; not in the cost above")
            } else {
                "every leg priced".to_owned()
            },
            warn: t.unpriced_legs > 0,
        },
        Card {
            label: "Recorded by KAZOO",
            value: money(recorded_all),
            note: recorded_note,
            warn: false,
        },
        Card {
            label: "Reseller cost",
            value: priced_money(t.reseller_cost_units, legs as i64, t.unpriced_legs as i64),
            note: format!(
                "rated {}",
                priced_money(t.rated_cost_units, legs as i64, t.unpriced_legs as i64)
            ),
            warn: false,
        },
        Card {
            label: "Rejected records",
            value: thousands(c.rejected as i64),
            note: format!(
                "of {} read; {} dropped",
                thousands(c.records_read as i64),
                count(c.dedup.duplicates_dropped, "duplicate", "duplicates")
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
    let period_facts = serde_json::json!({
        "first": period.first.map_or_else(|| "none".to_owned(), format_date),
        "last": period.last.map_or_else(|| "none".to_owned(), format_date),
        "days": period.days,
        "days_text": thousands(period.days),
        "by_month": period.by_month,
        "months": period.buckets.len(),
        "rows": shown.len(),
        "gaps": shown.iter().filter(|r| matches!(r, Shown::Empty(..))).count(),
        "max_days": DAILY_MAX_DAYS,
        "tz": opt("tz"),
    });
    let mut env = minijinja::Environment::new();
    env.add_template("summary.html", TEMPLATE)?;
    let html = env.get_template("summary.html")?.render(minijinja::context! {
        version => m.rerate_version,
        dataset_now => {
            let w = m.dataset_words();
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| f.to_uppercase().collect::<String>() + c.as_str()) + "."
        },
        changed_nothing => m.changed_nothing().then_some(crate::write::manifest::NOTHING_CHANGED),
        period => period_facts,
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
            "{} read, {} written, {} rejected, {} dropped{}",
            thousands(c.records_read as i64),
            thousands(c.legs_written as i64),
            thousands(c.rejected as i64),
            count(c.dedup.duplicates_dropped, "duplicate", "duplicates"),
            if m.merge.legs_kept > 0 {
                format!(
                    "; merged with the dataset's {} in the partitions written",
                    count(m.merge.legs_kept, "leg", "legs")
                )
            } else {
                String::new()
            }
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
            "max": if !none_priced { format!("max {} a {}", money(bucket_max as i64), if period.by_month { "month" } else { "day" }) } else { "no priced legs".to_owned() },
            "undated": (period.undated.legs > 0).then(|| DayRow::of(&period.undated, "undated")),
        }),
        recon => serde_json::json!({
            "rows": recon_rows,
            "intro": intro,
            "total": thousands(r.rows as i64),
            "delta": money(r.total_delta_units),
        }),
        money_note => money_note,
        names => !labels.account_names.is_empty(),
        accounts => rows,
        total => total,
    })?;
    Ok(html)
}
