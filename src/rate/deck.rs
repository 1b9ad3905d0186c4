//! Rate decks (KAZOO's hotornot tasks CSV), read as KAZOO's rates import stores them, and the
//! rate KAZOO's hotornot picks for a leg.
//!
//! **Import** (`kt_rates:generate_row/1`, `kzd_rates`): each row becomes the document KAZOO
//! would store. `prefix` is an integer (`+44` and `044` are 44); `rate_cost` is dollars.
//! A missing `weight` is generated (`kt_rates:generate_weight/3`): `len(prefix) * 10 -
//! trunc(units_to_dollars(Cost) * 100)`, where Cost is the private cost in units when it is
//! non-zero, else `rate_cost` — which KAZOO passes in dollars where units are expected, so
//! the generated weight is `len(prefix) * 10 - trunc(trunc(rate_cost) / 10000 * 100)` in
//! doubles. (The private cost, `pvt_internal_rate_cost`, cannot come from a CSV: `kzd_rates:
//! from_map/1` keeps public fields only.) Every weight, given or generated, is clamped to
//! 1..100 (`kzd_rates:constrain_weight/1`). A missing `rate_name` is generated as
//! `<directions joined by _>_<iso_country_code>_<prefix>` (`kt_rates:generate_name/3`; the
//! direction defaults to both before the name is made, so a row with neither gets
//! `inbound_outbound_<prefix>`). `caller_id_numbers` (`1212:1415`) become the patterns
//! `^\+?1212.+$`, `^\+?1415.+$`. `routes` is a JSON list of regexes, a JSON string or a bare
//! regex; anything else gives the default route `^\+?<prefix>.+$`. `direction` is `inbound`,
//! `outbound` or empty (both); any other value fails the row, as KAZOO's `direction` verifier
//! does. Integer fields that are not numbers are dropped as `kz_json:get_integer_value/3` drops
//! them (the default applies; reported as a warning).
//!
//! **Choice** (`hon_util`): the number is normalized with the E.164 converters
//! ([`super::e164`]); the candidates are the rates whose prefix is any leading run of its digits
//! (`kzdb_ratedeck:prefix_keys/1`), longest first and, for one prefix, in CouchDB's document-id
//! order (`<iso_country_code or XX>-<prefix>[-<rate_suffix>]`); the filters of hotornot's
//! `filter_list` drop some ([`Filter`]); then `lists:usort/2` with `sort_rate_by_weight/2` (or
//! `sort_rate_by_cost/2`) orders them and the first is used. Both sort functions are strict
//! (`<`, `>`), so two rates with the same prefix length and weight (or cost) are never equal
//! to `usort`: they come out in the reverse of their input order, and the LAST of them wins.

use std::collections::HashMap;
use std::path::Path;

use regex::bytes::Regex;
use sha2::{Digest, Sha256};

use super::e164::{compile_pcre, hex_digest, E164Converters};

/// How rates of the same prefix length are ordered (hotornot's `sort_by_weight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateSort {
    /// Lower weight first (`sort_by_weight: true`, KAZOO's default).
    #[default]
    Weight,
    /// Higher rate_cost first (`sort_by_weight: false`).
    Cost,
}

/// One of hotornot's `filter_list` entries (`hon_util:matching_rate/3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum Filter {
    /// The rate's directions hold the leg's `call_direction` (a leg without one keeps all).
    Direction,
    /// Route options: always kept here. CDRs carry no route options, and a CSV import cannot
    /// set a rate's `options`, so KAZOO's `options_match/2` keeps every rate.
    RouteOptions,
    /// One of the rate's `routes` matches the normalized callee number.
    Routes,
    /// One of the rate's caller-id patterns matches the normalized caller number (a rate
    /// without patterns keeps every caller).
    CallerIdNumbers,
    /// The rate's ratedeck is the account's (`--ratedeck-map`); an unmapped account gets none.
    RatedeckId,
    /// The rate's `account_id` is the leg's `reseller_id` (both absent also matches).
    Reseller,
    /// The rate's `rate_version` is `--rate-version` (both absent also matches).
    Version,
}

/// KAZOO's default `filter_list` (`hotornot_config:filter_list/0`).
pub(crate) const DEFAULT_FILTERS: [Filter; 3] =
    [Filter::Direction, Filter::RouteOptions, Filter::Routes];

/// The hotornot settings that change which rate is chosen or what it charges
/// (`hotornot_config`), with KAZOO's defaults.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hotornot {
    /// `sort_by_weight` (true: [`RateSort::Weight`]).
    pub sort: RateSort,
    /// `filter_list`, applied in order.
    pub filters: Vec<Filter>,
    /// `default_rate_minimum` (60 s): a rate without `rate_minimum`.
    pub default_minimum: i64,
    /// `default_rate_increment` (60 s).
    pub default_increment: i64,
    /// `default_rate_nocharge_time` (0 s).
    pub default_nocharge: i64,
    /// `rate_version` (none), for the `version` filter.
    pub rate_version: Option<String>,
}

impl Default for Hotornot {
    fn default() -> Self {
        Hotornot {
            sort: RateSort::Weight,
            filters: DEFAULT_FILTERS.to_vec(),
            default_minimum: 60,
            default_increment: 60,
            default_nocharge: 0,
            rate_version: None,
        }
    }
}

impl From<RateSort> for Hotornot {
    fn from(sort: RateSort) -> Self {
        Hotornot {
            sort,
            ..Hotornot::default()
        }
    }
}

/// One rate as KAZOO stores it after the import, money in units.
#[derive(Debug, Clone)]
pub struct Rate {
    /// The prefix as KAZOO keeps it: an integer, written in decimal.
    pub prefix: String,
    /// `rate_name`, given or generated.
    pub name: Option<String>,
    /// rate_cost in units per minute (`dollars_to_units`), as hon_rater sends it.
    pub rate: i64,
    /// `rate_increment`, else hotornot's default.
    pub increment: i64,
    /// `rate_minimum`, else hotornot's default.
    pub minimum: i64,
    /// rate_surcharge in units.
    pub surcharge: i64,
    /// `rate_nocharge_time`, else hotornot's default.
    pub nocharge: i64,
    /// `direction`: inbound, outbound, or both (empty cell).
    pub directions: Vec<String>,
    /// Weight 1..100, given (clamped) or generated.
    pub weight: i64,
    /// True when the weight was generated by the import.
    pub weight_generated: bool,
    /// The deck's rate_cost in dollars (the cost sort compares it).
    pub cost_dollars: f64,
    pub ratedeck_id: Option<String>,
    /// `account_id` (the reseller the rate belongs to), for the `reseller` filter.
    pub account_id: Option<String>,
    pub rate_version: Option<String>,
    /// KAZOO's document id: `<iso_country_code or XX>-<prefix>[-<rate_suffix>]`.
    pub doc_id: String,
    pub routes: Vec<Regex>,
    /// Patterns generated from `caller_id_numbers`.
    pub caller_id_patterns: Vec<Regex>,
    /// The row's line in the deck file.
    pub line: u64,
}

/// A deck row that could not be used, or a value KAZOO's import drops, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeckIssue {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeckError {
    #[error("rate deck {path}: {message}")]
    Read { path: String, message: String },
    #[error("rate deck {path}: no usable rate ({issues} rows rejected; the first: line {first_line}: {first})")]
    Empty {
        path: String,
        issues: usize,
        first_line: u64,
        first: String,
    },
    #[error("rate deck {0}: no usable rate (the file has no data rows)")]
    NoRows(String),
    #[error("ratedeck map {path}, line {line}: {message}")]
    Map {
        path: String,
        line: u64,
        message: String,
    },
}

/// One ratedeck: its rates and the index by prefix.
#[derive(Debug, Default)]
struct Deck {
    rates: Vec<Rate>,
    /// prefix -> rate indices in CouchDB's order for that key (document id, then deck line).
    index: HashMap<u64, Vec<u32>>,
}

/// What a leg brings to the rate lookup (KAZOO's rate request: To-DID, From-DID, Direction,
/// Account-ID, and the account's reseller).
#[derive(Debug, Clone, Copy, Default)]
pub struct Lookup<'a> {
    pub account: Option<&'a str>,
    /// The dialled number (To-DID).
    pub number: &'a str,
    pub direction: Option<&'a str>,
    /// The caller's number (From-DID), for the `caller_id_numbers` filter.
    pub caller_id_number: Option<&'a str>,
    pub reseller_id: Option<&'a str>,
}

/// All decks of a run: the default one, the per-ratedeck ones, which account uses which, the
/// E.164 converters and the hotornot settings.
#[derive(Debug, Default)]
pub struct DeckSet {
    default: Deck,
    named: HashMap<String, Deck>,
    accounts: HashMap<String, String>,
    converters: E164Converters,
    config: Hotornot,
    /// sha256 of the deck file's bytes, then of the ratedeck map's.
    digest: Sha256,
    pub issues: Vec<DeckIssue>,
    pub rows: usize,
}

/// KAZOO's `dollars_to_units`: round(D * 10000), in doubles, half away from zero.
pub(crate) fn dollars_to_units(dollars: f64) -> i64 {
    (dollars * 10_000.0).round() as i64
}

/// The longest prefix rerate indexes (a u64 holds 18 decimal digits).
const MAX_PREFIX: usize = 18;

/// `kzd_rates:constrain_weight/1`: 1..100.
pub(crate) fn constrain_weight(w: i64) -> i64 {
    w.clamp(1, 100)
}

/// `kt_rates:generate_weight/3`: `len(prefix) * 10 - trunc(units_to_dollars(C) * 100)`, C the
/// private cost in units when non-zero, else the rate_cost AS GIVEN (dollars, which KAZOO
/// hands to `units_to_dollars/1`, itself `trunc(C) / 10000`). Clamped to 1..100.
pub(crate) fn generate_weight(
    prefix: &str,
    rate_cost_dollars: f64,
    private_cost_units: i64,
) -> i64 {
    let cost = if private_cost_units == 0 {
        rate_cost_dollars
    } else {
        private_cost_units as f64
    };
    let dollars = cost.trunc() / 10_000.0;
    constrain_weight(prefix.len() as i64 * 10 - (dollars * 100.0).trunc() as i64)
}

/// A `direction` cell: `inbound`, `outbound`, or the stored list run together as KAZOO's rate
/// export writes it (`kt_rates:to_csv_row/1` casts the list with `kz_term:to_binary/1`, an
/// `iolist_to_binary`: `["inbound","outbound"]` becomes `inboundoutbound`). The directions in
/// the order given; `None` for anything else.
fn exported_directions(cell: &str) -> Option<Vec<String>> {
    let mut rest = cell;
    let mut list: Vec<String> = Vec::new();
    while !rest.is_empty() {
        let d = ["inbound", "outbound"]
            .into_iter()
            .find(|d| rest.starts_with(d) && !list.iter().any(|x| x == d))?;
        list.push(d.to_owned());
        rest = &rest[d.len()..];
    }
    (!list.is_empty()).then_some(list)
}

/// `kt_rates:generate_name/3` with the directions KAZOO has set by then.
pub(crate) fn generate_name(prefix: &str, iso: Option<&str>, directions: &[String]) -> String {
    let dirs = directions.join("_");
    match (iso, dirs.is_empty()) {
        (None, true) => prefix.to_owned(),
        (Some(iso), true) => format!("{iso}_{prefix}"),
        (None, false) => format!("{dirs}_{prefix}"),
        (Some(iso), false) => format!("{dirs}_{iso}_{prefix}"),
    }
}

/// `kz_term:to_integer/1` of a text, as `kz_json:get_integer_value/3` casts it: an integer
/// (sign allowed), else a float rounded half away from zero, else nothing.
fn kz_integer(v: &str) -> Option<i64> {
    let t = v.strip_prefix('+').unwrap_or(v);
    if let Ok(i) = t.parse::<i64>() {
        return Some(i);
    }
    erlang_float(v).map(|f| f.round() as i64)
}

/// Erlang's `binary_to_float/1` syntax: digits, `.`, digits, optional exponent.
fn erlang_float(v: &str) -> Option<f64> {
    let body = v.strip_prefix(['+', '-']).unwrap_or(v);
    let (mant, _) = body.split_once(['e', 'E']).unwrap_or((body, ""));
    let (a, b) = mant.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    (digits(a) && digits(b)).then(|| v.parse().ok()).flatten()
}

/// `kz_term:to_float/1` of a text: a float, else an integer as a float.
fn kz_float(v: &str) -> Option<f64> {
    erlang_float(v).or_else(|| {
        v.strip_prefix('+')
            .unwrap_or(v)
            .parse::<i64>()
            .ok()
            .map(|i| i as f64)
    })
}

/// The physical line (1-based, whatever the line ends: `\n`, `\r\n` or a lone `\r`) of each
/// byte offset of `bytes`.
fn physical_lines(bytes: &[u8]) -> impl Fn(u64) -> u64 + '_ {
    let mut ends: Vec<u64> = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        let lone_cr = b == b'\r' && bytes.get(i + 1) != Some(&b'\n');
        if b == b'\n' || lone_cr {
            ends.push(i as u64);
        }
    }
    move |offset| {
        // The csv crate may place a record's start on the line end before it (the `\n` of a
        // CRLF): its first byte of content is what counts.
        let mut at = offset as usize;
        while matches!(bytes.get(at), Some(b'\r' | b'\n')) {
            at += 1;
        }
        ends.partition_point(|&e| e < at as u64) as u64 + 1
    }
}

/// CouchDB's collation of ids (ICU): letters compared without case first, lowercase before
/// uppercase on a tie. Close to ICU for the ASCII ids rates have.
fn couch_id_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.to_ascii_lowercase()
        .cmp(&b.to_ascii_lowercase())
        .then_with(|| b.cmp(a))
}

impl Deck {
    fn finish(&mut self) {
        for (i, r) in self.rates.iter().enumerate() {
            if let Ok(k) = r.prefix.parse::<u64>() {
                self.index.entry(k).or_default().push(i as u32);
            }
        }
        let rates = &self.rates;
        for list in self.index.values_mut() {
            list.sort_by(|&a, &b| {
                let (ra, rb) = (&rates[a as usize], &rates[b as usize]);
                couch_id_order(&ra.doc_id, &rb.doc_id).then(ra.line.cmp(&rb.line))
            });
        }
    }
}

/// The sort key hon_util compares: prefix length (longer first), then weight (lower first) or
/// cost (higher first). `a` sorts before `b` only when strictly better.
fn better(sort: RateSort, a: &Rate, b: &Rate) -> bool {
    if a.prefix.len() != b.prefix.len() {
        return a.prefix.len() > b.prefix.len();
    }
    match sort {
        RateSort::Weight => a.weight < b.weight,
        RateSort::Cost => a.cost_dollars > b.cost_dollars,
    }
}

impl DeckSet {
    /// The rate KAZOO would pick for a leg: the account's ratedeck when the map names one, else
    /// the default deck; `None` when the number is too short or no rate survives the filters.
    pub fn find(&self, leg: &Lookup) -> Option<&Rate> {
        let e164 = self.converters.normalize(leg.number);
        // hon_util: a DID of one character is too short.
        if e164.len() <= 1 {
            return None;
        }
        let mapped = leg.account.and_then(|a| self.accounts.get(a));
        let deck = mapped
            .and_then(|id| self.named.get(id))
            .unwrap_or(&self.default);
        let from = leg.caller_id_number.map(|n| self.converters.normalize(n));
        let mut keys: Vec<u64> = Vec::with_capacity(MAX_PREFIX);
        let mut v = 0u64;
        for b in e164.bytes().filter(u8::is_ascii_digit).take(MAX_PREFIX) {
            v = v * 10 + u64::from(b - b'0');
            if !keys.contains(&v) {
                keys.push(v);
            }
        }
        let mut best: Option<&Rate> = None;
        for key in keys.iter().rev() {
            let Some(list) = deck.index.get(key) else {
                continue;
            };
            for r in list.iter().map(|&i| &deck.rates[i as usize]) {
                if !self.matches(r, leg, &e164, from.as_deref(), mapped.is_some()) {
                    continue;
                }
                // usort/2 with a strict comparison: among equals the later one comes first.
                if best.is_none_or(|b| !better(self.config.sort, b, r)) {
                    best = Some(r);
                }
            }
        }
        best
    }

    fn matches(
        &self,
        r: &Rate,
        leg: &Lookup,
        e164: &str,
        from: Option<&str>,
        mapped: bool,
    ) -> bool {
        self.config.filters.iter().all(|f| match f {
            Filter::Direction => leg
                .direction
                .is_none_or(|d| r.directions.iter().any(|x| x == d)),
            Filter::RouteOptions => true,
            Filter::Routes => r.routes.iter().any(|re| re.is_match(e164.as_bytes())),
            Filter::CallerIdNumbers => {
                r.caller_id_patterns.is_empty()
                    || from.is_some_and(|n| {
                        r.caller_id_patterns
                            .iter()
                            .any(|re| re.is_match(n.as_bytes()))
                    })
            }
            Filter::RatedeckId => mapped,
            Filter::Reseller => r.account_id.as_deref() == leg.reseller_id,
            Filter::Version => r.rate_version == self.config.rate_version,
        })
    }

    /// The E.164 converters in force.
    pub fn converters(&self) -> &E164Converters {
        &self.converters
    }

    /// Replaces the E.164 converters (`--e164-converters`).
    pub fn set_converters(&mut self, c: E164Converters) {
        self.converters = c;
    }

    /// The hotornot settings in force.
    pub fn config(&self) -> &Hotornot {
        &self.config
    }

    /// A stable identity of the deck: `sha256:` and the hex digest of the deck file's bytes,
    /// followed by the ratedeck map's when one is loaded. The same file gives the same identity
    /// on any machine; any byte changed gives another.
    pub fn identity(&self) -> String {
        hex_digest(self.digest.clone())
    }

    /// Loads a deck CSV as KAZOO's rates import would store it; bad rows are kept as issues
    /// with their physical line numbers.
    pub fn load(path: &Path, config: impl Into<Hotornot>) -> Result<Self, DeckError> {
        let display = path.display().to_string();
        let read_err = |message: String| DeckError::Read {
            path: display.clone(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
        let mut set = DeckSet {
            config: config.into(),
            ..DeckSet::default()
        };
        set.digest.update(&bytes);
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(&bytes[..]);
        let headers: Vec<String> = rdr
            .headers()
            .map_err(|e| read_err(e.to_string()))?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
            .collect();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let (Some(c_prefix), Some(c_cost)) = (col("prefix"), col("rate_cost")) else {
            return Err(read_err(format!(
                "the header must name prefix and rate_cost (found: {})",
                headers.join(", ")
            )));
        };
        let cols = Cols {
            prefix: c_prefix,
            cost: c_cost,
            increment: col("rate_increment"),
            minimum: col("rate_minimum"),
            surcharge: col("rate_surcharge"),
            nocharge: col("rate_nocharge_time"),
            direction: col("direction"),
            weight: col("weight"),
            name: col("rate_name"),
            ratedeck_id: col("ratedeck_id"),
            routes: col("routes"),
            caller_id_numbers: col("caller_id_numbers"),
            iso: col("iso_country_code"),
            suffix: col("rate_suffix"),
            account_id: col("account_id"),
            version: col("rate_version"),
        };
        let line_of = physical_lines(&bytes);
        for rec in rdr.records() {
            set.rows += 1;
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, |p| line_of(p.byte()));
                    set.issues.push(DeckIssue {
                        line,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let line = rec.position().map_or(0, |p| line_of(p.byte()));
            match parse_row(&rec, &cols, line, &set.config, &mut set.issues) {
                Ok(rate) => match rate.ratedeck_id.clone() {
                    Some(id) => set.named.entry(id).or_default().rates.push(rate),
                    None => set.default.rates.push(rate),
                },
                Err(reason) => set.issues.push(DeckIssue { line, reason }),
            }
        }
        let usable =
            set.default.rates.len() + set.named.values().map(|d| d.rates.len()).sum::<usize>();
        if usable == 0 {
            return Err(match set.issues.first() {
                Some(first) => DeckError::Empty {
                    path: display,
                    issues: set.issues.len(),
                    first_line: first.line,
                    first: first.reason.clone(),
                },
                None => DeckError::NoRows(display),
            });
        }
        set.default.finish();
        for d in set.named.values_mut() {
            d.finish();
        }
        set.warn_shared_ids();
        Ok(set)
    }

    /// Rows that share KAZOO's document id overwrite one another in a KAZOO import (CouchDB
    /// keeps one document per id); rerate keeps them all and says so.
    fn warn_shared_ids(&mut self) {
        let mut seen: HashMap<(Option<&String>, &str), u64> = HashMap::new();
        let mut warn = Vec::new();
        let decks = std::iter::once(&self.default).chain(self.named.values());
        for r in decks.flat_map(|d| d.rates.iter()) {
            match seen.get(&(r.ratedeck_id.as_ref(), r.doc_id.as_str())) {
                Some(&first) => warn.push(DeckIssue {
                    line: r.line,
                    reason: format!(
                        "kept, but shares KAZOO's document id {:?} with line {first}: a KAZOO import stores only one of them (give each its own iso_country_code or rate_suffix)",
                        r.doc_id
                    ),
                }),
                None => {
                    seen.insert((r.ratedeck_id.as_ref(), r.doc_id.as_str()), r.line);
                }
            }
        }
        warn.sort_by_key(|w| w.line);
        self.issues.extend(warn);
    }

    /// Loads `account_id,ratedeck_id` pairs (a header row is optional).
    pub fn load_account_map(&mut self, path: &Path) -> Result<(), DeckError> {
        let display = path.display().to_string();
        let err = |line: u64, message: String| DeckError::Map {
            path: display.clone(),
            line,
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(0, e.to_string()))?;
        self.digest.update(&bytes);
        let line_of = physical_lines(&bytes);
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(&bytes[..]);
        for rec in rdr.records() {
            let rec =
                rec.map_err(|e| err(e.position().map_or(0, |p| line_of(p.byte())), e.to_string()))?;
            let line = rec.position().map_or(0, |p| line_of(p.byte()));
            let (Some(a), Some(d)) = (rec.get(0), rec.get(1)) else {
                return Err(err(
                    line,
                    "expected two columns: account_id,ratedeck_id".into(),
                ));
            };
            if line == 1 && a.eq_ignore_ascii_case("account_id") {
                continue;
            }
            if !self.named.contains_key(d) {
                return Err(err(
                    line,
                    format!("ratedeck {d:?} has no rates in the deck"),
                ));
            }
            self.accounts.insert(a.to_owned(), d.to_owned());
        }
        Ok(())
    }
}

/// Column positions of a deck file.
struct Cols {
    prefix: usize,
    cost: usize,
    increment: Option<usize>,
    minimum: Option<usize>,
    surcharge: Option<usize>,
    nocharge: Option<usize>,
    direction: Option<usize>,
    weight: Option<usize>,
    name: Option<usize>,
    ratedeck_id: Option<usize>,
    routes: Option<usize>,
    caller_id_numbers: Option<usize>,
    iso: Option<usize>,
    suffix: Option<usize>,
    account_id: Option<usize>,
    version: Option<usize>,
}

fn parse_row(
    rec: &csv::StringRecord,
    c: &Cols,
    line: u64,
    config: &Hotornot,
    issues: &mut Vec<DeckIssue>,
) -> Result<Rate, String> {
    // kz_csv: an empty cell is no value at all.
    let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).filter(|v| !v.is_empty());
    let text = |c: Option<usize>| get(c).map(str::to_owned);
    let raw_prefix = rec.get(c.prefix).unwrap_or_default();
    let prefix = match raw_prefix
        .strip_prefix('+')
        .unwrap_or(raw_prefix)
        .parse::<u64>()
    {
        Ok(p) if p.to_string().len() <= MAX_PREFIX => p.to_string(),
        _ => {
            return Err(format!(
                "prefix {raw_prefix:?} is not an integer of 1 to {MAX_PREFIX} digits"
            ))
        }
    };
    let cost_text = rec.get(c.cost).unwrap_or_default();
    if cost_text.is_empty() {
        return Err("rate_cost is empty (KAZOO's import requires it)".into());
    }
    let cost_dollars = match kz_float(cost_text) {
        Some(d) if d.is_finite() && d >= 0.0 => d,
        _ => {
            return Err(format!(
                "rate_cost {cost_text:?} is not a non-negative amount in dollars"
            ))
        }
    };
    let mut dropped = |name: &str, v: &str| {
        issues.push(DeckIssue {
            line,
            reason: format!(
                "kept: {name} {v:?} is not a number, which KAZOO's import drops (its default applies)"
            ),
        });
    };
    // KAZOO's import stores a negative number as it is (kz_json does not check the schema's
    // minimum), which makes the formula meaningless: such a row is refused.
    let mut int = |name: &str, col: Option<usize>, floor: i64| -> Result<Option<i64>, String> {
        let Some(v) = get(col) else {
            return Ok(None);
        };
        match kz_integer(v) {
            None => {
                dropped(name, v);
                Ok(None)
            }
            Some(i) if i < floor => Err(format!("{name} {v:?} is negative")),
            Some(i) => Ok(Some(i)),
        }
    };
    let increment = int("rate_increment", c.increment, 0)?.unwrap_or(config.default_increment);
    let minimum = int("rate_minimum", c.minimum, 0)?.unwrap_or(config.default_minimum);
    let nocharge = int("rate_nocharge_time", c.nocharge, 0)?.unwrap_or(config.default_nocharge);
    // Any weight is clamped to 1..100 (kzd_rates:constrain_weight/1).
    let given_weight = int("weight", c.weight, i64::MIN)?;
    let surcharge = match get(c.surcharge) {
        None => 0,
        Some(v) => match kz_float(v) {
            Some(d) if d.is_finite() => dollars_to_units(d),
            _ => {
                dropped("rate_surcharge", v);
                0
            }
        },
    };
    let directions: Vec<String> = match get(c.direction) {
        None => vec!["inbound".into(), "outbound".into()],
        Some(d) => match exported_directions(d) {
            Some(list) => list,
            None => {
                return Err(format!(
                    "direction {d:?} is not inbound, outbound, both run together as KAZOO's export writes them, or empty (KAZOO's import refuses the row)"
                ))
            }
        },
    };
    let iso = get(c.iso);
    let name = text(c.name).unwrap_or_else(|| generate_name(&prefix, iso, &directions));
    let (weight, weight_generated) = match given_weight {
        Some(w) => (constrain_weight(w), false),
        None => (generate_weight(&prefix, cost_dollars, 0), true),
    };
    let routes = match get(c.routes).map(route_list) {
        Some(Some(list)) => list,
        _ => vec![format!(r"^\+?{prefix}.+$")],
    };
    let routes = routes
        .iter()
        .map(|r| compile_pcre(r).map_err(|e| format!("routes: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let caller_id_patterns = match get(c.caller_id_numbers) {
        None => vec![],
        Some(v) => v
            .split(':')
            .map(|x| {
                compile_pcre(&format!(r"^\+?{x}.+$")).map_err(|e| format!("caller_id_numbers: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let doc_id = match get(c.suffix) {
        Some(s) => format!("{}-{prefix}-{s}", iso.unwrap_or("XX")),
        None => format!("{}-{prefix}", iso.unwrap_or("XX")),
    };
    Ok(Rate {
        name: Some(name),
        rate: dollars_to_units(cost_dollars),
        increment,
        minimum,
        surcharge,
        nocharge,
        directions,
        weight,
        weight_generated,
        cost_dollars,
        ratedeck_id: text(c.ratedeck_id),
        account_id: text(c.account_id),
        rate_version: text(c.version),
        doc_id,
        routes,
        caller_id_patterns,
        line,
        prefix,
    })
}

/// `kt_rates:maybe_generate_routes/1`: a JSON list of strings, a JSON string, or (not JSON) the
/// text itself; `None` (the default route) for any other JSON value.
fn route_list(v: &str) -> Option<Vec<String>> {
    match serde_json::from_str::<serde_json::Value>(v) {
        Err(_) => Some(vec![v.to_owned()]),
        Ok(serde_json::Value::String(s)) => Some(vec![s]),
        Ok(serde_json::Value::Array(a)) => Some(
            a.into_iter()
                .map(|x| match x {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
        ),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deck(text: &str, config: impl Into<Hotornot>) -> Result<DeckSet, DeckError> {
        let dir = tempfile::tempdir().map_err(|e| DeckError::NoRows(e.to_string()))?;
        let p = dir.path().join("deck.csv");
        std::fs::write(&p, text).map_err(|e| DeckError::NoRows(e.to_string()))?;
        DeckSet::load(&p, config)
    }

    fn pick<'a>(d: &'a DeckSet, number: &'a str, dir: Option<&'a str>) -> Option<String> {
        d.find(&Lookup {
            number,
            direction: dir,
            ..Lookup::default()
        })
        .and_then(|r| r.name.clone())
    }

    #[test]
    fn a_deck_exported_by_kazoo_reads_its_run_together_directions() -> Result<(), DeckError> {
        // As the tasks app's rate export writes it: every cell quoted, a both-direction rate's
        // direction list run together (`kt_rates:to_csv_row/1`).
        let d = deck(
            concat!(
                "\"description\",\"direction\",\"iso_country_code\",\"prefix\",\"rate_cost\",\"rate_increment\",\"rate_minimum\",\"rate_name\",\"weight\"\n",
                "\"UK mobile\",\"outbound\",\"GB\",\"447\",\"0.07\",\"6\",\"30\",\"UK-MOBILE\",\"30\"\n",
                "\"Germany\",\"inboundoutbound\",\"DE\",\"49\",\"0.05\",\"60\",\"60\",\"DE\",\"20\"\n",
                "\"France\",\"outboundinbound\",\"FR\",\"33\",\"0.05\",\"60\",\"60\",\"FR\",\"20\"\n",
            ),
            Hotornot::default(),
        )?;
        for dir in ["inbound", "outbound"] {
            assert_eq!(pick(&d, "4930123456", Some(dir)).as_deref(), Some("DE"));
            assert_eq!(pick(&d, "33123456789", Some(dir)).as_deref(), Some("FR"));
        }
        assert_eq!(pick(&d, "447700900123", Some("inbound")), None);
        assert_eq!(exported_directions("inboundinbound"), None);
        assert_eq!(exported_directions("inbound_outbound"), None);
        assert_eq!(exported_directions(""), None);
        Ok(())
    }

    #[test]
    fn dollars_become_units_as_kazoo_rounds_them() {
        assert_eq!(dollars_to_units(0.2262), 2262);
        assert_eq!(dollars_to_units(0.00005), 1);
        assert_eq!(dollars_to_units(0.0), 0);
    }

    #[test]
    fn generated_weight_reads_the_dollars_as_units_as_kazoo_does() {
        // 0.06 dollars: trunc(0.06) / 10000 * 100 = 0, so 2 digits give 20.
        assert_eq!(generate_weight("44", 0.06, 0), 20);
        assert_eq!(generate_weight("1", 0.5, 0), 10);
        assert_eq!(generate_weight("4420", 9.99, 0), 40);
        // Only from 100 dollars a minute on does the cost lower the weight.
        assert_eq!(generate_weight("44", 150.0, 0), 19);
        assert_eq!(generate_weight("44", 1999.0, 0), 1);
        // A private cost in units is used as units: 600 units = 0.06 dollars -> 6 off.
        assert_eq!(generate_weight("44", 0.09, 600), 14);
        // Clamped to 1..100.
        assert_eq!(generate_weight("1234567890123", 0.01, 0), 100);
        assert_eq!(generate_weight("1", 50_000.0, 0), 1);
        assert_eq!(constrain_weight(0), 1);
        assert_eq!(constrain_weight(-5), 1);
        assert_eq!(constrain_weight(250), 100);
    }

    #[test]
    fn import_fills_what_kazoo_fills() -> Result<(), DeckError> {
        let d = deck(
            "prefix,rate_cost,weight,rate_name,direction,iso_country_code,caller_id_numbers,rate_increment,rate_minimum\n\
             44,0.06,,,,,,,\n\
             +033,0.10,150,,outbound,FR,,6,abc\n\
             1,0.01,0,,inbound,,1212:1415,,\n",
            RateSort::Weight,
        )?;
        let r = |n: &str, dir| {
            d.find(&Lookup {
                number: n,
                direction: dir,
                ..Lookup::default()
            })
            .cloned()
        };
        let uk = r("+442079460123", None).ok_or(DeckError::NoRows("uk".into()))?;
        assert_eq!(uk.name.as_deref(), Some("inbound_outbound_44"));
        assert_eq!((uk.weight, uk.weight_generated), (20, true));
        assert_eq!((uk.increment, uk.minimum, uk.nocharge), (60, 60, 0));
        assert_eq!(uk.doc_id, "XX-44");
        let fr = r("+33142000000", Some("outbound")).ok_or(DeckError::NoRows("fr".into()))?;
        assert_eq!(fr.prefix, "33");
        assert_eq!(fr.name.as_deref(), Some("outbound_FR_33"));
        assert_eq!((fr.weight, fr.weight_generated), (100, false));
        // "abc" is dropped by KAZOO's import: the default minimum applies, with a warning.
        assert_eq!((fr.increment, fr.minimum), (6, 60));
        assert!(d
            .issues
            .iter()
            .any(|i| i.line == 3 && i.reason.contains("rate_minimum \"abc\"")));
        let us = r("+12125550123", Some("inbound")).ok_or(DeckError::NoRows("us".into()))?;
        assert_eq!(us.weight, 1);
        assert_eq!(us.caller_id_patterns.len(), 2);
        assert!(us.caller_id_patterns[1].is_match(b"+14155550100"));
        Ok(())
    }

    #[test]
    fn longest_prefix_then_weight_or_cost_and_filters() -> Result<(), DeckError> {
        let text = "prefix,rate_cost,rate_increment,rate_minimum,rate_surcharge,direction,weight,rate_name,routes\n\
                    1,0.01,6,6,,,,US-ANY,\n\
                    1415,0.02,60,60,,,50,SF-A,\n\
                    1415,0.03,60,60,0.05,,10,SF-B,\n\
                    1415,0.04,60,60,,inbound,1,SF-IN,\n\
                    44,0.10,,,,,,UK,\n\
                    4420,0.20,,,,,,LONDON,\"[\"\"^\\\\+4420[78]\"\"]\"\n";
        let d = deck(text, RateSort::Weight)?;
        assert_eq!(
            pick(&d, "+14155550100", Some("outbound")).as_deref(),
            Some("SF-B")
        );
        assert_eq!(
            pick(&d, "+14155550100", Some("inbound")).as_deref(),
            Some("SF-IN")
        );
        // A leg without a direction is not filtered by direction (kapi_rate:direction undefined).
        assert_eq!(pick(&d, "+14155550100", None).as_deref(), Some("SF-IN"));
        assert_eq!(
            pick(&d, "+12125550100", Some("outbound")).as_deref(),
            Some("US-ANY")
        );
        // Routes: LONDON only for 4420 7/8; other 4420 numbers fall back to UK.
        assert_eq!(pick(&d, "+442071838750", None).as_deref(), Some("LONDON"));
        assert_eq!(pick(&d, "+442031838750", None).as_deref(), Some("UK"));
        assert_eq!(pick(&d, "+33142000000", None), None);
        // The default route needs a digit after the prefix: "+1" alone is too short anyway,
        // and "+44" has nothing after 44.
        assert_eq!(pick(&d, "+44", None), None);
        let b = d
            .find(&Lookup {
                number: "+14155550100",
                direction: Some("outbound"),
                ..Lookup::default()
            })
            .map(|r| (r.rate, r.surcharge, r.increment, r.minimum));
        assert_eq!(b, Some((300, 500, 60, 60)));
        let by_cost = deck(text, RateSort::Cost)?;
        assert_eq!(
            pick(&by_cost, "+14155550100", Some("outbound")).as_deref(),
            Some("SF-B"),
            "0.03 beats 0.02 (SF-IN is inbound only)"
        );
        Ok(())
    }

    #[test]
    fn ties_go_to_the_last_in_couchdb_order_as_usort_with_a_strict_sort_gives(
    ) -> Result<(), DeckError> {
        // Same prefix, same weight: usort/2 with sort_rate_by_weight/2 (a strict <) returns
        // them in reverse input order, input being CouchDB's id order: BE-32 < FR-32 < XX-32
        // (XX: no iso_country_code). XX-32 comes first in the result.
        let text = "prefix,rate_cost,weight,rate_name,iso_country_code\n\
                    32,0.05,10,X,\n\
                    32,0.07,10,B,BE\n\
                    32,0.09,10,F,FR\n";
        let d = deck(text, RateSort::Weight)?;
        assert_eq!(pick(&d, "+3225550000", None).as_deref(), Some("X"));
        // By cost, equal costs: the same rule. Different costs: the highest.
        let d = deck(
            "prefix,rate_cost,rate_name,iso_country_code\n32,0.05,A,AA\n32,0.05,Z,ZZ\n32,0.01,M,MM\n",
            RateSort::Cost,
        )?;
        assert_eq!(pick(&d, "+3225550000", None).as_deref(), Some("Z"));
        // Lower weight wins over order; a longer prefix over any weight.
        let d = deck(
            "prefix,rate_cost,weight,rate_name,iso_country_code\n32,0.05,5,A,AA\n32,0.05,9,Z,ZZ\n322,0.5,100,LONG,\n",
            RateSort::Weight,
        )?;
        assert_eq!(pick(&d, "+3215550000", None).as_deref(), Some("A"));
        assert_eq!(pick(&d, "+3225550000", None).as_deref(), Some("LONG"));
        // Rows sharing a document id are kept, with a warning naming both lines.
        let d = deck(
            "prefix,rate_cost,rate_name\n44,0.06,A\n44,0.09,B\n",
            RateSort::Weight,
        )?;
        assert!(d
            .issues
            .iter()
            .any(|i| i.line == 3 && i.reason.contains("XX-44") && i.reason.contains("line 2")));
        Ok(())
    }

    #[test]
    fn optional_filters_from_hotornot_settings() -> Result<(), DeckError> {
        let text = "prefix,rate_cost,rate_name,caller_id_numbers,account_id,rate_version,iso_country_code\n\
                    1,0.01,PLAIN,,,,AA\n\
                    1,0.02,FROM-NY,1212,,,BB\n\
                    1,0.03,RESELLER,,r1,v2,CC\n";
        let with = |filters: Vec<Filter>, version: Option<&str>| -> Result<DeckSet, DeckError> {
            deck(
                text,
                Hotornot {
                    filters,
                    rate_version: version.map(str::to_owned),
                    ..Hotornot::default()
                },
            )
        };
        let find = |d: &DeckSet, cid: Option<&str>, reseller: Option<&str>| {
            d.find(&Lookup {
                number: "+14155550100",
                caller_id_number: cid,
                reseller_id: reseller,
                ..Lookup::default()
            })
            .and_then(|r| r.name.clone())
        };
        // Default filters: all three match; weights equal (generated 10 each), last wins.
        let d = with(DEFAULT_FILTERS.to_vec(), None)?;
        assert_eq!(find(&d, None, None).as_deref(), Some("RESELLER"));
        let mut f = DEFAULT_FILTERS.to_vec();
        f.push(Filter::CallerIdNumbers);
        f.push(Filter::Reseller);
        let d = with(f.clone(), None)?;
        assert_eq!(
            find(&d, Some("2125550000"), None).as_deref(),
            Some("FROM-NY")
        );
        assert_eq!(
            find(&d, Some("+13125550000"), None).as_deref(),
            Some("PLAIN")
        );
        f.push(Filter::Version);
        let d = with(f, Some("v2"))?;
        assert_eq!(find(&d, None, Some("r1")).as_deref(), Some("RESELLER"));
        assert_eq!(find(&d, None, None), None);
        Ok(())
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_an_unusable_deck_is_an_error() -> Result<(), DeckError> {
        let d = deck(
            "prefix,rate_cost\r\n1,0.01\r\nabc,0.02\r\n44,-1\r\n33,\r\n",
            RateSort::Weight,
        )?;
        let issues: Vec<(u64, &str)> = d
            .issues
            .iter()
            .map(|i| (i.line, i.reason.as_str()))
            .collect();
        assert_eq!(issues.len(), 3);
        assert_eq!(issues[0].0, 3);
        assert!(issues[0].1.contains("prefix \"abc\""));
        assert_eq!(issues[1].0, 4);
        assert!(issues[1].1.contains("rate_cost \"-1\""));
        assert_eq!(issues[2].0, 5);
        assert!(matches!(
            deck("prefix,rate_cost\nx,1\n", RateSort::Weight),
            Err(DeckError::Empty { .. })
        ));
        assert!(matches!(
            deck("prefix,rate_cost\n", RateSort::Weight),
            Err(DeckError::NoRows(_))
        ));
        assert!(matches!(
            deck("foo,bar\n1,2\n", RateSort::Weight),
            Err(DeckError::Read { .. })
        ));
        assert!(matches!(
            deck("prefix,rate_cost,direction\n1,0.1,both\n", RateSort::Weight),
            Err(DeckError::Empty { .. })
        ));
        Ok(())
    }

    #[test]
    fn deck_identity_is_the_bytes() -> Result<(), DeckError> {
        let a = deck("prefix,rate_cost\n1,0.01\n", RateSort::Weight)?;
        let b = deck("prefix,rate_cost\n1,0.01\n", RateSort::Cost)?;
        let c = deck("prefix,rate_cost\n1,0.02\n", RateSort::Weight)?;
        assert_eq!(a.identity(), b.identity());
        assert_ne!(a.identity(), c.identity());
        assert!(a.identity().starts_with("sha256:") && a.identity().len() == 71);
        Ok(())
    }

    #[test]
    fn accounts_use_their_ratedeck_else_the_default() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("deck.csv");
        std::fs::write(
            &p,
            "prefix,rate_cost,ratedeck_id,rate_name\n1,0.01,,DEFAULT\n1,0.05,gold,GOLD\n",
        )?;
        let mut d = DeckSet::load(&p, RateSort::Weight)?;
        let before = d.identity();
        let m = dir.path().join("map.csv");
        std::fs::write(&m, "account_id,ratedeck_id\nacc-gold,gold\n")?;
        d.load_account_map(&m)?;
        assert_ne!(before, d.identity(), "the map is part of the identity");
        let n = |a: &str| {
            d.find(&Lookup {
                account: Some(a),
                number: "+14155550100",
                ..Lookup::default()
            })
            .and_then(|r| r.name.clone())
        };
        assert_eq!(n("acc-gold").as_deref(), Some("GOLD"));
        assert_eq!(n("acc-other").as_deref(), Some("DEFAULT"));
        std::fs::write(&m, "acc-x,silver\n")?;
        assert!(
            d.load_account_map(&m).is_err(),
            "an unknown ratedeck is an error"
        );
        Ok(())
    }
}
