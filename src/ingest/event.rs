//! A CHANNEL_DESTROY event saved straight off the message bus (`Call-ID`, `Billing-Seconds`,
//! `Custom-Channel-Vars`, `Event-Name`, ...) turned into the CDR document KAZOO's cdr app would
//! save from it, so that it reads as any stored CDR.
//!
//! `cdr_channel_destroy:prepare_and_save/3` moves a few custom channel variables out of
//! `Custom-Channel-Vars` (private keys, `Call-Priority`, `Recording-Url`, `E164-Destination`,
//! `E164-Origination`, `DID-Classifier`, a true `Is-Conference`, and `Call-Interaction-ID`, which
//! becomes `Interaction-Time`, `Interaction-Key` and `Interaction-Id`), then saves
//! `kz_json:normalize_jobj/1` of the result: every key, at every depth, with `-` turned to `_` and
//! upper case to lower case; null members dropped; where two keys normalize to the same name the
//! later value takes the place of the earlier (`kz_json:set_value/3` replaces in place).

use std::borrow::Cow;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::record::normalize_key;

/// The top-level key KAZOO's events carry the call id under.
const EVENT_CALL_ID: &str = "Call-ID";
const CCVS: &str = "Custom-Channel-Vars";
/// The custom channel variables `cdr_channel_destroy` moves to the top level when present.
const LEAKED_CCVS: &[&str] = &[
    "Recording-Url",
    "Call-Priority",
    "E164-Destination",
    "E164-Origination",
    "DID-Classifier",
];
const CALL_INTERACTION_ID: &str = "Call-Interaction-ID";

/// An object's members in document order, values as raw JSON text.
type Members<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            out.push((k, map.next_value::<&'de RawValue>()?));
        }
        Ok(out)
    }
}

fn members(text: &str) -> Result<Members<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let m = de.deserialize_map(MembersVisitor)?;
    de.end()?;
    Ok(m)
}

/// Whether an object whose keys are `keys` is a message-bus event: it has no `call_id` but a
/// `Call-ID` (KAZOO's AMQP spelling).
pub(crate) fn is_bus_event<'k>(mut keys: impl Iterator<Item = &'k str>) -> bool {
    keys.any(|k| k == EVENT_CALL_ID)
}

/// How deep an event may nest objects and arrays to be read: KAZOO's events nest 3 or 4 levels
/// (`Custom-Channel-Vars`, `Custom-Application-Vars`, a list in them). Normalizing recurses once
/// a level, so an event nested deeper is rejected ([`nests_deeper_than`]) rather than read.
pub(crate) const MAX_EVENT_DEPTH: usize = 64;

/// Whether the JSON `text` nests objects and arrays deeper than `max` levels. One pass over its
/// bytes, no recursion: brackets inside strings (escapes included) do not count.
pub(crate) fn nests_deeper_than(text: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The first member named `key` (`kz_json:get_value/2` on the decoded proplist).
fn get<'a>(m: &Members<'a>, key: &str) -> Option<&'a RawValue> {
    m.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// The CDR document KAZOO's cdr app saves from the event `text` (see the module doc), as JSON.
pub(crate) fn to_cdr(text: &str) -> Result<String, serde_json::Error> {
    let mut top = members(text)?;
    if let Some(ccv_raw) = get(&top, CCVS).filter(|v| v.get().starts_with('{')) {
        let mut ccvs = members(ccv_raw.get())?;
        let mut moved: Members = Vec::new();
        // update_ccvs/3: private keys go to the top.
        ccvs.retain(|(k, v)| {
            let private = k.starts_with('_') || k.starts_with("pvt_");
            if private {
                moved.push((k.clone(), *v));
            }
            !private
        });
        // maybe_leak_ccv/2, is_conference/3.
        for key in LEAKED_CCVS.iter().copied().chain(["Is-Conference"]) {
            let Some(v) = get(&ccvs, key) else { continue };
            if key == "Is-Conference" && v.get() != "true" && v.get() != "\"true\"" {
                continue;
            }
            if v.get() == "null" {
                continue;
            }
            moved.push((Cow::Borrowed(key), v));
            ccvs.retain(|(k, _)| k != key);
        }
        // set_interaction/3: "<gregorian seconds, 11 digits>-<key>".
        let mut interaction = None;
        if let Some(v) = get(&ccvs, CALL_INTERACTION_ID) {
            if let Ok(id) = serde_json::from_str::<String>(v.get()) {
                if let (Some(time), Some(key)) = (id.get(..11), id.get(12..)) {
                    if id.as_bytes().get(11) == Some(&b'-')
                        && time.bytes().all(|b| b.is_ascii_digit())
                    {
                        interaction = Some((
                            time.trim_start_matches('0').to_owned(),
                            key.to_owned(),
                            id.clone(),
                        ));
                    }
                }
            }
            ccvs.retain(|(k, _)| k != CALL_INTERACTION_ID);
        }
        let ccv_text = object_text(&ccvs);
        let ccv_owned: Box<RawValue> = RawValue::from_string(ccv_text)?;
        // The rest is built as text: the members borrow from `text` or from these strings.
        let mut out = String::with_capacity(text.len());
        let mut first_ccv = true;
        let mut rest: Vec<(String, String)> = Vec::with_capacity(top.len() + moved.len() + 3);
        for (k, v) in top.drain(..) {
            if k == CCVS {
                if first_ccv {
                    first_ccv = false;
                    rest.push((k.into_owned(), ccv_owned.get().to_owned()));
                } else {
                    rest.push((k.into_owned(), v.get().to_owned()));
                }
            } else {
                rest.push((k.into_owned(), v.get().to_owned()));
            }
        }
        for (k, v) in moved {
            set_value(&mut rest, k.into_owned(), v.get().to_owned());
        }
        if let Some((time, key, id)) = interaction {
            let time = if time.is_empty() {
                "0".to_owned()
            } else {
                time
            };
            set_value(&mut rest, "Interaction-Time".to_owned(), time);
            set_value(&mut rest, "Interaction-Key".to_owned(), json_string(&key));
            set_value(&mut rest, "Interaction-Id".to_owned(), json_string(&id));
        }
        normalize_into(&rest, &mut out)?;
        return Ok(out);
    }
    let rest: Vec<(String, String)> = top
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.get().to_owned()))
        .collect();
    let mut out = String::with_capacity(text.len());
    normalize_into(&rest, &mut out)?;
    Ok(out)
}

/// `kz_json:set_value/3` at the top: replaces the first member of that key, else appends.
fn set_value(m: &mut Vec<(String, String)>, key: String, value: String) {
    match m.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => m.push((key, value)),
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn object_text(m: &Members) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&json_string(k));
        s.push(':');
        s.push_str(v.get());
    }
    s.push('}');
    s
}

/// `kz_json:normalize_jobj/1` of an object given as (key, raw JSON value) members, written to
/// `out`.
fn normalize_into(m: &[(String, String)], out: &mut String) -> Result<(), serde_json::Error> {
    let mut norm: Vec<(String, String)> = Vec::with_capacity(m.len());
    for (k, v) in m {
        if v == "null" {
            continue;
        }
        let value = normalize_value(v)?;
        set_value(&mut norm, normalize_key(k), value);
    }
    out.push('{');
    for (i, (k, v)) in norm.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(k));
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    Ok(())
}

/// `normalize_value/1`: objects normalized, arrays element by element, scalars as they are.
fn normalize_value(raw: &str) -> Result<String, serde_json::Error> {
    let raw = raw.trim();
    match raw.as_bytes().first() {
        Some(b'{') => {
            let m: Vec<(String, String)> = members(raw)?
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.get().to_owned()))
                .collect();
            let mut out = String::with_capacity(raw.len());
            normalize_into(&m, &mut out)?;
            Ok(out)
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(raw)?;
            let mut out = String::from("[");
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&normalize_value(it.get())?);
            }
            out.push(']');
            Ok(out)
        }
        _ => Ok(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cdr_channel_destroy:prepare_and_save/3` then `kz_json:normalize_jobj/1`.
    #[test]
    fn an_event_becomes_the_cdr_the_cdr_app_saves() -> Result<(), serde_json::Error> {
        let event = r#"{"Event-Name":"CHANNEL_DESTROY","Call-ID":"c1","Billing-Seconds":"61","Custom-Channel-Vars":{"Account-ID":"a1","Rate":"100","Call-Interaction-ID":"63940000000-ab12","Recording-Url":"http://r","pvt_x":1,"Nothing":null},"Timestamp":63940000061,"Other-Leg-Call-ID":null}"#;
        let cdr: serde_json::Value = serde_json::from_str(&to_cdr(event)?)?;
        let want: serde_json::Value = serde_json::from_str(
            r#"{"event_name":"CHANNEL_DESTROY","call_id":"c1","billing_seconds":"61","custom_channel_vars":{"account_id":"a1","rate":"100"},"timestamp":63940000061,"recording_url":"http://r","pvt_x":1,"interaction_time":63940000000,"interaction_key":"ab12","interaction_id":"63940000000-ab12"}"#,
        )?;
        assert_eq!(cdr, want);
        Ok(())
    }

    /// kz_json:normalize/1 folds with set_value/3: a later key of the same normalized name
    /// replaces the earlier one's value, in the earlier one's place.
    #[test]
    fn nesting_is_measured_outside_strings() {
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(!nests_deeper_than(&deep(64), 64));
        assert!(nests_deeper_than(&deep(65), 64));
        // Brackets in strings, escaped quotes included, are text.
        let text = format!(r#"{{"a": "[[[\"[[[", "b": {}}}"#, deep(3));
        assert!(!nests_deeper_than(&text, 4));
        assert!(nests_deeper_than(&text, 3));
        // 300,000 levels: measured without recursion.
        assert!(nests_deeper_than(&deep(300_000), MAX_EVENT_DEPTH));
    }

    #[test]
    fn keys_that_normalize_alike_keep_the_later_value() -> Result<(), serde_json::Error> {
        let event =
            r#"{"Call-ID":"c1","Custom-Channel-Vars":{"Rate":"100","rate":"200","RATE":"300"}}"#;
        assert_eq!(
            to_cdr(event)?,
            r#"{"call_id":"c1","custom_channel_vars":{"rate":"300"}}"#
        );
        Ok(())
    }
}
