//! JSON values into the declared Postgres types (through Arrow), query values into request
//! parameters, and Arrow values back into JSON for writes.
//!
//! Conversions follow Postgres's input functions where they are strict: an integer column takes
//! a JSON integer (or a string holding one) in range, never `1.5`; `numeric(p, s)` rounds to `s`
//! digits half away from zero as Postgres does and refuses values with more than `p - s` integer
//! digits; an unconstrained `numeric` (held as `Decimal128(38, 10)`) refuses values it cannot
//! hold exactly. timestamptz takes ISO 8601 text (no offset: UTC) or epoch seconds.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use pgfed_connector_sdk::Value;
use serde_json::value::RawValue;

use crate::jsonpath::{Kind, kind};

/// The declared types the connector reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ColType {
    /// text, varchar, json and jsonb (all Utf8). `json`: keep strings quoted (the column option
    /// `json`), for jsonb columns whose values may be JSON strings.
    Text {
        json: bool,
    },
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Decimal {
        precision: u8,
        scale: i8,
    },
    Bool,
    Date,
    /// timestamptz (`tz`) or timestamp.
    Timestamp {
        tz: Option<Arc<str>>,
    },
}

impl ColType {
    pub fn from_arrow(data_type: &DataType, json: bool) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 => ColType::Text { json },
            DataType::Int16 => ColType::Int16,
            DataType::Int32 => ColType::Int32,
            DataType::Int64 => ColType::Int64,
            DataType::Float32 => ColType::Float32,
            DataType::Float64 => ColType::Float64,
            DataType::Decimal128(p, s) if *s >= 0 => ColType::Decimal { precision: *p, scale: *s },
            DataType::Boolean => ColType::Bool,
            DataType::Date32 => ColType::Date,
            DataType::Timestamp(TimeUnit::Microsecond, tz) => ColType::Timestamp { tz: tz.clone() },
            _ => return None,
        })
    }
}

/// One converted value, borrowed from the response body where it can be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Scaled by the column's scale.
    Decimal(i128),
    Text(Cow<'a, str>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01 (UTC for timestamptz).
    Timestamp(i64),
}

fn shown(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Null => "null",
        Kind::Bool => "a boolean",
        Kind::Number => "a number",
        Kind::String => "a string",
        Kind::Array => "an array",
        Kind::Object => "an object",
    }
}

/// A JSON value as the column's type; the error says why, showing at most 40 characters.
pub(crate) fn json_to_scalar<'a>(value: &'a RawValue, ty: &ColType) -> Result<Scalar<'a>, String> {
    let k = kind(value);
    if k == Kind::Null {
        return Ok(Scalar::Null);
    }
    let raw = value.get();
    let text = || -> Result<Cow<'a, str>, String> {
        match k {
            Kind::String => serde_json::from_str::<Cow<'a, str>>(raw).map_err(|e| e.to_string()),
            Kind::Number => Ok(Cow::Borrowed(raw)),
            _ => Err(format!("expected a number or a string, got {}", kind_name(k))),
        }
    };
    let bad = |what: &str, t: &str| format!("invalid input for type {what}: \"{}\"", shown(t));
    match ty {
        ColType::Text { json: true } => Ok(Scalar::Text(Cow::Borrowed(raw))),
        ColType::Text { json: false } => match k {
            Kind::String => Ok(Scalar::Text(text()?)),
            // Numbers keep their text, objects and arrays are their JSON text.
            _ => Ok(Scalar::Text(Cow::Borrowed(raw))),
        },
        ColType::Int16 | ColType::Int32 | ColType::Int64 => {
            let t = text()?;
            let (name, min, max) = match ty {
                ColType::Int16 => ("smallint", i64::from(i16::MIN), i64::from(i16::MAX)),
                ColType::Int32 => ("integer", i64::from(i32::MIN), i64::from(i32::MAX)),
                _ => ("bigint", i64::MIN, i64::MAX),
            };
            let n: i64 = t.trim().parse().map_err(|_| bad(name, &t))?;
            if n < min || n > max {
                return Err(format!("value \"{}\" is out of range for type {name}", shown(&t)));
            }
            Ok(Scalar::Int(n))
        }
        ColType::Float32 | ColType::Float64 => {
            let t = text()?;
            let s = t.trim();
            let name = if *ty == ColType::Float32 { "real" } else { "double precision" };
            let n: f64 = match s.to_ascii_lowercase().as_str() {
                "nan" => f64::NAN,
                "infinity" | "inf" => f64::INFINITY,
                "-infinity" | "-inf" => f64::NEG_INFINITY,
                _ if s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.' || c == '+') => {
                    let n = if *ty == ColType::Float32 {
                        f64::from(s.parse::<f32>().map_err(|_| bad(name, &t))?)
                    } else {
                        s.parse::<f64>().map_err(|_| bad(name, &t))?
                    };
                    if n.is_infinite() {
                        return Err(format!("\"{}\" is out of range for type {name}", shown(&t)));
                    }
                    n
                }
                _ => return Err(bad(name, &t)),
            };
            Ok(Scalar::Float(n))
        }
        ColType::Decimal { precision, scale } => {
            let t = text()?;
            parse_decimal(t.trim(), *precision, *scale).map(Scalar::Decimal)
        }
        ColType::Bool => match k {
            Kind::Bool => Ok(Scalar::Bool(raw == "true")),
            Kind::String => {
                let t = text()?;
                match t.trim().to_ascii_lowercase().as_str() {
                    "t" | "true" | "y" | "yes" | "on" | "1" => Ok(Scalar::Bool(true)),
                    "f" | "false" | "n" | "no" | "off" | "0" => Ok(Scalar::Bool(false)),
                    _ => Err(bad("boolean", &t)),
                }
            }
            _ => Err(format!("expected a boolean, got {}", kind_name(k))),
        },
        ColType::Date => match k {
            Kind::String => {
                let t = text()?;
                parse_date(t.trim()).map(Scalar::Date).ok_or_else(|| bad("date", &t))
            }
            _ => Err(format!("expected a date string, got {}", kind_name(k))),
        },
        ColType::Timestamp { tz } => match k {
            Kind::Number => epoch_micros(raw).map(Scalar::Timestamp),
            Kind::String => {
                let t = text()?;
                parse_timestamp(t.trim(), tz.is_some()).map(Scalar::Timestamp).ok_or_else(|| {
                    bad(if tz.is_some() { "timestamp with time zone" } else { "timestamp without time zone" }, &t)
                })
            }
            _ => Err(format!("expected a timestamp string or epoch seconds, got {}", kind_name(k))),
        },
    }
}

/// A decimal string (JSON number syntax, exponent allowed) scaled to `scale`, rounded half away
/// from zero when `precision` is declared; the unconstrained default (38, 10) refuses rounding.
pub(crate) fn parse_decimal(t: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let bad = || format!("invalid input for type numeric: \"{}\"", shown(t));
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    // digits × 10^(exponent - frac_len): move the decimal point.
    let digits: String = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let point = i64::from(exponent) - frac_part.len() as i64 + i64::from(scale);
    // value × 10^scale = digits × 10^point
    let (kept, dropped): (&str, &str) = if point >= 0 {
        (digits, "")
    } else {
        let cut = digits.len().saturating_sub(point.unsigned_abs() as usize);
        (&digits[..cut], &digits[cut..])
    };
    let unconstrained = precision == 38 && scale == 10;
    if unconstrained && dropped.bytes().any(|b| b != b'0') {
        return Err(format!(
            "value \"{}\" has more than 10 decimal digits; declare the column numeric(p, s) to round it",
            shown(t)
        ));
    }
    let overflow = || format!("numeric field overflow: \"{}\" does not fit numeric({precision}, {scale})", shown(t));
    let total_digits = kept.len() as i64 + if point > 0 { point } else { 0 };
    if total_digits > 38 {
        return Err(overflow());
    }
    let mut n: i128 = 0;
    for b in kept.bytes() {
        n = n * 10 + i128::from(b - b'0');
    }
    if point > 0 {
        n = n.checked_mul(10i128.checked_pow(point as u32).ok_or_else(overflow)?).ok_or_else(overflow)?;
    }
    // Digits dropped beyond the significant ones are leading zeros: no rounding then.
    let dropped_all = point < 0 && point.unsigned_abs() as usize > digits.len();
    if !dropped_all && dropped.as_bytes().first().is_some_and(|b| *b >= b'5') {
        n += 1;
    }
    if n >= 10i128.pow(u32::from(precision)) {
        return Err(overflow());
    }
    Ok(if negative { -n } else { n })
}

/// `YYYY-MM-DD` as days since 1970-01-01.
pub(crate) fn parse_date(t: &str) -> Option<i32> {
    let d: jiff::civil::Date = t.parse().ok()?;
    let days = d.since(jiff::civil::date(1970, 1, 1)).ok()?.get_days();
    Some(days)
}

/// ISO 8601 / RFC 3339 text as microseconds. For timestamptz an offset converts to UTC and a
/// missing one means UTC; a date alone is its midnight. For timestamp (no time zone) an offset is
/// refused, since Postgres would silently drop it.
pub(crate) fn parse_timestamp(t: &str, tz: bool) -> Option<i64> {
    match (tz, t.parse::<jiff::Timestamp>()) {
        (true, Ok(ts)) => return Some(ts.as_microsecond()),
        (false, Ok(_)) => return None,
        _ => {}
    }
    let dt: jiff::civil::DateTime = t.parse().ok().or_else(|| t.parse::<jiff::civil::Date>().ok().map(|d| d.into()))?;
    let ts = dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(ts.as_microsecond())
}

/// Epoch seconds (a JSON number, fractions allowed, exactly) as microseconds.
fn epoch_micros(raw: &str) -> Result<i64, String> {
    let scaled = parse_decimal(raw, 38, 6).map_err(|_| format!("invalid epoch seconds: \"{}\"", shown(raw)))?;
    i64::try_from(scaled).map_err(|_| format!("epoch seconds out of range: \"{}\"", shown(raw)))
}

/// The scalar a query value compares as, in the column's type; `None` if the value cannot be a
/// value of the column (then the qual is not pushed).
pub(crate) fn value_to_scalar(value: &Value, ty: &ColType) -> Option<Scalar<'static>> {
    Some(match (ty, value) {
        (ColType::Text { json: false }, Value::Text(s)) => Scalar::Text(Cow::Owned(s.clone())),
        (ColType::Int16 | ColType::Int32 | ColType::Int64, Value::Int(i)) => Scalar::Int(*i),
        (ColType::Bool, Value::Bool(b)) => Scalar::Bool(*b),
        (ColType::Decimal { scale, .. }, Value::Numeric(n)) => {
            // A value with more digits than the column holds equals no row: exact or nothing.
            Scalar::Decimal(parse_decimal(n, 38, *scale).ok().filter(|_| exact_at_scale(n, *scale))?)
        }
        (ColType::Decimal { scale, .. }, Value::Int(i)) => {
            Scalar::Decimal(i128::from(*i).checked_mul(10i128.checked_pow(*scale as u32)?)?)
        }
        (ColType::Date, Value::Date(d)) => Scalar::Date(*d),
        (ColType::Timestamp { tz: Some(_) }, Value::TimestampTz(t)) => Scalar::Timestamp(*t),
        (ColType::Timestamp { tz: None }, Value::Timestamp(t)) => Scalar::Timestamp(*t),
        _ => return None,
    })
}

fn exact_at_scale(n: &str, scale: i8) -> bool {
    match n.split_once('.') {
        Some((_, frac)) => frac.len() <= scale as usize || frac[scale as usize..].bytes().all(|b| b == b'0'),
        None => true,
    }
}

/// How a timestamp travels in a request parameter (column option `param_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ParamFormat {
    /// RFC 3339 (`2024-05-01T12:00:00Z`), dates as `YYYY-MM-DD`.
    #[default]
    Iso,
    /// Whole epoch seconds (fractions are cut toward the past, so a lower bound stays a superset).
    Epoch,
}

/// A scalar as request-parameter text.
pub(crate) fn param_text(value: &Scalar<'_>, ty: &ColType, format: ParamFormat) -> Option<String> {
    Some(match value {
        Scalar::Null => return None,
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Decimal(n) => decimal_text(*n, if let ColType::Decimal { scale, .. } = ty { *scale } else { 0 }),
        Scalar::Text(t) => t.to_string(),
        Scalar::Date(d) => match format {
            ParamFormat::Iso => date_text(*d)?,
            ParamFormat::Epoch => (i64::from(*d) * 86_400).to_string(),
        },
        Scalar::Timestamp(us) => match format {
            ParamFormat::Iso => timestamp_text(*us, matches!(ty, ColType::Timestamp { tz: Some(_) }))?,
            ParamFormat::Epoch => us.div_euclid(1_000_000).to_string(),
        },
    })
}

pub(crate) fn decimal_text(n: i128, scale: i8) -> String {
    if scale <= 0 {
        return n.to_string();
    }
    let digits = n.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if n < 0 { "-" } else { "" })
}

pub(crate) fn date_text(days: i32) -> Option<String> {
    let d = jiff::civil::date(1970, 1, 1).checked_add(jiff::Span::new().try_days(days).ok()?).ok()?;
    Some(d.to_string())
}

pub(crate) fn timestamp_text(us: i64, tz: bool) -> Option<String> {
    let ts = jiff::Timestamp::from_microsecond(us).ok()?;
    if tz { Some(ts.to_string()) } else { Some(ts.to_zoned(jiff::tz::TimeZone::UTC).datetime().to_string()) }
}

/// Builds one Arrow column from scalars.
pub(crate) enum ColumnBuilder {
    Text(StringBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, Option<Arc<str>>),
}

impl ColumnBuilder {
    pub fn new(ty: &ColType) -> Self {
        match ty {
            ColType::Text { .. } => ColumnBuilder::Text(StringBuilder::new()),
            ColType::Int16 => ColumnBuilder::Int16(Int16Builder::new()),
            ColType::Int32 => ColumnBuilder::Int32(Int32Builder::new()),
            ColType::Int64 => ColumnBuilder::Int64(Int64Builder::new()),
            ColType::Float32 => ColumnBuilder::Float32(Float32Builder::new()),
            ColType::Float64 => ColumnBuilder::Float64(Float64Builder::new()),
            ColType::Decimal { precision, scale } => {
                ColumnBuilder::Decimal(Decimal128Builder::new(), *precision, *scale)
            }
            ColType::Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
            ColType::Date => ColumnBuilder::Date(Date32Builder::new()),
            ColType::Timestamp { tz } => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new(), tz.clone()),
        }
    }

    /// Appends a scalar that [`json_to_scalar`] made for this column's type.
    pub fn append(&mut self, value: &Scalar<'_>) {
        match (self, value) {
            (ColumnBuilder::Text(b), Scalar::Text(t)) => b.append_value(t),
            (ColumnBuilder::Int16(b), Scalar::Int(i)) => b.append_value(*i as i16),
            (ColumnBuilder::Int32(b), Scalar::Int(i)) => b.append_value(*i as i32),
            (ColumnBuilder::Int64(b), Scalar::Int(i)) => b.append_value(*i),
            (ColumnBuilder::Float32(b), Scalar::Float(f)) => b.append_value(*f as f32),
            (ColumnBuilder::Float64(b), Scalar::Float(f)) => b.append_value(*f),
            (ColumnBuilder::Decimal(b, ..), Scalar::Decimal(n)) => b.append_value(*n),
            (ColumnBuilder::Bool(b), Scalar::Bool(v)) => b.append_value(*v),
            (ColumnBuilder::Date(b), Scalar::Date(d)) => b.append_value(*d),
            (ColumnBuilder::Timestamp(b, _), Scalar::Timestamp(t)) => b.append_value(*t),
            (builder, _) => builder.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Int16(b) => b.append_null(),
            ColumnBuilder::Int32(b) => b.append_null(),
            ColumnBuilder::Int64(b) => b.append_null(),
            ColumnBuilder::Float32(b) => b.append_null(),
            ColumnBuilder::Float64(b) => b.append_null(),
            ColumnBuilder::Decimal(b, ..) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b, _) => b.append_null(),
        }
    }

    pub fn finish(&mut self) -> Result<ArrayRef, String> {
        Ok(match self {
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Int16(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, p, s) => {
                Arc::new(b.finish().with_precision_and_scale(*p, *s).map_err(|e| e.to_string())?)
            }
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
        })
    }
}

/// Row `row` of an Arrow column as JSON text for a request body; `None` for NULL.
pub(crate) fn arrow_to_json(array: &dyn Array, row: usize, ty: &ColType) -> Result<Option<String>, String> {
    if array.is_null(row) {
        return Ok(None);
    }
    let quoted = |s: &str| serde_json::to_string(s).map_err(|e| e.to_string());
    Ok(Some(match ty {
        ColType::Text { json } => {
            let s = array.as_string_opt::<i32>().ok_or("not a text array")?.value(row);
            // A jsonb column's text is JSON already; check it so a body is never malformed.
            if *json
                || serde_json::from_str::<&RawValue>(s).is_ok_and(|v| matches!(kind(v), Kind::Object | Kind::Array))
            {
                if *json {
                    serde_json::from_str::<&RawValue>(s).map_err(|e| format!("not JSON: {e}"))?;
                    s.to_string()
                } else {
                    quoted(s)?
                }
            } else {
                quoted(s)?
            }
        }
        ColType::Int16 => array.as_primitive_opt::<Int16Type>().ok_or("not int2")?.value(row).to_string(),
        ColType::Int32 => array.as_primitive_opt::<Int32Type>().ok_or("not int4")?.value(row).to_string(),
        ColType::Int64 => array.as_primitive_opt::<Int64Type>().ok_or("not int8")?.value(row).to_string(),
        ColType::Float32 | ColType::Float64 => {
            let f = match ty {
                ColType::Float32 => f64::from(array.as_primitive_opt::<Float32Type>().ok_or("not float4")?.value(row)),
                _ => array.as_primitive_opt::<Float64Type>().ok_or("not float8")?.value(row),
            };
            if !f.is_finite() {
                return Err(format!("{f} has no JSON number form"));
            }
            f.to_string()
        }
        ColType::Decimal { scale, .. } => {
            decimal_text(array.as_primitive_opt::<Decimal128Type>().ok_or("not numeric")?.value(row), *scale)
        }
        ColType::Bool => array.as_boolean_opt().ok_or("not bool")?.value(row).to_string(),
        ColType::Date => {
            let d = array.as_primitive_opt::<Date32Type>().ok_or("not date")?.value(row);
            quoted(&date_text(d).ok_or("date out of range")?)?
        }
        ColType::Timestamp { tz } => {
            let t = array.as_primitive_opt::<TimestampMicrosecondType>().ok_or("not timestamp")?.value(row);
            quoted(&timestamp_text(t, tz.is_some()).ok_or("timestamp out of range")?)?
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).expect("json")
    }

    fn conv(json: &str, ty: &ColType) -> Result<Scalar<'static>, String> {
        let r = raw(json);
        json_to_scalar(&r, ty).map(|s| match s {
            Scalar::Text(t) => Scalar::Text(Cow::Owned(t.into_owned())),
            Scalar::Null => Scalar::Null,
            Scalar::Bool(b) => Scalar::Bool(b),
            Scalar::Int(i) => Scalar::Int(i),
            Scalar::Float(f) => Scalar::Float(f),
            Scalar::Decimal(d) => Scalar::Decimal(d),
            Scalar::Date(d) => Scalar::Date(d),
            Scalar::Timestamp(t) => Scalar::Timestamp(t),
        })
    }

    #[test]
    fn numerics_keep_every_digit_and_round_like_postgres() {
        let d = ColType::Decimal { precision: 10, scale: 2 };
        assert_eq!(conv("12.345", &d), Ok(Scalar::Decimal(1235)));
        assert_eq!(conv("-12.345", &d), Ok(Scalar::Decimal(-1235)));
        assert_eq!(conv("\"0.5e1\"", &d), Ok(Scalar::Decimal(500)));
        assert!(conv("123456789", &d).expect_err("overflow").contains("overflow"));
        let big = ColType::Decimal { precision: 38, scale: 10 };
        assert_eq!(conv("12345678901234567890.123", &big), Ok(Scalar::Decimal(123456789012345678901230000000)));
        assert!(conv("0.12345678901", &big).is_err(), "unconstrained numeric never rounds");
        assert_eq!(conv("0.0005", &d), Ok(Scalar::Decimal(0)));
        assert_eq!(conv("0.005", &d), Ok(Scalar::Decimal(1)));
        assert_eq!(decimal_text(-5, 2), "-0.05");
        assert_eq!(decimal_text(123456, 3), "123.456");
    }

    #[test]
    fn integers_are_strict_and_range_checked() {
        assert_eq!(conv("42", &ColType::Int32), Ok(Scalar::Int(42)));
        assert_eq!(conv("\"42\"", &ColType::Int64), Ok(Scalar::Int(42)));
        assert!(conv("1.5", &ColType::Int32).is_err());
        assert!(conv("40000", &ColType::Int16).expect_err("range").contains("out of range"));
        assert!(conv("true", &ColType::Int32).is_err());
        assert_eq!(conv("null", &ColType::Int32), Ok(Scalar::Null));
    }

    #[test]
    fn times_from_iso_text_and_epoch_seconds() {
        let tz = ColType::Timestamp { tz: Some("+00:00".into()) };
        assert_eq!(conv("\"1970-01-01T00:00:01Z\"", &tz), Ok(Scalar::Timestamp(1_000_000)));
        assert_eq!(conv("\"1970-01-01T01:00:00+01:00\"", &tz), Ok(Scalar::Timestamp(0)));
        assert_eq!(conv("\"1970-01-01T00:00:02\"", &tz), Ok(Scalar::Timestamp(2_000_000)));
        assert_eq!(conv("1700000000.123456", &tz), Ok(Scalar::Timestamp(1_700_000_000_123_456)));
        assert!(conv("\"yesterday\"", &tz).is_err());
        let naive = ColType::Timestamp { tz: None };
        assert!(conv("\"1970-01-01T01:00:00+01:00\"", &naive).is_err(), "an offset would be dropped");
        assert_eq!(conv("\"1970-01-02\"", &ColType::Date), Ok(Scalar::Date(1)));
        assert_eq!(date_text(19723).as_deref(), Some("2024-01-01"));
        assert_eq!(timestamp_text(1_500_000, true).as_deref(), Some("1970-01-01T00:00:01.5Z"));
    }

    #[test]
    fn text_takes_strings_and_json_text_of_the_rest() {
        let t = ColType::Text { json: false };
        assert_eq!(conv("\"a\\u00e9\"", &t), Ok(Scalar::Text("aé".into())));
        assert_eq!(conv("1.50", &t), Ok(Scalar::Text("1.50".into())));
        assert_eq!(conv("{\"a\": 1}", &t), Ok(Scalar::Text("{\"a\": 1}".into())));
        assert_eq!(conv("\"x\"", &ColType::Text { json: true }), Ok(Scalar::Text("\"x\"".into())));
        assert_eq!(conv("\"on\"", &ColType::Bool), Ok(Scalar::Bool(true)));
    }
}
