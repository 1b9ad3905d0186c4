//! Stage 5: reconciliation — every leg whose money KAZOO recorded differs from what rerate
//! derives, or whose rate differs from the deck's, and why; for the customer's money and the
//! reseller's, each with its own classes.
//!
//! **Recorded** (`recorded_cost_units`, `recorded_reseller_cost_units`) is what KAZOO charged:
//! a crossbar CSV export's or listing page's `cost` / `reseller_cost`; for a JSON leg (whose
//! document carries no charge) KAZOO's own double arithmetic on the leg's custom_channel_vars.
//! **Derived** (`derived_cost_units`, `derived_reseller_cost_units`) is rerate's price: the
//! deck's when a deck is given and has a rate for the leg, else, for a leg that carries rating
//! inputs (JSON), its own rate under `--rounding`; null for a leg without rating inputs and
//! without a deck rate (flag `no_deck_rate`). Both follow the billing rule: money only where
//! the party's billing (`account_billing`, `reseller_billing`) is per_minute.
//!
//! A party's money is reported when derived and recorded differ, or when the deck's rate
//! differs from the leg's; the row gets the first class that applies: `unrated` (per_minute,
//! no rate), `billing_type` (money recorded where the billing is not per_minute, or none on a
//! per_minute leg that costs something), `rate_mismatch`, `rounding` (|delta| <= 1 unit),
//! `mismatch`. The reseller's rows carry the same classes prefixed `reseller_`. A party's money
//! is only considered where it pays per minute or was charged (a flat-rate customer whose leg
//! carries another rate than the deck's has no money at stake: no row). A party whose money was not
//! recorded (a 4.3 export without reseller columns) or cannot be derived is not reconciled.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::rate::{rate, InputColumns, Rounding, PER_MINUTE};
use crate::schema::is_column_shaped;
pub(crate) use crate::schema::PARTY;
use crate::schema::{
    ACCOUNT_BILLING, ACCOUNT_ID, BILLED_SECONDS, BILLING_SECONDS, CALL_ID, CLASS, DATE,
    DECK_COST_UNITS, DECK_RATE, DECK_RATE_NAME, DELTA_UNITS, DERIVED_COST_UNITS,
    DERIVED_RESELLER_COST_UNITS, EXPORTED_COST_UNITS, EXPORTED_RESELLER_COST_UNITS, LEG_RATE, RATE,
    RATE_NAME, RECORDED_COST_UNITS, RECORDED_RESELLER_COST_UNITS, RESELLER_BILLING, SOURCE_FILE,
    SOURCE_FORMAT, SOURCE_LINE, SOURCE_OFFSET, START_TIME,
};

/// The customer's classes, in the order they are tried.
pub(crate) const CLASSES: [&str; 5] = [
    "unrated",
    "billing_type",
    "rate_mismatch",
    "rounding",
    "mismatch",
];
/// The reseller's classes (the same rules on the reseller's money).
pub(crate) const RESELLER_CLASSES: [&str; 5] = [
    "reseller_unrated",
    "reseller_billing_type",
    "reseller_rate_mismatch",
    "reseller_rounding",
    "reseller_mismatch",
];

/// The reconciliation table's file columns (partition columns excluded). `recorded_cost_units`,
/// `derived_cost_units` and `delta_units` are the money of the row's `party`.
pub(crate) fn columns() -> Vec<&'static str> {
    vec![
        CALL_ID,
        PARTY,
        CLASS,
        RECORDED_COST_UNITS,
        DERIVED_COST_UNITS,
        DELTA_UNITS,
        LEG_RATE,
        DECK_RATE,
        RATE_NAME,
        DECK_RATE_NAME,
        ACCOUNT_BILLING,
        RESELLER_BILLING,
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
    /// Sum of derived − recorded of the customer's money over every leg reconciled.
    pub total_delta_units: i64,
    /// The same for the reseller's money.
    pub total_reseller_delta_units: i64,
    /// Legs whose money could not be derived (no rating inputs and no deck rate).
    pub not_derived: u64,
    /// Legs the rate deck has no rate for (all of them when no deck was given): not compared
    /// with a deck.
    pub no_deck_rate: u64,
    /// Legs whose customer money KAZOO's export did not record (no `cost` cell).
    pub not_recorded: u64,
    /// Legs whose reseller money KAZOO's export did not record (no reseller columns).
    pub reseller_not_recorded: u64,
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
        self.total_reseller_delta_units += o.total_reseller_delta_units;
        self.not_derived += o.not_derived;
        self.no_deck_rate += o.no_deck_rate;
        self.not_recorded += o.not_recorded;
        self.reseller_not_recorded += o.reseller_not_recorded;
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

/// One reported row: (leg row, reseller's money?, class, recorded, derived).
type Reported = (u32, bool, &'static str, i64, i64);

/// What KAZOO recorded for a leg's customer and reseller, in units: a column-shaped leg's
/// exported `cost` and `reseller_cost` as its export wrote them; for a JSON leg, which carries
/// none, KAZOO's own charge (`kazoo`: its double arithmetic on the leg's rate, none when the
/// leg cannot be priced), to each party that pays per minute, 0 to one that does not. The one
/// rule for which legs carry recorded money.
pub(crate) fn recorded(
    column_shaped: bool,
    exported: (Option<i64>, Option<i64>),
    kazoo: Option<i64>,
    per_minute: (bool, bool),
) -> (Option<i64>, Option<i64>) {
    if column_shaped {
        return exported;
    }
    let to = |pm: bool| kazoo.map(|kz| if pm { kz } else { 0 });
    (to(per_minute.0), to(per_minute.1))
}

/// The class (index into [`CLASSES`]) of one party's money that is reported, or None when it
/// reconciles. `column_shaped`: the leg is from a crossbar CSV export or listing (see
/// [`crate::rate::is_unrated`]).
pub(crate) fn classify_index(
    per_minute: bool,
    leg_rate: Option<i64>,
    deck_rate: Option<i64>,
    recorded: i64,
    derived: i64,
    column_shaped: bool,
) -> Option<usize> {
    let delta = derived - recorded;
    let rate_differs = deck_rate.is_some() && leg_rate != deck_rate;
    if delta == 0 && !rate_differs {
        return None;
    }
    Some(
        if crate::rate::is_unrated(per_minute, leg_rate, column_shaped) {
            0
        } else if (recorded != 0 && !per_minute) || (recorded == 0 && per_minute && derived > 0) {
            1
        } else if rate_differs {
            2
        } else if delta.abs() <= 1 {
            3
        } else {
            4
        },
    )
}

/// The customer's class of a leg that is reported, or None for a leg that reconciles (the
/// class names of [`classify_index`], for the tests).
#[cfg(test)]
fn classify(
    per_minute: bool,
    leg_rate: Option<i64>,
    deck_rate: Option<i64>,
    recorded: i64,
    derived: i64,
    column_shaped: bool,
) -> Option<&'static str> {
    classify_index(
        per_minute,
        leg_rate,
        deck_rate,
        recorded,
        derived,
        column_shaped,
    )
    .map(|i| CLASSES[i])
}

fn per_minute(v: Option<&str>) -> bool {
    v == Some(PER_MINUTE)
}

/// Fills `recorded_*` for JSON legs and `derived_*` for every leg, and returns the
/// reconciliation rows (with `account_id` and `date`).
pub fn reconcile(legs: &mut DataFrame, rounding: Rounding) -> PolarsResult<(DataFrame, Summary)> {
    let n = legs.height();
    let s = |c: &str| -> PolarsResult<StringChunked> { Ok(legs.column(c)?.str()?.clone()) };
    let i = |c: &str| -> PolarsResult<Int64Chunked> { Ok(legs.column(c)?.i64()?.clone()) };
    let (fmt, acct_b, resl_b) = (s(SOURCE_FORMAT)?, s(ACCOUNT_BILLING)?, s(RESELLER_BILLING)?);
    let columns = InputColumns::of(legs)?;
    let (exp_c, exp_r) = (i(EXPORTED_COST_UNITS)?, i(EXPORTED_RESELLER_COST_UNITS)?);
    let (deck_rate, deck_cost) = (i(DECK_RATE)?, i(DECK_COST_UNITS)?);

    let mut recorded_c = Vec::with_capacity(n);
    let mut recorded_r = Vec::with_capacity(n);
    let mut derived = Vec::with_capacity(n);
    let mut derived_r = Vec::with_capacity(n);
    let mut rows: Vec<Reported> = Vec::new();
    let mut summary = Summary::default();
    for (k, inputs) in columns.rows().enumerate() {
        let (a_pm, r_pm) = (per_minute(acct_b.get(k)), per_minute(resl_b.get(k)));
        summary.no_deck_rate += u64::from(deck_rate.get(k).is_none());
        // A price beyond the bounds is none (see crate::rate::MAX_LEG_UNITS).
        let own = |mode| crate::rate::bounded(rate(&inputs, mode).cost_units);
        let no_inputs = is_column_shaped(fmt.get(k));
        let kazoo = match no_inputs {
            true => None,
            false => own(Rounding::Kazoo),
        };
        let exported = (exp_c.get(k), exp_r.get(k));
        let (rc, rr) = recorded(no_inputs, exported, kazoo, (a_pm, r_pm));
        let price = match (deck_cost.get(k), no_inputs) {
            (Some(d), _) => Some(d),
            (None, false) => own(rounding),
            (None, true) => None,
        };
        let dv = price.map(|c| if a_pm { c } else { 0 });
        let dr = price.map(|c| if r_pm { c } else { 0 });
        recorded_c.push(rc);
        recorded_r.push(rr);
        derived.push(dv);
        derived_r.push(dr);
        let (Some(dv), Some(dr)) = (dv, dr) else {
            summary.not_derived += 1;
            continue;
        };
        let (leg_rate, deck) = (inputs.rate, deck_rate.get(k));
        // Each party: (pays per minute, recorded, derived, reseller?, its counters).
        let parties = [
            (
                a_pm,
                rc,
                dv,
                false,
                &mut summary.not_recorded,
                &mut summary.total_delta_units,
            ),
            (
                r_pm,
                rr,
                dr,
                true,
                &mut summary.reseller_not_recorded,
                &mut summary.total_reseller_delta_units,
            ),
        ];
        for (pm, rec, der, reseller, not_recorded, total) in parties {
            let Some(rec) = rec else {
                *not_recorded += 1;
                continue;
            };
            // No money at stake for this party: nothing to reconcile.
            if !pm && rec == 0 {
                continue;
            }
            *total += der - rec;
            if let Some(c) = classify_index(pm, leg_rate, deck, rec, der, no_inputs) {
                let class = if reseller {
                    RESELLER_CLASSES[c]
                } else {
                    CLASSES[c]
                };
                rows.push((k as u32, reseller, class, rec, der));
            }
        }
    }
    let set = |df: &mut DataFrame, name: &str, v: Vec<Option<i64>>| -> PolarsResult<()> {
        df.with_column(Int64Chunked::from_iter_options(name.into(), v.into_iter()).into_column())?;
        Ok(())
    };
    set(legs, RECORDED_COST_UNITS, recorded_c)?;
    set(legs, RECORDED_RESELLER_COST_UNITS, recorded_r)?;
    set(legs, DERIVED_COST_UNITS, derived)?;
    set(legs, DERIVED_RESELLER_COST_UNITS, derived_r)?;
    summary.rows = rows.len() as u64;
    for (_, _, class, _, _) in &rows {
        *summary.by_class.entry(class).or_insert(0) += 1;
    }

    let idx = IdxCa::from_vec("idx".into(), rows.iter().map(|r| r.0 as IdxSize).collect());
    let mut out = legs
        .select([
            CALL_ID,
            ACCOUNT_ID,
            DATE,
            RATE,
            DECK_RATE,
            RATE_NAME,
            DECK_RATE_NAME,
            ACCOUNT_BILLING,
            RESELLER_BILLING,
            BILLING_SECONDS,
            BILLED_SECONDS,
            START_TIME,
            SOURCE_FORMAT,
            SOURCE_FILE,
            SOURCE_LINE,
            // Not a column of the table: it names the leg, with source_file (rerate extract).
            SOURCE_OFFSET,
        ])?
        .take(&idx)?;
    out.rename(RATE, LEG_RATE.into())?;
    let col = |name: &str, f: &dyn Fn(&Reported) -> i64| {
        Int64Chunked::from_iter_values(name.into(), rows.iter().map(f)).into_column()
    };
    out.with_column(col(RECORDED_COST_UNITS, &|r| r.3))?;
    out.with_column(col(DERIVED_COST_UNITS, &|r| r.4))?;
    out.with_column(col(DELTA_UNITS, &|r| r.4 - r.3))?;
    out.with_column(
        StringChunked::from_iter_values(
            PARTY.into(),
            rows.iter()
                .map(|r| if r.1 { "reseller" } else { "customer" }),
        )
        .into_column(),
    )?;
    out.with_column(
        StringChunked::from_iter_values(CLASS.into(), rows.iter().map(|r| r.2)).into_column(),
    )?;

    let accts = out.column(ACCOUNT_ID)?.str()?;
    let deltas = out.column(DELTA_UNITS)?.i64()?;
    for (a, d) in accts.iter().zip(deltas.iter()) {
        let e = summary
            .per_account
            .entry(a.unwrap_or(crate::schema::UNASSIGNED_ACCOUNT).to_owned())
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
        assert_eq!(classify(true, Some(600), Some(600), 600, 600, false), None);
        assert_eq!(classify(true, Some(600), None, 600, 600, false), None);
        // unrated comes first, even when the rate (none) differs from the deck's.
        assert_eq!(
            classify(true, None, Some(600), 0, 600, false),
            Some("unrated")
        );
        // billing_type: money on a flat-rate leg; none on a per-minute one that costs something.
        assert_eq!(
            classify(false, Some(600), Some(600), 600, 0, false),
            Some("billing_type")
        );
        assert_eq!(
            classify(true, Some(600), Some(600), 0, 600, false),
            Some("billing_type")
        );
        // rate_mismatch before rounding and mismatch.
        assert_eq!(
            classify(true, Some(600), Some(700), 600, 700, false),
            Some("rate_mismatch")
        );
        assert_eq!(
            classify(true, Some(600), Some(700), 600, 600, false),
            Some("rate_mismatch")
        );
        assert_eq!(
            classify(true, Some(22), Some(22), 109, 110, false),
            Some("rounding")
        );
        assert_eq!(
            classify(true, Some(22), None, 110, 109, false),
            Some("rounding")
        );
        assert_eq!(
            classify(true, Some(600), Some(600), 600, 1200, false),
            Some("mismatch")
        );
    }

    /// A rate of 0 is none on a crossbar export (which writes a missing rate as 0) and a rate on
    /// a JSON CDR: the same leg is unrated from a CSV export and a rate mismatch from JSON.
    #[test]
    fn a_rate_of_0_is_none_only_on_a_column_shaped_leg() {
        assert_eq!(
            classify(true, Some(0), Some(600), 0, 600, true),
            Some("unrated")
        );
        assert_eq!(
            classify(true, Some(0), Some(600), 0, 600, false),
            Some("billing_type")
        );
        assert_eq!(
            classify(true, Some(0), Some(600), 100, 600, false),
            Some("rate_mismatch")
        );
        assert_eq!(
            classify(false, Some(0), Some(600), 0, 0, true),
            Some("rate_mismatch")
        );
    }

    #[test]
    fn column_shaped_legs_carry_their_exported_money_json_legs_kazoos() {
        let exported = (Some(7), None);
        assert_eq!(recorded(true, exported, Some(9), (true, true)), exported);
        assert_eq!(
            recorded(false, exported, Some(9), (true, false)),
            (Some(9), Some(0))
        );
        assert_eq!(recorded(false, exported, None, (true, true)), (None, None));
    }
}
