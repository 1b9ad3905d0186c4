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

/// `night.ndjson` in `d`: two legs of account acc1, 60 s and 30 s (call_ids a1, a2).
fn write_night(d: &Path) -> std::io::Result<()> {
    std::fs::write(
        d.join("night.ndjson"),
        format!("{}\n{}\n", cdr("a1", "acc1", 60), cdr("a2", "acc1", 30)),
    )
}

#[test]
fn issue_20_a_rerun_never_reads_its_own_output_hidden_folders_or_other_outputs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    write_night(d)?;
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
        assert!(
            err.contains(".git, ") && err.contains(".hidden.ndjson: hidden"),
            "{err}"
        );
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

#[test]
fn issue_20_unpriced_legs_are_counted_never_priced_as_zero() -> TestResult {
    // The fixtures without a deck: the crossbar CSV exports' 12 legs carry no rate (their
    // money columns are null), the JSON legs are priced from their own rates.
    let (_dir, out) = run_fixtures(&["--format", "both", "--currency", "USD"])?;
    let m = json_file(&out.join("manifest.json"));
    assert_eq!(m["totals"]["unpriced_legs"], 12, "{}", m["totals"]);
    let legs = legs(&out);
    let unpriced = legs.values().filter(|l| l.cost.is_none()).count();
    assert_eq!(unpriced, 12);
    let priced: i64 = legs.values().filter_map(|l| l.cost).sum();
    assert_eq!(m["totals"]["cost_units"], priced);
    // daily counts them per account and day, beside the priced total.
    let daily = read_dataset(&out.join("daily"));
    let mut counted = 0i64;
    for (_, _, df) in &daily {
        counted += df
            .column("unpriced_legs")?
            .i64()?
            .iter()
            .flatten()
            .sum::<i64>();
    }
    assert_eq!(counted, 12);
    // CSV: an unpriced leg's money cells are empty, never 0.
    let csv = walk_first_csv(&out.join("legs/account_id=6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"))?;
    let text = std::fs::read_to_string(&csv)?;
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    let header: Vec<&str> = lines.next().ok_or("header")?.split(',').collect();
    let at = header
        .iter()
        .position(|c| *c == "cost")
        .ok_or("cost column")?;
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() == header.len() {
            assert_eq!(cells[at], "", "{line}");
        }
    }
    // summary.html: the unpriced count beside the priced total, and the currency named.
    let html = std::fs::read_to_string(out.join("summary.html"))?;
    assert!(
        html.contains("Unpriced legs<b class=\"warn\">12</b>"),
        "unpriced card"
    );
    assert!(html.contains("money in USD"));
    assert!(html.contains(&format!(
        "over {} priced legs",
        m["counts"]["legs_written"].as_i64().unwrap_or(0) - 12
    )));
    // The terminal says it too.
    let dir = tempfile::tempdir()?;
    let o = rerate(&["run", "fixtures", "--out", s(&dir.path().join("o"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("12 legs unpriced (crossbar CSV or listing legs without a deck rate: their export has the rate but no increment or minimum, flag no_deck_rate; --rates prices them;"), "{err}");
    assert!(!err.contains("no rate in the CDR"), "{err}");
    // README quotes this line (`rerate run`, the terminal summary).
    assert!(
        err.contains("minutes: 45.9 of use (billing seconds of all 40 legs), 35.8 billed on the 28 priced legs (after increments, minimums and no-charge time; their use: 27.5); the 12 unpriced legs (18.4 of use) are not billed"),
        "{err}"
    );
    assert!(!err.contains("reconciliation: 0 legs"), "{err}");
    // With a deck, the worst accounts name the one without an account id as its partition does.
    let o = rerate(&[
        "run",
        "fixtures",
        "--rates",
        "fixtures/reconcile/ratedeck.csv",
        "--out",
        s(&dir.path().join("deck")),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("_unassigned (1 row, ") && !err.contains(",  ("),
        "{err}"
    );
    assert!(
        err.contains("1 leg unpriced (crossbar CSV or listing legs without a deck rate: their export has the rate but no increment or minimum, flag no_deck_rate; cost empty, not 0;"),
        "{err}"
    );
    Ok(())
}

fn walk_first_csv(dir: &Path) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "csv") {
                return Ok(p);
            }
        }
    }
    Err("no csv".into())
}

#[test]
fn issue_20_every_flag_in_help_is_in_the_readme() -> TestResult {
    let readme = std::fs::read_to_string(root().join("README.md"))?;
    let mut missing = Vec::new();
    for sub in ["run", "query", "reports", "gen"] {
        let o = rerate(&[sub, "--help"]);
        assert!(o.status.success(), "{sub} --help");
        let help = String::from_utf8(o.stdout)?;
        for line in help.lines().map(str::trim_start) {
            if !line.starts_with('-') {
                continue;
            }
            // "-o, --out <DIR>" or "--format <FORMAT>": the long name.
            let Some(long) = line
                .split([' ', ','])
                .find(|w| w.starts_with("--") && w.len() > 2)
            else {
                continue;
            };
            let long = long.trim_end_matches(['=', '.']);
            if long == "--help" || long == "--version" {
                continue;
            }
            if !readme.contains(&format!("`{long}")) && !readme.contains(&format!(" {long} ")) {
                missing.push(format!("rerate {sub} {long}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags in --help but not in README.md: {missing:?}"
    );
    Ok(())
}

/// A per_minute JSON leg that ENDS at `greg` (Gregorian seconds), `secs` long, at `rate` units
/// a minute with `increment` and no minimum.
fn dated_cdr(call_id: &str, account: &str, greg: i64, secs: i64, rate: i64, inc: i64) -> String {
    format!(
        r#"{{"call_id":"{call_id}","billing_seconds":{secs},"duration_seconds":{secs},"timestamp":{greg},"custom_channel_vars":{{"account_id":"{account}","account_billing":"per_minute","rate":"{rate}","rate_increment":"{inc}","rate_minimum":"0"}}}}"#
    )
}

/// The cells of summary.html's table rows whose `<tr class="...">` starts with `class`.
fn html_rows(html: &str, class: &str) -> Vec<Vec<String>> {
    let cell = regex::Regex::new(r"<td[^>]*>(.*?)</td>").expect("regex");
    html.split("<tr class=\"")
        .skip(1)
        .filter(|r| r.starts_with(class))
        .map(|r| {
            let row = r.split("</tr>").next().unwrap_or_default();
            cell.captures_iter(row).map(|c| c[1].to_owned()).collect()
        })
        .collect()
}

// Noon UTC of some days, in Gregorian seconds.
const JAN_01: i64 = 63_934_488_000;
const JAN_15: i64 = 63_935_697_600;
const MAR_31: i64 = 63_942_177_600;
const APR_02: i64 = 63_942_350_400;
const APR_03: i64 = 63_942_436_800;
const JUN_01: i64 = 63_947_534_400;
const DAY: i64 = 86_400;

#[test]
fn issue_20_summary_lists_every_day_up_to_92_days_then_every_month() -> TestResult {
    let dir = tempfile::tempdir()?;
    let run = |name: &str, legs: &[String]| -> Result<String, Box<dyn std::error::Error>> {
        let input = dir.path().join(format!("{name}.ndjson"));
        std::fs::write(&input, legs.join("\n"))?;
        let out = dir.path().join(name);
        run_ok(&[s(&input), "--out", s(&out), "-q"]);
        Ok(std::fs::read_to_string(out.join("summary.html"))?)
    };
    // 2026-01-15 to 2026-06-01: 138 days, so by month. Rate 600 a minute, increment 60: 60 s
    // and 30 s are billed a minute each (0.0600 each), 120 s two (0.1200), 90 s two (0.1200).
    let html = run(
        "months",
        &[
            dated_cdr("jan-a", "acc1", JAN_15, 60, 600, 60),
            dated_cdr("jan-b", "acc2", JAN_15 + 3600, 30, 600, 60),
            dated_cdr("mar", "acc1", MAR_31, 120, 600, 60),
            dated_cdr("jun", "acc1", JUN_01, 90, 600, 60),
        ],
    )?;
    assert!(html.contains("(138 days, report days in UTC)"), "period");
    assert!(html.contains("<h2>Monthly totals</h2>"));
    assert!(html.contains(
        "By month: the period spans 138 days, more than the 92 whose every day this page lists, so the chart and the table show each of its 6 months"
    ));
    // A lone month without legs is a row of its own; two or more in a row are one row.
    let want = [
        // month, legs, answered, minutes of use, customer cost, unpriced
        ["2026-01", "2", "2", "1.5", "0.1200", "0"],
        ["2026-02", "0", "0", "0.0", "0.0000", "0"],
        ["2026-03", "1", "1", "2.0", "0.1200", "0"],
        ["2026-06", "1", "1", "1.5", "0.1200", "0"],
    ];
    assert_eq!(
        html_rows(&html, "month"),
        want.map(|r| r.map(str::to_owned))
    );
    assert_eq!(
        html_rows(&html, "gap"),
        [["2026-04 to 2026-05", "no legs in these 2 months"]]
    );
    assert!(html_rows(&html, "day").is_empty());
    assert_eq!(html.matches("<rect class=\"month\"").count(), 4);
    assert_eq!(html.matches("<line class=\"gap\"").count(), 1);
    assert!(html.contains("<tr class=\"month muted\"><td class=\"l\">2026-02</td>"));

    // 2026-01-01 to 2026-04-02 is 92 days: by day, the 90 without legs between as one row.
    let html = run(
        "days92",
        &[
            dated_cdr("first", "acc1", JAN_01, 60, 600, 60),
            dated_cdr("last", "acc1", APR_02, 60, 600, 60),
        ],
    )?;
    let rows = html_rows(&html, "day");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][..2], ["2026-01-01", "1"]);
    assert_eq!(rows[1][..2], ["2026-04-02", "1"]);
    assert_eq!(
        html_rows(&html, "gap"),
        [["2026-01-02 to 2026-04-01", "no legs in these 90 days"]]
    );
    assert_eq!(html.matches("<rect class=\"day\"").count(), 2);
    assert!(html.contains("<h2>Daily totals</h2>") && !html.contains("id=\"by-month\""));
    // One day more, 93: by month, January to April.
    let html = run(
        "days93",
        &[
            dated_cdr("first", "acc1", JAN_01, 60, 600, 60),
            dated_cdr("last", "acc1", APR_03, 60, 600, 60),
        ],
    )?;
    let months: Vec<String> = html_rows(&html, "month")
        .into_iter()
        .map(|r| r[0].clone() + " " + &r[1])
        .collect();
    assert_eq!(months, ["2026-01 1", "2026-04 1"]);
    assert_eq!(
        html_rows(&html, "gap"),
        [["2026-02 to 2026-03", "no legs in these 2 months"]]
    );
    Ok(())
}

#[test]
fn issue_20_accounts_table_compares_recorded_and_derived_money_without_a_deck() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    // acc1, no deck, --rounding exact. Day 1: 60 s and 30 s at 600 a minute, increment 60:
    // recorded (KAZOO's arithmetic) 600 + 600, derived 600 + 600. Day 2: 300 s at 22 a minute,
    // increment 1 (the billing rules' example): KAZOO's doubles give 109, exact 110, so a
    // delta of +1 unit, a `rounding` row, and reconciliation_daily holds day 2 only.
    let json = [
        dated_cdr("a", "acc1", JAN_15, 60, 600, 60),
        dated_cdr("b", "acc1", JAN_15 + 60, 30, 600, 60),
        dated_cdr("c", "acc1", JAN_15 + DAY, 300, 22, 1),
    ];
    std::fs::write(d.join("legs.ndjson"), json.join("\n"))?;
    // acc2: a crossbar CSV export's leg, with KAZOO's recorded cost 2262 and no increment or
    // minimum: unpriced without a deck, nothing derived.
    let acc2 = d.join("account_id=acc2");
    std::fs::create_dir_all(&acc2)?;
    std::fs::write(
        acc2.join("cdrs.csv"),
        "call_type,rate,rate_name,cost,id,call_id,caller_id_number,callee_id_number,duration_seconds,billing_seconds,timestamp,direction\n\
         per_minute,0.2262,UK,2262,x-1,x-1,+14155550100,+441612345678,66,61,63935697600,outbound\n",
    )?;
    let out = d.join("out");
    run_ok(&[s(d), "--out", s(&out), "--rounding", "exact", "-q"]);
    // reconciliation_daily as written: only acc1's day 2 (the day with a reported row).
    let recon = read_dataset(&out.join("reconciliation_daily"));
    assert_eq!(recon.len(), 1);
    assert_eq!(
        (recon[0].0.as_str(), recon[0].1.as_str()),
        ("acc1", "2026-01-16")
    );

    let html = std::fs::read_to_string(out.join("summary.html"))?;
    // account, legs, minutes of use, customer cost, unpriced, recorded, derived, delta.
    let want = [
        // 90 + 300 s = 6.5 minutes; cost 600 + 600 + 110 exact.
        [
            "acc1", "3", "6.5", "0.1310", "0", "0.1309", "0.1310", "0.0001",
        ],
        // 61 s = 1.0 minute; unpriced: no cost (—, not 0.0000), so nothing compared.
        ["acc2", "1", "1.0", "—", "1", "—", "—", "—"],
    ];
    assert_eq!(
        html_rows(&html, "account"),
        want.map(|r| r.map(str::to_owned))
    );
    assert!(html.contains(
        "are over the 3 legs whose customer money is both recorded and derived, not the other 1 (unpriced, or with no recorded money), on which KAZOO recorded 0.2262"
    ));
    // The totals row: recorded 0.1309, derived 0.1310, delta 0.0001.
    let foot = html.split("<tfoot>").last().ok_or("tfoot")?;
    assert!(
        foot.contains("<td>0.1309</td><td>0.1310</td><td>0.0001</td>"),
        "{foot}"
    );

    // Billed minutes: the priced legs' (60 + 60 + 300 s = 7.0), beside their use (6.5) and the
    // unpriced leg's (61 s, 1.0), on the terminal and the page.
    let run_terminal = || {
        let o = rerate(&[
            "run",
            s(d),
            "--out",
            s(&d.join("out2")),
            "--rounding",
            "exact",
        ]);
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = run_terminal();
    assert!(
        err.contains("minutes: 7.5 of use (billing seconds of all 4 legs), 7.0 billed on the 3 priced legs (after increments, minimums and no-charge time; their use: 6.5); the 1 unpriced leg (1.0 of use) is not billed"),
        "{err}"
    );
    assert!(html.contains("Billed minutes<b>7.0</b>"));

    // The same input again, merged: no leg is new, the partitions rewritten hold the 4 kept
    // from the dataset, and every figure is still over those 4 (it said "all 0 legs").
    let err = run_terminal();
    assert!(err.contains("0 legs written (4 interactions) to 3 partitions, merged with 4 legs they held (4 legs there now); none rejected; 4 duplicates dropped\n"), "{err}");
    assert!(
        err.contains(
            "minutes: 7.5 of use (billing seconds of all 4 legs), 7.0 billed on the 3 priced legs"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "customer cost in the partitions rewritten 0.1310 over 3 priced legs; 1 leg unpriced"
        ),
        "{err}"
    );
    let html = std::fs::read_to_string(d.join("out2/summary.html"))?;
    assert!(
        html.contains(
            "Legs<b>4</b><small>0 from this run, 4 kept from the dataset; 4 interactions</small>"
        ),
        "legs card"
    );
    assert!(html.contains("4 read, 0 written, 0 rejected, 4 duplicates dropped; merged with the dataset&#x27;s 4 legs in the partitions written"), "records");
    Ok(())
}

/// A crossbar CSV export of `rows` (rate 0.2262, KAZOO's recorded cost 2262, 61 billing
/// seconds, noon of 2026-01-15): no increment or minimum, so unpriced without a deck.
fn crossbar_csv(rows: &[&str]) -> String {
    let mut s = "call_type,rate,rate_name,cost,id,call_id,caller_id_number,callee_id_number,duration_seconds,billing_seconds,timestamp,direction\n".to_owned();
    for id in rows {
        s += &format!("per_minute,0.2262,UK,2262,{id},{id},+14155550100,+441612345678,66,61,63935697600,outbound\n");
    }
    s
}

#[test]
fn issue_20_money_over_no_priced_leg_is_unpriced_never_zero() -> TestResult {
    // Every leg unpriced: two crossbar CSV legs of one account, no deck.
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let acc = d.join("in/account_id=acc2");
    std::fs::create_dir_all(&acc)?;
    std::fs::write(acc.join("cdrs.csv"), crossbar_csv(&["x-1", "x-2"]))?;
    let out = d.join("out");
    let o = rerate(&["run", s(&d.join("in")), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("\n  customer cost — (no priced legs); 2 legs unpriced (crossbar CSV or listing legs without a deck rate: their export has the rate but no increment or minimum, flag no_deck_rate; --rates prices them; cost empty, not 0;"),
        "{err}"
    );
    assert!(err.contains("; rated —, reseller —"), "{err}");
    // 2 x 61 s = 2.0 minutes of use, nothing billed.
    assert!(
        err.contains(
            "minutes: 2.0 of use (billing seconds of all 2 legs), none billed: no leg is priced"
        ),
        "{err}"
    );
    assert!(!err.contains("0.0000"), "{err}");
    let html = std::fs::read_to_string(out.join("summary.html"))?;
    assert!(html.contains(
        "Customer cost<b class=\"warn\">—</b><small>no priced legs; 2 unpriced legs</small>"
    ));
    assert!(html.contains("Reseller cost<b>—</b><small>rated —</small>"));
    assert!(html.contains("Billed minutes<b>—</b><small>none: no leg is priced</small>"));
    assert!(html.contains(">no priced legs</text>"), "chart axis");
    assert!(!html.contains("0.0000"), "no money shown as 0.0000");
    // day, legs, answered, minutes, cost, unpriced
    assert_eq!(
        html_rows(&html, "day"),
        [["2026-01-15", "2", "2", "2.0", "—", "2"].map(str::to_owned)]
    );
    assert_eq!(
        html_rows(&html, "account"),
        [["acc2", "2", "2.0", "—", "2", "—", "—", "—"].map(str::to_owned)]
    );
    // What was and was not compared without a deck.
    assert!(html.contains("No rate deck was given (--rates): no leg has rating inputs (JSON) to compare with its own rate; the 2 other legs (crossbar CSV or listing: no increment or minimum) were not compared"));

    // A day with one priced leg keeps its sum beside the unpriced count: a JSON leg of 60 s
    // at 600 a minute, increment 60, is 600 units (0.0600) on 2026-01-15 too.
    std::fs::write(
        d.join("in/legs.ndjson"),
        dated_cdr("j-1", "acc1", JAN_15, 60, 600, 60),
    )?;
    let out = d.join("out-mixed");
    let o = rerate(&["run", s(&d.join("in")), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("customer cost 0.0600 over 1 priced leg; 2 legs unpriced"),
        "{err}"
    );
    let html = std::fs::read_to_string(out.join("summary.html"))?;
    assert_eq!(
        html_rows(&html, "day"),
        [["2026-01-15", "3", "3", "3.0", "0.0600", "2"].map(str::to_owned)]
    );
    let accounts = html_rows(&html, "account");
    assert_eq!(accounts[0][..5], ["acc1", "1", "1.0", "0.0600", "0"]);
    assert_eq!(accounts[1][..5], ["acc2", "2", "2.0", "—", "2"]);
    assert!(html.contains("the 1 leg with rating inputs (JSON) was compared with its own rate, and none differs; the 2 other legs (crossbar CSV or listing: no increment or minimum) were not compared: rerate derives no money for them without a deck."));

    // The fixtures: account 6a7b… has 2 legs, both crossbar CSV legs, unpriced; of the 40 legs
    // the 28 JSON ones are compared with their own rate, the 12 CSV ones are not.
    let (_dir, out) = run_fixtures(&[])?;
    let html = std::fs::read_to_string(out.join("summary.html"))?;
    let row = html_rows(&html, "account")
        .into_iter()
        .find(|r| r[0] == "6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d")
        .ok_or("account row")?;
    assert_eq!(row[1..], ["2", "3.1", "—", "2", "—", "—", "—"]);
    assert!(html.contains("the 28 legs with rating inputs (JSON) were compared with their own rate, and none differs; the 12 other legs (crossbar CSV or listing: no increment or minimum) were not compared"));
    assert!(!html.contains("no leg&#x27;s recorded money differs"));
    Ok(())
}

#[test]
fn issue_20_a_csv_rerate_wrote_is_skipped_as_its_own_output_never_rejected() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    write_night(d)?;
    let out = d.join("reports");
    run_ok(&[s(d), "--out", s(&out), "-q"]);
    // A spreadsheet of the legs, beside the CDRs: rerate's own column names (cost_units, ...).
    let sheet = d.join("legs.csv");
    let o = rerate(&[
        "query",
        "SELECT * FROM legs",
        "--data",
        s(&out),
        "--output",
        s(&sheet),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(std::fs::read_to_string(&sheet)?.contains("call_id"));
    for target in ["reports", "again"] {
        let o = rerate(&["run", s(d), "--out", s(&d.join(target))]);
        assert_eq!(o.status.code(), Some(0));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("legs.csv: rerate's own output"), "{err}");
        let m = json_file(&d.join(target).join("manifest.json"));
        assert_eq!(m["counts"]["records_read"], 2, "{m}");
        assert_eq!(m["counts"]["rejected"], 0, "{m}");
        let reasons: Vec<&str> = m["skipped_files"]
            .as_array()
            .ok_or("skipped_files")?
            .iter()
            .filter(|k| k["path"].as_str().is_some_and(|p| p.ends_with("legs.csv")))
            .filter_map(|k| k["reason"].as_str())
            .collect();
        assert_eq!(reasons.len(), 1, "{m}");
        assert!(reasons[0].starts_with("rerate's own output"), "{m}");
    }
    // Named alone, it is still not a CDR input: nothing to read, exit 4.
    let o = rerate(&["run", s(&sheet), "--out", s(&d.join("alone"))]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rerate's own output"));
    Ok(())
}

/// A nightly job pointed at the wrong file, or at an export whose format changed, must not look
/// green: a run whose every record is rejected commits nothing, exits 5 and leaves no folder it
/// created; `--max-rejects` sets a stricter threshold; a rerun of the same night (duplicates,
/// not rejects) is not refused.
#[test]
fn a_run_that_reads_no_leg_or_too_many_rejects_exits_5_and_commits_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("reports");
    let o = rerate(&["run", "README.md", "--out", s(&out), "-q"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(
        err.contains("every one of the") && err.contains("README.md"),
        "{err}"
    );
    assert!(!out.exists(), "a refused run left {}", out.display());

    // The fixtures: 50 records, 7 rejected (14%).
    let fixtures = |out: &Path, max: &str| {
        rerate(&[
            "run",
            "fixtures",
            "--out",
            s(out),
            "-q",
            "--max-rejects",
            max,
        ])
    };
    for (max, code) in [("5", 5), ("7", 0), ("13%", 5), ("14%", 0)] {
        let out = dir.path().join(format!("max-{max}"));
        let o = fixtures(&out, max);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "--max-rejects {max}: {err}");
        if code == 0 {
            let m = json_file(&out.join("manifest.json"));
            assert_eq!(m["counts"]["rejected"], 7);
            assert!(m["options"]["max_rejects"].is_object(), "{}", m["options"]);
            // The same night again: its legs are duplicates now, its rejects the same 7.
            let o = fixtures(&out, max);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(0), "rerun: {err}");
        } else {
            assert!(err.contains("more than --max-rejects"), "{err}");
            assert!(!out.exists());
        }
    }
    assert_eq!(fixtures(&out, "ten").status.code(), Some(2));
    Ok(())
}

/// After a merge the terminal says what the dataset now holds and how (mode, run number), and a
/// rerun that brings nothing new says so rather than reading as money added.
#[test]
fn the_terminal_says_what_the_dataset_holds_and_when_nothing_changed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("reports");
    let night = |day: &str| -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
        let p = dir.path().join(day);
        let o = rerate(&[
            "gen",
            "--legs",
            "30",
            "--days",
            "1",
            "--files",
            "1",
            "--accounts",
            "3",
            "--start",
            day,
            "--out",
            s(&p),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Ok(p)
    };
    let (n1, n2) = (night("2026-11-01")?, night("2026-11-02")?);
    let mut said = Vec::new();
    let mut pages = Vec::new();
    for n in [&n1, &n2, &n2] {
        let o = rerate(&["run", s(n), "--out", s(&out)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        said.push(String::from_utf8_lossy(&o.stderr).into_owned());
        pages.push(std::fs::read_to_string(out.join("summary.html"))?);
    }
    // summary.html says the same, under the period.
    let dataset_line = |page: &str| -> String {
        page.split("<p class=\"sub\" id=\"dataset\">")
            .nth(1)
            .and_then(|p| p.split("</p>").next())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        dataset_line(&pages[1]).starts_with("The dataset now: 60 legs")
            && dataset_line(&pages[1]).ends_with("--mode merge, run 2 of this folder."),
        "{}",
        dataset_line(&pages[1])
    );
    assert!(!dataset_line(&pages[1]).contains("nothing changed"));
    assert!(
        dataset_line(&pages[2]).contains("run 3 of this folder.<br><b>nothing changed"),
        "{}",
        dataset_line(&pages[2])
    );
    assert!(
        said[0].contains("the dataset now: 30 legs") && said[0].contains("run 1 of this folder"),
        "{}",
        said[0]
    );
    assert!(
        said[1].contains("the dataset now: 60 legs") && said[1].contains("--mode merge, run 2"),
        "{}",
        said[1]
    );
    assert!(!said[1].contains("nothing changed"), "{}", said[1]);
    assert!(
        said[2].contains("nothing changed") && said[2].contains("the dataset now: 60 legs"),
        "{}",
        said[2]
    );
    assert!(
        said[2].contains("customer cost in the partitions rewritten"),
        "{}",
        said[2]
    );
    Ok(())
}

/// A mistyped subcommand gets a tip when one is near (swapped letters included), exit 2.
#[test]
fn a_mistyped_subcommand_gets_a_tip() {
    let o = rerate(&["rnu", "fixtures"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("did you mean 'run'?"), "{err}");
    let o = rerate(&["xyzzy"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("did you mean"), "{err}");
}
