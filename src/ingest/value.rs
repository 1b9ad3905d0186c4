//! One JSON scalar as the parser met it, borrowed from the input where it can be, and KAZOO's
//! rules for turning it into an integer (`kz_term:to_integer`) or a text cell.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A field value. Nested objects or arrays where a scalar was expected are kept as compact JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'a, str>),
    Nested(String),
}

impl<'de> Deserialize<'de> for Val<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValVisitor)
    }
}

struct ValVisitor;

impl<'de> Visitor<'de> for ValVisitor {
    type Value = Val<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_none<E>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Val<'de>, E> {
        Ok(Val::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Val<'de>, E> {
        Ok(Val::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Val<'de>, E> {
        Ok(Val::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Val<'de>, E> {
        Ok(Val::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }
    // Rare: an object or array where a scalar belongs. Keep it whole as compact JSON text.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Val<'de>, A::Error> {
        let v = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Val::Nested(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Val<'de>, A::Error> {
        let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Val::Nested(v.to_string()))
    }
}

impl<'a> Val<'a> {
    /// The value as a text cell: strings as they are, numbers and booleans in JSON spelling,
    /// nested values as JSON, null as null.
    pub(crate) fn into_text(self) -> Option<Cow<'a, str>> {
        match self {
            Val::Null => None,
            Val::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            Val::I64(i) => Some(Cow::Owned(i.to_string())),
            Val::U64(u) => Some(Cow::Owned(u.to_string())),
            Val::F64(f) => Some(Cow::Owned(f.to_string())),
            Val::Str(s) => Some(s),
            Val::Nested(s) => Some(Cow::Owned(s)),
        }
    }

    /// A short rendering for error messages.
    pub(crate) fn describe(&self) -> String {
        let s = match self {
            Val::Null => "null".to_owned(),
            Val::Bool(b) => b.to_string(),
            Val::I64(i) => i.to_string(),
            Val::U64(u) => u.to_string(),
            Val::F64(f) => f.to_string(),
            Val::Str(s) => format!("{:?}", s.as_ref()),
            Val::Nested(s) => s.clone(),
        };
        if s.len() > 60 {
            let mut end = 60;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &s[..end])
        } else {
            s
        }
    }
}

/// An integer read the way KAZOO's `kz_term:to_integer/1` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KzInt {
    pub value: i64,
    /// The input was a decimal (a float, or a string in float syntax) and was rounded.
    pub rounded: bool,
}

/// Why a value is not an acceptable integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IntError {
    NotANumber,
    OutOfRange,
    Negative,
}

impl fmt::Display for IntError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            IntError::NotANumber => "is not a number",
            IntError::OutOfRange => "is out of range",
            IntError::Negative => "is negative",
        })
    }
}

/// `kz_term:to_integer/1`: integers as they are; floats rounded half away from zero (Erlang
/// `round/1`); strings parsed with `list_to_integer`, falling back to `list_to_float` (which
/// needs digits on both sides of the point: "1.5", "2.0e3") and then rounded. Anything else
/// makes KAZOO crash, so it is an error here. Null means absent. Negative values are refused:
/// no billing input may be negative.
pub(crate) fn kz_to_integer(v: &Val<'_>) -> Result<Option<KzInt>, IntError> {
    let out = match v {
        Val::Null => return Ok(None),
        Val::I64(i) => KzInt {
            value: *i,
            rounded: false,
        },
        Val::U64(u) => KzInt {
            value: i64::try_from(*u).map_err(|_| IntError::OutOfRange)?,
            rounded: false,
        },
        Val::F64(f) => KzInt {
            value: round_float(*f)?,
            rounded: true,
        },
        Val::Str(s) => parse_erlang_number(s)?,
        Val::Bool(_) | Val::Nested(_) => return Err(IntError::NotANumber),
    };
    if out.value < 0 {
        return Err(IntError::Negative);
    }
    Ok(Some(out))
}

fn round_float(f: f64) -> Result<i64, IntError> {
    if !f.is_finite() {
        return Err(IntError::NotANumber);
    }
    let r = f.round();
    if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&r) {
        Ok(r as i64)
    } else {
        Err(IntError::OutOfRange)
    }
}

/// `list_to_integer` then `list_to_float`, with Erlang's syntax: an optional sign, digits, and
/// for a float a point with digits on both sides and an optional exponent. No spaces.
fn parse_erlang_number(s: &str) -> Result<KzInt, IntError> {
    let b = s.as_bytes();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let sign = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int_len = digits(sign);
    if int_len == 0 {
        return Err(IntError::NotANumber);
    }
    let mut i = sign + int_len;
    if i == b.len() {
        return s
            .trim_start_matches('+')
            .parse::<i64>()
            .map(|value| KzInt {
                value,
                rounded: false,
            })
            .map_err(|_| IntError::OutOfRange);
    }
    if b[i] != b'.' {
        return Err(IntError::NotANumber);
    }
    i += 1;
    let frac = digits(i);
    if frac == 0 {
        return Err(IntError::NotANumber);
    }
    i += frac;
    if i < b.len() {
        if !matches!(b[i], b'e' | b'E') {
            return Err(IntError::NotANumber);
        }
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = digits(i);
        if exp == 0 || i + exp != b.len() {
            return Err(IntError::NotANumber);
        }
    }
    let f: f64 = s.parse().map_err(|_| IntError::NotANumber)?;
    Ok(KzInt {
        value: round_float(f)?,
        rounded: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Val<'_> {
        Val::Str(Cow::Borrowed(x))
    }
    fn ok(v: i64, rounded: bool) -> Result<Option<KzInt>, IntError> {
        Ok(Some(KzInt { value: v, rounded }))
    }

    #[test]
    fn integer_strings_and_numbers_parse_exactly() {
        assert_eq!(kz_to_integer(&s("2262")), ok(2262, false));
        assert_eq!(kz_to_integer(&s("+60")), ok(60, false));
        assert_eq!(kz_to_integer(&s("0")), ok(0, false));
        assert_eq!(kz_to_integer(&Val::I64(7)), ok(7, false));
        assert_eq!(
            kz_to_integer(&Val::U64(63724403408)),
            ok(63724403408, false)
        );
        assert_eq!(kz_to_integer(&Val::Null), Ok(None));
    }

    #[test]
    fn decimals_round_half_away_from_zero_and_are_flagged() {
        // The billing doc's example: "0.02" becomes 0.
        assert_eq!(kz_to_integer(&s("0.02")), ok(0, true));
        assert_eq!(kz_to_integer(&s("0.5")), ok(1, true));
        assert_eq!(kz_to_integer(&s("2.5")), ok(3, true));
        assert_eq!(kz_to_integer(&s("2.49")), ok(2, true));
        assert_eq!(kz_to_integer(&s("1.5e2")), ok(150, true));
        assert_eq!(kz_to_integer(&Val::F64(59.6)), ok(60, true));
    }

    #[test]
    fn what_erlang_refuses_is_not_a_number() {
        for bad in [
            "", " 60", "60 ", "1e5", ".5", "5.", "abc", "0x10", "1,5", "1.5e",
        ] {
            assert_eq!(kz_to_integer(&s(bad)), Err(IntError::NotANumber), "{bad:?}");
        }
        assert_eq!(kz_to_integer(&Val::Bool(true)), Err(IntError::NotANumber));
        assert_eq!(
            kz_to_integer(&Val::Nested("{}".into())),
            Err(IntError::NotANumber)
        );
    }

    #[test]
    fn negatives_and_overflow_are_refused() {
        assert_eq!(kz_to_integer(&s("-1")), Err(IntError::Negative));
        assert_eq!(kz_to_integer(&Val::I64(-5)), Err(IntError::Negative));
        assert_eq!(kz_to_integer(&s("-0.4")), ok(0, true));
        assert_eq!(
            kz_to_integer(&s("99999999999999999999")),
            Err(IntError::OutOfRange)
        );
        assert_eq!(
            kz_to_integer(&Val::U64(u64::MAX)),
            Err(IntError::OutOfRange)
        );
        assert_eq!(kz_to_integer(&Val::F64(1e300)), Err(IntError::OutOfRange));
    }

    #[test]
    fn text_cells_spell_scalars_as_json() {
        assert_eq!(Val::I64(5).into_text().as_deref(), Some("5"));
        assert_eq!(Val::Bool(false).into_text().as_deref(), Some("false"));
        assert_eq!(Val::Null.into_text(), None);
    }
}
