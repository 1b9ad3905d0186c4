//! KAZOO's crossbar CSV export (cb_cdrs.erl), mapped onto the legs schema.
//!
//! Columns are found by header name, so their order does not matter: the 5.0 header, the 4.3
//! one (`disposition`, no `unix_timestamp_micro`), with or without the reseller columns. `cost`
//! and `reseller_cost` are integer units and become `recorded_cost_units` and
//! `recorded_reseller_cost_units`; `rate` is dollars and becomes units (`dollars_to_units`);
//! `call_type` is account_billing and `reseller_call_type` reseller_billing; the `timestamp`
//! column is the leg's START in Gregorian seconds. The export has no account_id column (it is one
//! account's export): the account is taken from the file's path, a folder or file name holding
//! `account_id=<ID>` or a 32-hex-digit KAZOO account id. Columns the schema has no place for
//! (`id`, `datetime`, `iso_8601`, `recording_url`, ...) are kept in `extra`.
//!
//! A CSV field may hold a newline inside quotes, so a file is read by one reader, in order; many
//! files are still read in parallel.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use super::builder::LegBuilder;
use super::record::{check_call_id, Flags, Leg, RejectReason, N_CCV, N_INT, N_JSON, N_TOP};
use super::{Parsed, Reject, RAW_LIMIT};
use crate::rate::deck::dollars_to_units;
use crate::schema::{
    CCV_STR, INT_FIELDS, I_BILLING_SECONDS, I_DURATION_SECONDS, I_TIMESTAMP, J_EXTRA, RATE, TOP_STR,
};
use crate::time::{gregorian_to_unix_micros, ReportTz};

/// Where a CSV column goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Top(usize),
    Ccv(usize),
    Seconds(usize),
    Start,
    Cost(usize),
    RateDollars,
    Extra,
}

fn target(header: &str) -> Target {
    let renamed = match header {
        "direction" => "call_direction",
        "call_type" => "account_billing",
        "reseller_call_type" => "reseller_billing",
        h => h,
    };
    match renamed {
        "cost" => Target::Cost(0),
        "reseller_cost" => Target::Cost(1),
        "rate" => Target::RateDollars,
        "timestamp" => Target::Start,
        "billing_seconds" => Target::Seconds(I_BILLING_SECONDS),
        "duration_seconds" => Target::Seconds(I_DURATION_SECONDS),
        h => {
            if let Some(i) = TOP_STR.iter().position(|c| *c == h) {
                Target::Top(i)
            } else if let Some(i) = CCV_STR.iter().position(|c| *c == h) {
                Target::Ccv(i)
            } else {
                Target::Extra
            }
        }
    }
}

/// The account a one-account export belongs to, from its path.
pub fn account_from_path(path: &Path) -> Option<String> {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for part in parts.iter().rev() {
        if let Some(v) = part.strip_prefix("account_id=") {
            return Some(v.to_owned());
        }
    }
    for part in parts.iter().rev() {
        let mut run = 0;
        for (i, c) in part.char_indices() {
            if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
                run += 1;
                let next_hex = part[i + 1..]
                    .chars()
                    .next()
                    .is_some_and(|n| n.is_ascii_hexdigit() && !n.is_ascii_uppercase());
                if run == 32 && !next_hex {
                    return Some(part[i + 1 - 32..=i].to_owned());
                }
            } else {
                run = 0;
            }
        }
    }
    None
}

/// Parses one decoded CSV export.
pub fn parse(
    buf: &[u8],
    source: &str,
    account: Option<&str>,
    tz: &ReportTz,
) -> Result<Parsed, super::IngestError> {
    let body = buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(buf);
    let src: Arc<str> = Arc::from(source);
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(body);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| super::IngestError::Unreadable {
            path: source.to_owned(),
            message: format!("reading the CSV header: {e}"),
        })?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let targets: Vec<Target> = headers.iter().map(|h| target(h)).collect();
    let mut builder = LegBuilder::with_capacity(body.len() / 400 + 16);
    let mut rejects = Vec::new();
    let mut records = 0u64;
    let mut rec = csv::StringRecord::new();
    loop {
        let line = rdr.position().line();
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                records += 1;
                let line = e.position().map_or(line, |p| p.line());
                rejects.push(reject(
                    &src,
                    line,
                    RejectReason::new("invalid_csv", format!("invalid CSV: {e}")),
                    "",
                ));
                continue;
            }
        }
        let line = rec.position().map_or(line, |p| p.line());
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        records += 1;
        let raw = || rec.iter().collect::<Vec<_>>().join(",");
        if rec.len() != headers.len() {
            let why = RejectReason::new(
                "invalid_csv",
                format!(
                    "the row has {} fields, the header {}",
                    rec.len(),
                    headers.len()
                ),
            );
            rejects.push(reject(&src, line, why, &raw()));
            continue;
        }
        match row_to_leg(&rec, &headers, &targets, account, tz) {
            Ok(leg) => builder.push(&leg, line, rec.position().map_or(0, |p| p.byte())),
            Err(why) => rejects.push(reject(&src, line, why, &raw())),
        }
    }
    let legs = if builder.is_empty() {
        super::concat_frames(vec![])?
    } else {
        builder.finish(source, "csv")?
    };
    Ok(Parsed {
        routed: Vec::new(),
        legs,
        rejects,
        records,
        skipped: Vec::new(),
        layout: super::scan::Layout::Lines,
        lines: 1 + super::scan::count_lines(buf),
    })
}

fn reject(src: &Arc<str>, line: u64, why: RejectReason, raw: &str) -> Reject {
    Reject {
        source: src.clone(),
        location: format!("line {line}"),
        line,
        record: None,
        code: why.code,
        reason: why.message,
        raw: super::json_text::truncate(raw, RAW_LIMIT).to_owned(),
    }
}

fn bad(field: &str, value: &str, what: &str) -> RejectReason {
    RejectReason::new(
        "bad_billing_field",
        format!("column '{field}': {value:?} is not {what}"),
    )
}

fn non_negative(field: &str, v: &str) -> Result<Option<i64>, RejectReason> {
    if v.is_empty() {
        return Ok(None);
    }
    match v.parse::<i64>() {
        Ok(i) if i >= 0 => Ok(Some(i)),
        _ => Err(bad(field, v, "a non-negative whole number")),
    }
}

fn row_to_leg<'a>(
    rec: &'a csv::StringRecord,
    headers: &[String],
    targets: &[Target],
    account: Option<&str>,
    tz: &ReportTz,
) -> Result<Leg<'a>, RejectReason> {
    let mut top: [Option<Cow<'a, str>>; N_TOP] = std::array::from_fn(|_| None);
    let mut ccv: [Option<Cow<'a, str>>; N_CCV] = std::array::from_fn(|_| None);
    let mut ints = [None; N_INT];
    let mut recorded = [None, None];
    let mut start_greg = None;
    let mut extra = serde_json::Map::new();
    for ((field, name), t) in rec.iter().zip(headers).zip(targets) {
        let v = field.trim();
        match *t {
            Target::Top(i) => top[i] = (!v.is_empty()).then_some(Cow::Borrowed(v)),
            Target::Ccv(i) => ccv[i] = (!v.is_empty()).then_some(Cow::Borrowed(v)),
            Target::Seconds(i) => ints[i] = non_negative(name, v)?,
            Target::Cost(i) => recorded[i] = non_negative(name, v)?,
            Target::Start => start_greg = non_negative(name, v)?,
            Target::RateDollars => {
                if !v.is_empty() {
                    let d: f64 = v
                        .parse()
                        .ok()
                        .filter(|d: &f64| d.is_finite() && *d >= 0.0)
                        .ok_or_else(|| bad(name, v, "a non-negative amount in dollars"))?;
                    let i = INT_FIELDS.iter().position(|f| f.name == RATE).unwrap_or(0);
                    ints[i] = Some(dollars_to_units(d));
                }
            }
            Target::Extra => {
                if !v.is_empty() {
                    extra.insert(name.clone(), serde_json::Value::String(v.to_owned()));
                }
            }
        }
    }
    check_call_id(top[0].as_deref(), "column")?;
    if let Some(a) = account {
        ccv[0] = Some(Cow::Owned(a.to_owned()));
    }
    let mut flags = Flags::default();
    let dur = ints[I_DURATION_SECONDS]
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let start_us = start_greg.and_then(gregorian_to_unix_micros);
    let end_us = start_us.map(|s| s.saturating_add(dur));
    // The CDR's own timestamp is the leg's end, as in the JSON documents.
    ints[I_TIMESTAMP] = end_us;
    if start_us.is_none() {
        flags.add("no_start_time");
    }
    if account.is_none() {
        flags.add("no_account_in_path");
    }
    let mut json: [Option<std::borrow::Cow<'_, str>>; N_JSON] = std::array::from_fn(|_| None);
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
        date: start_us.and_then(|us| tz.date_of(us)),
        flags,
        recorded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_comes_from_the_path() {
        let p = |s: &str| account_from_path(Path::new(s));
        assert_eq!(p("x/account_id=acc1/cdrs.csv").as_deref(), Some("acc1"));
        assert_eq!(
            p("exports/7600efb3424dc4b79854521fd4563d0a-2026-11.csv").as_deref(),
            Some("7600efb3424dc4b79854521fd4563d0a")
        );
        assert_eq!(p("exports/cdrs.csv"), None);
        assert_eq!(
            p("exports/7600efb3424dc4b79854521fd4563d0aa.csv"),
            None,
            "33 hex digits"
        );
    }

    #[test]
    fn headers_map_whatever_their_order() {
        assert_eq!(target("cost"), Target::Cost(0));
        assert_eq!(target("reseller_cost"), Target::Cost(1));
        assert_eq!(target("call_type"), target("account_billing"));
        assert_eq!(target("direction"), target("call_direction"));
        assert_eq!(target("iso_8601"), Target::Extra);
        assert!(matches!(target("call_id"), Target::Top(0)));
        assert!(matches!(target("disposition"), Target::Top(_)));
    }
}
