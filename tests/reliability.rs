//! Output that survives crashes and reruns; hostile input handled.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// A generated corpus of `legs` legs over 3 accounts and 2 days in November 2026.
fn corpus(dir: &Path, legs: u32, seed: u32) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let out = dir.join(format!("corpus-{seed}"));
    let o = rerate(&[
        "gen",
        "--legs",
        &legs.to_string(),
        "--accounts",
        "3",
        "--days",
        "2",
        "--files",
        "2",
        "--seed",
        &seed.to_string(),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Ok(out)
}

/// The legs partitions the dataset's catalog lists: (account, date, rows, cost_units).
fn legs_partitions(out: &Path) -> Vec<(String, String, u64, i64)> {
    let catalog = rerate::internals::dataset::Catalog::read(out)
        .expect("a readable catalog")
        .expect("a catalog");
    let mut v: Vec<(String, String, u64, i64)> = catalog
        .all_partitions(out)
        .expect("the partition list")
        .into_iter()
        .filter(|p| p.table == "legs")
        .map(|p| {
            (
                p.account_id,
                p.date.unwrap_or_default(),
                p.rows,
                p.cost_units,
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn merge_keeps_every_leg_and_reruns_change_nothing_overwrite_loses_only_when_asked() -> TestResult {
    let (_d, out) = run_fixtures(&[])?;
    let first = snapshot(&out);
    let m1 = json_file(&out.join("manifest.json"));
    let p1 = legs_partitions(&out);
    assert_eq!(m1["dataset"]["legs"], 40);
    assert_eq!(m1["mode"], "merge");

    // The same export again, then a smaller one whose legs the dataset holds: the same bytes,
    // the same counts.
    for input in ["fixtures", "fixtures/ndjson/mixed.ndjson"] {
        run_ok(&[input, "--out", s(&out), "-q"]);
        assert!(snapshot(&out) == first, "{input} again changes nothing");
        let m2 = json_file(&out.join("manifest.json"));
        assert_eq!(m2["dataset"], m1["dataset"]);
        assert_eq!(legs_partitions(&out), p1);
        assert_eq!(m2["counts"]["legs_written"], 0);
    }

    // Asked for explicitly, overwrite-partitions replaces the account-day of a smaller export
    // with its legs alone (the loss its documentation warns of) and keeps the eight others.
    run_ok(&[
        "fixtures/ndjson/mixed.ndjson",
        "--out",
        s(&out),
        "-q",
        "--mode",
        "overwrite-partitions",
    ]);
    let m3 = json_file(&out.join("manifest.json"));
    let runs = m3["runs"].as_array().ok_or("runs")?;
    assert_eq!(runs.len(), 4);
    let written: Vec<(String, String)> = runs[3]["partitions"]
        .as_array()
        .ok_or("partitions")?
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap_or_default().to_owned(),
                p[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let third = snapshot(&out);
    // A report's file holds a day of every account (`daily/date=D/part-0.parquet`): the day
    // written is rewritten, and its other accounts' rows stay (below).
    let touched = |path: &str| {
        written.iter().any(|(a, d)| {
            path.contains(&format!("date={d}/"))
                && (path.contains(&format!("account_id={a}/")) || !path.contains("account_id="))
        })
    };
    for (path, bytes) in &first {
        // The catalog's files (`_catalog/`: the index, the month's partition list) follow any
        // change, as the manifest does; the data files outside the input stay.
        if path.contains('/') && !touched(path) && !path.starts_with("_catalog/") {
            assert_eq!(
                third.get(path),
                Some(bytes),
                "{path} was not in the input and must stay"
            );
        }
    }
    for table in ["daily", "hangup_causes", "top_destinations"] {
        let before = read_dataset_of(&first, table);
        let after = read_dataset(&out.join(table));
        let mut kept = 0;
        for (a, d, df) in &before {
            if written.contains(&(a.clone(), d.clone())) {
                continue;
            }
            let now = after.iter().find(|(x, y, _)| x == a && y == d);
            assert!(
                now.is_some_and(|(_, _, n)| n.equals_missing(df)),
                "{table} of {a} on {d} was not in the input and must stay"
            );
            kept += 1;
        }
        assert!(kept >= 8, "{table}: {kept} partitions compared");
    }
    // The dataset read back equals the manifest: 8 untouched partitions plus the new one.
    let legs = read_dataset(&out.join("legs"));
    let mut on_disk: Vec<(String, String, u64, i64)> = legs
        .iter()
        .map(|(a, d, df)| {
            let cost: i64 = df
                .column("cost_units")
                .ok()
                .and_then(|c| c.i64().ok().map(|c| c.iter().flatten().sum()))
                .unwrap_or(0);
            (a.clone(), d.clone(), df.height() as u64, cost)
        })
        .collect();
    on_disk.sort();
    let listed = legs_partitions(&out);
    assert_eq!(on_disk, listed);
    let kept: u64 = p1
        .iter()
        .filter(|(a, d, _, _)| !written.contains(&(a.clone(), d.clone())))
        .map(|p| p.2)
        .sum();
    assert_eq!(
        m3["dataset"]["legs"].as_u64(),
        Some(kept + m3["counts"]["legs_written"].as_u64().unwrap_or(0))
    );
    assert_eq!(on_disk.len(), 9);
    Ok(())
}

#[test]
fn replace_all_keeps_only_this_runs_partitions() -> TestResult {
    let (_d, out) = run_fixtures(&[])?;
    run_ok(&[
        "fixtures/ndjson/mixed.ndjson",
        "--out",
        s(&out),
        "-q",
        "--mode",
        "replace-all",
    ]);
    let m = json_file(&out.join("manifest.json"));
    let legs = read_dataset(&out.join("legs"));
    assert_eq!(legs.len(), 1);
    assert_eq!(m["dataset"]["legs"], m["counts"]["legs_written"]);
    assert_eq!(
        legs.iter().map(|p| p.2.height() as u64).sum::<u64>(),
        m["counts"]["legs_written"].as_u64().unwrap_or(0)
    );
    // Every table lost the other days too.
    let days = read_dataset(&out.join("daily"));
    assert_eq!(days.len(), 1);
    Ok(())
}

#[test]
fn data_files_are_byte_identical_whatever_threads_chunks_or_input_order() -> TestResult {
    let (_a, one) = run_fixtures(&["--threads", "1", "--format", "both"])?;
    let dir = tempfile::tempdir()?;
    let two = dir.path().join("two");
    run_ok(&[
        "fixtures/reconcile",
        "fixtures/ndjson",
        "fixtures/kazoo-samples",
        "fixtures/gzip",
        "fixtures/crossbar",
        "fixtures/arrays",
        "--out",
        s(&two),
        "-q",
        "--threads",
        "2",
        "--chunk-size",
        "300",
        "--format",
        "both",
    ]);
    let (a, b) = (snapshot(&one), snapshot(&two));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert!(b.get(k) == Some(v), "{k} differs between the runs");
    }
    assert!(a.len() > 80, "{} files compared", a.len());
    Ok(())
}

#[test]
fn unwritable_or_full_output_fails_naming_the_path_and_keeps_the_previous_output() -> TestResult {
    // A file where a folder should be.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x")?;
    let bad = file.join("out");
    let o = rerate(&["run", "fixtures", "--out", s(&bad), "-q"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(s(&bad)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A 3 MB file system: the fixtures fit, a 20,000-leg corpus's output does not. It is
    // mounted in a user namespace; a machine without them skips this half, saying so.
    let userns = Command::new("unshare")
        .args(["-rm", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !userns {
        eprintln!(
            "skipped: the full-disk half needs user namespaces (`unshare -rm`), not available here"
        );
        return Ok(());
    }
    let big = corpus(dir.path(), 20_000, 7)?;
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt)?;
    let exe = env!("CARGO_BIN_EXE_rerate");
    let script = format!(
        "mount -t tmpfs -o size=3m tmpfs {m} && cd {root} && {exe} run fixtures --out {m}/out -q && cp -r {m}/out {d}/before && {exe} run {big} --out {m}/out -q; echo \"status=$?\"; cp -r {m}/out {d}/after; ls -a {m}/out",
        m = s(&mnt),
        root = s(&root()),
        d = s(dir.path()),
        big = s(&big),
    );
    let o = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .output()?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stdout.contains("status=2"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("No space left on device") && stderr.contains("/out/"),
        "{stderr}"
    );
    assert!(
        !stdout.contains(".rerate-staging"),
        "the failed run cleaned its staging: {stdout}"
    );
    let (before, after) = (dir.path().join("before"), dir.path().join("after"));
    assert_eq!(snapshot(&before), snapshot(&after));
    assert_eq!(
        std::fs::read(before.join("manifest.json"))?,
        std::fs::read(after.join("manifest.json"))?
    );
    assert!(snapshot(&before).len() > 40);
    Ok(())
}

/// SIGKILLs `rerate run` after `ms` milliseconds; true when the kill landed before it ended.
fn kill_after(args: &[&str], ms: u64) -> Result<bool, Box<dyn std::error::Error>> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rerate"))
        .arg("run")
        .args(args)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(ms));
    child.kill()?;
    let status = child.wait()?;
    Ok(status.signal() == Some(9))
}

#[test]
fn a_merge_killed_at_any_moment_leaves_a_complete_dataset() -> TestResult {
    let dir = tempfile::tempdir()?;
    let big = corpus(dir.path(), 6_000, 3)?;
    let half = big.join("cdrs-0000.ndjson");
    // What the folder holds before (the fixtures and half the corpus) and after a merge of the
    // whole corpus (which reads back the partitions the first half wrote).
    let restore = |out: &Path| {
        run_ok(&["fixtures", "--out", s(out), "-q", "--mode", "replace-all"]);
        run_ok(&[s(&half), "--out", s(out), "-q"]);
    };
    let (_a, out) = run_fixtures(&[])?;
    run_ok(&[s(&half), "--out", s(&out), "-q"]);
    let before = snapshot(&out);
    let mut before_manifest = std::fs::read(out.join("manifest.json"))?;
    let (_b, merged) = run_fixtures(&[])?;
    run_ok(&[s(&half), "--out", s(&merged), "-q"]);
    let started = std::time::Instant::now();
    run_ok(&[s(&big), "--out", s(&merged), "-q"]);
    let m = json_file(&merged.join("manifest.json"));
    assert!(
        m["merge"]["legs_read_back"].as_u64().unwrap_or(0) > 1000,
        "the merge reads back the first half's partitions: {}",
        m["merge"]
    );
    // Kill points as fractions of a whole run, so that they land mid-run whatever the build's
    // speed (a release build runs this corpus in a fraction of a debug build's time).
    let whole = started.elapsed().as_millis() as f64;
    let after = snapshot(&merged);
    assert!(before != after);

    let mut killed = 0;
    for ms in [0.02, 0.1, 0.25, 0.45, 0.65, 0.85, 1.2].map(|f| (f * whole) as u64) {
        if kill_after(&[s(&big), "--out", s(&out), "-q"], ms)? {
            killed += 1;
        }
        let now = snapshot(&out);
        if now == before {
            assert!(
                std::fs::read(out.join("manifest.json"))? == before_manifest,
                "the manifest changed after a kill at {ms} ms"
            );
        } else {
            // Only a kill after the commit point can change the folder, and then the next
            // run finishes the commit; here the run had finished.
            assert!(
                now == after || out.join(".rerate-staging/COMMIT").exists(),
                "after a kill at {ms} ms the folder is neither the old nor the new dataset"
            );
        }
        // The next run cleans up (or finishes) whatever the killed one left.
        restore(&out);
        assert!(!out.join(".rerate-staging").exists());
        assert!(
            snapshot(&out) == before,
            "the reruns restore the dataset of before"
        );
        before_manifest = std::fs::read(out.join("manifest.json"))?;
    }
    assert!(killed >= 3, "only {killed} kills landed mid-run");
    Ok(())
}

#[test]
fn a_commit_cut_short_is_finished_by_the_next_run() -> TestResult {
    // Killed after 5 moves (the hook aborts), or failing at the 6th (exit status 6: committed,
    // finishing failed).
    for hook in ["RERATE_CRASH_AFTER_MOVES", "RERATE_FAIL_AFTER_MOVES"] {
        cut_short_then_finished(hook)?;
    }
    Ok(())
}

fn cut_short_then_finished(hook: &str) -> TestResult {
    let dir = tempfile::tempdir()?;
    let big = corpus(dir.path(), 600, 5)?;
    let half = big.join("cdrs-0000.ndjson");
    let (_a, out) = run_fixtures(&[])?;
    let (_b, merged) = run_fixtures(&[])?;
    // A merge that reads back what the first half of the corpus wrote.
    for o in [&out, &merged] {
        run_ok(&[s(&half), "--out", s(o), "-q"]);
    }
    run_ok(&[s(&big), "--out", s(&merged), "-q"]);
    let o = Command::new(env!("CARGO_BIN_EXE_rerate"))
        .args(["run", s(&big), "--out", s(&out), "-q"])
        .current_dir(root())
        .env(hook, "5")
        .output()?;
    if hook == "RERATE_CRASH_AFTER_MOVES" {
        assert_eq!(o.status.signal(), Some(6), "the hook aborts the commit");
    } else {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(6), "{err}");
        assert!(
            err.contains("committed; finishing the commit failed"),
            "{err}"
        );
    }
    assert!(out.join(".rerate-staging/COMMIT").exists());
    assert!(snapshot(&out) != snapshot(&merged));
    // The next run (here: an empty export, which writes no partition) finishes the commit first.
    let empty = dir.path().join("empty.json");
    std::fs::File::create(&empty)?.write_all(b"\n")?;
    let o = rerate(&["run", s(&empty), "--out", s(&out)]);
    assert!(
        o.status.success(),
        "{hook}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("stopped while doing it"));
    let m = json_file(&out.join("manifest.json"));
    assert_eq!(m["finished_interrupted_commit"], true);
    let (now, want) = (snapshot(&out), snapshot(&merged));
    let data = |m: &BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
        m.iter()
            .filter(|(k, _)| k.contains('/'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert!(
        data(&now) == data(&want),
        "{hook}: the partitions are the merged dataset's"
    );
    Ok(())
}

/// A partition folder the run may not write in (here made immutable, which stops root too) is
/// found before the commit point: exit 2, the folder named, nothing changed. Skipped, with a
/// message, where `chattr` cannot set the flag (not root, or a file system without it).
#[test]
fn a_folder_the_commit_cannot_write_stops_the_run_before_the_commit_point() -> TestResult {
    let (_d, out) = run_fixtures(&[])?;
    // A day's folder of the legs table: `legs/account_id=../date=..`.
    let dir = parquet_files(&out.join("legs"))
        .first()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .ok_or("no partition folder")?;
    let chattr = |flag: &str| {
        Command::new("chattr")
            .args([flag, s(&dir)])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !chattr("+i") {
        eprintln!("skipped: chattr +i is not available here");
        return Ok(());
    }
    let before = snapshot(&out);
    // The same input again: the merge rewrites every partition it touches, this one among them.
    let o = rerate(&["run", "fixtures", "--out", s(&out), "-q"]);
    let after = snapshot(&out);
    chattr("-i");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("may not") && err.contains(s(&dir)), "{err}");
    assert_eq!(before, after, "the refused run changed the folder");
    Ok(())
}

/// [`read_dataset`] of `table` in a [`snapshot`] of a dataset: its files written to a
/// temporary folder and read back.
fn read_dataset_of(
    snap: &std::collections::BTreeMap<String, Vec<u8>>,
    table: &str,
) -> Vec<(String, String, polars::prelude::DataFrame)> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (path, bytes) in snap {
        if path.starts_with(&format!("{table}/")) && path.ends_with(".parquet") {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("a folder")).expect("a folder");
            std::fs::write(&p, bytes).expect("a file");
        }
    }
    read_dataset(&dir.path().join(table))
}
