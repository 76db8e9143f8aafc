//! The other direction: Postgres binary wire values to Arrow arrays. pgfed reads rows of the
//! client's own upstream session in binary format and decodes bind parameters sent in binary
//! format; both come through here. Values that the Arrow type cannot hold exactly (numeric digits
//! beyond the scale, infinite dates and timestamps, multi-dimensional arrays) are refused, never
//! rounded or clamped.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, IntervalMonthDayNanoBuilder,
    StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::types::IntervalMonthDayNano;
use arrow_array::{ArrayRef, ListArray};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, TimeUnit};

use crate::{EncodeError, PgType};

/// Days from 1970-01-01 (Arrow) to 2000-01-01 (Postgres).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 (Arrow) to 2000-01-01 (Postgres).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Decodes binary-format values of one column into an array of `pg_type.arrow_type(typmod)`
/// (timestamptz arrays carry `tz` as their zone label when given). `None` is NULL.
pub fn decode_binary<'a>(
    pg_type: &PgType,
    typmod: i32,
    tz: Option<&str>,
    values: impl IntoIterator<Item = Option<&'a [u8]>>,
) -> Result<ArrayRef, EncodeError> {
    let mut column = BinaryColumn::new(pg_type, typmod, tz)?;
    for v in values {
        column.append(v)?;
    }
    Ok(column.finish())
}

/// An Arrow builder for one column of binary-format Postgres values, filled row by row.
pub struct BinaryColumn {
    builder: Builder,
}

enum Builder {
    Bool(BooleanBuilder),
    Int2(Int16Builder),
    Int4(Int32Builder),
    Int8(Int64Builder),
    Float4(Float32Builder),
    Float8(Float64Builder),
    Numeric(Decimal128Builder, u8, i8),
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Bytea(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    Uuid(FixedSizeBinaryBuilder),
    /// Element column plus offsets and validity of the list.
    Array(Box<BinaryColumn>, Vec<i32>, Vec<bool>, Field),
}

fn bad(msg: impl Into<String>) -> EncodeError {
    EncodeError::InvalidValue(msg.into())
}

fn fixed<const N: usize>(raw: &[u8], what: &str) -> Result<[u8; N], EncodeError> {
    raw.try_into().map_err(|_| bad(format!("{what}: expected {N} bytes, got {}", raw.len())))
}

impl BinaryColumn {
    /// A builder for `pg_type` with `typmod`; `tz` labels timestamptz values (UTC if `None`).
    pub fn new(pg_type: &PgType, typmod: i32, tz: Option<&str>) -> Result<Self, EncodeError> {
        let builder = match pg_type {
            PgType::Bool => Builder::Bool(BooleanBuilder::new()),
            PgType::Int2 => Builder::Int2(Int16Builder::new()),
            PgType::Int4 => Builder::Int4(Int32Builder::new()),
            PgType::Int8 => Builder::Int8(Int64Builder::new()),
            PgType::Float4 => Builder::Float4(Float32Builder::new()),
            PgType::Float8 => Builder::Float8(Float64Builder::new()),
            PgType::Numeric => {
                let DataType::Decimal128(p, s) = pg_type.arrow_type(typmod) else {
                    return Err(EncodeError::Format("numeric maps to Decimal128".into()));
                };
                let b = Decimal128Builder::new()
                    .with_precision_and_scale(p, s)
                    .map_err(|e| EncodeError::Format(e.to_string()))?;
                Builder::Numeric(b, p, s)
            }
            PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Json => Builder::Text(StringBuilder::new()),
            PgType::Jsonb => Builder::Jsonb(StringBuilder::new()),
            PgType::Bytea => Builder::Bytea(BinaryBuilder::new()),
            PgType::Date => Builder::Date(Date32Builder::new()),
            PgType::Time => Builder::Time(Time64MicrosecondBuilder::new()),
            PgType::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new()),
            PgType::Timestamptz => {
                Builder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone(Arc::from(tz.unwrap_or("UTC"))))
            }
            PgType::Interval => Builder::Interval(IntervalMonthDayNanoBuilder::new()),
            PgType::Uuid => Builder::Uuid(FixedSizeBinaryBuilder::new(16)),
            PgType::Array(elem) => {
                if matches!(elem.as_ref(), PgType::Array(_)) {
                    return Err(EncodeError::Format("arrays of arrays are not supported".into()));
                }
                let inner = BinaryColumn::new(elem, typmod, tz)?;
                let field = Field::new("item", arrow_type(elem, typmod, tz), true);
                Builder::Array(Box::new(inner), vec![0], Vec::new(), field)
            }
        };
        Ok(BinaryColumn { builder })
    }

    /// Appends one value (`None`: NULL).
    pub fn append(&mut self, raw: Option<&[u8]>) -> Result<(), EncodeError> {
        let Some(raw) = raw else {
            self.append_null();
            return Ok(());
        };
        match &mut self.builder {
            Builder::Bool(b) => b.append_value(fixed::<1>(raw, "bool")?[0] != 0),
            Builder::Int2(b) => b.append_value(i16::from_be_bytes(fixed(raw, "int2")?)),
            Builder::Int4(b) => b.append_value(i32::from_be_bytes(fixed(raw, "int4")?)),
            Builder::Int8(b) => b.append_value(i64::from_be_bytes(fixed(raw, "int8")?)),
            Builder::Float4(b) => b.append_value(f32::from_be_bytes(fixed(raw, "float4")?)),
            Builder::Float8(b) => b.append_value(f64::from_be_bytes(fixed(raw, "float8")?)),
            Builder::Numeric(b, p, s) => b.append_value(decode_numeric(raw, *p, *s)?),
            Builder::Text(b) => b.append_value(std::str::from_utf8(raw).map_err(|_| bad("text is not UTF-8"))?),
            Builder::Jsonb(b) => {
                let (version, body) = raw.split_first().ok_or_else(|| bad("empty jsonb value"))?;
                if *version != 1 {
                    return Err(bad(format!("unsupported jsonb version {version}")));
                }
                b.append_value(std::str::from_utf8(body).map_err(|_| bad("jsonb is not UTF-8"))?)
            }
            Builder::Bytea(b) => b.append_value(raw),
            Builder::Date(b) => {
                let d = i32::from_be_bytes(fixed(raw, "date")?);
                if d == i32::MAX || d == i32::MIN {
                    return Err(bad("date infinity cannot be represented"));
                }
                b.append_value(d.checked_add(PG_EPOCH_DAYS).ok_or_else(|| bad("date out of range"))?)
            }
            Builder::Time(b) => b.append_value(i64::from_be_bytes(fixed(raw, "time")?)),
            Builder::Timestamp(b) => {
                let t = i64::from_be_bytes(fixed(raw, "timestamp")?);
                if t == i64::MAX || t == i64::MIN {
                    return Err(bad("timestamp infinity cannot be represented"));
                }
                b.append_value(t.checked_add(PG_EPOCH_MICROS).ok_or_else(|| bad("timestamp out of range"))?)
            }
            Builder::Interval(b) => {
                let v: [u8; 16] = fixed(raw, "interval")?;
                let micros = i64::from_be_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
                let days = i32::from_be_bytes([v[8], v[9], v[10], v[11]]);
                let months = i32::from_be_bytes([v[12], v[13], v[14], v[15]]);
                let nanos = micros.checked_mul(1000).ok_or_else(|| bad("interval out of range"))?;
                b.append_value(IntervalMonthDayNano::new(months, days, nanos))
            }
            Builder::Uuid(b) => b.append_value(fixed::<16>(raw, "uuid")?).map_err(|e| bad(e.to_string()))?,
            Builder::Array(inner, offsets, valid, _) => {
                let n = decode_array(raw, inner)?;
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last + i32::try_from(n).map_err(|_| bad("array too long"))?);
                valid.push(true);
            }
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match &mut self.builder {
            Builder::Bool(b) => b.append_null(),
            Builder::Int2(b) => b.append_null(),
            Builder::Int4(b) => b.append_null(),
            Builder::Int8(b) => b.append_null(),
            Builder::Float4(b) => b.append_null(),
            Builder::Float8(b) => b.append_null(),
            Builder::Numeric(b, _, _) => b.append_null(),
            Builder::Text(b) | Builder::Jsonb(b) => b.append_null(),
            Builder::Bytea(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Interval(b) => b.append_null(),
            Builder::Uuid(b) => b.append_null(),
            Builder::Array(_, offsets, valid, _) => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last);
                valid.push(false);
            }
        }
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        match &self.builder {
            Builder::Bool(b) => b.len(),
            Builder::Int2(b) => b.len(),
            Builder::Int4(b) => b.len(),
            Builder::Int8(b) => b.len(),
            Builder::Float4(b) => b.len(),
            Builder::Float8(b) => b.len(),
            Builder::Numeric(b, _, _) => b.len(),
            Builder::Text(b) | Builder::Jsonb(b) => b.len(),
            Builder::Bytea(b) => b.len(),
            Builder::Date(b) => b.len(),
            Builder::Time(b) => b.len(),
            Builder::Timestamp(b) => b.len(),
            Builder::Interval(b) => b.len(),
            Builder::Uuid(b) => b.len(),
            Builder::Array(_, _, valid, _) => valid.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values appended so far, as an array; the builder starts over empty.
    pub fn finish(&mut self) -> ArrayRef {
        match &mut self.builder {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int2(b) => Arc::new(b.finish()),
            Builder::Int4(b) => Arc::new(b.finish()),
            Builder::Int8(b) => Arc::new(b.finish()),
            Builder::Float4(b) => Arc::new(b.finish()),
            Builder::Float8(b) => Arc::new(b.finish()),
            Builder::Numeric(b, _, _) => Arc::new(b.finish()),
            Builder::Text(b) | Builder::Jsonb(b) => Arc::new(b.finish()),
            Builder::Bytea(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Interval(b) => Arc::new(b.finish()),
            Builder::Uuid(b) => Arc::new(b.finish()),
            Builder::Array(inner, offsets, valid, field) => {
                let values = inner.finish();
                let offs = OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(offsets, vec![0])));
                let nulls = NullBuffer::from(std::mem::take(valid));
                Arc::new(ListArray::new(Arc::new(field.clone()), offs, values, Some(nulls)))
            }
        }
    }
}

/// The Arrow type [`BinaryColumn::new`] builds for these arguments.
pub fn arrow_type(pg_type: &PgType, typmod: i32, tz: Option<&str>) -> DataType {
    match pg_type {
        PgType::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(tz.unwrap_or("UTC")))),
        PgType::Array(elem) => DataType::List(Arc::new(Field::new("item", arrow_type(elem, typmod, tz), true))),
        other => other.arrow_type(typmod),
    }
}

/// One-dimensional binary arrays (`array_send`): dimensions, has-nulls flag, element OID, then
/// per dimension its length and lower bound, then length-prefixed elements. Returns the number of
/// elements appended to `inner`.
fn decode_array(raw: &[u8], inner: &mut BinaryColumn) -> Result<usize, EncodeError> {
    let word = |at: usize| -> Result<i32, EncodeError> {
        raw.get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| bad("array value truncated"))
    };
    let ndim = word(0)?;
    let mut pos = 12;
    let count = match ndim {
        0 => 0,
        1 => {
            let n = usize::try_from(word(12)?).map_err(|_| bad("negative array length"))?;
            if word(16)? != 1 {
                return Err(bad("arrays with a lower bound other than 1 are not supported"));
            }
            pos = 20;
            n
        }
        _ => return Err(bad("multidimensional arrays are not supported")),
    };
    for _ in 0..count {
        let len = word(pos)?;
        pos += 4;
        if len < 0 {
            inner.append(None)?;
        } else {
            let end = pos + len as usize;
            inner.append(Some(raw.get(pos..end).ok_or_else(|| bad("array element truncated"))?))?;
            pos = end;
        }
    }
    Ok(count)
}

/// Postgres's binary numeric (base-10000 digits, weight, sign, display scale) as an unscaled
/// `i128` at `scale`. Values with nonzero digits beyond `scale`, or more than `precision` digits,
/// NaN and infinities are refused: pgfed never rounds a value it did not compute.
pub fn decode_numeric(raw: &[u8], precision: u8, scale: i8) -> Result<i128, EncodeError> {
    let header = raw.get(..8).ok_or_else(|| bad("numeric value too short"))?;
    let ndigits = usize::from(u16::from_be_bytes([header[0], header[1]]));
    let weight = i32::from(i16::from_be_bytes([header[2], header[3]]));
    let sign = u16::from_be_bytes([header[4], header[5]]);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err(bad("numeric NaN cannot be represented")),
        _ => return Err(bad("numeric infinity cannot be represented")),
    }
    if raw.len() != 8 + 2 * ndigits {
        return Err(bad("bad numeric length"));
    }
    let too_big =
        || EncodeError::OutOfRange(format!("numeric value does not fit numeric({precision}, {scale}) exactly"));
    let scale = i32::from(scale);
    let mut acc: i128 = 0;
    for i in 0..ndigits {
        let d = u16::from_be_bytes([raw[8 + 2 * i], raw[9 + 2 * i]]);
        if d >= 10_000 {
            return Err(bad("bad numeric digit"));
        }
        // Digit i is worth 10000^(weight - i); in units of 10^-scale that is 10^(4(weight-i)+scale).
        let exp = 4 * (weight - i as i32) + scale;
        let mut d = i128::from(d);
        if exp >= 0 {
            let m = 10i128.checked_pow(exp as u32).ok_or_else(too_big)?;
            d = d.checked_mul(m).ok_or_else(too_big)?;
        } else {
            let m = 10i128.checked_pow((-exp) as u32).unwrap_or(i128::MAX);
            if d % m != 0 {
                return Err(too_big());
            }
            d /= m;
        }
        acc = acc.checked_add(d).ok_or_else(too_big)?;
    }
    if acc.unsigned_abs() >= 10u128.pow(u32::from(precision)) {
        return Err(too_big());
    }
    Ok(if sign == 0x4000 { -acc } else { acc })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int32Type, TimestampMicrosecondType};

    fn numeric(digits: &[u16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_decode_exactly_or_not_at_all() {
        // 1234.5678
        let n = numeric(&[1234, 5678], 0, 0, 4);
        assert_eq!(decode_numeric(&n, 10, 4), Ok(12_345_678));
        assert_eq!(decode_numeric(&n, 10, 6), Ok(1_234_567_800));
        assert!(decode_numeric(&n, 10, 2).is_err(), "would round");
        assert!(decode_numeric(&n, 5, 4).is_err(), "too many digits");
        // -0.0005
        let n = numeric(&[5], -1, 0x4000, 4);
        assert_eq!(decode_numeric(&n, 10, 4), Ok(-5));
        assert_eq!(decode_numeric(&numeric(&[], 0, 0, 0), 5, 2), Ok(0));
        // 10^8 with scale 2
        assert_eq!(decode_numeric(&numeric(&[1], 2, 0, 0), 12, 2), Ok(10_000_000_000));
        assert!(decode_numeric(&numeric(&[], 0, 0xC000, 0), 5, 2).is_err());
    }

    #[test]
    fn columns_decode_with_nulls() {
        let a = decode_binary(&PgType::Int4, -1, None, [Some(&7i32.to_be_bytes()[..]), None]).expect("int4");
        assert_eq!(a.as_primitive::<Int32Type>().value(0), 7);
        assert!(a.is_null(1));
        let ts = (PG_EPOCH_MICROS.wrapping_neg() + 5).to_be_bytes();
        let a = decode_binary(&PgType::Timestamptz, -1, Some("Europe/Berlin"), [Some(&ts[..])]).expect("ts");
        assert_eq!(a.as_primitive::<TimestampMicrosecondType>().value(0), 5);
        assert_eq!(a.data_type(), &arrow_type(&PgType::Timestamptz, -1, Some("Europe/Berlin")));
        let n = numeric(&[12, 5000], 0, 0, 2);
        let a = decode_binary(&PgType::Numeric, PgType::numeric_typmod(6, 2), None, [Some(&n[..])]).expect("num");
        assert_eq!(a.as_primitive::<Decimal128Type>().value(0), 1250);
    }

    #[test]
    fn arrays_decode_to_lists() {
        let mut raw = Vec::new();
        for w in [1i32, 1, 23, 3, 1] {
            raw.extend_from_slice(&w.to_be_bytes());
        }
        raw.extend_from_slice(&4i32.to_be_bytes());
        raw.extend_from_slice(&1i32.to_be_bytes());
        raw.extend_from_slice(&(-1i32).to_be_bytes());
        raw.extend_from_slice(&4i32.to_be_bytes());
        raw.extend_from_slice(&3i32.to_be_bytes());
        let a = decode_binary(&PgType::Int4.array_of(), -1, None, [Some(&raw[..]), None]).expect("array");
        let list = a.as_list::<i32>();
        assert_eq!(list.value(0).len(), 3);
        assert!(list.value(0).is_null(1));
        assert!(list.is_null(1));
    }
}
