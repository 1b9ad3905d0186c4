//! serde_json against SIMD JSON parsers (sonic-rs, simd-json) on the same CDR bytes into the
//! same columns.
//!
//! Every line of the given NDJSON files is read into memory first (no I/O is timed). Each
//! parser then reads every line into one serde-derived struct, [`Cdr`], whose fields are
//! rerate's columns (src/schema.rs: TOP_STR, CCV_STR, the INT_FIELDS, and the top-level identity
//! aliases of the CCVs that src/ingest/record.rs reads), and the same code pushes each record
//! into the same column builders. Only the parsing differs between the rows of the table.
//!
//! What rerate does that this bench does not (the same for every parser, so left out):
//! - it keeps custom_channel_vars, custom_application_vars and custom_sip_headers whole as
//!   compact JSON text, and every unknown top-level key in the `extra` JSON column (serde_json's
//!   RawValue plus a compaction pass); here unknown keys are skipped;
//! - it reads custom_channel_vars in a second pass over that raw text (here: nested in one
//!   pass), with KAZOO's key spellings (`Rate-Increment`) ranked above the stored ones, and
//!   keeps the first copy of a key given twice;
//! - `into_leg`'s checks, Gregorian-to-Unix timestamps and flags.
//!
//! Usage: json_parsers [--reps N] [--threads N] [--only NAME,NAME] FILE.ndjson...

use std::borrow::Cow;
use std::fmt;
use std::hint::black_box;
use std::time::Instant;

use rayon::prelude::*;

/// rerate's allocator (src/main.rs there).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

// ---------------------------------------------------------------------------------------------
// One JSON scalar, as rerate's `Val` (src/ingest/value.rs): borrowed from the input where it can
// be. Integers are kept as i64 when they fit whichever visit_* method a parser calls, so that
// the parsers' cells compare equal.

#[derive(Debug, Clone, PartialEq)]
pub enum V<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'a, str>),
    /// An object or array where a scalar belongs, as compact JSON (rare; rerate does the same).
    Nested(String),
}

// `'de: 'a`, as serde's own `&'a str`: a V can borrow from any input that outlives it.
impl<'de: 'a, 'a> Deserialize<'de> for V<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(VVisitor(std::marker::PhantomData))
    }
}

struct VVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for VVisitor<'a> {
    type Value = V<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<V<'a>, E> {
        Ok(V::Null)
    }
    fn visit_none<E>(self) -> Result<V<'a>, E> {
        Ok(V::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<V<'a>, E> {
        Ok(V::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<V<'a>, E> {
        Ok(V::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<V<'a>, E> {
        Ok(i64::try_from(v).map_or(V::U64(v), V::I64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<V<'a>, E> {
        Ok(V::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<V<'a>, E> {
        Ok(V::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<V<'a>, E> {
        Ok(V::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<V<'a>, E> {
        Ok(V::Str(Cow::Owned(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V<'a>, A::Error> {
        let v = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(V::Nested(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V<'a>, A::Error> {
        let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(V::Nested(v.to_string()))
    }
}

impl V<'_> {
    /// A text cell, as rerate's `Val::into_text`: strings as they are, numbers and booleans in
    /// JSON spelling, null as null.
    fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            V::Null => None,
            V::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            V::I64(i) => Some(Cow::Owned(i.to_string())),
            V::U64(u) => Some(Cow::Owned(u.to_string())),
            V::F64(f) => Some(Cow::Owned(f.to_string())),
            V::Str(s) => Some(Cow::Borrowed(s.as_ref())),
            V::Nested(s) => Some(Cow::Borrowed(s.as_str())),
        }
    }

    /// An integer cell, as rerate's `kz_to_integer` on the accepting path (integers as they
    /// are, decimals and decimal strings rounded); anything else is null here (rerate rejects
    /// or flags the record).
    fn int(&self) -> Option<i64> {
        match self {
            V::I64(i) => Some(*i),
            V::U64(u) => i64::try_from(*u).ok(),
            V::F64(f) if f.is_finite() => Some(f.round() as i64),
            V::Str(s) => s.trim().parse::<i64>().ok().or_else(|| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f.round() as i64)
            }),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The record: rerate's input columns as struct fields. The lists mirror src/schema.rs (TOP_STR,
// CCV_STR, INT_FIELDS by source, top_level_identity_aliases) in the same order.

macro_rules! cdr {
    (
        top_str: [$($t:ident),* $(,)?],
        top_int: [$($ti:ident),* $(,)?],
        alias: [$($af:ident = $a:literal),* $(,)?],
        ccv_str: [$($c:ident),* $(,)?],
        ccv_int: [$($ci:ident),* $(,)?],
    ) => {
        /// One CDR object: the fields rerate turns into columns; every other key is skipped.
        #[derive(Deserialize, Default, Debug)]
        pub struct Cdr<'a> {
            $( #[serde(borrow, default)] pub $t: Option<V<'a>>, )*
            $( #[serde(borrow, default)] pub $ti: Option<V<'a>>, )*
            // Identity CCVs given at the top level (the webhook shape): used when the CCVs lack
            // them (src/schema.rs top_level_identity_aliases).
            $( #[serde(borrow, default, rename = $a)] pub $af: Option<V<'a>>, )*
            #[serde(borrow, default)]
            pub custom_channel_vars: Option<Ccv<'a>>,
        }

        /// custom_channel_vars: the named text and integer CCVs rerate reads.
        #[derive(Deserialize, Default, Debug)]
        pub struct Ccv<'a> {
            $( #[serde(borrow, default)] pub $c: Option<V<'a>>, )*
            $( #[serde(borrow, default)] pub $ci: Option<V<'a>>, )*
            /// Moved to interaction_id when the top level lacks it (as KAZOO's cdr app does).
            #[serde(borrow, default)]
            pub call_interaction_id: Option<V<'a>>,
        }

        pub const TOP_STR: &[&str] = &[$(stringify!($t)),*];
        pub const CCV_STR: &[&str] = &[$(stringify!($c)),*];
        pub const INT_NAMES: &[&str] = &[$(stringify!($ti),)* $(stringify!($ci)),*];
        pub const N_TOP: usize = TOP_STR.len();
        pub const N_CCV: usize = CCV_STR.len();
        pub const N_INT: usize = INT_NAMES.len();

        impl<'a> Cdr<'a> {
            /// A CCV's top-level alias, if it has one.
            fn alias(&self, ccv_name: &str) -> Option<&V<'a>> {
                match ccv_name {
                    $( $a => self.$af.as_ref(), )*
                    _ => None,
                }
            }

            /// The cells, in column order, before they are typed.
            #[allow(clippy::type_complexity)]
            fn cells(&self) -> ([Option<&V<'a>>; N_TOP], [Option<&V<'a>>; N_CCV], [Option<&V<'a>>; N_INT]) {
                let ccv = self.custom_channel_vars.as_ref();
                let mut top = [$(self.$t.as_ref()),*];
                if top[1].is_none() {
                    top[1] = ccv.and_then(|c| c.call_interaction_id.as_ref());
                }
                let ccv_cells = [$(
                    ccv.and_then(|c| c.$c.as_ref()).or_else(|| self.alias(stringify!($c)))
                ),*];
                let ints = [$(self.$ti.as_ref(),)* $(ccv.and_then(|c| c.$ci.as_ref())),*];
                (top, ccv_cells, ints)
            }

            /// sonic-rs's lazy API: one top-level key and its value.
            fn set_top(&mut self, key: &str, v: V<'a>) {
                match key {
                    $( stringify!($t) => first(&mut self.$t, v), )*
                    $( stringify!($ti) => first(&mut self.$ti, v), )*
                    $( $a => first(&mut self.$af, v), )*
                    _ => {}
                }
            }

            /// sonic-rs's lazy API: one custom_channel_vars key and its value.
            fn set_ccv(ccv: &mut Ccv<'a>, key: &str, v: V<'a>) {
                match key {
                    $( stringify!($c) => first(&mut ccv.$c, v), )*
                    $( stringify!($ci) => first(&mut ccv.$ci, v), )*
                    "call_interaction_id" => first(&mut ccv.call_interaction_id, v),
                    _ => {}
                }
            }

            /// Whether sonic-rs's lazy reader needs this top-level key's value.
            fn wants_top(key: &str) -> bool {
                matches!(key, $( stringify!($t) )|* | $( stringify!($ti) )|* | $( $a )|*)
            }

            /// Whether sonic-rs's lazy reader needs this custom_channel_vars key's value.
            fn wants_ccv(key: &str) -> bool {
                matches!(key, $( stringify!($c) )|* | $( stringify!($ci) )|* | "call_interaction_id")
            }
        }
    };
}

/// The first copy of a key given twice is kept (as rerate and KAZOO read it).
fn first<'a>(slot: &mut Option<V<'a>>, v: V<'a>) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

cdr! {
    top_str: [
        call_id, interaction_id, call_direction, caller_id_name, caller_id_number,
        callee_id_name, callee_id_number, hangup_cause, hangup_code, disposition,
        interaction_key, other_leg_call_id, other_leg_caller_id_name, other_leg_caller_id_number,
        other_leg_destination_number, other_leg_direction, request, to, from, to_uri, from_uri,
        to_tag, from_tag, presence_id, digits_dialed, user_agent, app_name, app_version,
        channel_call_state, channel_name, channel_state, event_category, event_name, media_server,
        msg_id, node, switch_hostname, switch_nodename, switch_uri, switch_url, local_sdp,
        remote_sdp, fax_bad_rows, fax_ecm_used, fax_result_code, fax_result_text, fax_success,
        fax_t38, fax_total_pages, fax_transfer_rate, fax_transferred_pages,
    ],
    top_int: [
        billing_seconds, duration_seconds, timestamp, ringing_seconds, channel_created_time,
        interaction_time,
    ],
    alias: [
        top_account_id = "account_id", top_reseller_id = "reseller_id",
        top_authorizing_type = "authorizing_type", top_authorizing_id = "authorizing_id",
        top_owner_id = "owner_id", top_bridge_id = "bridge_id",
        top_resource_type = "resource_type", top_resource_id = "resource_id",
        top_realm = "realm", top_username = "username",
    ],
    ccv_str: [
        account_id, reseller_id, account_billing, reseller_billing, rate_name, rate_description,
        authorizing_type, authorizing_id, owner_id, bridge_id, resource_type, resource_id, realm,
        username,
    ],
    ccv_int: [
        rate, rate_increment, rate_minimum, surcharge, rate_nocharge_time, discount_percentage,
        billing_seconds_offset, base_cost,
    ],
}

// ---------------------------------------------------------------------------------------------
// Column builders: the same for every parser. A text column is Arrow-shaped (one byte buffer,
// offsets, validity); an integer column is values plus validity.

#[derive(Default, PartialEq, Eq)]
struct StrCol {
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    valid: Vec<bool>,
}

impl StrCol {
    fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        StrCol {
            bytes: Vec::with_capacity(bytes),
            offsets,
            valid: Vec::with_capacity(rows),
        }
    }
    #[inline]
    fn push(&mut self, s: Option<&str>) {
        if let Some(s) = s {
            self.bytes.extend_from_slice(s.as_bytes());
        }
        self.offsets.push(self.bytes.len());
        self.valid.push(s.is_some());
    }
    fn len(&self) -> usize {
        self.valid.len()
    }
    fn get(&self, i: usize) -> Option<&[u8]> {
        self.valid[i].then(|| &self.bytes[self.offsets[i]..self.offsets[i + 1]])
    }
    fn append(&mut self, o: &StrCol) {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&o.bytes);
        self.offsets.extend(o.offsets[1..].iter().map(|x| x + base));
        self.valid.extend_from_slice(&o.valid);
    }
}

#[derive(Default, PartialEq, Eq)]
struct IntCol {
    values: Vec<i64>,
    valid: Vec<bool>,
}

impl IntCol {
    #[inline]
    fn push(&mut self, v: Option<i64>) {
        self.values.push(v.unwrap_or(0));
        self.valid.push(v.is_some());
    }
}

#[derive(PartialEq, Eq)]
struct Cols {
    top: Vec<StrCol>,
    ccv: Vec<StrCol>,
    ints: Vec<IntCol>,
}

impl Cols {
    fn new(rows: usize) -> Self {
        Cols {
            // A guess at the text per cell; the buffers grow as needed.
            top: (0..N_TOP)
                .map(|_| StrCol::with_capacity(rows, rows * 16))
                .collect(),
            ccv: (0..N_CCV)
                .map(|_| StrCol::with_capacity(rows, rows * 24))
                .collect(),
            ints: (0..N_INT)
                .map(|_| IntCol {
                    values: Vec::with_capacity(rows),
                    valid: Vec::with_capacity(rows),
                })
                .collect(),
        }
    }

    #[inline]
    fn push(&mut self, cdr: &Cdr<'_>) {
        let (top, ccv, ints) = cdr.cells();
        for (col, v) in self.top.iter_mut().zip(top) {
            col.push(v.and_then(V::text).as_deref());
        }
        for (i, (col, v)) in self.ccv.iter_mut().zip(ccv).enumerate() {
            let t = v.and_then(V::text);
            // A blank account_id is no account (rerate's into_leg).
            let t = t.filter(|s| i != 0 || !s.trim().is_empty());
            col.push(t.as_deref());
        }
        for (col, v) in self.ints.iter_mut().zip(ints) {
            col.push(v.and_then(V::int));
        }
    }

    fn rows(&self) -> usize {
        self.top[0].len()
    }

    fn concat(parts: &[Cols]) -> Cols {
        let mut all = Cols::new(0);
        for p in parts {
            for (a, b) in all.top.iter_mut().zip(&p.top) {
                a.append(b);
            }
            for (a, b) in all.ccv.iter_mut().zip(&p.ccv) {
                a.append(b);
            }
            for (a, b) in all.ints.iter_mut().zip(&p.ints) {
                a.values.extend_from_slice(&b.values);
                a.valid.extend_from_slice(&b.valid);
            }
        }
        all
    }

    /// The first cell where two sets of columns differ, named.
    fn first_difference(&self, o: &Cols) -> Option<String> {
        if self.rows() != o.rows() {
            return Some(format!("row count {} vs {}", self.rows(), o.rows()));
        }
        let texts = TOP_STR.iter().zip(self.top.iter().zip(&o.top));
        let ccvs = CCV_STR.iter().zip(self.ccv.iter().zip(&o.ccv));
        for (name, (a, b)) in texts.chain(ccvs) {
            if a != b {
                let row = (0..a.len()).find(|&i| a.get(i) != b.get(i)).unwrap_or(0);
                let show = |c: Option<&[u8]>| c.map(|c| String::from_utf8_lossy(c).into_owned());
                return Some(format!(
                    "column {name}, row {row}: {:?} vs {:?}",
                    show(a.get(row)),
                    show(b.get(row))
                ));
            }
        }
        for (name, (a, b)) in INT_NAMES.iter().zip(self.ints.iter().zip(&o.ints)) {
            if a != b {
                let row = (0..a.valid.len())
                    .find(|&i| (a.valid[i], a.values[i]) != (b.valid[i], b.values[i]))
                    .unwrap_or(0);
                return Some(format!("column {name}, row {row}"));
            }
        }
        None
    }

    /// A digest of every cell (FNV-1a over validity and bytes), to print.
    fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf29ce484222325;
        let mut eat = |b: &[u8]| {
            for x in b {
                h ^= u64::from(*x);
                h = h.wrapping_mul(0x100000001b3);
            }
        };
        for c in self.top.iter().chain(&self.ccv) {
            for i in 0..c.len() {
                match c.get(i) {
                    Some(s) => {
                        eat(&(s.len() as u64).to_le_bytes());
                        eat(s);
                    }
                    None => eat(b"\xff"),
                }
            }
        }
        for c in &self.ints {
            for (v, ok) in c.values.iter().zip(&c.valid) {
                if *ok {
                    eat(&v.to_le_bytes());
                } else {
                    eat(b"\xff");
                }
            }
        }
        h
    }
}

// ---------------------------------------------------------------------------------------------
// The parsers. Each calls `f` with every line's record, in order.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Parser {
    SerdeJson,
    SonicRs,
    SonicLazy,
    SimdJson,
    SimdJsonBuffers,
}

const PARSERS: &[Parser] = &[
    Parser::SerdeJson,
    Parser::SonicRs,
    Parser::SonicLazy,
    Parser::SimdJson,
    Parser::SimdJsonBuffers,
];

impl Parser {
    fn name(self) -> &'static str {
        match self {
            Parser::SerdeJson => "serde_json",
            Parser::SonicRs => "sonic-rs",
            Parser::SonicLazy => "sonic-rs-lazy",
            Parser::SimdJson => "simd-json",
            Parser::SimdJsonBuffers => "simd-json-bufs",
        }
    }

    fn how(self) -> &'static str {
        match self {
            Parser::SerdeJson => "serde_json::from_str::<Cdr> (derived struct)",
            Parser::SonicRs => "sonic_rs::from_str::<Cdr> (same derived struct)",
            Parser::SonicLazy => "sonic_rs::to_object_iter, top level and custom_channel_vars",
            Parser::SimdJson => {
                "copy line to a reused Vec<u8> + simd_json::serde::from_slice::<Cdr>"
            }
            Parser::SimdJsonBuffers => {
                "copy line + simd_json::serde::from_slice_with_buffers (reused)"
            }
        }
    }

    fn for_each<F: FnMut(&Cdr<'_>)>(self, lines: &[&str], mut f: F) {
        let bad = |i: usize, e: &dyn fmt::Display| -> ! {
            panic!("{}: line {i} of its chunk does not parse: {e}", self.name())
        };
        match self {
            Parser::SerdeJson => {
                for (i, l) in lines.iter().enumerate() {
                    let c: Cdr = serde_json::from_str(l).unwrap_or_else(|e| bad(i, &e));
                    f(&c);
                }
            }
            Parser::SonicRs => {
                for (i, l) in lines.iter().enumerate() {
                    let c: Cdr = sonic_rs::from_str(l).unwrap_or_else(|e| bad(i, &e));
                    f(&c);
                }
            }
            Parser::SonicLazy => {
                for (i, l) in lines.iter().enumerate() {
                    let c = sonic_lazy(l).unwrap_or_else(|e| bad(i, &e));
                    f(&c);
                }
            }
            Parser::SimdJson => {
                let mut buf: Vec<u8> = Vec::new();
                for (i, l) in lines.iter().enumerate() {
                    buf.clear();
                    buf.extend_from_slice(l.as_bytes());
                    let c: Cdr =
                        simd_json::serde::from_slice(&mut buf).unwrap_or_else(|e| bad(i, &e));
                    f(&c);
                }
            }
            Parser::SimdJsonBuffers => {
                let mut buf: Vec<u8> = Vec::new();
                let mut buffers = simd_json::Buffers::default();
                for (i, l) in lines.iter().enumerate() {
                    buf.clear();
                    buf.extend_from_slice(l.as_bytes());
                    let c: Cdr = simd_json::serde::from_slice_with_buffers(&mut buf, &mut buffers)
                        .unwrap_or_else(|e| bad(i, &e));
                    f(&c);
                }
            }
        }
    }
}

/// One value of sonic-rs's lazy reader as a cell: strings borrowed when they have no escapes.
fn lazy_val<'a>(v: &sonic_rs::LazyValue<'a>) -> V<'a> {
    use sonic_rs::{JsonType, JsonValueTrait};
    match v.get_type() {
        JsonType::String => match v.as_raw_cow() {
            Cow::Borrowed(raw) if !raw.as_bytes().contains(&b'\\') => {
                V::Str(Cow::Borrowed(&raw[1..raw.len() - 1]))
            }
            _ => V::Str(Cow::Owned(v.as_str().unwrap_or_default().to_owned())),
        },
        JsonType::Number => {
            if let Some(i) = v.as_i64() {
                V::I64(i)
            } else if let Some(u) = v.as_u64() {
                V::U64(u)
            } else {
                V::F64(v.as_f64().unwrap_or(f64::NAN))
            }
        }
        JsonType::Boolean => V::Bool(v.as_bool().unwrap_or(false)),
        JsonType::Null => V::Null,
        JsonType::Object | JsonType::Array => V::Nested(
            serde_json::from_str::<serde_json::Value>(v.as_raw_str())
                .map(|j| j.to_string())
                .unwrap_or_default(),
        ),
    }
}

/// The record through sonic-rs's lazy object iterator: values of unwanted keys are skipped
/// unread, custom_channel_vars is iterated in turn.
fn sonic_lazy(line: &str) -> sonic_rs::Result<Cdr<'_>> {
    let mut cdr = Cdr::default();
    for kv in sonic_rs::to_object_iter(line) {
        let (k, v) = kv?;
        if k == "custom_channel_vars" {
            if cdr.custom_channel_vars.is_some() {
                continue;
            }
            let Cow::Borrowed(raw) = v.as_raw_cow() else {
                unreachable!("a &str input is borrowed")
            };
            if !raw.starts_with('{') {
                continue;
            }
            let mut ccv = Ccv::default();
            for kv in sonic_rs::to_object_iter(raw) {
                let (k, v) = kv?;
                if Cdr::wants_ccv(&k) {
                    Cdr::set_ccv(&mut ccv, &k, lazy_val(&v));
                }
            }
            cdr.custom_channel_vars = Some(ccv);
        } else if Cdr::wants_top(&k) {
            cdr.set_top(&k, lazy_val(&v));
        }
    }
    Ok(cdr)
}

// ---------------------------------------------------------------------------------------------
// Timing.

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Parse every record and drop it.
    Parse,
    /// Parse every record and push its cells into the column builders.
    ParsePush,
}

/// One pass over `chunks`, on `pool`'s threads (1: in order on this thread). Returns the
/// columns of each chunk for ParsePush.
fn pass(p: Parser, mode: Mode, chunks: &[&[&str]], pool: Option<&rayon::ThreadPool>) -> Vec<Cols> {
    let one = |lines: &&[&str]| -> Option<Cols> {
        match mode {
            Mode::Parse => {
                p.for_each(lines, |c| {
                    black_box(c);
                });
                None
            }
            Mode::ParsePush => {
                let mut cols = Cols::new(lines.len());
                p.for_each(lines, |c| cols.push(c));
                Some(cols)
            }
        }
    };
    match pool {
        None => chunks.iter().filter_map(one).collect(),
        Some(pool) => pool.install(|| chunks.par_iter().filter_map(one).collect()),
    }
}

fn best_of<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..reps {
        let t = Instant::now();
        let out = f();
        let s = t.elapsed().as_secs_f64();
        best = best.min(s);
        // Drop the previous result outside the timed region.
        last = Some(out);
    }
    (best, last.expect("reps >= 1"))
}

fn main() {
    let mut reps = 3;
    let mut threads = 2;
    let mut only: Option<Vec<String>> = None;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reps" => reps = args.next().and_then(|v| v.parse().ok()).expect("--reps N"),
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--threads N")
            }
            "--only" => {
                only = Some(
                    args.next()
                        .expect("--only a,b")
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                )
            }
            "-h" | "--help" => {
                println!("json_parsers [--reps N (3)] [--threads N (2; 1 = skip)] [--only serde_json,sonic-rs,...] FILE.ndjson...");
                return;
            }
            _ => files.push(a),
        }
    }
    assert!(!files.is_empty(), "give NDJSON files (see --help)");
    let parsers: Vec<Parser> = PARSERS
        .iter()
        .copied()
        .filter(|p| {
            only.as_ref()
                .is_none_or(|o| o.iter().any(|n| n == p.name()))
        })
        .collect();
    assert!(
        parsers.first() == Some(&Parser::SerdeJson) || only.is_some(),
        "serde_json is the reference"
    );

    // Read everything first: no I/O below is timed.
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{f}: {e}")))
        .collect();
    let lines: Vec<&str> = texts
        .iter()
        .flat_map(|t| t.split('\n'))
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    // rerate's parse tasks: 8 MiB of text each (pipeline::chunk_bytes at <= 16 buckets).
    let per_chunk = ((8usize << 20) / (bytes / lines.len()).max(1)).max(1);
    let chunks: Vec<&[&str]> = lines.chunks(per_chunk).collect();
    let n = lines.len();
    let mb = bytes as f64 / 1e6;
    println!(
        "{} files, {n} records, {mb:.1} MB of JSON ({} B a record), {} chunks of {per_chunk} lines; best of {reps}",
        files.len(),
        bytes / n,
        chunks.len(),
    );
    println!(
        "columns: {N_TOP} top-level text, {N_CCV} custom_channel_vars text, {N_INT} integer; unknown keys are \
         skipped (rerate also keeps them, and the three nested objects, as JSON text: not done here)"
    );
    let pool = (threads > 1).then(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a rayon pool")
    });

    // The cost of simd-json's mutable copy alone, for reference.
    let (copy_s, _) = best_of(reps, || {
        let mut buf: Vec<u8> = Vec::new();
        for l in &lines {
            buf.clear();
            buf.extend_from_slice(l.as_bytes());
            black_box(&buf);
        }
    });

    let mut reference: Option<(Parser, Cols)> = None;
    let mut all_match = true;
    let mut rows = Vec::new();
    for &p in &parsers {
        let (parse_s, _) = best_of(reps, || pass(p, Mode::Parse, &chunks, None));
        let (push_s, parts) = best_of(reps, || pass(p, Mode::ParsePush, &chunks, None));
        let cols = Cols::concat(&parts);
        drop(parts);
        let mt = pool.as_ref().map(|pool| {
            let (parse, _) = best_of(reps, || pass(p, Mode::Parse, &chunks, Some(pool)));
            let (s, parts) = best_of(reps, || pass(p, Mode::ParsePush, &chunks, Some(pool)));
            let c = Cols::concat(&parts);
            (parse, s, c)
        });
        let digest = cols.digest();
        let mut same = match &reference {
            None => "reference".to_owned(),
            Some((_, r)) => match r.first_difference(&cols) {
                None => "same".to_owned(),
                Some(d) => {
                    all_match = false;
                    format!("DIFFERENT: {d}")
                }
            },
        };
        if let Some((_, _, c)) = &mt {
            if let Some(d) = cols.first_difference(c) {
                all_match = false;
                same = format!("DIFFERENT ({threads} threads vs 1): {d}");
            }
        }
        assert_eq!(cols.rows(), n, "{}: every line is a row", p.name());
        println!(
            "  {:<15} {} -> digest {digest:016x} ({same})",
            p.name(),
            p.how()
        );
        rows.push((p, parse_s, push_s, mt.map(|(a, b, _)| (a, b))));
        if reference.is_none() {
            reference = Some((p, cols));
        }
    }

    let per_200k = |s: f64| s * 200_000.0 / n as f64;
    println!();
    println!(
        "| parser | parse only MB/s | parse+push MB/s | s / 200k records (parse+push) | parsing share of parse+push | {threads} threads: parse only MB/s | {threads} threads: parse+push MB/s | vs serde_json (parse+push, 1 thread) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let base = rows.first().map(|r| r.2);
    for (p, parse_s, push_s, mt) in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.3} | {:.0}% | {} | {} | {} |",
            p.name(),
            mb / parse_s,
            mb / push_s,
            per_200k(*push_s),
            100.0 * parse_s / push_s,
            mt.map_or("-".to_owned(), |(s, _)| format!("{:.0}", mb / s)),
            mt.map_or("-".to_owned(), |(_, s)| format!("{:.0}", mb / s)),
            base.map_or("-".to_owned(), |b| format!("{:.2}x", b / push_s)),
        );
    }
    println!();
    println!(
        "seconds per 200k records: {}",
        rows.iter()
            .map(|(p, a, b, c)| format!(
                "{} parse {:.3} / parse+push {:.3}{}",
                p.name(),
                per_200k(*a),
                per_200k(*b),
                c.map_or(String::new(), |(a, b)| format!(
                    " / {threads}T parse {:.3} / {threads}T parse+push {:.3}",
                    per_200k(a),
                    per_200k(b)
                ))
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "simd-json's mutable copy alone (counted in its rows): {:.3} s per 200k records ({:.0} MB/s)",
        per_200k(copy_s),
        mb / copy_s
    );
    if all_match {
        println!("columns: every parser's cells equal serde_json's");
    } else {
        eprintln!("columns DIFFER between parsers (see above)");
        std::process::exit(1);
    }
}
