//! Generated legs written as crossbar writes them: the CSV export (`cb_cdrs`, KAZOO 5.0's
//! columns, `kzd_cdrs.hrl`) and `GET /cdrs` listing pages, one file per account (the export is
//! one account's; the account is in the folder name `account_id=<ID>`).
//!
//! Every cell is what KAZOO's column function writes for the leg's document
//! ([`super::GenLeg::to_json`]): the START in every time column, `cost` KAZOO's
//! `kapps_call_util:call_cost/1` on per_minute legs (else 0), `rate` in dollars as Erlang prints
//! a float. Names hold commas and double quotes, unescaped, as KAZOO leaves them.
//! [`KazooRow::recorded_cost`] and [`KazooRow::recorded_reseller_cost`] let a caller plant a
//! recorded charge that differs from KAZOO's formula (reconciliation tests).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{GenLeg, GenOptions, Rng, Shape};
use crate::ingest::crossbar::{kz_float_text, HEADER_50, HEADER_RESELLER};
use crate::time::UNIX_EPOCH_IN_GREGORIAN;

/// Caller and callee names as PBX users type them: commas, quotes, both.
pub(crate) const NAMES: &[&str] = &[
    "Smith, John",
    "\"Front\" Desk",
    "O'Brien, \"Pat\"",
    "Sales, Floor 2, East",
    "Reception",
    "\"Bob, Jr.\"",
    "Ann \"Annie\" Lee",
    "ACME, Inc.",
    "",
    "Lab \"x\", y",
];

/// One leg as a crossbar row, with what KAZOO recorded for it.
#[derive(Debug, Clone)]
pub struct KazooRow {
    pub leg: GenLeg,
    /// The `cost` cell; None: KAZOO's own (`call_cost` on a per_minute leg, else 0).
    pub recorded_cost: Option<i64>,
    /// The `reseller_cost` cell; None: KAZOO's own.
    pub recorded_reseller_cost: Option<i64>,
}

impl KazooRow {
    pub fn new(leg: GenLeg) -> Self {
        KazooRow {
            leg,
            recorded_cost: None,
            recorded_reseller_cost: None,
        }
    }

    /// `col_customer_cost`: the charge on a per_minute leg, else 0.
    pub fn cost(&self) -> i64 {
        self.recorded_cost
            .unwrap_or(if self.leg.account_billing == "per_minute" {
                self.leg.call_cost()
            } else {
                0
            })
    }

    /// `col_reseller_cost`: the same with `reseller_billing`.
    pub fn reseller_cost(&self) -> i64 {
        self.recorded_reseller_cost
            .unwrap_or(if self.leg.reseller_billing == "per_minute" {
                self.leg.call_cost()
            } else {
                0
            })
    }

    /// Each column's cell, in KAZOO 5.0's order (and the reseller columns if asked), with
    /// whether the JSON listing writes it as a number (`duration_seconds`, `billing_seconds`:
    /// `kz_json:get_integer_value`) or a list (`media_recordings`).
    pub fn cells(&self, reseller: bool) -> Vec<(&'static str, String)> {
        let l = &self.leg;
        let dur = l.duration_seconds();
        // cb_cdrs:normalize_cdr/3: Timestamp = timestamp - duration_seconds, the start.
        let ts = l.end_gregorian() - dur;
        let unix = ts - UNIX_EPOCH_IN_GREGORIAN;
        let dt = chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default();
        let micro = {
            // col_unix_timestamp_micro: whole seconds of channel_created_time, plus the rest
            // as a float fraction.
            let cct = l.channel_created_time;
            let secs = cct.div_euclid(1_000_000);
            let rem = cct.rem_euclid(1_000_000);
            kz_float_text(secs as f64 + rem as f64 / 1e6)
        };
        let to = format!("{}@10.20.0.1:5060", l.callee);
        let from = format!("{}@10.20.0.1", l.caller);
        let request = format!("{}@10.20.0.1", l.callee);
        let user = |s: &str| s.split('@').next().unwrap_or("").to_owned();
        let (dialed, calling_from) = match l.direction {
            "inbound" => (user(&request), l.caller.clone()),
            _ => (user(&to), user(&format!("{}@10.20.0.1:5060", l.caller))),
        };
        let rate_units = if l.rated { l.rate as i64 } else { 0 };
        let mut v: Vec<(&'static str, String)> = Vec::with_capacity(37);
        let mut put = |k: &'static str, s: String| v.push((k, s));
        put("id", format!("{}-{}", &l.interaction_id[..11], l.call_id));
        put("call_id", l.call_id.clone());
        put("caller_id_number", l.caller.clone());
        put("caller_id_name", l.caller_id_name.clone());
        put("callee_id_number", l.callee.clone());
        put("callee_id_name", l.callee_id_name.clone());
        put("duration_seconds", dur.to_string());
        put("billing_seconds", l.talk.to_string());
        put("timestamp", ts.to_string());
        put("hangup_cause", l.hangup_cause.to_owned());
        put("other_leg_call_id", l.bridge.clone());
        put("owner_id", l.owner_id.clone());
        put("to", to);
        put("from", from);
        put("direction", l.direction.to_owned());
        put("request", request);
        // col_authorizing_id: blank when it is the account itself.
        put("authorizing_id", l.authorizing_id.clone());
        put("cost", self.cost().to_string());
        put("dialed_number", dialed);
        put("calling_from", calling_from);
        put("datetime", dt.format("%Y-%m-%d_%H:%M:%S").to_string());
        put("unix_timestamp", unix.to_string());
        put("unix_timestamp_micro", micro);
        put(
            "rfc_1036",
            dt.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        );
        put("iso_8601", dt.format("%Y-%m-%d").to_string());
        put(
            "iso_8601_combined",
            dt.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        put("call_type", l.account_billing.to_owned());
        put("rate", kz_float_text(rate_units as f64 / 10_000.0));
        put("rate_name", l.rate_name().unwrap_or_default());
        put("bridge_id", l.bridge.clone());
        put("recording_url", String::new());
        put("media_recordings", String::new());
        put("media_server", format!("fs{}.example.net", l.media_server));
        put("call_priority", String::new());
        put("interaction_id", l.interaction_id.clone());
        if reseller {
            put("reseller_cost", self.reseller_cost().to_string());
            put("reseller_call_type", l.reseller_billing.to_owned());
        }
        debug_assert!(v.iter().map(|(k, _)| *k).eq(HEADER_50
            .iter()
            .chain(if reseller { HEADER_RESELLER } else { &[] })
            .copied()));
        v
    }

    /// The CSV row: cells joined with commas, never quoted, CRLF (`cb_cdrs:normalize_cdr/3`).
    pub fn csv_row(&self, reseller: bool) -> String {
        let mut s = self
            .cells(reseller)
            .into_iter()
            .map(|(_, c)| c)
            .collect::<Vec<_>>()
            .join(",");
        s.push_str("\r\n");
        s
    }

    /// The listing item: the same cells as JSON (`kz_json:from_list`).
    pub fn listing_item(&self, reseller: bool) -> String {
        let mut m = serde_json::Map::new();
        for (k, c) in self.cells(reseller) {
            let v = match k {
                "duration_seconds" | "billing_seconds" => c
                    .parse::<i64>()
                    .map_or(serde_json::Value::String(c), serde_json::Value::from),
                "media_recordings" => serde_json::Value::Array(Vec::new()),
                _ => serde_json::Value::String(c),
            };
            m.insert(k.to_owned(), v);
        }
        serde_json::Value::Object(m).to_string()
    }
}

/// The CSV header (`cb_cdrs:maybe_add_csv_header/3`): the column names, CRLF.
pub(crate) fn csv_header(reseller: bool) -> String {
    let mut h = HEADER_50.join(",");
    if reseller {
        h.push(',');
        h.push_str(&HEADER_RESELLER.join(","));
    }
    h.push_str("\r\n");
    h
}

/// Whether an account's exports carry the reseller columns: every other account.
pub fn has_reseller_columns(acct_idx: u64) -> bool {
    acct_idx.is_multiple_of(2)
}

/// A listing page (one line): `data`, `page_size`, and crossbar's envelope keys.
pub(crate) fn listing_page(items: &[String], more: bool) -> String {
    let mut s = String::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 300);
    let _ = write!(s, "{{\"page_size\":{},\"data\":[", items.len());
    s.push_str(&items.join(","));
    s.push(']');
    if more {
        s.push_str(",\"next_start_key\":63940000000");
    }
    s.push_str(",\"start_key\":63939000000,\"request_id\":\"0f1e2d3c4b5a69788796a5b4c3d2e1f0\",\"revision\":\"undefined\",\"timestamp\":\"2026-11-08T00:00:00Z\",\"version\":\"5.0.1\",\"node\":\"kazoo_apps@apps.example.net\",\"status\":\"success\"}\n");
    s
}

/// Gives each leg names with commas and quotes, drawn from [`NAMES`] by a generator of its own
/// (so the legs' other values stay those of the JSON corpus for the seed).
pub(crate) fn with_kazoo_names(mut leg: GenLeg, rng: &mut Rng) -> GenLeg {
    leg.caller_id_name = (*rng.pick(NAMES)).to_owned();
    leg.callee_id_name = (*rng.pick(NAMES)).to_owned();
    leg
}

/// One account's open file.
struct Out {
    path: PathBuf,
    w: Box<dyn Write + Send>,
    reseller: bool,
    rows: u64,
    page: Vec<String>,
    bytes: u64,
}

impl Out {
    fn write(&mut self, s: &str) -> std::io::Result<()> {
        self.bytes += s.len() as u64;
        self.w.write_all(s.as_bytes())
    }
}

/// Writes the `index`th file's legs, one file per account: `out/account_id=<ID>/cdrs-<i>.csv`
/// (or `.json` for listing pages). Returns the paths and the bytes written.
pub(crate) fn write_file(
    opts: &GenOptions,
    index: u64,
    legs: u64,
    out: &Path,
) -> std::io::Result<(Vec<PathBuf>, u64)> {
    let mut names = Rng::new(opts.seed ^ (index + 1).wrapping_mul(0x5EED_0FC0_FFEE));
    let mut files: BTreeMap<String, Out> = BTreeMap::new();
    let csv = opts.shape == Shape::KazooCsv;
    for leg in super::file_legs(opts, index, legs) {
        let row = KazooRow::new(with_kazoo_names(leg, &mut names));
        let o = match files.get_mut(&row.leg.account) {
            Some(o) => o,
            None => {
                let dir = out.join(format!("account_id={}", row.leg.account));
                std::fs::create_dir_all(&dir)?;
                let ext = if csv { "csv" } else { "json" };
                let gz = if opts.gzip { ".gz" } else { "" };
                let path = dir.join(format!("cdrs-{index:04}.{ext}{gz}"));
                let mut o = Out {
                    w: super::create(&path, opts.gzip)?,
                    path,
                    reseller: has_reseller_columns(row.leg.acct_idx),
                    rows: 0,
                    page: Vec::new(),
                    bytes: 0,
                };
                if csv {
                    o.write(&csv_header(o.reseller))?;
                }
                files.entry(row.leg.account.clone()).or_insert(o)
            }
        };
        if csv {
            if opts.header_every > 0 && o.rows > 0 && o.rows.is_multiple_of(opts.header_every) {
                o.write(&csv_header(o.reseller))?;
            }
            o.write(&row.csv_row(o.reseller))?;
        } else {
            o.page.push(row.listing_item(o.reseller));
            if o.page.len() == 50 {
                let page = listing_page(&o.page, true);
                o.page.clear();
                o.write(&page)?;
            }
        }
        o.rows += 1;
    }
    let mut paths = Vec::with_capacity(files.len());
    let mut bytes = 0;
    for (_, mut o) in files {
        if !o.page.is_empty() {
            let page = listing_page(&o.page, false);
            o.write(&page)?;
        }
        o.w.flush()?;
        bytes += o.bytes;
        paths.push(o.path);
    }
    Ok((paths, bytes))
}

/// Writes given rows (e.g. with planted recorded costs) as one account's CSV export at `path`.
pub fn write_csv_export(rows: &[KazooRow], reseller: bool, path: &Path) -> std::io::Result<()> {
    let mut s = csv_header(reseller);
    for r in rows {
        s.push_str(&r.csv_row(reseller));
    }
    std::fs::write(path, s)
}

/// Writes given rows as one account's listing pages (50 rows a page, one page a line) at `path`.
pub fn write_listing_pages(rows: &[KazooRow], reseller: bool, path: &Path) -> std::io::Result<()> {
    let items: Vec<String> = rows.iter().map(|r| r.listing_item(reseller)).collect();
    let chunks: Vec<&[String]> = items.chunks(50).collect();
    let mut s = String::new();
    for (i, c) in chunks.iter().enumerate() {
        s.push_str(&listing_page(c, i + 1 < chunks.len()));
    }
    std::fs::write(path, s)
}
