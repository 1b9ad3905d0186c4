//! Stage 5: reconciliation — every leg whose money KAZOO recorded differs from what rerate
//! derives, or whose rate differs from the deck's, and why.
//!
//! Recorded: the crossbar CSV's `cost` / `reseller_cost`; for a JSON leg (whose document carries
//! no charge), what KAZOO's own arithmetic charges from the leg's custom_channel_vars. Derived:
//! the deck's price for the leg when a deck is given and has a rate for it, else the leg's own
//! rate under `--rounding` (a CSV leg without a deck rate cannot be derived). Both follow the
//! billing rule: money only on per_minute legs.
//!
//! A leg is reported when derived and recorded differ, or when the deck's rate differs from the
//! leg's; it gets the first class that applies: `unrated` (per_minute, no rate), `billing_type`
//! (money recorded on a leg that is not per_minute, or none on a per_minute one that costs
//! something), `rate_mismatch`, `rounding` (|delta| <= 1 unit), `mismatch`.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::rate::{rate, InputColumns, Rounding, PER_MINUTE};
use crate::schema::{
    ACCOUNT_BILLING, ACCOUNT_ID, BILLED_SECONDS, BILLING_SECONDS, CALL_ID, CLASS, DATE,
    DECK_COST_UNITS, DECK_RATE, DECK_RATE_NAME, DELTA_UNITS, DERIVED_COST_UNITS, LEG_RATE, RATE,
    RATE_NAME, RECORDED_COST_UNITS, RECORDED_RESELLER_COST_UNITS, RESELLER_BILLING, SOURCE_FILE,
    SOURCE_FORMAT, SOURCE_LINE, START_TIME,
};

/// The reconciliation table's file columns (partition columns excluded).
pub fn columns() -> Vec<&'static str> {
    vec![
        CALL_ID,
        CLASS,
        RECORDED_COST_UNITS,
        DERIVED_COST_UNITS,
        DELTA_UNITS,
        LEG_RATE,
        DECK_RATE,
        RATE_NAME,
        DECK_RATE_NAME,
        ACCOUNT_BILLING,
        BILLING_SECONDS,
        BILLED_SECONDS,
        START_TIME,
        SOURCE_FORMAT,
        SOURCE_FILE,
        SOURCE_LINE,
    ]
}

/// What reconciliation found, for the manifest and the terminal.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub rows: u64,
    pub by_class: BTreeMap<&'static str, u64>,
    /// Sum of derived − recorded over every leg that could be derived.
    pub total_delta_units: i64,
    /// Legs whose money could not be derived (CSV legs without a deck rate).
    pub not_derived: u64,
    /// The accounts with the largest absolute delta: (account, rows, delta).
    pub worst_accounts: Vec<(String, u64, i64)>,
    /// Reported rows and delta per account, which `worst_accounts` ranks.
    #[serde(skip)]
    pub per_account: BTreeMap<String, (u64, i64)>,
}

impl Summary {
    /// Adds another part's summary (parts hold different legs).
    pub fn merge(&mut self, o: Summary) {
        self.rows += o.rows;
        for (k, v) in o.by_class {
            *self.by_class.entry(k).or_insert(0) += v;
        }
        self.total_delta_units += o.total_delta_units;
        self.not_derived += o.not_derived;
        for (a, (n, d)) in o.per_account {
            let e = self.per_account.entry(a).or_default();
            e.0 += n;
            e.1 += d;
        }
        self.rank_worst();
    }

    /// The five accounts with the largest absolute delta, from the per-account sums.
    fn rank_worst(&mut self) {
        let mut worst: Vec<(String, u64, i64)> = self
            .per_account
            .iter()
            .map(|(a, &(n, d))| (a.clone(), n, d))
            .collect();
        worst.sort_by_key(|(a, _, d)| (std::cmp::Reverse(d.abs()), a.clone()));
        worst.truncate(5);
        self.worst_accounts = worst;
    }
}

/// The class of a leg that is reported, or None for a leg that reconciles.
pub fn classify(
    per_minute: bool,
    leg_rate: Option<i64>,
    deck_rate: Option<i64>,
    recorded: i64,
    derived: i64,
) -> Option<&'static str> {
    let delta = derived - recorded;
    let rate_differs = deck_rate.is_some() && leg_rate != deck_rate;
    if delta == 0 && !rate_differs {
        return None;
    }
    Some(if per_minute && leg_rate.is_none() {
        "unrated"
    } else if (recorded != 0 && !per_minute) || (recorded == 0 && per_minute && derived > 0) {
        "billing_type"
    } else if rate_differs {
        "rate_mismatch"
    } else if delta.abs() <= 1 {
        "rounding"
    } else {
        "mismatch"
    })
}

fn per_minute(v: Option<&str>) -> bool {
    v == Some(PER_MINUTE)
}

/// Fills `recorded_*` for JSON legs and `derived_cost_units` for every leg, and returns the
/// reconciliation rows (with `account_id` and `date`).
pub fn reconcile(legs: &mut DataFrame, rounding: Rounding) -> PolarsResult<(DataFrame, Summary)> {
    let n = legs.height();
    let s = |c: &str| -> PolarsResult<StringChunked> { Ok(legs.column(c)?.str()?.clone()) };
    let i = |c: &str| -> PolarsResult<Int64Chunked> { Ok(legs.column(c)?.i64()?.clone()) };
    let (fmt, acct_b, resl_b) = (s(SOURCE_FORMAT)?, s(ACCOUNT_BILLING)?, s(RESELLER_BILLING)?);
    let columns = InputColumns::of(legs)?;
    let (rec_c, rec_r) = (i(RECORDED_COST_UNITS)?, i(RECORDED_RESELLER_COST_UNITS)?);
    let (deck_rate, deck_cost) = (i(DECK_RATE)?, i(DECK_COST_UNITS)?);

    let mut recorded = Vec::with_capacity(n);
    let mut recorded_r = Vec::with_capacity(n);
    let mut derived = Vec::with_capacity(n);
    let mut rows: Vec<u32> = Vec::new();
    let mut classes: Vec<&'static str> = Vec::new();
    let mut summary = Summary::default();
    for (k, inputs) in columns.rows().enumerate() {
        let (a_pm, r_pm) = (per_minute(acct_b.get(k)), per_minute(resl_b.get(k)));
        let own = |mode| rate(&inputs, mode).cost_units;
        let csv = crate::schema::is_column_shaped(fmt.get(k));
        let (rc, rr) = if csv {
            (rec_c.get(k), rec_r.get(k))
        } else {
            // KAZOO's charge: its own double arithmetic on the leg's rate.
            let kz = own(Rounding::Kazoo);
            (
                Some(if a_pm { kz } else { 0 }),
                Some(if r_pm { kz } else { 0 }),
            )
        };
        let dv = match (deck_cost.get(k), csv) {
            (Some(d), _) => Some(d),
            (None, false) => Some(own(rounding)),
            (None, true) => None,
        }
        .map(|c| if a_pm { c } else { 0 });
        recorded.push(rc);
        recorded_r.push(rr);
        derived.push(dv);
        let Some(dv) = dv else {
            summary.not_derived += 1;
            continue;
        };
        let rc0 = rc.unwrap_or(0);
        summary.total_delta_units += dv - rc0;
        if let Some(class) = classify(a_pm, inputs.rate, deck_rate.get(k), rc0, dv) {
            rows.push(k as u32);
            classes.push(class);
            *summary.by_class.entry(class).or_insert(0) += 1;
        }
    }
    let set = |df: &mut DataFrame, name: &str, v: Vec<Option<i64>>| -> PolarsResult<()> {
        df.with_column(Int64Chunked::from_iter_options(name.into(), v.into_iter()).into_column())?;
        Ok(())
    };
    set(legs, RECORDED_COST_UNITS, recorded)?;
    set(legs, RECORDED_RESELLER_COST_UNITS, recorded_r)?;
    set(legs, DERIVED_COST_UNITS, derived)?;
    summary.rows = rows.len() as u64;

    let idx = IdxCa::from_vec("idx".into(), rows.iter().map(|&k| k as IdxSize).collect());
    let mut out = legs
        .select([
            CALL_ID,
            ACCOUNT_ID,
            DATE,
            RECORDED_COST_UNITS,
            DERIVED_COST_UNITS,
            RATE,
            DECK_RATE,
            RATE_NAME,
            DECK_RATE_NAME,
            ACCOUNT_BILLING,
            BILLING_SECONDS,
            BILLED_SECONDS,
            START_TIME,
            SOURCE_FORMAT,
            SOURCE_FILE,
            SOURCE_LINE,
        ])?
        .take(&idx)?;
    out.rename(RATE, LEG_RATE.into())?;
    let delta: Int64Chunked = out
        .column(DERIVED_COST_UNITS)?
        .i64()?
        .iter()
        .zip(out.column(RECORDED_COST_UNITS)?.i64()?.iter())
        .map(|(d, r)| Some(d.unwrap_or(0) - r.unwrap_or(0)))
        .collect();
    out.with_column(delta.with_name(DELTA_UNITS.into()).into_column())?;
    out.with_column(
        StringChunked::from_iter_values(CLASS.into(), classes.into_iter()).into_column(),
    )?;

    let accts = out.column(ACCOUNT_ID)?.str()?;
    let deltas = out.column(DELTA_UNITS)?.i64()?;
    for (a, d) in accts.iter().zip(deltas.iter()) {
        let e = summary
            .per_account
            .entry(a.unwrap_or_default().to_owned())
            .or_default();
        e.0 += 1;
        e.1 += d.unwrap_or(0);
    }
    summary.rank_worst();
    Ok((out, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_order_of_the_spec() {
        // Reconciles: same money, same rate.
        assert_eq!(classify(true, Some(600), Some(600), 600, 600), None);
        assert_eq!(classify(true, Some(600), None, 600, 600), None);
        // unrated comes first, even when the rate (none) differs from the deck's.
        assert_eq!(classify(true, None, Some(600), 0, 600), Some("unrated"));
        // billing_type: money on a flat-rate leg; none on a per-minute one that costs something.
        assert_eq!(
            classify(false, Some(600), Some(600), 600, 0),
            Some("billing_type")
        );
        assert_eq!(
            classify(true, Some(600), Some(600), 0, 600),
            Some("billing_type")
        );
        // rate_mismatch before rounding and mismatch.
        assert_eq!(
            classify(true, Some(600), Some(700), 600, 700),
            Some("rate_mismatch")
        );
        assert_eq!(
            classify(true, Some(600), Some(700), 600, 600),
            Some("rate_mismatch")
        );
        assert_eq!(
            classify(true, Some(22), Some(22), 109, 110),
            Some("rounding")
        );
        assert_eq!(classify(true, Some(22), None, 110, 109), Some("rounding"));
        assert_eq!(
            classify(true, Some(600), Some(600), 600, 1200),
            Some("mismatch")
        );
    }
}
