//! KAZOO ledgers: the `ledgers` table's rows, read from the two shapes KAZOO writes them in.
//!
//! jonny5 writes a per-minute call's charge as a ledger (`j5_per_minute:create_ledger_usage/4`):
//! `account.id`, `source.service` `per-minute-voip`, `source.id` the call_id, `description` the
//! rate's name, `usage` `{type: voice, quantity: charged seconds, unit: sec}`, `period.start`
//! (Gregorian seconds), `metadata` (to, from, direction, the rate used, ...) and the amount.
//! Other services write other sources (`mobile_data`, a reseller's manual `debit` or `credit`).
//! The two shapes differ in the amount's unit and sign, and rerate keeps one unit:
//! - **stored** (`pvt_type: ledger` in a month database, or any ledger with an `_id`):
//!   `amount` is in units of 1/10,000, never negative (`kz_ledger:set_unit_amount/2` keeps
//!   `abs(Amount)`), and `pvt_ledger_type` says `debit` or `credit` (`debit` when absent, the
//!   `#ledger{}` record's default);
//! - **listing** (a saved `GET /v2/accounts/{ID}/ledgers/{SOURCE_SERVICE}` page, or one ledger
//!   fetched by id: `kz_ledger:public_json/1`): `amount` is in currency (`amount_to_dollars/1`,
//!   `kz_currency:units_to_dollars/1` = units / 10,000) and a debit is negative; the private
//!   fields (`pvt_ledger_type`, `_id`) are gone and the id is `id`. (KAZOO's own
//!   `ledgers.md` shows a listing's `amount` as 6 for three seconds of a call; the code
//!   converts to dollars, and the code wins.)
//!
//! In the table `amount_units` is `kz_ledger:amount/1`: units of 1/10,000, a debit negative, a
//! credit positive, whatever the shape read; a listing's dollars go back to units as
//! `kz_currency:dollars_to_units/1` does (rounded).

use std::sync::Arc;

use polars::prelude::*;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::record::RejectReason;
use crate::schema::{ACCOUNT_ID, DATE, SOURCE_FILE, SOURCE_LINE, SOURCE_OFFSET};
use crate::time::{gregorian_to_unix_micros, ReportTz};

/// The table's name.
pub(crate) const LEDGERS_TABLE: &str = "ledgers";
/// The ledger document's id (`_id` stored, `id` listed): `YYYYMM-<md5>` as `kz_ledger` makes it.
pub(crate) const LEDGER_ID: &str = "ledger_id";
/// `source.service`: `per-minute-voip` for a call's charge.
pub(crate) const SOURCE_SERVICE: &str = "source_service";
/// `source.id`: the call_id, for `per-minute-voip`.
pub(crate) const SOURCE_ID: &str = "source_id";
pub(crate) const DESCRIPTION: &str = "description";
/// `usage.type` (`voice`), `usage.quantity` (charged seconds for `voice`), `usage.unit` (`sec`).
pub(crate) const USAGE_TYPE: &str = "usage_type";
pub(crate) const USAGE_QUANTITY: &str = "usage_quantity";
pub(crate) const USAGE_UNIT: &str = "usage_unit";
/// `debit` or `credit` (`pvt_ledger_type`; a listing's sign).
pub(crate) const LEDGER_TYPE: &str = "ledger_type";
/// Units of 1/10,000, a debit negative (`kz_ledger:amount/1`).
pub(crate) const AMOUNT_UNITS: &str = "amount_units";
/// `period.start` and `period.end`, UTC timestamps (KAZOO's Gregorian seconds).
pub(crate) const PERIOD_START: &str = "period_start";
pub(crate) const PERIOD_END: &str = "period_end";
pub(crate) const ACCOUNT_NAME: &str = "account_name";
/// The account whose month database holds the ledger, whose balance it moves: KAZOO's
/// `pvt_account_id` (`kz_ledger:save/1` sets it to the database's account,
/// `add_account_info/2`), for a listing the account of the page's path. jonny5 writes a call's
/// customer ledger in the customer's database and its reseller ledger in the reseller's
/// (`j5_channel_destroy:reseller_reconcile_cdr/2`), both with `account.id` the customer's and
/// the same `_id` (`create_hash/1` hashes neither database): this column tells them apart.
pub(crate) const PVT_ACCOUNT_ID: &str = "pvt_account_id";
/// `metadata` as compact JSON text (insignificant white space dropped).
pub(crate) const METADATA: &str = "metadata";
/// `stored` (a month database's document) or `listing` (a crossbar page).
pub(crate) const LEDGER_FORMAT: &str = "ledger_format";

/// The table's columns, in file order (`account_id` and `date` are the partition).
pub(crate) const LEDGER_COLS: &[&str] = &[
    LEDGER_ID,
    SOURCE_SERVICE,
    SOURCE_ID,
    DESCRIPTION,
    USAGE_TYPE,
    USAGE_QUANTITY,
    USAGE_UNIT,
    LEDGER_TYPE,
    AMOUNT_UNITS,
    PERIOD_START,
    PERIOD_END,
    ACCOUNT_NAME,
    PVT_ACCOUNT_ID,
    METADATA,
    LEDGER_FORMAT,
    SOURCE_FILE,
    SOURCE_LINE,
    SOURCE_OFFSET,
];

/// The largest amount a ledger may carry, either way: the legs' bound
/// ([`crate::rate::MAX_LEG_UNITS`]), so no sum of fewer than 9.2 million ledgers can wrap.
pub(crate) const MAX_LEDGER_UNITS: i64 = crate::rate::MAX_LEG_UNITS;

/// Which shape a ledger was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A month database's document: `amount` in units, `pvt_ledger_type` gives the sign.
    Stored,
    /// A crossbar page's item: `amount` in currency, a debit negative.
    Listing,
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Form::Stored => "stored",
            Form::Listing => "listing",
        }
    }
}

/// One ledger as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Ledger {
    pub account_id: Option<String>,
    /// Days since 1970-01-01 of `period.start` in the run's `--tz` (none without one).
    pub date: Option<i32>,
    pub ledger_id: Option<String>,
    pub source_service: String,
    pub source_id: String,
    pub description: Option<String>,
    pub usage_type: Option<String>,
    pub usage_quantity: Option<i64>,
    pub usage_unit: Option<String>,
    pub ledger_type: Option<&'static str>,
    pub amount_units: i64,
    /// Unix microseconds.
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub account_name: Option<String>,
    /// See [`PVT_ACCOUNT_ID`].
    pub pvt_account_id: Option<String>,
    pub metadata: Option<String>,
    pub form: Form,
    pub line: u64,
    pub offset: u64,
}

#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(rename = "_id")]
    doc_id: Option<String>,
    id: Option<String>,
    #[serde(borrow)]
    account: Option<&'a RawValue>,
    pvt_account_id: Option<String>,
    #[serde(borrow)]
    amount: Option<&'a RawValue>,
    description: Option<String>,
    #[serde(borrow)]
    source: Option<&'a RawValue>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
    #[serde(borrow)]
    period: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    pvt_ledger_type: Option<String>,
}

#[derive(Deserialize, Default)]
struct Account {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize, Default)]
struct Source {
    service: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize, Default)]
struct Usage<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(borrow)]
    quantity: Option<&'a RawValue>,
    unit: Option<String>,
}

#[derive(Deserialize, Default)]
struct Period<'a> {
    #[serde(borrow)]
    start: Option<&'a RawValue>,
    #[serde(borrow)]
    end: Option<&'a RawValue>,
}

fn invalid(message: impl Into<String>) -> RejectReason {
    RejectReason::new("invalid_ledger", message)
}

/// An object member (`what`), or the default when absent or null.
fn object<'a, T: Deserialize<'a> + Default>(
    v: Option<&'a RawValue>,
    what: &str,
) -> Result<T, RejectReason> {
    match v.map(RawValue::get) {
        None | Some("null") => Ok(T::default()),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| invalid(format!("{what} is not the object KAZOO writes: {e}"))),
    }
}

/// A number as KAZOO reads one with `kz_json:get_integer_value` (an integer, a float rounded,
/// or a string holding either); `None` when absent or null.
fn integer(v: Option<&RawValue>, what: &str) -> Result<Option<i64>, RejectReason> {
    let Some(text) = v.map(RawValue::get).filter(|t| *t != "null") else {
        return Ok(None);
    };
    let bare = text.trim_matches('"');
    if let Ok(i) = bare.parse::<i64>() {
        return Ok(Some(i));
    }
    match bare.parse::<f64>() {
        // Exact up to 2^53; beyond, only ever compared with a bound.
        Ok(f) if f.is_finite() && f.abs() < 9.0e18 => Ok(Some(f.round() as i64)),
        Ok(_) => Err(invalid(format!(
            "{what} is {text}, beyond a 64-bit integer"
        ))),
        _ => Err(invalid(format!("{what} is {text}, not a number"))),
    }
}

/// Reads a ledger document or listing item `text` (a JSON object). `envelope_account`: the
/// account of the page or path it came from, for an item that names none. Errors (the record
/// goes to the rejects, `invalid_ledger`): a member of the wrong shape, no `source.service` or
/// `source.id` (both required by KAZOO's `ledgers` schema), an amount that is no number or is
/// beyond [`MAX_LEDGER_UNITS`].
pub(crate) fn read(
    text: &str,
    form: Form,
    envelope_account: Option<&str>,
    tz: &ReportTz,
    (line, offset): (u64, u64),
) -> Result<Ledger, RejectReason> {
    let doc: Doc =
        serde_json::from_str(text).map_err(|e| invalid(format!("not a ledger document: {e}")))?;
    let account: Account = object(doc.account, "account")?;
    let source: Source = object(doc.source, "source")?;
    let usage: Usage = object(doc.usage, "usage")?;
    let period: Period = object(doc.period, "period")?;
    let (Some(source_service), Some(source_id)) = (source.service, source.id) else {
        return Err(invalid(
            "no source.service or no source.id (KAZOO's ledgers schema requires both)",
        ));
    };
    let units = amount_units(doc.amount, form, doc.pvt_ledger_type.as_deref())?;
    let period_start = time(period.start, "period.start")?;
    let nonblank = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let (account_id, stored_in) = (nonblank(account.id), nonblank(doc.pvt_account_id));
    let envelope = envelope_account.map(str::to_owned);
    // Whose database: a stored document says; a listing is the page's account's.
    let pvt_account_id = match form {
        Form::Stored => stored_in.clone().or(envelope.clone()),
        Form::Listing => envelope.clone().or(stored_in.clone()),
    }
    .or(account_id.clone());
    Ok(Ledger {
        account_id: account_id.or(stored_in).or(envelope),
        pvt_account_id,
        // Only `period.start`: a listing has no `pvt_created`, and a copy's day must be its
        // own data, the same in every shape.
        date: period_start.and_then(|t| tz.date_of(t)),
        ledger_id: nonblank(doc.doc_id).or(nonblank(doc.id)),
        source_service,
        source_id,
        description: doc.description,
        usage_type: usage.kind,
        usage_quantity: integer(usage.quantity, "usage.quantity")?,
        usage_unit: usage.unit,
        ledger_type: units.1,
        amount_units: units.0,
        period_start,
        period_end: time(period.end, "period.end")?,
        account_name: account.name,
        // Compact, as legs keep nested objects: a pretty-printed dump's copy reads the same.
        metadata: doc
            .metadata
            .map(|m| super::json_text::compact(m.get()).into_owned())
            .filter(|m| m != "null"),
        form,
        line,
        offset,
    })
}

/// The Gregorian seconds a period may take: 1970-01-01 to 9999-12-31 (KAZOO writes the
/// Gregorian seconds of a call, `kz_time:now_s/0`; 0 or a year 190,000 is no such time).
const PERIOD_RANGE: std::ops::RangeInclusive<i64> =
    crate::time::UNIX_EPOCH_IN_GREGORIAN..=315_569_519_999;

/// Gregorian seconds as Unix microseconds.
fn time(v: Option<&RawValue>, what: &str) -> Result<Option<i64>, RejectReason> {
    match integer(v, what)? {
        None => Ok(None),
        Some(g) => gregorian_to_unix_micros(g)
            .filter(|_| PERIOD_RANGE.contains(&g))
            .map(Some)
            .ok_or_else(|| {
                invalid(format!(
                    "{what} {g} is not a time KAZOO writes (Gregorian seconds of 1970 to 9999)"
                ))
            }),
    }
}

/// The amount in units, a debit negative, and the ledger's type.
fn amount_units(
    amount: Option<&RawValue>,
    form: Form,
    pvt_ledger_type: Option<&str>,
) -> Result<(i64, Option<&'static str>), RejectReason> {
    let text = amount.map(RawValue::get).unwrap_or("0");
    let bare = text.trim_matches('"');
    let beyond = || {
        invalid(format!(
            "amount {text} is beyond {MAX_LEDGER_UNITS} units (1/10,000 of the currency) either way"
        ))
    };
    match form {
        Form::Stored => {
            // kzd_ledgers:unit_amount/1: an integer of units, stored as its absolute value.
            let units = integer(amount, "amount")?.unwrap_or(0).checked_abs();
            let units = units
                .filter(|u| *u <= MAX_LEDGER_UNITS)
                .ok_or_else(beyond)?;
            match pvt_ledger_type {
                None | Some("debit") => Ok((-units, Some("debit"))),
                Some("credit") => Ok((units, Some("credit"))),
                Some(other) => Err(invalid(format!(
                    "pvt_ledger_type is {other:?}; KAZOO writes debit or credit"
                ))),
            }
        }
        Form::Listing => {
            let dollars: f64 = bare
                .parse()
                .map_err(|_| invalid(format!("amount is {text}, not a number")))?;
            // kz_currency:dollars_to_units/1: round(Dollars * 10000).
            let units = (dollars * 10_000.0).round();
            if !units.is_finite() || units.abs() > MAX_LEDGER_UNITS as f64 {
                return Err(beyond());
            }
            let units = units as i64;
            let kind = match units {
                u if u < 0 => Some("debit"),
                u if u > 0 => Some("credit"),
                // A zero amount's sign is lost in the listing (-0.0 prints as 0.0).
                _ => None,
            };
            Ok((units, kind))
        }
    }
}

/// The ledgers read from each file, in file order (`files`: the file's name for
/// `source_file` and its ledgers), as the table's columns plus `account_id` and `date`.
pub(crate) fn frame(files: Vec<(Arc<str>, Vec<Ledger>)>) -> PolarsResult<DataFrame> {
    let n: usize = files.iter().map(|(_, l)| l.len()).sum();
    let rows = files
        .iter()
        .flat_map(|(f, ls)| ls.iter().map(move |l| (f, l)));
    let rows: Vec<(&Arc<str>, &Ledger)> = rows.collect();
    macro_rules! col {
        ($name:expr, $f:expr) => {
            Column::new($name.into(), rows.iter().map($f).collect::<Vec<_>>())
        };
    }
    let micros = |name: &str, v: Vec<Option<i64>>| -> Column {
        Int64Chunked::from_iter_options(name.into(), v.into_iter())
            .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            .into_column()
    };
    let columns = vec![
        col!(LEDGER_ID, |(_, l)| l.ledger_id.as_deref()),
        col!(SOURCE_SERVICE, |(_, l)| l.source_service.as_str()),
        col!(SOURCE_ID, |(_, l)| l.source_id.as_str()),
        col!(DESCRIPTION, |(_, l)| l.description.as_deref()),
        col!(USAGE_TYPE, |(_, l)| l.usage_type.as_deref()),
        col!(USAGE_QUANTITY, |(_, l)| l.usage_quantity),
        col!(USAGE_UNIT, |(_, l)| l.usage_unit.as_deref()),
        col!(LEDGER_TYPE, |(_, l)| l.ledger_type),
        col!(AMOUNT_UNITS, |(_, l)| l.amount_units),
        micros(
            PERIOD_START,
            rows.iter().map(|(_, l)| l.period_start).collect(),
        ),
        micros(PERIOD_END, rows.iter().map(|(_, l)| l.period_end).collect()),
        col!(ACCOUNT_NAME, |(_, l)| l.account_name.as_deref()),
        col!(PVT_ACCOUNT_ID, |(_, l)| l.pvt_account_id.as_deref()),
        col!(METADATA, |(_, l)| l.metadata.as_deref()),
        col!(LEDGER_FORMAT, |(_, l)| l.form.name()),
        col!(SOURCE_FILE, |(f, _)| f.as_ref()),
        col!(SOURCE_LINE, |(_, l)| l.line as i64),
        col!(SOURCE_OFFSET, |(_, l)| l.offset as i64),
        col!(ACCOUNT_ID, |(_, l)| l.account_id.as_deref()),
        Int32Chunked::from_iter_options(DATE.into(), rows.iter().map(|(_, l)| l.date))
            .into_date()
            .into_column(),
    ];
    DataFrame::new(n, columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;

    /// `text` read in `form` under UTC.
    fn get(text: &str, form: Form) -> Result<Ledger, String> {
        let tz = ReportTz::parse("UTC")?;
        read(text, form, None, &tz, (3, 40)).map_err(|e| e.message)
    }

    /// Why `text` is refused.
    fn refused(text: &str) -> Result<RejectReason, String> {
        let tz = ReportTz::parse("UTC")?;
        match read(text, Form::Stored, None, &tz, (1, 0)) {
            Ok(_) => Err("accepted".into()),
            Err(e) => Ok(e),
        }
    }

    /// A ledger as `j5_per_minute:create_ledger_usage/4` and `kz_ledger:to_json/1` store it.
    const STORED: &str = r#"{"_id":"201811-0f8a","_rev":"1-a","account":{"id":"acc1","name":"Acme"},"amount":600,"description":"US Hollywood","metadata":{"rate":{"value":0.12}},"period":{"start":63709747200},"source":{"id":"call-1","service":"per-minute-voip"},"usage":{"quantity":30,"type":"voice","unit":"sec"},"pvt_account_id":"acc1","pvt_created":63709747260,"pvt_ledger_type":"debit","pvt_type":"ledger"}"#;

    #[test]
    fn a_stored_ledger_is_in_units_and_a_debit_is_negative() -> R {
        let l = get(STORED, Form::Stored)?;
        assert_eq!(l.amount_units, -600);
        assert_eq!(l.ledger_type, Some("debit"));
        assert_eq!(l.account_id.as_deref(), Some("acc1"));
        assert_eq!(l.ledger_id.as_deref(), Some("201811-0f8a"));
        assert_eq!(
            (l.source_service.as_str(), l.source_id.as_str()),
            ("per-minute-voip", "call-1")
        );
        assert_eq!(l.usage_quantity, Some(30));
        // 63709747200 Gregorian seconds = 1542528000 Unix = 2018-11-18T08:00:00Z.
        assert_eq!(l.period_start, Some(1_542_528_000_000_000));
        assert_eq!(
            l.date.map(crate::time::format_date).as_deref(),
            Some("2018-11-18")
        );
        assert_eq!(l.metadata.as_deref(), Some(r#"{"rate":{"value":0.12}}"#));
        let credit = STORED.replace("\"debit\"", "\"credit\"");
        assert_eq!(get(&credit, Form::Stored)?.amount_units, 600);
        // No pvt_ledger_type: the #ledger{} record's default, a debit.
        let bare = STORED.replace(",\"pvt_ledger_type\":\"debit\"", "");
        assert_eq!(get(&bare, Form::Stored)?.amount_units, -600);
        Ok(())
    }

    #[test]
    fn a_listed_ledger_is_in_dollars_and_comes_back_to_the_same_units() -> R {
        // kz_ledger:public_json/1 of the stored one: 600 units -> -0.06 dollars.
        let listed = r#"{"account":{"id":"acc1","name":"Acme"},"amount":-0.06,"description":"US Hollywood","period":{"start":63709747200},"source":{"id":"call-1","service":"per-minute-voip"},"usage":{"quantity":30,"type":"voice","unit":"sec"},"id":"201811-0f8a"}"#;
        let l = get(listed, Form::Listing)?;
        let s = get(STORED, Form::Stored)?;
        assert_eq!(
            (l.amount_units, l.ledger_type),
            (s.amount_units, s.ledger_type)
        );
        assert_eq!(l.ledger_id, s.ledger_id);
        // 0.0003 dollars is 3 units (0.0003 * 10000 = 2.9999999999999996, rounded).
        let small = listed.replace("-0.06", "0.0003");
        let l = get(&small, Form::Listing)?;
        assert_eq!((l.amount_units, l.ledger_type), (3, Some("credit")));
        Ok(())
    }

    #[test]
    fn a_ledger_without_its_source_or_with_a_wild_amount_is_rejected() -> R {
        let no_source = STORED.replace(
            r#""source":{"id":"call-1","service":"per-minute-voip"},"#,
            "",
        );
        let e = refused(&no_source)?;
        assert_eq!(e.code, "invalid_ledger");
        let huge = STORED.replace("\"amount\":600", "\"amount\":1e17");
        assert!(refused(&huge)?.message.contains("beyond"));
        let text = STORED.replace("\"amount\":600", "\"amount\":\"lots\"");
        assert!(refused(&text).is_ok());
        for start in ["0", "-1", "9000000000000"] {
            let wild = STORED.replace("63709747200", start);
            let why = refused(&wild)?;
            assert!(
                why.message.contains("period.start"),
                "{start}: {}",
                why.message
            );
        }
        let kind = STORED.replace("\"debit\"", "\"refund\"");
        assert!(refused(&kind)?.message.contains("refund"));
        Ok(())
    }
}
