//! Interactions, the daily report, hangup causes, top destinations, user queries, `rerate
//! query` and `summary.html`, on the fixtures, against values worked out by hand.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::util::*;

const A: &str = "3f1c5a9e2b7d4c6f8a0e1d2c3b4a5f60";
const B: &str = "b2e4d6f8a0c2e4f6a8b0c2d4e6f8a0b2";

fn row(df: &DataFrame, i: usize) -> BTreeMap<String, AnyValue<'static>> {
    df.columns()
        .iter()
        .map(|c| {
            (
                c.name().to_string(),
                c.get(i).map(|v| v.into_static()).unwrap_or(AnyValue::Null),
            )
        })
        .collect()
}

/// An integer cell; a null sum (a day of legs without money) counts as 0.
fn int(v: &AnyValue) -> i64 {
    match v {
        AnyValue::Null => 0,
        v => v.extract::<i64>().unwrap_or(i64::MIN),
    }
}

fn strs(v: &AnyValue) -> Vec<String> {
    match v {
        AnyValue::List(s) => s
            .str()
            .map(|c| c.iter().map(|x| x.unwrap_or("").to_owned()).collect())
            .unwrap_or_default(),
        _ => vec![],
    }
}

/// The rows of a partitioned table, keyed by the given column.
fn rows_by(
    out: &std::path::Path,
    table: &str,
    key: &str,
) -> BTreeMap<String, (String, String, BTreeMap<String, AnyValue<'static>>)> {
    let mut m = BTreeMap::new();
    for (a, d, df) in read_dataset(&out.join(table)) {
        for i in 0..df.height() {
            let r = row(&df, i);
            let k = r[key].get_str().unwrap_or_default().to_owned();
            m.insert(k, (a.clone(), d.clone(), r));
        }
    }
    m
}

#[test]
fn interactions_take_the_earliest_leg_and_sum_the_rest() -> TestResult {
    let (_dir, out) = run_fixtures(&[])?;
    let calls = rows_by(&out, "interactions", "interaction_id");
    // 40 legs: 35 calls of one leg, one of three, one of two.
    assert_eq!(calls.len(), 37);

    let (acct, date, r) = &calls["63960019200-1a2b3c4d"];
    // The earliest leg (ix-a-leg, account A) decides, though the file lists it last.
    assert_eq!((acct.as_str(), date.as_str()), (A, "2026-11-02"));
    assert_eq!(
        strs(&r["leg_call_ids"]),
        ["ix-a-leg", "ix-b-leg", "ix-c-leg"]
    );
    assert_eq!(r["call_direction"].get_str(), Some("inbound"));
    assert_eq!(r["callee_id_number"].get_str(), Some("+18005550199"));
    assert_eq!(r["hangup_cause"].get_str(), Some("NORMAL_CLEARING"));
    assert_eq!(int(&r["legs"]), 3);
    // 15:00:00 to the latest end, ix-a-leg's 15:02:05.
    assert_eq!(int(&r["duration_seconds"]), 125);
    assert_eq!(r["answered"], AnyValue::Boolean(true));
    assert_eq!(int(&r["talk_seconds"]), 120);
    assert_eq!(int(&r["billed_seconds"]), 120 + 120 + 60);
    assert_eq!(int(&r["rated_cost_units"]), 1200 + 1000);
    assert_eq!(int(&r["cost_units"]), 1200 + 1000);
    assert_eq!(int(&r["reseller_cost_units"]), 0);
    assert_eq!(strs(&r["accounts"]), [A, B]);

    // No interaction_id: the legs meet on their bridge_id.
    let (acct, _, r) = &calls["bridge-77"];
    assert_eq!(acct, B);
    assert_eq!(strs(&r["leg_call_ids"]), ["br-1", "br-2"]);
    assert_eq!(r["call_direction"].get_str(), Some("inbound"));
    assert_eq!(r["answered"], AnyValue::Boolean(false));
    assert_eq!(
        (
            int(&r["talk_seconds"]),
            int(&r["cost_units"]),
            int(&r["duration_seconds"])
        ),
        (0, 0, 15)
    );

    // A single leg is an interaction of its own; with no account it is _unassigned's.
    let (acct, _, r) = calls
        .values()
        .find(|(_, _, r)| strs(&r["leg_call_ids"]) == ["arr-no-account"])
        .ok_or("arr-no-account's interaction")?;
    assert_eq!(acct, "_unassigned");
    assert!(strs(&r["accounts"]).is_empty());
    Ok(())
}

#[test]
fn daily_report_matches_hand_computed_values() -> TestResult {
    let (_dir, out) = run_fixtures(&[])?;
    let mut daily = BTreeMap::new();
    for (a, d, df) in read_dataset(&out.join("daily")) {
        assert_eq!(df.height(), 1, "one row per account and day");
        daily.insert((a, d), row(&df, 0));
    }
    let a = &daily[&(A.to_owned(), "2026-11-02".to_owned())];
    // page1-leg1, page1-leg2, page2-leg1, gz-leg1, ix-a-leg, ix-b-leg; ix-c-leg is B's.
    let want_a = [
        ("legs", 6),
        ("interactions", 5),
        ("answered_legs", 6),
        ("billing_seconds", 7 + 61 + 300 + 125 + 120 + 118),
        ("billed_seconds", 60 + 66 + 300 + 180 + 120 + 120),
        ("rated_cost_units", 2262 + 2488 + 109 + 950 + 1200),
        ("cost_units", 2262 + 2488 + 109 + 950 + 1200),
        ("reseller_cost_units", 109),
        ("inbound_legs", 1),
        ("outbound_legs", 5),
        ("unrated_per_minute_legs", 0),
    ];
    for (k, v) in want_a {
        assert_eq!(int(&a[k]), v, "A {k}");
    }
    assert_eq!(a["cost"].to_string(), "0.7009");
    assert_eq!(a["asr"], AnyValue::Float64(1.0));
    assert_eq!(a["minutes_of_use"], AnyValue::Float64(731.0 * (1.0 / 60.0)));

    let b = &daily[&(B.to_owned(), "2026-11-02".to_owned())];
    let want_b = [
        ("legs", 12),
        ("interactions", 10),
        ("answered_legs", 10),
        ("billing_seconds", 526 + 30),
        ("billed_seconds", 660 + 60),
        ("rated_cost_units", 6077 + 1000),
        ("cost_units", 5077 + 1000),
        ("reseller_cost_units", 1000),
        ("inbound_legs", 2),
        ("outbound_legs", 10),
        ("unrated_per_minute_legs", 1),
    ];
    for (k, v) in want_b {
        assert_eq!(int(&b[k]), v, "B {k}");
    }
    assert_eq!(b["asr"], AnyValue::Float64(10.0 / 12.0));
    assert_eq!(b["acd_seconds"], AnyValue::Float64(556.0 / 10.0));
    assert_eq!(b["cost"].to_string(), "0.6077");
    Ok(())
}

#[test]
fn daily_totals_equal_the_sums_over_their_legs() -> TestResult {
    let (_dir, out) = run_fixtures(&["--tz", "America/New_York"])?;
    let mut sums: BTreeMap<(String, String), [i64; 5]> = BTreeMap::new();
    for (a, d, df) in read_dataset(&out.join("legs")) {
        let s = sums.entry((a, d)).or_default();
        s[0] += df.height() as i64;
        for (i, c) in [
            "billed_seconds",
            "rated_cost_units",
            "cost_units",
            "reseller_cost_units",
        ]
        .iter()
        .enumerate()
        {
            s[i + 1] += df.column(c)?.i64()?.iter().flatten().sum::<i64>();
        }
    }
    let mut seen = 0;
    for (a, d, df) in read_dataset(&out.join("daily")) {
        let r = row(&df, 0);
        let got = [
            int(&r["legs"]),
            int(&r["billed_seconds"]),
            int(&r["rated_cost_units"]),
            int(&r["cost_units"]),
            int(&r["reseller_cost_units"]),
        ];
        assert_eq!(Some(&got), sums.get(&(a.clone(), d.clone())), "{a} {d}");
        seen += 1;
    }
    assert_eq!(seen, sums.len(), "every legs partition has its daily row");
    Ok(())
}

#[test]
fn breakdowns_add_up() -> TestResult {
    let (_dir, out) = run_fixtures(&[])?;
    for (a, d, df) in read_dataset(&out.join("hangup_causes")) {
        let share: f64 = df.column("share")?.f64()?.iter().flatten().sum();
        assert!(
            (share - 1.0).abs() < 1e-12,
            "{a} {d}: shares sum to {share}"
        );
    }
    let causes = read_dataset(&out.join("hangup_causes"));
    let (_, _, b) = causes
        .iter()
        .find(|(a, d, _)| a == B && d == "2026-11-02")
        .ok_or("B causes")?;
    let c: BTreeMap<String, i64> = (0..b.height())
        .map(|i| {
            let r = row(b, i);
            (
                r["hangup_cause"].get_str().unwrap_or("").to_owned(),
                int(&r["legs"]),
            )
        })
        .collect();
    assert_eq!(c["NORMAL_CLEARING"], 9);
    assert_eq!(c["ORIGINATOR_CANCEL"], 2);
    assert_eq!(c["NO_ANSWER"], 1);

    let tops = read_dataset(&out.join("top_destinations"));
    let (_, _, a) = tops
        .iter()
        .find(|(a, d, _)| a == A && d == "2026-11-02")
        .ok_or("A top")?;
    let first = row(a, 0);
    // UK-LONDON: page1-leg1 + page1-leg2 = 4750 units; then US-TOLLFREE 1200, and so on.
    assert_eq!(first["destination"].get_str(), Some("UK-LONDON"));
    assert_eq!(
        (
            int(&first["rank"]),
            int(&first["legs"]),
            int(&first["cost_units"])
        ),
        (1, 2, 4750)
    );
    assert_eq!(first["cost"].to_string(), "0.4750");
    let costs: Vec<i64> = a.column("cost_units")?.i64()?.iter().flatten().collect();
    assert!(costs.windows(2).all(|w| w[0] >= w[1]), "{costs:?}");
    Ok(())
}

#[test]
fn rerate_query_agrees_with_the_daily_report() -> TestResult {
    let (dir, out) = run_fixtures(&[])?;
    let csv = dir.path().join("q.csv");
    let o = rerate(&[
        "query",
        "SELECT account_id, COUNT(*) AS legs, SUM(cost_units) AS cost_units, SUM(billed_seconds) AS billed FROM legs GROUP BY account_id ORDER BY account_id",
        "--data",
        out.to_str().ok_or("path")?,
        "--output",
        csv.to_str().ok_or("path")?,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let q = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(csv))?
        .finish()?;
    let mut daily: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    for (a, _, df) in read_dataset(&out.join("daily")) {
        let r = row(&df, 0);
        let e = daily.entry(a).or_default();
        e[0] += int(&r["legs"]);
        e[1] += int(&r["cost_units"]);
        e[2] += int(&r["billed_seconds"]);
    }
    assert_eq!(q.height(), daily.len());
    for i in 0..q.height() {
        let r = row(&q, i);
        let a = r["account_id"].get_str().unwrap_or_default().to_owned();
        assert_eq!(
            [int(&r["legs"]), int(&r["cost_units"]), int(&r["billed"])],
            daily[&a],
            "{a}"
        );
    }

    // The terminal table, and a query joining two tables.
    let o = rerate(&[
        "query",
        "SELECT COUNT(i.interaction_id) AS n FROM interactions i JOIN daily d ON i.account_id = d.account_id AND i.date = d.date",
        "--data",
        out.to_str().ok_or("path")?,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("37"));
    let bad = rerate(&[
        "query",
        "SELECT nope FROM legs",
        "--data",
        out.to_str().ok_or("path")?,
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("tables: "));
    Ok(())
}

#[test]
fn user_queries_are_written_as_reports() -> TestResult {
    let dir = tempfile::tempdir()?;
    let q = dir.path().join("queries");
    std::fs::create_dir(&q)?;
    std::fs::write(
        q.join("per_direction.sql"),
        "-- Legs per direction.\nSELECT call_direction, COUNT(*) AS legs, SUM(cost_units) AS cost_units FROM legs GROUP BY call_direction ORDER BY call_direction",
    )?;
    std::fs::write(
        q.join("answered_by_day.sql"),
        "SELECT account_id, date, SUM(CASE WHEN answered THEN 1 ELSE 0 END) AS answered FROM interactions GROUP BY account_id, date",
    )?;
    let (_d, out) = run_fixtures(&["--queries", q.to_str().ok_or("path")?, "--format", "both"])?;
    let df = read_parquet(&out.join("per_direction.parquet"));
    assert_eq!(df.height(), 2);
    assert!(df.column("cost")?.dtype().is_decimal());
    assert!(out.join("per_direction.csv").is_file());
    let parts = read_dataset(&out.join("answered_by_day"));
    assert_eq!(parts.len(), 9);
    let m = json_file(&out.join("manifest.json"));
    let outputs: Vec<&str> = m["outputs"]
        .as_array()
        .ok_or("outputs")?
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(outputs.contains(&"per_direction.parquet") && outputs.contains(&"answered_by_day"));

    // A rerun without the queries removes what they wrote.
    run_ok(&["fixtures", "--out", out.to_str().ok_or("path")?, "-q"]);
    assert!(!out.join("per_direction.parquet").exists() && !out.join("answered_by_day").exists());

    std::fs::write(q.join("legs.sql"), "SELECT 1 AS x")?;
    let o = rerate(&[
        "run",
        "fixtures",
        "--out",
        out.to_str().ok_or("path")?,
        "--queries",
        q.to_str().ok_or("path")?,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("legs.sql"));
    Ok(())
}

#[test]
fn reports_are_listed_and_summary_html_is_self_contained() -> TestResult {
    let o = rerate(&["reports"]);
    let list = String::from_utf8_lossy(&o.stdout);
    for name in ["daily", "hangup_causes", "top_destinations"] {
        assert!(
            list.lines()
                .any(|l| l.starts_with(name) && l.len() > name.len() + 20),
            "{list}"
        );
    }
    let (_dir, out) = run_fixtures(&[])?;
    let html = std::fs::read_to_string(out.join("summary.html"))?;
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains(&format!("<td class=\"l\">{A}</td>")) && html.contains("1.1002"));
    assert!(html.contains("2.3567"), "the customer total");
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "the top accounts' chart and the daily chart"
    );
    for forbidden in ["http://", "https://", "<script", "src="] {
        assert!(
            !html.contains(forbidden),
            "fetches nothing: found {forbidden}"
        );
    }
    Ok(())
}

/// `rerate query` never reads a dataset between two states: while a run carries out its commit
/// (its journal `.rerate-staging/COMMIT` is there) the query waits, then reads the committed
/// dataset; a run's staging files are never read.
#[test]
fn rerate_query_waits_out_a_commit_being_carried_out() -> TestResult {
    let (_dir, out) = run_fixtures(&[])?;
    let staging = out.join(".rerate-staging");
    std::fs::create_dir_all(staging.join("data/legs"))?;
    // A staged copy of a legs file (a run at work) and the journal of a commit under way.
    let first = parquet_files(&out.join("legs"))
        .first()
        .cloned()
        .ok_or("no legs file")?;
    std::fs::copy(&first, staging.join("data/legs/extra.parquet"))?;
    std::fs::write(staging.join("COMMIT"), r#"{"moves":[],"deletes":[]}"#)?;
    let t = std::time::Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_rerate"))
        .args(["query", "SELECT COUNT(*) AS n FROM legs", "--data"])
        .arg(&out)
        .args(["--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::fs::remove_dir_all(&staging)?;
    let o = child.wait_with_output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(t.elapsed() >= std::time::Duration::from_millis(1400));
    let v: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim())?;
    let n = v
        .get(0)
        .and_then(|r| r["n"].as_u64())
        .or_else(|| v["n"].as_u64());
    assert_eq!(n, Some(legs(&out).len() as u64), "{v}");
    Ok(())
}
