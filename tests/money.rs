//! Revenue leak and margin (`queries/revenue_leak.sql`, `queries/margin.sql`) on legs made per
//! test, each value worked out by hand from KAZOO's formula
//! (`kapps_call_util:calculate_call/5`: `trunc(Sur + RM/60*R + ceil((secs - RM)/RI) * RI/60*R)`).

use std::collections::BTreeMap;

use crate::util::*;

const ACCOUNT: &str = "acct-m";
const RESELLER: &str = "reseller-r";
/// 2026-11-10T12:00:00Z in Gregorian seconds (the CDR's `timestamp`, the leg's end).
const END: i64 = 63_961_531_200;

/// A stored CDR: `ccv` is the custom_channel_vars' members after the account's.
fn cdr(call_id: &str, seconds: i64, callee: &str, ccv: &str) -> String {
    format!(
        r#"{{"call_id":"{call_id}","call_direction":"outbound","callee_id_number":"{callee}","billing_seconds":{seconds},"duration_seconds":{},"timestamp":{END},"custom_channel_vars":{{"account_id":"{ACCOUNT}","reseller_id":"{RESELLER}",{ccv}}}}}"#,
        seconds + 5
    )
}

/// Rows of a day-file table under `dir`: every column as text, per row.
fn rows(dir: &std::path::Path, key: &[&str], cols: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut m = BTreeMap::new();
    for f in parquet_files(dir) {
        let df = read_parquet(&f);
        for i in 0..df.height() {
            let text = |c: &str| -> String {
                if c == "date" {
                    return partition_of(&f).1;
                }
                match df.column(c).expect(c).get(i).expect(c) {
                    polars::prelude::AnyValue::Float64(x) => x.to_string(),
                    v => v.to_string().trim_matches('"').to_owned(),
                }
            };
            let k: Vec<String> = key.iter().map(|c| text(c)).collect();
            let v: Vec<String> = cols.iter().map(|c| text(c)).collect();
            assert!(m.insert(k.join("/"), v).is_none(), "{k:?} twice");
        }
    }
    m
}

/// Writes `lines` as `dir/input.ndjson` and a deck of `deck_rows` (prefix, rate_cost,
/// rate_increment, rate_minimum, rate_name), and runs them into `dir/out`. Returns the output
/// folder and the deck.
fn run_priced(
    dir: &std::path::Path,
    lines: &[String],
    deck_rows: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf), Box<dyn std::error::Error>> {
    let input = dir.join("input.ndjson");
    std::fs::write(&input, lines.join("\n") + "\n")?;
    let deck = dir.join("deck.csv");
    std::fs::write(
        &deck,
        format!("prefix,rate_cost,rate_increment,rate_minimum,rate_name\n{deck_rows}"),
    )?;
    let out = dir.join("out");
    run_ok(&[s(&input), "--rates", s(&deck), "--out", s(&out), "-q"]);
    Ok((out, deck))
}

#[test]
fn a_leak_is_a_per_minute_leg_kazoo_charged_nothing_that_the_deck_prices() -> TestResult {
    let dir = tempfile::tempdir()?;
    let per_minute = r#""account_billing":"per_minute","reseller_billing":"flat_rate""#;
    let legs = [
        // No rate at all: 120 s at the deck's 0.05 a minute (increment 60, minimum 60) = 1000.
        cdr("no-rate", 120, "+14155550100", per_minute),
        // Rate 0, 61 s: two minutes at 500 = 1000.
        cdr(
            "zero-rate",
            61,
            "+14155550101",
            &format!(r#"{per_minute},"rate":"0","rate_increment":"60","rate_minimum":"60""#),
        ),
        // Within its own no-charge time (20 s of 30): a legitimate 0.
        cdr(
            "nocharge",
            20,
            "+14155550102",
            &format!(r#"{per_minute},"rate":"500","rate_nocharge_time":"30""#),
        ),
        // A 100% discount: a legitimate 0.
        cdr(
            "discount",
            90,
            "+14155550103",
            &format!(r#"{per_minute},"rate":"0","discount_percentage":"100""#),
        ),
        // Charged: not a leak.
        cdr(
            "charged",
            60,
            "+14155550104",
            &format!(r#"{per_minute},"rate":"500","rate_increment":"60","rate_minimum":"60""#),
        ),
        // Unanswered: nothing to charge.
        cdr("unanswered", 0, "+14155550105", per_minute),
        // The customer is on a flat rate, the reseller per minute, and the leg unrated: the
        // reseller's leak (180 s = 1500), not the customer's.
        cdr(
            "resellers",
            180,
            "+14155550106",
            r#""account_billing":"flat_rate","reseller_billing":"per_minute""#,
        ),
        // limits_disabled (an emergency call): never a leak.
        cdr(
            "emergency",
            60,
            "+14155550107",
            r#""account_billing":"limits_disabled","reseller_billing":"limits_disabled""#,
        ),
    ];
    let (out, _) = run_priced(dir.path(), &legs, "1,0.05,60,60,US\n")?;
    let got = rows(
        &out.join("revenue_leak"),
        &["call_id", "party"],
        &[
            "reason",
            "recorded_cost_units",
            "leaked_units",
            "leaked",
            "account_id",
            "date",
        ],
    );
    let want: BTreeMap<String, Vec<String>> = [
        ("no-rate/customer", ["no_rate", "0", "1000", "0.1000"]),
        ("resellers/reseller", ["no_rate", "0", "1500", "0.1500"]),
        ("zero-rate/customer", ["zero_rate", "0", "1000", "0.1000"]),
    ]
    .into_iter()
    .map(|(k, v)| {
        let mut v: Vec<String> = v.map(str::to_owned).to_vec();
        v.extend([ACCOUNT.to_owned(), "2026-11-10".to_owned()]);
        (k.to_owned(), v)
    })
    .collect();
    assert_eq!(got, want);
    // Without a deck nothing is priced, so nothing is said to leak.
    let bare = dir.path().join("bare");
    run_ok(&[s(&dir.path().join("input.ndjson")), "--out", s(&bare), "-q"]);
    assert!(rows(&bare.join("revenue_leak"), &["call_id"], &[]).is_empty());
    Ok(())
}

#[test]
fn margin_is_what_kazoo_charged_less_the_carriers_cost_and_an_unknown_cost_is_never_margin(
) -> TestResult {
    let dir = tempfile::tempdir()?;
    let route = |name: &str, rate: i64, ri: i64, rm: i64, pvt: i64| {
        format!(
            r#""account_billing":"per_minute","reseller_billing":"flat_rate","rate":"{rate}","rate_increment":"{ri}","rate_minimum":"{rm}","rate_name":"{name}","pvt_cost":"{pvt}""#
        )
    };
    let cdrs = [
        // 61 s at 2262 (60/60): 4524 charged; the carrier's 1000 a minute: 2000. Margin 2524.
        cdr("us-1", 61, "+14155550100", &route("US", 2262, 60, 60, 1000)),
        // The same route with a Pvt-Cost of 0: unknown, its 2262 apart, never margin.
        cdr("us-2", 7, "+14155550101", &route("US", 2262, 60, 60, 0)),
        // 30 s at 100 in 6 s steps: 5 x 10 = 50 charged; the carrier's 300: 5 x 30 = 150.
        // Margin -100: this route is listed first.
        cdr("loss-1", 30, "+14155550102", &route("LOSS", 100, 6, 0, 300)),
        // KAZOO's spelling of the rate variable reads the same: 60 s at 100, carrier 40: 100, 40.
        cdr(
            "loss-2",
            60,
            "+14155550103",
            &route("LOSS", 100, 60, 0, 0).replace(r#""pvt_cost":"0""#, r#""Pvt-Cost":"40""#),
        ),
    ];
    std::fs::write(dir.path().join("cdrs.ndjson"), cdrs.join("\n") + "\n")?;
    let out = dir.path().join("out");
    run_ok(&[s(&dir.path().join("cdrs.ndjson")), "--out", s(&out), "-q"]);
    let carrier: BTreeMap<String, Option<i64>> = legs(&out)
        .into_iter()
        .map(|(id, l)| (id, l.carrier))
        .collect();
    assert_eq!(
        carrier,
        [
            ("loss-1", Some(150)),
            ("loss-2", Some(40)),
            ("us-1", Some(2000)),
            ("us-2", None)
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    );
    let cols = [
        "legs",
        "known_cost_legs",
        "revenue_units",
        "carrier_cost_units",
        "margin_units",
        "margin_share",
        "unknown_cost_legs",
        "unknown_cost_revenue_units",
    ];
    let got = rows(&out.join("margin"), &["rate_name"], &cols);
    let want: BTreeMap<String, Vec<String>> = [
        (
            "LOSS",
            [
                "2",
                "2",
                "150",
                "190",
                "-40",
                &(-40.0f64 / 150.0).to_string(),
                "0",
                "0",
            ],
        ),
        (
            "US",
            [
                "2",
                "1",
                "4524",
                "2000",
                "2524",
                &(2524.0f64 / 4524.0).to_string(),
                "1",
                "2262",
            ],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.map(str::to_owned).to_vec()))
    .collect();
    assert_eq!(got, want);
    // Lowest margin first within the account and day.
    let files = parquet_files(&out.join("margin"));
    let df = read_parquet(&files[0]);
    let names: Vec<Option<&str>> = df.column("rate_name")?.str()?.iter().collect();
    assert_eq!(names, [Some("LOSS"), Some("US")]);
    Ok(())
}

/// A stored per-minute ledger (`j5_per_minute:create_ledger_usage/4`, `kz_ledger:to_json/1`):
/// `units` debited for `seconds`, at Gregorian second `at`, in `held_by`'s month database.
fn ledger(id: &str, call_id: &str, units: i64, seconds: i64, at: i64, held_by: &str) -> String {
    format!(
        r#"{{"_id":"202611-{id}","account":{{"id":"{ACCOUNT}"}},"amount":{units},"description":"US","period":{{"start":{at}}},"source":{{"id":"{call_id}","service":"per-minute-voip"}},"usage":{{"quantity":{seconds},"type":"voice","unit":"sec"}},"pvt_account_id":"{held_by}","pvt_ledger_type":"debit","pvt_type":"ledger"}}"#
    )
}

/// One planted error of every class, the customer's and the reseller's, beside legs that agree
/// (one across midnight, its ledger dated the next day) and an account whose ledgers were not
/// loaded: the table names exactly those, with both sides' values.
#[test]
fn the_ledger_reconciliation_names_every_planted_error_and_nothing_else() -> TestResult {
    let dir = tempfile::tempdir()?;
    const PM: &str = r#""account_billing":"per_minute","reseller_billing":"flat_rate","rate":"500","rate_increment":"60","rate_minimum":"60""#;
    let both = PM.replace(
        r#""reseller_billing":"flat_rate""#,
        r#""reseller_billing":"per_minute""#,
    );
    let flat = PM.replace(
        r#""account_billing":"per_minute""#,
        r#""account_billing":"flat_rate""#,
    );
    // 60 s at 500 a minute (increment and minimum 60): 500 units, 60 billed seconds.
    let at = END + 1;
    let mut lines = vec![
        cdr("ok", 60, "+14155550100", PM),
        ledger("a1", "ok", 500, 60, at, ACCOUNT),
        cdr("missing", 60, "+14155550101", PM),
        cdr("twice", 60, "+14155550102", PM),
        ledger("t1", "twice", 500, 60, at, ACCOUNT),
        ledger("t2", "twice", 500, 60, at + 5, ACCOUNT),
        cdr("seconds", 60, "+14155550103", PM),
        ledger("s1", "seconds", 500, 66, at, ACCOUNT),
        cdr("amount", 60, "+14155550104", PM),
        ledger("m1", "amount", 400, 60, at, ACCOUNT),
        // The deck prices this destination at 600 a minute; KAZOO recorded and debited 500.
        cdr("derived", 60, "+14155550199", PM),
        ledger("d1", "derived", 500, 60, at, ACCOUNT),
        cdr("flat", 60, "+14155550105", &flat),
        ledger("f1", "flat", 500, 60, at, ACCOUNT),
        ledger("g1", "ghost", 300, 60, at, ACCOUNT),
        // The reseller's: one missing, one debited 450.
        cdr("resold", 60, "+14155550106", &both),
        ledger("r1", "resold", 500, 60, at, ACCOUNT),
        cdr("resold-amount", 60, "+14155550107", &both),
        ledger("r2", "resold-amount", 500, 60, at, ACCOUNT),
        ledger("r2", "resold-amount", 450, 60, at, RESELLER),
    ];
    // Across midnight: ends 00:00:30 the next day, its ledger a second later.
    let midnight = END + 12 * 3600 + 30;
    lines.push(cdr("midnight", 60, "+14155550108", PM).replace(
        &format!(r#""timestamp":{END}"#),
        &format!(r#""timestamp":{midnight}"#),
    ));
    lines.push(ledger("n1", "midnight", 500, 60, midnight + 1, ACCOUNT));
    // Another account, no ledger of it loaded: not checked.
    lines.push(cdr("unloaded", 60, "+14155550109", PM).replace(ACCOUNT, "acct-n"));
    let (out, deck) = run_priced(
        dir.path(),
        &lines,
        "1,0.05,60,60,US\n1415555019,0.06,60,60,US-X\n",
    )?;
    let cols = [
        "class",
        "ledgers",
        "billed_seconds",
        "charged_seconds",
        "recorded_cost_units",
        "derived_cost_units",
        "debited_units",
        "delta_units",
        "pvt_account_id",
        "date",
    ];
    let got = rows(
        &out.join("ledger_reconciliation"),
        &["call_id", "party"],
        &cols,
    );
    // class, ledgers, billed, charged, recorded, derived, debited, delta; then the database.
    let d = "2026-11-10";
    let want: BTreeMap<String, Vec<String>> = [
        (
            "amount/customer",
            "amount_differs 1 60 60 500 500 400 -100",
            ACCOUNT,
        ),
        (
            "derived/customer",
            "derived_differs 1 60 60 500 600 500 0",
            ACCOUNT,
        ),
        (
            "flat/customer",
            "not_per_minute 1 null 60 null null 500 null",
            ACCOUNT,
        ),
        (
            "ghost/customer",
            "ledger_without_leg 1 null 60 null null 300 null",
            ACCOUNT,
        ),
        (
            "missing/customer",
            "ledger_missing 0 60 null 500 500 null null",
            ACCOUNT,
        ),
        (
            "resold-amount/reseller",
            "amount_differs 1 60 60 500 500 450 -50",
            RESELLER,
        ),
        (
            "resold/reseller",
            "ledger_missing 0 60 null 500 500 null null",
            RESELLER,
        ),
        (
            "seconds/customer",
            "seconds_differ 1 60 66 500 500 500 0",
            ACCOUNT,
        ),
        (
            "twice/customer",
            "charged_twice 2 60 120 500 500 1000 500",
            ACCOUNT,
        ),
    ]
    .into_iter()
    .map(|(k, v, held_by)| {
        let mut v: Vec<String> = v.split(' ').map(str::to_owned).collect();
        v.extend([held_by.to_owned(), d.to_owned()]);
        (k.to_owned(), v)
    })
    .collect();
    assert_eq!(got, want);
    // The day's totals: 9 of the customer's legs (midnight's included, its ledger the next
    // day's), the reseller's 2; the account whose ledgers were not loaded has no row.
    let day_cols = [
        "billable_legs",
        "checked_legs",
        "recorded_cost_units",
        "derived_cost_units",
        "debited_units",
        "ok",
        "not_checked",
    ];
    let daily = rows(
        &out.join("ledger_daily"),
        &["account_id", "party"],
        &day_cols,
    );
    let want: BTreeMap<String, Vec<String>> = [
        (
            "acct-m/customer",
            ["9", "9", "4500", "4600", "5200", "4", "0"],
        ),
        (
            "acct-m/reseller",
            ["2", "2", "1000", "1000", "450", "0", "0"],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.map(str::to_owned).to_vec()))
    .collect();
    assert_eq!(daily, want);
    // The same month as two nights, ledgers first, then the legs (or the other way round),
    // merged: what one run gives.
    let (cdrs, docs): (Vec<&String>, Vec<&String>) =
        lines.iter().partition(|l| l.contains("\"call_id\""));
    for (first, second) in [(&docs, &cdrs), (&cdrs, &docs)] {
        let nights = tempfile::tempdir()?;
        let (n1, n2) = (
            nights.path().join("n1.ndjson"),
            nights.path().join("n2.ndjson"),
        );
        let text = |v: &Vec<&String>| v.iter().map(|l| format!("{l}\n")).collect::<String>();
        std::fs::write(&n1, text(first))?;
        std::fs::write(&n2, text(second))?;
        let merged = nights.path().join("merged");
        run_ok(&[s(&n1), "--rates", s(&deck), "--out", s(&merged), "-q"]);
        run_ok(&[
            s(&n2),
            "--rates",
            s(&deck),
            "--out",
            s(&merged),
            "-q",
            "--mode",
            "merge",
        ]);
        assert_eq!(
            rows(
                &merged.join("ledger_reconciliation"),
                &["call_id", "party"],
                &cols
            ),
            got
        );
        assert_eq!(
            rows(
                &merged.join("ledger_daily"),
                &["account_id", "party"],
                &day_cols
            ),
            daily
        );
    }
    Ok(())
}

/// `rerate gen --shape modb --plant-errors`: a month database with one error of every ledger
/// class planted, the customer's and the reseller's; the ledger reconciliation reports exactly
/// the answer key's rows, each with its class, and nothing else.
#[test]
fn a_generated_month_database_reconciles_to_exactly_its_planted_ledger_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let corpus = dir.path().join("modb");
    let gen = "gen --shape modb --legs 4000 --accounts 4 --days 3 --files 2 --seed 11";
    let args: Vec<&str> = gen
        .split(' ')
        .chain(["--plant-errors", "--out", s(&corpus)])
        .collect();
    let o = rerate(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let key: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(corpus.join(".planted.json"))?)?;
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let planted: std::collections::BTreeSet<(String, String, String)> = key
        .iter()
        .map(|v| (text(v, "call_id"), text(v, "party"), text(v, "class")))
        .collect();
    let classes: std::collections::BTreeSet<(String, String)> = planted
        .iter()
        .map(|(_, p, c)| (p.clone(), c.clone()))
        .collect();
    assert_eq!(classes.len(), 8, "one class at least of each: {classes:?}");
    let out = dir.path().join("out");
    run_ok(&[s(&corpus), "--out", s(&out), "-q"]);
    let reported: std::collections::BTreeSet<(String, String, String)> = rows(
        &out.join("ledger_reconciliation"),
        &["call_id", "party", "class"],
        &[],
    )
    .into_keys()
    .map(|k| {
        let mut p = k.splitn(3, '/').map(str::to_owned);
        let mut next = || p.next().unwrap_or_default();
        (next(), next(), next())
    })
    .collect();
    assert_eq!(reported, planted);
    Ok(())
}
