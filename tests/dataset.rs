//! A dataset kept night after night: what defines a merge, as a property over random sequences of
//! nights, and each way a merge went wrong once, by kind.
//!
//! The property: after every night, the folder merged night by night holds exactly what one run
//! over all the nights so far (their files named in night order) writes into a new folder, in
//! every table, partition for partition and value for value (lineage columns aside); and a
//! rerun of the night changes no data file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use polars::prelude::*;
use rerate::internals::gen::crossbar::{
    has_reseller_columns, write_csv_export, write_listing_pages, KazooRow,
};
use rerate::internals::gen::GenLeg;

use rerate::internals::write::Grain;

use crate::util::*;

/// `rerate run INPUTS --out OUT -q EXTRA`.
fn run(inputs: &[PathBuf], out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run"];
    args.extend(inputs.iter().map(|p| s(p)));
    args.extend(["--out", s(out), "-q"]);
    args.extend_from_slice(extra);
    rerate(&args)
}

fn ok(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "{what}: exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Columns that say where a copy was read from, not what it says.
const LINEAGE: [&str; 3] = ["source_file", "source_line", "source_offset"];

/// Every Parquet file of the folder, by path relative to it, with its lineage columns dropped.
fn tables(out: &Path) -> BTreeMap<String, DataFrame> {
    parquet_files(out)
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(out).expect("under out").to_string_lossy();
            let df = read_parquet(&f);
            let keep: Vec<PlSmallStr> = df
                .get_column_names()
                .into_iter()
                .filter(|c| !LINEAGE.contains(&c.as_str()))
                .cloned()
                .collect();
            (rel.into_owned(), df.select(keep).expect("select"))
        })
        .collect()
}

/// Asserts that the merged folder holds what the one run wrote, file for file.
fn assert_same_dataset(merged: &Path, one_run: &Path, context: &str) {
    let (a, b) = (tables(merged), tables(one_run));
    let (ka, kb): (Vec<&String>, Vec<&String>) = (a.keys().collect(), b.keys().collect());
    assert_eq!(ka, kb, "{context}: the folders' files differ");
    for (path, df) in &a {
        assert!(
            df.equals_missing(&b[path]),
            "{context}: {path} differs\nmerged night by night:\n{df}\none run:\n{}",
            b[path]
        );
    }
}

/// A small deterministic generator (SplitMix64).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// How a leg reaches rerate.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Shape {
    Json,
    Csv,
    Listing,
}

/// Legs of a few KAZOO calls, as `rerate gen` makes them (whole stored CDR documents, several
/// legs a call), each given a shape it is exported in.
fn pool(seed: u64) -> Vec<(Shape, GenLeg)> {
    let opts = rerate::internals::gen::GenOptions {
        legs: 36,
        accounts: 3,
        account_skew: rerate::internals::gen::AccountSkew::Uniform,
        days: 3,
        seed,
        files: 1,
        shape: rerate::internals::gen::Shape::Ndjson,
        gzip: false,
        start_unix: 1_793_577_600,
        call_ids_start_unix: 1_793_577_600,
        header_every: 0,
        plant_errors: false,
    };
    rerate::internals::gen::file_legs(&opts, 0, opts.legs)
        .enumerate()
        .map(|(i, leg)| {
            let shape = match i % 6 {
                4 => Shape::Csv,
                5 => Shape::Listing,
                _ => Shape::Json,
            };
            (shape, leg)
        })
        .collect()
}

/// Another copy of `leg`, as exports produce them: the same, newer (later times, sometimes on
/// another day), a conflicting one with the same times, or an older one.
fn copy_of(leg: &GenLeg, r: &mut Mix) -> GenLeg {
    let mut c = leg.clone();
    match r.below(10) {
        0..=3 => {}
        4..=6 => {
            // Newer: the call exported again with later times, up to a day later.
            let span = if r.chance(50) { 86_400 } else { 600 };
            let shift = 1 + r.below(span) as i64;
            c.start_unix += shift;
            c.channel_created_time += shift * 1_000_000;
            c.interaction_start += shift;
        }
        7 | 8 => {
            // Conflicting, same times: another rate (the copies' data decide, whichever comes first).
            c.rate = 1 + (c.rate + 1 + r.below(50)) % 97;
        }
        _ => {
            // Older and different: it loses wherever it comes.
            let shift = 1 + r.below(7_200) as i64;
            c.start_unix -= shift;
            c.channel_created_time -= shift * 1_000_000;
            c.talk += 1;
        }
    }
    c
}

/// Writes night `k`'s copies: the JSON legs as NDJSON, the crossbar ones as CSV exports and
/// listing pages under `account_id=<ID>/` (KAZOO's folders). Returns the night's inputs, named
/// so that they sort in night order.
fn write_night(dir: &Path, k: usize, copies: &[(Shape, GenLeg)]) -> std::io::Result<Vec<PathBuf>> {
    let mut inputs = Vec::new();
    let json: String = copies
        .iter()
        .filter(|(shape, _)| *shape == Shape::Json)
        .map(|(_, l)| l.to_json() + "\n")
        .collect();
    if !json.is_empty() {
        let p = dir.join(format!("night-{k:02}.ndjson"));
        std::fs::write(&p, json)?;
        inputs.push(p);
    }
    for shape in [Shape::Csv, Shape::Listing] {
        let mut by_account: BTreeMap<(&str, u64), Vec<KazooRow>> = BTreeMap::new();
        for (_, l) in copies.iter().filter(|(sh, _)| *sh == shape) {
            by_account
                .entry((&l.account, l.acct_idx))
                .or_default()
                .push(KazooRow::new(l.clone()));
        }
        if by_account.is_empty() {
            continue;
        }
        let name = if shape == Shape::Csv {
            "csv"
        } else {
            "listing"
        };
        let root = dir.join(format!("night-{k:02}-{name}"));
        for ((account, idx), rows) in &by_account {
            let folder = root.join(format!("account_id={account}"));
            std::fs::create_dir_all(&folder)?;
            match shape {
                Shape::Csv => {
                    write_csv_export(rows, has_reseller_columns(*idx), &folder.join("cdrs.csv"))?
                }
                _ => write_listing_pages(
                    rows,
                    has_reseller_columns(*idx),
                    &folder.join("cdrs.json"),
                )?,
            }
        }
        inputs.push(root);
    }
    inputs.sort();
    Ok(inputs)
}

/// One random sequence of `nights` nights over one pool of legs: each night exports a random
/// part of the legs, each copy the same as the last one exported, newer, conflicting or older,
/// and sometimes two copies of a leg in one night.
fn nights(seed: u64, nights: usize) -> Vec<Vec<(Shape, GenLeg)>> {
    let mut r = Mix(seed);
    let mut last: Vec<(Shape, GenLeg)> = pool(seed);
    (0..nights)
        .map(|_| {
            let mut night = Vec::new();
            for (shape, leg) in last.iter_mut() {
                if !r.chance(40) {
                    continue;
                }
                let c = copy_of(leg, &mut r);
                if r.chance(15) {
                    night.push((*shape, copy_of(&c, &mut r)));
                }
                night.push((*shape, c.clone()));
                *leg = c;
            }
            night
        })
        .collect()
}

/// A per-minute ledger as a test writes it (`j5_per_minute:create_ledger_usage/4`'s fields).
#[derive(Clone)]
struct TestLedger {
    id: String,
    /// Empty: a ledger that names no account (`_unassigned`'s).
    account: String,
    call_id: String,
    /// Unix seconds; `None`: no `period` (a manual credit may have none).
    start: Option<i64>,
    seconds: i64,
    units: i64,
    credit: bool,
    /// The database that holds it (`pvt_account_id`); empty: the account's own, unsaid.
    held_by: String,
}

impl TestLedger {
    /// The `account` and `period` members, as KAZOO leaves out what it does not have.
    fn optional(&self) -> String {
        let mut m = String::new();
        if !self.account.is_empty() {
            m += &format!(r#""account":{{"id":"{}"}},"#, self.account);
        }
        if let Some(start) = self.start {
            m += &format!(r#""period":{{"start":{}}},"#, start + 62_167_219_200);
        }
        m
    }

    /// `pvt_account_id`, when the ledger says which database holds it.
    fn held_by(&self) -> String {
        match self.held_by.is_empty() {
            true => String::new(),
            false => format!(r#""pvt_account_id":"{}","#, self.held_by),
        }
    }

    /// As a month database stores it (`kz_ledger:to_json/1`): units, `pvt_ledger_type`.
    fn stored(&self) -> String {
        format!(
            r#"{{"_id":"{}","_rev":"1-{}",{}"amount":{},"description":"DEST","source":{{"id":"{}","service":"per-minute-voip"}},"usage":{{"quantity":{},"type":"voice","unit":"sec"}},{}"pvt_created":63960000000,"pvt_ledger_type":"{}","pvt_type":"ledger"}}"#,
            self.id,
            self.units,
            self.optional(),
            self.units,
            self.call_id,
            self.seconds,
            self.held_by(),
            if self.credit { "credit" } else { "debit" }
        )
    }

    /// As crossbar lists it (`kz_ledger:public_json/1`): dollars, a debit negative, `id`.
    fn listed(&self) -> String {
        let dollars = self.units as f64 / 10_000.0 * if self.credit { 1.0 } else { -1.0 };
        format!(
            r#"{{{}"amount":{dollars:?},"description":"DEST","source":{{"id":"{}","service":"per-minute-voip"}},"usage":{{"quantity":{},"type":"voice","unit":"sec"}},"id":"{}"}}"#,
            self.optional(),
            self.call_id,
            self.seconds,
            self.id
        )
    }
}

/// Ledgers of the pool's legs over the nights: each is kept in one shape (a month database's
/// document, or an item of a ledgers page), some without an account or a period, and exported
/// again the same, with another amount (a conflicting copy: the values decide), or twice in one
/// night.
fn ledger_nights(seed: u64, nights: usize) -> Vec<Vec<(bool, TestLedger)>> {
    let mut r = Mix(seed ^ 0x1ed6e5);
    let mut last: Vec<(bool, TestLedger)> = pool(seed)
        .into_iter()
        .enumerate()
        .map(|(i, (_, l))| {
            // One in ten names no account, one in ten has no period (the kinds a helper's
            // attack found counted twice).
            let ledger = TestLedger {
                id: format!("202611-{:032x}", i as u64 * 7919 + seed),
                account: match r.chance(10) {
                    true => String::new(),
                    false => l.account.clone(),
                },
                call_id: l.call_id.clone(),
                // At the leg's start, or up to a day and a half later (jonny5 dates a ledger at
                // the call's end: the next day for a call across midnight, beyond for none).
                start: Some(l.start_unix + r.below(4) as i64 * 43_200).filter(|_| !r.chance(10)),
                seconds: 6 + r.below(600) as i64,
                units: r.below(90_000) as i64,
                credit: r.chance(10),
                // One in five in a reseller's database.
                held_by: match r.chance(20) {
                    true => "reseller-x".to_owned(),
                    false => String::new(),
                },
            };
            (r.chance(30), ledger)
        })
        .collect();
    (0..nights)
        .map(|_| {
            let mut night = Vec::new();
            for (listed, l) in last.iter_mut() {
                if !r.chance(40) {
                    continue;
                }
                if r.chance(25) {
                    l.units = r.below(90_000) as i64;
                }
                if r.chance(15) {
                    night.push((*listed, l.clone()));
                }
                night.push((*listed, l.clone()));
            }
            night
        })
        .collect()
}

/// Writes night `k`'s ledgers: the stored ones as a month database's `_all_docs` body, the
/// listed ones as a crossbar page. Returns the files written.
fn write_ledger_night(
    dir: &Path,
    k: usize,
    ledgers: &[(bool, TestLedger)],
) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let stored: Vec<String> = ledgers
        .iter()
        .filter(|(listed, _)| !listed)
        .map(|(_, l)| {
            format!(
                r#"{{"id":"{0}","key":"{0}","value":{{"rev":"1-a"}},"doc":{1}}}"#,
                l.id,
                l.stored()
            )
        })
        .collect();
    if !stored.is_empty() {
        let p = dir.join(format!("night-{k:02}-modb.json"));
        let body = format!(
            r#"{{"total_rows":{},"offset":0,"rows":[
{}
]}}"#,
            stored.len(),
            stored.join(",\n")
        );
        std::fs::write(&p, body)?;
        files.push(p);
    }
    let listed: Vec<String> = ledgers
        .iter()
        .filter(|(listed, _)| *listed)
        .map(|(_, l)| l.listed())
        .collect();
    if !listed.is_empty() {
        let p = dir.join(format!("night-{k:02}-ledgers.json"));
        let body = format!(
            r#"{{"page_size":{},"data":[{}],"status":"success"}}"#,
            listed.len(),
            listed.join(",")
        );
        std::fs::write(&p, body)?;
        files.push(p);
    }
    Ok(files)
}

fn check_sequence(seed: u64, deck: bool) -> TestResult {
    let dir = tempfile::tempdir()?;
    let merged = dir.path().join("merged");
    let deck_path = root().join("fixtures/reconcile/ratedeck.csv");
    let extra: Vec<&str> = match deck {
        true => vec!["--rates", s(&deck_path)],
        false => vec![],
    };
    let mut all_inputs = Vec::new();
    let mut night_inputs: Vec<Vec<PathBuf>> = Vec::new();
    let ledgers = ledger_nights(seed, 5);
    for (k, night) in nights(seed, 5).iter().enumerate() {
        let night_dir = dir.path().join("in");
        std::fs::create_dir_all(&night_dir)?;
        let mut inputs = write_night(&night_dir, k + 1, night)?;
        let ledger_files = write_ledger_night(&night_dir, k + 1, &ledgers[k])?;
        let legs_files = inputs.clone();
        inputs.extend(ledger_files.iter().cloned());
        inputs.sort();
        let k = k + 1;
        if inputs.is_empty() {
            continue;
        }
        all_inputs.extend(inputs.iter().cloned());
        let context = format!("seed {seed}, deck {deck}, night {k}");
        // Every other night its ledgers come on their own, after its legs: ledgers alone
        // change the rows of their legs' days, the day before theirs among them.
        match k % 2 == 1 && !ledger_files.is_empty() && !legs_files.is_empty() {
            true => {
                ok(run(&legs_files, &merged, &extra), &context);
                ok(run(&ledger_files, &merged, &extra), &context);
            }
            false => {
                ok(run(&inputs, &merged, &extra), &context);
            }
        }
        ok(
            rerate(&["check", s(&merged)]),
            &format!("{context}, rerate check"),
        );

        let one = dir.path().join(format!("one-{k}"));
        ok(run(&all_inputs, &one, &extra), &context);
        assert_same_dataset(&merged, &one, &context);
        let (m, o) = (
            json_file(&merged.join("manifest.json")),
            json_file(&one.join("manifest.json")),
        );
        assert_eq!(
            m["dataset"], o["dataset"],
            "{context}: the dataset's totals"
        );

        // A rerun of this night, then of an earlier one (its copies lose or tie as they did).
        night_inputs.push(inputs);
        let earlier = (seed as usize * 7 + k) % night_inputs.len();
        for (again, which) in [
            (night_inputs.len() - 1, "this night"),
            (earlier, "an earlier night"),
        ] {
            let before = snapshot(&merged);
            ok(
                run(&night_inputs[again], &merged, &extra),
                &format!("{context}, rerun of {which} ({})", again + 1),
            );
            let after = snapshot(&merged);
            let changed: Vec<&String> = after
                .iter()
                .filter(|(p, b)| before.get(*p) != Some(b))
                .map(|(p, _)| p)
                .chain(before.keys().filter(|p| !after.contains_key(*p)))
                .collect();
            assert!(
                changed.is_empty(),
                "{context}: a rerun of {which} ({}) changed {changed:?}",
                again + 1
            );
        }
        std::fs::remove_dir_all(&one)?;
    }
    // The same nights merged last first: the copies decide by their data, not by their order.
    let reversed = dir.path().join("reversed");
    for (k, inputs) in night_inputs.iter().enumerate().rev() {
        ok(
            run(inputs, &reversed, &extra),
            &format!(
                "seed {seed}, deck {deck}, night {} merged in reverse",
                k + 1
            ),
        );
    }
    assert_same_dataset(
        &reversed,
        &merged,
        &format!("seed {seed}, deck {deck}: the nights merged in reverse order"),
    );
    // The ledger reconciliation had work to do: legs and ledgers that disagree in several ways.
    let mut classes = std::collections::BTreeSet::new();
    for f in parquet_files(&merged.join("ledger_reconciliation")) {
        let df = read_parquet(&f);
        classes.extend(
            df.column("class")?
                .str()?
                .iter()
                .flatten()
                .map(str::to_owned),
        );
    }
    assert!(classes.len() >= 3, "seed {seed}: classes {classes:?}");
    Ok(())
}

#[test]
fn nights_merged_one_by_one_in_any_order_equal_one_run_over_them_and_a_rerun_changes_nothing(
) -> TestResult {
    for seed in 1..=6 {
        check_sequence(seed, seed % 2 == 0)?;
    }
    Ok(())
}

/// The field case `merge-moved-copy`: a newer copy of a leg on another day than the dataset's,
/// whose partition it was alone in.
#[test]
fn a_newer_copy_on_another_day_removes_the_old_copy_and_its_emptied_partition() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let acct = "3c5a0f1e9b7d4c2a8e6f1b3d5a7c9e0f";
    let leg = |start: i64, ts: i64| {
        format!(
            r#"{{"call_id": "mv1", "billing_seconds": 30, "duration_seconds": 35, "channel_created_time": {}, "timestamp": {ts}, "call_direction": "outbound", "custom_channel_vars": {{"account_id": "{acct}", "account_billing": "per_minute", "rate": "100", "rate_increment": "60", "rate_minimum": "60"}}}}"#,
            start * 1_000_000
        )
    };
    let other = r#"{"call_id": "st1", "billing_seconds": 30, "duration_seconds": 35, "channel_created_time": 1795129190000000, "timestamp": 63962348425, "custom_channel_vars": {"account_id": "9d8c7b6a5f4e3d2c1b0a99887766aabb", "account_billing": "per_minute", "rate": "100"}}"#;
    // 2026-11-19 23:59:50 UTC, then the same call again starting 20 s later, on 2026-11-20.
    let n1 = dir.path().join("night-1.ndjson");
    std::fs::write(
        &n1,
        format!("{}\n{other}\n", leg(1_795_132_790, 63_962_352_025)),
    )?;
    let n2 = dir.path().join("night-2.ndjson");
    std::fs::write(&n2, leg(1_795_132_810, 63_962_352_045) + "\n")?;
    ok(run(&[n1], &out, &[]), "night 1");
    let o = ok(run(&[n2], &out, &[]), "night 2");

    let got = legs(&out);
    let mv1 = &got["mv1"];
    // 30 s at 100 units a minute with a 60 s minimum: one minute, 100 units, once.
    assert_eq!((mv1.date.as_str(), mv1.cost), ("2026-11-20", Some(100)));
    let day = format!("legs/account_id={acct}/date=2026-11-19");
    assert!(!out.join(&day).exists(), "{day} is left");
    for table in ["interactions", "daily"] {
        let p = out.join(format!("{table}/account_id={acct}/date=2026-11-19"));
        assert!(!p.exists(), "{} is left", p.display());
    }
    let daily = read_dataset(&out.join("daily"));
    let cost: i64 = daily
        .iter()
        .filter(|(a, _, _)| a == acct)
        .map(|(_, _, df)| {
            df.column("cost_units")
                .and_then(|c| c.cast(&DataType::Int64))
                .map(|c| c.i64().map(|c| c.sum().unwrap_or(0)).unwrap_or(0))
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(cost, 100, "daily counts the call once");
    let m = json_file(&out.join("manifest.json"));
    assert_eq!(m["dataset"]["legs"], 2);
    assert_eq!(m["dataset"]["cost_units"], 200);
    assert_eq!(
        m["merge"]["partitions_emptied"],
        serde_json::json!([[acct, "2026-11-19"]])
    );
    // The day before the run's own changed: said in the manifest and on the terminal.
    let past = &m["merge"]["past_days_changed"];
    assert_eq!(past[0]["date"], "2026-11-19");
    assert_eq!(
        (
            past[0]["legs_before"].as_u64(),
            past[0]["legs_after"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(
        (
            past[0]["cost_units_before"].as_i64(),
            past[0]["cost_units_after"].as_i64()
        ),
        (Some(100), Some(0))
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("a past day changed") && err.contains("2026-11-19"),
        "{err}"
    );
    Ok(())
}

/// Listing legs and deck-priced CSV legs read back by a later merge keep every value: KAZOO's
/// recorded money, their reconciliation rows, their flags; a rerun finds no conflict.
#[test]
fn legs_read_back_keep_their_recorded_money_and_flags() -> TestResult {
    let dir = tempfile::tempdir()?;
    let deck = root().join("fixtures/reconcile/ratedeck.csv");
    let legs_of = |shape: Shape| -> std::io::Result<Vec<PathBuf>> {
        let night: Vec<(Shape, GenLeg)> = pool(7)
            .into_iter()
            .map(|(_, l)| (shape, l))
            .take(12)
            .collect();
        let d = dir.path().join(format!("{shape:?}"));
        std::fs::create_dir_all(&d)?;
        write_night(&d, 1, &night)
    };
    let listing = legs_of(Shape::Listing)?;
    let csv = legs_of(Shape::Csv)?;
    for (inputs, extra) in [(listing, vec![]), (csv, vec!["--rates", s(&deck)])] {
        let out = dir.path().join(format!("out-{}", extra.len()));
        ok(run(&inputs, &out, &extra), "first night");
        let first = tables(&out);
        let recorded = |t: &BTreeMap<String, DataFrame>| -> i64 {
            t.iter()
                .filter(|(p, _)| p.starts_with("legs/"))
                .map(|(_, df)| {
                    df.column("recorded_cost_units")
                        .and_then(|c| c.i64().map(|c| c.sum().unwrap_or(0)))
                        .unwrap_or(0)
                })
                .sum()
        };
        assert!(recorded(&first) > 0, "the export's recorded money is read");
        // A rerun reads every partition back: nothing changes, no conflict.
        let o = ok(run(&inputs, &out, &extra), "rerun");
        let m = json_file(&out.join("manifest.json"));
        assert_eq!(
            m["counts"]["conflicts"],
            0,
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(m["merge"]["legs_read_back"].as_u64() > Some(0));
        let again = tables(&out);
        assert_eq!(
            first.keys().collect::<Vec<_>>(),
            again.keys().collect::<Vec<_>>()
        );
        for (p, df) in &first {
            assert!(df.equals_missing(&again[p]), "{p} changed on a rerun");
        }
    }
    Ok(())
}

/// A dataset of one night, `fixtures/ndjson`, in `dir/out`.
fn first_night(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    ok(
        run(&[root().join("fixtures/ndjson")], &out, &[]),
        "the first night",
    );
    out
}

/// Another night into `out` after `what` was done to `file`: exit 2, the file named, and the
/// folder byte for byte as it was.
fn assert_refused(out: &Path, what: &str, file: &Path) -> TestResult {
    let before = snapshot(out);
    let o = run(&[root().join("fixtures/ndjson")], out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{what}: {err}");
    let name = file.strip_prefix(out)?.to_string_lossy();
    assert!(err.contains(name.as_ref()), "{what}: {err}");
    assert_eq!(snapshot(out), before, "{what}: the folder changed");
    Ok(())
}

/// A catalog cut short, not JSON, with a field of the wrong type, or written by the Spark job:
/// the run exits 2 before any work, naming the file, and the folder is as it was.
#[test]
fn a_damaged_catalog_is_refused_and_nothing_changes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = first_night(dir.path());
    let manifest = out.join("manifest.json");
    let good = std::fs::read_to_string(&manifest)?;
    let spark = good.replacen('{', r#"{"engine": "spark 4.3.0", "#, 1);
    let at = good.find(r#""days": {"#).ok_or("days")?;
    let mistyped = format!(
        "{}{}",
        &good[..at],
        good[at..].replacen(r#""legs": "#, r#""legs": "many", "was": "#, 1)
    );
    for (what, text) in [
        ("cut in half", &good[..good.len() / 2]),
        ("not JSON", "\u{0}\u{0}garbage"),
        ("a mistyped field", mistyped.as_str()),
        ("written by Spark", spark.as_str()),
    ] {
        std::fs::write(&manifest, text)?;
        let before = snapshot(&out);
        let o = run(&[root().join("fixtures/crossbar")], &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains("manifest.json"), "{what}: {err}");
        assert_eq!(snapshot(&out), before, "{what}: the folder changed");
        assert_eq!(std::fs::read_to_string(&manifest)?, text, "{what}");
        assert!(!out.join(".rerate-staging").exists(), "{what}");
    }
    let o = {
        std::fs::write(&manifest, &mistyped)?;
        run(&[root().join("fixtures/crossbar")], &out, &[])
    };
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("days.2026-11-02.tables.legs"),
        "the field is named: {err}"
    );
    Ok(())
}

/// The catalogs written by earlier releases (formats 2 and 3: `tests/catalog/format-2` and
/// `format-3`, the fixtures' run, without its data files; format 1, every partition in the
/// manifest) keep reading in every later one.
#[test]
fn the_catalogs_of_formats_1_2_and_3_read() -> TestResult {
    let path = root().join("tests/catalog/format-1.json");
    let c = rerate::internals::dataset::Catalog::parse(&std::fs::read(&path)?, &path)?;
    assert_eq!(c.format_version, 1);
    let dir = root().join("tests/catalog/format-2");
    let c2 = rerate::internals::dataset::Catalog::read(&dir)?.ok_or("a catalog")?;
    assert_eq!(c2.format_version, 2);
    let dir3 = root().join("tests/catalog/format-3");
    let c3 = rerate::internals::dataset::Catalog::read(&dir3)?.ok_or("a catalog")?;
    assert_eq!(c3.format_version, 3);
    let days: Vec<String> = c3.shards().into_keys().collect();
    assert_eq!(
        days,
        [
            "2013-07-29",
            "2019-05-06",
            "2026-11-02",
            "2026-11-03",
            "2026-11-04"
        ]
    );
    let counts = c3.key_index(&dir3)?.counts();
    assert_eq!((counts.len(), counts.values().sum::<u64>()), (9, 40));
    let all = c3.all_partitions(&dir3)?;
    assert_eq!(all.len(), 45);
    assert_eq!(
        all.iter()
            .filter(|p| p.table == "legs")
            .map(|p| p.rows)
            .sum::<u64>(),
        40
    );
    for (c, dir) in [(&c, Path::new("no-folder-needed")), (&c2, dir.as_path())] {
        let all = c.all_partitions(dir)?;
        let legs: Vec<_> = all.iter().filter(|p| p.table == "legs").collect();
        assert_eq!(legs.len(), 9);
        assert_eq!(legs.iter().map(|p| p.rows).sum::<u64>(), 40);
        assert_eq!(all.len(), 45);
        assert_eq!(c.definition["--tz"].as_deref(), Some("UTC"));
        assert_eq!(c.runs.len(), 1);
        let months: Vec<String> = c.shards().into_keys().collect();
        assert_eq!(months, ["2013-07", "2019-05", "2026-11"]);
    }
    // Format 2's index: the 40 legs, in their 9 partitions.
    let counts = c2.key_index(&dir)?.counts();
    assert_eq!((counts.len(), counts.values().sum::<u64>()), (9, 40));
    Ok(())
}

/// `rerate check` finds, by name, what a wrong merge leaves: a partition the catalog does not
/// list, a call_id twice, a daily row that is not its legs', a file missing or unreadable.
#[test]
fn check_names_what_is_wrong_with_a_dataset() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    ok(run(&[root().join("fixtures")], &out, &[]), "fixtures");
    let o = ok(rerate(&["check", s(&out)]), "a good dataset");
    assert!(String::from_utf8_lossy(&o.stdout).contains("40 legs"));

    // A leftover copy of a legs partition under another day: two copies of its call_ids, and
    // data the catalog does not list.
    let legs = parquet_files(&out.join("legs"));
    let first = &legs[0];
    let stray = first
        .parent()
        .and_then(Path::parent)
        .ok_or("account folder")?
        .join("date=1999-01-01");
    std::fs::create_dir_all(&stray)?;
    std::fs::copy(first, stray.join("part-0.parquet"))?;
    let o = rerate(&["check", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("date=1999-01-01: holds data the catalog does not list"),
        "{err}"
    );
    std::fs::remove_dir_all(&stray)?;

    // A daily file that says another thing than its legs, and a legs file gone.
    let daily = parquet_files(&out.join("daily"));
    std::fs::copy(&daily[1], &daily[0])?;
    std::fs::remove_file(&legs[2])?;
    let o = rerate(&["check", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("daily of account"), "{err}");
    assert!(err.contains("holds no data file"), "{err}");
    assert!(
        err.contains("is in 0 interactions") || err.contains("in no leg"),
        "{err}"
    );

    // No catalog: exit 2.
    let o = rerate(&["check", s(dir.path())]);
    assert_eq!(o.status.code(), Some(2));
    Ok(())
}

/// The reports of the dataset in `out` laid out as releases before catalog format 4 wrote them:
/// a folder per account and day (`daily/account_id=<ID>/date=<D>/part-0.parquet`) without the
/// `account_id` column, instead of a file a day.
/// Reports an older release did not write.
const TABLES_SINCE_FORMAT_4: &[&str] = &["revenue_leak", "margin"];

/// `out` without the reports of [`TABLES_SINCE_FORMAT_4`], as an older release left it.
fn without_tables_since_format_4(out: &Path) -> TestResult {
    for t in TABLES_SINCE_FORMAT_4 {
        std::fs::remove_dir_all(out.join(t))?;
    }
    Ok(())
}

fn reports_by_account_and_day(out: &Path) -> TestResult {
    for table in [
        "daily",
        "hangup_causes",
        "top_destinations",
        "reconciliation_daily",
    ] {
        let dir = out.join(table);
        for (a, d, mut df) in read_dataset(&dir) {
            if a.is_empty() {
                continue;
            }
            let folder = out.join(Grain::AccountDay.folder(table, &a, Some(&d)));
            std::fs::create_dir_all(&folder)?;
            let f = std::fs::File::create(folder.join("part-0.parquet"))?;
            ParquetWriter::new(f).finish(&mut df)?;
        }
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("date="))
            {
                std::fs::remove_dir_all(p)?;
            }
        }
    }
    Ok(())
}

/// The legs files of `out` as releases before catalog format 4 wrote them: without the
/// parser's own columns (`parse_flags`, `exported_cost_units`, `exported_reseller_cost_units`),
/// which a merge then rebuilds from `rating_flags` and `recorded_*`.
fn legs_without_parsed_columns(out: &Path) -> TestResult {
    for f in parquet_files(&out.join("legs")) {
        let mut df = read_parquet(&f).drop_many([
            "parse_flags",
            "exported_cost_units",
            "exported_reseller_cost_units",
        ]);
        ParquetWriter::new(std::fs::File::create(&f)?).finish(&mut df)?;
    }
    Ok(())
}

/// Every report of `out` is a file a day: no folder per account is left.
fn assert_no_account_folders_in_reports(out: &Path) {
    for table in [
        "daily",
        "hangup_causes",
        "top_destinations",
        "reconciliation_daily",
    ] {
        let left: Vec<String> = std::fs::read_dir(out.join(table))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("account_id="))
            .collect();
        assert!(left.is_empty(), "{table}: {left:?}");
    }
}

/// The fixtures (three months: 2013-07, 2019-05, 2026-11) run into `dir/out`; returns the
/// folder, the fixtures, and a second night that touches only the last month.
fn fixtures_first_night(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let out = dir.join("out");
    let (first, second) = (
        root().join("fixtures"),
        root().join("fixtures/nightly-midnight/night-1.ndjson.nightly"),
    );
    ok(
        run(std::slice::from_ref(&first), &out, &[]),
        "the first night",
    );
    (out, first, second)
}

/// A dataset whose catalog is of format 1 (every partition in the manifest, no index), as the
/// release before wrote it, takes a merge: the index is built from its legs files once, and the
/// folder then holds what one run over both inputs writes, with a format 4 catalog (the reports
/// moved from a folder per account and day to a file a day).
#[test]
fn a_format_1_dataset_merges_and_moves_to_format_4() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (out, first, second) = fixtures_first_night(dir.path());
    let catalog = rerate::internals::dataset::Catalog::read(&out)?.ok_or("a catalog")?;
    let mut parts = catalog.all_partitions(&out)?;
    parts.retain(|p| !TABLES_SINCE_FORMAT_4.contains(&p.table.as_str()));
    without_tables_since_format_4(&out)?;
    for p in &mut parts {
        p.path = Grain::AccountDay.folder(&p.table, &p.account_id, p.date.as_deref());
    }
    reports_by_account_and_day(&out)?;
    legs_without_parsed_columns(&out)?;
    let mut m = json_file(&out.join("manifest.json"));
    let o = m.as_object_mut().ok_or("an object")?;
    for k in ["days", "keys_hash", "partitions_written"] {
        o.remove(k);
    }
    o.insert("format_version".into(), 1.into());
    o.insert("partitions".into(), serde_json::to_value(&parts)?);
    if let Some(outputs) = o.get_mut("outputs").and_then(|v| v.as_array_mut()) {
        outputs.retain(|v| {
            v != "_catalog"
                && !v
                    .as_str()
                    .is_some_and(|t| TABLES_SINCE_FORMAT_4.contains(&t))
        });
    }
    std::fs::write(out.join("manifest.json"), serde_json::to_string_pretty(&m)?)?;
    std::fs::remove_dir_all(out.join("_catalog"))?;

    ok(
        run(std::slice::from_ref(&second), &out, &[]),
        "a merge into the format 1 dataset",
    );
    ok(rerate(&["check", s(&out)]), "rerate check");
    assert_eq!(
        json_file(&out.join("manifest.json"))["format_version"],
        rerate::internals::dataset::FORMAT_VERSION
    );
    assert_no_account_folders_in_reports(&out);
    // Every day got its files, not only the one the night touched: the next night reads them.
    ok(
        run(std::slice::from_ref(&second), &out, &[]),
        "a night after the move",
    );
    ok(rerate(&["check", s(&out)]), "rerate check after the move");
    let one = dir.path().join("one");
    ok(run(&[first, second], &one, &[]), "one run");
    assert_same_dataset(&out, &one, "format 1, then merged");
    Ok(())
}

/// A dataset of format 2 (its catalog cut by month) or 3 (cut by day, the reports in a folder
/// per account and day), as the releases before wrote them: the checked-in catalog of the
/// fixtures' run (`tests/catalog/format-2`, `format-3`) over the data files this rerate writes
/// for them, the reports laid out as then. A merge into it reads the catalog, writes every
/// day's catalog files (the month files go) and every report as a file a day (the account
/// folders go), and the folder then holds what one run over both inputs writes.
#[test]
fn a_format_2_or_3_dataset_merges_and_moves_to_format_4() -> TestResult {
    for format in [2, 3] {
        let dir = tempfile::tempdir()?;
        let (out, first, second) = fixtures_first_night(dir.path());
        std::fs::remove_dir_all(out.join("_catalog"))?;
        without_tables_since_format_4(&out)?;
        reports_by_account_and_day(&out)?;
        legs_without_parsed_columns(&out)?;
        let fixture = root().join(format!("tests/catalog/format-{format}"));
        std::fs::copy(fixture.join("manifest.json"), out.join("manifest.json"))?;
        for sub in ["keys", "partitions"] {
            let to = out.join("_catalog").join(sub);
            std::fs::create_dir_all(&to)?;
            for f in std::fs::read_dir(fixture.join("_catalog").join(sub))? {
                let f = f?;
                std::fs::copy(f.path(), to.join(f.file_name()))?;
            }
        }
        let what = format!("the format {format} dataset");
        ok(
            rerate(&["check", s(&out)]),
            &format!("rerate check of {what}"),
        );

        ok(
            run(std::slice::from_ref(&second), &out, &[]),
            &format!("a merge into {what}"),
        );
        assert_eq!(
            json_file(&out.join("manifest.json"))["format_version"],
            rerate::internals::dataset::FORMAT_VERSION
        );
        assert_no_account_folders_in_reports(&out);
        let files = |sub: &str| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(out.join("_catalog").join(sub))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        for sub in ["keys", "partitions"] {
            let names = files(sub);
            assert!(
                !names.is_empty() && names.iter().all(|n| n.starts_with("day=")),
                "{what}, {sub}: {names:?}"
            );
            // The fixtures' days (three months) and the night's.
            assert!(
                names.contains(&"day=2013-07-29.parquet".to_owned()),
                "{what}: {names:?}"
            );
        }
        ok(
            rerate(&["check", s(&out)]),
            &format!("rerate check after moving {what}"),
        );
        ok(
            run(std::slice::from_ref(&second), &out, &[]),
            &format!("a night after moving {what}"),
        );
        let one = dir.path().join("one");
        ok(run(&[first, second], &one, &[]), "one run");
        assert_same_dataset(&out, &one, &format!("{what}, then merged"));
    }
    Ok(())
}

/// The catalog's files beside the manifest, missing or damaged: exit 2, naming the file, and
/// nothing changes.
#[test]
fn a_damaged_index_or_month_list_is_refused_and_nothing_changes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = first_night(dir.path());
    let index = out.join("_catalog/keys/day=2026-11-02.parquet");
    let month = out.join("_catalog/partitions/day=2026-11-02.parquet");
    for (what, file, text) in [
        ("the index cut short", &index, Some(&b"PAR1"[..])),
        ("the index gone", &index, None),
        (
            "the day's partition list cut short",
            &month,
            Some(&b"PAR1"[..]),
        ),
    ] {
        let good = std::fs::read(file)?;
        match text {
            Some(t) => std::fs::write(file, t)?,
            None => std::fs::remove_file(file)?,
        }
        assert_refused(&out, what, file)?;
        let check = rerate(&["check", s(&out)]);
        assert_ne!(check.status.code(), Some(0), "{what}: rerate check passes");
        std::fs::write(file, good)?;
    }
    ok(rerate(&["check", s(&out)]), "restored");
    Ok(())
}

/// A legs file or an index month that lost rows behind rerate's back (a stale backup restored,
/// a file edited), and an index file of a month the manifest does not list: a merge would keep
/// two copies of a leg or lose some, so the run exits 2, naming the file, and nothing changes.
#[test]
fn a_catalog_that_disagrees_with_its_files_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = first_night(dir.path());
    let legs = parquet_files(&out.join("legs"));
    let index = out.join("_catalog/keys/day=2026-11-02.parquet");
    let one_row_less = |path: &Path| -> TestResult {
        let mut df = read_parquet(path);
        df = df.slice(0, df.height() - 1);
        ParquetWriter::new(std::fs::File::create(path)?).finish(&mut df)?;
        Ok(())
    };
    let extra = out.join("_catalog/keys/day=1999-01-01.parquet");
    type Damage<'a> = (&'a str, &'a Path, Box<dyn Fn() -> TestResult + 'a>);
    let cases: Vec<Damage> = vec![
        (
            "a legs file one row short",
            &legs[0],
            Box::new(|| one_row_less(&legs[0])),
        ),
        (
            "the index one row short",
            &index,
            Box::new(|| one_row_less(&index)),
        ),
        (
            "an index day the manifest does not list",
            &extra,
            Box::new(|| Ok(std::fs::copy(&index, &extra).map(|_| ())?)),
        ),
    ];
    for (what, file, damage) in cases {
        let good = std::fs::read(file).ok();
        damage()?;
        assert_refused(&out, what, file)?;
        match good {
            Some(g) => std::fs::write(file, g)?,
            None => std::fs::remove_file(file)?,
        }
    }
    ok(
        run(&[root().join("fixtures/ndjson")], &out, &[]),
        "restored",
    );
    ok(rerate(&["check", s(&out)]), "restored, checked");
    Ok(())
}

/// A report's doubles do not depend on the other accounts a run holds: `hangup_causes.share`
/// of an account recomputed alone by a merge equals one run's over every account (polars
/// divides by a one-value column as a multiplication by its reciprocal; 3 of 5 legs came out
/// as 0.6000000000000001 merged and 0.6 in one run). Found by a helper's attack.
#[test]
fn a_report_recomputed_for_one_account_equals_one_run() -> TestResult {
    let dir = tempfile::tempdir()?;
    let leg = |id: &str, account: &str, cause: &str, k: i64| {
        serde_json::json!({
            "call_id": id, "timestamp": 63960800400_i64 + 60 * k, "duration_seconds": 120,
            "billing_seconds": 115, "call_direction": "outbound", "hangup_cause": cause,
            "channel_created_time": (1793581080_i64 + 60 * k) * 1_000_000,
            "custom_channel_vars": {"account_id": account, "account_billing": "per_minute",
                "rate": "100", "rate_increment": "60", "rate_minimum": "0"}
        })
        .to_string()
    };
    let night1 = [
        leg("L2", "acc1", "NORMAL_CLEARING", 1),
        leg("L3", "acc1", "NORMAL_CLEARING", 2),
        leg("L4", "acc1", "USER_BUSY", 3),
        leg("L5", "acc1", "USER_BUSY", 4),
        leg("Y1", "acc2", "NORMAL_CLEARING", 5),
    ];
    let (n1, n2) = (dir.path().join("n1.ndjson"), dir.path().join("n2.ndjson"));
    std::fs::write(&n1, night1.join("\n") + "\n")?;
    std::fs::write(&n2, leg("L1", "acc1", "NORMAL_CLEARING", 0) + "\n")?;
    let (nightly, one) = (dir.path().join("nightly"), dir.path().join("one"));
    ok(run(std::slice::from_ref(&n1), &nightly, &[]), "night 1");
    ok(run(std::slice::from_ref(&n2), &nightly, &[]), "night 2");
    ok(run(&[n1, n2], &one, &[]), "one run");
    assert_same_dataset(&nightly, &one, "a share recomputed for one account");
    let causes = read_dataset(&one.join("hangup_causes"));
    let (_, _, acc1) = causes.iter().find(|(a, _, _)| a == "acc1").ok_or("acc1")?;
    let share = acc1.column("share")?.f64()?.get(0);
    assert_eq!(
        share,
        Some(3.0 * (1.0 / 5.0)),
        "3 of 5 legs, as legs x (1 / day's legs)"
    );
    Ok(())
}

/// A `--queries` report may give rows to a day none of the run's legs are on: a merge rewrites
/// that day too, keeping the other accounts' rows, and the catalog lists each row once.
#[test]
fn a_report_row_on_a_day_without_legs_is_kept_across_merges() -> TestResult {
    let dir = tempfile::tempdir()?;
    let queries = dir.path().join("q");
    std::fs::create_dir_all(&queries)?;
    std::fs::write(
        queries.join("per_account.sql"),
        "SELECT account_id, MIN(date) - (MIN(date) - DATE '2026-01-01') AS date, COUNT(*) AS legs FROM legs GROUP BY account_id\n",
    )?;
    let q = ["--queries", s(&queries)];
    let out = dir.path().join("out");
    ok(
        run(&[root().join("fixtures/ndjson")], &out, &q),
        "first night",
    );
    let first = read_dataset(&out.join("per_account"));
    ok(
        run(
            &[root().join("fixtures/nightly-midnight/night-1.ndjson.nightly")],
            &out,
            &q,
        ),
        "second night",
    );
    ok(rerate(&["check", s(&out)]), "rerate check");
    let after = read_dataset(&out.join("per_account"));
    assert!(!first.is_empty() && after.len() > first.len(), "{after:?}");
    for (a, d, df) in &first {
        assert_eq!(d, "2026-01-01");
        let kept = after.iter().find(|(x, y, _)| x == a && y == d);
        assert!(
            kept.is_some_and(|(_, _, k)| k.equals_missing(df)),
            "{a} kept"
        );
    }
    Ok(())
}

/// A `--queries` report whose rows fall on an account and day that the night brings no legs
/// for: the legs committed there stay (the commit once replaced every account-and-day folder a
/// report's row named, legs included), as do the ledgers' day files.
#[test]
fn a_report_row_on_a_day_of_legs_the_night_leaves_alone_keeps_those_legs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let night = |k: u8| {
        root().join(format!(
            "fixtures/nightly-midnight/night-{k}.ndjson.nightly"
        ))
    };
    let scratch = dir.path().join("scratch");
    ok(run(&[night(1)], &scratch, &[]), "night 1 alone");
    let days: Vec<String> = read_dataset(&scratch.join("legs"))
        .into_iter()
        .map(|(_, d, _)| d)
        .collect();
    let first = days.iter().min().ok_or("night 1 has legs")?.clone();
    let queries = dir.path().join("q");
    std::fs::create_dir_all(&queries)?;
    std::fs::write(
        queries.join("on_first_day.sql"),
        format!("SELECT account_id, DATE '{first}' AS date, COUNT(*) AS legs FROM legs GROUP BY account_id\n"),
    )?;
    let q = ["--queries", s(&queries)];
    let (merged, one) = (dir.path().join("merged"), dir.path().join("one"));
    ok(run(&[night(1)], &merged, &q), "night 1");
    ok(run(&[night(2)], &merged, &q), "night 2");
    ok(rerate(&["check", s(&merged)]), "rerate check");
    ok(run(&[night(1), night(2)], &one, &q), "one run");
    let legs = |out: &Path| -> Vec<(String, String, usize)> {
        read_dataset(&out.join("legs"))
            .into_iter()
            .map(|(a, d, df)| (a, d, df.height()))
            .collect()
    };
    assert_eq!(legs(&merged), legs(&one));
    assert!(legs(&merged).iter().any(|(_, d, _)| *d == first));
    Ok(())
}
