//! Stage 3: rating every leg with KAZOO's formula, column by column.
//!
//! Adds billed_seconds, rated_cost_units, cost_units (the customer's charge: the rated cost when
//! account_billing is per_minute, else 0) and reseller_cost_units (the same rule with
//! reseller_billing), and flags per-minute legs that carry no rate (`unrated`), which KAZOO
//! silently bills at 0. JSON legs are rated from their own custom_channel_vars; crossbar CSV
//! and listing legs, which carry no increment or minimum, from the rate deck ([`apply_deck`]
//! first; flag `deck_priced`), and without a deck rate not at all (null, flag `no_deck_rate`):
//! what KAZOO charged them is `recorded_cost_units` (see [`crate::reconcile`]).

pub(crate) mod deck;
pub(crate) mod e164;
pub(crate) mod kazoo;

use polars::prelude::*;
use rayon::prelude::*;

pub use deck::{DeckSet, RateSort};
pub(crate) use deck::{Filter, Hotornot, Lookup};
pub(crate) use e164::E164Converters;
pub(crate) use kazoo::Charge;
pub use kazoo::{rate, Inputs, Rounding};

use crate::schema::{
    ACCOUNT_BILLING, ACCOUNT_ID, BILLED_SECONDS, BILLING_SECONDS, BILLING_SECONDS_OFFSET,
    COST_UNITS, DECK_COLS, DECK_COST_UNITS, DECK_NOCHARGE_TIME, DECK_RATE, DECK_RATE_INCREMENT,
    DECK_RATE_MINIMUM, DECK_RATE_NAME, DECK_SURCHARGE, DISCOUNT_PERCENTAGE, PARSE_FLAGS, RATE,
    RATED_COST_UNITS, RATE_INCREMENT, RATE_MINIMUM, RATE_NOCHARGE_TIME, RATING_FLAGS,
    RESELLER_BILLING, RESELLER_COST_UNITS, SOURCE_FORMAT, SURCHARGE,
};

/// Units (1/10,000 of the currency) as a currency amount with four decimals: 4524 -> "0.4524".
pub(crate) fn units_to_decimal(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let u = units.unsigned_abs();
    format!("{sign}{}.{:04}", u / 10_000, u % 10_000)
}

/// Flag: a per-minute leg with no rate, which KAZOO bills at 0.
pub(crate) const UNRATED: &str = "unrated";
/// Flag: a crossbar CSV or listing leg with no deck rate, left unpriced.
pub(crate) const NO_DECK_RATE: &str = "no_deck_rate";
/// Flag: a crossbar CSV or listing leg priced from the rate deck.
pub(crate) const DECK_PRICED: &str = "deck_priced";

/// Flag: a leg whose price would exceed [`MAX_LEG_UNITS`], left unpriced.
pub(crate) const BEYOND_BOUNDS: &str = "beyond_bounds";

/// The largest money one leg may carry, in units (1/10,000 of the currency): 10^12 units,
/// 100,000,000 of the currency. No call costs that much; a leg priced above it (a rate or
/// seconds of absurd size, a damaged export) is kept, flagged [`BEYOND_BOUNDS`] and left
/// unpriced, never allowed to stop a run or wrap a sum: with every leg's money within it, a sum
/// over fewer than 9.2 million legs (a partition, a day, a report row) always fits an `i64`.
pub(crate) const MAX_LEG_UNITS: i64 = 1_000_000_000_000;

/// `units` when within [`MAX_LEG_UNITS`] either way, else `None`.
pub(crate) fn bounded(units: i64) -> Option<i64> {
    (units.unsigned_abs() <= MAX_LEG_UNITS.unsigned_abs()).then_some(units)
}

/// Every `rating_flags` value [`rate_frame`] adds, and only those: a leg read back from a
/// dataset loses them before it is rated again ([`crate::merge::read_back`]).
pub(crate) const RATING_STAGE_FLAGS: &[&str] = &[UNRATED, NO_DECK_RATE, DECK_PRICED, BEYOND_BOUNDS];

/// `flags` with `flag` appended.
fn with_flag(flags: Option<&str>, flag: &str) -> String {
    match flags {
        Some(f) => format!("{f},{flag}"),
        None => flag.to_owned(),
    }
}

/// The billing tag under which KAZOO charges per minute.
pub(crate) const PER_MINUTE: &str = "per_minute";

/// A legs frame's rating input columns, each by its name.
pub(crate) struct InputColumns<'a> {
    billing_seconds: &'a Int64Chunked,
    billing_seconds_offset: &'a Int64Chunked,
    rate_nocharge_time: &'a Int64Chunked,
    rate: &'a Int64Chunked,
    rate_increment: &'a Int64Chunked,
    rate_minimum: &'a Int64Chunked,
    surcharge: &'a Int64Chunked,
    discount_percentage: &'a Int64Chunked,
}

impl<'a> InputColumns<'a> {
    /// Errors: a column missing or not Int64.
    pub(crate) fn of(df: &'a DataFrame) -> PolarsResult<Self> {
        let c = |name: &str| df.column(name).and_then(|c| c.i64());
        Ok(InputColumns {
            billing_seconds: c(BILLING_SECONDS)?,
            billing_seconds_offset: c(BILLING_SECONDS_OFFSET)?,
            rate_nocharge_time: c(RATE_NOCHARGE_TIME)?,
            rate: c(RATE)?,
            rate_increment: c(RATE_INCREMENT)?,
            rate_minimum: c(RATE_MINIMUM)?,
            surcharge: c(SURCHARGE)?,
            discount_percentage: c(DISCOUNT_PERCENTAGE)?,
        })
    }

    /// Each row's inputs, in row order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = Inputs> + '_ {
        self.billing_seconds
            .iter()
            .zip(self.billing_seconds_offset.iter())
            .zip(self.rate_nocharge_time.iter())
            .zip(self.rate.iter())
            .zip(self.rate_increment.iter())
            .zip(self.rate_minimum.iter())
            .zip(self.surcharge.iter())
            .zip(self.discount_percentage.iter())
            .map(
                |(
                    (
                        (((((billing_seconds, offset), nocharge), rate), increment), minimum),
                        surcharge,
                    ),
                    discount,
                )| Inputs {
                    billing_seconds,
                    billing_seconds_offset: offset,
                    rate_nocharge_time: nocharge,
                    rate,
                    rate_increment: increment,
                    rate_minimum: minimum,
                    surcharge,
                    discount_percentage: discount,
                },
            )
    }
}

/// The deck's parameters for a leg as [`apply_deck`] stored them (`deck_*` columns; all null
/// when the deck has no rate for it).
#[derive(Debug, Clone, Copy, Default)]
struct DeckParams {
    rate: Option<i64>,
    increment: Option<i64>,
    minimum: Option<i64>,
    surcharge: Option<i64>,
    nocharge: Option<i64>,
}

fn deck_params(df: &DataFrame) -> PolarsResult<impl Iterator<Item = DeckParams> + '_> {
    let c = |name: &str| df.column(name).and_then(|c| c.i64());
    Ok(c(DECK_RATE)?
        .iter()
        .zip(c(DECK_RATE_INCREMENT)?.iter())
        .zip(c(DECK_RATE_MINIMUM)?.iter())
        .zip(c(DECK_SURCHARGE)?.iter())
        .zip(c(DECK_NOCHARGE_TIME)?.iter())
        .map(
            |((((rate, increment), minimum), surcharge), nocharge)| DeckParams {
                rate,
                increment,
                minimum,
                surcharge,
                nocharge,
            },
        ))
}

/// Whether a leg is unrated: billed per minute (by the party asked about) and without a rate.
/// A column-shaped export (crossbar's CSV and listing) writes a missing rate as 0, so there a
/// rate of 0 is none too; a JSON CDR's rate of 0 is a rate (hotornot priced the call at 0).
/// KAZOO charges an unrated per-minute call nothing (`ecallmgr_fs_authz` lets it through when
/// the rate lookup fails unless `*_rate_required`). The one rule for the `unrated` flag, the
/// `unrated` reconciliation classes and `daily.unrated_per_minute_legs` (`queries/daily.sql`).
pub(crate) fn is_unrated(per_minute: bool, rate: Option<i64>, column_shaped: bool) -> bool {
    per_minute && (rate.is_none() || (column_shaped && rate == Some(0)))
}

/// Adds the rated columns to a legs frame (`billed_seconds`, `rated_cost_units`, `cost_units`,
/// `reseller_cost_units`) and `rating_flags`: its `parse_flags` and the flags this stage adds.
pub fn rate_frame(df: &mut DataFrame, rounding: Rounding) -> PolarsResult<()> {
    let n = df.height();
    let inputs = InputColumns::of(df)?;
    let csv = df.column(SOURCE_FORMAT)?.str()?;
    let acct = df.column(ACCOUNT_BILLING)?.str()?;
    let resl = df.column(RESELLER_BILLING)?.str()?;
    let flags = df.column(PARSE_FLAGS)?.str()?;

    let mut billed = Vec::with_capacity(n);
    let mut rated = Vec::with_capacity(n);
    let mut cost = Vec::with_capacity(n);
    let mut reseller = Vec::with_capacity(n);
    let mut new_flags = StringChunkedBuilder::new(RATING_FLAGS.into(), n);
    let rows = acct
        .iter()
        .zip(resl.iter())
        .zip(flags.iter())
        .zip(inputs.rows())
        .zip(deck_params(df)?)
        .zip(csv.iter());
    for (((((a, r), f), inp), deck), format) in rows {
        let (a_pm, r_pm) = (a == Some(PER_MINUTE), r == Some(PER_MINUTE));
        let column_shaped = crate::schema::is_column_shaped(format);
        // The parser's flags, and `unrated` by the one rule whoever prices the leg.
        let f = match is_unrated(a_pm || r_pm, inp.rate, column_shaped) {
            true => Some(with_flag(f, UNRATED)),
            false => f.map(str::to_owned),
        };
        let f = f.as_deref();
        if column_shaped {
            // The export carries no increment or minimum: the deck's rate prices the leg.
            let Some(deck_rate) = deck.rate else {
                unpriced(&mut [&mut billed, &mut rated, &mut cost, &mut reseller]);
                new_flags.append_value(with_flag(f, NO_DECK_RATE));
                continue;
            };
            let priced = Inputs {
                rate: Some(deck_rate),
                rate_nocharge_time: deck.nocharge,
                rate_increment: deck.increment,
                rate_minimum: deck.minimum,
                surcharge: deck.surcharge,
                ..inp
            };
            let c = rate(&priced, rounding);
            if bounded(c.cost_units).is_none() {
                unpriced(&mut [&mut billed, &mut rated, &mut cost, &mut reseller]);
                new_flags.append_value(with_flag(Some(&with_flag(f, DECK_PRICED)), BEYOND_BOUNDS));
                continue;
            }
            billed.push(Some(c.billed_seconds));
            rated.push(Some(c.cost_units));
            cost.push(Some(if a_pm { c.cost_units } else { 0 }));
            reseller.push(Some(if r_pm { c.cost_units } else { 0 }));
            new_flags.append_value(with_flag(f, DECK_PRICED));
            continue;
        }
        let c = rate(&inp, rounding);
        if bounded(c.cost_units).is_none() {
            unpriced(&mut [&mut billed, &mut rated, &mut cost, &mut reseller]);
            new_flags.append_value(with_flag(f, BEYOND_BOUNDS));
            continue;
        }
        billed.push(Some(c.billed_seconds));
        rated.push(Some(c.cost_units));
        cost.push(Some(if a_pm { c.cost_units } else { 0 }));
        reseller.push(Some(if r_pm { c.cost_units } else { 0 }));
        new_flags.append_option(f);
    }
    let carrier = carrier_cost(df, rounding)?;
    let cols = [
        Int64Chunked::from_iter_options(BILLED_SECONDS.into(), billed.into_iter()).into_column(),
        Int64Chunked::from_iter_options(RATED_COST_UNITS.into(), rated.into_iter()).into_column(),
        Int64Chunked::from_iter_options(COST_UNITS.into(), cost.into_iter()).into_column(),
        Int64Chunked::from_iter_options(RESELLER_COST_UNITS.into(), reseller.into_iter())
            .into_column(),
        new_flags.finish().into_column(),
        carrier.into_column(),
    ];
    for c in cols {
        df.with_column(c)?;
    }
    Ok(())
}

/// What the carrier charges for each leg (`carrier_cost_units`, units): KAZOO's formula
/// (`kapps_call_util:calculate_call/1`, in the run's `--rounding`) with the carrier's rate, the
/// leg's `pvt_cost` (units per minute, hotornot's `Pvt-Cost`), in place of the customer's, and
/// the leg's billable seconds, `rate_increment` and `rate_minimum`; no surcharge (the deck's
/// `pvt_rate_surcharge` is not among the rate variables ecallmgr keeps), no discount and no
/// no-charge time (both are the customer's, not the carrier's). Null when `pvt_cost` is absent
/// or 0: `kzd_rates:private_cost/1` gives 0 for a deck row without `pvt_internal_rate_cost`, so
/// 0 is unknown, not free. A leg whose cost would exceed [`MAX_LEG_UNITS`] is null too.
fn carrier_cost(df: &DataFrame, rounding: Rounding) -> PolarsResult<Int64Chunked> {
    let inputs = InputColumns::of(df)?;
    let pvt_cost = df.column(crate::schema::PVT_COST)?.i64()?;
    let cost = inputs.rows().zip(pvt_cost.iter()).map(|(inp, pvt)| {
        let pvt = pvt.filter(|r| *r != 0)?;
        let carrier = Inputs {
            rate: Some(pvt),
            surcharge: None,
            discount_percentage: None,
            rate_nocharge_time: None,
            ..inp
        };
        bounded(rate(&carrier, rounding).cost_units)
    });
    Ok(Int64Chunked::from_iter_options(
        crate::schema::CARRIER_COST_UNITS.into(),
        cost,
    ))
}

/// A leg left unpriced: null in each of its money and billed-seconds columns.
fn unpriced(cols: &mut [&mut Vec<Option<i64>>]) {
    for c in cols {
        c.push(None);
    }
}

/// One integer of a [`DeckPick`].
type DeckField = fn(&DeckPick) -> i64;

/// A leg's deck rate: its name, parameters, and what the leg costs with them.
struct DeckPick {
    name: Option<String>,
    rate: i64,
    increment: i64,
    minimum: i64,
    surcharge: i64,
    nocharge: i64,
    cost_units: i64,
}

/// The deck's choice for each leg: `deck_rate_name`, `deck_rate` (units per minute),
/// `deck_rate_increment`, `deck_rate_minimum`, `deck_surcharge` (units), `deck_nocharge_time`
/// and `deck_cost_units` (KAZOO's formula with the deck's parameters and the leg's seconds,
/// offset and discount). All null without a deck or when no rate matches the callee number
/// (`callee_id_number`, else the user part of `request`: KAZOO's To-DID), looked up as
/// [`DeckSet::find`] does with the leg's `call_direction`, `caller_id_number` (From-DID) and
/// `reseller_id`.
pub fn apply_deck(
    df: &mut DataFrame,
    decks: Option<&DeckSet>,
    rounding: Rounding,
) -> PolarsResult<()> {
    let n = df.height();
    let Some(decks) = decks else {
        for c in DECK_COLS {
            let dtype = if *c == DECK_RATE_NAME {
                DataType::String
            } else {
                DataType::Int64
            };
            df.with_column(Column::full_null((*c).into(), n, &dtype))?;
        }
        return Ok(());
    };
    let strs =
        |c: &str| -> PolarsResult<Vec<Option<&str>>> { Ok(df.column(c)?.str()?.iter().collect()) };
    let accounts = strs(ACCOUNT_ID)?;
    let callee = strs("callee_id_number")?;
    let request = strs("request")?;
    let direction = strs("call_direction")?;
    let caller = strs("caller_id_number")?;
    let reseller = strs("reseller_id")?;
    let ints =
        |c: &str| -> PolarsResult<Vec<Option<i64>>> { Ok(df.column(c)?.i64()?.iter().collect()) };
    let (secs, offset, discount) = (
        ints(BILLING_SECONDS)?,
        ints(BILLING_SECONDS_OFFSET)?,
        ints(DISCOUNT_PERCENTAGE)?,
    );
    let picks: Vec<Option<DeckPick>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let number = callee[i]
                .filter(|n| !n.is_empty())
                .or_else(|| request[i].map(request_user))?;
            let r = decks.find(&Lookup {
                account: accounts[i],
                number,
                direction: direction[i],
                caller_id_number: caller[i],
                reseller_id: reseller[i],
            })?;
            let c = rate(
                &Inputs {
                    billing_seconds: secs[i],
                    billing_seconds_offset: offset[i],
                    rate_nocharge_time: Some(r.nocharge),
                    rate: Some(r.rate),
                    rate_increment: Some(r.increment),
                    rate_minimum: Some(r.minimum),
                    surcharge: Some(r.surcharge),
                    discount_percentage: discount[i],
                },
                rounding,
            );
            Some(DeckPick {
                name: r.name.clone(),
                rate: r.rate,
                increment: r.increment,
                minimum: r.minimum,
                surcharge: r.surcharge,
                nocharge: r.nocharge,
                cost_units: c.cost_units,
            })
        })
        .collect();
    let mut name = StringChunkedBuilder::new(DECK_RATE_NAME.into(), n);
    for p in &picks {
        name.append_option(p.as_ref().and_then(|p| p.name.as_deref()));
    }
    df.with_column(name.finish().into_column())?;
    let field: [(&str, DeckField); 6] = [
        (DECK_RATE, |p| p.rate),
        (DECK_RATE_INCREMENT, |p| p.increment),
        (DECK_RATE_MINIMUM, |p| p.minimum),
        (DECK_SURCHARGE, |p| p.surcharge),
        (DECK_NOCHARGE_TIME, |p| p.nocharge),
        (DECK_COST_UNITS, |p| p.cost_units),
    ];
    for (column, get) in field {
        let v = picks.iter().map(|p| p.as_ref().map(get));
        let mut c = Int64Chunked::from_iter_options(column.into(), v);
        if column == DECK_COST_UNITS {
            // A price beyond the bounds is none (the leg is flagged when rated).
            c = c.apply(|u| u.and_then(bounded));
        }
        df.with_column(c.into_column())?;
    }
    Ok(())
}

/// The user part of a SIP request URI (`sip:+15551234567@realm` -> `+15551234567`).
fn request_user(request: &str) -> &str {
    let r = request.trim();
    let r = r
        .strip_prefix("sips:")
        .or_else(|| r.strip_prefix("sip:"))
        .unwrap_or(r);
    r.split('@').next().unwrap_or(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_print_as_four_decimals() {
        assert_eq!(units_to_decimal(4524), "0.4524");
        assert_eq!(units_to_decimal(123_456_789), "12345.6789");
        assert_eq!(units_to_decimal(-5), "-0.0005");
    }
}
