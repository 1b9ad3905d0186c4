//! One CDR object, read in a single pass into borrowed slots (no `serde_json::Value` tree), then
//! checked and turned into typed cells.
//!
//! Known keys land in fixed slots; custom_channel_vars is kept whole as raw text and read a
//! second time for its named fields; unknown top-level keys are kept, raw, for the `extra`
//! column. Checking decides whether the record is a leg or a reject, before anything is pushed
//! into the columns, so a rejected record leaves no trace in them.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::json_text::compact;
use super::value::{kz_to_integer, Val};
use crate::schema::{
    IntRole, IntSource, CCV_STR, INT_FIELDS, I_CHANNEL_CREATED_TIME, I_DURATION_SECONDS,
    I_TIMESTAMP, JSON_COLS, J_CCV, J_EXTRA, TOP_STR,
};
use crate::time::{gregorian_to_unix_micros, ReportTz};

pub const N_TOP: usize = TOP_STR.len();
pub const N_CCV: usize = CCV_STR.len();
pub const N_INT: usize = INT_FIELDS.len();
pub const N_JSON: usize = JSON_COLS.len();

/// Where a key's value goes.
#[derive(Clone, Copy, Debug)]
enum Slot {
    TopStr(usize),
    Int(usize),
    /// custom_channel_vars, custom_application_vars, custom_sip_headers (index into JSON_COLS).
    Json(usize),
    /// An identity CCV found at the top level (index into CCV_STR).
    Alias(usize),
    CcvStr(usize),
    CallInteractionId,
    /// Unknown keys that are still read: kept in `extra`, and also used.
    PvtCreated,
    Data,
}

/// The field-name lookup of every record's every key: foldhash's fixed-seed fast hash (the
/// keys are our own field names, so no seed is needed against flooding; foldhash is hashbrown's
/// and polars' own, already in the build, and faster than SipHash on such short strings).
type KeyMap = HashMap<&'static str, Slot, foldhash::fast::FixedState>;

static TOP_KEYS: LazyLock<KeyMap> = LazyLock::new(|| {
    let mut m = KeyMap::default();
    for (i, k) in TOP_STR.iter().enumerate() {
        m.insert(*k, Slot::TopStr(i));
    }
    for (i, f) in INT_FIELDS.iter().enumerate() {
        if f.source != IntSource::Ccv {
            m.insert(f.name, Slot::Int(i));
        }
    }
    for (j, k) in JSON_COLS.iter().enumerate().take(J_EXTRA) {
        m.insert(*k, Slot::Json(j));
    }
    for k in crate::schema::top_level_identity_aliases() {
        if let Some(i) = CCV_STR.iter().position(|c| *c == k) {
            m.insert(k, Slot::Alias(i));
        }
    }
    m.insert("pvt_created", Slot::PvtCreated);
    m.insert("data", Slot::Data);
    m
});

static CCV_KEYS: LazyLock<KeyMap> = LazyLock::new(|| {
    let mut m = KeyMap::default();
    for (i, k) in CCV_STR.iter().enumerate() {
        m.insert(*k, Slot::CcvStr(i));
    }
    for (i, f) in INT_FIELDS.iter().enumerate() {
        if f.source == IntSource::Ccv {
            m.insert(f.name, Slot::Int(i));
        }
    }
    m.insert("call_interaction_id", Slot::CallInteractionId);
    m
});

/// KAZOO reads a CCV under its own name or its normalized one ("Rate-Increment" and
/// "rate_increment"); stored CDRs use the normalized form.
fn ccv_slot(key: &str) -> Option<Slot> {
    if let Some(s) = CCV_KEYS.get(key) {
        return Some(*s);
    }
    if key.bytes().any(|b| b == b'-' || b.is_ascii_uppercase()) {
        let norm: String = key
            .chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        return CCV_KEYS.get(norm.as_str()).copied();
    }
    None
}

/// The keys of the objects read so far, in the order they came, with their slots. Exports
/// write every record's keys in much the same order, so the next key is nearly always one of the
/// next few here: a comparison or two instead of hashing and probing the map. A record that
/// lacks a key resyncs a step later; one with a new key adds it where it came.
#[derive(Default)]
struct KeyOrder(Vec<(Box<str>, Option<Slot>)>);

/// How far ahead of the cursor a key is looked for.
const LOOKAHEAD: usize = 4;
/// Past this many keys (objects with ever-new keys), the order starts again from empty.
const MAX_KEYS: usize = 512;

impl KeyOrder {
    #[inline]
    fn slot(
        &mut self,
        cursor: &mut usize,
        key: &str,
        lookup: impl FnOnce(&str) -> Option<Slot>,
    ) -> Option<Slot> {
        let at = (*cursor).min(self.0.len());
        let end = (at + LOOKAHEAD).min(self.0.len());
        if let Some(j) = self.0[at..end].iter().position(|(k, _)| k.as_ref() == key) {
            *cursor = at + j + 1;
            return self.0[at + j].1;
        }
        let s = lookup(key);
        if self.0.len() >= MAX_KEYS {
            self.0.clear();
        }
        let at = at.min(self.0.len());
        self.0.insert(at, (Box::from(key), s));
        *cursor = at + 1;
        s
    }
}

/// One key order for top-level objects and one for custom_channel_vars, per parsing thread.
#[derive(Default)]
struct KeyOrders {
    top: KeyOrder,
    ccv: KeyOrder,
}

thread_local! {
    static KEY_ORDERS: RefCell<KeyOrders> = RefCell::default();
}

/// A JSON object key, borrowed when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Val::deserialize(d)? {
            Val::Str(s) => Ok(Key(s)),
            _ => Err(de::Error::custom("object key is not a string")),
        }
    }
}

/// One object's slots, as read.
pub struct RawCdr<'a> {
    top: [Option<Val<'a>>; N_TOP],
    ints: [Option<Val<'a>>; N_INT],
    ccv: [Option<Val<'a>>; N_CCV],
    alias: [Option<Val<'a>>; N_CCV],
    json: [Option<&'a RawValue>; N_JSON],
    call_interaction_id: Option<Val<'a>>,
    pvt_created: Option<Val<'a>>,
    data: Option<&'a RawValue>,
    extra: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// custom_channel_vars was present but not an object.
    ccv_not_object: bool,
}

impl<'a> RawCdr<'a> {
    fn empty() -> Self {
        RawCdr {
            top: std::array::from_fn(|_| None),
            ints: std::array::from_fn(|_| None),
            ccv: std::array::from_fn(|_| None),
            alias: std::array::from_fn(|_| None),
            json: [None; N_JSON],
            call_interaction_id: None,
            pvt_created: None,
            data: None,
            extra: Vec::new(),
            ccv_not_object: false,
        }
    }

    /// Reads one JSON object. Errors are JSON syntax errors (or a value that is not an object).
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        KEY_ORDERS.with_borrow_mut(|orders| {
            let mut cdr = RawCdr::empty();
            let mut de = serde_json::Deserializer::from_str(text);
            de.deserialize_map(TopVisitor(&mut cdr, &mut orders.top))?;
            de.end()?;
            if let Some(raw) = cdr.json[J_CCV] {
                let t = raw.get();
                if t.starts_with('{') {
                    let mut de = serde_json::Deserializer::from_str(t);
                    de.deserialize_map(CcvVisitor(&mut cdr, &mut orders.ccv))?;
                } else if t != "null" {
                    cdr.ccv_not_object = true;
                }
            }
            Ok(cdr)
        })
    }

    /// Whether this object is a crossbar listing row (a `GET /cdrs` page item: the CSV export's
    /// columns as keys) rather than a CDR document; decided by its keys
    /// ([`super::crossbar::is_listing_keys`]).
    pub fn is_listing_row(&self) -> bool {
        let call_direction = TOP_STR.iter().position(|k| *k == "call_direction");
        super::crossbar::is_listing_keys(
            self.json[J_CCV].is_some(),
            call_direction.is_some_and(|i| self.top[i].is_some()),
            self.extra.iter().map(|(k, _)| k.as_ref()),
        )
    }

    /// Whether the object is the `data` of a crossbar `/cdrs/summary` response: only the keys
    /// `inbound` and `outbound`, each an object (domain -> classifier -> billable seconds). The
    /// shape comes from the `format_summary` list of `cdrs/summarize_cdrs` (kazoo_modb's
    /// `cdrs.json` view) merged by `cb_cdrs:load_cdr_summary/1`: totals, not CDRs.
    pub fn is_cdr_summary(&self) -> bool {
        self.top.iter().all(Option::is_none)
            && self.ints.iter().all(Option::is_none)
            && self.json.iter().all(Option::is_none)
            && self.alias.iter().all(Option::is_none)
            && !self.extra.is_empty()
            && self.extra.iter().all(|(k, v)| {
                matches!(k.as_ref(), "inbound" | "outbound") && v.get().starts_with('{')
            })
    }

    /// The `data` member of a crossbar envelope: an object with `data` and no `call_id`.
    pub fn envelope_data(&self) -> Option<&'a RawValue> {
        match (&self.top[0], self.data) {
            (None, Some(d)) => Some(d),
            _ => None,
        }
    }
}

struct TopVisitor<'r, 'a>(&'r mut RawCdr<'a>, &'r mut KeyOrder);

impl<'de, 'r> Visitor<'de> for TopVisitor<'r, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a CDR object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let TopVisitor(cdr, order) = self;
        let mut cursor = 0;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let slot = order.slot(&mut cursor, &key, |k| TOP_KEYS.get(k).copied());
            match slot {
                Some(Slot::TopStr(i)) => cdr.top[i] = Some(map.next_value()?),
                Some(Slot::Int(i)) => cdr.ints[i] = Some(map.next_value()?),
                Some(Slot::Alias(i)) => cdr.alias[i] = Some(map.next_value()?),
                Some(Slot::Json(j)) => cdr.json[j] = Some(map.next_value()?),
                Some(Slot::PvtCreated) => {
                    let raw: &'de RawValue = map.next_value()?;
                    cdr.pvt_created = serde_json::from_str(raw.get()).ok();
                    cdr.extra.push((key, raw));
                }
                Some(Slot::Data) => {
                    let raw: &'de RawValue = map.next_value()?;
                    cdr.data = Some(raw);
                    cdr.extra.push((key, raw));
                }
                _ => {
                    let raw: &'de RawValue = map.next_value()?;
                    cdr.extra.push((key, raw));
                }
            }
        }
        Ok(())
    }
}

struct CcvVisitor<'r, 'a>(&'r mut RawCdr<'a>, &'r mut KeyOrder);

impl<'de, 'r> Visitor<'de> for CcvVisitor<'r, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a custom_channel_vars object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let CcvVisitor(cdr, order) = self;
        let mut cursor = 0;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let slot = order.slot(&mut cursor, &key, ccv_slot);
            match slot {
                Some(Slot::CcvStr(i)) => cdr.ccv[i] = Some(map.next_value()?),
                Some(Slot::Int(i)) => cdr.ints[i] = Some(map.next_value()?),
                Some(Slot::CallInteractionId) => cdr.call_interaction_id = Some(map.next_value()?),
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Warnings collected for one leg, written comma-separated in `rating_flags`.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Flags(String);

impl Flags {
    pub fn add(&mut self, flag: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(flag);
    }
    pub fn add_field(&mut self, prefix: &str, field: &str) {
        self.add(prefix);
        self.0.push(':');
        self.0.push_str(field);
    }
    pub fn as_option(&self) -> Option<&str> {
        (!self.0.is_empty()).then_some(self.0.as_str())
    }
}

/// A checked leg: every cell typed, ready to be pushed into the columns.
pub struct Leg<'a> {
    pub top: [Option<Cow<'a, str>>; N_TOP],
    pub ccv: [Option<Cow<'a, str>>; N_CCV],
    /// Integer fields; timestamp fields are already Unix microseconds.
    pub ints: [Option<i64>; N_INT],
    pub json: [Option<Cow<'a, str>>; N_JSON],
    pub start_us: Option<i64>,
    pub end_us: Option<i64>,
    pub date: Option<i32>,
    pub flags: Flags,
    /// What KAZOO recorded (the CSV export's cost and reseller_cost); None for JSON.
    pub recorded: [Option<i64>; 2],
}

/// Why a record is rejected; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectReason {
    /// A stable short code for counting (`missing_call_id`, `bad_billing_field`, ...).
    pub code: &'static str,
    pub message: String,
}

impl RejectReason {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        RejectReason {
            code,
            message: message.into(),
        }
    }
}

fn field_path(i: usize) -> String {
    let f = &INT_FIELDS[i];
    if f.source == IntSource::Ccv {
        format!("custom_channel_vars.{}", f.name)
    } else {
        f.name.to_owned()
    }
}

const MICROS: i64 = 1_000_000;

impl<'a> RawCdr<'a> {
    /// Checks the record and types its cells, or says why it is rejected.
    pub fn into_leg(self, tz: &ReportTz) -> Result<Leg<'a>, RejectReason> {
        let mut flags = Flags::default();
        let mut ints = [None; N_INT];
        for (i, v) in self.ints.iter().enumerate() {
            let Some(v) = v else { continue };
            let f = &INT_FIELDS[i];
            let parsed = kz_to_integer(v).and_then(|k| match (k, f.source) {
                (Some(k), IntSource::TopGregorian) => gregorian_to_unix_micros(k.value)
                    .map(|us| Some(super::value::KzInt { value: us, ..k }))
                    .ok_or(super::value::IntError::OutOfRange),
                _ => Ok(k),
            });
            match (parsed, f.role) {
                (Ok(Some(k)), _) => {
                    if k.rounded {
                        flags.add_field("decimal", f.name);
                    }
                    ints[i] = Some(k.value);
                }
                (Ok(None), _) => {}
                (Err(e), IntRole::Billing | IntRole::Rating) => {
                    return Err(RejectReason::new(
                        "bad_billing_field",
                        format!("field '{}': {} {e}", field_path(i), v.describe()),
                    ));
                }
                (Err(_), IntRole::Lenient) => flags.add_field("invalid", f.name),
            }
        }

        let mut top: [Option<Cow<'a, str>>; N_TOP] = std::array::from_fn(|_| None);
        for (dst, v) in top.iter_mut().zip(self.top) {
            *dst = v.and_then(Val::into_text);
        }
        check_call_id(top[0].as_deref(), "field")?;
        if top[1].is_none() {
            // The cdr app moves CCV call_interaction_id to interaction_id when it saves a CDR.
            top[1] = self.call_interaction_id.and_then(Val::into_text);
        }

        let mut ccv: [Option<Cow<'a, str>>; N_CCV] = std::array::from_fn(|_| None);
        for ((dst, v), alias) in ccv.iter_mut().zip(self.ccv).zip(self.alias) {
            *dst = v.or(alias).and_then(Val::into_text);
        }
        if ccv[0].as_deref().is_some_and(|a| a.trim().is_empty()) {
            ccv[0] = None;
        }
        if self.ccv_not_object {
            flags.add_field("invalid", "custom_channel_vars");
        }

        let mut json: [Option<Cow<'a, str>>; N_JSON] = std::array::from_fn(|_| None);
        for (dst, raw) in json.iter_mut().zip(self.json) {
            *dst = raw.map(|r| compact(r.get()));
        }
        if !self.extra.is_empty() {
            json[J_EXTRA] = Some(Cow::Owned(extra_json(&self.extra)));
        }

        let (start_us, end_us) = leg_times(&ints, self.pvt_created.as_ref(), &mut flags);
        let date = start_us.and_then(|us| tz.date_of(us));
        if start_us.is_none() {
            flags.add("no_start_time");
        }
        Ok(Leg {
            top,
            ccv,
            ints,
            json,
            start_us,
            end_us,
            date,
            flags,
            recorded: [None, None],
        })
    }
}

/// A record needs a call_id that is not blank; `what` names it in the message ("field" for
/// JSON, "column" for CSV).
pub fn check_call_id(call_id: Option<&str>, what: &str) -> Result<(), RejectReason> {
    match call_id {
        None => Err(RejectReason::new(
            "missing_call_id",
            format!("{what} 'call_id' is missing"),
        )),
        Some(s) if s.trim().is_empty() => Err(RejectReason::new(
            "empty_call_id",
            format!("{what} 'call_id' is empty"),
        )),
        Some(_) => Ok(()),
    }
}

/// start_time and end_time, in Unix microseconds.
///
/// start = channel_created_time, else timestamp - duration_seconds; end = start +
/// duration_seconds when the start came from channel_created_time, else timestamp. A stored
/// CouchDB document with neither falls back to its pvt_created (flagged).
fn leg_times(
    ints: &[Option<i64>; N_INT],
    pvt_created: Option<&Val<'_>>,
    flags: &mut Flags,
) -> (Option<i64>, Option<i64>) {
    let dur = ints[I_DURATION_SECONDS].unwrap_or(0).saturating_mul(MICROS);
    if let Some(cct) = ints[I_CHANNEL_CREATED_TIME] {
        let end = match ints[I_DURATION_SECONDS] {
            Some(_) => Some(cct.saturating_add(dur)),
            None => ints[I_TIMESTAMP],
        };
        return (Some(cct), end);
    }
    let end = ints[I_TIMESTAMP].or_else(|| {
        let p = pvt_created.and_then(|v| kz_to_integer(v).ok().flatten())?;
        let us = gregorian_to_unix_micros(p.value)?;
        flags.add("time_from_pvt_created");
        Some(us)
    });
    (end.map(|e| e.saturating_sub(dur)), end)
}

fn extra_json(extra: &[(Cow<'_, str>, &RawValue)]) -> String {
    let mut s = String::with_capacity(
        extra
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>()
            + 2,
    );
    s.push('{');
    for (i, (k, v)) in extra.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match k {
            // Borrowed: the key had no escapes in the input, so it needs none here.
            Cow::Borrowed(k) => {
                s.push('"');
                s.push_str(k);
                s.push('"');
            }
            // Re-escaping a plain string with serde_json cannot fail.
            Cow::Owned(k) => s.push_str(&serde_json::to_string(k).unwrap_or_default()),
        }
        s.push(':');
        s.push_str(&compact(v.get()));
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keeps_unknown_keys_as_compact_json_with_escapes_intact() {
        let text = r#"{"call_id":"c","z\"q":{ "a" : [1, 2] },"plain":"x y","n":1.5}"#;
        let cdr = RawCdr::parse(text).expect("parses");
        assert_eq!(
            extra_json(&cdr.extra),
            r#"{"z\"q":{"a":[1,2]},"plain":"x y","n":1.5}"#
        );
    }

    #[test]
    fn key_order_survives_missing_new_and_reordered_keys() {
        let texts = [
            r#"{"call_id":"a","billing_seconds":1,"zz":1,"duration_seconds":2}"#,
            r#"{"call_id":"b","duration_seconds":4}"#,
            r#"{"new":0,"duration_seconds":6,"call_id":"c","billing_seconds":5}"#,
            r#"{"call_id":"d","billing_seconds":7,"zz":1,"duration_seconds":8}"#,
        ];
        let got: Vec<_> = texts
            .iter()
            .map(|t| {
                let leg = RawCdr::parse(t)
                    .expect("parses")
                    .into_leg(&ReportTz(chrono_tz::Tz::UTC))
                    .expect("a leg");
                (
                    leg.top[0].as_deref().map(str::to_owned),
                    leg.ints[I_DURATION_SECONDS],
                    leg.json[J_EXTRA].as_deref().map(str::to_owned),
                )
            })
            .collect();
        let expect =
            |c: &str, d: i64, x: Option<&str>| (Some(c.to_owned()), Some(d), x.map(str::to_owned));
        assert_eq!(
            got,
            [
                expect("a", 2, Some(r#"{"zz":1}"#)),
                expect("b", 4, None),
                expect("c", 6, Some(r#"{"new":0}"#)),
                expect("d", 8, Some(r#"{"zz":1}"#)),
            ]
        );
    }
}
