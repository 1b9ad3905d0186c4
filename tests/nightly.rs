//! The nightly job: exports cut by the legs' END time, merged night after night into one
//! dataset (`--mode merge`, the default), checked against an expectation computed here.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// `rerate run ARGS --out OUT -q` with `env` set.
fn run_into(out: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rerate"));
    cmd.arg("run")
        .args(args)
        .args(["--out", s(out), "-q"])
        .current_dir(root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the rerate binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Legs per partition date, from the folder's legs.
fn legs_per_date(out: &Path) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for row in legs(out).values() {
        *m.entry(row.date.clone()).or_default() += 1;
    }
    m
}

#[test]
fn nightly_midnight_a_leg_that_ends_after_midnight_joins_its_start_day() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let night = |n: u32| format!("fixtures/nightly-midnight/night-{n}.ndjson.nightly");
    let o = run_into(&out, &[&night(1)], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        legs_per_date(&out),
        BTreeMap::from([("2026-11-19".to_owned(), 10)])
    );
    let o = run_into(&out, &[&night(2)], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        legs_per_date(&out),
        BTreeMap::from([("2026-11-19".to_owned(), 11), ("2026-11-20".to_owned(), 5)])
    );
    let all = legs(&out);
    let straddle = all.get("straddle").ok_or("straddle")?;
    // 55 s at 100 units a minute, 60 s increments: one minute.
    assert_eq!(
        (straddle.date.as_str(), straddle.billed, straddle.cost),
        ("2026-11-19", Some(60), Some(100))
    );
    let m = json_file(&out.join("manifest.json"));
    assert_eq!(m["dataset"]["legs"], 16);
    assert_eq!(m["counts"]["legs_written"], 6);
    assert_eq!(m["merge"]["legs_read_back"], 10);
    assert_eq!(m["merge"]["legs_kept"], 10);
    // The daily report of the day the straddling leg joined is recomputed from all 11.
    let daily = read_dataset(&out.join("daily"));
    let day = daily
        .iter()
        .find(|(_, d, _)| d == "2026-11-19")
        .ok_or("daily 2026-11-19")?;
    assert_eq!(
        day.2
            .column("legs")?
            .cast(&polars::prelude::DataType::Int64)?
            .i64()?
            .get(0),
        Some(11)
    );

    // Night 2 again, or both nights at once: nothing changes.
    let before = snapshot(&out);
    for args in [vec![night(2)], vec![night(1), night(2)]] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run_into(&out, &args, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            snapshot(&out) == before,
            "rerunning {args:?} changed the dataset"
        );
    }
    Ok(())
}

/// Seconds of 2026-11-09 00:00 in New York (UTC-5 all month: daylight time ended on 1 November).
const BASE: i64 = 1_794_200_400;
const DAY: i64 = 86_400;
const NY_OFFSET: i64 = -5 * 3600;
const GREGORIAN_UNIX: i64 = 62_167_219_200;

/// One generated leg.
#[derive(Clone, Debug)]
struct Leg {
    call_id: String,
    interaction_id: String,
    account: &'static str,
    start: i64,
    duration: i64,
    billing: i64,
    /// Units per minute.
    rate: i64,
}

impl Leg {
    fn end(&self) -> i64 {
        self.start + self.duration
    }

    /// The day of its start in New York, as written in the partition.
    fn date(&self) -> String {
        day_name((self.start + NY_OFFSET).div_euclid(DAY))
    }

    /// KAZOO's charge with increment 60 and no minimum, surcharge or discount: whole minutes
    /// started, each at the rate.
    fn billed_and_cost(&self) -> (i64, i64) {
        let minutes = (self.billing + 59) / 60;
        (minutes * 60, minutes * self.rate)
    }

    fn json(&self) -> String {
        format!(
            r#"{{"call_id":"{}","interaction_id":"{}","timestamp":{},"duration_seconds":{},"billing_seconds":{},"call_direction":"outbound","callee_id_number":"+15551230000","channel_created_time":{},"custom_channel_vars":{{"account_id":"{}","account_billing":"per_minute","rate":"{}","rate_increment":"60","rate_minimum":"0"}}}}"#,
            self.call_id,
            self.interaction_id,
            self.end() + GREGORIAN_UNIX,
            self.duration,
            self.billing,
            self.start * 1_000_000,
            self.account,
            self.rate
        )
    }
}

/// Days since 1970-01-01 as YYYY-MM-DD (civil from days, H. Hinnant's algorithm).
fn day_name(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A small deterministic generator (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: i64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as i64
    }
}

/// Eight days of calls from BASE: a third start in the ten minutes before a New York midnight,
/// many last long enough to end after it, and every third call has a second leg starting up to
/// half an hour later (often on the next day, and exported a night later).
fn generate() -> Vec<Leg> {
    let mut r = Lcg(17);
    let mut legs = Vec::new();
    for i in 0..240 {
        let day = r.below(8);
        let start = if i % 3 == 0 {
            BASE + (day + 1) * DAY - 1 - r.below(600)
        } else {
            BASE + day * DAY + r.below(DAY)
        };
        let duration = if i % 7 == 0 { 20 } else { 30 + r.below(3600) };
        let billing = if i % 7 == 0 {
            0
        } else {
            duration - r.below(20)
        };
        let account = ["acct-east", "acct-west"][(i % 2) as usize];
        let rate = [100, 7, 13][(i % 3) as usize];
        let leg = Leg {
            call_id: format!("leg-{i}-a"),
            interaction_id: format!("call-{i}"),
            account,
            start,
            duration,
            billing,
            rate,
        };
        if i % 3 == 0 {
            let delay = r.below(1800);
            legs.push(Leg {
                call_id: format!("leg-{i}-b"),
                start: start + delay,
                duration: 60 + r.below(1200),
                billing: 30 + r.below(30),
                account: ["acct-east", "acct-west"][((i + 1) % 2) as usize],
                ..leg.clone()
            });
        }
        legs.push(leg);
    }
    legs
}

/// Night `k` (1-7): the legs that ended on New York day BASE+k, plus (an overlapping export)
/// those that ended in the last hour of the day before; night 1 also everything earlier.
fn night(legs: &[Leg], k: i64) -> Vec<&Leg> {
    let (from, to) = (BASE + k * DAY - 3600, BASE + (k + 1) * DAY);
    legs.iter()
        .filter(|l| (l.end() >= from || k == 1) && l.end() < to)
        .collect()
}

/// The legs exported by the end of night `k`.
fn exported(legs: &[Leg], k: i64) -> Vec<&Leg> {
    legs.iter()
        .filter(|l| l.end() < BASE + (k + 1) * DAY)
        .collect()
}

fn write_night(dir: &Path, legs: &[Leg], k: i64) -> Result<PathBuf, std::io::Error> {
    let path = dir.join(format!("night-{k}.ndjson"));
    let mut text = String::new();
    for l in night(legs, k) {
        text.push_str(&l.json());
        text.push('\n');
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Every leg in `must` is in the dataset once, in its account and New York start day, priced
/// right; every other leg in the dataset is one of `may`.
fn check_legs(out: &Path, must: &[&Leg], may: &[&Leg]) {
    let got = legs(out);
    let want: BTreeMap<&str, &Leg> = must
        .iter()
        .chain(may)
        .map(|l| (l.call_id.as_str(), *l))
        .collect();
    for l in must {
        assert!(got.contains_key(&l.call_id), "{} is missing", l.call_id);
    }
    for (id, row) in &got {
        let l = want
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{id} was never exported"));
        let (billed, cost) = l.billed_and_cost();
        assert_eq!(
            (row.account.as_str(), row.date.clone(), row.billed, row.cost),
            (l.account, l.date(), Some(billed), Some(cost)),
            "{id}"
        );
    }
}

/// The interactions: one row per call with a leg exported so far, in the partition of its
/// earliest leg, counting its legs exported so far; and the daily report's legs and cost per
/// account and day.
fn check_calls_and_daily(out: &Path, exported: &[&Leg]) -> TestResult {
    let mut want: BTreeMap<String, (String, String, i64)> = BTreeMap::new();
    let mut by_call: BTreeMap<&str, Vec<&Leg>> = BTreeMap::new();
    for l in exported {
        by_call.entry(&l.interaction_id).or_default().push(l);
    }
    for (id, legs) in &by_call {
        let first = legs
            .iter()
            .min_by_key(|l| (l.start, l.call_id.clone()))
            .ok_or("a leg")?;
        want.insert(
            (*id).to_owned(),
            (first.account.to_owned(), first.date(), legs.len() as i64),
        );
    }
    let mut got = BTreeMap::new();
    for (a, d, df) in read_dataset(&out.join("interactions")) {
        let ids = df.column("interaction_id")?.str()?.clone();
        let n = df.column("legs")?.i64()?.clone();
        for i in 0..df.height() {
            let id = ids.get(i).ok_or("id")?.to_owned();
            let row = (a.clone(), d.clone(), n.get(i).ok_or("legs")?);
            assert!(got.insert(id.clone(), row).is_none(), "{id} twice");
        }
    }
    assert_eq!(got, want, "interactions");

    let mut want: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for l in exported {
        let e = want.entry((l.account.to_owned(), l.date())).or_default();
        e.0 += 1;
        e.1 += l.billed_and_cost().1;
    }
    let mut got = BTreeMap::new();
    for (a, d, df) in read_dataset(&out.join("daily")) {
        let int = |c: &str| -> Result<Option<i64>, Box<dyn std::error::Error>> {
            Ok(df
                .column(c)?
                .cast(&polars::prelude::DataType::Int64)?
                .i64()?
                .get(0))
        };
        got.insert(
            (a, d),
            (int("legs")?.unwrap_or(0), int("cost_units")?.unwrap_or(0)),
        );
    }
    assert_eq!(got, want, "daily");
    Ok(())
}

#[test]
fn seven_nights_cut_by_end_time_in_new_york_add_up_night_after_night() -> TestResult {
    let legs = generate();
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let tz = ["--tz", "America/New_York"];
    let mut crossing = 0;
    let mut snapshots = Vec::new();
    for k in 1..=7 {
        let file = write_night(dir.path(), &legs, k)?;
        crossing += night(&legs, k)
            .iter()
            .filter(|l| day_name((l.end() + NY_OFFSET).div_euclid(DAY)) != l.date())
            .count();
        let o = run_into(&out, &[s(&file), tz[0], tz[1]], &[]);
        assert!(o.status.success(), "night {k}: {}", stderr(&o));
        let so_far = exported(&legs, k);
        check_legs(&out, &so_far, &[]);
        check_calls_and_daily(&out, &so_far)?;
        let m = json_file(&out.join("manifest.json"));
        assert_eq!(m["dataset"]["legs"], so_far.len(), "night {k}");
        assert_eq!(m["counts"]["balanced"], true);
        snapshots.push(snapshot(&out));
    }
    assert!(
        crossing > 20,
        "{crossing} legs end on a later day than they start"
    );

    // Any night again changes nothing, byte for byte.
    let last = snapshots.last().cloned().unwrap_or_default();
    for k in [3, 7, 1] {
        let file = dir.path().join(format!("night-{k}.ndjson"));
        let o = run_into(&out, &[s(&file), tz[0], tz[1]], &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            snapshot(&out) == last,
            "rerunning night {k} changed the dataset"
        );
        let m = json_file(&out.join("manifest.json"));
        assert_eq!(m["counts"]["legs_written"], 0);
        assert_eq!(
            m["counts"]["already_in_dataset"],
            m["counts"]["records_read"]
        );
    }
    Ok(())
}

/// Nights 1 and 2 of the generated week in a fresh folder, and night 3's file.
fn two_nights(dir: &Path, legs: &[Leg]) -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    let out = dir.join("out");
    for k in 1..=2 {
        let file = write_night(dir, legs, k)?;
        let o = run_into(&out, &[s(&file), "--tz", "America/New_York"], &[]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    Ok((out, write_night(dir, legs, 3)?))
}

#[test]
fn a_cut_short_gzip_night_commits_what_it_read_exits_3_and_strict_commits_nothing() -> TestResult {
    let legs = generate();
    let dir = tempfile::tempdir()?;
    let (out, night3) = two_nights(dir.path(), &legs)?;
    let text = std::fs::read(&night3)?;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&text)?;
    let gz = enc.finish()?;
    let cut = dir.path().join("night-3.ndjson.gz");
    std::fs::write(&cut, &gz[..gz.len() * 2 / 3])?;
    let tz = ["--tz", "America/New_York"];

    // --strict: nothing committed, exit 2.
    let before = snapshot(&out);
    let manifest = std::fs::read(out.join("manifest.json"))?;
    let o = run_into(&out, &[s(&cut), tz[0], tz[1], "--strict"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("night-3.ndjson.gz"), "{}", stderr(&o));
    assert!(snapshot(&out) == before);
    assert_eq!(std::fs::read(out.join("manifest.json"))?, manifest);

    // Without: what was read is committed, the file is named, exit 3; nothing is lost.
    let o = run_into(&out, &[s(&cut), tz[0], tz[1]], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("night-3.ndjson.gz") && stderr(&o).contains("read only in part"),
        "{}",
        stderr(&o)
    );
    let m = json_file(&out.join("manifest.json"));
    let partial = m["partial_inputs"].as_array().ok_or("partial_inputs")?;
    assert_eq!(partial.len(), 1);
    assert!(partial[0]["file"]
        .as_str()
        .unwrap_or("")
        .ends_with("night-3.ndjson.gz"));
    assert_eq!(partial[0]["code"], "unreadable_input");
    let so_far = exported(&legs, 2);
    let tonight = night(&legs, 3);
    check_legs(&out, &so_far, &tonight);
    let read = m["counts"]["legs_written"].as_u64().unwrap_or(0);
    assert!(
        read > 0 && (read as usize) < tonight.len(),
        "{read} legs read"
    );

    // The whole night afterwards completes the dataset.
    let o = run_into(&out, &[s(&night3), tz[0], tz[1]], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let all = exported(&legs, 3);
    check_legs(&out, &all, &[]);
    check_calls_and_daily(&out, &all)?;
    Ok(())
}

#[test]
fn a_dataset_refuses_another_tz_and_an_unbalanced_run_commits_nothing() -> TestResult {
    let legs = generate();
    let dir = tempfile::tempdir()?;
    let (out, night3) = two_nights(dir.path(), &legs)?;
    let before = snapshot(&out);
    let manifest = std::fs::read(out.join("manifest.json"))?;
    let unchanged = |what: &str| -> TestResult {
        assert!(snapshot(&out) == before, "{what} changed the dataset");
        assert_eq!(
            std::fs::read(out.join("manifest.json"))?,
            manifest,
            "{what}"
        );
        assert!(!out.join(".rerate-staging").exists());
        Ok(())
    };

    // Another --tz (or none: UTC) is refused before any work, naming both values.
    for tz in [vec!["--tz", "UTC"], vec![]] {
        let mut args = vec![s(&night3)];
        args.extend(tz);
        let o = run_into(&out, &args, &[]);
        assert_eq!(o.status.code(), Some(2));
        let e = stderr(&o);
        assert!(
            e.contains("--tz America/New_York")
                && e.contains("--tz UTC")
                && e.contains("--mode replace-all"),
            "{e}"
        );
        unchanged("a refused --tz")?;
    }
    let m = json_file(&out.join("manifest.json"));
    assert_eq!(m["definition"]["--tz"], "America/New_York");
    assert_eq!(m["definition"]["--rounding"], "kazoo");
    // A deck changes the price: refused too.
    let o = run_into(
        &out,
        &[
            s(&night3),
            "--tz",
            "America/New_York",
            "--rates",
            "fixtures/reconcile/ratedeck.csv",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--rates (none)"), "{}", stderr(&o));
    unchanged("a refused deck")?;

    // The counts made not to balance (a hook of debug builds): exit 2, nothing committed.
    let o = run_into(
        &out,
        &[s(&night3), "--tz", "America/New_York"],
        &[("RERATE_TEST_UNBALANCE", "1")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("do not balance"), "{}", stderr(&o));
    unchanged("an unbalanced run")?;

    // replace-all may change the definition: the dataset is rebuilt from this input alone.
    let o = run_into(&out, &[s(&night3), "--mode", "replace-all"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json_file(&out.join("manifest.json"));
    assert_eq!(m["definition"]["--tz"], "UTC");
    assert_eq!(m["dataset"]["legs"], night(&legs, 3).len());
    Ok(())
}

#[test]
fn a_conflicting_copy_in_another_night_is_decided_by_the_data_in_either_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let leg = Leg {
        call_id: "c1".into(),
        interaction_id: "i1".into(),
        account: "acct-east",
        start: BASE + 3600,
        duration: 100,
        billing: 90,
        rate: 100,
    };
    let write = |name: &str, l: &Leg| -> Result<PathBuf, std::io::Error> {
        let p = dir.path().join(name);
        std::fs::write(&p, l.json() + "\n")?;
        Ok(p)
    };
    let first = write("a.ndjson", &leg)?;
    // The same timestamp, another rate: a conflict the copies' data decide (here the rate-7
    // copy wins), whichever night brings it.
    let tie = write(
        "b.ndjson",
        &Leg {
            rate: 7,
            ..leg.clone()
        },
    )?;
    // An earlier timestamp: the dataset's later copy stays.
    let older = write(
        "c.ndjson",
        &Leg {
            duration: 50,
            rate: 13,
            ..leg.clone()
        },
    )?;
    for (name, nights) in [
        ("in order", [(&first, 100), (&tie, 7), (&older, 7)]),
        ("tie first", [(&tie, 7), (&first, 7), (&older, 7)]),
    ] {
        let out = dir.path().join(name);
        for (file, rate) in nights {
            let o = run_into(&out, &[s(file)], &[]);
            assert!(o.status.success(), "{}", stderr(&o));
            let got = legs(&out);
            assert_eq!(got.len(), 1);
            assert_eq!(
                got["c1"].cost,
                Some(2 * rate),
                "{name}: after {}",
                file.display()
            );
        }
        let m = json_file(&out.join("manifest.json"));
        assert_eq!(m["counts"]["conflict_call_ids"], serde_json::json!(["c1"]));
        assert_eq!(m["counts"]["conflicting_dropped"], 1);
        let set: BTreeSet<String> = legs(&out).into_keys().collect();
        assert_eq!(set, BTreeSet::from(["c1".to_owned()]));
    }
    Ok(())
}

#[test]
fn with_a_deck_the_e164_converters_and_rate_choice_are_kept_too() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let deck = ["--rates", "fixtures/reconcile/ratedeck.csv"];
    let input = "fixtures/reconcile/json_legs.ndjson";
    let o = run_into(&out, &[input, deck[0], deck[1]], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = json_file(&out.join("manifest.json"));
    assert!(m["definition"]["--rates"]
        .as_str()
        .is_some_and(|d| d.starts_with("sha256:")));
    assert!(m["definition"]["--e164-converters"]
        .as_str()
        .is_some_and(|d| d.starts_with("sha256:")));
    let before = snapshot(&out);
    for (flag, args) in [
        (
            "--e164-converters",
            vec!["--e164-converters", "fixtures/decks/number_manager.config"],
        ),
        ("--rate-sort", vec!["--rate-sort", "cost"]),
        (
            "--default-rate-minimum",
            vec!["--default-rate-minimum", "30"],
        ),
    ] {
        let mut all = vec![input, deck[0], deck[1]];
        all.extend(args);
        let o = run_into(&out, &all, &[]);
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
        assert!(snapshot(&out) == before, "{flag} changed the dataset");
    }
    Ok(())
}
