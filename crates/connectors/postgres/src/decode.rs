//! Remote rows (binary format) to Arrow arrays of the declared types.

use std::error::Error;
use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, IntervalMonthDayNanoBuilder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::types::IntervalMonthDayNano;
use arrow_schema::{DataType, IntervalUnit, TimeUnit};
use pgfed_connector_sdk::ConnectorError;
use tokio_postgres::types::{FromSql, Type};

use crate::sql::{Column, PG_EPOCH_DAYS, PG_EPOCH_MICROS};

/// A column value as the server sent it (binary format), whatever its type.
pub(crate) struct Raw<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The remote wire type of a column, once checked against the declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Remote {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Jsonb,
    Bytea,
    Date,
    Timestamp,
    Numeric,
    Uuid,
    Time,
    Interval,
}

enum Builder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Decimal(Decimal128Builder, u8, i8),
    Uuid(FixedSizeBinaryBuilder),
    Time(Time64MicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
}

/// Decodes one column of a scan.
pub(crate) struct Decoder {
    column: String,
    nullable: bool,
    remote: Remote,
    builder: Builder,
}

fn data_type_error(column: &str, reason: impl Into<String>) -> ConnectorError {
    ConnectorError::DataType { column: column.to_string(), reason: reason.into() }
}

impl Decoder {
    /// Checks that the remote type fits the declared one: the same type, or a narrower integer
    /// or float; text-like types (text, varchar, bpchar, name, citext, json, jsonb) for Utf8.
    pub(crate) fn new(column: &Column, remote: &Type) -> Result<Self, ConnectorError> {
        Self::with(column, remote, false)
    }

    /// [`Decoder::new`] for a query the engine generated, whose computed columns may come back
    /// wider than the engine's type: `sum(CAST(x AS BIGINT))` is numeric in Postgres, decoded
    /// into int8 exactly (or failing with out of range, never wrapping).
    pub(crate) fn computed(column: &Column, remote: &Type) -> Result<Self, ConnectorError> {
        Self::with(column, remote, true)
    }

    fn with(column: &Column, remote: &Type, computed: bool) -> Result<Self, ConnectorError> {
        let dt = &column.data_type;
        let is = |types: &[Type]| types.contains(remote);
        let kind = match dt {
            DataType::Boolean if is(&[Type::BOOL]) => Remote::Bool,
            DataType::Int16 | DataType::Int32 | DataType::Int64 if *remote == Type::INT2 => Remote::Int2,
            DataType::Int32 | DataType::Int64 if *remote == Type::INT4 => Remote::Int4,
            DataType::Int64 if *remote == Type::INT8 => Remote::Int8,
            DataType::Int64 if computed && *remote == Type::NUMERIC => Remote::Numeric,
            DataType::Float32 | DataType::Float64 if *remote == Type::FLOAT4 => Remote::Float4,
            DataType::Float64 if *remote == Type::FLOAT8 => Remote::Float8,
            DataType::Utf8 if is(&[Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME, Type::JSON]) => Remote::Text,
            DataType::Utf8 if remote.name() == "citext" => Remote::Text,
            DataType::Utf8 if *remote == Type::JSONB => Remote::Jsonb,
            DataType::Binary if *remote == Type::BYTEA => Remote::Bytea,
            DataType::Date32 if *remote == Type::DATE => Remote::Date,
            DataType::Timestamp(TimeUnit::Microsecond, None) if *remote == Type::TIMESTAMP => Remote::Timestamp,
            DataType::Timestamp(TimeUnit::Microsecond, Some(_)) if *remote == Type::TIMESTAMPTZ => Remote::Timestamp,
            DataType::Decimal128(_, _) if *remote == Type::NUMERIC => Remote::Numeric,
            DataType::FixedSizeBinary(16) if *remote == Type::UUID => Remote::Uuid,
            DataType::Time64(TimeUnit::Microsecond) if *remote == Type::TIME => Remote::Time,
            DataType::Interval(IntervalUnit::MonthDayNano) if *remote == Type::INTERVAL => Remote::Interval,
            _ => {
                return Err(data_type_error(
                    &column.name,
                    format!("remote type {} does not fit the declared type {dt}", remote.name()),
                ));
            }
        };
        let builder = match dt {
            DataType::Boolean => Builder::Bool(BooleanBuilder::new()),
            DataType::Int16 => Builder::I16(Int16Builder::new()),
            DataType::Int32 => Builder::I32(Int32Builder::new()),
            DataType::Int64 => Builder::I64(Int64Builder::new()),
            DataType::Float32 => Builder::F32(Float32Builder::new()),
            DataType::Float64 => Builder::F64(Float64Builder::new()),
            DataType::Utf8 => Builder::Utf8(StringBuilder::new()),
            DataType::Binary => Builder::Binary(BinaryBuilder::new()),
            DataType::Date32 => Builder::Date(Date32Builder::new()),
            DataType::Timestamp(_, _) => {
                Builder::Timestamp(TimestampMicrosecondBuilder::new().with_data_type(dt.clone()))
            }
            DataType::Decimal128(p, s) => Builder::Decimal(Decimal128Builder::new().with_data_type(dt.clone()), *p, *s),
            DataType::Time64(_) => Builder::Time(Time64MicrosecondBuilder::new()),
            DataType::Interval(_) => Builder::Interval(IntervalMonthDayNanoBuilder::new()),
            _ => Builder::Uuid(FixedSizeBinaryBuilder::new(16)),
        };
        Ok(Decoder { column: column.name.clone(), nullable: column.nullable, remote: kind, builder })
    }

    /// Appends one value (`None`: SQL NULL).
    pub(crate) fn append(&mut self, raw: Option<&[u8]>) -> Result<(), ConnectorError> {
        self.append_inner(raw).map_err(|reason| data_type_error(&self.column, reason))
    }

    fn append_inner(&mut self, raw: Option<&[u8]>) -> Result<(), String> {
        let Some(raw) = raw else {
            if !self.nullable {
                return Err("null value in a column declared NOT NULL".into());
            }
            match &mut self.builder {
                Builder::Bool(b) => b.append_null(),
                Builder::I16(b) => b.append_null(),
                Builder::I32(b) => b.append_null(),
                Builder::I64(b) => b.append_null(),
                Builder::F32(b) => b.append_null(),
                Builder::F64(b) => b.append_null(),
                Builder::Utf8(b) => b.append_null(),
                Builder::Binary(b) => b.append_null(),
                Builder::Date(b) => b.append_null(),
                Builder::Timestamp(b) => b.append_null(),
                Builder::Decimal(b, _, _) => b.append_null(),
                Builder::Uuid(b) => b.append_null(),
                Builder::Time(b) => b.append_null(),
                Builder::Interval(b) => b.append_null(),
            }
            return Ok(());
        };
        let int = |raw: &[u8]| -> Result<i64, String> {
            Ok(match raw.len() {
                2 => i64::from(i16::from_be_bytes(fixed(raw)?)),
                4 => i64::from(i32::from_be_bytes(fixed(raw)?)),
                8 => i64::from_be_bytes(fixed(raw)?),
                n => return Err(format!("unexpected {n}-byte integer")),
            })
        };
        match (&mut self.builder, self.remote) {
            (Builder::Bool(b), Remote::Bool) => b.append_value(fixed::<1>(raw)?[0] != 0),
            (Builder::I16(b), _) => b.append_value(i16::from_be_bytes(fixed(raw)?)),
            (Builder::I32(b), _) => b.append_value(i32::try_from(int(raw)?).map_err(|e| e.to_string())?),
            (Builder::I64(b), Remote::Numeric) => {
                let v = decode_numeric(raw, 38, 0)?;
                b.append_value(i64::try_from(v).map_err(|_| "bigint out of range".to_string())?);
            }
            (Builder::I64(b), _) => b.append_value(int(raw)?),
            (Builder::F32(b), _) => b.append_value(f32::from_be_bytes(fixed(raw)?)),
            (Builder::F64(b), Remote::Float4) => b.append_value(f64::from(f32::from_be_bytes(fixed(raw)?))),
            (Builder::F64(b), _) => b.append_value(f64::from_be_bytes(fixed(raw)?)),
            (Builder::Utf8(b), remote) => {
                let raw = if remote == Remote::Jsonb {
                    raw.strip_prefix(&[1u8]).ok_or("unsupported jsonb version")?
                } else {
                    raw
                };
                b.append_value(std::str::from_utf8(raw).map_err(|_| "invalid UTF-8 in a text value")?);
            }
            (Builder::Binary(b), _) => b.append_value(raw),
            (Builder::Date(b), _) => {
                let days = i32::from_be_bytes(fixed(raw)?);
                if days == i32::MAX || days == i32::MIN {
                    return Err("date infinity cannot be represented".into());
                }
                b.append_value(days.checked_add(PG_EPOCH_DAYS).ok_or("date out of range")?);
            }
            (Builder::Timestamp(b), _) => {
                let micros = i64::from_be_bytes(fixed(raw)?);
                if micros == i64::MAX || micros == i64::MIN {
                    return Err("timestamp infinity cannot be represented".into());
                }
                b.append_value(micros.checked_add(PG_EPOCH_MICROS).ok_or("timestamp out of range")?);
            }
            (Builder::Decimal(b, precision, scale), _) => b.append_value(decode_numeric(raw, *precision, *scale)?),
            (Builder::Uuid(b), _) => b.append_value(fixed::<16>(raw)?).map_err(|e| e.to_string())?,
            (Builder::Time(b), _) => b.append_value(i64::from_be_bytes(fixed(raw)?)),
            (Builder::Interval(b), _) => {
                // Postgres: microseconds (i64), days (i32), months (i32).
                let raw: [u8; 16] = fixed(raw)?;
                let micros = i64::from_be_bytes(fixed(&raw[..8])?);
                let days = i32::from_be_bytes(fixed(&raw[8..12])?);
                let months = i32::from_be_bytes(fixed(&raw[12..])?);
                let nanos = micros.checked_mul(1000).ok_or("interval out of range")?;
                b.append_value(IntervalMonthDayNano::new(months, days, nanos));
            }
            (Builder::Bool(_), _) => return Err("unexpected remote type".into()),
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match &mut self.builder {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Decimal(b, _, _) => Arc::new(b.finish()),
            Builder::Uuid(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Interval(b) => Arc::new(b.finish()),
        }
    }
}

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into().map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

/// Decodes Postgres's binary numeric (base-10000 digits, weight, sign, display scale) into a
/// Decimal128 with `scale` fractional digits, rounding half away from zero as Postgres does
/// when a value is cast to `numeric(p, s)`. NaN, infinities and values with more than
/// `precision` digits are errors.
pub(crate) fn decode_numeric(raw: &[u8], precision: u8, scale: i8) -> Result<i128, String> {
    let header = raw.get(..8).ok_or("numeric value too short")?;
    let ndigits = usize::try_from(i16::from_be_bytes([header[0], header[1]])).map_err(|_| "bad numeric")?;
    let weight = i64::from(i16::from_be_bytes([header[2], header[3]]));
    let sign = u16::from_be_bytes([header[4], header[5]]);
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Err("numeric NaN cannot be represented".into()),
        _ => return Err("numeric infinity cannot be represented".into()),
    };
    let body = &raw[8..];
    if body.len() != ndigits * 2 {
        return Err("bad numeric length".into());
    }
    // Decimal digits, most significant first; digit j has exponent top - j.
    let mut digits = Vec::with_capacity(ndigits * 4);
    for pair in body.chunks_exact(2) {
        let d = u16::from_be_bytes([pair[0], pair[1]]);
        if d >= 10_000 {
            return Err("bad numeric digit".into());
        }
        digits.extend_from_slice(&[(d / 1000) as u8, (d / 100 % 10) as u8, (d / 10 % 10) as u8, (d % 10) as u8]);
    }
    let top = 4 * (weight + 1) - 1;
    // The last digit kept has exponent -scale: index top + scale.
    let last = top + i64::from(scale);
    let digit = |j: i64| usize::try_from(j).ok().and_then(|j| digits.get(j)).copied().unwrap_or(0);
    let overflow = || format!("numeric value does not fit numeric({precision}, {scale})");
    let mut value: i128 = 0;
    let mut j = 0;
    while j <= last {
        value = value.checked_mul(10).and_then(|v| v.checked_add(i128::from(digit(j)))).ok_or_else(overflow)?;
        j += 1;
    }
    if digit(last + 1) >= 5 {
        value = value.checked_add(1).ok_or_else(overflow)?;
    }
    let limit = 10i128.checked_pow(u32::from(precision)).ok_or_else(overflow)?;
    if value >= limit {
        return Err(overflow());
    }
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: &[u16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(ndigits.len() as i16).to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in ndigits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_decode_scale_and_round() {
        // 12345.678 = [1, 2345, 6780], weight 1
        let n = numeric(&[1, 2345, 6780], 1, 0, 3);
        assert_eq!(decode_numeric(&n, 10, 3), Ok(12_345_678));
        assert_eq!(decode_numeric(&n, 10, 2), Ok(1_234_568));
        assert_eq!(decode_numeric(&n, 10, 5), Ok(1_234_567_800));
        assert!(decode_numeric(&n, 4, 0).is_err());
        // -0.0005 = [5], weight -1, sign negative
        let n = numeric(&[5], -1, 0x4000, 4);
        assert_eq!(decode_numeric(&n, 10, 4), Ok(-5));
        assert_eq!(decode_numeric(&n, 10, 3), Ok(-1));
        assert_eq!(decode_numeric(&n, 10, 2), Ok(0));
        assert_eq!(decode_numeric(&numeric(&[], 0, 0, 0), 5, 2), Ok(0));
        // 1e8 = [1], weight 2
        assert_eq!(decode_numeric(&numeric(&[1], 2, 0, 0), 12, 2), Ok(10_000_000_000));
        assert!(decode_numeric(&numeric(&[], 0, 0xC000, 0), 5, 2).is_err());
    }
}
