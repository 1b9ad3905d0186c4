//! Stage 3: rating every leg with KAZOO's formula, column by column.
//!
//! Adds billed_seconds, rated_cost_units, cost_units (the customer's charge: the rated cost when
//! account_billing is per_minute, else 0) and reseller_cost_units (the same rule with
//! reseller_billing), and flags per-minute legs that carry no rate (`unrated`), which KAZOO
//! silently bills at 0.

pub mod kazoo;

use polars::prelude::*;

pub use kazoo::{rate, Charge, Inputs, Rounding};

use crate::schema::{
    ACCOUNT_BILLING, BILLED_SECONDS, BILLING_SECONDS, BILLING_SECONDS_OFFSET, COST_UNITS,
    DISCOUNT_PERCENTAGE, RATE, RATED_COST_UNITS, RATE_INCREMENT, RATE_MINIMUM, RATE_NOCHARGE_TIME,
    RATING_FLAGS, RESELLER_BILLING, RESELLER_COST_UNITS, SURCHARGE,
};

/// The billing tag under which KAZOO charges per minute.
pub const PER_MINUTE: &str = "per_minute";

/// The rating inputs, in the order [`Inputs`] takes them.
const INPUT_COLS: [&str; 8] = [
    BILLING_SECONDS,
    BILLING_SECONDS_OFFSET,
    RATE_NOCHARGE_TIME,
    RATE,
    RATE_INCREMENT,
    RATE_MINIMUM,
    SURCHARGE,
    DISCOUNT_PERCENTAGE,
];

/// Adds the rated columns to a legs frame and updates `rating_flags`.
pub fn rate_frame(df: &mut DataFrame, rounding: Rounding) -> PolarsResult<()> {
    let n = df.height();
    let inputs: Vec<&Int64Chunked> = INPUT_COLS
        .iter()
        .map(|c| df.column(c).and_then(|c| c.i64()))
        .collect::<PolarsResult<_>>()?;
    let mut its: Vec<_> = inputs.iter().map(|c| c.iter()).collect();
    let acct = df.column(ACCOUNT_BILLING)?.str()?;
    let resl = df.column(RESELLER_BILLING)?.str()?;
    let flags = df.column(RATING_FLAGS)?.str()?;

    let mut billed = Vec::with_capacity(n);
    let mut rated = Vec::with_capacity(n);
    let mut cost = Vec::with_capacity(n);
    let mut reseller = Vec::with_capacity(n);
    let mut new_flags = StringChunkedBuilder::new(RATING_FLAGS.into(), n);
    for ((a, r), f) in acct.iter().zip(resl.iter()).zip(flags.iter()) {
        let mut v = [None; 8];
        for (slot, it) in v.iter_mut().zip(its.iter_mut()) {
            *slot = it.next().flatten();
        }
        let inp = Inputs {
            billing_seconds: v[0],
            billing_seconds_offset: v[1],
            rate_nocharge_time: v[2],
            rate: v[3],
            rate_increment: v[4],
            rate_minimum: v[5],
            surcharge: v[6],
            discount_percentage: v[7],
        };
        let c = rate(&inp, rounding);
        let (a_pm, r_pm) = (a == Some(PER_MINUTE), r == Some(PER_MINUTE));
        billed.push(c.billed_seconds);
        rated.push(c.cost_units);
        cost.push(if a_pm { c.cost_units } else { 0 });
        reseller.push(if r_pm { c.cost_units } else { 0 });
        if (a_pm || r_pm) && inp.rate.is_none() {
            match f {
                Some(f) => new_flags.append_value(format!("{f},unrated")),
                None => new_flags.append_value("unrated"),
            }
        } else {
            new_flags.append_option(f);
        }
    }
    drop(its);
    let cols = [
        Int64Chunked::from_vec(BILLED_SECONDS.into(), billed).into_column(),
        Int64Chunked::from_vec(RATED_COST_UNITS.into(), rated).into_column(),
        Int64Chunked::from_vec(COST_UNITS.into(), cost).into_column(),
        Int64Chunked::from_vec(RESELLER_COST_UNITS.into(), reseller).into_column(),
        new_flags.finish().into_column(),
    ];
    for c in cols {
        df.with_column(c)?;
    }
    Ok(())
}
