//! `rerate gen --account-skew`: how the calls are shared among the accounts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::util::{ndjson_file, rerate, snapshot, TestResult};

/// Generates `legs` legs over `accounts` accounts and one day, and counts the legs of each
/// account (by `pvt_account_id`), largest first.
fn legs_per_account(dir: &Path, legs: &str, accounts: &str, skew: &[&str]) -> Vec<u64> {
    let mut args = vec![
        "gen",
        "--legs",
        legs,
        "--accounts",
        accounts,
        "--days",
        "1",
        "--files",
        "2",
        "--out",
        dir.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(skew);
    let o = rerate(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for f in ["cdrs-0000.ndjson", "cdrs-0001.ndjson"] {
        for leg in ndjson_file(&dir.join(f)) {
            let id = leg["pvt_account_id"].as_str().expect("pvt_account_id");
            // The CCV's account_id is the same account.
            assert_eq!(leg["custom_channel_vars"]["account_id"].as_str(), Some(id));
            *counts.entry(id.to_owned()).or_default() += 1;
        }
    }
    let mut v: Vec<u64> = counts.into_values().collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

/// Zipf at S = 1 over 4 accounts: weights 1, 1/2, 1/3, 1/4 add up to 25/12, so the shares are
/// 12/25, 6/25, 4/25 and 3/25: of 12,000 legs, 5,760, 2,880, 1,920 and 1,440. The accounts are
/// drawn per interaction (1-3 legs), at random from the seed, so each count lands within 5% of
/// its share (a standard deviation is about 1.5% of the largest).
#[test]
fn zipf_shares_the_legs_as_one_over_rank() -> TestResult {
    let dir = tempfile::tempdir()?;
    let got = legs_per_account(
        &dir.path().join("z"),
        "12000",
        "4",
        &["--account-skew", "zipf:1"],
    );
    assert_eq!(got.iter().sum::<u64>(), 12_000);
    for (n, expected) in got.iter().zip([5_760.0, 2_880.0, 1_920.0, 1_440.0]) {
        let off = (*n as f64 - expected) / expected;
        assert!(
            off.abs() < 0.05,
            "{got:?}: {n} is not within 5% of {expected}"
        );
    }
    Ok(())
}

/// Uniform (the default) gives each of 4 accounts a quarter: 3,000 of 12,000 legs, within 5%;
/// and `--account-skew uniform` writes the same bytes as no flag, as every corpus before it.
#[test]
fn uniform_is_the_default_and_even() -> TestResult {
    let dir = tempfile::tempdir()?;
    let got = legs_per_account(&dir.path().join("u"), "12000", "4", &[]);
    assert_eq!(got.len(), 4);
    for n in &got {
        assert!((2_850..=3_150).contains(n), "{got:?}");
    }
    legs_per_account(
        &dir.path().join("v"),
        "12000",
        "4",
        &["--account-skew", "uniform"],
    );
    assert!(snapshot(&dir.path().join("u")) == snapshot(&dir.path().join("v")));
    Ok(())
}

/// A steep skew over many accounts: at S = 2 over 50 accounts the first has
/// 1/H(50, 2) = 1/1.625133 = 61.5% of the calls; the 50th has 1/(2,500 * 1.625133) = 0.0246%,
/// about 1 leg in 4,000, so some tail accounts get none.
#[test]
fn steep_zipf_leaves_the_tail_small() -> TestResult {
    let dir = tempfile::tempdir()?;
    let got = legs_per_account(
        &dir.path().join("s"),
        "4000",
        "50",
        &["--account-skew", "zipf:2"],
    );
    assert_eq!(got.iter().sum::<u64>(), 4_000);
    let top = got[0] as f64 / 4_000.0;
    assert!((top - 0.615).abs() < 0.03, "{got:?}");
    assert!(got.len() < 50, "{got:?}: every account got a call");
    assert!(got[got.len() - 1] <= 3, "{got:?}");
    Ok(())
}

/// Anything but `uniform` or `zipf:S` with 0 < S <= 10 is refused with status 2, naming the
/// value, before anything is written.
#[test]
fn bad_skews_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    for bad in ["zipf:0", "zipf:-1", "zipf:x", "zipf:11", "pareto:1", "zipf"] {
        let out = dir.path().join("o");
        let o = rerate(&[
            "gen",
            "--legs",
            "10",
            "--account-skew",
            bad,
            "--out",
            out.to_str().ok_or("path")?,
        ]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(bad) && err.contains("zipf:S"), "{bad}: {err}");
        assert!(!out.exists(), "{bad}");
    }
    Ok(())
}

/// Two nights made with the same seed for other days share no call_id (merged, every leg is
/// kept); `--call-ids-from` the first night's day makes the first night's calls again.
#[test]
fn corpora_for_other_days_never_share_a_call_id_unless_asked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ids =
        |name: &str, extra: &[&str]| -> Result<BTreeSet<String>, Box<dyn std::error::Error>> {
            let out = dir.path().join(name);
            let mut args = vec![
                "gen", "--legs", "40", "--days", "1", "--files", "1", "--out",
            ];
            args.push(out.to_str().unwrap_or_default());
            args.extend_from_slice(extra);
            let o = rerate(&args);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let mut set = BTreeSet::new();
            for e in std::fs::read_dir(&out)? {
                for line in std::fs::read_to_string(e?.path())?.lines() {
                    let v: serde_json::Value = serde_json::from_str(line)?;
                    set.insert(v["call_id"].as_str().unwrap_or_default().to_owned());
                }
            }
            Ok(set)
        };
    let first = ids("n1", &["--start", "2026-11-01"])?;
    let second = ids("n2", &["--start", "2026-11-02"])?;
    let again = ids(
        "n3",
        &["--start", "2026-11-02", "--call-ids-from", "2026-11-01"],
    )?;
    assert_eq!(first.len(), 40);
    assert!(
        first.iter().all(|c| c.starts_with("20261101-")),
        "{first:?}"
    );
    assert!(first.is_disjoint(&second), "{first:?} {second:?}");
    assert_eq!(first, again);
    Ok(())
}
