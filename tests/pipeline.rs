//! `rerate run` on the bundled fixtures: every leg's money against values worked out by hand
//! (fixtures/EXPECTED.md shows the arithmetic), the rejects, the manifest's balance, options.

use std::path::Path;

use polars::prelude::*;

use crate::util::*;

const A: &str = "3f1c5a9e2b7d4c6f8a0e1d2c3b4a5f60";
const B: &str = "b2e4d6f8a0c2e4f6a8b0c2d4e6f8a0b2";
const S1: &str = "7600efb3424dc4b79854521fd4563d0a";
const S2: &str = "7f89565344e3e6302df60168420e9265";
const S3: &str = "91eb05e5c68d7ca05e7618b6821d2d16";
const R: &str = "5e1f0c2d3b4a59687766554433221100";
const S: &str = "6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d";

/// (call_id, account, date, billed_seconds, rated, cost, reseller_cost, rating_flags)
type Expected = (
    &'static str,
    &'static str,
    &'static str,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<&'static str>,
);

const EXPECTED: &[Expected] = &[
    // crossbar/cdrs_pages.json (per_minute customer, flat_rate reseller unless noted)
    (
        "page1-leg1",
        A,
        "2026-11-02",
        Some(60),
        Some(2262),
        Some(2262),
        Some(0),
        None,
    ),
    (
        "page1-leg2",
        A,
        "2026-11-02",
        Some(66),
        Some(2488),
        Some(2488),
        Some(0),
        None,
    ),
    // R=22 RI=1 RM=0 300 s: KAZOO's doubles give 109 (exact: 110); reseller per_minute too.
    (
        "page2-leg1",
        A,
        "2026-11-02",
        Some(300),
        Some(109),
        Some(109),
        Some(109),
        None,
    ),
    (
        "page2-leg2",
        A,
        "2026-11-03",
        Some(120),
        Some(3393),
        Some(3393),
        Some(0),
        None,
    ),
    (
        "single-unanswered",
        A,
        "2026-11-03",
        Some(0),
        Some(0),
        Some(0),
        Some(0),
        None,
    ),
    // gzip/legs.ndjson.gz (it also repeats page1-leg1, identically)
    (
        "gz-leg1",
        A,
        "2026-11-02",
        Some(180),
        Some(950),
        Some(950),
        Some(0),
        None,
    ),
    (
        "gz-tz-edge",
        A,
        "2026-11-03",
        Some(60),
        Some(600),
        Some(600),
        Some(0),
        None,
    ),
    // ndjson/mixed.ndjson
    (
        "nd-nocharge",
        B,
        "2026-11-02",
        Some(0),
        Some(0),
        Some(0),
        Some(0),
        None,
    ),
    (
        "nd-over-nocharge",
        B,
        "2026-11-02",
        Some(60),
        Some(1000),
        Some(1000),
        Some(0),
        None,
    ),
    // the later, conflicting copy wins: 121 s, 1 + 3 * 600 = 1801, minus trunc(0.07 * 1801) = 126
    (
        "nd-surcharge-discount",
        B,
        "2026-11-02",
        Some(180),
        Some(1675),
        Some(1675),
        Some(0),
        None,
    ),
    (
        "nd-decimal-rate",
        B,
        "2026-11-02",
        Some(120),
        Some(2),
        Some(2),
        Some(0),
        Some("decimal:rate"),
    ),
    (
        "nd-increment-zero",
        B,
        "2026-11-02",
        Some(60),
        Some(600),
        Some(600),
        Some(0),
        None,
    ),
    (
        "nd-offset",
        B,
        "2026-11-02",
        Some(60),
        Some(600),
        Some(600),
        Some(0),
        None,
    ),
    (
        "nd-unrated",
        B,
        "2026-11-02",
        Some(60),
        Some(0),
        Some(0),
        Some(0),
        Some("unrated"),
    ),
    (
        "nd-flat-rate",
        B,
        "2026-11-02",
        Some(60),
        Some(1000),
        Some(0),
        Some(1000),
        None,
    ),
    // arrays/legs_array.json
    (
        "arr-leg",
        B,
        "2026-11-02",
        Some(60),
        Some(1200),
        Some(1200),
        Some(0),
        None,
    ),
    (
        "arr-no-account",
        "_unassigned",
        "2026-11-02",
        Some(90),
        Some(1800),
        Some(1800),
        Some(0),
        None,
    ),
    // ndjson/interaction.ndjson: one call of three legs across two accounts, and two legs
    // joined only by their bridge_id
    (
        "ix-a-leg",
        A,
        "2026-11-02",
        Some(120),
        Some(0),
        Some(0),
        Some(0),
        None,
    ),
    (
        "ix-b-leg",
        A,
        "2026-11-02",
        Some(120),
        Some(1200),
        Some(1200),
        Some(0),
        None,
    ),
    (
        "ix-c-leg",
        B,
        "2026-11-02",
        Some(60),
        Some(1000),
        Some(1000),
        Some(0),
        None,
    ),
    (
        "br-1",
        B,
        "2026-11-02",
        Some(0),
        Some(0),
        Some(0),
        Some(0),
        None,
    ),
    (
        "br-2",
        B,
        "2026-11-02",
        Some(0),
        Some(0),
        Some(0),
        Some(0),
        None,
    ),
    // kazoo-samples: the real KAZOO documents
    (
        "SD80b4301-08cad0a2bb1f10205aba739d13258341-06a91u0",
        S1,
        "2019-05-06",
        Some(60),
        Some(2262),
        Some(0),
        Some(0),
        None,
    ),
    (
        "ZjM1ODg3NTNhNTI4NmM5ZTA3MmFjZWYzMWJmZGNkZjc",
        S2,
        "2013-07-29",
        Some(0),
        Some(0),
        Some(0),
        Some(0),
        Some("time_from_pvt_created"),
    ),
    (
        "NDlkNGI3OTZlMDgzNWQxNGYxNTA3NjQ4NDZjNDFkOTc",
        S3,
        "2019-05-06",
        Some(60),
        Some(0),
        Some(0),
        Some(0),
        None,
    ),
    // reconcile/: crossbar CSV exports (no deck here, so no money: the deck prices CSV legs)
    (
        "c-ok-1",
        R,
        "2026-11-04",
        None,
        None,
        None,
        None,
        Some("no_deck_rate"),
    ),
    (
        "c-ok-2",
        R,
        "2026-11-04",
        None,
        None,
        None,
        None,
        Some("no_deck_rate"),
    ),
    (
        "c-ok-flat",
        R,
        "2026-11-04",
        None,
        None,
        None,
        None,
        Some("no_deck_rate"),
    ),
    (
        "c-rounding",
        R,
        "2026-11-04",
        None,
        None,
        None,
        None,
        Some("no_deck_rate"),
    ),
    (
        "c-rate-mismatch",
        R,
        "2026-11-04",
        None,
        None,
        None,
        None,
        Some("no_deck_rate"),
    ),
    (
        "c-billing-flat-charged",
        R,
        "2026-11-04",
        None,
        None,
        None,
        None,
        Some("no_deck_rate"),
    ),
    (
        "c-billing-pm-free",
        R,
        "2026-11-04",
        None,
        None,
        None,
        None,
        Some("no_deck_rate"),
    ),
    (
        "c-unrated",
        R,
        "2026-11-04",
        None,
        None,
        None,
        None,
        Some("unrated,no_deck_rate"),
    ),
    (
        "c-mismatch",
        R,
        "2026-11-04",
        None,
        None,
        None,
        None,
        Some("no_deck_rate"),
    ),
    (
        "c-no-deck-rate",
        R,
        "2026-11-04",
        None,
        None,
        None,
        None,
        Some("no_deck_rate"),
    ),
    (
        "d-ok",
        S,
        "2026-11-04",
        None,
        None,
        None,
        None,
        Some("no_deck_rate"),
    ),
    (
        "d-mismatch",
        S,
        "2026-11-04",
        None,
        None,
        None,
        None,
        Some("no_deck_rate"),
    ),
    // reconcile/json_legs.ndjson: JSON legs are rated from their own CCVs
    (
        "j-ok",
        R,
        "2026-11-04",
        Some(66),
        Some(2488),
        Some(2488),
        Some(0),
        None,
    ),
    (
        "j-rate-mismatch",
        R,
        "2026-11-04",
        Some(66),
        Some(2200),
        Some(2200),
        Some(0),
        None,
    ),
    (
        "j-unrated",
        R,
        "2026-11-04",
        Some(60),
        Some(0),
        Some(0),
        Some(0),
        Some("unrated"),
    ),
];

fn check_legs(out: &Path, expected: &[Expected]) {
    let got = legs(out);
    let want: Vec<&str> = expected.iter().map(|e| e.0).collect();
    let have: Vec<&str> = got.keys().map(String::as_str).collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(have, want_sorted, "the set of legs written");
    for &(id, account, date, billed, rated, cost, reseller, flags) in expected {
        let row = &got[id];
        let want = LegRow {
            account: account.into(),
            date: date.into(),
            billed,
            rated,
            cost,
            reseller,
            // Not worked by hand here: tests/money.rs.
            carrier: row.carrier,
            flags: flags.map(str::to_owned),
        };
        assert_eq!(row, &want, "leg {id}");
    }
}

#[test]
fn fixtures_every_leg_costs_what_was_worked_by_hand() -> TestResult {
    let (_dir, out) = run_fixtures(&[])?;
    check_legs(&out, EXPECTED);
    Ok(())
}

#[test]
fn exact_rounding_differs_only_where_doubles_lose_a_unit() -> TestResult {
    let (_dir, out) = run_fixtures(&["--rounding", "exact"])?;
    let exp: Vec<Expected> = EXPECTED
        .iter()
        .map(|e| match e.0 {
            "page2-leg1" => (
                e.0,
                e.1,
                e.2,
                Some(300),
                Some(110),
                Some(110),
                Some(110),
                None,
            ),
            _ => *e,
        })
        .collect();
    check_legs(&out, &exp);
    Ok(())
}

#[test]
fn report_day_follows_tz() -> TestResult {
    let (_dir, out) = run_fixtures(&["--tz", "America/New_York"])?;
    let got = legs(&out);
    // 2026-11-03T03:30Z is 22:30 EST on the 2nd; 2019-05-06T23:09:58Z is 19:09 EDT, same day;
    // the webhook leg starts 2019-05-06T08:10:03Z, 04:10 EDT.
    assert_eq!(got["gz-tz-edge"].date, "2026-11-02");
    assert_eq!(got["page2-leg2"].date, "2026-11-03");
    assert_eq!(
        got["SD80b4301-08cad0a2bb1f10205aba739d13258341-06a91u0"].date,
        "2019-05-06"
    );
    assert_eq!(
        got["ZjM1ODg3NTNhNTI4NmM5ZTA3MmFjZWYzMWJmZGNkZjc"].date,
        "2013-07-29"
    );
    Ok(())
}

#[test]
fn rejects_name_each_bad_record() -> TestResult {
    let (_dir, out) = run_fixtures(&[])?;
    let rejects = ndjson_file(&out.join("rejects.ndjson"));
    let got: Vec<(String, u64, String, String)> = rejects
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap_or_default().to_owned(),
                r["line"].as_u64().unwrap_or_default(),
                r["code"].as_str().unwrap_or_default().to_owned(),
                r["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want = [
        (10, "invalid_json", "line 10, column 45"),
        (11, "not_an_object", "a number"),
        (12, "missing_call_id", "'call_id' is missing"),
        (13, "empty_call_id", "'call_id' is empty"),
        (
            14,
            "bad_billing_field",
            "'billing_seconds': \"abc\" is not a number",
        ),
        (
            15,
            "bad_billing_field",
            "'custom_channel_vars.rate': \"-5\" is negative",
        ),
        (16, "bad_billing_field", "'timestamp': true is not a number"),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((src, line, code, reason), (wl, wc, wr)) in got.iter().zip(want) {
        assert_eq!(src, "fixtures/ndjson/mixed.ndjson");
        assert_eq!((*line, code.as_str()), (wl, wc));
        assert!(
            reason.contains(wr),
            "line {line}: {reason:?} should say {wr:?}"
        );
    }
    assert_eq!(
        rejects[0]["raw"],
        r#"{"call_id": "bad-json", "billing_seconds": 5,"#
    );
    assert_eq!(rejects[0]["location"], "line 10");
    Ok(())
}

#[test]
fn manifest_balances_and_counts_duplicates() -> TestResult {
    let (_dir, out) = run_fixtures(&[])?;
    let m = json_file(&out.join("manifest.json"));
    let c = &m["counts"];
    // 5 page records + 17 + 5 + 3 NDJSON lines + 2 array elements + 3 gzip lines + 3 samples
    // + 12 CSV rows = 50.
    assert_eq!(c["records_read"], 50);
    assert_eq!(c["legs_written"], 40);
    assert_eq!(c["rejected"], 7);
    // page1-leg1 again in the gzip file, nd-over-nocharge twice: identical; one conflict.
    assert_eq!(c["duplicates_dropped"], 3);
    assert_eq!(c["identical_dropped"], 2);
    assert_eq!(c["conflicting_dropped"], 1);
    assert_eq!(c["conflicts"], 1);
    assert_eq!(
        c["conflict_call_ids"],
        serde_json::json!(["nd-surcharge-discount"])
    );
    assert_eq!(c["balanced"], true);
    assert_eq!(c["rejected_by_reason"]["bad_billing_field"], 3);

    // Partition totals add up to the legs, and to the hand-worked sums.
    let parts: Vec<&serde_json::Value> = m["partitions_written"]
        .as_array()
        .ok_or("partitions_written")?
        .iter()
        .filter(|p| p["table"] == "legs")
        .collect();
    assert_eq!(parts.len(), 9);
    let sum = |k: &str| {
        parts
            .iter()
            .map(|p| p[k].as_i64().unwrap_or(-1))
            .sum::<i64>()
    };
    assert_eq!(sum("rows"), 40);
    let t = &m["totals"];
    assert_eq!(
        (sum("rated_cost_units"), t["rated_cost_units"].as_i64()),
        (22141 + 2488 + 2200, Some(26829))
    );
    assert_eq!(
        (sum("cost_units"), t["cost_units"].as_i64()),
        (18879 + 2488 + 2200, Some(23567))
    );
    assert_eq!(t["reseller_cost_units"], 1109);
    assert_eq!(t["billed_seconds"], 1956 + 66 + 66 + 60);
    let a = parts
        .iter()
        .find(|p| p["account_id"] == A && p["date"] == "2026-11-02")
        .ok_or("partition A/2026-11-02")?;
    assert_eq!(a["rows"], 6);
    assert_eq!(a["cost_units"], 2262 + 2488 + 109 + 950 + 1200);

    let inputs = m["inputs"].as_array().ok_or("inputs")?;
    assert_eq!(
        inputs.len(),
        11,
        "the rate deck in fixtures/reconcile is skipped"
    );
    assert!(inputs.iter().all(|f| f["bytes"].as_u64().unwrap_or(0) > 0));
    let gz = inputs
        .iter()
        .find(|f| f["path"] == "fixtures/gzip/legs.ndjson.gz")
        .ok_or("gz input")?;
    assert_eq!(gz["compression"], "gzip");
    assert_eq!(gz["records"], 3);
    for stage in [
        "1_discover",
        "2_read_parse",
        "3_dedup",
        "4_rate",
        "5_interactions",
        "6_reports",
        "7_write",
        "7a_write_tables",
    ] {
        assert!(m["stages_ms"][stage].is_u64(), "stage {stage}");
    }
    Ok(())
}

#[test]
fn legs_files_keep_the_schema_and_leave_partition_columns_to_the_path() -> TestResult {
    let (_dir, out) = run_fixtures(&["--format", "both"])?;
    let part = out.join(format!("legs/account_id={S1}/date=2019-05-06"));
    let df = read_parquet(&part.join("part-0.parquet"));
    let names: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
    for c in [
        "call_id",
        "start_time",
        "end_time",
        "call_direction",
        "caller_id_number",
        "callee_id_number",
        "duration_seconds",
        "billing_seconds",
        "ringing_seconds",
        "hangup_cause",
        "interaction_id",
        "reseller_id",
        "account_billing",
        "reseller_billing",
        "rate_name",
        "rate",
        "rate_increment",
        "rate_minimum",
        "surcharge",
        "rate_nocharge_time",
        "discount_percentage",
        "billed_seconds",
        "rated_cost_units",
        "cost_units",
        "reseller_cost_units",
        "rating_flags",
        "local_sdp",
        "fax_total_pages",
        "custom_channel_vars",
        "custom_sip_headers",
        "extra",
        "source_file",
    ] {
        assert!(names.contains(&c), "column {c} missing");
    }
    assert!(!names.contains(&"account_id") && !names.contains(&"date"));
    let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
    assert_eq!(df.column("start_time")?.dtype(), &utc);
    // The real CHANNEL_DESTROY sample: start = channel_created_time, end = start + 10 s,
    // interaction_id from its CCV call_interaction_id, rating inputs from CCV strings.
    let us =
        |c: &str| -> PolarsResult<Option<i64>> { Ok(df.column(c)?.datetime()?.physical().get(0)) };
    assert_eq!(us("start_time")?, Some(1_557_184_198_071_108));
    assert_eq!(us("end_time")?, Some(1_557_184_208_071_108));
    assert_eq!(
        us("timestamp")?,
        Some((63_724_403_408 - 62_167_219_200) * 1_000_000)
    );
    let s = |c: &str| -> PolarsResult<Option<String>> {
        Ok(df.column(c)?.str()?.get(0).map(str::to_owned))
    };
    assert_eq!(
        s("interaction_id")?.as_deref(),
        Some("63724403398-af5b9a0e")
    );
    assert_eq!(s("rate_name")?.as_deref(), Some("ANY"));
    assert_eq!(
        s("reseller_id")?.as_deref(),
        Some("d240bf3a1937301cee910193a54ba0d2")
    );
    assert!(s("local_sdp")?.is_some_and(|v| v.starts_with("v=0\r\no=FreeSWITCH")));
    let ccv = s("custom_channel_vars")?.ok_or("ccv")?;
    let ccv: serde_json::Value = serde_json::from_str(&ccv)?;
    assert_eq!(
        ccv["account_trunk_usage"], "0/0/20/0/0/0",
        "unnamed CCVs are kept"
    );
    let i = |c: &str| -> PolarsResult<Option<i64>> { Ok(df.column(c)?.i64()?.get(0)) };
    assert_eq!(
        (i("rate")?, i("rate_increment")?, i("rate_minimum")?),
        (Some(2262), Some(60), Some(60))
    );

    // The stored CouchDB doc keeps its _id-less pvt_* keys in `extra`.
    let stored = read_parquet(&out.join(format!(
        "legs/account_id={S2}/date=2013-07-29/part-0.parquet"
    )));
    let extra = stored
        .column("extra")?
        .str()?
        .get(0)
        .ok_or("extra")?
        .to_owned();
    let extra: serde_json::Value = serde_json::from_str(&extra)?;
    assert_eq!(extra["pvt_type"], "cdr");
    assert_eq!(extra["handling_server_name"], "kazoo.local");

    // The CSV twin, a dataset file for programs: no byte order mark, a header, the same rows,
    // ISO 8601 UTC timestamps, and each money column's currency twin beside its units.
    let csv = std::fs::read_to_string(part.join("part-0.csv"))?;
    assert!(!csv.starts_with('\u{feff}'), "no BOM in a dataset file");
    let mut lines = csv.lines();
    let header = lines.next().ok_or("csv header")?;
    assert!(header.starts_with("call_id,interaction_id,start_time,end_time,"));
    assert!(header.contains(",cost_units,cost,reseller_cost_units,reseller_cost,"));
    let body = &csv[header.len() + 1..];
    assert!(body.contains(",2019-05-06T23:09:58.071108Z,"), "{body}");
    let rdr = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(part.join("part-0.csv")))?
        .finish()?;
    assert_eq!(rdr.height(), 1);
    let twins = df
        .get_column_names()
        .iter()
        .filter(|c| c.ends_with("_units"))
        .count();
    assert_eq!(
        rdr.get_column_names()[0].as_str(),
        "call_id",
        "the BOM is not in the name"
    );
    assert_eq!(
        rdr.width(),
        df.width() + twins,
        "multi-line SDP cells are quoted, not split"
    );
    Ok(())
}

#[test]
fn results_do_not_depend_on_threads_or_chunking() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    run_ok(&[
        "fixtures",
        "--out",
        a.to_str().ok_or("path")?,
        "-q",
        "--threads",
        "1",
    ]);
    run_ok(&[
        "fixtures",
        "--out",
        b.to_str().ok_or("path")?,
        "-q",
        "--threads",
        "2",
        "--chunk-size",
        "64",
    ]);
    assert_same_parquet(&a.join("legs"), &b.join("legs"));
    assert_eq!(
        std::fs::read_to_string(a.join("rejects.ndjson"))?,
        std::fs::read_to_string(b.join("rejects.ndjson"))?
    );
    Ok(())
}
