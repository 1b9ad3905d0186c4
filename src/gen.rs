//! A generator of realistic KAZOO CDRs for benchmarks and scale tests.
//!
//! Each leg has the full stored-document shape (nested custom_channel_vars with string values,
//! SDP bodies, SIP headers, `_id`/`pvt_*` keys; about 3 KB), 1-3 legs per interaction, answered
//! and failed calls, per_minute and flat-rate billing, every increment/minimum combination, and a
//! few unrated per_minute legs. Output is deterministic for a seed, whatever the thread count.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;

use crate::time::UNIX_EPOCH_IN_GREGORIAN;

pub(crate) mod crossbar;

/// splitmix64: small, fast, and the same sequence everywhere for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    /// True with probability `pct`%.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// How the generated files are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// One CDR per line.
    Ndjson,
    /// Crossbar API pages of 50 CDRs, one page per line.
    Pages,
    /// KAZOO 5.0's crossbar CSV export (`GET /cdrs` as text/csv), exactly as `cb_cdrs` writes
    /// it: unquoted cells, CRLF, one file per account under `account_id=<ID>/`, names with
    /// commas and quotes; the reseller columns for every other account.
    KazooCsv,
    /// `GET /v2/accounts/{id}/cdrs` listing pages of the same legs: 50 rows a page, the CSV's
    /// columns as JSON keys, one page per line, one file per account under `account_id=<ID>/`.
    Listing,
    /// A month database as CouchDB's `_all_docs?include_docs=true` gives it (a row a line,
    /// `,` CRLF between rows): the same CDR documents, and beside them what a month database
    /// also holds (see [`modb_extras`]): a per-minute ledger of every charged leg, a fax or a
    /// call recording's metadata for some calls (sharing their call_id), voicemail messages
    /// and the `_design/cdrs` document. Only the CDRs are legs.
    Modb,
}

/// How the interactions are shared among the accounts (`rerate gen --account-skew`).
///
/// Operators have many accounts with a few calls a day and a few with most of the traffic;
/// `Zipf` gives that shape, `Uniform` the even spread of the corpora before it existed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum AccountSkew {
    /// Every account equally likely (`uniform`, the default): the same bytes as before.
    #[default]
    Uniform,
    /// Zipf's law with exponent `s` (`zipf:S`, S > 0): the account of rank k (1-based; rank 1 is
    /// the first account id generated) gets a share of the interactions proportional to 1/k^S.
    /// At S = 1 over 3 accounts the shares are 6/11, 3/11 and 2/11.
    Zipf(f64),
}

impl FromStr for AccountSkew {
    type Err = String;

    /// `uniform` or `zipf:S` with S a number above 0 and at most 10, such as `zipf:1.1`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("uniform") {
            return Ok(AccountSkew::Uniform);
        }
        let bad = || format!("{s:?} is not `uniform` or `zipf:S` with 0 < S <= 10 (e.g. zipf:1.1)");
        let exp = s
            .strip_prefix("zipf:")
            .or_else(|| s.strip_prefix("ZIPF:"))
            .ok_or_else(bad)?;
        match exp.trim().parse::<f64>() {
            Ok(e) if e > 0.0 && e <= 10.0 => Ok(AccountSkew::Zipf(e)),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for AccountSkew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountSkew::Uniform => f.write_str("uniform"),
            AccountSkew::Zipf(e) => write!(f, "zipf:{e}"),
        }
    }
}

impl AccountSkew {
    /// Each account's expected share of the interactions, by account index (rank - 1); they add
    /// up to 1. Empty for 0 accounts.
    pub fn shares(self, accounts: u64) -> Vec<f64> {
        let weights: Vec<f64> = (1..=accounts)
            .map(|k| match self {
                AccountSkew::Uniform => 1.0,
                AccountSkew::Zipf(e) => (k as f64).powf(-e),
            })
            .collect();
        let total: f64 = weights.iter().sum();
        weights.into_iter().map(|w| w / total).collect()
    }
}

/// Draws the account of each interaction: one draw of the file's generator either way.
enum AccountPicker {
    /// `Rng::below(accounts)`, as every corpus before `--account-skew` was drawn.
    Uniform(u64),
    /// The upper bound of each account's slice of `0..=u64::MAX`, ascending; the last is
    /// `u64::MAX`.
    Cumulative(Vec<u64>),
}

impl AccountPicker {
    fn new(skew: AccountSkew, accounts: u64) -> Self {
        let accounts = accounts.max(1);
        match skew {
            AccountSkew::Uniform => AccountPicker::Uniform(accounts),
            AccountSkew::Zipf(_) => {
                let mut cum = 0.0;
                let mut bounds: Vec<u64> = skew
                    .shares(accounts)
                    .into_iter()
                    .map(|p| {
                        cum += p;
                        // 2^64 as f64; `as` saturates at u64::MAX.
                        (cum * 18_446_744_073_709_551_616.0) as u64
                    })
                    .collect();
                if let Some(last) = bounds.last_mut() {
                    *last = u64::MAX;
                }
                AccountPicker::Cumulative(bounds)
            }
        }
    }

    /// An account index in `0..accounts`.
    fn pick(&self, rng: &mut Rng) -> u64 {
        match self {
            AccountPicker::Uniform(n) => rng.below(*n),
            AccountPicker::Cumulative(bounds) => {
                let r = rng.next_u64();
                let i = bounds.partition_point(|&b| b < r);
                i.min(bounds.len() - 1) as u64
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub legs: u64,
    pub accounts: u64,
    /// How the interactions are shared among the `accounts`.
    pub account_skew: AccountSkew,
    pub days: u64,
    pub seed: u64,
    pub files: u64,
    pub shape: Shape,
    pub gzip: bool,
    /// First day, as Unix seconds at midnight UTC.
    pub start_unix: i64,
    /// The first day the call_ids are made from (its date leads each call_id), as Unix seconds:
    /// `start_unix` gives each night its own call_ids, so corpora made with the same seed for
    /// other days never share one; another night's start repeats that night's call_ids (an
    /// export made again).
    pub call_ids_start_unix: i64,
    /// `kazoo-csv`: write the header again every this many rows, as KAZOO 4.2's chunked
    /// exports did (0: once, at the top).
    pub header_every: u64,
    /// `modb` only: plant an error of every ledger class (see [`Planted`]) and write the answer
    /// key, `.planted.json` (hidden: never read as input).
    pub plant_errors: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct GenReport {
    pub files: Vec<PathBuf>,
    pub legs: u64,
    pub bytes: u64,
    /// The errors planted (`--plant-errors`), in file order.
    pub planted: Vec<Planted>,
}

/// The answer key of a corpus with planted errors, in its folder.
pub(crate) const PLANTED_FILE: &str = ".planted.json";

/// Writes the corpus into `out` (created if needed).
pub fn generate(opts: &GenOptions, out: &Path) -> std::io::Result<GenReport> {
    std::fs::create_dir_all(out)?;
    let files = opts.files.max(1);
    let per_file = opts.legs.div_ceil(files);
    type FileWritten = (Vec<PathBuf>, u64, u64, Vec<Planted>);
    let results: Vec<std::io::Result<FileWritten>> = (0..files)
        .into_par_iter()
        .map(|i| {
            let legs = per_file.min(opts.legs.saturating_sub(i * per_file));
            let ext = match opts.shape {
                Shape::Ndjson => "ndjson",
                Shape::Pages | Shape::Modb => "json",
                Shape::KazooCsv | Shape::Listing => {
                    let (paths, bytes) = crossbar::write_file(opts, i, legs, out)?;
                    return Ok((paths, legs, bytes, vec![]));
                }
            };
            let gz = if opts.gzip { ".gz" } else { "" };
            let path = out.join(format!("cdrs-{i:04}.{ext}{gz}"));
            let (bytes, planted) = write_file(opts, i, legs, &path)?;
            Ok((vec![path], legs, bytes, planted))
        })
        .collect();
    let mut report = GenReport {
        files: Vec::new(),
        legs: 0,
        bytes: 0,
        planted: Vec::new(),
    };
    for r in results {
        let (p, l, b, planted) = r?;
        report.files.extend(p);
        report.legs += l;
        report.bytes += b;
        report.planted.extend(planted);
    }
    if opts.plant_errors && opts.shape == Shape::Modb {
        let key = serde_json::to_string_pretty(&report.planted).map_err(std::io::Error::other)?;
        std::fs::write(out.join(PLANTED_FILE), key + "\n")?;
    }
    Ok(report)
}

/// A file to write, gzip-compressed if asked.
fn create(path: &Path, gzip: bool) -> std::io::Result<Box<dyn Write + Send>> {
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    Ok(if gzip {
        Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(file)
    })
}

/// The legs of the `index`th file, in order: `legs` of them, in interactions of 1-3 legs.
pub fn file_legs(opts: &GenOptions, index: u64, legs: u64) -> impl Iterator<Item = GenLeg> + '_ {
    let mut rng = Rng::new(opts.seed ^ (index + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let accounts = AccountPicker::new(opts.account_skew, opts.accounts);
    let mut written = 0u64;
    let mut serial = 0u64;
    std::iter::from_fn(move || {
        if written >= legs {
            return None;
        }
        let n = (1 + rng.below(3)).min(legs - written);
        written += n;
        Some(interaction(
            &mut rng,
            opts,
            &accounts,
            index,
            &mut serial,
            n,
        ))
    })
    .flatten()
}

fn write_file(
    opts: &GenOptions,
    index: u64,
    legs: u64,
    path: &Path,
) -> std::io::Result<(u64, Vec<Planted>)> {
    let mut w = create(path, opts.gzip)?;
    let mut bytes = 0u64;
    let mut planted = Vec::new();
    let mut page: Vec<String> = Vec::with_capacity(50);
    let mut rows_written = false;
    if opts.shape == Shape::Modb {
        let head = format!("{{\"total_rows\":{},\"offset\":0,\"rows\":[\r\n", legs);
        bytes += head.len() as u64;
        w.write_all(head.as_bytes())?;
    }
    {
        for (k, gen_leg) in file_legs(opts, index, legs).enumerate() {
            let leg = gen_leg.to_json();
            match opts.shape {
                Shape::KazooCsv | Shape::Listing => {}
                Shape::Modb => {
                    let mut docs = vec![leg];
                    let (extras, errors) = modb_extras(&gen_leg, k as u64, opts.plant_errors);
                    docs.extend(extras);
                    planted.extend(errors);
                    for doc in docs {
                        let sep: &[u8] = if rows_written { b",\r\n" } else { b"" };
                        rows_written = true;
                        let row = modb_row(&doc);
                        bytes += (sep.len() + row.len()) as u64;
                        w.write_all(sep)?;
                        w.write_all(row.as_bytes())?;
                    }
                }
                Shape::Ndjson => {
                    bytes += leg.len() as u64 + 1;
                    w.write_all(leg.as_bytes())?;
                    w.write_all(b"\n")?;
                }
                Shape::Pages => {
                    page.push(leg);
                    if page.len() == 50 {
                        bytes += write_page(&mut w, &mut page, true)?;
                    }
                }
            }
        }
    }
    if !page.is_empty() {
        bytes += write_page(&mut w, &mut page, false)?;
    }
    if opts.shape == Shape::Modb {
        let design = r#"{"_id":"_design/cdrs","language":"javascript","views":{"crossbar_listing":{"map":"function(doc) { if (doc.pvt_deleted || doc.pvt_type != 'cdr') return; emit([doc.pvt_created, doc._id], null); }"}}}"#;
        let sep = if rows_written { ",\r\n" } else { "" };
        let tail = format!("{sep}{}\r\n]}}", modb_row(design));
        bytes += tail.len() as u64;
        w.write_all(tail.as_bytes())?;
    }
    w.flush()?;
    Ok((bytes, planted))
}

/// A row of `_all_docs?include_docs=true` holding `doc` (whose `_id` it lists).
fn modb_row(doc: &str) -> String {
    let id = doc
        .strip_prefix("{\"_id\":\"")
        .and_then(|d| d.split('"').next())
        .unwrap_or_default();
    format!(
        r#"{{"id":"{id}","key":"{id}","value":{{"rev":"1-{:032x}"}},"doc":{doc}}}"#,
        crate::dataset::index::hash(doc)
    )
}

/// An error [`modb_extras`] planted in a month database's ledgers: the row the ledger
/// reconciliation must report (`queries/ledgers/`), and only those. Without a rate deck no
/// other row is reported: every other ledger is the leg's charge, as jonny5 writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Planted {
    pub call_id: String,
    /// `customer` or `reseller`.
    pub party: &'static str,
    /// `ledger_missing`, `charged_twice`, `seconds_differ`, `amount_differs`,
    /// `ledger_without_leg` or `not_per_minute`.
    pub class: &'static str,
}

/// The documents a month database holds beside the `k`th CDR of a file, as KAZOO writes them:
/// its per-minute ledgers when the leg was charged (`j5_per_minute:create_ledger_usage/4`:
/// `source.id` the call_id, `usage.quantity` the charged seconds, `amount` in units, the rate in
/// `metadata`); for one leg in ten a fax document (`fax_request`, the leg's `call_id` at the
/// top), for another one in ten a call recording's metadata (`media_recording`, `call_id` and
/// the event's `custom_channel_vars` in AMQP spelling); for one in twenty a voicemail message
/// (`metadata.call_id`). None of them is a leg. With `plant`, the errors it planted in the
/// ledgers (one leg in 40 for each class).
pub(crate) fn modb_extras(leg: &GenLeg, k: u64, plant: bool) -> (Vec<String>, Vec<Planted>) {
    let mut docs = Vec::new();
    let mut planted = Vec::new();
    let month = chrono::DateTime::from_timestamp(leg.start_unix, 0)
        .map_or_else(String::new, |d| d.format("%Y%m").to_string());
    let (call, account) = (&leg.call_id, &leg.account);
    let end = leg.end_gregorian();
    let crate::rate::Charge {
        billed_seconds: billed,
        cost_units: cost,
    } = leg.charge();
    let ledger = |id: &str, call: &str, units: i64, seconds: i64, db: &str| -> String {
        format!(
            r#"{{"_id":"{month}-{id}","account":{{"id":"{account}"}},"amount":{units},"description":"DEST","metadata":{{"billing_seconds":{},"direction":"{}","rate":{{"increment":{},"minimum":{},"value":{}}}}},"period":{{"start":{end}}},"source":{{"id":"{call}","service":"per-minute-voip"}},"usage":{{"quantity":{seconds},"type":"voice","unit":"sec"}},"pvt_account_id":"{db}","pvt_created":{end},"pvt_ledger_type":"debit","pvt_modified":{end},"pvt_type":"ledger","pvt_vsn":"1"}}"#,
            leg.talk, leg.direction, leg.rate_increment, leg.rate_minimum, leg.rate,
        )
    };
    let id = format!("{:032x}", crate::dataset::index::hash(call));
    // With `plant`, one leg in 40 of each kind gets an error of one class (see [`Planted`]).
    let plan = match plant {
        true => k % 40,
        false => 0,
    };
    let mut plant_as = |party: &'static str, class: &'static str, call: &str| {
        planted.push(Planted {
            call_id: call.to_owned(),
            party,
            class,
        });
    };
    // The customer's ledger in the customer's database and, when the reseller bills per minute
    // too, the reseller's in the reseller's (`j5_channel_destroy`): one `_id`, one `account.id`.
    let charged = leg.answered && cost > 0;
    if leg.account_billing == "per_minute" && charged {
        match plan {
            1 => plant_as("customer", "ledger_missing", call),
            2 => {
                docs.push(ledger(&id, call, cost, billed, account));
                docs.push(ledger(&format!("{id}-again"), call, cost, billed, account));
                plant_as("customer", "charged_twice", call);
            }
            3 => {
                docs.push(ledger(&id, call, cost, billed + 6, account));
                plant_as("customer", "seconds_differ", call);
            }
            4 => {
                docs.push(ledger(&id, call, cost - 1, billed, account));
                plant_as("customer", "amount_differs", call);
            }
            _ => docs.push(ledger(&id, call, cost, billed, account)),
        }
    }
    if leg.reseller_billing == "per_minute" && leg.reseller != *account && charged {
        match plan {
            7 => plant_as("reseller", "ledger_missing", call),
            8 => {
                docs.push(ledger(&id, call, cost + 1, billed, &leg.reseller));
                plant_as("reseller", "amount_differs", call);
            }
            _ => docs.push(ledger(&id, call, cost, billed, &leg.reseller)),
        }
    }
    if plan == 5 {
        // A ledger of a call the month holds no leg of.
        let ghost = format!("{call}-ghost");
        docs.push(ledger(&format!("{id}-ghost"), &ghost, 100, 60, account));
        plant_as("customer", "ledger_without_leg", &ghost);
    }
    if plan == 6 && leg.answered && leg.account_billing != "per_minute" {
        // A debit of a leg the customer does not pay per minute.
        docs.push(ledger(&format!("{id}-flat"), call, 100, 60, account));
        plant_as("customer", "not_per_minute", call);
    }
    match k % 20 {
        3 => docs.push(format!(
            r#"{{"_id":"{month}-{:016x}","call_id":"{call}","cdr_doc_id":"{month}-{call}","media_type":"tiff","rx_result":{{"success":true,"pages":2}},"timestamp":{end},"pvt_account_id":"{account}","pvt_created":{end},"pvt_modified":{end},"pvt_type":"fax","pvt_vsn":"1"}}"#,
            crate::dataset::index::hash(&format!("fax{call}"))
        )),
        7 => docs.push(format!(
            r#"{{"_id":"{month}-{:016x}","call_id":"{call}","cdr_id":"{month}-{call}","custom_channel_vars":{{"Account-ID":"{account}","Call-Interaction-ID":"{}"}},"duration":{},"start":{},"pvt_account_id":"{account}","pvt_created":{end},"pvt_modified":{end},"pvt_type":"call_recording","pvt_vsn":"1"}}"#,
            crate::dataset::index::hash(&format!("rec{call}")),
            leg.interaction_id,
            leg.talk,
            leg.start_unix + crate::time::UNIX_EPOCH_IN_GREGORIAN,
        )),
        13 | 17 => docs.push(format!(
            r#"{{"_id":"{month}-{:016x}","metadata":{{"call_id":"{call}","folder":"new","length":{},"timestamp":{end}}},"name":"message","source_type":"voicemail","pvt_account_id":"{account}","pvt_created":{end},"pvt_modified":{end},"pvt_type":"mailbox_message","pvt_vsn":"1"}}"#,
            crate::dataset::index::hash(&format!("vm{call}")),
            leg.talk * 1000,
        )),
        _ => {}
    }
    (docs, planted)
}

fn write_page(w: &mut dyn Write, page: &mut Vec<String>, more: bool) -> std::io::Result<u64> {
    let mut s = String::with_capacity(page.iter().map(|l| l.len() + 1).sum::<usize>() + 200);
    s.push_str("{\"page_size\":");
    let _ = write!(s, "{}", page.len());
    s.push_str(",\"data\":[");
    s.push_str(&page.join(","));
    s.push(']');
    if more {
        s.push_str(",\"next_start_key\":63940000000");
    }
    s.push_str(",\"request_id\":\"0f1e2d3c4b5a69788796a5b4c3d2e1f0\",\"revision\":\"undefined\",\"status\":\"success\"}\n");
    page.clear();
    w.write_all(s.as_bytes())?;
    Ok(s.len() as u64)
}

fn hex(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n);
    while s.len() < n {
        let _ = write!(s, "{:016x}", rng.next_u64());
    }
    s.truncate(n);
    s
}

fn account_id(seed: u64, i: u64) -> String {
    let mut r = Rng::new(seed.wrapping_add(i.wrapping_mul(0x9E37_79B9)));
    hex(&mut r, 32)
}

const SDP: &str = "v=0\\r\\no=FreeSWITCH 1557153336 1557153338 IN IP4 10.1.2.3\\r\\ns=FreeSWITCH\\r\\nc=IN IP4 10.1.2.3\\r\\nt=0 0\\r\\nm=audio 30862 RTP/AVP 0 101\\r\\na=rtpmap:0 PCMU/8000\\r\\na=rtpmap:101 telephone-event/8000\\r\\na=fmtp:101 0-16\\r\\na=ptime:20\\r\\na=sendrecv\\r\\na=rtcp:30863 IN IP4 10.1.2.3\\r\\n";

/// One generated leg, every value its KAZOO CDR document holds (see [`GenLeg::to_json`]).
#[derive(Debug, Clone)]
pub struct GenLeg {
    pub account: String,
    pub reseller: String,
    pub acct_idx: u64,
    pub call_id: String,
    pub interaction_id: String,
    pub bridge: String,
    pub direction: &'static str,
    pub account_billing: &'static str,
    pub reseller_billing: &'static str,
    /// Whether the CCVs carry the rating inputs (a few per_minute legs are unrated).
    pub rated: bool,
    /// The carrier's rate, units per minute (hotornot's `Pvt-Cost`): 70% of the rate on most
    /// legs, 120% on one in ten (a route sold at a loss), 0 (unknown) on one in ten.
    pub pvt_cost: u64,
    /// Units per minute, seconds, seconds, units, seconds.
    pub rate: u64,
    pub rate_increment: u64,
    pub rate_minimum: u64,
    pub surcharge: u64,
    pub rate_nocharge_time: u64,
    pub caller: String,
    pub callee: String,
    pub caller_id_name: String,
    pub callee_id_name: String,
    pub answered: bool,
    pub talk: i64,
    pub ring: i64,
    /// The leg's start, Unix seconds; `channel_created_time` is it in microseconds plus a fraction.
    pub start_unix: i64,
    pub channel_created_time: i64,
    pub hangup_cause: &'static str,
    /// The interaction's start (Unix seconds).
    pub interaction_start: i64,
    authorizing_id: String,
    callflow_id: String,
    fetch_id: String,
    pub owner_id: String,
    username: u64,
    resource_id: String,
    rev: String,
    carrier: u64,
    from_tag: String,
    media_server: u64,
    msg_id: String,
    to_tag: String,
}

impl GenLeg {
    pub fn duration_seconds(&self) -> i64 {
        self.ring + self.talk
    }

    /// The CDR's `timestamp` (its end), Gregorian seconds.
    pub fn end_gregorian(&self) -> i64 {
        self.start_unix + self.duration_seconds() + UNIX_EPOCH_IN_GREGORIAN
    }

    pub fn rate_name(&self) -> Option<String> {
        self.rated.then(|| format!("DEST-{}", self.callee.len()))
    }

    /// What KAZOO charges for the leg, whoever pays (`kapps_call_util:call_cost/1`, KAZOO's
    /// double arithmetic): 0 without a rate.
    pub fn call_cost(&self) -> i64 {
        self.charge().cost_units
    }

    /// KAZOO's charge for the leg (`kapps_call_util:calculate_call/1`): charged seconds and
    /// cost in units; none without a rate.
    pub fn charge(&self) -> crate::rate::Charge {
        if !self.rated {
            return crate::rate::Charge::default();
        }
        let inp = crate::rate::Inputs {
            billing_seconds: Some(self.talk),
            billing_seconds_offset: None,
            rate_nocharge_time: Some(self.rate_nocharge_time as i64),
            rate: Some(self.rate as i64),
            rate_increment: Some(self.rate_increment as i64),
            rate_minimum: Some(self.rate_minimum as i64),
            surcharge: Some(self.surcharge as i64),
            discount_percentage: None,
        };
        crate::rate::rate(&inp, crate::rate::Rounding::Kazoo)
    }

    /// The stored CDR document, compact JSON.
    pub fn to_json(&self) -> String {
        let (account, reseller, acct_idx) = (&self.account, &self.reseller, self.acct_idx);
        let (account_billing, reseller_billing) = (self.account_billing, self.reseller_billing);
        let (bridge, iid, callee, caller) = (
            &self.bridge,
            &self.interaction_id,
            &self.callee,
            &self.caller,
        );
        let (rate, ri, rm, sur, nocharge) = (
            self.rate,
            self.rate_increment,
            self.rate_minimum,
            self.surcharge,
            self.rate_nocharge_time,
        );
        let mut ccv = String::with_capacity(1200);
        let _ = write!(
            ccv,
            r#"{{"account_id":"{account}","reseller_id":"{reseller}","account_billing":"{account_billing}","reseller_billing":"{reseller_billing}","account_trunk_usage":"0/0/20/0/0/0","reseller_trunk_usage":"20/20/20/0/0/0","application_name":"callflow","application_node":"kazoo_apps@apps.example.net","authorizing_id":"{}","authorizing_type":"device","bridge_id":"{bridge}","call_interaction_id":"{iid}","callflow_id":"{}","channel_authorized":"true","ecallmgr_node":"ecallmgr@apps.example.net","fetch_id":"{}","global_resource":"false","inception":"{callee}@10.20.0.1","owner_id":"{}","privacy_hide_name":"false","privacy_hide_number":"false","realm":"acct{acct_idx}.sip.example.net","username":"user{}","resource_type":"offnet-termination","resource_id":"{}""#,
            self.authorizing_id,
            self.callflow_id,
            self.fetch_id,
            self.owner_id,
            self.username,
            self.resource_id,
        );
        if self.rated {
            let _ = write!(
                ccv,
                r#","rate":"{rate}","rate_increment":"{ri}","rate_minimum":"{rm}","surcharge":"{sur}","rate_nocharge_time":"{nocharge}","rate_name":"DEST-{}","rate_description":"Destination {}","base_cost":"{}","pvt_cost":"{}""#,
                callee.len(),
                &callee[..4],
                rate * (if rm == 0 { 60 } else { rm }) / 60 + sur,
                self.pvt_cost,
            );
        }
        ccv.push('}');
        let (talk, ring, dur) = (self.talk, self.ring, self.duration_seconds());
        let end_greg = self.end_gregorian();
        let (call_id, direction, hangup, cct) = (
            &self.call_id,
            self.direction,
            self.hangup_cause,
            self.channel_created_time,
        );
        let (caller_name, callee_name) = (
            serde_json::to_string(&self.caller_id_name).unwrap_or_default(),
            serde_json::to_string(&self.callee_id_name).unwrap_or_default(),
        );
        let mut s = String::with_capacity(3200);
        let _ = write!(
            s,
            r#"{{"_id":"{}-{call_id}","_rev":"1-{}","app_name":"ecallmgr","app_version":"4.3.0","billing_seconds":{talk},"call_direction":"{direction}","call_id":"{call_id}","callee_id_name":{callee_name},"callee_id_number":"{callee}","caller_id_name":{caller_name},"caller_id_number":"{caller}","channel_call_state":"HANGUP","channel_created_time":{cct},"channel_name":"sofia/sipinterface_1/{callee}@10.20.0.1:5060","channel_state":"REPORTING","custom_application_vars":{{}},"custom_channel_vars":{ccv},"custom_sip_headers":{{"in":{{"X-Carrier":"carrier-{}"}},"X-Account":"acct{acct_idx}"}},"disposition":"SEND_BYE","duration_seconds":{dur},"event_category":"call_event","event_name":"CHANNEL_DESTROY","from":"{caller}@10.20.0.1","from_tag":"{}","from_uri":"{caller}@10.20.0.1:5060","hangup_cause":"{hangup}","hangup_code":"sip:{}","interaction_id":"{iid}","interaction_key":"{}","interaction_time":{},"local_sdp":"{SDP}","media_server":"fs{}.example.net","msg_id":"{}","node":"ecallmgr@apps.example.net","other_leg_call_id":"{bridge}","presence_id":"{callee}@acct{acct_idx}.sip.example.net","remote_sdp":"{SDP}","request":"{callee}@10.20.0.1","ringing_seconds":{ring},"switch_hostname":"fs1.example.net","switch_nodename":"freeswitch@fs1.example.net","switch_uri":"sip:10.1.2.3:11000","switch_url":"sip:mod_sofia@10.1.2.3:11000","timestamp":{end_greg},"to":"{callee}@10.20.0.1:5060","to_tag":"{}","to_uri":"{callee}@10.20.0.1:5060","user_agent":"Carrier-SBC/4.2","pvt_account_id":"{account}","pvt_created":{end_greg},"pvt_modified":{end_greg},"pvt_type":"cdr","pvt_vsn":"3"}}"#,
            &iid[..11],
            self.rev,
            self.carrier,
            self.from_tag,
            if self.answered { 200 } else { 487 },
            &iid[12..],
            self.interaction_start + UNIX_EPOCH_IN_GREGORIAN,
            self.media_server,
            self.msg_id,
            self.to_tag,
        );
        s
    }
}

/// The legs of one interaction.
fn interaction(
    rng: &mut Rng,
    o: &GenOptions,
    accounts: &AccountPicker,
    file: u64,
    serial: &mut u64,
    n: u64,
) -> Vec<GenLeg> {
    let acct_idx = accounts.pick(rng);
    let account = account_id(o.seed, acct_idx);
    let reseller = account_id(o.seed ^ 0xFFFF, acct_idx % 7);
    let day = rng.below(o.days.max(1)) as i64;
    let start = o.start_unix + day * 86_400 + rng.below(86_400) as i64;
    let answered = rng.chance(75);
    let talk = if answered {
        1 + rng.below(900) as i64
    } else {
        0
    };
    let ring = rng.below(30) as i64;
    let iid = format!("{}-{}", start + UNIX_EPOCH_IN_GREGORIAN, hex(rng, 8));
    let caller = format!("+1{}", 2_000_000_000 + rng.below(7_999_999_999));
    let callee = format!("+{}", 10_000_000_000u64 + rng.below(89_999_999_999));
    let bridge = format!("{}-{}", file, hex(rng, 24));
    let id_day = chrono::DateTime::from_timestamp(o.call_ids_start_unix, 0)
        .map_or_else(String::new, |d| d.format("%Y%m%d").to_string());
    let mut legs = Vec::with_capacity(n as usize);
    for k in 0..n {
        *serial += 1;
        let call_id = format!("{}-{}-{:08}-{}", id_day, file, serial, hex(rng, 16));
        let direction = if k == 0 { "inbound" } else { "outbound" };
        let account_billing = *rng.pick(&[
            "per_minute",
            "per_minute",
            "per_minute",
            "flat_rate",
            "flat_rate",
            "limits_disabled",
        ]);
        let reseller_billing = *rng.pick(&["per_minute", "flat_rate", "flat_rate"]);
        let rated = !(account_billing == "per_minute" && rng.chance(3));
        let rate = *rng.pick(&[22u64, 60, 100, 400, 1200, 2262, 4500, 15000]);
        let ri = *rng.pick(&[1u64, 6, 30, 60]);
        let rm = *rng.pick(&[0u64, 30, 60]);
        let sur = *rng.pick(&[0u64, 0, 0, 100, 500]);
        let nocharge = *rng.pick(&[0u64, 0, 0, 6]);
        let leg_start = start + k as i64;
        let cct = leg_start * 1_000_000 + rng.below(1_000_000) as i64;
        // Drawn in the order the document's text used to draw them: the same seed gives the
        // same bytes as before legs were structured.
        let authorizing_id = hex(rng, 32);
        let callflow_id = hex(rng, 32);
        let fetch_id = hex(rng, 36);
        let owner_id = hex(rng, 32);
        let username = rng.below(500);
        let resource_id = hex(rng, 32);
        let hangup_cause = if answered {
            "NORMAL_CLEARING"
        } else {
            *rng.pick(&[
                "NO_ANSWER",
                "USER_BUSY",
                "ORIGINATOR_CANCEL",
                "CALL_REJECTED",
            ])
        };
        let rev = hex(rng, 32);
        let carrier = rng.below(20);
        let from_tag = hex(rng, 24);
        let media_server = rng.below(4);
        let msg_id = hex(rng, 16);
        let to_tag = hex(rng, 13);
        legs.push(GenLeg {
            account: account.clone(),
            reseller: reseller.clone(),
            acct_idx,
            call_id,
            interaction_id: iid.clone(),
            bridge: bridge.clone(),
            direction,
            account_billing,
            reseller_billing,
            rated,
            // From the serial, not the generator: the same seed draws the same legs as before.
            pvt_cost: match *serial % 10 {
                0 => 0,
                1 => rate * 6 / 5,
                _ => rate * 7 / 10,
            },
            rate,
            rate_increment: ri,
            rate_minimum: rm,
            surcharge: sur,
            rate_nocharge_time: nocharge,
            caller: caller.clone(),
            callee: callee.clone(),
            caller_id_name: format!("Caller {acct_idx}"),
            callee_id_name: format!("Callee {k}"),
            answered,
            talk,
            ring,
            start_unix: leg_start,
            channel_created_time: cct,
            hangup_cause,
            interaction_start: start,
            authorizing_id,
            callflow_id,
            fetch_id,
            owner_id,
            username,
            resource_id,
            rev,
            carrier,
            from_tag,
            media_server,
            msg_id,
            to_tag,
        });
    }
    legs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zipf at S = 1 over 3 accounts: weights 1, 1/2, 1/3 add up to 11/6, so 6/11, 3/11, 2/11;
    /// the picker's slices of the 64-bit draws end at those fractions of 2^64.
    #[test]
    fn zipf_shares_and_slices() {
        let shares = AccountSkew::Zipf(1.0).shares(3);
        for (got, want) in shares.iter().zip([6.0 / 11.0, 3.0 / 11.0, 2.0 / 11.0]) {
            assert!((got - want).abs() < 1e-15, "{shares:?}");
        }
        assert_eq!(AccountSkew::Uniform.shares(4), vec![0.25; 4]);
        let AccountPicker::Cumulative(bounds) = AccountPicker::new(AccountSkew::Zipf(1.0), 3)
        else {
            panic!("zipf draws from slices");
        };
        let two64 = 18_446_744_073_709_551_616.0_f64;
        assert!((bounds[0] as f64 / two64 - 6.0 / 11.0).abs() < 1e-15);
        assert!((bounds[1] as f64 / two64 - 9.0 / 11.0).abs() < 1e-15);
        assert_eq!(bounds[2], u64::MAX);
        assert_eq!("zipf:1.1".parse(), Ok(AccountSkew::Zipf(1.1)));
        assert_eq!(" Uniform ".parse(), Ok(AccountSkew::Uniform));
        assert_eq!(AccountSkew::Zipf(1.1).to_string(), "zipf:1.1");
    }

    #[test]
    fn same_seed_same_bytes_and_valid_json() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let opts = GenOptions {
            legs: 120,
            accounts: 3,
            account_skew: AccountSkew::Uniform,
            days: 2,
            seed: 7,
            files: 2,
            shape: Shape::Ndjson,
            gzip: false,
            start_unix: 1_793_577_600,
            call_ids_start_unix: 1_793_577_600,
            header_every: 0,
            plant_errors: false,
        };
        let a = generate(&opts, &dir.path().join("a"))?;
        let b = generate(&opts, &dir.path().join("b"))?;
        assert_eq!(a.legs, 120);
        for (x, y) in a.files.iter().zip(&b.files) {
            let (tx, ty) = (std::fs::read_to_string(x)?, std::fs::read_to_string(y)?);
            assert_eq!(tx, ty);
            for line in tx.lines() {
                let v: serde_json::Value = serde_json::from_str(line)?;
                assert!(v["call_id"].is_string());
                assert!(line.len() > 2000, "legs are realistic in size");
            }
        }
        assert_eq!(
            a.files
                .iter()
                .map(|f| std::fs::read_to_string(f).map(|t| t.lines().count()))
                .sum::<std::io::Result<usize>>()?,
            120
        );
        Ok(())
    }
}
