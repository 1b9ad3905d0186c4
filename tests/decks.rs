//! Rate decks as KAZOO imports and chooses them (fixtures/decks, README there): the weight
//! KAZOO's import generates, numbers normalized with KAZOO's e164_converters (built in, or an
//! operator's system_config/number_manager), and the hotornot settings that change the choice.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::*;

/// call_id -> (deck_rate_name, deck_rate, deck_cost_units) of every leg.
type DeckPicks = BTreeMap<String, (Option<String>, Option<i64>, Option<i64>)>;

fn deck_picks(out: &Path) -> Result<DeckPicks, Box<dyn std::error::Error>> {
    let mut m = BTreeMap::new();
    for (_, _, df) in read_dataset(&out.join("legs")) {
        let ids = df.column("call_id")?.str()?;
        let name = df.column("deck_rate_name")?.str()?;
        let rate = df.column("deck_rate")?.i64()?;
        let cost = df.column("deck_cost_units")?.i64()?;
        for k in 0..df.height() {
            m.insert(
                ids.get(k).unwrap_or_default().to_owned(),
                (name.get(k).map(str::to_owned), rate.get(k), cost.get(k)),
            );
        }
    }
    Ok(m)
}

/// Runs `rerate run` on `inputs` with `args` into a temp folder and returns the deck's picks.
fn priced(
    inputs: &[&str],
    args: &[&str],
) -> Result<(tempfile::TempDir, DeckPicks, serde_json::Value), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("r");
    let mut all: Vec<&str> = inputs.to_vec();
    all.extend_from_slice(&["--out", out.to_str().ok_or("path")?, "-q"]);
    all.extend_from_slice(args);
    run_ok(&all);
    let picks = deck_picks(&out)?;
    let m = json_file(&out.join("manifest.json"));
    Ok((dir, picks, m))
}

fn pick(name: &str, rate: i64, cost: i64) -> (Option<String>, Option<i64>, Option<i64>) {
    (Some(name.to_owned()), Some(rate), Some(cost))
}

#[test]
fn a_blank_weight_is_generated_as_kazoos_import_does() -> TestResult {
    // UK-A's weight is 2*10 - trunc(trunc(0.06)/10000*100) = 20 < UK-B's 50: UK-A, 600 units
    // a minute; 61 s at hotornot's default minimum 60 and increment 60: 1200 units.
    let (_d, got, m) = priced(
        &["fixtures/decks/blank-weight.legs"],
        &["--rates", "fixtures/decks/blank-weight.deck.csv"],
    )?;
    assert_eq!(got["m3"], pick("UK-A", 600, 1200));
    // Both rows get KAZOO's document id XX-44, which a KAZOO import would store once: said.
    let issues = m["rate_deck_issues"].as_array().ok_or("issues")?;
    assert!(
        issues
            .iter()
            .any(|i| i["line"] == 3 && i["reason"].as_str().unwrap_or("").contains("XX-44")),
        "{issues:?}"
    );
    // hotornot's defaults are flags: a 30 s minimum and 6 s increment give 600 + 6 s more
    // (ceil(31/6) = 6 steps of 60 units) = 960.
    let (_d, got, _) = priced(
        &["fixtures/decks/blank-weight.legs"],
        &[
            "--rates",
            "fixtures/decks/blank-weight.deck.csv",
            "--default-rate-minimum",
            "30",
            "--default-rate-increment",
            "6",
        ],
    )?;
    assert_eq!(got["m3"], pick("UK-A", 600, 300 + 6 * 60));
    // sort_by_weight false: the higher cost, UK-B (900 a minute, 1800 for 61 s).
    let (_d, got, _) = priced(
        &["fixtures/decks/blank-weight.legs"],
        &[
            "--rates",
            "fixtures/decks/blank-weight.deck.csv",
            "--rate-sort",
            "cost",
        ],
    )?;
    assert_eq!(got["m3"], pick("UK-B", 900, 1800));
    Ok(())
}

#[test]
fn numbers_are_normalized_with_kazoos_default_converters() -> TestResult {
    // e1 4911564668: ten digits, but the fourth is 1, so not NANP: +4911564668, Germany.
    let (_d, got, m) = priced(
        &["fixtures/decks/e164.legs", "fixtures/decks/national.legs"],
        &["--rates", "fixtures/decks/e164.deck.csv"],
    )?;
    assert_eq!(got["e1"], pick("DE", 500, 500));
    assert_eq!(got["e2"], pick("US", 100, 100));
    assert_eq!(got["e3"], pick("DE", 500, 500));
    assert_eq!(got["e4"], pick("DE", 500, 500));
    // A leading 0 matches no default converter: no rate.
    assert_eq!(got["n1"], (None, None, None));
    assert_eq!(
        m["options"]["e164_converters"]["source"], "built-in",
        "{}",
        m["options"]
    );
    Ok(())
}

#[test]
fn an_operators_number_manager_converters_replace_the_defaults() -> TestResult {
    let (_d, got, m) = priced(
        &["fixtures/decks/e164.legs", "fixtures/decks/national.legs"],
        &[
            "--rates",
            "fixtures/decks/e164.deck.csv",
            "--e164-converters",
            "fixtures/decks/number_manager.config",
        ],
    )?;
    // 0301234567 -> +49301234567 by the operator's first converter.
    assert_eq!(got["n1"], pick("DE", 500, 500));
    assert_eq!(got["e2"], pick("US", 100, 100));
    // e1 matches none of the operator's converters: kept as dialled, its digits start 49.
    assert_eq!(got["e1"], pick("DE", 500, 500));
    let identity = m["options"]["e164_converters"]["identity"]
        .as_str()
        .unwrap_or_default();
    assert!(identity.starts_with("sha256:"), "{}", m["options"]);
    let (_d, _, m2) = priced(
        &["fixtures/decks/e164.legs"],
        &["--rates", "fixtures/decks/e164.deck.csv"],
    )?;
    assert_ne!(m2["options"]["e164_converters"]["identity"], identity);
    assert_eq!(
        m["options"]["rate_deck_identity"],
        m2["options"]["rate_deck_identity"]
    );

    // A converters file that cannot be used stops the run before anything is written.
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("nm.json");
    std::fs::write(
        &bad,
        r#"{"e164_converters": {"^(?<=0)1": {"prefix": "+"}}}"#,
    )?;
    let out = dir.path().join("r");
    let o = rerate(&[
        "run",
        "fixtures/decks/e164.legs",
        "--rates",
        "fixtures/decks/e164.deck.csv",
        "--e164-converters",
        bad.to_str().ok_or("path")?,
        "--out",
        out.to_str().ok_or("path")?,
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nm.json") && err.contains("cannot be used"),
        "{err}"
    );
    assert!(!out.exists());
    Ok(())
}

#[test]
fn hotornot_filter_list_is_a_flag() -> TestResult {
    // With caller_id_numbers in the filter list, a rate for callers from 1212 only is kept
    // for a caller from New York and dropped for one from elsewhere.
    let dir = tempfile::tempdir()?;
    let deck = dir.path().join("deck.csv");
    std::fs::write(
        &deck,
        "prefix,rate_cost,weight,rate_name,caller_id_numbers,iso_country_code\n\
         49,0.05,50,DE,,DE\n\
         49,0.02,10,DE-FROM-NY,1212,US\n",
    )?;
    let legs = dir.path().join("legs.ndjson");
    let leg = |id: &str, from: &str| {
        format!(
            "{{\"call_id\": \"{id}\", \"call_direction\": \"outbound\", \"caller_id_number\": \"{from}\", \"callee_id_number\": \"+4930123456\", \"billing_seconds\": 60, \"timestamp\": 63962308862, \"custom_channel_vars\": {{\"account_id\": \"a1\", \"account_billing\": \"per_minute\", \"rate\": \"200\"}}}}\n"
        )
    };
    std::fs::write(&legs, leg("ny", "2125550123") + &leg("la", "+13105550123"))?;
    let (l, d) = (legs.to_str().ok_or("path")?, deck.to_str().ok_or("path")?);
    // KAZOO's default filter list ignores caller_id_numbers: the lower weight wins for both.
    let (_d, got, m) = priced(&[l], &["--rates", d])?;
    assert_eq!(got["ny"], pick("DE-FROM-NY", 200, 200));
    assert_eq!(got["la"], pick("DE-FROM-NY", 200, 200));
    assert_eq!(
        m["options"]["hotornot"]["filters"],
        serde_json::json!(["direction", "route_options", "routes"])
    );
    let (_d, got, _) = priced(
        &[l],
        &[
            "--rates",
            d,
            "--hotornot-filter-list",
            "direction,route_options,routes,caller_id_numbers",
        ],
    )?;
    assert_eq!(got["ny"], pick("DE-FROM-NY", 200, 200));
    assert_eq!(got["la"], pick("DE", 500, 500));
    // An unknown filter is a usage error.
    let o = rerate(&[
        "run",
        l,
        "--rates",
        d,
        "--hotornot-filter-list",
        "direction,colour",
        "--out",
        dir.path().join("x").to_str().ok_or("path")?,
    ]);
    assert_eq!(o.status.code(), Some(2));
    Ok(())
}
