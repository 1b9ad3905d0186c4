//! Rate decks (KAZOO hotornot, the tasks CSV format) and the rate KAZOO would pick for a number.
//!
//! Selection, as hon_util does it: the dialled number is normalized to E.164; every prefix of its
//! digits is a candidate; rates whose direction does not match the leg's, or whose `routes`
//! regexes do not match the number, are dropped (a rate with no routes has the default route
//! `^\+?<prefix>.+$`); the longest prefix wins; on equal length the lower weight (default 100)
//! comes first, or with `--rate-sort cost` the higher rate_cost. Lookups go through a hash of
//! (prefix length, prefix digits), at most 18 probes per number whatever the deck's size.

use std::collections::HashMap;
use std::path::Path;

use regex::Regex;

/// How ties between rates of the same prefix length are broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateSort {
    /// Lower weight first (KAZOO's default).
    #[default]
    Weight,
    /// Higher rate_cost first.
    Cost,
}

/// One usable deck row, with money in units.
#[derive(Debug, Clone)]
pub struct Rate {
    pub prefix: String,
    pub name: Option<String>,
    /// rate_cost in units per minute (`dollars_to_units`).
    pub rate: i64,
    pub increment: i64,
    pub minimum: i64,
    /// rate_surcharge in units.
    pub surcharge: i64,
    pub nocharge: i64,
    pub direction: Option<String>,
    pub weight: i64,
    /// The deck's rate_cost in dollars, for `--rate-sort cost`.
    pub cost_dollars: f64,
    pub ratedeck_id: Option<String>,
    pub routes: Vec<Regex>,
    /// The row's line in the deck file.
    pub line: u64,
}

/// A deck row that could not be used, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeckIssue {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeckError {
    #[error("rate deck {path}: {message}")]
    Read { path: String, message: String },
    #[error("rate deck {path}: no usable rate ({issues} rows rejected; the first: line {first_line}: {first})")]
    Empty {
        path: String,
        issues: usize,
        first_line: u64,
        first: String,
    },
    #[error("rate deck {0}: no usable rate (the file has no data rows)")]
    NoRows(String),
    #[error("ratedeck map {path}, line {line}: {message}")]
    Map {
        path: String,
        line: u64,
        message: String,
    },
}

/// One deck: its rates and the prefix index.
#[derive(Debug, Default)]
struct Deck {
    rates: Vec<Rate>,
    /// (prefix length, prefix value) -> rate indices, best first.
    index: HashMap<(u8, u64), Vec<u32>>,
}

/// All decks of a run: the default one, the per-ratedeck ones, and which account uses which.
#[derive(Debug, Default)]
pub struct DeckSet {
    default: Deck,
    named: HashMap<String, Deck>,
    accounts: HashMap<String, String>,
    pub issues: Vec<DeckIssue>,
    pub rows: usize,
}

/// KAZOO's `dollars_to_units`: round(D * 10000), in doubles, half away from zero.
pub fn dollars_to_units(dollars: f64) -> i64 {
    (dollars * 10_000.0).round() as i64
}

/// The longest prefix rerate indexes (a u64 holds 18 decimal digits).
const MAX_PREFIX: usize = 18;

fn prefix_key(digits: &str) -> Option<(u8, u64)> {
    if digits.is_empty() || digits.len() > MAX_PREFIX || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse().ok().map(|v| (digits.len() as u8, v))
}

/// The E.164 form (`+` and digits) of a dialled number, as rerate normalizes it:
/// punctuation and spaces are dropped; `+...` is kept; `00...` and `011...` are international
/// prefixes and become `+...`; ten digits are a NANP national number (`+1` added); eleven digits
/// starting with 1 are NANP with the country code; anything shorter (extensions, short codes) or
/// otherwise national is kept as its digits, and matched against the deck's prefixes as is.
/// A SIP URI's user part (`+15551234567@realm`) is used. `None` when there are no digits.
pub fn normalize_e164(number: &str) -> Option<String> {
    let user = number
        .trim()
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap_or_default();
    let plus = user.starts_with('+');
    let digits: String = user.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let e164 = if plus {
        digits
    } else if let Some(rest) = digits.strip_prefix("011") {
        rest.to_owned()
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_owned()
    } else if digits.len() == 10 && !digits.starts_with(['0', '1']) {
        format!("1{digits}")
    } else {
        digits
    };
    (!e164.is_empty()).then(|| format!("+{e164}"))
}

impl Deck {
    fn finish(&mut self, sort: RateSort) {
        for (i, r) in self.rates.iter().enumerate() {
            if let Some(k) = prefix_key(&r.prefix) {
                self.index.entry(k).or_default().push(i as u32);
            }
        }
        let rates = &self.rates;
        for list in self.index.values_mut() {
            list.sort_by(|&a, &b| {
                let (ra, rb) = (&rates[a as usize], &rates[b as usize]);
                let by = match sort {
                    RateSort::Weight => ra.weight.cmp(&rb.weight),
                    RateSort::Cost => rb.cost_dollars.total_cmp(&ra.cost_dollars),
                };
                by.then(ra.line.cmp(&rb.line))
            });
        }
    }

    fn find(&self, e164: &str, direction: Option<&str>) -> Option<&Rate> {
        let digits = e164.trim_start_matches('+');
        let mut keys: Vec<(u8, u64)> = Vec::with_capacity(MAX_PREFIX);
        let mut v = 0u64;
        for (i, b) in digits.bytes().take(MAX_PREFIX).enumerate() {
            v = v * 10 + u64::from(b - b'0');
            keys.push((i as u8 + 1, v));
        }
        for key in keys.iter().rev() {
            let Some(list) = self.index.get(key) else {
                continue;
            };
            let hit = list.iter().map(|&i| &self.rates[i as usize]).find(|r| {
                let dir_ok = match (&r.direction, direction) {
                    (None, _) => true,
                    (Some(d), Some(leg)) => d.split(',').any(|x| x.trim() == leg),
                    (Some(_), None) => false,
                };
                let route_ok = if r.routes.is_empty() {
                    digits.len() > r.prefix.len()
                } else {
                    r.routes.iter().any(|re| re.is_match(e164))
                };
                dir_ok && route_ok
            });
            if hit.is_some() {
                return hit;
            }
        }
        None
    }
}

impl DeckSet {
    /// The rate KAZOO would pick for `number` on a leg of `account` going `direction`:
    /// the account's ratedeck when the map names one, else the default deck.
    pub fn find(
        &self,
        account: Option<&str>,
        number: &str,
        direction: Option<&str>,
    ) -> Option<&Rate> {
        let e164 = normalize_e164(number)?;
        let deck = account
            .and_then(|a| self.accounts.get(a))
            .and_then(|id| self.named.get(id))
            .unwrap_or(&self.default);
        deck.find(&e164, direction)
    }

    /// Loads a deck CSV; bad rows are kept as issues with their line numbers.
    pub fn load(path: &Path, sort: RateSort) -> Result<Self, DeckError> {
        let display = path.display().to_string();
        let read_err = |message: String| DeckError::Read {
            path: display.clone(),
            message,
        };
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| read_err(e.to_string()))?;
        let headers: Vec<String> = rdr
            .headers()
            .map_err(|e| read_err(e.to_string()))?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
            .collect();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let (Some(c_prefix), Some(c_cost)) = (col("prefix"), col("rate_cost")) else {
            return Err(read_err(format!(
                "the header must name prefix and rate_cost (found: {})",
                headers.join(", ")
            )));
        };
        let c = |n| col(n);
        let cols = [
            c("rate_increment"),
            c("rate_minimum"),
            c("rate_surcharge"),
            c("rate_nocharge_time"),
            c("direction"),
            c("weight"),
            c("rate_name"),
            c("ratedeck_id"),
            c("routes"),
        ];
        let mut set = DeckSet::default();
        for rec in rdr.records() {
            set.rows += 1;
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    set.issues.push(DeckIssue {
                        line,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let line = rec.position().map_or(0, |p| p.line());
            match parse_row(&rec, c_prefix, c_cost, &cols, line) {
                Ok(rate) => match rate.ratedeck_id.clone() {
                    Some(id) => set.named.entry(id).or_default().rates.push(rate),
                    None => set.default.rates.push(rate),
                },
                Err(reason) => set.issues.push(DeckIssue { line, reason }),
            }
        }
        let usable =
            set.default.rates.len() + set.named.values().map(|d| d.rates.len()).sum::<usize>();
        if usable == 0 {
            return Err(match set.issues.first() {
                Some(first) => DeckError::Empty {
                    path: display,
                    issues: set.issues.len(),
                    first_line: first.line,
                    first: first.reason.clone(),
                },
                None => DeckError::NoRows(display),
            });
        }
        set.default.finish(sort);
        for d in set.named.values_mut() {
            d.finish(sort);
        }
        Ok(set)
    }

    /// Loads `account_id,ratedeck_id` pairs (a header row is optional).
    pub fn load_account_map(&mut self, path: &Path) -> Result<(), DeckError> {
        let display = path.display().to_string();
        let err = |line: u64, message: String| DeckError::Map {
            path: display.clone(),
            line,
            message,
        };
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| err(0, e.to_string()))?;
        for rec in rdr.records() {
            let rec = rec.map_err(|e| err(e.position().map_or(0, |p| p.line()), e.to_string()))?;
            let line = rec.position().map_or(0, |p| p.line());
            let (Some(a), Some(d)) = (rec.get(0), rec.get(1)) else {
                return Err(err(
                    line,
                    "expected two columns: account_id,ratedeck_id".into(),
                ));
            };
            if line == 1 && a.eq_ignore_ascii_case("account_id") {
                continue;
            }
            if !self.named.contains_key(d) {
                return Err(err(
                    line,
                    format!("ratedeck {d:?} has no rates in the deck"),
                ));
            }
            self.accounts.insert(a.to_owned(), d.to_owned());
        }
        Ok(())
    }
}

fn parse_row(
    rec: &csv::StringRecord,
    c_prefix: usize,
    c_cost: usize,
    cols: &[Option<usize>; 9],
    line: u64,
) -> Result<Rate, String> {
    let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).filter(|v| !v.is_empty());
    let prefix = rec
        .get(c_prefix)
        .unwrap_or_default()
        .trim_start_matches('+')
        .to_owned();
    if prefix_key(&prefix).is_none() {
        return Err(format!(
            "prefix {:?} is not 1 to {MAX_PREFIX} digits",
            rec.get(c_prefix).unwrap_or_default()
        ));
    }
    let dollars = |name: &str, v: &str| -> Result<f64, String> {
        match v.parse::<f64>() {
            Ok(d) if d.is_finite() && d >= 0.0 => Ok(d),
            _ => Err(format!(
                "{name} {v:?} is not a non-negative amount in dollars"
            )),
        }
    };
    let int = |name: &str, c: Option<usize>, default: i64| -> Result<i64, String> {
        match get(c) {
            None => Ok(default),
            Some(v) => match v.parse::<i64>() {
                Ok(i) if i >= 0 => Ok(i),
                _ => Err(format!("{name} {v:?} is not a non-negative whole number")),
            },
        }
    };
    let cost_text = rec.get(c_cost).unwrap_or_default();
    if cost_text.is_empty() {
        return Err("rate_cost is empty".into());
    }
    let cost_dollars = dollars("rate_cost", cost_text)?;
    let surcharge = match get(cols[2]) {
        Some(v) => dollars_to_units(dollars("rate_surcharge", v)?),
        None => 0,
    };
    let direction = match get(cols[4]).map(str::to_ascii_lowercase) {
        None => None,
        Some(d) => {
            let all: Vec<&str> = d.split([',', ' ', ';']).filter(|x| !x.is_empty()).collect();
            if all.iter().any(|x| *x != "inbound" && *x != "outbound") {
                return Err(format!("direction {d:?} is not inbound, outbound or empty"));
            }
            (all.len() == 1).then(|| all[0].to_owned())
        }
    };
    let routes = match get(cols[8]) {
        None => vec![],
        Some(v) => {
            let list: Vec<String> = if v.starts_with('[') {
                serde_json::from_str(v)
                    .map_err(|e| format!("routes {v:?} is not a JSON list: {e}"))?
            } else {
                vec![v.to_owned()]
            };
            list.iter()
                .map(|r| Regex::new(r).map_err(|e| format!("route {r:?} is not a regex: {e}")))
                .collect::<Result<_, _>>()?
        }
    };
    Ok(Rate {
        prefix,
        name: get(cols[6]).map(str::to_owned),
        rate: dollars_to_units(cost_dollars),
        increment: match int("rate_increment", cols[0], 60)? {
            0 => 60,
            i => i,
        },
        minimum: int("rate_minimum", cols[1], 60)?,
        surcharge,
        nocharge: int("rate_nocharge_time", cols[3], 0)?,
        direction,
        weight: int("weight", cols[5], 100)?,
        cost_dollars,
        ratedeck_id: get(cols[7]).map(str::to_owned),
        routes,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deck(text: &str, sort: RateSort) -> Result<DeckSet, DeckError> {
        let dir = tempfile::tempdir().map_err(|e| DeckError::NoRows(e.to_string()))?;
        let p = dir.path().join("deck.csv");
        std::fs::write(&p, text).map_err(|e| DeckError::NoRows(e.to_string()))?;
        DeckSet::load(&p, sort)
    }

    #[test]
    fn numbers_normalize_to_e164() {
        for (raw, want) in [
            ("+44 20 7183 8750", Some("+442071838750")),
            ("00442071838750", Some("+442071838750")),
            ("011442071838750", Some("+442071838750")),
            ("4155550100", Some("+14155550100")),
            ("14155550100", Some("+14155550100")),
            ("(415) 555-0100", Some("+14155550100")),
            ("sip:+15551234567@realm.example", Some("+15551234567")),
            ("911", Some("+911")),
            ("anonymous", None),
        ] {
            assert_eq!(normalize_e164(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn dollars_become_units_as_kazoo_rounds_them() {
        assert_eq!(dollars_to_units(0.2262), 2262);
        assert_eq!(dollars_to_units(0.00005), 1);
        assert_eq!(dollars_to_units(0.0), 0);
    }

    #[test]
    fn longest_prefix_then_weight_or_cost_and_filters() -> Result<(), DeckError> {
        let text = "prefix,rate_cost,rate_increment,rate_minimum,rate_surcharge,direction,weight,rate_name,routes\n\
                    1,0.01,6,6,,,,US-ANY,\n\
                    1415,0.02,60,60,,,50,SF-A,\n\
                    1415,0.03,60,60,0.05,,10,SF-B,\n\
                    1415,0.04,60,60,,inbound,1,SF-IN,\n\
                    44,0.10,,,,,,UK,\n\
                    4420,0.20,,,,,,LONDON,\"[\"\"^\\\\+4420[78]\"\"]\"\n";
        let d = deck(text, RateSort::Weight)?;
        let name = |n: &str, dir: Option<&str>| d.find(None, n, dir).and_then(|r| r.name.clone());
        // Longest prefix; among equals the lowest weight that passes the direction filter.
        assert_eq!(
            name("+14155550100", Some("outbound")).as_deref(),
            Some("SF-B")
        );
        assert_eq!(
            name("+14155550100", Some("inbound")).as_deref(),
            Some("SF-IN")
        );
        assert_eq!(
            name("+12125550100", Some("outbound")).as_deref(),
            Some("US-ANY")
        );
        // Routes: LONDON only for 4420 7/8; other 4420 numbers fall back to UK.
        assert_eq!(name("+442071838750", None).as_deref(), Some("LONDON"));
        assert_eq!(name("+442031838750", None).as_deref(), Some("UK"));
        assert_eq!(name("+33142000000", None), None);
        let b = d
            .find(None, "+14155550100", Some("outbound"))
            .map(|r| (r.rate, r.surcharge, r.increment, r.minimum));
        assert_eq!(b, Some((300, 500, 60, 60)));
        // Defaults: increment 60, minimum 60.
        let uk = d
            .find(None, "+442031838750", None)
            .map(|r| (r.increment, r.minimum, r.weight));
        assert_eq!(uk, Some((60, 60, 100)));

        let by_cost = deck(text, RateSort::Cost)?;
        let n = by_cost
            .find(None, "+14155550100", Some("outbound"))
            .and_then(|r| r.name.clone());
        assert_eq!(
            n.as_deref(),
            Some("SF-B"),
            "0.03 beats 0.02 (SF-IN is inbound only)"
        );
        Ok(())
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_an_unusable_deck_is_an_error() -> Result<(), DeckError> {
        let d = deck(
            "prefix,rate_cost\n1,0.01\nabc,0.02\n44,-1\n33,\n",
            RateSort::Weight,
        )?;
        let issues: Vec<(u64, &str)> = d
            .issues
            .iter()
            .map(|i| (i.line, i.reason.as_str()))
            .collect();
        assert_eq!(issues.len(), 3);
        assert_eq!(issues[0].0, 3);
        assert!(issues[0].1.contains("prefix \"abc\""));
        assert_eq!(issues[1].0, 4);
        assert!(issues[1].1.contains("rate_cost \"-1\""));
        assert_eq!(issues[2].0, 5);
        assert!(matches!(
            deck("prefix,rate_cost\nx,1\n", RateSort::Weight),
            Err(DeckError::Empty { .. })
        ));
        assert!(matches!(
            deck("prefix,rate_cost\n", RateSort::Weight),
            Err(DeckError::NoRows(_))
        ));
        assert!(matches!(
            deck("foo,bar\n1,2\n", RateSort::Weight),
            Err(DeckError::Read { .. })
        ));
        Ok(())
    }

    #[test]
    fn accounts_use_their_ratedeck_else_the_default() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("deck.csv");
        std::fs::write(
            &p,
            "prefix,rate_cost,ratedeck_id,rate_name\n1,0.01,,DEFAULT\n1,0.05,gold,GOLD\n",
        )?;
        let mut d = DeckSet::load(&p, RateSort::Weight)?;
        let m = dir.path().join("map.csv");
        std::fs::write(&m, "account_id,ratedeck_id\nacc-gold,gold\n")?;
        d.load_account_map(&m)?;
        let n = |a: &str| {
            d.find(Some(a), "+14155550100", None)
                .and_then(|r| r.name.clone())
        };
        assert_eq!(n("acc-gold").as_deref(), Some("GOLD"));
        assert_eq!(n("acc-other").as_deref(), Some("DEFAULT"));
        std::fs::write(&m, "acc-x,silver\n")?;
        assert!(
            d.load_account_map(&m).is_err(),
            "an unknown ratedeck is an error"
        );
        Ok(())
    }
}
