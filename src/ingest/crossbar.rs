//! KAZOO's crossbar CDR columns, the one mapper for both shapes that carry them: the CSV export
//! (`csv_export.rs`) and the items of a `GET /v2/accounts/{id}/cdrs` listing page (JSON).
//!
//! crossbar writes both through the same column functions (`kzd_cdrs.hrl` `?COLUMNS` and
//! `?COLUMNS_RESELLER`, the `col_*` functions of `kzd_cdrs.erl`; in 4.x the same list lived in
//! `cb_cdrs.erl`), called with `Timestamp = timestamp - duration_seconds` (`cb_cdrs:normalize_cdr/3`):
//! every time column holds the leg's START. Each column here knows what its function can write
//! ([`Col::accepts`], used to align the cells of an unquoted CSV row) and where it goes in the
//! legs schema ([`map_row`]).

use std::borrow::Cow;

use super::record::{
    check_account_id, check_call_id, Flags, Leg, RejectReason, N_CCV, N_INT, N_JSON, N_TOP,
};
use crate::rate::deck::dollars_to_units;
use crate::schema::{
    CCV_STR, INT_FIELDS, I_BILLING_SECONDS, I_CHANNEL_CREATED_TIME, I_DURATION_SECONDS,
    I_TIMESTAMP, J_EXTRA, RATE, TOP_STR,
};
use crate::time::{gregorian_to_unix_micros, ReportTz, UNIX_EPOCH_IN_GREGORIAN};

/// One crossbar column, named as in KAZOO's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Col {
    Id,
    CallId,
    CallerIdNumber,
    CallerIdName,
    CalleeIdNumber,
    CalleeIdName,
    DurationSeconds,
    BillingSeconds,
    Timestamp,
    HangupCause,
    Disposition,
    OtherLegCallId,
    OwnerId,
    To,
    From,
    Direction,
    Request,
    AuthorizingId,
    Cost,
    DialedNumber,
    CallingFrom,
    Datetime,
    UnixTimestamp,
    UnixTimestampMicro,
    Rfc1036,
    Iso8601,
    Iso8601Combined,
    CallType,
    Rate,
    RateName,
    BridgeId,
    RecordingUrl,
    MediaRecordings,
    MediaServer,
    CallPriority,
    InteractionId,
    ResellerCost,
    ResellerCallType,
    /// `/cdrs/interaction` rows of 4.3 (`col_inception_direction`).
    InceptionDirection,
    /// A column KAZOO does not write: kept in `extra`, and never holds a comma.
    Other,
}

/// Every named column, with its header.
const NAMES: &[(Col, &str)] = &[
    (Col::Id, "id"),
    (Col::CallId, "call_id"),
    (Col::CallerIdNumber, "caller_id_number"),
    (Col::CallerIdName, "caller_id_name"),
    (Col::CalleeIdNumber, "callee_id_number"),
    (Col::CalleeIdName, "callee_id_name"),
    (Col::DurationSeconds, "duration_seconds"),
    (Col::BillingSeconds, "billing_seconds"),
    (Col::Timestamp, "timestamp"),
    (Col::HangupCause, "hangup_cause"),
    (Col::Disposition, "disposition"),
    (Col::OtherLegCallId, "other_leg_call_id"),
    (Col::OwnerId, "owner_id"),
    (Col::To, "to"),
    (Col::From, "from"),
    (Col::Direction, "direction"),
    (Col::Request, "request"),
    (Col::AuthorizingId, "authorizing_id"),
    (Col::Cost, "cost"),
    (Col::DialedNumber, "dialed_number"),
    (Col::CallingFrom, "calling_from"),
    (Col::Datetime, "datetime"),
    (Col::UnixTimestamp, "unix_timestamp"),
    (Col::UnixTimestampMicro, "unix_timestamp_micro"),
    (Col::Rfc1036, "rfc_1036"),
    (Col::Iso8601, "iso_8601"),
    (Col::Iso8601Combined, "iso_8601_combined"),
    (Col::CallType, "call_type"),
    (Col::Rate, "rate"),
    (Col::RateName, "rate_name"),
    (Col::BridgeId, "bridge_id"),
    (Col::RecordingUrl, "recording_url"),
    (Col::MediaRecordings, "media_recordings"),
    (Col::MediaServer, "media_server"),
    (Col::CallPriority, "call_priority"),
    (Col::InteractionId, "interaction_id"),
    (Col::ResellerCost, "reseller_cost"),
    (Col::ResellerCallType, "reseller_call_type"),
    (Col::InceptionDirection, "inception_direction"),
];

/// KAZOO 5.0's header (`kzd_cdrs.hrl` `?COLUMNS`), without the reseller columns.
pub(crate) const HEADER_50: &[&str] = &[
    "id",
    "call_id",
    "caller_id_number",
    "caller_id_name",
    "callee_id_number",
    "callee_id_name",
    "duration_seconds",
    "billing_seconds",
    "timestamp",
    "hangup_cause",
    "other_leg_call_id",
    "owner_id",
    "to",
    "from",
    "direction",
    "request",
    "authorizing_id",
    "cost",
    "dialed_number",
    "calling_from",
    "datetime",
    "unix_timestamp",
    "unix_timestamp_micro",
    "rfc_1036",
    "iso_8601",
    "iso_8601_combined",
    "call_type",
    "rate",
    "rate_name",
    "bridge_id",
    "recording_url",
    "media_recordings",
    "media_server",
    "call_priority",
    "interaction_id",
];

/// The reseller columns crossbar appends when the requesting account is a reseller.
pub(crate) const HEADER_RESELLER: &[&str] = &["reseller_cost", "reseller_call_type"];

/// Keys a listing row has and no stored CDR document, bus event or webhook payload has: with
/// no `custom_channel_vars` and no `call_direction`, an object holding one of them is a
/// crossbar listing row.
pub(crate) const LISTING_ONLY_KEYS: &[&str] = &[
    "direction",
    "call_type",
    "cost",
    "dialed_number",
    "calling_from",
    "datetime",
    "unix_timestamp",
    "unix_timestamp_micro",
    "rfc_1036",
    "iso_8601",
    "iso_8601_combined",
    "reseller_cost",
    "reseller_call_type",
];

/// Whether an object with these top-level keys is a crossbar listing row (the CSV columns as
/// JSON keys) rather than a CDR document. Decided by keys only, never by the file's name.
pub(crate) fn is_listing_keys<'k>(
    has_ccv: bool,
    has_call_direction: bool,
    mut keys: impl Iterator<Item = &'k str>,
) -> bool {
    !has_ccv && !has_call_direction && keys.any(|k| LISTING_ONLY_KEYS.contains(&k))
}

/// How many comma-separated pieces of an unquoted row a column's cell may span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Span {
    /// The column's function cannot write a comma.
    One,
    /// `rfc_1036`: one comma of its own when not empty.
    Rfc,
    /// Free text (names, rate_name, URLs, media names): any number of commas.
    Free,
}

impl Col {
    /// The column a header names (case and surrounding blanks ignored by the caller).
    pub(crate) fn from_header(h: &str) -> Col {
        NAMES
            .iter()
            .find(|(_, n)| *n == h)
            .map_or(Col::Other, |(c, _)| *c)
    }

    pub(crate) fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("?", |(_, n)| n)
    }

    pub(crate) fn span(self) -> Span {
        match self {
            Col::CallerIdName
            | Col::CalleeIdName
            | Col::RateName
            | Col::RecordingUrl
            | Col::MediaRecordings => Span::Free,
            Col::Rfc1036 => Span::Rfc,
            _ => Span::One,
        }
    }

    /// Whether KAZOO's column function can have written `cell` (as it stands in an unquoted
    /// row: `rfc_1036` and `iso_8601` may be wrapped in the quotes KAZOO 4.2 added).
    pub(crate) fn accepts(self, cell: &str) -> bool {
        let b = cell.as_bytes();
        match self {
            Col::CallerIdName
            | Col::CalleeIdName
            | Col::RateName
            | Col::RecordingUrl
            | Col::MediaRecordings => true,
            // SIP Call-IDs and KAZOO ids hold no blanks (RFC 3261 `word`).
            Col::Id
            | Col::CallId
            | Col::OtherLegCallId
            | Col::BridgeId
            | Col::InteractionId
            | Col::OwnerId
            | Col::AuthorizingId
            | Col::To
            | Col::From
            | Col::Request
            | Col::MediaServer => !b.iter().any(u8::is_ascii_whitespace),
            Col::CallerIdNumber | Col::CalleeIdNumber | Col::DialedNumber | Col::CallingFrom => {
                !(b.first().is_some_and(u8::is_ascii_whitespace)
                    || b.last().is_some_and(u8::is_ascii_whitespace))
            }
            Col::DurationSeconds
            | Col::BillingSeconds
            | Col::Timestamp
            | Col::Cost
            | Col::UnixTimestamp
            | Col::ResellerCost => cell.is_empty() || is_int(cell),
            Col::HangupCause => {
                cell.is_empty()
                    || (b[0].is_ascii_uppercase()
                        && b.iter()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_'))
            }
            Col::Disposition => {
                cell.is_empty()
                    || (b[0].is_ascii_alphabetic()
                        && b.iter()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b' ' | b'_' | b'-')))
            }
            Col::Direction => matches!(cell, "" | "inbound" | "outbound"),
            Col::CallType | Col::ResellerCallType | Col::InceptionDirection => {
                b.iter().all(|c| c.is_ascii_lowercase() || *c == b'_')
            }
            Col::Rate | Col::UnixTimestampMicro => cell.is_empty() || is_decimal(cell),
            Col::Datetime => cell.is_empty() || parse_datetime(cell).is_some(),
            Col::Rfc1036 => cell.is_empty() || parse_rfc1036(unquote42(cell)).is_some(),
            Col::Iso8601 => cell.is_empty() || parse_date(unquote42(cell)).is_some(),
            Col::Iso8601Combined => cell.is_empty() || parse_iso_combined(cell).is_some(),
            Col::CallPriority | Col::Other => true,
        }
    }

    /// What the column holds, for messages.
    pub(crate) fn expects(self) -> &'static str {
        match self {
            Col::DurationSeconds | Col::BillingSeconds | Col::Cost | Col::ResellerCost => {
                "a whole number"
            }
            Col::Timestamp => "Gregorian seconds",
            Col::UnixTimestamp => "Unix seconds",
            Col::UnixTimestampMicro => "Unix seconds with a fraction",
            Col::Rate => "an amount in dollars",
            Col::Direction => "inbound or outbound",
            Col::HangupCause => "a hangup cause such as NORMAL_CLEARING",
            Col::Datetime => "a date and time such as 2026-11-04_15:00:00",
            Col::Rfc1036 => "a date such as Wed, 04 Nov 2026 15:00:00 GMT",
            Col::Iso8601 => "a date such as 2026-11-04",
            Col::Iso8601Combined => "a date and time such as 2026-11-04T15:00:00Z",
            Col::CallType | Col::ResellerCallType => "a billing type such as per_minute",
            Col::CallerIdNumber | Col::CalleeIdNumber | Col::DialedNumber | Col::CallingFrom => {
                "a number without surrounding blanks"
            }
            _ => "an id or address without blanks",
        }
    }

    /// Whether `cell` looks like what the column usually holds: breaks ties between alignments
    /// that [`Col::accepts`] all allow. Free-text columns are never scored (a name may end in a
    /// blank or a comma), so a row whose fixed columns all look typical is never outscored by a
    /// placement that moves a name's piece into them.
    pub(crate) fn typical(self, cell: &str) -> bool {
        let b = cell.as_bytes();
        match self {
            Col::CallerIdNumber | Col::CalleeIdNumber | Col::DialedNumber | Col::CallingFrom => {
                let d = b.strip_prefix(b"+").unwrap_or(b);
                !d.is_empty() && d.iter().all(u8::is_ascii_digit)
            }
            Col::OwnerId | Col::AuthorizingId => cell.is_empty() || is_hex32(cell),
            Col::To | Col::From | Col::Request => cell.is_empty() || cell.contains('@'),
            Col::RecordingUrl => cell.is_empty() || cell.contains("://"),
            _ => true,
        }
    }
}

fn is_int(s: &str) -> bool {
    let d = s.strip_prefix('-').unwrap_or(s);
    !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// A number as Erlang writes a float (`kz_mochinum:digits`: `0.01`, `1.0e-7`) or an integer.
fn is_decimal(s: &str) -> bool {
    s.parse::<f64>().is_ok_and(f64::is_finite)
        && s.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E'))
}

/// KAZOO 4.2.0-4.2.44 wrapped `rfc_1036` and `iso_8601` in double quotes itself
/// (`col_rfc1036`, `col_iso8601` in cb_cdrs.erl); the quotes are not part of the value.
pub(crate) fn unquote42(cell: &str) -> &str {
    cell.strip_prefix('"')
        .and_then(|c| c.strip_suffix('"'))
        .unwrap_or(cell)
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Gregorian seconds of a calendar date and time (proleptic, as Erlang's `calendar`).
fn greg(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, mo as u32, d as u32)?;
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = i64::from(chrono::Datelike::num_days_from_ce(&date)) + 365;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

/// `YYYY-MM-DD` (`kz_date:to_iso8601_extended`) to Gregorian seconds at midnight.
fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if m.len() != 2 || d.len() != 2 {
        return None;
    }
    greg(num(y)?, num(m)?, num(d)?, 0, 0, 0)
}

fn parse_hms(s: &str) -> Option<(i64, i64, i64)> {
    let mut it = s.splitn(3, ':');
    let (h, m, x) = (it.next()?, it.next()?, it.next()?);
    if h.len() != 2 || m.len() != 2 || x.len() != 2 {
        return None;
    }
    Some((num(h)?, num(m)?, num(x)?))
}

/// `datetime`: `YYYY-MM-DD HH:MM:SS` (4.x), `YYYY-MM-DD_HH:MM:SS` (`kz_time:pretty_print_datetime`,
/// 4.2.45+ and 5.0), optionally `_<zone>` (with a time zone). Gregorian seconds of the wall clock.
fn parse_datetime(s: &str) -> Option<i64> {
    // Fixed positions are byte positions: only ASCII text has its characters there.
    if s.len() < 19 || !s.is_ascii() {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let sep = rest.as_bytes()[0];
    if sep != b' ' && sep != b'_' {
        return None;
    }
    let time = rest.get(1..9)?;
    let tail = &rest[9..];
    if !(tail.is_empty() || (tail.starts_with('_') && tail.len() > 1)) {
        return None;
    }
    let day = parse_date(date)?;
    let (h, m, x) = parse_hms(time)?;
    (h < 24 && m < 60 && x < 60).then_some(day + h * 3600 + m * 60 + x)
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `kz_time:rfc1036/2`: `Wed, 04 Nov 2026 15:00:00 GMT` (the zone is `GMT` or a zone name).
/// Gregorian seconds of the wall clock.
pub(crate) fn parse_rfc1036(s: &str) -> Option<i64> {
    let (wd, rest) = s.split_once(", ")?;
    if !WEEKDAYS.contains(&wd) {
        return None;
    }
    let mut it = rest.split(' ');
    let (d, mo, y, t, zone) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || d.len() != 2 || zone.is_empty() {
        return None;
    }
    let mo = MONTHS.iter().position(|m| *m == mo)? as i64 + 1;
    let (h, mi, sec) = parse_hms(t)?;
    greg(num(y)?, mo, num(d)?, h, mi, sec)
}

/// `kz_time:iso8601/2`: `2026-11-04T15:00:00Z` or `2026-11-04T10:00:00-05:00`: the wall clock
/// (Gregorian seconds) and the offset from UTC in seconds.
fn parse_iso_combined(s: &str) -> Option<(i64, i64)> {
    if !s.is_ascii() {
        return None;
    }
    let (date, rest) = s.split_once('T')?;
    let day = parse_date(date)?;
    let (h, m, x) = parse_hms(rest.get(..8)?)?;
    let off = match rest.get(8..)? {
        "Z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let v = num(&o[1..3])? * 3600 + num(&o[4..6])? * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    Some((day + h * 3600 + m * 60 + x, off))
}

/// `unix_timestamp_micro` (a float, `kz_mochinum:digits`) to whole microseconds, read from its
/// decimal digits so no precision is lost.
fn parse_micro(s: &str) -> Option<i64> {
    if s.contains(['e', 'E']) {
        let f: f64 = s.parse().ok()?;
        return f
            .is_finite()
            .then(|| (f * 1e6).round())
            .filter(|r| r.abs() < 9.0e18)
            .map(|r| r as i64);
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let whole: i64 = num(int)?;
    if !frac.is_empty() && num(frac).is_none() {
        return None;
    }
    let mut micros = 0i64;
    for (i, c) in frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(7)
        .enumerate()
    {
        let d = i64::from(c - b'0');
        if i < 6 {
            micros = micros * 10 + d;
        } else if d >= 5 {
            micros += 1;
        }
    }
    let v = whole.checked_mul(1_000_000)?.checked_add(micros)?;
    Some(if neg { -v } else { v })
}

/// One cell's value, from a CSV field or a listing item's JSON value.
#[derive(Debug, Clone)]
pub(crate) enum Cell<'a> {
    /// Text: a CSV field, a JSON string, or a JSON number's digits.
    Text(Cow<'a, str>),
    /// A JSON array or object (e.g. `media_recordings`), compact.
    Json(String),
}

impl<'a> Cell<'a> {
    fn text(&self) -> Option<&str> {
        match self {
            Cell::Text(t) => Some(t),
            Cell::Json(_) => None,
        }
    }
}

/// How a row's times are read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowRules<'x> {
    /// The account the leg belongs to (from the file's path or the page's envelope).
    pub account: Option<&'x str>,
    pub tz: &'x ReportTz,
    /// KAZOO 4.2.0-4.2.40's CSV wrote the CDR's own timestamp (the END) in every time column;
    /// all other versions and every listing write the START.
    pub timestamp_is_end: bool,
    /// "column" (CSV) or "key" (listing), for messages.
    pub what: &'static str,
}

fn top_index(name: &str) -> usize {
    TOP_STR.iter().position(|c| *c == name).unwrap_or(0)
}

fn ccv_index(name: &str) -> usize {
    CCV_STR.iter().position(|c| *c == name).unwrap_or(0)
}

fn bad(what: &str, col: &str, value: &str, is: &str) -> RejectReason {
    RejectReason::new(
        "bad_billing_field",
        format!("{what} '{col}': {value:?} is not {is}"),
    )
}

/// Maps one row's cells (column, header as written, value) onto a leg.
///
/// `call_id`, names, numbers, `hangup_cause`, `disposition`, `other_leg_call_id`, `to`, `from`,
/// `request`, `media_server`, `interaction_id` keep their names; `direction` is
/// `call_direction`; `owner_id`, `authorizing_id`, `bridge_id`, `rate_name` are the CCVs of
/// those names; `call_type` is `account_billing`, `reseller_call_type` `reseller_billing`;
/// `cost` and `reseller_cost` (integer units, `kapps_call_util:call_cost/1` on per_minute legs,
/// else 0) become `recorded_cost_units` and `recorded_reseller_cost_units`; `rate` (dollars,
/// `kz_currency:units_to_dollars/1`) becomes units with `dollars_to_units`;
/// `unix_timestamp_micro` (5.0: `channel_created_time` when the CDR had one) becomes
/// `channel_created_time`. The start is `unix_timestamp_micro`, else `timestamp` (Gregorian
/// seconds; minus `duration_seconds` when [`RowRules::timestamp_is_end`]); an offset in
/// `iso_8601_combined` (a time zone applied by `kzd_cdrs`' column functions) is taken off.
/// Every other column goes to `extra` as text.
///
/// Errors: a seconds, cost or timestamp cell that is not a whole number (or is negative), a rate
/// that is not an amount, time columns that disagree, a missing call_id.
pub(crate) fn map_row<'a, 'n>(
    cells: impl IntoIterator<Item = (Col, &'n str, Cell<'a>)>,
    rules: &RowRules,
) -> Result<Leg<'a>, RejectReason> {
    let w = rules.what;
    let mut top: [Option<Cow<'a, str>>; N_TOP] = std::array::from_fn(|_| None);
    let mut ccv: [Option<Cow<'a, str>>; N_CCV] = std::array::from_fn(|_| None);
    let mut ints = [None; N_INT];
    let mut recorded = [None, None];
    let mut ts = None;
    let mut unix = None;
    let mut micro = None;
    let mut combined = None;
    let mut extra = serde_json::Map::new();
    let mut flags = Flags::default();
    let rate_i = INT_FIELDS.iter().position(|f| f.name == RATE).unwrap_or(0);
    for (col, name, cell) in cells {
        let text = match &cell {
            Cell::Text(t) => t.trim(),
            Cell::Json(_) => "",
        };
        if let Cell::Json(j) = &cell {
            if !matches!(col, Col::MediaRecordings | Col::Other | Col::CallPriority) {
                return Err(bad(w, name, j, "a text or number value"));
            }
        }
        let non_neg = |v: &str| -> Result<Option<i64>, RejectReason> {
            if v.is_empty() {
                return Ok(None);
            }
            match v.parse::<i64>() {
                Ok(i) if i >= 0 => Ok(Some(i)),
                _ => Err(bad(w, name, v, "a non-negative whole number")),
            }
        };
        let keep = |slot: &mut Option<Cow<'a, str>>| {
            if let Cell::Text(t) = &cell {
                let trimmed = t.trim();
                if !trimmed.is_empty() {
                    *slot = Some(match t {
                        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
                        Cow::Owned(_) => Cow::Owned(trimmed.to_owned()),
                    });
                }
            }
        };
        match col {
            Col::CallId => keep(&mut top[0]),
            Col::InteractionId => keep(&mut top[top_index("interaction_id")]),
            Col::CallerIdNumber => keep(&mut top[top_index("caller_id_number")]),
            Col::CallerIdName => keep(&mut top[top_index("caller_id_name")]),
            Col::CalleeIdNumber => keep(&mut top[top_index("callee_id_number")]),
            Col::CalleeIdName => keep(&mut top[top_index("callee_id_name")]),
            Col::HangupCause => keep(&mut top[top_index("hangup_cause")]),
            Col::Disposition => keep(&mut top[top_index("disposition")]),
            Col::OtherLegCallId => keep(&mut top[top_index("other_leg_call_id")]),
            Col::To => keep(&mut top[top_index("to")]),
            Col::From => keep(&mut top[top_index("from")]),
            Col::Request => keep(&mut top[top_index("request")]),
            Col::MediaServer => keep(&mut top[top_index("media_server")]),
            Col::Direction => keep(&mut top[top_index("call_direction")]),
            Col::OwnerId => keep(&mut ccv[ccv_index("owner_id")]),
            Col::AuthorizingId => keep(&mut ccv[ccv_index("authorizing_id")]),
            Col::BridgeId => keep(&mut ccv[ccv_index("bridge_id")]),
            Col::RateName => keep(&mut ccv[ccv_index("rate_name")]),
            Col::CallType => keep(&mut ccv[ccv_index("account_billing")]),
            Col::ResellerCallType => keep(&mut ccv[ccv_index("reseller_billing")]),
            Col::DurationSeconds => ints[I_DURATION_SECONDS] = non_neg(text)?,
            Col::BillingSeconds => ints[I_BILLING_SECONDS] = non_neg(text)?,
            Col::Cost => recorded[0] = recorded_money(non_neg(text)?, &mut flags, "cost"),
            Col::ResellerCost => {
                recorded[1] = recorded_money(non_neg(text)?, &mut flags, "reseller_cost")
            }
            Col::Timestamp => {
                if !text.is_empty() {
                    // KAZOO writes `0 - duration_seconds` when the CDR had no timestamp.
                    match text.parse::<i64>() {
                        Ok(v) if v > 0 => ts = Some(v),
                        Ok(_) => {}
                        Err(_) => return Err(bad(w, name, text, "Gregorian seconds")),
                    }
                }
            }
            Col::Rate => {
                if !text.is_empty() {
                    let d: f64 = text
                        .parse()
                        .ok()
                        .filter(|d: &f64| d.is_finite() && *d >= 0.0)
                        .ok_or_else(|| bad(w, name, text, "a non-negative amount in dollars"))?;
                    ints[rate_i] = Some(dollars_to_units(d));
                }
            }
            Col::UnixTimestamp | Col::UnixTimestampMicro | Col::Iso8601Combined => {
                if !text.is_empty() {
                    match col {
                        Col::UnixTimestamp => {
                            unix = Some(
                                text.parse::<i64>()
                                    .map_err(|_| bad(w, name, text, "Unix seconds"))?,
                            )
                        }
                        Col::UnixTimestampMicro => {
                            micro = Some(
                                parse_micro(text)
                                    .ok_or_else(|| bad(w, name, text, "Unix seconds"))?,
                            )
                        }
                        _ => {
                            combined =
                                Some(parse_iso_combined(text).ok_or_else(|| {
                                    bad(w, name, text, "an ISO 8601 date and time")
                                })?)
                        }
                    }
                    extra.insert(name.to_owned(), serde_json::Value::String(text.to_owned()));
                }
            }
            Col::Rfc1036 | Col::Iso8601 => {
                let v = unquote42(text);
                if !v.is_empty() {
                    extra.insert(name.to_owned(), serde_json::Value::String(v.to_owned()));
                }
            }
            Col::Id
            | Col::DialedNumber
            | Col::CallingFrom
            | Col::Datetime
            | Col::RecordingUrl
            | Col::MediaRecordings
            | Col::CallPriority
            | Col::InceptionDirection
            | Col::Other => match &cell {
                Cell::Json(j) => {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(j) {
                        if v.as_array().is_none_or(|a| !a.is_empty()) {
                            extra.insert(name.to_owned(), v);
                        }
                    }
                }
                Cell::Text(_) => {
                    if let Some(t) = cell.text().filter(|t| !t.trim().is_empty()) {
                        extra.insert(name.to_owned(), serde_json::Value::String(t.to_owned()));
                    }
                }
            },
        }
    }
    check_call_id(top[0].as_deref(), w)?;

    // The time columns all come from one Timestamp: check they agree, then take off a zone's
    // offset (kzd_cdrs' column functions given a time zone shift every one of them).
    let offset = combined.map_or(0, |(_, off)| off);
    if let (Some(t), Some(u)) = (ts, unix) {
        if t - UNIX_EPOCH_IN_GREGORIAN != u {
            return Err(RejectReason::new(
                "bad_billing_field",
                format!("{w}s 'timestamp' ({t}) and 'unix_timestamp' ({u}) disagree: they are the same instant in KAZOO's export"),
            ));
        }
    }
    if let (Some(t), Some((wall, _))) = (ts, combined) {
        if t != wall {
            return Err(RejectReason::new(
                "bad_billing_field",
                format!("{w}s 'timestamp' ({t}) and 'iso_8601_combined' disagree: they are the same instant in KAZOO's export"),
            ));
        }
    }
    let dur = ints[I_DURATION_SECONDS].unwrap_or(0);
    let ts_utc = ts.map(|t| t - offset);
    let end_greg = ts_utc.map(|t| if rules.timestamp_is_end { t } else { t + dur });
    let cct = micro.map(|m| m - offset * 1_000_000);
    let start_us = cct.or_else(|| end_greg.map(|e| e - dur).and_then(gregorian_to_unix_micros));
    let end_us = start_us.map(|s| s.saturating_add(dur.saturating_mul(1_000_000)));
    ints[I_TIMESTAMP] = end_greg.and_then(gregorian_to_unix_micros);
    ints[I_CHANNEL_CREATED_TIME] = cct;
    if start_us.is_none() {
        flags.add("no_start_time");
    }
    match rules.account {
        Some(a) => ccv[0] = Some(Cow::Owned(a.to_owned())),
        None => flags.add("no_account_in_path"),
    }
    check_account_id(ccv[0].as_deref(), w)?;
    let mut json: [Option<Cow<'a, str>>; N_JSON] = std::array::from_fn(|_| None);
    if !extra.is_empty() {
        json[J_EXTRA] = Some(serde_json::Value::Object(extra).to_string().into());
    }
    Ok(Leg {
        top,
        ccv,
        ints,
        json,
        start_us,
        end_us,
        date: start_us.and_then(|us| rules.tz.date_of(us)),
        flags,
        recorded,
    })
}

/// A listing row (one item of a `/cdrs` page's `data`), already known to be one by its keys:
/// its values (strings, numbers, `media_recordings` an array) go through [`map_row`].
pub(crate) fn map_listing_row(
    text: &str,
    rules: &RowRules,
) -> Result<Leg<'static>, Result<RejectReason, serde_json::Error>> {
    let obj: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(Err)?;
    let mut names = Vec::with_capacity(obj.len());
    let mut cells: Vec<(Col, Cell<'static>)> = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        let cell = match v {
            serde_json::Value::Null => Cell::Text(Cow::Borrowed("")),
            serde_json::Value::String(s) => Cell::Text(Cow::Owned(s)),
            serde_json::Value::Number(n) => Cell::Text(Cow::Owned(n.to_string())),
            serde_json::Value::Bool(b) => Cell::Text(Cow::Owned(b.to_string())),
            v => Cell::Json(v.to_string()),
        };
        cells.push((Col::from_header(&k), cell));
        names.push(k);
    }
    map_row(
        names
            .iter()
            .zip(cells)
            .map(|(k, (c, v))| (c, k.as_str(), v)),
        rules,
    )
    .map_err(Ok)
}

/// Erlang's float text (`kz_mochinum:digits/1`, what `kz_term:to_binary/1` writes for a float):
/// the shortest digits that read back to the same double, `0.01`, `1.0`, `1.0e-7`, `1.0e+21`.
pub(crate) fn kz_float_text(f: f64) -> String {
    if f == 0.0 {
        return "0.0".into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e-2".
    let e = format!("{:e}", f.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let place = exp + 1; // digits before the decimal point
    let l = digits.len() as i64;
    let body = if place > 0 {
        match place - l {
            0 => format!("{digits}.0"),
            n if n < 0 => format!(
                "{}.{}",
                &digits[..place as usize],
                &digits[place as usize..]
            ),
            n if n < 6 => format!("{digits}{}.0", "0".repeat(n as usize)),
            _ => exp_form(&digits, place),
        }
    } else if place > -6 {
        format!("0.{}{digits}", "0".repeat((-place) as usize))
    } else {
        exp_form(&digits, place)
    };
    if f < 0.0 {
        format!("-{body}")
    } else {
        body
    }
}

/// Money KAZOO's export recorded, within [`crate::rate::MAX_LEG_UNITS`]; beyond it the leg
/// keeps no recorded money and is flagged `beyond_bounds:<column>` (no sum may wrap).
fn recorded_money(units: Option<i64>, flags: &mut Flags, column: &'static str) -> Option<i64> {
    let u = units?;
    let kept = crate::rate::bounded(u);
    if kept.is_none() {
        flags.add_field(crate::rate::BEYOND_BOUNDS, column);
    }
    kept
}

fn exp_form(digits: &str, place: i64) -> String {
    let (first, rest) = digits.split_at(1);
    let rest = if rest.is_empty() { "0" } else { rest };
    let sign = if place < 0 { "e-" } else { "e+" };
    format!("{first}.{rest}{sign}{}", (place - 1).abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kazoo_time_texts_parse_to_the_same_instant() {
        let t = 63_961_023_600; // 2026-11-04T15:00:00Z
        assert_eq!(parse_rfc1036("Wed, 04 Nov 2026 15:00:00 GMT"), Some(t));
        assert_eq!(parse_datetime("2026-11-04_15:00:00"), Some(t));
        assert_eq!(parse_datetime("2026-11-04 15:00:00"), Some(t));
        assert_eq!(parse_date("2026-11-04"), Some(t - 15 * 3600));
        assert_eq!(parse_iso_combined("2026-11-04T15:00:00Z"), Some((t, 0)));
        assert_eq!(
            parse_iso_combined("2026-11-04T10:00:00-05:00"),
            Some((t - 5 * 3600, -5 * 3600))
        );
        // Money beyond the bounds is not kept, and the leg says so.
        let mut flags = Flags::default();
        assert_eq!(
            recorded_money(Some(1_000_000_000_000), &mut flags, "cost"),
            Some(1_000_000_000_000)
        );
        assert_eq!(
            recorded_money(Some(1_000_000_000_001), &mut flags, "cost"),
            None
        );
        assert_eq!(recorded_money(None, &mut flags, "reseller_cost"), None);
        assert_eq!(flags.as_option(), Some("beyond_bounds:cost"));
        // A non-ASCII character where a fixed position falls: not a time, no panic.
        assert_eq!(parse_datetime("2026-11-0é 15:00:00"), None);
        assert_eq!(parse_datetime("2026-11-04 15:00:0é"), None);
        assert_eq!(parse_iso_combined("2026-11-04T10:00:00-0é:00"), None);
        assert_eq!(parse_iso_combined("2026-11-04T10:00:00+é0:0"), None);
        assert_eq!(parse_rfc1036("Wed, 0é Nov 2026 15:00:00 GMT"), None);
        assert_eq!(parse_rfc1036("Wed, 04 Nov 2026 15:00:00"), None);
        assert_eq!(parse_rfc1036("Wed 04 Nov 2026 15:00:00 GMT"), None);
        assert!(Col::Rfc1036.accepts("\"Wed, 04 Nov 2026 15:00:00 GMT\""));
        assert!(Col::Iso8601.accepts("\"2026-11-04\""));
    }

    #[test]
    fn micro_seconds_are_read_from_the_digits() {
        assert_eq!(parse_micro("1793804400.0"), Some(1_793_804_400_000_000));
        assert_eq!(
            parse_micro("1793804400.123456"),
            Some(1_793_804_400_123_456)
        );
        assert_eq!(parse_micro("1793804400.12"), Some(1_793_804_400_120_000));
        assert_eq!(
            parse_micro("1793804400.1234567"),
            Some(1_793_804_400_123_457)
        );
        assert_eq!(parse_micro("1.7938044e9"), Some(1_793_804_400_000_000));
        assert_eq!(parse_micro("x"), None);
    }

    #[test]
    fn floats_are_written_as_erlang_writes_them() {
        assert_eq!(kz_float_text(0.01), "0.01");
        assert_eq!(kz_float_text(0.0), "0.0");
        assert_eq!(kz_float_text(1.0), "1.0");
        assert_eq!(kz_float_text(0.2262), "0.2262");
        assert_eq!(kz_float_text(1.5), "1.5");
        assert_eq!(kz_float_text(100.0), "100.0");
        assert_eq!(kz_float_text(0.0001), "0.0001");
        assert_eq!(kz_float_text(1e-7), "1.0e-7");
        assert_eq!(kz_float_text(1793804400.0), "1793804400.0");
        assert_eq!(kz_float_text(1793804400.25), "1793804400.25");
        assert_eq!(kz_float_text(1e21), "1.0e+21");
    }

    #[test]
    fn listing_rows_are_told_by_their_keys() {
        assert!(is_listing_keys(
            false,
            false,
            ["call_id", "direction"].into_iter()
        ));
        assert!(!is_listing_keys(
            true,
            false,
            ["call_id", "cost"].into_iter()
        ));
        assert!(!is_listing_keys(
            false,
            true,
            ["call_id", "cost"].into_iter()
        ));
        assert!(!is_listing_keys(
            false,
            false,
            ["call_id", "timestamp"].into_iter()
        ));
    }
}
