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

pub(crate) const N_TOP: usize = TOP_STR.len();
pub(crate) const N_CCV: usize = CCV_STR.len();
pub(crate) const N_INT: usize = INT_FIELDS.len();
pub(crate) const N_JSON: usize = JSON_COLS.len();

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

/// The rating inputs under the names KAZOO's `kapps_call_util:calculate_call/1` asks for
/// first: its `get_integer_value/3` reads `[Key, kz_json:normalize_key(Key)]` with
/// `kz_json:get_first_defined/3`, so `Rate` wins over `rate` whatever their order, and no other
/// spelling (`RATE`, `Rate_Increment`) is read at all.
const KAZOO_RATING_NAMES: &[(&str, &str)] = &[
    ("Rate", crate::schema::RATE),
    ("Rate-Increment", crate::schema::RATE_INCREMENT),
    ("Rate-Minimum", crate::schema::RATE_MINIMUM),
    ("Surcharge", crate::schema::SURCHARGE),
    ("Rate-NoCharge-Time", crate::schema::RATE_NOCHARGE_TIME),
    ("Discount-Percentage", crate::schema::DISCOUNT_PERCENTAGE),
    (
        "Billing-Seconds-Offset",
        crate::schema::BILLING_SECONDS_OFFSET,
    ),
];

/// Which of two keys naming the same field KAZOO reads: the lower rank; between keys of one
/// rank (the same key twice), the first, as `kz_json:get_value/2` does (`props:get_value/2` is
/// `lists:keyfind/3` over the decoded proplist, which keeps every copy in document order).
type Rank = u8;
/// A rating input under KAZOO's own name (`Rate-Increment`).
const RANK_KAZOO: Rank = 0;
/// The normalized name (`rate_increment`), as stored CDRs have it.
const RANK_NORMALIZED: Rank = 1;
/// Another spelling that normalizes to the name (`Account-ID`): a non-rating CCV only.
const RANK_OTHER: Rank = 2;
const RANK_NONE: Rank = Rank::MAX;

/// The slot a custom_channel_vars key fills, and its rank.
fn ccv_slot(key: &str) -> Option<Ranked> {
    if let Some(s) = CCV_KEYS.get(key) {
        return Some((*s, RANK_NORMALIZED));
    }
    if let Some((_, norm)) = KAZOO_RATING_NAMES.iter().find(|(k, _)| *k == key) {
        return CCV_KEYS.get(norm).map(|s| (*s, RANK_KAZOO));
    }
    if key.bytes().any(|b| b == b'-' || b.is_ascii_uppercase()) {
        let norm = normalize_key(key);
        let rating = KAZOO_RATING_NAMES.iter().any(|(_, n)| *n == norm);
        return (!rating)
            .then(|| CCV_KEYS.get(norm.as_str()).map(|s| (*s, RANK_OTHER)))
            .flatten();
    }
    None
}

/// `kz_json:normalize_key/1` on the ASCII letters: `-` becomes `_`, `A-Z` lower case. (KAZOO
/// also lowers the bytes 0xC0-0xDE one by one, which in UTF-8 are lead bytes of two-byte
/// characters; such keys are kept as they are.)
pub(crate) fn normalize_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// The keys of the objects read so far, in the order they came, with their slots. Exports
/// write every record's keys in much the same order, so the next key is nearly always one of the
/// next few here: a comparison or two instead of hashing and probing the map. A record that
/// lacks a key resyncs a step later; one with a new key adds it where it came.
#[derive(Default)]
struct KeyOrder(Vec<(Box<str>, Option<Ranked>)>);

/// A key's slot and rank.
type Ranked = (Slot, Rank);

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
        lookup: impl FnOnce(&str) -> Option<Ranked>,
    ) -> Option<Ranked> {
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
    /// The rank of the key each int and CCV slot was filled from.
    int_rank: [Rank; N_INT],
    ccv_rank: [Rank; N_CCV],
    /// Fields given twice under the same key: the first copy was kept, as KAZOO reads it.
    duplicates: Vec<&'static str>,
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
            int_rank: [RANK_NONE; N_INT],
            ccv_rank: [RANK_NONE; N_CCV],
            duplicates: Vec::new(),
        }
    }

    /// Notes a field met again under a key of the same rank: the first copy stays.
    fn duplicate(&mut self, name: &'static str) {
        if !self.duplicates.contains(&name) {
            self.duplicates.push(name);
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

    /// The members of the object rerate has no column for, raw: where CouchDB's and KAZOO's
    /// document keys (`_id`, `pvt_type`, `doc`, `rows`, ...) are.
    pub fn extra(&self) -> &[(Cow<'a, str>, &'a RawValue)] {
        &self.extra
    }

    /// Whether the object has a `call_id`.
    pub fn has_call_id(&self) -> bool {
        self.top[0].is_some()
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

    /// Whether the object is an event saved straight off the message bus (a `Call-ID` and no
    /// `call_id`): read it through [`super::event::to_cdr`].
    pub fn is_bus_event(&self) -> bool {
        self.top[0].is_none()
            && super::event::is_bus_event(self.extra.iter().map(|(k, _)| k.as_ref()))
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
        // A key given twice: the first copy is the one KAZOO reads (kz_json:get_value/2).
        macro_rules! first {
            ($slot:expr, $name:expr) => {
                if $slot.is_some() {
                    map.next_value::<de::IgnoredAny>()?;
                    cdr.duplicate($name);
                } else {
                    $slot = Some(map.next_value()?);
                }
            };
        }
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let slot = order.slot(&mut cursor, &key, |k| {
                TOP_KEYS.get(k).map(|s| (*s, RANK_NORMALIZED))
            });
            match slot.map(|(s, _)| s) {
                Some(Slot::TopStr(i)) => first!(cdr.top[i], TOP_STR[i]),
                Some(Slot::Int(i)) => first!(cdr.ints[i], INT_FIELDS[i].name),
                Some(Slot::Alias(i)) => first!(cdr.alias[i], CCV_STR[i]),
                Some(Slot::Json(j)) => first!(cdr.json[j], JSON_COLS[j]),
                Some(Slot::PvtCreated) => {
                    let raw: &'de RawValue = map.next_value()?;
                    if cdr.pvt_created.is_none() {
                        cdr.pvt_created = serde_json::from_str(raw.get()).ok();
                    }
                    cdr.extra.push((key, raw));
                }
                Some(Slot::Data) => {
                    let raw: &'de RawValue = map.next_value()?;
                    cdr.data = cdr.data.or(Some(raw));
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
        // Of the keys naming one field, the best ranked wins; between equals, the first.
        macro_rules! ranked {
            ($slot:expr, $rank:expr, $r:expr, $name:expr) => {
                if $r < $rank {
                    $slot = Some(map.next_value()?);
                    $rank = $r;
                } else {
                    map.next_value::<de::IgnoredAny>()?;
                    if $r == $rank {
                        cdr.duplicate($name);
                    }
                }
            };
        }
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let slot = order.slot(&mut cursor, &key, ccv_slot);
            match slot {
                Some((Slot::CcvStr(i), r)) => ranked!(cdr.ccv[i], cdr.ccv_rank[i], r, CCV_STR[i]),
                Some((Slot::Int(i), r)) => {
                    ranked!(cdr.ints[i], cdr.int_rank[i], r, INT_FIELDS[i].name)
                }
                Some((Slot::CallInteractionId, _)) if cdr.call_interaction_id.is_none() => {
                    cdr.call_interaction_id = Some(map.next_value()?)
                }
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
        check_account_id(ccv[0].as_deref(), "field")?;
        if self.ccv_not_object {
            flags.add_field("invalid", "custom_channel_vars");
        }
        for name in &self.duplicates {
            flags.add_field("duplicate_key", name);
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
/// A custom_channel_vars integer field (`name`, one of [`INT_FIELDS`]) as the parser reads it
/// from the object's text `ccv` (a written leg's `custom_channel_vars`): the same key ranks and
/// `kz_term:to_integer` reading. `None` when absent or not a number. For legs written before
/// the field had a column of its own.
pub(crate) fn ccv_int(ccv: &str, name: &str) -> Option<i64> {
    let i = INT_FIELDS.iter().position(|f| f.name == name)?;
    let text = format!(r#"{{"call_id":"x","custom_channel_vars":{ccv}}}"#);
    let leg = RawCdr::parse(&text)
        .ok()?
        .into_leg(&crate::time::ReportTz(chrono_tz::Tz::UTC));
    leg.ok()?.ints[i]
}

pub(crate) fn check_call_id(call_id: Option<&str>, what: &str) -> Result<(), RejectReason> {
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

/// The longest name a folder may have on the file systems rerate writes to (Linux's `NAME_MAX`,
/// in bytes).
pub(crate) const MAX_FOLDER_NAME_BYTES: usize = 255;

/// An account_id must not be `_unassigned` (the partition of legs with no account), and must
/// fit its partition folder's name, `account_id=<Hive-escaped id>`, in
/// [`MAX_FOLDER_NAME_BYTES`] (about 240 bytes of plain text; KAZOO's are 32): a longer one is no
/// KAZOO account, and its leg could be written nowhere.
pub(crate) fn check_account_id(account_id: Option<&str>, what: &str) -> Result<(), RejectReason> {
    let Some(a) = account_id else { return Ok(()) };
    if a == crate::schema::UNASSIGNED_ACCOUNT {
        return Err(RejectReason::new(
            "account_id_reserved",
            format!(
                "{what} 'account_id' is {a:?}, the name of the partition of legs with no account: no KAZOO account has it (their ids are 32 hex digits), and its legs would be mixed with the unassigned ones"
            ),
        ));
    }
    let name = crate::write::partition::dir_name(crate::schema::ACCOUNT_ID, Some(a));
    if name.len() > MAX_FOLDER_NAME_BYTES {
        return Err(RejectReason::new(
            "account_id_too_long",
            format!(
                "{what} 'account_id' is {} bytes: its partition folder's name would be {} bytes, more than the {MAX_FOLDER_NAME_BYTES} a file system allows",
                a.len(),
                name.len()
            ),
        ));
    }
    Ok(())
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

    fn leg_of(text: &str) -> Leg<'_> {
        RawCdr::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .into_leg(&ReportTz(chrono_tz::Tz::UTC))
            .unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    /// A written leg's custom_channel_vars read again give the parser's value: KAZOO's
    /// spelling or the stored one, a string or a number; no value when it is no number.
    #[test]
    fn a_ccv_integer_reads_again_from_the_written_text() {
        let pvt = |ccv: &str| ccv_int(ccv, crate::schema::PVT_COST);
        assert_eq!(pvt(r#"{"rate":"100","pvt_cost":"40"}"#), Some(40));
        assert_eq!(pvt(r#"{"Pvt-Cost":"41"}"#), Some(41));
        assert_eq!(pvt(r#"{"pvt_cost":42.4}"#), Some(42));
        assert_eq!(pvt(r#"{"pvt_cost":"n/a"}"#), None);
        assert_eq!(pvt(r#"{"rate":"100"}"#), None);
        assert_eq!(ccv_int(r#"{"pvt_cost":"40"}"#, "no_such_field"), None);
    }

    fn int(leg: &Leg, name: &str) -> Option<i64> {
        let i = INT_FIELDS.iter().position(|f| f.name == name);
        i.and_then(|i| leg.ints[i])
    }

    /// kz_json:get_value/2 -> props:get_value/2 -> lists:keyfind/3: of a key given twice in a
    /// decoded document (jiffy keeps both copies), the first is the one KAZOO reads.
    #[test]
    fn a_key_given_twice_reads_its_first_copy() {
        let leg = leg_of(
            r#"{"call_id":"a","billing_seconds":10,"billing_seconds":20,"custom_channel_vars":{"rate":"100","rate":"200","account_id":"x","account_id":"y"}}"#,
        );
        assert_eq!(int(&leg, "billing_seconds"), Some(10));
        assert_eq!(int(&leg, "rate"), Some(100));
        assert_eq!(leg.ccv[0].as_deref(), Some("x"));
        assert_eq!(
            leg.flags.as_option(),
            Some(
                "duplicate_key:billing_seconds,duplicate_key:rate,duplicate_key:account_id,no_start_time"
            )
        );
        // The first custom_channel_vars object is the one read.
        let leg = leg_of(
            r#"{"call_id":"a","custom_channel_vars":{"rate":"1"},"custom_channel_vars":{"rate":"2"}}"#,
        );
        assert_eq!(int(&leg, "rate"), Some(1));
    }

    /// kapps_call_util:calculate_call/1 reads each rating input with get_integer_value/3, which
    /// asks kz_json:get_first_defined/3 for [Key, kz_json:normalize_key(Key)]: `Rate` before
    /// `rate` whatever their order, and no other spelling.
    #[test]
    fn a_rating_input_under_kazoos_own_name_wins_over_the_normalized_one() {
        for ccv in [
            r#"{"rate":"100","Rate":"200"}"#,
            r#"{"Rate":"200","rate":"100"}"#,
        ] {
            let text = format!(r#"{{"call_id":"a","custom_channel_vars":{ccv}}}"#);
            let leg = leg_of(&text);
            assert_eq!(int(&leg, "rate"), Some(200), "{ccv}");
            assert_eq!(leg.flags.as_option(), Some("no_start_time"));
        }
        let leg = leg_of(
            r#"{"call_id":"a","custom_channel_vars":{"rate_nocharge_time":"5","Rate-NoCharge-Time":"9","Rate-Increment":"6","Surcharge":"3","Discount-Percentage":"7","Billing-Seconds-Offset":"2","Rate-Minimum":"30"}}"#,
        );
        let got: Vec<_> = [
            "rate_nocharge_time",
            "rate_increment",
            "surcharge",
            "discount_percentage",
            "billing_seconds_offset",
            "rate_minimum",
        ]
        .iter()
        .map(|n| int(&leg, n))
        .collect();
        assert_eq!(got, [Some(9), Some(6), Some(3), Some(7), Some(2), Some(30)]);
        // Spellings calculate_call never asks for are not read.
        let leg =
            leg_of(r#"{"call_id":"a","custom_channel_vars":{"RATE":"300","rate_Increment":"6"}}"#);
        assert_eq!(
            (int(&leg, "rate"), int(&leg, "rate_increment")),
            (None, None)
        );
    }
}
