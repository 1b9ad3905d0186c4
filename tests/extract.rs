//! `rerate extract`: one input's legs as an Arrow IPC stream, with its rejects and counts (what
//! spark/rerate_spark.py runs inside Spark's executors; tests/spark_job.py compares the Spark job
//! with `rerate run`).

use polars::prelude::*;

use crate::util::{rerate, TestResult};

#[test]
fn extract_writes_every_record_as_a_leg_or_a_reject() -> TestResult {
    let dir = tempfile::tempdir()?;
    let to = dir.path().join("x");
    let out = rerate(&[
        "extract",
        "fixtures/ndjson/mixed.ndjson",
        "--out",
        dir.path().join("out").to_str().ok_or("path")?,
        "--to",
        to.to_str().ok_or("path")?,
        "--name",
        "s3a://bucket/mixed.ndjson",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // fixtures/EXPECTED.md: mixed.ndjson holds 17 records, 10 legs and 7 rejects.
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(to.join("stats.json"))?)?;
    assert_eq!(stats["records_read"], 17);
    assert_eq!(stats["legs"], 10);
    assert_eq!(stats["rejected"], 7);
    assert_eq!(stats["rejected_by_reason"]["bad_billing_field"], 3);
    assert_eq!(stats["inputs"][0]["path"], "s3a://bucket/mixed.ndjson");
    let rejects = std::fs::read_to_string(to.join("rejects.ndjson"))?;
    assert_eq!(rejects.lines().count(), 7);
    assert!(rejects
        .lines()
        .all(|l| l.contains("\"source\":\"s3a://bucket/mixed.ndjson\"")));
    let legs = IpcStreamReader::new(std::fs::File::open(to.join("legs.arrows"))?).finish()?;
    assert_eq!(legs.height(), 10);
    // Copies are not deduplicated here: nd-surcharge-discount is there twice.
    let ids = legs.column("call_id")?.str()?;
    assert_eq!(
        ids.iter()
            .filter(|v| *v == Some("nd-surcharge-discount"))
            .count(),
        2
    );
    let files = legs.column("source_file")?.str()?;
    assert!(files.iter().all(|f| f == Some("s3a://bucket/mixed.ndjson")));
    for c in ["account_id", "date", "reconciliation_class", "cost_units"] {
        assert!(legs.column(c).is_ok(), "no column {c}");
    }
    Ok(())
}

/// A month database's ledgers come out as `ledgers.arrows`, in units with debits negative, named
/// by the file's given name, as the run's `ledgers` table has them before deduplication.
#[test]
fn extract_writes_the_ledgers_it_reads() -> TestResult {
    let dir = tempfile::tempdir()?;
    let to = dir.path().join("x");
    let out = rerate(&[
        "extract",
        "tests/couchdb/all_docs.json",
        "--out",
        dir.path().join("out").to_str().ok_or("path")?,
        "--to",
        to.to_str().ok_or("path")?,
        "--name",
        "s3a://bucket/modb.json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(to.join("stats.json"))?)?;
    assert_eq!((&stats["legs"], &stats["ledgers"]), (&4.into(), &2.into()));
    let ledgers = IpcStreamReader::new(std::fs::File::open(to.join("ledgers.arrows"))?).finish()?;
    let units: Vec<Option<i64>> = ledgers.column("amount_units")?.i64()?.iter().collect();
    // tests/couchdb/README.md: the UK call's 1470 units and the fax's 100, both debits.
    assert_eq!(units, [Some(-1470), Some(-100)]);
    let files = ledgers.column("source_file")?.str()?;
    assert!(files.iter().all(|f| f == Some("s3a://bucket/modb.json")));
    for c in ["account_id", "date", "ledger_id", "period_start"] {
        assert!(ledgers.column(c).is_ok(), "no column {c}");
    }
    Ok(())
}

#[test]
fn extract_lists_what_a_run_would_read() -> TestResult {
    let out = rerate(&["extract", "--list", "fixtures/gzip", "--out", "target/none"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let files = v["files"].as_array().ok_or("files")?;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["path"], "fixtures/gzip/legs.ndjson.gz");
    assert_eq!(files[0]["compression"], "gzip");
    Ok(())
}
