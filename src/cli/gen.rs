//! `rerate gen`: writes a deterministic corpus of realistic KAZOO CDRs for benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::gen::{generate, AccountSkew, GenOptions, Shape};

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Number of legs to write.
    #[arg(long, default_value_t = 100_000)]
    pub legs: u64,
    /// Number of distinct accounts.
    #[arg(long, default_value_t = 50)]
    pub accounts: u64,
    /// How the calls are shared among the accounts. `uniform`: every account equally likely.
    /// `zipf:S` (0 < S <= 10): the k-th account gets a share proportional to 1/k^S, so most
    /// accounts have a few calls and a few have most of them, as on an operator's platform;
    /// e.g. `--accounts 2000 --account-skew zipf:1.1` gives the first account about 17% of the
    /// calls and the last about 0.004% (8 legs in 200,000). Tail accounts of a small corpus
    /// may get no call. Shares are per interaction (1-3 legs), drawn at random from the seed.
    #[arg(long, default_value_t = AccountSkew::Uniform, value_name = "uniform|zipf:S")]
    pub account_skew: AccountSkew,
    /// Number of days the calls spread over, from --start.
    #[arg(long, default_value_t = 7)]
    pub days: u64,
    /// First day (UTC), YYYY-MM-DD.
    #[arg(long, default_value = "2026-11-01")]
    pub start: String,
    /// Random seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Make the call_ids from this day instead of --start (YYYY-MM-DD). Each call_id starts
    /// with its day, so corpora made for other --start days never share a call_id (merging them
    /// adds every leg); give another corpus's --start here to make the same calls again, as an
    /// export made twice.
    #[arg(long, value_name = "DATE")]
    pub call_ids_from: Option<String>,
    /// Number of files to spread the legs over.
    #[arg(long, default_value_t = 4)]
    pub files: u64,
    /// `ndjson`: one CDR per line; `pages`: crossbar API pages of 50 CDRs, one per line;
    /// `kazoo-csv`: the crossbar CSV export exactly as KAZOO 5.0 writes it (unquoted cells,
    /// CRLF, names with commas and quotes): each of the `--files` files split by account, as
    /// `account_id=<ID>/cdrs-<i>.csv` (up to files x accounts files);
    /// `listing`: `GET /cdrs` listing pages of the same legs, split by account the same way;
    /// `modb`: a month database as CouchDB's `_all_docs?include_docs=true` gives it, the same CDR
    /// documents beside the ledgers of the charged legs, faxes, call recordings' metadata,
    /// voicemail messages and the design document (only the CDRs are legs).
    #[arg(long, value_enum, default_value_t = Shape::Ndjson)]
    pub shape: Shape,
    /// With `--shape kazoo-csv`: repeat the header line every N rows, as KAZOO 4.2's chunked
    /// exports did (0: only at the top).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub header_every: u64,
    /// Compress the files with gzip.
    #[arg(long)]
    pub gzip: bool,
    /// With --shape modb: plant one error of every ledger class, the customer's and the
    /// reseller's (a ledger missing, charged twice, other seconds, another amount, a ledger of
    /// no leg, a debit of a leg not billed per minute), one leg in 40 each, and write the answer
    /// key to .planted.json in --out (call_id, party, class: the rows the ledger
    /// reconciliation must report, and only those, without --rates).
    #[arg(long)]
    pub plant_errors: bool,
    /// Output folder.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: PathBuf,
}

/// A day's midnight UTC, in Unix seconds.
fn midnight(day: chrono::NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .map_or(0, |d| d.and_utc().timestamp())
}

pub(super) fn run(args: GenArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let day = chrono::NaiveDate::parse_from_str(&args.start, "%Y-%m-%d")
        .with_context(|| format!("--start {:?} is not a date such as 2026-11-01", args.start))?;
    let opts = GenOptions {
        legs: args.legs,
        accounts: args.accounts,
        account_skew: args.account_skew,
        days: args.days,
        seed: args.seed,
        files: args.files,
        shape: args.shape,
        gzip: args.gzip,
        header_every: args.header_every,
        plant_errors: args.plant_errors,
        start_unix: midnight(day),
        call_ids_start_unix: match &args.call_ids_from {
            None => midnight(day),
            Some(d) => midnight(
                chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").with_context(|| {
                    format!("--call-ids-from {d:?} is not a date such as 2026-11-01")
                })?,
            ),
        },
    };
    if args.plant_errors && args.shape != Shape::Modb {
        anyhow::bail!("--plant-errors plants ledger errors: it needs --shape modb");
    }
    let report = generate(&opts, &args.out)
        .with_context(|| format!("writing the corpus to {}", args.out.display()))?;
    let text = match args.shape {
        Shape::KazooCsv => "CSV",
        Shape::Ndjson | Shape::Pages | Shape::Listing | Shape::Modb => "JSON",
    };
    eprintln!(
        "rerate gen: {} legs in {} files, {:.1} MB of {text}, in {:.1} s",
        report.legs,
        report.files.len(),
        report.bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    if args.plant_errors {
        eprintln!(
            "rerate gen: {} ledger errors planted; the answer key is {}",
            report.planted.len(),
            args.out.join(crate::gen::PLANTED_FILE).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
