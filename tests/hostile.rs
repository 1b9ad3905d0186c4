//! Hostile and broken input: limits instead of crashes, and account ids that try to leave the
//! output folder.

use std::io::Write;
use std::path::Path;

use crate::util::*;

const ACCOUNTS: &[&str] = &[
    "../../x",
    "a/b",
    "=",
    "%",
    "a%2Fb",
    "nul\u{0}here",
    "é ü",
    "..",
];

fn leg(call_id: &str, account: &str) -> String {
    serde_json::json!({
        "call_id": call_id,
        "billing_seconds": 61,
        "timestamp": 63_940_000_000u64,
        "custom_channel_vars": {"account_id": account, "account_billing": "per_minute", "rate": "600"}
    })
    .to_string()
}

fn manifest_of(out: &Path) -> serde_json::Value {
    json_file(&out.join("manifest.json"))
}

/// Percent-decoding, written here independently of rerate's escaping.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 1 {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_default()
}

#[test]
fn account_ids_never_leave_the_folder_nor_collide() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("hostile.ndjson");
    let lines: Vec<String> = ACCOUNTS
        .iter()
        .enumerate()
        .map(|(i, a)| leg(&format!("h{i}"), a))
        .collect();
    std::fs::write(&input, lines.join("\n"))?;
    let out = dir.path().join("nested/out");
    run_ok(&[
        input.to_str().ok_or("path")?,
        "--out",
        out.to_str().ok_or("path")?,
        "-q",
    ]);
    // Nothing was written beside the output folder.
    let siblings: Vec<_> = std::fs::read_dir(dir.path().join("nested"))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(siblings, vec![std::ffi::OsString::from("out")]);
    let mut seen: Vec<String> = std::fs::read_dir(out.join("legs"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .map(|n| unescape(n.strip_prefix("account_id=").unwrap_or("?")))
        .collect();
    seen.sort();
    let mut want: Vec<String> = ACCOUNTS.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(
        seen, want,
        "one folder per account, each decoding to its id"
    );
    Ok(())
}

#[test]
fn oversized_deep_empty_and_bomb_inputs_are_read_or_rejected_and_the_run_goes_on() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path().join("in");
    std::fs::create_dir(&d)?;
    let big = leg("big", "acc").replace(
        "\"acc\"",
        &format!("\"acc\",\"pad\":\"{}\"", "p".repeat(5000)),
    );
    // NDJSON: a record over the limit between two good ones.
    std::fs::write(
        d.join("a.ndjson"),
        format!("{}\n{big}\n{}\n", leg("a1", "acc"), leg("a2", "acc")),
    )?;
    // A pretty stream: an over-limit value and an over-limit element of a big array.
    std::fs::write(
        d.join("b.json"),
        format!(
            "{big}\n[\n{},\n{big},\n{}\n]\n",
            leg("b1", "acc"),
            leg("b2", "acc")
        ),
    )?;
    // Nesting (within the size limit) far deeper than the parser allows, in a field it reads.
    let deep = format!("{}{}", "[".repeat(1_500), "]".repeat(1_500));
    std::fs::write(
        d.join("c.ndjson"),
        format!(
            "{{\"call_id\":\"deep\",\"billing_seconds\":{deep}}}\n{}\n",
            leg("c1", "acc")
        ),
    )?;
    // Empty, whitespace only.
    std::fs::write(d.join("d.json"), "")?;
    std::fs::write(d.join("e.json"), " \n\t\r\n  ")?;
    // A gzip bomb: one good line, then 80 MiB without a line end, in ~80 KB.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(format!("{}\n", leg("g1", "acc")).as_bytes())?;
    let block = vec![b'x'; 1 << 20];
    for _ in 0..80 {
        enc.write_all(&block)?;
    }
    enc.write_all(format!("\n{}\n", leg("g2", "acc")).as_bytes())?;
    std::fs::write(d.join("f.ndjson.gz"), enc.finish()?)?;

    let out = dir.path().join("out");
    run_ok(&[
        d.to_str().ok_or("path")?,
        "--out",
        out.to_str().ok_or("path")?,
        "-q",
        "--max-record-size",
        "4K",
    ]);
    let m = manifest_of(&out);
    let rejects = ndjson_file(&out.join("rejects.ndjson"));
    let got: Vec<(String, String, u64)> = rejects
        .iter()
        .map(|r| {
            let src = r["source"].as_str().unwrap_or_default();
            let name = src.rsplit('/').next().unwrap_or_default().to_owned();
            (
                name,
                r["code"].as_str().unwrap_or_default().to_owned(),
                r["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a.ndjson".into(), "record_too_large".into(), 2),
            ("b.json".into(), "record_too_large".into(), 1),
            ("b.json".into(), "record_too_large".into(), 4),
            ("c.ndjson".into(), "invalid_json".into(), 1),
            ("f.ndjson.gz".into(), "record_too_large".into(), 2),
        ]
    );
    assert!(rejects[3]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("recursion limit"));
    assert!(rejects[4]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains(&format!("{} bytes", 80 * (1 << 20) + 1)));
    let legs = legs(&out);
    let ids: Vec<&str> = legs.keys().map(String::as_str).collect();
    assert_eq!(ids, ["a1", "a2", "b1", "b2", "c1", "g1", "g2"]);
    assert_eq!(m["counts"]["balanced"], true);
    assert_eq!(m["counts"]["records_read"], 12);
    Ok(())
}

/// A symbolic link inside the output folder is never followed by a commit: `--mode replace-all`
/// removes the link, not what it points to; a table folder that is a link stops the run before
/// the commit; a planted journal naming paths outside the folder is refused by recovery.
#[cfg(unix)]
#[test]
fn a_commit_never_writes_or_deletes_through_a_symbolic_link() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("legs.ndjson");
    std::fs::write(&input, leg("s1", "acct-a") + "\n")?;
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(outside.join("deep"))?;
    let precious = outside.join("deep/precious.txt");
    std::fs::write(&precious, "keep me")?;

    // A link planted among the dataset's folders, then a replace-all.
    let out = dir.path().join("out");
    run_ok(&[s(&input), "--out", s(&out)]);
    std::os::unix::fs::symlink(&outside, out.join("link"))?;
    let o = rerate(&["run", s(&input), "--out", s(&out), "--mode", "replace-all"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read_to_string(&precious)?, "keep me");

    // The legs table's folder moved elsewhere and linked back: refused before the commit.
    let moved = dir.path().join("moved-legs");
    let out2 = dir.path().join("out2");
    run_ok(&[s(&input), "--out", s(&out2)]);
    std::fs::rename(out2.join("legs"), &moved)?;
    std::os::unix::fs::symlink(&moved, out2.join("legs"))?;
    let before = snapshot(&moved);
    let o = rerate(&["run", s(&input), "--out", s(&out2), "--mode", "replace-all"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("symbolic link") && err.contains("legs"),
        "{err}"
    );
    assert_eq!(snapshot(&moved), before, "the linked folder changed");

    // A journal planted in the staging folder, naming a file outside through `..`.
    let out3 = dir.path().join("out3");
    run_ok(&[s(&input), "--out", s(&out3)]);
    let staging = out3.join(".rerate-staging");
    std::fs::create_dir_all(staging.join("data"))?;
    let journal = serde_json::json!({
        "moves": [],
        "deletes": ["../outside/deep/precious.txt"]
    });
    std::fs::write(staging.join("COMMIT"), journal.to_string())?;
    let o = rerate(&["run", s(&input), "--out", s(&out3)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not a plain relative path"), "{err}");
    assert_eq!(std::fs::read_to_string(&precious)?, "keep me");
    Ok(())
}

/// One record never stops a night: a message-bus event nested 300,000 levels deep and an
/// account_id too long to be a folder name are rejected (file, line, reason); the other legs of
/// the file are written.
#[test]
fn a_record_nested_too_deep_or_with_an_overlong_account_is_rejected_alone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("night.ndjson");
    let n = 300_000;
    let deep = format!(
        r#"{{"Call-ID": "deep1", "Billing-Seconds": "60", "Custom-Channel-Vars": {{"Account-ID": "acct-a", "X": {}1{}}}}}"#,
        "[".repeat(n),
        "]".repeat(n)
    );
    let long = "a".repeat(250);
    let lines = [
        leg("ok1", "acct-a"),
        deep,
        leg("long1", &long),
        leg("ok2", "acct-b"),
        leg("reserved1", "_unassigned"),
    ];
    std::fs::write(&input, lines.join("\n") + "\n")?;
    let out = dir.path().join("out");
    let o = rerate(&["run", s(&input), "--out", s(&out)]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got: Vec<String> = legs(&out).into_keys().collect();
    assert_eq!(got, ["ok1", "ok2"]);
    let want = [
        (2, "nested_too_deep"),
        (3, "account_id_too_long"),
        (5, "account_id_reserved"),
    ]
    .map(|(l, c)| (l, c.to_owned()));
    assert_eq!(reject_codes(&out), want);
    Ok(())
}

/// Money is bounded per leg (10^12 units): a leg priced beyond it is kept, flagged
/// `beyond_bounds` and left unpriced, so no total wraps: twelve legs of 9.9x10^17 units beside
/// one ordinary leg leave the ordinary leg's money as the run's total.
#[test]
fn a_leg_priced_beyond_the_bounds_is_kept_unpriced_and_no_sum_wraps() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("night.ndjson");
    let leg = |id: &str, rate: &str| {
        serde_json::json!({
            "call_id": id, "billing_seconds": 60, "timestamp": 63_940_000_000u64,
            "custom_channel_vars": {"account_id": "acct-a", "account_billing": "per_minute",
                "rate": rate, "rate_increment": "60", "rate_minimum": "60"}
        })
        .to_string()
    };
    let mut lines: Vec<String> = (0..12)
        .map(|i| leg(&format!("huge{i}"), "990000000000000000"))
        .collect();
    lines.push(leg("ok", "600"));
    std::fs::write(&input, lines.join("\n") + "\n")?;
    let out = dir.path().join("out");
    let o = rerate(&["run", s(&input), "--out", s(&out), "-q"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = legs(&out);
    assert_eq!(got.len(), 13);
    // 60 s at 600 units a minute.
    assert_eq!(got["ok"].cost, Some(600));
    for i in 0..12 {
        let l = &got[&format!("huge{i}")];
        assert_eq!((l.cost, l.rated, l.billed), (None, None, None));
        assert!(l
            .flags
            .as_deref()
            .is_some_and(|f| f.contains("beyond_bounds")));
    }
    let m = json_file(&out.join("manifest.json"));
    assert_eq!(m["totals"]["cost_units"], 600, "{}", m["totals"]);
    assert_eq!(m["totals"]["unpriced_legs"], 12);
    Ok(())
}
