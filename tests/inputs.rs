//! Input shapes and input failures, on files made per test.

use std::io::Write;
use std::path::Path;

use crate::util::*;

fn cdr(call_id: &str, secs: i64, rate: &str) -> String {
    format!(
        r#"{{"call_id":"{call_id}","billing_seconds":{secs},"timestamp":63940000000,"custom_channel_vars":{{"account_id":"acc1","account_billing":"per_minute","rate":"{rate}"}}}}"#
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn run_in(dir: &Path, inputs: &[&str]) -> std::process::Output {
    let out = dir.join("out");
    let mut args = vec!["run"];
    args.extend_from_slice(inputs);
    args.extend(["--out", out.to_str().expect("utf-8 path"), "-q"]);
    rerate(&args)
}

#[test]
fn every_shape_kazoo_exports_come_in_is_read() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    // zstd content under a name that says plain JSON: magic bytes decide.
    let nd = format!("{}\n{}\n", cdr("z1", 60, "600"), cdr("z2", 61, "600"));
    std::fs::write(d.join("zstd.json"), zstd::encode_all(nd.as_bytes(), 3)?)?;
    // BOM, CRLF line ends, a blank line.
    std::fs::write(
        d.join("crlf.ndjson"),
        format!(
            "\u{feff}{}\r\n\r\n{}\r\n",
            cdr("c1", 1, "60"),
            cdr("c2", 0, "60")
        ),
    )?;
    // An array of crossbar pages (envelopes), one line.
    std::fs::write(
        d.join("pages.json"),
        format!(
            r#"[{{"data":[{}],"page_size":1}},{{"data":[{}]}}]"#,
            cdr("p1", 30, "120"),
            cdr("p2", 90, "120")
        ),
    )?;
    // A pretty stream whose second value has a string broken across lines: only it is lost.
    std::fs::write(
        d.join("stream.json"),
        format!("{{\n  \"call_id\": \"s1\", \"billing_seconds\": 120,\n  \"custom_channel_vars\": {{\"account_id\": \"acc1\", \"account_billing\": \"per_minute\", \"rate\": \"60\"}}\n}}\n{{\n  \"call_id\": \"broken\n}}\n{}\n", cdr("s2", 59, "60")),
    )?;
    let out = run_in(d, &[d.to_str().ok_or("path")?]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = legs(&d.join("out"));
    let cost = |id: &str| got.get(id).and_then(|r| Some((r.billed?, r.cost?)));
    assert_eq!(cost("z1"), Some((60, 600)));
    assert_eq!(cost("z2"), Some((120, 1200)));
    assert_eq!(cost("c1"), Some((60, 60)));
    assert_eq!(cost("c2"), Some((0, 0)));
    assert_eq!(cost("p1"), Some((60, 120)));
    assert_eq!(cost("p2"), Some((120, 240)));
    assert_eq!(cost("s1"), Some((120, 120)));
    assert_eq!(cost("s2"), Some((60, 60)));
    assert_eq!(got.len(), 8);
    let rejects = ndjson_file(&d.join("out/rejects.ndjson"));
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0]["line"], 5);
    assert_eq!(rejects[0]["code"], "invalid_json");
    let m = json_file(&d.join("out/manifest.json"));
    assert_eq!(m["counts"]["records_read"], 9);
    assert_eq!(m["counts"]["balanced"], true);
    let pages = m["inputs"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with("zstd.json")))
        })
        .ok_or("zstd input")?;
    assert_eq!(pages["compression"], "zstd");
    Ok(())
}

#[test]
fn a_truncated_gzip_keeps_what_came_before_and_says_so() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let lines: String = (0..200)
        .map(|i| cdr(&format!("t{i}"), 60, "600") + "\n")
        .collect();
    let gz = gzip(lines.as_bytes());
    let f = d.join("cut.ndjson.gz");
    std::fs::write(&f, &gz[..gz.len() * 2 / 3])?;
    let out = run_in(d, &[f.to_str().ok_or("path")?]);
    // Committed, but partial: its own exit status, the file named on stderr and in the manifest.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cut.ndjson.gz") && stderr.contains("read only in part"));
    let m = json_file(&d.join("out/manifest.json"));
    assert_eq!(m["partial_inputs"][0]["code"], "unreadable_input");
    let written = m["counts"]["legs_written"].as_u64().ok_or("written")?;
    assert!(
        written > 50 && written < 200,
        "{written} legs before the cut"
    );
    assert_eq!(m["counts"]["rejected_by_reason"]["unreadable_input"], 1);
    assert_eq!(m["counts"]["balanced"], true);
    Ok(())
}

#[test]
fn a_csv_that_is_not_a_cdr_export_is_a_clear_error_and_nothing_is_written() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let f = d.join("deck.csv");
    std::fs::write(&f, "prefix,rate_cost\n1,0.01\n")?;
    let out = run_in(d, &[f.to_str().ok_or("path")?]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("deck.csv") && err.contains("call_id") && err.contains("--rates"),
        "{err}"
    );
    assert!(!d.join("out").exists());
    Ok(())
}

#[test]
fn a_missing_input_aborts_before_anything_is_written() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let good = d.join("good.json");
    std::fs::write(&good, cdr("g", 1, "1"))?;
    let out = run_in(d, &[good.to_str().ok_or("path")?, "no/such/file.json"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("input not found: no/such/file.json"), "{err}");
    assert!(!d.join("out").exists());
    let out = run_in(d, &["nothing-*.json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("matches no file"));
    Ok(())
}

#[test]
fn a_folder_that_is_not_a_rerate_output_is_not_overwritten() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    std::fs::create_dir(d.join("out"))?;
    std::fs::write(d.join("out/precious.txt"), "keep me")?;
    let good = d.join("good.json");
    std::fs::write(&good, cdr("g", 1, "1"))?;
    let out = run_in(d, &[good.to_str().ok_or("path")?]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing"));
    assert_eq!(
        std::fs::read_to_string(d.join("out/precious.txt"))?,
        "keep me"
    );
    // A previous rerate output is replaced, not added to.
    std::fs::remove_file(d.join("out/precious.txt"))?;
    for _ in 0..2 {
        let out = run_in(d, &[good.to_str().ok_or("path")?]);
        assert!(out.status.success());
    }
    assert_eq!(legs(&d.join("out")).len(), 1);
    Ok(())
}

#[test]
fn help_explains_every_flag() {
    let out = rerate(&["run", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--out",
        "--format",
        "--tz",
        "--rounding",
        "--threads",
        "--chunk-size",
        "--quiet",
        "--rates",
        "--ratedeck-map",
        "--rate-sort",
        "--queries",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn a_big_array_split_across_tasks_reads_the_same_as_one_task() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let mut elems: Vec<String> = (0..60)
        .map(|i| {
            let v: serde_json::Value = serde_json::from_str(&cdr(&format!("a{i}"), i, "600"))?;
            serde_json::to_string_pretty(&v)
        })
        .collect::<Result<_, _>>()?;
    elems[33] = "\"not a cdr\"".to_owned();
    let text = format!("[\n{}\n]\n", elems.join(",\n"));
    let f = d.join("big.json");
    std::fs::write(&f, &text)?;
    let reject_line = 2 + text[..text.find("\"not a cdr\"").ok_or("marker")?]
        .matches('\n')
        .count() as u64
        - 1;
    let mut seen = Vec::new();
    for chunk in ["300", "8M"] {
        let out = d.join(format!("out-{chunk}"));
        let o = rerate(&[
            "run",
            f.to_str().ok_or("path")?,
            "--out",
            out.to_str().ok_or("path")?,
            "-q",
            "--chunk-size",
            chunk,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got = legs(&out);
        assert_eq!(got.len(), 59);
        assert_eq!(got["a59"].cost, Some(600));
        let rejects = ndjson_file(&out.join("rejects.ndjson"));
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0]["record"], 33);
        assert_eq!(rejects[0]["line"], reject_line);
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1]);
    Ok(())
}

#[test]
fn invalid_utf8_costs_only_its_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let mut bytes = format!("{}\n", cdr("u1", 60, "600")).into_bytes();
    bytes.extend_from_slice(b"{\"call_id\":\"bad\xff\xfe\",\"billing_seconds\":1}\n");
    bytes.extend(format!("{}\n", cdr("u2", 60, "600")).into_bytes());
    let f = d.join("latin1.ndjson");
    std::fs::write(&f, bytes)?;
    let out = run_in(d, &[f.to_str().ok_or("path")?]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(legs(&d.join("out")).len(), 2);
    let rejects = ndjson_file(&d.join("out/rejects.ndjson"));
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0]["code"], "invalid_utf8");
    assert_eq!(rejects[0]["line"], 2);
    assert!(rejects[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("byte 15")));
    Ok(())
}

#[test]
fn csv_cells_a_spreadsheet_would_run_are_neutralized_unless_raw() -> TestResult {
    use polars::prelude::SerReader;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let f = d.join("evil.json");
    std::fs::write(
        &f,
        r#"{"call_id":"evil","caller_id_name":"=HYPERLINK(\"http://x\",\"y\")","caller_id_number":"+15551234567","callee_id_name":"@SUM(A1)","hangup_cause":"-1+2","billing_seconds":61,"timestamp":63940000000,"custom_channel_vars":{"account_id":"acc1","account_billing":"per_minute","rate":"600"}}"#,
    )?;
    let read_csv =
        |out: &std::path::Path| -> Result<polars::prelude::DataFrame, Box<dyn std::error::Error>> {
            let csv = walk_csv(&out.join("legs"))?;
            Ok(polars::prelude::CsvReadOptions::default()
                .with_has_header(true)
                .try_into_reader_with_file_path(Some(csv))?
                .finish()?)
        };
    let cell = |df: &polars::prelude::DataFrame, c: &str| -> Option<String> {
        df.column(c)
            .ok()?
            .get(0)
            .ok()
            .map(|v| v.get_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    for (flag, prefix) in [(None, "'"), (Some("--csv-raw"), "")] {
        let out = d.join(format!("out{prefix}"));
        let mut args = vec![
            "run",
            f.to_str().ok_or("path")?,
            "--out",
            out.to_str().ok_or("path")?,
            "-q",
            "--format",
            "both",
        ];
        args.extend(flag);
        let o = rerate(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let df = read_csv(&out)?;
        assert_eq!(
            cell(&df, "caller_id_name"),
            Some(format!("{prefix}=HYPERLINK(\"http://x\",\"y\")"))
        );
        assert_eq!(
            cell(&df, "caller_id_number"),
            Some(format!("{prefix}+15551234567"))
        );
        assert_eq!(
            cell(&df, "callee_id_name"),
            Some(format!("{prefix}@SUM(A1)"))
        );
        assert_eq!(cell(&df, "hangup_cause"), Some(format!("{prefix}-1+2")));
        assert_eq!(
            cell(&df, "cost_units"),
            Some("1200".to_owned()),
            "numbers are untouched"
        );
        // Parquet keeps the data as it came.
        let pq = read_parquet(&parquet_files(&out.join("legs"))[0]);
        assert_eq!(
            pq.column("caller_id_number")?.str()?.get(0),
            Some("+15551234567")
        );
    }
    Ok(())
}

fn walk_csv(dir: &std::path::Path) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            if let Ok(found) = walk_csv(&p) {
                return Ok(found);
            }
        } else if p.extension().is_some_and(|x| x == "csv") {
            return Ok(p);
        }
    }
    Err("no csv".into())
}
