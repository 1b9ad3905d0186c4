//! crossbar's column-shaped exports as KAZOO's code writes them (`cb_cdrs.erl`, `kzd_cdrs.erl`):
//! the CSV export (unquoted cells, CRLF, 4.2/4.3/5.0 column lists, repeated headers, time zone
//! and `utc_offset` variants, a spreadsheet's re-save) and `GET /cdrs` listing pages. Fixtures
//! are in `fixtures/kazoo-exports/` (named `*.kazoo` so that `rerate run fixtures` does not
//! read them); each is named directly, so its `account_id=` folder gives the account.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::util::{ndjson_file, read_dataset, rerate, run_ok, TestResult};

/// One leg's cells: text columns as text, integer and time columns as integers (microseconds
/// for times), plus `account_id` and `date` from the path.
#[derive(Debug, Default, Clone)]
pub(crate) struct Leg {
    text: BTreeMap<String, String>,
    int: BTreeMap<String, i64>,
}

impl Leg {
    pub(crate) fn s(&self, c: &str) -> Option<&str> {
        self.text.get(c).map(String::as_str)
    }
    pub(crate) fn i(&self, c: &str) -> Option<i64> {
        self.int.get(c).copied()
    }
}

pub(crate) fn read_legs(out: &Path) -> BTreeMap<String, Leg> {
    let mut all = BTreeMap::new();
    for (account, date, df) in read_dataset(&out.join("legs")) {
        for r in 0..df.height() {
            let mut leg = Leg::default();
            leg.text.insert("account_id".into(), account.clone());
            leg.text.insert("date".into(), date.clone());
            for col in df.columns() {
                let name = col.name().to_string();
                match col.dtype() {
                    DataType::String => {
                        if let Ok(Some(v)) = col.str().map(|c| c.get(r)) {
                            leg.text.insert(name, v.to_owned());
                        }
                    }
                    DataType::Int64 | DataType::Datetime(_, _) | DataType::Int32 => {
                        if let Ok(c) = col.cast(&DataType::Int64) {
                            if let Ok(Some(v)) = c.i64().map(|c| c.get(r)) {
                                leg.int.insert(name, v);
                            }
                        }
                    }
                    _ => {}
                }
            }
            let id = leg.s("call_id").unwrap_or_default().to_owned();
            all.insert(id, leg);
        }
    }
    all
}

/// Unix microseconds of a UTC time `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
fn us(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t).map_or(i64::MIN, |d| d.timestamp_micros())
}

fn fixture(rel: &str) -> PathBuf {
    crate::util::root().join("fixtures/kazoo-exports").join(rel)
}

const A: &str = "account_id=7425f05da1ba4bec6b585b03c4e76472";

/// Runs the named fixture files into a fresh folder: (guard, out, legs, rejects).
fn run(
    files: &[&str],
) -> (
    tempfile::TempDir,
    PathBuf,
    BTreeMap<String, Leg>,
    Vec<serde_json::Value>,
) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = dir.path().join("out");
    let paths: Vec<String> = files
        .iter()
        .map(|f| fixture(f).to_string_lossy().into_owned())
        .collect();
    let mut args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let o = out.to_string_lossy().into_owned();
    args.extend(["--out", &o, "--quiet"]);
    run_ok(&args);
    let legs = read_legs(&out);
    let rejects = ndjson_file(&out.join("rejects.ndjson"));
    (dir, out, legs, rejects)
}

#[test]
fn a_kazoo_50_export_reads_with_the_rfc_1036_comma_and_commas_in_names() -> TestResult {
    let (_d, _o, legs, rejects) = run(&[&format!("{A}/cdrs-5.0.csv.kazoo")]);
    // The field case's row: account from the path, the START from `timestamp`.
    let k1 = &legs["k1"];
    assert_eq!(k1.s("account_id"), Some("7425f05da1ba4bec6b585b03c4e76472"));
    assert_eq!(k1.i("start_time"), Some(us("2026-11-04T15:00:00Z")));
    assert_eq!(k1.i("end_time"), Some(us("2026-11-04T15:01:06Z")));
    assert_eq!(k1.i("billing_seconds"), Some(61));
    assert_eq!(k1.i("recorded_cost_units"), Some(200));
    assert_eq!(k1.i("rate"), Some(100), "0.01 dollars");
    assert_eq!(k1.s("call_direction"), Some("outbound"));
    assert_eq!(k1.s("account_billing"), Some("per_minute"));
    assert_eq!(k1.s("source_format"), Some("csv"));
    assert_eq!(k1.i("source_line"), Some(2));
    // Commas and bare quotes in names and rate_name stay in their cells.
    let k2 = &legs["k2"];
    assert_eq!(k2.s("caller_id_name"), Some("Smith, John"));
    assert_eq!(k2.s("callee_id_name"), Some("\"Desk\" 2, B"));
    assert_eq!(k2.s("rate_name"), Some("US, mobile"));
    assert_eq!(k2.s("callee_id_number"), Some("+15550142001"));
    assert_eq!(k2.i("billing_seconds"), Some(25));
    assert_eq!(k2.i("rate"), Some(200));
    assert_eq!(k2.i("recorded_cost_units"), Some(100));
    // utc_offset=3600 moved only `datetime` (cb_cdrs); the start is unix_timestamp_micro.
    assert_eq!(k2.i("start_time"), Some(us("2026-11-04T15:01:40.25Z")));
    assert_eq!(
        k2.i("channel_created_time"),
        Some(us("2026-11-04T15:01:40.25Z"))
    );
    assert_eq!(k2.i("source_line"), Some(3));
    let extra: serde_json::Value = serde_json::from_str(k2.s("extra").unwrap_or("{}"))?;
    assert_eq!(extra["rfc_1036"], "Wed, 04 Nov 2026 15:01:40 GMT");
    assert_eq!(extra["datetime"], "2026-11-04_16:01:40");
    // An ambiguous row and a bad cell are rejected with their line and why.
    let why: Vec<(u64, &str, &str)> = rejects
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap_or(0),
                r["code"].as_str().unwrap_or(""),
                r["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(why.len(), 2, "{why:?}");
    assert_eq!((why[0].0, why[0].1), (4, "unaligned_csv_row"));
    assert!(
        why[0].2.contains("ambiguous") && why[0].2.contains("caller_id_name"),
        "{why:?}"
    );
    assert_eq!(why[1].0, 5);
    assert!(why[1].2.contains("'billing_seconds': \"6x\""), "{why:?}");
    assert_eq!(legs.len(), 2);
    Ok(())
}

#[test]
fn time_zone_shifted_columns_are_taken_back_to_utc() {
    // kzd_cdrs' column functions given a time zone shift timestamp, unix_timestamp,
    // unix_timestamp_micro, rfc_1036 and the ISO columns; iso_8601_combined says by how much.
    let (_d, _o, legs, rejects) = run(&[&format!("{A}/cdrs-timezone.csv.kazoo")]);
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(legs["t1"].i("start_time"), Some(us("2026-11-04T15:00:00Z")));
    assert_eq!(legs["t1"].i("timestamp"), Some(us("2026-11-04T15:01:06Z")));
    assert_eq!(
        legs["t2"].i("start_time"),
        Some(us("2026-11-04T15:01:40.25Z"))
    );
    assert_eq!(legs["t2"].s("caller_id_name"), Some("Smith, John"));
}

#[test]
fn a_kazoo_43_export_with_the_reseller_columns() {
    let (_d, _o, legs, rejects) = run(&[&format!("{A}/cdrs-4.3-reseller.csv.kazoo")]);
    assert!(rejects.is_empty(), "{rejects:?}");
    let r1 = &legs["r1"];
    // 4.3's datetime is `YYYY-MM-DD HH:MM:SS`, shifted by utc_offset; the start is `timestamp`.
    assert_eq!(r1.i("start_time"), Some(us("2026-11-04T16:00:00Z")));
    assert_eq!(r1.s("disposition"), Some("SEND_BYE"));
    assert_eq!(r1.s("caller_id_name"), Some("Lee, Ann"));
    assert_eq!(r1.s("rate_name"), Some("UK, London"));
    assert_eq!(r1.i("rate"), Some(600));
    assert_eq!(r1.i("recorded_cost_units"), Some(1200));
    assert_eq!(r1.i("recorded_reseller_cost_units"), Some(1000));
    assert_eq!(r1.s("reseller_billing"), Some("per_minute"));
    assert_eq!(r1.s("owner_id"), Some("0123456789abcdef0123456789abcdef"));
}

#[test]
fn a_kazoo_42_chunked_export_repeats_its_header_and_writes_the_end() {
    // 4.2.5-4.2.23: the header before every row of the first chunk; rfc_1036 and iso_8601 in
    // KAZOO's own quotes; every time column the CDR's own timestamp, the END (4.2.0-4.2.40).
    let (_d, _o, legs, rejects) = run(&[&format!("{A}/cdrs-4.2-chunked.csv.kazoo")]);
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(legs.len(), 2);
    let o1 = &legs["o1"];
    assert_eq!(o1.i("start_time"), Some(us("2026-11-04T17:00:00Z")));
    assert_eq!(o1.i("end_time"), Some(us("2026-11-04T17:01:40Z")));
    assert_eq!(o1.s("caller_id_name"), Some("Hall, East"));
    assert_eq!(o1.i("source_line"), Some(2));
    let o2 = &legs["o2"];
    assert_eq!(o2.i("start_time"), Some(us("2026-11-04T17:10:00Z")));
    assert_eq!(o2.s("caller_id_name"), Some("\"Ops\" desk"));
    assert_eq!(o2.i("source_line"), Some(4));
    let extra: serde_json::Value =
        serde_json::from_str(o2.s("extra").unwrap_or("{}")).unwrap_or_default();
    assert_eq!(
        extra["iso_8601"], "2026-11-04",
        "KAZOO's quotes are not part of the value"
    );
}

#[test]
fn a_spreadsheets_resave_reads_the_same_legs() {
    let (_d, _o, legs, rejects) = run(&[&format!("{A}/cdrs-resaved.csv.kazoo")]);
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(legs["s1"].i("start_time"), Some(us("2026-11-04T15:00:00Z")));
    assert_eq!(legs["s1"].i("recorded_cost_units"), Some(200));
    let s2 = &legs["s2"];
    assert_eq!(s2.s("caller_id_name"), Some("Smith, John"));
    assert_eq!(
        s2.s("callee_id_name"),
        Some("\"Desk\" 2,\nB"),
        "a quoted cell over two lines"
    );
    assert_eq!(s2.s("rate_name"), Some("US, mobile"));
    assert_eq!(s2.i("start_time"), Some(us("2026-11-04T15:01:40.25Z")));
    assert_eq!(s2.i("source_line"), Some(3));
}

#[test]
fn crlf_line_numbers_are_physical_lines() {
    let (_d, _o, legs, rejects) =
        run(&["account_id=5cbaf0229766ee6374a947f403273114/crlf.csv.kazoo"]);
    assert_eq!(legs["m4"].i("source_line"), Some(2));
    assert_eq!(legs["m5"].i("source_line"), Some(3));
    assert_eq!(legs["m7"].i("source_line"), Some(5));
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0]["line"], 4);
    assert_eq!(rejects[0]["location"], "line 4");
}

#[test]
fn listing_page_rows_are_mapped_by_the_csv_columns() -> TestResult {
    let (_d, _o, legs, rejects) =
        run(&["account_id=64f5778cd95718f3f287161255294c1c/page.json.kazoo"]);
    // The field case: `timestamp` is the START, rate dollars, cost units, call_type, direction.
    let m2 = &legs["m2"];
    assert_eq!(m2.s("account_id"), Some("64f5778cd95718f3f287161255294c1c"));
    assert_eq!(m2.s("date"), Some("2026-11-05"));
    assert_eq!(m2.i("start_time"), Some(us("2026-11-05T00:00:30Z")));
    assert_eq!(m2.s("call_direction"), Some("outbound"));
    assert_eq!(m2.s("account_billing"), Some("per_minute"));
    assert_eq!(m2.i("rate"), Some(100));
    assert_eq!(m2.i("recorded_cost_units"), Some(200));
    assert_eq!(m2.s("source_format"), Some("listing"));
    // Numbers where crossbar writes strings and strings where it writes numbers read the same.
    let m3 = &legs["m3"];
    assert_eq!(m3.i("start_time"), Some(us("2026-11-05T00:01:30Z")));
    assert_eq!(m3.i("billing_seconds"), Some(25));
    assert_eq!(m3.i("rate"), Some(225));
    assert_eq!(m3.i("recorded_cost_units"), Some(0));
    assert_eq!(m3.i("recorded_reseller_cost_units"), Some(50));
    assert_eq!(m3.s("reseller_billing"), Some("per_minute"));
    assert_eq!(m3.s("caller_id_name"), Some("Smith, \"JJ\""));
    let extra: serde_json::Value = serde_json::from_str(m3.s("extra").unwrap_or("{}"))?;
    assert_eq!(extra["media_recordings"], serde_json::json!(["rec-1.mp3"]));
    // An envelope that names its account gives it to its rows.
    assert_eq!(
        legs["m8"].s("account_id"),
        Some("aaaabbbbccccddddeeeeffff00001111")
    );
    // A bad row is a reject naming its key.
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert!(
        rejects[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("key 'duration_seconds'")),
        "{rejects:?}"
    );
    Ok(())
}

/// Physical line of each data row's call_id in a generated export (the second cell).
fn lines_of(path: &Path) -> BTreeMap<String, i64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut m = BTreeMap::new();
    for (i, line) in text.split("\r\n").enumerate() {
        if let Some(id) = line.split(',').nth(1) {
            if id != "call_id" && !id.is_empty() {
                m.insert(id.to_owned(), i as i64 + 1);
            }
        }
    }
    m
}

#[test]
fn generated_kazoo_exports_read_every_row_at_its_physical_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (csv, listing) = (dir.path().join("csv"), dir.path().join("listing"));
    for (shape, d) in [("kazoo-csv", &csv), ("listing", &listing)] {
        let o = rerate(&[
            "gen",
            "--legs",
            "1500",
            "--accounts",
            "4",
            "--files",
            "2",
            "--shape",
            shape,
            "--header-every",
            "37",
            "--out",
            d.to_str().ok_or("path")?,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut outs = Vec::new();
    for d in [&csv, &listing] {
        let out = dir
            .path()
            .join(format!("{}-out", d.display()).replace('/', "_"));
        run_ok(&[
            d.to_str().ok_or("path")?,
            "--out",
            out.to_str().ok_or("path")?,
            "--quiet",
        ]);
        let m = crate::util::json_file(&out.join("manifest.json"));
        assert_eq!(m["counts"]["records_read"], 1500);
        assert_eq!(m["counts"]["legs_written"], 1500);
        assert_eq!(m["counts"]["rejected"], 0);
        outs.push(read_legs(&out));
    }
    // Each CSV leg's source_line is its physical line (headers repeated every 37 rows).
    let mut want = BTreeMap::new();
    for f in walk(&csv) {
        want.extend(lines_of(&f));
    }
    assert_eq!(want.len(), 1500);
    for (id, leg) in &outs[0] {
        assert_eq!(leg.i("source_line"), want.get(id).copied(), "{id}");
    }
    // The listing pages carry the same legs, read the same.
    for (id, a) in &outs[0] {
        let b = &outs[1][id];
        for c in [
            "start_time",
            "end_time",
            "billing_seconds",
            "rate",
            "recorded_cost_units",
        ] {
            assert_eq!(a.i(c), b.i(c), "{id} {c}");
        }
        for c in [
            "account_id",
            "date",
            "caller_id_name",
            "callee_id_name",
            "call_direction",
        ] {
            assert_eq!(a.s(c), b.s(c), "{id} {c}");
        }
    }
    Ok(())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}
