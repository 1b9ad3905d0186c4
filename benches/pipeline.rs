//! One benchmark per pipeline stage, on a generated corpus (`rerate::internals::gen`): parse (bytes/s,
//! beside serde_json deserializing the same lines into the same structs, and merely validating
//! them), rate (legs/s), dedup + rate + reconcile on a frame,
//! interactions + the built-in reports, the partitioned Parquet write, and rate-deck lookups
//! (a 100,000-row deck: loading it, and pricing 1,000,000 legs against it). `cargo bench --bench pipeline` takes a minute or two.

// The binary's allocator (src/main.rs), so that the stages are timed as the job runs them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::LazyLock;

use divan::counter::{BytesCount, ItemsCount};
use divan::{black_box, Bencher};
use polars::prelude::{Column, DataFrame, IntoLazy};
use rerate::internals::gen::{generate, GenOptions, Rng, Shape};
use rerate::internals::ingest::{parse_buffer, IngestOptions};
use rerate::internals::rate::{apply_deck, rate, rate_frame, DeckSet, Inputs, RateSort, Rounding};
use rerate::internals::time::ReportTz;

fn main() {
    divan::main();
}

const LEGS: u64 = 20_000;

/// About 70 MB of realistic NDJSON, generated once.
static CORPUS: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = GenOptions {
        legs: LEGS,
        accounts: 40,
        account_skew: rerate::internals::gen::AccountSkew::Uniform,
        days: 7,
        seed: 42,
        files: 1,
        shape: Shape::Ndjson,
        gzip: false,
        start_unix: 1_793_577_600,
        call_ids_start_unix: 1_793_577_600,
        header_every: 0,
        plant_errors: false,
    };
    let report = generate(&opts, dir.path()).expect("generate");
    std::fs::read(&report.files[0]).expect("read corpus")
});

fn opts() -> IngestOptions {
    IngestOptions {
        tz: ReportTz(chrono_tz::Tz::UTC),
        chunk_bytes: 8 << 20,
        max_record: rerate::internals::ingest::MAX_RECORD,
        partitions: std::sync::Arc::new(rerate::internals::spill::Partitions::new(1)),
        rejects: None,
    }
}

static FRAME: LazyLock<DataFrame> = LazyLock::new(|| {
    parse_buffer(&CORPUS, "bench", &opts(), &|_| {})
        .expect("parse")
        .legs
});

#[divan::bench(sample_count = 10)]
fn parse(b: Bencher) {
    let o = opts();
    b.counter(BytesCount::new(CORPUS.len()))
        .bench(|| parse_buffer(black_box(&CORPUS), "bench", &o, &|_| {}).map(|p| p.records));
}

/// Parse on one thread: the figure to set beside the parser alone (also one thread).
#[divan::bench(sample_count = 10)]
fn parse_one_thread(b: Bencher) {
    let o = opts();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    b.counter(BytesCount::new(CORPUS.len())).bench(|| {
        pool.install(|| parse_buffer(black_box(&CORPUS), "bench", &o, &|_| {}).map(|p| p.records))
    });
}

/// The JSON parser alone, validating every line: the ceiling parse is measured against.
#[divan::bench(sample_count = 10)]
fn serde_json_validate_only(b: Bencher) {
    let text = std::str::from_utf8(&CORPUS).expect("utf-8");
    b.counter(BytesCount::new(CORPUS.len())).bench(|| {
        text.lines()
            .filter(|l| serde_json::from_str::<serde::de::IgnoredAny>(l).is_ok())
            .count()
    });
}

/// The JSON parser alone deserializing every line into the same borrowed structs rerate reads
/// a leg into (`RawCdr`: slots for the fields a leg keeps, the rest as raw text): what parse is
/// measured against (the target is at least 70% of it).
#[divan::bench(sample_count = 10)]
fn serde_json_into_raw_cdr(b: Bencher) {
    let text = std::str::from_utf8(&CORPUS).expect("utf-8");
    b.counter(BytesCount::new(CORPUS.len())).bench(|| {
        text.lines()
            .filter(|l| rerate::internals::ingest::record::RawCdr::parse(l).is_ok())
            .count()
    });
}

#[divan::bench(sample_count = 10)]
fn rate_legs(b: Bencher) {
    let mut g = Rng::new(9);
    let cases: Vec<Inputs> = (0..1_000_000)
        .map(|_| Inputs {
            billing_seconds: Some(g.below(3600) as i64),
            rate: Some(g.below(20_000) as i64),
            rate_increment: Some(*g.pick(&[1, 6, 30, 60])),
            rate_minimum: Some(*g.pick(&[0, 30, 60])),
            surcharge: Some(g.below(100) as i64),
            discount_percentage: Some(g.below(20) as i64),
            ..Inputs::default()
        })
        .collect();
    b.counter(ItemsCount::new(cases.len())).bench(|| {
        cases
            .iter()
            .map(|c| rate(c, Rounding::Kazoo).cost_units)
            .sum::<i64>()
    });
}

/// Prices and reconciles `df` as a run without a rate deck does: the deck columns (empty), the
/// formula, then the reconciliation columns. Returns the reconciliation rows.
fn rated(df: &mut DataFrame) -> DataFrame {
    apply_deck(df, None, Rounding::Kazoo).expect("deck columns");
    rate_frame(df, Rounding::Kazoo).expect("rate");
    let (mut recon, _) =
        rerate::internals::reconcile::reconcile(df, Rounding::Kazoo).expect("reconcile");
    rerate::internals::write::fill_unassigned(&mut recon).expect("fill");
    recon
}

#[divan::bench(sample_count = 10)]
fn dedup_and_rate_frame(b: Bencher) {
    b.counter(ItemsCount::new(FRAME.height()))
        .with_inputs(|| FRAME.clone())
        .bench_values(|df| {
            let (mut df, _) = rerate::internals::dedup::dedup(df).expect("dedup");
            rated(&mut df).height()
        });
}

#[divan::bench(sample_count = 5)]
fn interactions_and_reports(b: Bencher) {
    let mut df = FRAME.clone();
    let recon = rated(&mut df);
    b.counter(ItemsCount::new(df.height())).bench(|| {
        let mut calls = rerate::internals::interactions::build(&df).expect("interactions");
        rerate::internals::write::fill_unassigned(&mut calls).expect("fill");
        let recon = recon.clone();
        let mut ctx = rerate::internals::reports::context(&[
            ("legs", df.clone().lazy()),
            ("interactions", calls.lazy()),
            ("reconciliation", recon.lazy()),
        ]);
        rerate::internals::reports::builtin()
            .iter()
            .map(|r| rerate::internals::reports::run(&mut ctx, r).map(|d| d.height()))
            .sum::<Result<usize, _>>()
            .expect("reports")
    });
}

#[divan::bench(sample_count = 5)]
fn write_partitioned_parquet(b: Bencher) {
    let mut df = FRAME.clone();
    rated(&mut df);
    rerate::internals::write::fill_unassigned(&mut df).expect("fill");
    b.counter(ItemsCount::new(df.height())).bench(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = rerate::internals::write::Table {
            name: "legs",
            columns: rerate::internals::schema::leg_columns(),
            order: vec![
                rerate::internals::schema::START_TIME,
                rerate::internals::schema::CALL_ID,
            ],
        };
        let output = rerate::internals::write::Output {
            format: rerate::internals::write::Format::Parquet,
            csv_raw: false,
        };
        rerate::internals::write::write_partitioned(&df, dir.path(), &table, &output)
            .map(|p| p.len())
            .expect("write")
    });
}

/// A 100,000-row deck of random prefixes (2 to 9 digits, under 40 country codes), as a file.
fn deck_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut g = Rng::new(5);
    let mut text = String::from(
        "prefix,rate_cost,rate_increment,rate_minimum,rate_surcharge,weight,rate_name\n",
    );
    for i in 0..100_000 {
        let cc = 1 + g.below(40) * 7;
        let len = 1 + g.below(8) as usize;
        let rest: String = (0..len)
            .map(|_| char::from(b'0' + g.below(10) as u8))
            .collect();
        let cost = g.below(5000) as f64 / 10_000.0;
        text += &format!(
            "{cc}{rest},{cost},{},{},0,{},R{i}\n",
            g.pick(&[1, 6, 60]),
            g.pick(&[0, 30, 60]),
            g.below(200)
        );
    }
    let path = dir.join("deck.csv");
    std::fs::write(&path, text).expect("write deck");
    path
}

static DECK: LazyLock<DeckSet> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("tempdir");
    DeckSet::load(&deck_file(dir.path()), RateSort::Weight).expect("load deck")
});

#[divan::bench(sample_count = 3)]
fn deck_load_100k_rows(b: Bencher) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = deck_file(dir.path());
    b.counter(ItemsCount::new(100_000usize)).bench(|| {
        DeckSet::load(&path, RateSort::Weight)
            .map(|d| d.rows)
            .expect("load")
    });
}

#[divan::bench(sample_count = 3)]
fn deck_price_1m_legs_against_100k_rows(b: Bencher) {
    const N: usize = 1_000_000;
    let mut g = Rng::new(11);
    let numbers: Vec<String> = (0..N)
        .map(|_| {
            format!(
                "+{}{:010}",
                1 + g.below(40) * 7,
                g.next_u64() % 10_000_000_000
            )
        })
        .collect();
    let accounts: Vec<String> = (0..N).map(|i| format!("acct{}", i % 40)).collect();
    let secs: Vec<i64> = (0..N).map(|_| g.below(600) as i64).collect();
    let none = vec![None::<i64>; N];
    let df = DataFrame::new(
        N,
        vec![
            Column::new("account_id".into(), accounts),
            Column::new("callee_id_number".into(), numbers),
            Column::new("request".into(), vec![None::<&str>; N]),
            Column::new("call_direction".into(), vec!["outbound"; N]),
            Column::new("billing_seconds".into(), secs),
            Column::new("billing_seconds_offset".into(), none.clone()),
            Column::new("discount_percentage".into(), none),
        ],
    )
    .expect("frame");
    let deck = &*DECK;
    b.counter(ItemsCount::new(N))
        .with_inputs(|| df.clone())
        .bench_values(|mut df| {
            apply_deck(&mut df, Some(deck), Rounding::Kazoo).expect("deck");
            df.height()
        });
}
