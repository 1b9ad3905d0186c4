//! Reconciliation on fixtures/reconcile: a hand-made deck, crossbar CSV exports (5.0 and 4.3
//! headers) and JSON legs in which known legs are wrong in each class. Expected figures are
//! worked out in fixtures/EXPECTED.md (checked with tests/kazoo_reference.py).

use std::collections::BTreeMap;

use crate::util::*;

const R: &str = "5e1f0c2d3b4a59687766554433221100";
const S: &str = "6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d";
const DECK: &str = "fixtures/reconcile/ratedeck.csv";

/// call_id -> (class, recorded, derived, delta) of every reported leg.
fn reported(out: &std::path::Path) -> BTreeMap<String, (String, i64, i64, i64)> {
    let mut m = BTreeMap::new();
    for (_, _, df) in read_dataset(&out.join("reconciliation")) {
        let s = |c: &str| df.column(c).expect(c).str().expect(c).clone();
        let i = |c: &str| df.column(c).expect(c).i64().expect(c).clone();
        let (id, class) = (s("call_id"), s("class"));
        let (rec, der, delta) = (
            i("recorded_cost_units"),
            i("derived_cost_units"),
            i("delta_units"),
        );
        for k in 0..df.height() {
            m.insert(
                id.get(k).unwrap_or_default().to_owned(),
                (
                    class.get(k).unwrap_or_default().to_owned(),
                    rec.get(k).unwrap_or(i64::MIN),
                    der.get(k).unwrap_or(i64::MIN),
                    delta.get(k).unwrap_or(i64::MIN),
                ),
            );
        }
    }
    m
}

fn run_reconcile(
    extra: &[&str],
) -> Result<(tempfile::TempDir, std::path::PathBuf, String), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("r");
    let mut args = vec![
        "run",
        "fixtures/reconcile",
        "--rates",
        DECK,
        "--out",
        out.to_str().ok_or("path")?,
    ];
    args.extend_from_slice(extra);
    let o = rerate(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Ok((dir, out, String::from_utf8_lossy(&o.stderr).into_owned()))
}

fn row(class: &str, recorded: i64, derived: i64) -> (String, i64, i64, i64) {
    (class.to_owned(), recorded, derived, derived - recorded)
}

#[test]
fn every_planted_error_is_found_with_its_class_and_no_correct_leg_is_reported() -> TestResult {
    let (_dir, out, stderr) = run_reconcile(&[])?;
    let got = reported(&out);
    let want: BTreeMap<String, (String, i64, i64, i64)> = [
        // CSV: KAZOO recorded 110 where its own doubles give 109.
        ("c-rounding", row("rounding", 110, 109)),
        // CSV: the leg carries 0.25/min, the deck 0.2262: 5000 recorded, 4524 from the deck.
        ("c-rate-mismatch", row("rate_mismatch", 5000, 4524)),
        ("c-billing-flat-charged", row("billing_type", 200, 0)),
        ("c-billing-pm-free", row("billing_type", 0, 200)),
        ("c-unrated", row("unrated", 0, 100)),
        ("c-mismatch", row("mismatch", 3000, 2488)),
        // The 4.3 export (columns in another order): 125 s at 0.06 is 1800, not 1000.
        ("d-mismatch", row("mismatch", 1000, 1800)),
        // JSON: KAZOO charged the leg's own 2000/min (2200); the deck says 2262 (2488).
        ("j-rate-mismatch", row("rate_mismatch", 2200, 2488)),
        ("j-unrated", row("unrated", 0, 100)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(got, want);

    // CSV legs are priced from the deck; the inbound-only London rate is not picked for them.
    let legs = legs(&out);
    assert_eq!(
        (legs["c-ok-2"].billed, legs["c-ok-2"].cost),
        (Some(66), Some(2488))
    );
    assert_eq!(
        (legs["d-ok"].account.as_str(), legs["d-ok"].cost),
        (S, Some(1200))
    );
    assert_eq!(
        legs["c-ok-1"].account, R,
        "the account comes from the file name"
    );
    assert_eq!(legs["c-no-deck-rate"].cost, None);
    let files = read_dataset(&out.join("legs"));
    let (_, _, df) = files.iter().find(|(a, _, _)| a == R).ok_or("R legs")?;
    let ids = df.column("call_id")?.str()?;
    let k = ids
        .iter()
        .position(|v| v == Some("c-ok-2"))
        .ok_or("c-ok-2")?;
    assert_eq!(
        df.column("deck_rate_name")?.str()?.get(k),
        Some("UK-LONDON")
    );
    assert_eq!(
        df.column("rate")?.i64()?.get(k),
        Some(2262),
        "0.2262 dollars is 2262 units"
    );
    assert_eq!(df.column("recorded_cost_units")?.i64()?.get(k), Some(2488));
    assert_eq!(df.column("source_format")?.str()?.get(k), Some("csv"));
    assert_eq!(df.column("deck_rate_increment")?.i64()?.get(k), Some(6));

    // The manifest and the terminal summary.
    let m = json_file(&out.join("manifest.json"));
    let r = &m["reconciliation"];
    assert_eq!(r["rows"], 9);
    assert_eq!(r["total_delta_units"], 299);
    assert_eq!(r["not_derived"], 1);
    assert_eq!(r["by_class"]["rate_mismatch"], 2);
    assert_eq!(r["worst_accounts"][0], serde_json::json!([S, 1, 800]));
    assert!(
        stderr.contains("delta 0.0299 (derived minus recorded)")
            && stderr.contains(&format!("worst accounts: {S} (1 row, 0.0800)")),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn reconciliation_daily_sums_the_day() -> TestResult {
    let (_dir, out, _) = run_reconcile(&[])?;
    let mut days = BTreeMap::new();
    for (a, d, df) in read_dataset(&out.join("reconciliation_daily")) {
        let row: BTreeMap<String, i64> = df
            .columns()
            .iter()
            .filter_map(|c| Some((c.name().to_string(), c.get(0).ok()?.extract::<i64>()?)))
            .collect();
        days.insert((a, d), row);
    }
    let r = &days[&(R.to_owned(), "2026-11-04".to_owned())];
    // 13 legs, 12 derivable (c-no-deck-rate is not); recorded and derived over those 12.
    assert_eq!((r["legs"], r["derived_legs"]), (13, 12));
    assert_eq!(
        r["recorded_cost_units"],
        200 + 2488 + 110 + 5000 + 200 + 3000 + 2488 + 2200
    );
    assert_eq!(
        r["derived_cost_units"],
        200 + 2488 + 109 + 4524 + 200 + 100 + 2488 + 2488 + 2488 + 100
    );
    assert_eq!(r["delta_units"], -501);
    let classes = [
        "reported_legs",
        "unrated",
        "billing_type",
        "rate_mismatch",
        "rounding",
        "mismatch",
    ];
    assert_eq!(classes.map(|c| r[c]), [8, 2, 2, 2, 1, 1]);
    let s = &days[&(S.to_owned(), "2026-11-04".to_owned())];
    assert_eq!(
        (s["delta_units"], s["reported_legs"], s["mismatch"]),
        (800, 1, 1)
    );
    Ok(())
}

#[test]
fn exact_arithmetic_clears_the_rounding_row() -> TestResult {
    let (_dir, out, _) = run_reconcile(&["--rounding", "exact"])?;
    let got = reported(&out);
    assert!(
        !got.contains_key("c-rounding"),
        "exact gives 110 as recorded"
    );
    assert_eq!(got.len(), 8);
    Ok(())
}

#[test]
fn accounts_with_a_ratedeck_of_their_own_are_priced_from_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let deck = dir.path().join("deck.csv");
    let mut text = std::fs::read_to_string(DECK)?;
    text += "44,0.0500,60,0,0,,100,UK-SILVER,Silver UK,silver\n";
    let text = text.replacen(
        "rate_name,description",
        "rate_name,description,ratedeck_id",
        1,
    );
    std::fs::write(&deck, text)?;
    let map = dir.path().join("map.csv");
    std::fs::write(&map, format!("account_id,ratedeck_id\n{S},silver\n"))?;
    let out = dir.path().join("r");
    let o = rerate(&[
        "run",
        "fixtures/reconcile",
        "--rates",
        deck.to_str().ok_or("path")?,
        "--ratedeck-map",
        map.to_str().ok_or("path")?,
        "--out",
        out.to_str().ok_or("path")?,
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = reported(&out);
    // S's legs now meet 0.05/min: d-ok recorded 1200 at 0.06 against 1000.
    assert_eq!(got["d-ok"], row("rate_mismatch", 1200, 1000));
    assert_eq!(got["d-mismatch"], row("rate_mismatch", 1000, 1500));
    // R is not mapped: the default deck as before.
    assert_eq!(got["c-rate-mismatch"], row("rate_mismatch", 5000, 4524));
    Ok(())
}

#[test]
fn bad_deck_rows_and_bad_csv_rows_are_reported_by_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let deck = dir.path().join("deck.csv");
    std::fs::write(
        &deck,
        "prefix,rate_cost,rate_increment\n1,0.01,60\n1x,0.02,60\n44,0.06,-6\n",
    )?;
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs)?;
    std::fs::write(
        inputs.join("cdrs.csv"),
        "call_id,callee_id_number,billing_seconds,timestamp,call_type,rate,cost\n\
         ok,+14155550100,61,63961002000,per_minute,0.0100,120\n\
         bad-secs,+14155550100,x,63961002000,per_minute,0.0100,0\n\
         short,+14155550100\n\
         bad-rate,+14155550100,5,63961002000,per_minute,cheap,0\n\
         ,+14155550100,5,63961002000,per_minute,0.01,0\n",
    )?;
    let out = dir.path().join("r");
    let o = rerate(&[
        "run",
        inputs.to_str().ok_or("path")?,
        "--rates",
        deck.to_str().ok_or("path")?,
        "--out",
        out.to_str().ok_or("path")?,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 3: prefix \"1x\"") && err.contains("line 4: rate_increment \"-6\""),
        "{err}"
    );
    let m = json_file(&out.join("manifest.json"));
    assert_eq!(m["rate_deck_issues"].as_array().map(Vec::len), Some(2));
    let rejects = ndjson_file(&out.join("rejects.ndjson"));
    let got: Vec<(u64, String)> = rejects
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap_or(0),
                r["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got[0].0 == 3 && got[0].1.contains("'billing_seconds'"),
        "{got:?}"
    );
    assert!(got[1].0 == 4 && got[1].1.contains("2 fields"), "{got:?}");
    assert!(got[2].0 == 5 && got[2].1.contains("'rate'"), "{got:?}");
    assert!(got[3].0 == 6 && got[3].1.contains("call_id"), "{got:?}");
    // The good row: 61 s at the deck's 1 US cent, increment 60, minimum 60 (defaults): 200.
    assert_eq!(legs(&out)["ok"].cost, Some(200));
    assert_eq!(m["counts"]["balanced"], true);

    // A deck with no usable row stops the run before anything is written.
    std::fs::write(&deck, "prefix,rate_cost\nabc,1\n")?;
    let out2 = dir.path().join("r2");
    let o = rerate(&[
        "run",
        inputs.to_str().ok_or("path")?,
        "--rates",
        deck.to_str().ok_or("path")?,
        "--out",
        out2.to_str().ok_or("path")?,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no usable rate"));
    assert!(!out2.exists());
    Ok(())
}

/// The end-to-end check of issue 16: legs from `rerate::internals::gen` written as KAZOO 5.0's crossbar CSV
/// export and as `/cdrs` listing pages (`rerate::internals::gen::crossbar`, KAZOO-exact), priced by a deck
/// written here, with one planted error of every reconciliation class, customer and reseller.
/// Every row is read, each CSV leg at its physical line, and the reconciliation reports exactly
/// the planted legs with their classes and money: no other row.
mod generated {
    use std::collections::BTreeMap;
    use std::path::Path;

    use rerate::internals::gen::crossbar::{
        has_reseller_columns, write_csv_export, write_listing_pages, KazooRow,
    };
    use rerate::internals::gen::{file_legs, GenLeg, GenOptions, Shape};

    use crate::util::*;

    /// The deck: one rate per leading digit, and 44 longer than 4. (prefix, units a minute,
    /// increment, minimum, surcharge units, no-charge seconds.) No weights: generated.
    const DECK: &[(&str, u64, u64, u64, u64, u64)] = &[
        ("1", 100, 6, 6, 0, 0),
        ("2", 400, 60, 60, 0, 0),
        ("3", 2262, 6, 60, 100, 6),
        ("4", 1200, 1, 0, 0, 0),
        ("44", 600, 60, 30, 0, 0),
        ("5", 22, 1, 0, 0, 0),
        ("6", 15000, 30, 30, 500, 0),
        ("7", 450, 60, 0, 0, 0),
        ("8", 3000, 6, 30, 0, 6),
        ("9", 60, 60, 60, 0, 0),
    ];

    fn deck_csv() -> String {
        let dollars = |u: u64| format!("{}.{:04}", u / 10_000, u % 10_000);
        let mut s = String::from(
            "prefix,rate_cost,rate_increment,rate_minimum,rate_surcharge,rate_nocharge_time,rate_name\r\n",
        );
        for (p, r, ri, rm, sur, nc) in DECK {
            s += &format!(
                "{p},{},{ri},{rm},{},{nc},R{p}\r\n",
                dollars(*r),
                dollars(*sur)
            );
        }
        s
    }

    /// The deck row for a callee, worked out here: 44 when the number starts +44, else the
    /// leading digit (every generated callee is + and 11 digits).
    fn deck_row(callee: &str) -> &'static (&'static str, u64, u64, u64, u64, u64) {
        let key = if callee.starts_with("+44") {
            "44"
        } else {
            &callee[1..2]
        };
        DECK.iter()
            .find(|r| r.0 == key)
            .expect("a deck row per digit")
    }

    /// A leg priced with its deck rate, as KAZOO would have priced it.
    fn deck_priced(mut leg: GenLeg) -> GenLeg {
        let (_, r, ri, rm, sur, nc) = *deck_row(&leg.callee);
        leg.rated = true;
        (leg.rate, leg.rate_increment, leg.rate_minimum) = (r, ri, rm);
        (leg.surcharge, leg.rate_nocharge_time) = (sur, nc);
        leg
    }

    type Want = BTreeMap<(String, String), (String, i64, i64)>;

    /// What is planted on a leg.
    enum Plant {
        /// No rate: the export's rate cell is 0, KAZOO charged nothing.
        Unrated,
        /// The leg carries 100 units more than the deck's rate, and KAZOO charged that.
        RateUp,
        /// The party's recorded cost is this, whatever KAZOO would have charged.
        Recorded(i64),
        /// The party's recorded cost is KAZOO's charge plus this.
        Off(i64),
    }

    /// Plants one error of every class on suitable legs; returns the rows and what must be
    /// reported: (call_id, party) -> (class, recorded, derived).
    fn plant(legs: Vec<GenLeg>) -> (Vec<KazooRow>, Want) {
        let mut rows: Vec<KazooRow> = legs
            .into_iter()
            .map(|l| KazooRow::new(deck_priced(l)))
            .collect();
        // (party, class, the customer pays per minute, the reseller does, what is planted)
        let plans = [
            ("customer", "unrated", true, false, Plant::Unrated),
            (
                "customer",
                "billing_type",
                false,
                false,
                Plant::Recorded(1234),
            ),
            ("customer", "billing_type", true, false, Plant::Recorded(0)),
            ("customer", "rate_mismatch", true, false, Plant::RateUp),
            ("customer", "rounding", true, false, Plant::Off(1)),
            ("customer", "mismatch", true, false, Plant::Off(500)),
            ("reseller", "reseller_unrated", false, true, Plant::Unrated),
            (
                "reseller",
                "reseller_billing_type",
                false,
                false,
                Plant::Recorded(999),
            ),
            (
                "reseller",
                "reseller_rate_mismatch",
                false,
                true,
                Plant::RateUp,
            ),
            ("reseller", "reseller_rounding", false, true, Plant::Off(-1)),
            (
                "reseller",
                "reseller_mismatch",
                false,
                true,
                Plant::Off(700),
            ),
        ];
        let mut want = Want::new();
        let mut taken = std::collections::HashSet::new();
        for (party, class, customer_pm, reseller_pm, what) in plans {
            let reseller = party == "reseller";
            // An answered leg past its no-charge time (KAZOO charges it at the deck's rate),
            // of an account whose export has the reseller columns when the reseller's money
            // is planted.
            let fits = |r: &KazooRow| {
                (r.leg.account_billing == "per_minute") == customer_pm
                    && (r.leg.reseller_billing == "per_minute") == reseller_pm
                    && r.leg.talk > 0
                    && r.leg.talk > r.leg.rate_nocharge_time as i64
                    && (!reseller || has_reseller_columns(r.leg.acct_idx))
            };
            let k = (0..rows.len())
                .find(|&k| !taken.contains(&k) && fits(&rows[k]))
                .expect("the corpus has a leg for every class");
            taken.insert(k);
            let r = &mut rows[k];
            let pays = if reseller { reseller_pm } else { customer_pm };
            let derived = if pays { r.leg.call_cost() } else { 0 };
            let recorded = match what {
                Plant::Unrated => {
                    r.leg.rated = false;
                    0
                }
                Plant::RateUp => {
                    r.leg.rate += 100;
                    r.leg.call_cost()
                }
                Plant::Recorded(v) => v,
                Plant::Off(d) => derived + d,
            };
            if matches!(what, Plant::Recorded(_) | Plant::Off(_)) {
                match reseller {
                    false => r.recorded_cost = Some(recorded),
                    true => r.recorded_reseller_cost = Some(recorded),
                }
            }
            want.insert(
                (r.leg.call_id.clone(), party.to_owned()),
                (class.to_owned(), recorded, derived),
            );
        }
        (rows, want)
    }

    /// (call_id, party) -> (class, recorded, derived) of every reconciliation row.
    fn reported(out: &Path) -> Result<Want, Box<dyn std::error::Error>> {
        let mut m = Want::new();
        for (_, _, df) in read_dataset(&out.join("reconciliation")) {
            let s = |c: &str| df.column(c).and_then(|c| c.str().cloned());
            let i = |c: &str| df.column(c).and_then(|c| c.i64().cloned());
            let (id, party, class) = (s("call_id")?, s("party")?, s("class")?);
            let (rec, der) = (i("recorded_cost_units")?, i("derived_cost_units")?);
            for k in 0..df.height() {
                m.insert(
                    (
                        id.get(k).unwrap_or_default().to_owned(),
                        party.get(k).unwrap_or_default().to_owned(),
                    ),
                    (
                        class.get(k).unwrap_or_default().to_owned(),
                        rec.get(k).unwrap_or(i64::MIN),
                        der.get(k).unwrap_or(i64::MIN),
                    ),
                );
            }
        }
        Ok(m)
    }

    #[test]
    fn generated_exports_reconcile_to_exactly_the_planted_errors() -> TestResult {
        let opts = GenOptions {
            legs: 800,
            accounts: 4,
            account_skew: rerate::internals::gen::AccountSkew::Uniform,
            days: 2,
            seed: 16,
            files: 1,
            shape: Shape::KazooCsv,
            gzip: false,
            start_unix: 1_793_577_600,
            call_ids_start_unix: 1_793_577_600,
            header_every: 0,
            plant_errors: false,
        };
        let legs: Vec<GenLeg> = file_legs(&opts, 0, opts.legs).collect();
        let (rows, want) = plant(legs);
        assert_eq!(want.len(), 11, "one row per class and party");
        let dir = tempfile::tempdir()?;
        let deck = dir.path().join("deck.csv");
        std::fs::write(&deck, deck_csv())?;
        let mut by_account: BTreeMap<String, Vec<KazooRow>> = BTreeMap::new();
        for r in rows {
            by_account.entry(r.leg.account.clone()).or_default().push(r);
        }
        // Each CSV leg's physical line: the header is line 1.
        let mut lines: BTreeMap<String, i64> = BTreeMap::new();
        for shape in ["csv", "listing"] {
            let input = dir.path().join(shape);
            for (account, rows) in &by_account {
                let folder = input.join(format!("account_id={account}"));
                std::fs::create_dir_all(&folder)?;
                let reseller = has_reseller_columns(rows[0].leg.acct_idx);
                if shape == "csv" {
                    write_csv_export(rows, reseller, &folder.join("cdrs.csv"))?;
                    for (i, r) in rows.iter().enumerate() {
                        lines.insert(r.leg.call_id.clone(), i as i64 + 2);
                    }
                } else {
                    write_listing_pages(rows, reseller, &folder.join("cdrs.json"))?;
                }
            }
            let out = dir.path().join(format!("out-{shape}"));
            let o = rerate(&[
                "run",
                input.to_str().ok_or("path")?,
                "--rates",
                deck.to_str().ok_or("path")?,
                "--out",
                out.to_str().ok_or("path")?,
                "-q",
            ]);
            assert!(
                o.status.success(),
                "{shape}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let m = json_file(&out.join("manifest.json"));
            assert_eq!(m["counts"]["legs_written"], 800, "{shape}: {}", m["counts"]);
            assert_eq!(m["counts"]["rejected"], 0, "{shape}: {}", m["counts"]);
            let got = reported(&out)?;
            assert_eq!(got, want, "{shape}: exactly the planted rows");
            let r = &m["reconciliation"];
            assert_eq!(r["rows"], 11, "{shape}");
            assert_eq!(r["not_derived"], 0, "{shape}");
            // reconciliation_daily counts each party's rows.
            let mut customer = 0;
            let mut reseller = 0;
            for (_, _, df) in read_dataset(&out.join("reconciliation_daily")) {
                customer += df
                    .column("reported_legs")?
                    .i64()?
                    .iter()
                    .flatten()
                    .sum::<i64>();
                reseller += df
                    .column("reseller_reported_legs")?
                    .i64()?
                    .iter()
                    .flatten()
                    .sum::<i64>();
            }
            assert_eq!((customer, reseller), (6, 5), "{shape}");
            if shape == "csv" {
                let mut seen = 0;
                for (_, _, df) in read_dataset(&out.join("legs")) {
                    let ids = df.column("call_id")?.str()?;
                    let at = df.column("source_line")?.i64()?;
                    for k in 0..df.height() {
                        let id = ids.get(k).unwrap_or_default();
                        assert_eq!(at.get(k), lines.get(id).copied(), "{id}");
                        seen += 1;
                    }
                }
                assert_eq!(seen, 800);
            }
        }
        Ok(())
    }
}

/// One rule for "unrated" (`rate::is_unrated`), seen in the flag, the reconciliation class and
/// `daily.unrated_per_minute_legs`: a per_minute leg without a rate, where a CSV export's rate of
/// 0 is none (crossbar writes a missing rate as 0) and a JSON CDR's rate of 0 is a rate.
#[test]
fn a_rate_of_0_is_unrated_on_a_csv_export_and_a_rate_on_a_json_cdr() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input)?;
    let csv = std::fs::read_to_string(
        "fixtures/reconcile/5e1f0c2d3b4a59687766554433221100-cdrs-2026-11.csv",
    )?;
    let mut lines = csv.lines();
    let header = lines.next().ok_or("a header")?;
    let unrated = lines
        .find(|l| l.starts_with("201611-c-unrated,"))
        .ok_or("c-unrated")?;
    // The same leg with the rate a crossbar export writes when there is none: 0.
    let zero = unrated
        .replace("c-unrated", "c-rate-0")
        .replace(",per_minute,,", ",per_minute,0.0000,");
    assert_ne!(zero, unrated.replace("c-unrated", "c-rate-0"));
    std::fs::write(
        input.join("5e1f0c2d3b4a59687766554433221100-cdrs.csv"),
        format!("{header}\n{zero}\n"),
    )?;
    let json = std::fs::read_to_string("fixtures/reconcile/json_legs.ndjson")?;
    let j = json
        .lines()
        .find(|l| l.contains("\"j-unrated\""))
        .ok_or("j-unrated")?
        .replace("j-unrated", "j-rate-0")
        .replace("\"account_billing\"", "\"rate\":\"0\",\"account_billing\"");
    std::fs::write(input.join("legs.ndjson"), format!("{j}\n"))?;
    let out = dir.path().join("out");
    run_ok(&[s(&input), "--rates", DECK, "--out", s(&out), "-q"]);

    let legs = legs(&out);
    let flags = |id: &str| legs[id].flags.clone().unwrap_or_default();
    assert!(
        flags("c-rate-0").split(',').any(|f| f == "unrated"),
        "{legs:?}"
    );
    assert!(
        !flags("j-rate-0").split(',').any(|f| f == "unrated"),
        "{legs:?}"
    );
    let got = reported(&out);
    assert_eq!(
        got.get("c-rate-0").map(|r| r.0.as_str()),
        Some("unrated"),
        "{got:?}"
    );
    assert_ne!(
        got.get("j-rate-0").map(|r| r.0.as_str()),
        Some("unrated"),
        "{got:?}"
    );
    let unrated: i64 = read_dataset(&out.join("daily"))
        .iter()
        .map(|(_, _, df)| {
            df.column("unrated_per_minute_legs")
                .and_then(|c| c.i64().map(|c| c.iter().flatten().sum::<i64>()))
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(unrated, 1, "daily counts the legs flagged unrated");
    Ok(())
}
