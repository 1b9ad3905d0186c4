//! Issue 20, "the first hour": what a newcomer and finance meet first. Input discovery that
//! cannot eat its own output, tables that exist when empty, unpriced legs counted, `query`
//! formats and pipes, and words (`--help`, README) that match the code.

use std::path::Path;

use crate::util::*;

fn cdr(call_id: &str, account: &str, secs: i64) -> String {
    format!(
        r#"{{"call_id":"{call_id}","billing_seconds":{secs},"timestamp":63940000000,"custom_channel_vars":{{"account_id":"{account}","account_billing":"per_minute","rate":"600"}}}}"#
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn issue_20_a_rerun_never_reads_its_own_output_hidden_folders_or_other_outputs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    std::fs::write(
        d.join("night.ndjson"),
        format!("{}\n{}\n", cdr("a1", "acc1", 60), cdr("a2", "acc1", 30)),
    )?;
    // What `rerate run . --out reports` used to eat: a hidden folder's JSON (.git/HEAD.json
    // became a leg), a hidden file, and another run's output folder elsewhere in the tree.
    std::fs::create_dir_all(d.join(".git"))?;
    std::fs::write(d.join(".git/HEAD.json"), cdr("git", "acc1", 60))?;
    std::fs::write(d.join(".hidden.ndjson"), cdr("hidden", "acc1", 60))?;
    let out = d.join("reports");
    let other = d.join("old-reports");
    for target in [&other, &out, &out] {
        let existed = target.exists();
        let o = rerate(&["run", s(d), "--out", s(target), "--format", "both"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(".git: hidden"), "{err}");
        assert!(err.contains(".hidden.ndjson: hidden"), "{err}");
        let m = json_file(&target.join("manifest.json"));
        // Two legs read, nothing rejected, every run: the outputs are never read back.
        assert_eq!(m["counts"]["records_read"], 2, "{m}");
        assert_eq!(m["counts"]["rejected"], 0, "{m}");
        let skipped: Vec<&str> = m["skipped_files"]
            .as_array()
            .ok_or("skipped_files")?
            .iter()
            .filter_map(|k| k["path"].as_str())
            .collect();
        if target == &out {
            if existed {
                assert!(err.contains("reports: the --out folder"), "{err}");
            }
            assert!(
                err.contains("old-reports: holds a rerate manifest.json"),
                "{err}"
            );
            assert!(
                skipped.iter().any(|p| p.ends_with("old-reports")),
                "{skipped:?}"
            );
        }
    }
    assert_eq!(legs(&out).keys().collect::<Vec<_>>(), ["a1", "a2"]);
    // A hidden file named directly is read: the user asked for it.
    let o = rerate(&[
        "run",
        s(&d.join(".hidden.ndjson")),
        "--out",
        s(&d.join("direct")),
        "-q",
    ]);
    assert!(o.status.success());
    assert!(legs(&d.join("direct")).contains_key("hidden"));
    Ok(())
}

#[test]
fn issue_20_no_cdr_input_at_all_exits_4_and_writes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let empty = d.join("exports");
    std::fs::create_dir_all(empty.join(".cache"))?;
    std::fs::write(empty.join(".cache/x.json"), cdr("x", "acc1", 1))?;
    std::fs::write(empty.join("README.md"), "notes")?;
    let out = d.join("out");
    for input in [s(&empty).to_owned(), format!("{}/*.json", s(&empty))] {
        let o = rerate(&["run", &input, "--out", s(&out)]);
        assert_eq!(o.status.code(), Some(4), "{input}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("no CDR input found"), "{err}");
        assert!(!out.exists());
    }
    // The output folder itself as the only input: nothing to read, never itself.
    std::fs::write(d.join("n.ndjson"), cdr("n1", "acc1", 60))?;
    run_ok(&[s(&d.join("n.ndjson")), "--out", s(&out), "-q"]);
    let o = rerate(&["run", s(&out), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the --out folder"));
    // A path that does not exist is a bad argument (2), not an empty night.
    let o = rerate(&["run", s(&d.join("nope")), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(2));
    Ok(())
}

#[test]
fn issue_17_query_formats_and_a_closed_pipe_never_panics() -> TestResult {
    let (_dir, out) = run_fixtures(&[])?;
    let sql = "SELECT account_id, date, call_id, start_time, cost_units FROM legs ORDER BY call_id";
    let q = |extra: &[&str]| {
        let mut args = vec!["query", sql, "--data", s(&out)];
        args.extend_from_slice(extra);
        rerate(&args)
    };
    let csv = q(&["--format", "csv"]);
    assert!(csv.status.success());
    let text = String::from_utf8(csv.stdout)?;
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("account_id,date,call_id,start_time,cost_units,cost")
    );
    let rows = lines.count();
    assert!(rows > 20, "{rows}");
    let json = q(&["--format", "json"]);
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8(json.stdout)?
            .lines()
            .next()
            .ok_or("row")?,
    )?;
    assert!(
        first["date"].as_str().is_some_and(|d| d.len() == 10),
        "{first}"
    );
    assert!(first["cost_units"].is_i64() || first["cost_units"].is_null());
    let file = out.parent().ok_or("parent")?.join("q.parquet");
    assert!(q(&["--output", s(&file)]).status.success());
    assert_eq!(read_parquet(&file).height(), rows);

    // `rerate query ... | head`: the reader is gone (closed before rerate writes, so every
    // write meets a broken pipe whatever the pipe's buffer); rerate ends quietly.
    for format in ["table", "csv", "json", "parquet"] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rerate"))
            .args([
                "query",
                "SELECT * FROM legs",
                "--data",
                s(&out),
                "--format",
                format,
                "--max-rows",
                "100000",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        drop(child.stdout.take());
        let o = child.wait_with_output()?;
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{format}: {err}");
        assert!(!err.contains("panicked"), "{format}: {err}");
    }
    Ok(())
}

/// Asserts `out/<table>` is one empty file with `column` and the partition columns last,
/// which `rerate query` reads as zero rows.
fn assert_empty_table(out: &Path, table: &str, column: &str) -> TestResult {
    let files = parquet_files(&out.join(table));
    assert_eq!(files, [out.join(table).join("part-0.parquet")], "{table}");
    let df = read_parquet(&files[0]);
    assert_eq!(df.height(), 0);
    let names = df.get_column_names();
    assert!(names.iter().any(|c| c.as_str() == column), "{names:?}");
    assert_eq!(names[names.len() - 2..], ["account_id", "date"]);
    let q = rerate(&[
        "query",
        &format!(
            "SELECT account_id, date, COUNT({column}) AS n FROM {table} GROUP BY account_id, date"
        ),
        "--data",
        s(out),
        "--format",
        "csv",
    ]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    assert_eq!(String::from_utf8(q.stdout)?, "account_id,date,n\n");
    Ok(())
}

#[test]
fn issue_20_every_table_exists_when_empty_and_stops_being_empty_cleanly() -> TestResult {
    // Without a deck, on the fixtures (every leg reconciles): both reconciliation tables empty,
    // not a partition of zeros per account-day.
    let (_fixtures, plain) = run_fixtures(&[])?;
    assert_empty_table(&plain, "reconciliation", "delta_units")?;
    assert_empty_table(&plain, "reconciliation_daily", "reported_legs")?;

    // With a deck, a clean night: one leg priced from its own rate, with no callee for the
    // deck to price, so nothing to reconcile.
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("reports");
    let deck = "fixtures/reconcile/ratedeck.csv";
    let night = dir.path().join("night.ndjson");
    std::fs::write(&night, cdr("clean-1", "acc1", 60))?;
    run_ok(&[s(&night), "--rates", deck, "--out", s(&out), "-q"]);
    assert_empty_table(&out, "reconciliation", "delta_units")?;
    // The next night brings reconciliation rows: the empty file goes, the partitions come.
    run_ok(&[
        "fixtures/reconcile",
        "--rates",
        deck,
        "--out",
        s(&out),
        "-q",
    ]);
    assert!(!out.join("reconciliation/part-0.parquet").exists());
    let files = parquet_files(&out.join("reconciliation"));
    assert!(!files.is_empty());
    assert!(files
        .iter()
        .all(|f| f.to_string_lossy().contains("account_id=")));
    Ok(())
}
