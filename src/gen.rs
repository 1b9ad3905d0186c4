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

use rayon::prelude::*;

use crate::time::UNIX_EPOCH_IN_GREGORIAN;

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
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub legs: u64,
    pub accounts: u64,
    pub days: u64,
    pub seed: u64,
    pub files: u64,
    pub shape: Shape,
    pub gzip: bool,
    /// First day, as Unix seconds at midnight UTC.
    pub start_unix: i64,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct GenReport {
    pub files: Vec<PathBuf>,
    pub legs: u64,
    pub bytes: u64,
}

/// Writes the corpus into `out` (created if needed).
pub fn generate(opts: &GenOptions, out: &Path) -> std::io::Result<GenReport> {
    std::fs::create_dir_all(out)?;
    let files = opts.files.max(1);
    let per_file = opts.legs.div_ceil(files);
    let results: Vec<std::io::Result<(PathBuf, u64, u64)>> = (0..files)
        .into_par_iter()
        .map(|i| {
            let legs = per_file.min(opts.legs.saturating_sub(i * per_file));
            let ext = match (opts.shape, opts.gzip) {
                (Shape::Ndjson, false) => "ndjson",
                (Shape::Ndjson, true) => "ndjson.gz",
                (Shape::Pages, false) => "json",
                (Shape::Pages, true) => "json.gz",
            };
            let path = out.join(format!("cdrs-{i:04}.{ext}"));
            let bytes = write_file(opts, i, legs, &path)?;
            Ok((path, legs, bytes))
        })
        .collect();
    let mut report = GenReport {
        files: Vec::new(),
        legs: 0,
        bytes: 0,
    };
    for r in results {
        let (p, l, b) = r?;
        report.files.push(p);
        report.legs += l;
        report.bytes += b;
    }
    Ok(report)
}

fn write_file(opts: &GenOptions, index: u64, legs: u64, path: &Path) -> std::io::Result<u64> {
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut w: Box<dyn Write> = if opts.gzip {
        Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(file)
    };
    let mut rng = Rng::new(opts.seed ^ (index + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut written = 0u64;
    let mut bytes = 0u64;
    let mut page: Vec<String> = Vec::with_capacity(50);
    let mut serial = 0u64;
    while written < legs {
        let n = (1 + rng.below(3)).min(legs - written);
        for leg in interaction(&mut rng, opts, index, &mut serial, n) {
            match opts.shape {
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
        written += n;
    }
    if !page.is_empty() {
        bytes += write_page(&mut w, &mut page, false)?;
    }
    w.flush()?;
    Ok(bytes)
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

/// The legs of one interaction, as compact JSON documents.
fn interaction(rng: &mut Rng, o: &GenOptions, file: u64, serial: &mut u64, n: u64) -> Vec<String> {
    let acct_idx = rng.below(o.accounts.max(1));
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
    let mut legs = Vec::with_capacity(n as usize);
    for k in 0..n {
        *serial += 1;
        let call_id = format!("{}-{:08}-{}", file, serial, hex(rng, 16));
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
        let dur = ring + talk;
        let end_greg = leg_start + dur + UNIX_EPOCH_IN_GREGORIAN;
        let cct = leg_start * 1_000_000 + rng.below(1_000_000) as i64;
        let mut ccv = String::with_capacity(1200);
        let _ = write!(
            ccv,
            r#"{{"account_id":"{account}","reseller_id":"{reseller}","account_billing":"{account_billing}","reseller_billing":"{reseller_billing}","account_trunk_usage":"0/0/20/0/0/0","reseller_trunk_usage":"20/20/20/0/0/0","application_name":"callflow","application_node":"kazoo_apps@apps.example.net","authorizing_id":"{}","authorizing_type":"device","bridge_id":"{bridge}","call_interaction_id":"{iid}","callflow_id":"{}","channel_authorized":"true","ecallmgr_node":"ecallmgr@apps.example.net","fetch_id":"{}","global_resource":"false","inception":"{callee}@10.20.0.1","owner_id":"{}","privacy_hide_name":"false","privacy_hide_number":"false","realm":"acct{acct_idx}.sip.example.net","username":"user{}","resource_type":"offnet-termination","resource_id":"{}""#,
            hex(rng, 32),
            hex(rng, 32),
            hex(rng, 36),
            hex(rng, 32),
            rng.below(500),
            hex(rng, 32),
        );
        if rated {
            let _ = write!(
                ccv,
                r#","rate":"{rate}","rate_increment":"{ri}","rate_minimum":"{rm}","surcharge":"{sur}","rate_nocharge_time":"{nocharge}","rate_name":"DEST-{}","rate_description":"Destination {}","base_cost":"{}","pvt_cost":"0""#,
                callee.len(),
                &callee[..4],
                rate * (if rm == 0 { 60 } else { rm }) / 60 + sur,
            );
        }
        ccv.push('}');
        let hangup = if answered {
            "NORMAL_CLEARING"
        } else {
            *rng.pick(&[
                "NO_ANSWER",
                "USER_BUSY",
                "ORIGINATOR_CANCEL",
                "CALL_REJECTED",
            ])
        };
        let mut s = String::with_capacity(3200);
        let _ = write!(
            s,
            r#"{{"_id":"{}-{call_id}","_rev":"1-{}","app_name":"ecallmgr","app_version":"4.3.0","billing_seconds":{talk},"call_direction":"{direction}","call_id":"{call_id}","callee_id_name":"Callee {k}","callee_id_number":"{callee}","caller_id_name":"Caller {acct_idx}","caller_id_number":"{caller}","channel_call_state":"HANGUP","channel_created_time":{cct},"channel_name":"sofia/sipinterface_1/{callee}@10.20.0.1:5060","channel_state":"REPORTING","custom_application_vars":{{}},"custom_channel_vars":{ccv},"custom_sip_headers":{{"in":{{"X-Carrier":"carrier-{}"}},"X-Account":"acct{acct_idx}"}},"disposition":"SEND_BYE","duration_seconds":{dur},"event_category":"call_event","event_name":"CHANNEL_DESTROY","from":"{caller}@10.20.0.1","from_tag":"{}","from_uri":"{caller}@10.20.0.1:5060","hangup_cause":"{hangup}","hangup_code":"sip:{}","interaction_id":"{iid}","interaction_key":"{}","interaction_time":{},"local_sdp":"{SDP}","media_server":"fs{}.example.net","msg_id":"{}","node":"ecallmgr@apps.example.net","other_leg_call_id":"{bridge}","presence_id":"{callee}@acct{acct_idx}.sip.example.net","remote_sdp":"{SDP}","request":"{callee}@10.20.0.1","ringing_seconds":{ring},"switch_hostname":"fs1.example.net","switch_nodename":"freeswitch@fs1.example.net","switch_uri":"sip:10.1.2.3:11000","switch_url":"sip:mod_sofia@10.1.2.3:11000","timestamp":{end_greg},"to":"{callee}@10.20.0.1:5060","to_tag":"{}","to_uri":"{callee}@10.20.0.1:5060","user_agent":"Carrier-SBC/4.2","pvt_account_id":"{account}","pvt_created":{end_greg},"pvt_modified":{end_greg},"pvt_type":"cdr","pvt_vsn":"3"}}"#,
            &iid[..11],
            hex(rng, 32),
            rng.below(20),
            hex(rng, 24),
            if answered { 200 } else { 487 },
            &iid[12..],
            start + UNIX_EPOCH_IN_GREGORIAN,
            rng.below(4),
            hex(rng, 16),
            hex(rng, 13),
        );
        legs.push(s);
    }
    legs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_valid_json() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let opts = GenOptions {
            legs: 120,
            accounts: 3,
            days: 2,
            seed: 7,
            files: 2,
            shape: Shape::Ndjson,
            gzip: false,
            start_unix: 1_793_577_600,
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
