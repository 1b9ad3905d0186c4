//! Stage 3: rating every leg with KAZOO's formula, column by column.
//!
//! Adds billed_seconds, rated_cost_units, cost_units (the customer's charge: the rated cost when
//! account_billing is per_minute, else 0) and reseller_cost_units (the same rule with
//! reseller_billing), and flags per-minute legs that carry no rate (`unrated`), which KAZOO
//! silently bills at 0. JSON legs are rated from their own custom_channel_vars; crossbar CSV
//! legs, which carry no increment or minimum, from the rate deck ([`apply_deck`] first).

pub mod deck;
pub mod e164;
pub mod kazoo;

use polars::prelude::*;
use rayon::prelude::*;

pub use deck::{DeckSet, Filter, Hotornot, Lookup, RateSort};
pub use e164::E164Converters;
pub use kazoo::{rate, Charge, Inputs, Rounding};

use crate::schema::{
    ACCOUNT_BILLING, ACCOUNT_ID, BILLED_SECONDS, BILLING_SECONDS, BILLING_SECONDS_OFFSET,
    COST_UNITS, DECK_COLS, DECK_COST_UNITS, DECK_NOCHARGE_TIME, DECK_RATE, DECK_RATE_INCREMENT,
    DECK_RATE_MINIMUM, DECK_RATE_NAME, DECK_SURCHARGE, DISCOUNT_PERCENTAGE, RATE, RATED_COST_UNITS,
    RATE_INCREMENT, RATE_MINIMUM, RATE_NOCHARGE_TIME, RATING_FLAGS, RESELLER_BILLING,
    RESELLER_COST_UNITS, SOURCE_FORMAT, SURCHARGE,
};

/// The billing tag under which KAZOO charges per minute.
pub const PER_MINUTE: &str = "per_minute";

/// The rating input columns, in the order [`Inputs::from_array`] takes them.
pub const INPUT_COLS: [&str; 8] = [
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
    let deck: Vec<&Int64Chunked> = [
        DECK_RATE,
        DECK_RATE_INCREMENT,
        DECK_RATE_MINIMUM,
        DECK_SURCHARGE,
        DECK_NOCHARGE_TIME,
    ]
    .iter()
    .map(|c| df.column(c).and_then(|c| c.i64()))
    .collect::<PolarsResult<_>>()?;
    let mut deck_its: Vec<_> = deck.iter().map(|c| c.iter()).collect();
    let csv = df.column(SOURCE_FORMAT)?.str()?;
    let mut csv_it = csv.iter();
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
        let mut d = [None; 5];
        for (slot, it) in d.iter_mut().zip(deck_its.iter_mut()) {
            *slot = it.next().flatten();
        }
        let from_csv = csv_it.next().flatten() == Some("csv");
        let (a_pm, r_pm) = (a == Some(PER_MINUTE), r == Some(PER_MINUTE));
        if from_csv {
            // The export carries no increment or minimum: the deck's rate prices the leg.
            let Some(deck_rate) = d[0] else {
                billed.push(None);
                rated.push(None);
                cost.push(None);
                reseller.push(None);
                let flag = if (a_pm || r_pm) && v[3].is_none() {
                    "unrated,no_deck_rate"
                } else {
                    "no_deck_rate"
                };
                match f {
                    Some(f) => new_flags.append_value(format!("{f},{flag}")),
                    None => new_flags.append_value(flag),
                }
                continue;
            };
            v[2] = d[4];
            v[4] = d[1];
            v[5] = d[2];
            v[6] = d[3];
            v[3] = Some(deck_rate);
            let c = rate(&Inputs::from_array(v), rounding);
            billed.push(Some(c.billed_seconds));
            rated.push(Some(c.cost_units));
            cost.push(Some(if a_pm { c.cost_units } else { 0 }));
            reseller.push(Some(if r_pm { c.cost_units } else { 0 }));
            new_flags.append_option(f);
            continue;
        }
        let inp = Inputs::from_array(v);
        let c = rate(&inp, rounding);
        billed.push(Some(c.billed_seconds));
        rated.push(Some(c.cost_units));
        cost.push(Some(if a_pm { c.cost_units } else { 0 }));
        reseller.push(Some(if r_pm { c.cost_units } else { 0 }));
        if (a_pm || r_pm) && inp.rate.is_none() {
            match f {
                Some(f) => new_flags.append_value(format!("{f},unrated")),
                None => new_flags.append_value("unrated"),
            }
        } else {
            new_flags.append_option(f);
        }
    }
    drop((its, deck_its, csv_it));
    let cols = [
        Int64Chunked::from_iter_options(BILLED_SECONDS.into(), billed.into_iter()).into_column(),
        Int64Chunked::from_iter_options(RATED_COST_UNITS.into(), rated.into_iter()).into_column(),
        Int64Chunked::from_iter_options(COST_UNITS.into(), cost.into_iter()).into_column(),
        Int64Chunked::from_iter_options(RESELLER_COST_UNITS.into(), reseller.into_iter())
            .into_column(),
        new_flags.finish().into_column(),
    ];
    for c in cols {
        df.with_column(c)?;
    }
    Ok(())
}

/// A leg's deck rate: its name, (rate, increment, minimum, surcharge, nocharge), and the cost.
type DeckPick = (Option<String>, [i64; 5], i64);

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
            Some((
                r.name.clone(),
                [r.rate, r.increment, r.minimum, r.surcharge, r.nocharge],
                c.cost_units,
            ))
        })
        .collect();
    let mut name = StringChunkedBuilder::new(DECK_RATE_NAME.into(), n);
    for p in &picks {
        name.append_option(p.as_ref().and_then(|p| p.0.as_deref()));
    }
    df.with_column(name.finish().into_column())?;
    for (k, c) in DECK_COLS[1..6].iter().enumerate() {
        let v = picks.iter().map(|p| p.as_ref().map(|p| p.1[k]));
        df.with_column(Int64Chunked::from_iter_options((*c).into(), v).into_column())?;
    }
    let v = picks.iter().map(|p| p.as_ref().map(|p| p.2));
    df.with_column(Int64Chunked::from_iter_options(DECK_COST_UNITS.into(), v).into_column())?;
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
