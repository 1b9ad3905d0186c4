//! Number normalization as KAZOO does it before a rate lookup: `knm_converters:normalize/1`
//! with the default `regex` converter (`knm_converter_regex:to_e164/1`).
//!
//! A number that starts with `+` is returned unchanged. Any other is tried against the
//! `e164_converters` regexes in the order of the JSON object's keys; the first that matches gives
//! `prefix ++ Root ++ suffix`, where Root is the last capture group that took part in the match
//! (Erlang's `re:run(N, Re, [{capture, all, binary}])` then `lists:last/1`: trailing groups that
//! did not take part are not returned, so Root is the highest-numbered group that matched, else
//! the whole match). A number that no regex matches is returned unchanged.
//!
//! KAZOO's defaults (`?DEFAULT_E164_CONVERTERS` in knm_converter_regex.erl), in this order:
//! `^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$` → `+1` (NANP), `^011(\d{5,})$|^00(\d{5,})$` → `+`
//! (international access codes), `^[2-9]\d{7,}$` → `+`. Operators replace them in
//! `system_config/number_manager` (`default.e164_converters`); [`E164Converters::from_json`]
//! reads that document.

use regex::bytes::{Regex, RegexBuilder};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

/// KAZOO's default converters, in the order `knm_converter_regex` lists them.
pub(crate) const DEFAULT_CONVERTERS: [(&str, &str); 3] = [
    (r"^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$", "+1"),
    (r"^011(\d{5,})$|^00(\d{5,})$", "+"),
    (r"^[2-9]\d{7,}$", "+"),
];

/// One converter: a regex and what surrounds its Root.
#[derive(Debug, Clone)]
struct Converter {
    pattern: String,
    regex: Regex,
    prefix: String,
    suffix: String,
}

/// An ordered list of `e164_converters`.
#[derive(Debug, Clone)]
pub struct E164Converters {
    rules: Vec<Converter>,
    /// Where they came from: `built-in` or the file's path.
    pub source: String,
}

/// Compiles a regex the way Erlang's `re` (PCRE, no `unicode` option) reads it: on bytes, `\d`
/// and `\w` ASCII only. PCRE features the `regex` crate lacks (look-around, back-references)
/// are an error naming the pattern.
pub(crate) fn compile_pcre(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .map_err(|e| format!("regex {pattern:?} cannot be used: {e}"))
}

impl Default for E164Converters {
    fn default() -> Self {
        let rules = DEFAULT_CONVERTERS
            .iter()
            .map(|(p, prefix)| Converter {
                pattern: (*p).to_owned(),
                regex: compile_pcre(p).expect("KAZOO's default converters compile"),
                prefix: (*prefix).to_owned(),
                suffix: String::new(),
            })
            .collect();
        E164Converters {
            rules,
            source: "built-in".into(),
        }
    }
}

/// A JSON value whose objects keep their keys in document order (KAZOO's `kz_json:get_keys/1`
/// returns them so, and the converters are tried in that order).
#[derive(Debug, Clone)]
enum Ordered {
    Object(Vec<(String, Ordered)>),
    Other(serde_json::Value),
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = m.next_entry::<String, Ordered>()? {
                    v.push((k, x));
                }
                Ok(Ordered::Object(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = s.next_element::<serde_json::Value>()? {
                    v.push(x);
                }
                Ok(Ordered::Other(serde_json::Value::Array(v)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Ordered, E> {
                Ok(Ordered::Other(serde_json::Value::String(s.to_owned())))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Ordered, E> {
                Ok(Ordered::Other(serde_json::Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Ordered, E> {
                Ok(Ordered::Other(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Ordered, E> {
                Ok(Ordered::Other(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Ordered, E> {
                Ok(Ordered::Other(
                    serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, Into::into),
                ))
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Other(serde_json::Value::Null))
            }
        }
        d.deserialize_any(V)
    }
}

impl Ordered {
    fn get(&self, key: &str) -> Option<&Ordered> {
        match self {
            Ordered::Object(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            Ordered::Other(_) => None,
        }
    }
}

impl E164Converters {
    /// Reads converters from JSON text: a whole `system_config/number_manager` document (its
    /// `default.e164_converters`), an object holding `e164_converters`, or the converters object
    /// itself (`{"REGEX": {"prefix": "+1", "suffix": ""}, ...}`). Errors name what is wrong:
    /// not JSON, no converters, a value that is not an object, a prefix or suffix that is not a
    /// string, a regex the engine cannot use.
    pub fn from_json(text: &str, source: &str) -> Result<Self, String> {
        let doc: Ordered = serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map_err(|e| format!("{source}: not JSON: {e}"))?;
        let conv = doc
            .get("default")
            .and_then(|d| d.get("e164_converters"))
            .or_else(|| doc.get("e164_converters"))
            .unwrap_or(&doc);
        let Ordered::Object(kv) = conv else {
            return Err(format!("{source}: e164_converters is not a JSON object"));
        };
        if kv.is_empty() {
            return Err(format!("{source}: e164_converters is empty"));
        }
        let mut rules = Vec::with_capacity(kv.len());
        for (pattern, v) in kv {
            // kz_json keeps a repeated key, but a lookup of its prefix finds the first: the
            // second copy converts exactly as the first, so it changes nothing.
            if rules.iter().any(|r: &Converter| &r.pattern == pattern) {
                continue;
            }
            let Ordered::Object(fields) = v else {
                return Err(format!(
                    "{source}: converter {pattern:?}: expected an object like {{\"prefix\": \"+\"}}"
                ));
            };
            let text = |name: &str| -> Result<String, String> {
                match fields.iter().find(|(k, _)| k == name).map(|(_, v)| v) {
                    None => Ok(String::new()),
                    Some(Ordered::Other(serde_json::Value::String(s))) => Ok(s.clone()),
                    Some(Ordered::Other(serde_json::Value::Number(n))) => Ok(n.to_string()),
                    Some(_) => Err(format!(
                        "{source}: converter {pattern:?}: {name} is not a string"
                    )),
                }
            };
            rules.push(Converter {
                regex: compile_pcre(pattern).map_err(|e| format!("{source}: {e}"))?,
                pattern: pattern.clone(),
                prefix: text("prefix")?,
                suffix: text("suffix")?,
            });
        }
        Ok(E164Converters {
            rules,
            source: source.to_owned(),
        })
    }

    /// Reads a converters file (see [`E164Converters::from_json`]).
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let source = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{source}: cannot read: {e}"))?;
        Self::from_json(&text, &source)
    }

    /// `knm_converter_regex:to_e164/1`: the number KAZOO looks rates up with.
    pub fn normalize(&self, number: &str) -> String {
        if number.starts_with('+') {
            return number.to_owned();
        }
        let hay = number.as_bytes();
        for r in &self.rules {
            let Some(caps) = r.regex.captures(hay) else {
                continue;
            };
            let root = (0..caps.len())
                .rev()
                .find_map(|i| caps.get(i))
                .map_or(&b""[..], |m| m.as_bytes());
            return format!("{}{}{}", r.prefix, String::from_utf8_lossy(root), r.suffix);
        }
        number.to_owned()
    }

    /// A stable identity of the converters in force: `sha256:` and the hex digest of each
    /// rule's regex, prefix and suffix in order (the same whatever the file's white space).
    pub fn identity(&self) -> String {
        let mut h = Sha256::new();
        for r in &self.rules {
            for part in [&r.pattern, &r.prefix, &r.suffix] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
        }
        hex_digest(h)
    }

    /// The rules as `(regex, prefix, suffix)`, in the order they are tried.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.rules
            .iter()
            .map(|r| (r.pattern.as_str(), r.prefix.as_str(), r.suffix.as_str()))
    }
}

/// `sha256:<64 hex digits>` of a finished hasher.
pub(crate) fn hex_digest(h: Sha256) -> String {
    let d = h.finalize();
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in d.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kazoo_default_converters() {
        let c = E164Converters::default();
        for (raw, want) in [
            // NANP: ten digits whose first and fourth are 2-9, with or without 1 / +1.
            ("2125550123", "+12125550123"),
            ("12125550123", "+12125550123"),
            // A 10-digit number whose fourth digit is 0 or 1 is not NANP: the third rule.
            ("4911564668", "+4911564668"),
            ("2121550123", "+2121550123"),
            // International access codes: the capture that matched is the Root.
            ("01149301234567", "+49301234567"),
            ("0049301234567", "+49301234567"),
            ("0049123", "+49123"),
            // Too short for 00/011 (5 digits at least after it), and starts with 0: unchanged.
            ("0049", "0049"),
            // + is never touched, not even its spaces.
            ("+44 20 7183 8750", "+44 20 7183 8750"),
            // Short codes and extensions: unchanged.
            ("911", "911"),
            ("1001", "1001"),
            // Punctuation is not removed, so no rule matches.
            ("(415) 555-0100", "(415) 555-0100"),
            ("anonymous", "anonymous"),
        ] {
            assert_eq!(c.normalize(raw), want, "{raw}");
        }
    }

    #[test]
    fn converters_come_from_the_system_config_document_in_key_order() -> Result<(), String> {
        // The whole document, as `GET /system_configs/number_manager` gives it. Key order
        // decides: "^\d{10}$" comes first here, so a NANP-looking number gets "+44".
        let doc = r#"{"_id": "number_manager", "default": {"reconcile_regex": "x",
            "e164_converters": {"^(\\d{10})$": {"prefix": "+44"},
                                "^(\\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$": {"prefix": "+1"},
                                "^0(\\d{9,})$": {"prefix": "+33", "suffix": ""}}}}"#;
        let c = E164Converters::from_json(doc, "doc")?;
        assert_eq!(c.normalize("2125550123"), "+442125550123");
        assert_eq!(c.normalize("12125550123"), "+12125550123");
        assert_eq!(c.normalize("0142000000"), "+440142000000");
        assert_eq!(c.normalize("01420000000"), "+331420000000");
        // No rule: unchanged (the defaults are replaced, not added to).
        assert_eq!(c.normalize("004930"), "004930");
        // Just the e164_converters object, or the object holding it.
        let inner = r#"{"^0(\\d{9,})$": {"prefix": "+33"}}"#;
        let a = E164Converters::from_json(inner, "a")?;
        let b = E164Converters::from_json(&format!("{{\"e164_converters\": {inner}}}"), "b")?;
        assert_eq!(a.normalize("0142000000"), "+33142000000");
        assert_eq!(a.identity(), b.identity());
        assert_ne!(a.identity(), c.identity());
        // The defaults written out as a document are the built-in ones.
        let d = r#"{"default": {"e164_converters": {
            "^(\\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$": {"prefix": "+1"},
            "^011(\\d{5,})$|^00(\\d{5,})$": {"prefix": "+"},
            "^[2-9]\\d{7,}$": {"prefix": "+"}}}}"#;
        assert_eq!(
            E164Converters::from_json(d, "d")?.identity(),
            E164Converters::default().identity()
        );
        Ok(())
    }

    /// KAZOO's three default converters written out by hand, without a regex engine.
    fn by_hand(s: &str) -> String {
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        let two_to_nine = |b: u8| (b'2'..=b'9').contains(&b);
        let nanp = |t: &str| {
            t.len() == 10
                && digits(t)
                && two_to_nine(t.as_bytes()[0])
                && two_to_nine(t.as_bytes()[3])
        };
        if s.starts_with('+') {
            return s.to_owned();
        }
        if nanp(s) {
            return format!("+1{s}");
        }
        if let Some(rest) = s.strip_prefix('1').filter(|r| nanp(r)) {
            return format!("+1{rest}");
        }
        for access in ["011", "00"] {
            if let Some(rest) = s.strip_prefix(access).filter(|r| r.len() >= 5 && digits(r)) {
                return format!("+{rest}");
            }
        }
        if s.len() >= 8 && digits(s) && two_to_nine(s.as_bytes()[0]) {
            return format!("+{s}");
        }
        s.to_owned()
    }

    proptest::proptest! {
        #[test]
        fn default_converters_agree_with_the_rules_written_out(
            s in "[+]?(1|00|011)?[0-9]{0,13}|[0-9 ()-]{0,14}"
        ) {
            proptest::prop_assert_eq!(E164Converters::default().normalize(&s), by_hand(&s));
        }
    }

    #[test]
    fn bad_converter_files_are_errors_that_say_why() {
        for (text, want) in [
            ("nope", "not JSON"),
            ("[1]", "not a JSON object"),
            ("{}", "empty"),
            (r#"{"^1": "+1"}"#, "expected an object"),
            (r#"{"^1": {"prefix": []}}"#, "prefix is not a string"),
            (r#"{"^(?=1)": {"prefix": "+"}}"#, "cannot be used"),
        ] {
            match E164Converters::from_json(text, "f.json") {
                Ok(_) => panic!("{text} was accepted"),
                Err(e) => assert!(e.contains(want) && e.starts_with("f.json"), "{text}: {e}"),
            }
        }
    }
}
