//! Reading one Arrow cell as a value in Postgres's units, and writing it in text or binary.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, IntervalUnit, TimeUnit};
use bytes::{BufMut, BytesMut};

use crate::numeric::Numeric;
use crate::settings::TextSettings;
use crate::text::{self, EPOCH_DIFF_DAYS, USECS_PER_DAY};
use crate::{EncodeError, Format, PgType, jsonb};

/// One cell, in the units Postgres uses (µs, days, months).
pub(crate) enum Value<'a> {
    Null,
    Bool(bool),
    Int(i128),
    F32(f32),
    F64(f64),
    /// Unsigned decimal digits times 10^-scale.
    Decimal {
        neg: bool,
        digits: String,
        scale: i32,
    },
    Str(&'a str),
    Bytes(&'a [u8]),
    /// Days since 1970-01-01.
    Date(i64),
    /// µs since midnight.
    Time(i64),
    /// µs since 1970-01-01 00:00:00 (UTC for zoned timestamps).
    Timestamp(i64),
    Interval {
        months: i32,
        days: i32,
        us: i64,
    },
    List(ArrayRef),
}

fn ns_to_us(ns: i64) -> i64 {
    ns.div_euclid(1000)
}

fn decimal(v: impl ToString, scale: i8) -> Value<'static> {
    let s = v.to_string();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, s),
    };
    Value::Decimal { neg, digits, scale: i32::from(scale) }
}

/// Cell `i` of `a`. Exhaustive over the Arrow types `PgType::accepts` lets through.
pub(crate) fn value_at(a: &dyn Array, i: usize) -> Result<Value<'_>, EncodeError> {
    if a.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match a.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(a.as_boolean().value(i)),
        DataType::Int8 => Value::Int(a.as_primitive::<Int8Type>().value(i).into()),
        DataType::Int16 => Value::Int(a.as_primitive::<Int16Type>().value(i).into()),
        DataType::Int32 => Value::Int(a.as_primitive::<Int32Type>().value(i).into()),
        DataType::Int64 => Value::Int(a.as_primitive::<Int64Type>().value(i).into()),
        DataType::UInt8 => Value::Int(a.as_primitive::<UInt8Type>().value(i).into()),
        DataType::UInt16 => Value::Int(a.as_primitive::<UInt16Type>().value(i).into()),
        DataType::UInt32 => Value::Int(a.as_primitive::<UInt32Type>().value(i).into()),
        DataType::UInt64 => Value::Int(a.as_primitive::<UInt64Type>().value(i).into()),
        DataType::Float32 => Value::F32(a.as_primitive::<Float32Type>().value(i)),
        DataType::Float64 => Value::F64(a.as_primitive::<Float64Type>().value(i)),
        DataType::Decimal32(_, s) => decimal(a.as_primitive::<Decimal32Type>().value(i), *s),
        DataType::Decimal64(_, s) => decimal(a.as_primitive::<Decimal64Type>().value(i), *s),
        DataType::Decimal128(_, s) => decimal(a.as_primitive::<Decimal128Type>().value(i), *s),
        DataType::Decimal256(_, s) => decimal(a.as_primitive::<Decimal256Type>().value(i), *s),
        DataType::Utf8 => Value::Str(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Value::Str(a.as_string::<i64>().value(i)),
        DataType::Utf8View => Value::Str(a.as_string_view().value(i)),
        DataType::Binary => Value::Bytes(a.as_binary::<i32>().value(i)),
        DataType::LargeBinary => Value::Bytes(a.as_binary::<i64>().value(i)),
        DataType::BinaryView => Value::Bytes(a.as_binary_view().value(i)),
        DataType::FixedSizeBinary(_) => Value::Bytes(a.as_fixed_size_binary().value(i)),
        DataType::Date32 => Value::Date(a.as_primitive::<Date32Type>().value(i).into()),
        DataType::Date64 => Value::Date(a.as_primitive::<Date64Type>().value(i).div_euclid(86_400_000)),
        DataType::Time32(TimeUnit::Second) => {
            Value::Time(i64::from(a.as_primitive::<Time32SecondType>().value(i)) * 1_000_000)
        }
        DataType::Time32(_) => Value::Time(i64::from(a.as_primitive::<Time32MillisecondType>().value(i)) * 1000),
        DataType::Time64(TimeUnit::Nanosecond) => {
            Value::Time(ns_to_us(a.as_primitive::<Time64NanosecondType>().value(i)))
        }
        DataType::Time64(_) => Value::Time(a.as_primitive::<Time64MicrosecondType>().value(i)),
        DataType::Timestamp(unit, _) => Value::Timestamp(match unit {
            TimeUnit::Second => {
                a.as_primitive::<TimestampSecondType>().value(i).checked_mul(1_000_000).ok_or_else(ts_range)?
            }
            TimeUnit::Millisecond => {
                a.as_primitive::<TimestampMillisecondType>().value(i).checked_mul(1000).ok_or_else(ts_range)?
            }
            TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i),
            TimeUnit::Nanosecond => ns_to_us(a.as_primitive::<TimestampNanosecondType>().value(i)),
        }),
        DataType::Interval(IntervalUnit::YearMonth) => {
            Value::Interval { months: a.as_primitive::<IntervalYearMonthType>().value(i), days: 0, us: 0 }
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = a.as_primitive::<IntervalDayTimeType>().value(i);
            Value::Interval { months: 0, days: v.days, us: i64::from(v.milliseconds) * 1000 }
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = a.as_primitive::<IntervalMonthDayNanoType>().value(i);
            Value::Interval { months: v.months, days: v.days, us: ns_to_us(v.nanoseconds) }
        }
        DataType::Duration(unit) => {
            let us = match unit {
                TimeUnit::Second => a.as_primitive::<DurationSecondType>().value(i).checked_mul(1_000_000),
                TimeUnit::Millisecond => a.as_primitive::<DurationMillisecondType>().value(i).checked_mul(1000),
                TimeUnit::Microsecond => Some(a.as_primitive::<DurationMicrosecondType>().value(i)),
                TimeUnit::Nanosecond => Some(ns_to_us(a.as_primitive::<DurationNanosecondType>().value(i))),
            };
            Value::Interval {
                months: 0,
                days: 0,
                us: us.ok_or_else(|| EncodeError::OutOfRange("interval out of range".into()))?,
            }
        }
        DataType::List(_) => Value::List(a.as_list::<i32>().value(i)),
        DataType::LargeList(_) => Value::List(a.as_list::<i64>().value(i)),
        DataType::FixedSizeList(..) => Value::List(a.as_fixed_size_list().value(i)),
        other => return Err(EncodeError::InvalidValue(format!("unsupported Arrow type {other}"))),
    })
}

fn ts_range() -> EncodeError {
    EncodeError::OutOfRange("timestamp out of range".into())
}

fn int_range(ty: &PgType) -> EncodeError {
    EncodeError::OutOfRange(format!("value out of range for {ty:?}"))
}

fn mismatch(ty: &PgType) -> EncodeError {
    EncodeError::InvalidValue(format!("value does not fit the declared type {ty:?}"))
}

/// Writes a non-NULL value's bytes (no length prefix). `Value::Null` must be handled by the caller.
pub(crate) fn write(
    v: &Value<'_>,
    ty: &PgType,
    fmt: Format,
    s: &TextSettings,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let binary = fmt == Format::Binary;
    match (ty, v) {
        (PgType::Bool, Value::Bool(b)) => {
            if binary {
                out.put_u8(u8::from(*b));
            } else {
                out.put_u8(if *b { b't' } else { b'f' });
            }
        }
        (PgType::Int2, Value::Int(n)) => {
            let n = i16::try_from(*n).map_err(|_| int_range(ty))?;
            if binary { out.put_i16(n) } else { out.put_slice(n.to_string().as_bytes()) }
        }
        (PgType::Int4, Value::Int(n)) => {
            let n = i32::try_from(*n).map_err(|_| int_range(ty))?;
            if binary { out.put_i32(n) } else { out.put_slice(n.to_string().as_bytes()) }
        }
        (PgType::Int8, Value::Int(n)) => {
            let n = i64::try_from(*n).map_err(|_| int_range(ty))?;
            if binary { out.put_i64(n) } else { out.put_slice(n.to_string().as_bytes()) }
        }
        (PgType::Float4, Value::F32(f)) => {
            if binary {
                out.put_f32(*f)
            } else {
                text::float4(out, *f, s.extra_float_digits)
            }
        }
        (PgType::Float8, Value::F64(f)) => {
            if binary {
                out.put_f64(*f)
            } else {
                text::float8(out, *f, s.extra_float_digits)
            }
        }
        (PgType::Float8, Value::F32(f)) => {
            let f = f64::from(*f);
            if binary { out.put_f64(f) } else { text::float8(out, f, s.extra_float_digits) }
        }
        (PgType::Numeric, Value::Int(_) | Value::Decimal { .. } | Value::Str(_)) => {
            let n = match v {
                Value::Int(n) => Numeric::from_digits(*n < 0, &n.unsigned_abs().to_string(), 0),
                Value::Decimal { neg, digits, scale } => Numeric::from_digits(*neg, digits, *scale),
                Value::Str(t) => Numeric::parse(t)?,
                _ => return Err(mismatch(ty)),
            };
            if binary { n.write_binary(out)? } else { n.write_text(out) }
        }
        (PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Json, Value::Str(t)) => out.put_slice(t.as_bytes()),
        (PgType::Jsonb, Value::Str(t)) => {
            if binary {
                out.put_u8(1);
            }
            jsonb::write_jsonb(out, t)?;
        }
        (PgType::Bytea, Value::Bytes(b)) => {
            if binary {
                out.put_slice(b)
            } else {
                text::bytea(out, b, s)
            }
        }
        (PgType::Uuid, Value::Bytes(b)) if b.len() == 16 => {
            if binary {
                out.put_slice(b)
            } else {
                text::uuid(out, b)
            }
        }
        (PgType::Date, Value::Date(d)) => {
            if binary {
                // The text path checks the range; binary sends any i32 Postgres could hold.
                let pg = i32::try_from(d - EPOCH_DIFF_DAYS)
                    .map_err(|_| EncodeError::OutOfRange("date out of range".into()))?;
                out.put_i32(pg);
            } else {
                text::date(out, *d, s)?;
            }
        }
        (PgType::Time, Value::Time(us)) => {
            if binary {
                if !(0..=USECS_PER_DAY).contains(us) {
                    return Err(EncodeError::OutOfRange("time out of range".into()));
                }
                out.put_i64(*us);
            } else {
                text::time(out, *us)?;
            }
        }
        (PgType::Timestamp | PgType::Timestamptz, Value::Timestamp(us)) => {
            if binary {
                out.put_i64(text::pg_timestamp(*us)?);
            } else {
                text::timestamp(out, *us, *ty == PgType::Timestamptz, s)?;
            }
        }
        (PgType::Interval, Value::Interval { months, days, us }) => {
            if binary {
                out.put_i64(*us);
                out.put_i32(*days);
                out.put_i32(*months);
            } else {
                text::interval(out, *months, *days, *us, s)?;
            }
        }
        (PgType::Array(elem), Value::List(items)) => write_array(items.as_ref(), elem, fmt, s, out)?,
        _ => return Err(mismatch(ty)),
    }
    Ok(())
}

/// `array_out` / `array_send` for a one-dimensional array with lower bound 1.
fn write_array(
    items: &dyn Array,
    elem: &PgType,
    fmt: Format,
    s: &TextSettings,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let n = items.len();
    if fmt == Format::Binary {
        let has_null = items.logical_null_count() > 0 || matches!(items.data_type(), DataType::Null) && n > 0;
        out.put_i32(if n == 0 { 0 } else { 1 });
        out.put_i32(i32::from(has_null));
        out.put_u32(elem.oid());
        if n > 0 {
            out.put_i32(i32::try_from(n).map_err(|_| EncodeError::OutOfRange("array too long".into()))?);
            out.put_i32(1);
        }
        for i in 0..n {
            match value_at(items, i)? {
                Value::Null => out.put_i32(-1),
                v => write_prefixed(&v, elem, fmt, s, out)?,
            }
        }
    } else {
        out.put_u8(b'{');
        let mut scratch = BytesMut::new();
        for i in 0..n {
            if i > 0 {
                out.put_u8(b',');
            }
            match value_at(items, i)? {
                Value::Null => out.put_slice(b"NULL"),
                v => {
                    scratch.clear();
                    write(&v, elem, fmt, s, &mut scratch)?;
                    text::array_element(out, &scratch);
                }
            }
        }
        out.put_u8(b'}');
    }
    Ok(())
}

/// Writes `int32 length` + bytes for a non-NULL value.
pub(crate) fn write_prefixed(
    v: &Value<'_>,
    ty: &PgType,
    fmt: Format,
    s: &TextSettings,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let at = out.len();
    out.put_i32(0);
    write(v, ty, fmt, s, out)?;
    let len =
        i32::try_from(out.len() - at - 4).map_err(|_| EncodeError::OutOfRange("value longer than 2 GiB".into()))?;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}
