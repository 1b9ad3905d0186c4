//! Properties over random corpora: generated CDRs, with duplicate, conflicting and broken
//! records mixed in, run through the real CLI.

use std::path::Path;

use proptest::prelude::*;

use crate::util::*;

/// A random corpus: `legs` generated legs in two files, then `dups` copies of existing lines
/// (every third one with a later timestamp: a conflict) and up to `junk` broken lines, fewer than
/// the good ones (a file mostly of broken lines reads as a broken pretty-printed stream, where a
/// broken value runs to the next value; that is tested in scan's unit tests). Returns the
/// folder, its files, the number of records in them (counted here line by line) and the number
/// of broken lines inserted.
fn corpus(
    dir: &Path,
    seed: u32,
    legs: u32,
    pages: bool,
    dups: usize,
    junk: usize,
) -> (String, Vec<String>, u64, usize) {
    let input = dir.join("in");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let o = rerate(&[
        "gen",
        "--legs",
        &legs.to_string(),
        "--accounts",
        "4",
        "--days",
        "3",
        "--files",
        "2",
        "--seed",
        &seed.to_string(),
        "--shape",
        if pages { "pages" } else { "ndjson" },
        "--out",
        &s(&input),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&input)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let first = files[0].clone();
    let text = std::fs::read_to_string(&first).expect("corpus");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let n = lines.len();
    for i in 0..dups {
        let mut line = lines[(i * 7919 + seed as usize) % n].clone();
        if i % 3 == 2 {
            line = line
                .replacen("\"timestamp\": ", "\"timestamp\": 1", 1)
                .replacen("\"timestamp\":", "\"timestamp\":1", 1);
        }
        lines.push(line);
    }
    let junk = junk.min(lines.len().saturating_sub(1) / 2);
    for i in 0..junk {
        let at = (i * 104_729 + seed as usize) % lines.len();
        lines.insert(
            at,
            [
                "{\"call_id\": \"x",
                "[1,2",
                "not json",
                "{\"no_call_id\": true}",
            ][i % 4]
                .to_owned(),
        );
    }
    std::fs::write(&first, lines.join("\n") + "\n").expect("write corpus");
    // Count records independently: a page line holds its `data`, anything else is one record.
    let mut records = 0u64;
    for f in &files {
        for line in std::fs::read_to_string(f).expect("read").lines() {
            if line.trim().is_empty() {
                continue;
            }
            records += match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) => v["data"].as_array().map_or(1, |d| d.len() as u64),
                Err(_) => 1,
            };
        }
    }
    (
        s(&input),
        files.iter().map(|f| s(f)).collect(),
        records,
        junk,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn random_corpora_balance_and_do_not_depend_on_threads_order_or_chunks(
        seed in 0u32..100_000,
        legs in 20u32..200,
        pages in any::<bool>(),
        dups in 0usize..30,
        junk in 0usize..6,
        chunk in 200usize..20_000,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (input, files, records, junk) = corpus(dir.path(), seed, legs, pages, dups, junk);
        let out = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        run_ok(&[&files[0], &files[1], "--out", &out("a"), "-q", "--threads", "1"]);
        let chunk = chunk.to_string();
        run_ok(&[&files[1], &files[0], "--out", &out("b"), "-q", "--threads", "2", "--chunk-size", &chunk]);
        run_ok(&[&input, "--out", &out("c"), "-q", "--rounding", "exact"]);

        let m = json_file(&dir.path().join("a/manifest.json"));
        let c = &m["counts"];
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(u64::MAX);
        prop_assert_eq!(n(&c["records_read"]), records);
        prop_assert_eq!(n(&c["records_read"]), n(&c["legs_written"]) + n(&c["rejected"]) + n(&c["duplicates_dropped"]));
        prop_assert_eq!(n(&c["rejected"]), junk as u64);
        prop_assert!(n(&c["duplicates_dropped"]) >= dups as u64 / 2, "{} duplicates for {} copies", c["duplicates_dropped"], dups);

        let mb = json_file(&dir.path().join("b/manifest.json"));
        prop_assert_eq!(&m["counts"], &mb["counts"]);
        prop_assert_eq!(&m["totals"], &mb["totals"]);
        let (a, b, exact) = (legs_of(&out("a")), legs_of(&out("b")), legs_of(&out("c")));
        prop_assert_eq!(a.len() as u64, n(&c["legs_written"]));
        prop_assert!(a == b, "the legs differ between the runs");
        prop_assert_eq!(a.len(), exact.len());
        for (id, k) in &a {
            for v in [k.rated, k.cost, k.reseller].into_iter().flatten() {
                prop_assert!(v >= 0, "{} costs {}", id, v);
            }
            let e = &exact[id];
            for (x, y) in [(k.rated, e.rated), (k.cost, e.cost), (k.reseller, e.reseller)] {
                let d = (x.unwrap_or(0) - y.unwrap_or(0)).abs();
                prop_assert!(d <= 1, "{}: kazoo and exact differ by {} units", id, d);
            }
        }
    }
}

fn legs_of(out: &str) -> std::collections::BTreeMap<String, LegRow> {
    legs(Path::new(out))
}

/// Many files on two threads: workers waiting on one file's tasks read other files on their
/// own stacks (this overflowed the default stack in debug builds).
#[test]
fn many_files_on_two_threads_are_all_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    let out = dir.path().join("out");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let o = rerate(&[
        "gen",
        "--legs",
        "1600",
        "--accounts",
        "3",
        "--days",
        "2",
        "--files",
        "12",
        "--out",
        &s(&input),
    ]);
    assert!(o.status.success());
    run_ok(&[
        &s(&input),
        "--out",
        &s(&out),
        "-q",
        "--threads",
        "2",
        "--chunk-size",
        "4K",
    ]);
    let m = json_file(&out.join("manifest.json"));
    assert_eq!(m["counts"]["legs_written"], 1600);
    assert_eq!(m["inputs"].as_array().map(Vec::len), Some(12));
}

/// Names as users type them: letters, digits, blanks, commas, double and single quotes, `+`.
fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('a', 'z'),
            1 => Just(' '),
            2 => Just(','),
            2 => Just('"'),
            1 => Just('\''),
            1 => proptest::char::range('0', '9'),
            1 => Just('+'),
        ],
        0..14,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// An unquoted KAZOO export whose names hold random commas and quotes: every row is read
    /// exactly (every column as written) or rejected with a reason at its line, never read into
    /// the wrong columns.
    #[test]
    fn names_with_commas_and_quotes_are_read_exactly_or_rejected_never_shifted(
        seed in 0u64..1_000_000,
        names in proptest::collection::vec((name(), name(), name()), 12..30),
    ) {
        use rerate::internals::gen::crossbar::{write_csv_export, KazooRow};
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("account_id=0123456789abcdef0123456789abcdef");
        std::fs::create_dir_all(&folder).expect("dir");
        let opts = rerate::internals::gen::GenOptions {
            legs: names.len() as u64,
            accounts: 1,
            account_skew: rerate::internals::gen::AccountSkew::Uniform,
            days: 1,
            seed,
            files: 1,
            shape: rerate::internals::gen::Shape::KazooCsv,
            gzip: false,
            start_unix: 1_793_577_600,
            call_ids_start_unix: 1_793_577_600,
            header_every: 0,
        plant_errors: false,
        };
        let rows: Vec<KazooRow> = rerate::internals::gen::file_legs(&opts, 0, names.len() as u64)
            .zip(&names)
            .map(|(mut leg, (a, b, _))| {
                leg.caller_id_name = a.clone();
                leg.callee_id_name = b.clone();
                KazooRow::new(leg)
            })
            .collect();
        let path = folder.join("cdrs.csv");
        write_csv_export(&rows, true, &path).expect("written");
        let out = dir.path().join("out");
        run_ok(&[&path.to_string_lossy(), "--out", &out.to_string_lossy(), "-q"]);
        let legs = crate::kazoo_exports::read_legs(&out);
        let rejects = ndjson_file(&out.join("rejects.ndjson"));
        let rejected: std::collections::BTreeMap<u64, String> = rejects
            .iter()
            .map(|r| (r["line"].as_u64().unwrap_or(0), r["reason"].as_str().unwrap_or("").to_owned()))
            .collect();
        prop_assert_eq!(legs.len() + rejects.len(), rows.len());
        for (i, row) in rows.iter().enumerate() {
            let line = i as u64 + 2;
            let l = &row.leg;
            match legs.get(&l.call_id) {
                None => {
                    let why = rejected.get(&line);
                    prop_assert!(why.is_some_and(|w| !w.is_empty()), "{} neither read nor rejected at line {}", l.call_id, line);
                }
                Some(got) => {
                    prop_assert_eq!(got.i("source_line"), Some(line as i64));
                    prop_assert_eq!(got.s("caller_id_name"), (!l.caller_id_name.trim().is_empty()).then_some(l.caller_id_name.trim()));
                    prop_assert_eq!(got.s("callee_id_name"), (!l.callee_id_name.trim().is_empty()).then_some(l.callee_id_name.trim()));
                    prop_assert_eq!(got.s("caller_id_number"), Some(l.caller.as_str()));
                    prop_assert_eq!(got.s("callee_id_number"), Some(l.callee.as_str()));
                    prop_assert_eq!(got.i("billing_seconds"), Some(l.talk));
                    prop_assert_eq!(got.i("duration_seconds"), Some(l.duration_seconds()));
                    prop_assert_eq!(got.i("recorded_cost_units"), Some(row.cost()));
                    prop_assert_eq!(got.i("recorded_reseller_cost_units"), Some(row.reseller_cost()));
                    prop_assert_eq!(got.i("start_time"), Some(l.channel_created_time));
                    prop_assert_eq!(got.s("hangup_cause"), Some(l.hangup_cause));
                    prop_assert_eq!(got.s("call_direction"), Some(l.direction));
                    prop_assert_eq!(got.s("account_billing"), Some(l.account_billing));
                }
            }
        }
    }
}
