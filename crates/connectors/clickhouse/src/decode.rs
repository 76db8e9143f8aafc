//! RowBinary to Arrow, incrementally: bytes are appended as they arrive and every complete row
//! is decoded into builders of the declared types; a row cut by a chunk boundary waits for the
//! next chunk. A row is read whole (into borrowed values) before anything is appended, so a
//! partial row never leaves a builder half-written.
//!
//! Each row starts with the marker byte the query selects first (`sql::ROW_MARKER`). Anything
//! else where a row should start is the text of a server error appended to the body.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, RecordBatchOptions};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, FieldRef, SchemaRef, TimeUnit};

use crate::types::ChType;

/// One value as read from RowBinary, borrowing bytes from the buffer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cv<'a> {
    Null,
    Int(i128),
    Float(f64),
    /// Unscaled value and scale.
    Decimal(i128, u8),
    Str(&'a [u8]),
    Fixed(&'a [u8]),
    /// Days since 1970-01-01.
    Date(i32),
    /// Seconds since the epoch.
    DateTime(i64),
    /// Ticks and precision (digits after the second).
    DateTime64(i64, u8),
    /// In canonical (text) byte order.
    Uuid([u8; 16]),
    Bool(bool),
    Enum(i16),
    Ipv4(u32),
    Ipv6([u8; 16]),
    Array(Vec<Cv<'a>>),
    Tuple(Vec<Cv<'a>>),
    Map(Vec<(Cv<'a>, Cv<'a>)>),
}

/// Why a value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The buffer ends inside the value: wait for more bytes.
    Incomplete,
    Bad(String),
}

/// A cursor over the buffered bytes.
pub(crate) struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let end = self.pos.checked_add(n).ok_or(ReadError::Incomplete)?;
        let s = self.buf.get(self.pos..end).ok_or(ReadError::Incomplete)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64, ReadError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ReadError::Bad("malformed length".into()))
    }

    fn len(&mut self) -> Result<usize, ReadError> {
        let n = self.varint()?;
        // A length beyond what is buffered is simply incomplete; one beyond memory is corrupt.
        usize::try_from(n).ok().filter(|n| *n < (1 << 40)).ok_or_else(|| ReadError::Bad("length out of range".into()))
    }

    /// One value of type `ty`.
    pub(crate) fn value(&mut self, ty: &ChType) -> Result<Cv<'a>, ReadError> {
        Ok(match ty {
            ChType::Nullable(inner) => {
                if self.take(1)?[0] != 0 {
                    Cv::Null
                } else {
                    self.value(inner)?
                }
            }
            ChType::LowCardinality(inner) => self.value(inner)?,
            ChType::Int { bytes, signed } => {
                let b = self.take(usize::from(*bytes))?;
                let mut raw = [0u8; 16];
                raw[..b.len()].copy_from_slice(b);
                if *signed && b[b.len() - 1] & 0x80 != 0 {
                    raw[b.len()..].fill(0xff);
                }
                Cv::Int(i128::from_le_bytes(raw))
            }
            ChType::Float32 => Cv::Float(f64::from(f32::from_le_bytes(self.array()?))),
            ChType::Float64 => Cv::Float(f64::from_le_bytes(self.array()?)),
            ChType::Decimal { precision, scale } => {
                let v = match precision {
                    0..=9 => i128::from(i32::from_le_bytes(self.array()?)),
                    10..=18 => i128::from(i64::from_le_bytes(self.array()?)),
                    19..=38 => i128::from_le_bytes(self.array()?),
                    _ => return Err(ReadError::Bad(format!("Decimal({precision}, {scale}) is not supported"))),
                };
                Cv::Decimal(v, *scale)
            }
            ChType::String => {
                let n = self.len()?;
                Cv::Str(self.take(n)?)
            }
            ChType::FixedString(n) => Cv::Fixed(self.take(*n)?),
            ChType::Date => Cv::Date(i32::from(u16::from_le_bytes(self.array()?))),
            ChType::Date32 => Cv::Date(i32::from_le_bytes(self.array()?)),
            ChType::DateTime(_) => Cv::DateTime(i64::from(u32::from_le_bytes(self.array()?))),
            ChType::DateTime64 { precision, .. } => Cv::DateTime64(i64::from_le_bytes(self.array()?), *precision),
            ChType::Uuid => {
                // Two little-endian UInt64 halves.
                let raw: [u8; 16] = self.array()?;
                let mut u = [0u8; 16];
                for i in 0..8 {
                    u[i] = raw[7 - i];
                    u[8 + i] = raw[15 - i];
                }
                Cv::Uuid(u)
            }
            ChType::Bool => Cv::Bool(self.take(1)?[0] != 0),
            ChType::Enum { wide: false, .. } => Cv::Enum(i16::from(i8::from_le_bytes(self.array()?))),
            ChType::Enum { wide: true, .. } => Cv::Enum(i16::from_le_bytes(self.array()?)),
            ChType::Ipv4 => Cv::Ipv4(u32::from_le_bytes(self.array()?)),
            ChType::Ipv6 => Cv::Ipv6(self.array()?),
            ChType::Array(elem) => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    items.push(self.value(elem)?);
                }
                Cv::Array(items)
            }
            ChType::Tuple(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (_, t) in items {
                    out.push(self.value(t)?);
                }
                Cv::Tuple(out)
            }
            ChType::Map(k, v) => {
                let n = self.len()?;
                let mut out = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    out.push((self.value(k)?, self.value(v)?));
                }
                Cv::Map(out)
            }
            ChType::Nothing => {
                self.take(1)?;
                Cv::Null
            }
        })
    }
}

/// Builds one declared column from values of one ClickHouse type.
struct ColumnBuilder {
    name: String,
    ch: ChType,
    nullable: bool,
    kind: Kind,
}

enum Kind {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Dec(Decimal128Builder, u8, i8),
    Utf8(StringBuilder),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    /// `wall`: the zone whose wall-clock time a `timestamp` (no zone) column holds; `None` for
    /// timestamptz (epoch microseconds) and for UTC.
    Ts(TimestampMicrosecondBuilder, Option<Arc<str>>, Option<jiff::tz::TimeZone>),
    Uuid(FixedSizeBinaryBuilder),
    List {
        field: FieldRef,
        offsets: Vec<i32>,
        valid: Vec<bool>,
        child: Box<ColumnBuilder>,
    },
}

fn pow10(n: u32) -> i128 {
    10i128.pow(n)
}

impl ColumnBuilder {
    fn new(name: &str, ch: &ChType, data_type: &DataType, nullable: bool, tz: &str) -> Result<Self, String> {
        let kind = match data_type {
            DataType::Boolean => Kind::Bool(BooleanBuilder::new()),
            DataType::Int16 => Kind::I16(Int16Builder::new()),
            DataType::Int32 => Kind::I32(Int32Builder::new()),
            DataType::Int64 => Kind::I64(Int64Builder::new()),
            DataType::Float32 => Kind::F32(Float32Builder::new()),
            DataType::Float64 => Kind::F64(Float64Builder::new()),
            DataType::Decimal128(p, s) => {
                Kind::Dec(Decimal128Builder::new().with_precision_and_scale(*p, *s).map_err(|e| e.to_string())?, *p, *s)
            }
            DataType::Utf8 => Kind::Utf8(StringBuilder::new()),
            DataType::Binary => Kind::Bin(BinaryBuilder::new()),
            DataType::Date32 => Kind::Date(Date32Builder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, zone) => {
                let wall = match (zone, ch.base()) {
                    (None, ChType::DateTime(own) | ChType::DateTime64 { tz: own, .. }) => {
                        let name = own.as_deref().unwrap_or(tz);
                        if crate::sql::is_utc(name) {
                            None
                        } else {
                            Some(jiff::tz::TimeZone::get(name).map_err(|e| format!("time zone {name}: {e}"))?)
                        }
                    }
                    _ => None,
                };
                Kind::Ts(TimestampMicrosecondBuilder::new(), zone.clone(), wall)
            }
            DataType::FixedSizeBinary(16) => Kind::Uuid(FixedSizeBinaryBuilder::new(16)),
            DataType::List(field) => {
                let ChType::Array(elem) = ch.base() else { return Err(format!("{} is not an array", ch.name())) };
                Kind::List {
                    field: field.clone(),
                    offsets: vec![0],
                    valid: Vec::new(),
                    child: Box::new(ColumnBuilder::new(name, elem, field.data_type(), true, tz)?),
                }
            }
            other => return Err(format!("declared type {other} is not supported")),
        };
        Ok(ColumnBuilder { name: name.to_string(), ch: ch.clone(), nullable, kind })
    }

    fn push(&mut self, v: &Cv<'_>) -> Result<(), String> {
        if *v == Cv::Null {
            if !self.nullable {
                return Err("NULL value in a column declared NOT NULL".into());
            }
            match &mut self.kind {
                Kind::Bool(b) => b.append_null(),
                Kind::I16(b) => b.append_null(),
                Kind::I32(b) => b.append_null(),
                Kind::I64(b) => b.append_null(),
                Kind::F32(b) => b.append_null(),
                Kind::F64(b) => b.append_null(),
                Kind::Dec(b, ..) => b.append_null(),
                Kind::Utf8(b) => b.append_null(),
                Kind::Bin(b) => b.append_null(),
                Kind::Date(b) => b.append_null(),
                Kind::Ts(b, ..) => b.append_null(),
                Kind::Uuid(b) => b.append_null(),
                Kind::List { offsets, valid, .. } => {
                    offsets.push(*offsets.last().unwrap_or(&0));
                    valid.push(false);
                }
            }
            return Ok(());
        }
        let int = |v: &Cv<'_>| -> Result<i128, String> {
            match v {
                Cv::Int(i) => Ok(*i),
                Cv::Bool(b) => Ok(i128::from(*b)),
                other => Err(format!("unexpected value {other:?}")),
            }
        };
        let range = || format!("value out of range for the declared type (remote type {})", self.ch.name());
        match &mut self.kind {
            Kind::Bool(b) => b.append_value(match v {
                Cv::Bool(x) => *x,
                Cv::Int(i) => *i != 0,
                other => return Err(format!("unexpected value {other:?}")),
            }),
            Kind::I16(b) => b.append_value(i16::try_from(int(v)?).map_err(|_| range())?),
            Kind::I32(b) => b.append_value(i32::try_from(int(v)?).map_err(|_| range())?),
            Kind::I64(b) => b.append_value(i64::try_from(int(v)?).map_err(|_| range())?),
            Kind::F32(b) => match v {
                Cv::Float(f) => b.append_value(*f as f32),
                other => return Err(format!("unexpected value {other:?}")),
            },
            Kind::F64(b) => match v {
                Cv::Float(f) => b.append_value(*f),
                Cv::Int(i) => b.append_value(*i as f64),
                other => return Err(format!("unexpected value {other:?}")),
            },
            Kind::Dec(b, p, s) => {
                let (value, scale) = match v {
                    Cv::Int(i) => (*i, 0u8),
                    Cv::Bool(x) => (i128::from(*x), 0),
                    Cv::Decimal(i, sc) => (*i, *sc),
                    other => return Err(format!("unexpected value {other:?}")),
                };
                let target = i32::from(*s);
                let from = i32::from(scale);
                let scaled = if target >= from {
                    value.checked_mul(pow10((target - from) as u32)).ok_or_else(range)?
                } else {
                    // Rounded half away from zero, as a cast to numeric(p, s) rounds.
                    let d = pow10((from - target) as u32);
                    let (q, r) = (value / d, value % d);
                    if r.abs() * 2 >= d { q + value.signum() } else { q }
                };
                if scaled.abs() >= pow10(u32::from(*p)) {
                    return Err(range());
                }
                b.append_value(scaled);
            }
            Kind::Utf8(b) => {
                let text = |bytes: &[u8]| -> Result<String, String> {
                    let s =
                        std::str::from_utf8(bytes).map_err(|_| "invalid UTF-8 in a text column (declare it bytea)")?;
                    if s.contains('\0') {
                        return Err("a zero byte cannot be held in text (declare the column bytea)".into());
                    }
                    Ok(s.to_string())
                };
                match v {
                    Cv::Str(s) => {
                        let s =
                            std::str::from_utf8(s).map_err(|_| "invalid UTF-8 in a text column (declare it bytea)")?;
                        if s.contains('\0') {
                            return Err("a zero byte cannot be held in text (declare the column bytea)".into());
                        }
                        b.append_value(s);
                    }
                    // FixedString pads with zero bytes.
                    Cv::Fixed(s) => {
                        let end = s.iter().rposition(|c| *c != 0).map_or(0, |i| i + 1);
                        b.append_value(text(&s[..end])?);
                    }
                    Cv::Enum(code) => {
                        let ChType::Enum { values, .. } = self.ch.base() else { return Err("enum value".into()) };
                        let name = values.iter().find(|(_, c)| c == code).ok_or("unknown enum value")?;
                        b.append_value(&name.0);
                    }
                    Cv::Ipv4(a) => b.append_value(Ipv4Addr::from(*a).to_string()),
                    Cv::Ipv6(a) => b.append_value(Ipv6Addr::from(*a).to_string()),
                    Cv::Uuid(u) => b.append_value(uuid_text(u)),
                    v @ (Cv::Array(_) | Cv::Tuple(_) | Cv::Map(_)) => {
                        let mut out = String::new();
                        json(v, self.ch.base(), &mut out)?;
                        b.append_value(out);
                    }
                    other => return Err(format!("unexpected value {other:?}")),
                }
            }
            Kind::Bin(b) => match v {
                Cv::Str(s) | Cv::Fixed(s) => b.append_value(s),
                other => return Err(format!("unexpected value {other:?}")),
            },
            Kind::Date(b) => match v {
                Cv::Date(d) => b.append_value(*d),
                other => return Err(format!("unexpected value {other:?}")),
            },
            Kind::Ts(b, _, wall) => {
                let micros = match v {
                    Cv::DateTime(s) => s * 1_000_000,
                    Cv::DateTime64(t, p) => {
                        if *p <= 6 {
                            t.checked_mul(10i64.pow(6 - u32::from(*p))).ok_or_else(range)?
                        } else {
                            let d = 10i64.pow(u32::from(*p) - 6);
                            let (q, r) = (t.div_euclid(d), t.rem_euclid(d));
                            if r * 2 >= d { q + 1 } else { q }
                        }
                    }
                    other => return Err(format!("unexpected value {other:?}")),
                };
                let micros = match wall {
                    None => micros,
                    Some(zone) => {
                        let ts = jiff::Timestamp::from_microsecond(micros).map_err(|e| e.to_string())?;
                        let civil = zone.to_datetime(ts);
                        civil.to_zoned(jiff::tz::TimeZone::UTC).map_err(|e| e.to_string())?.timestamp().as_microsecond()
                    }
                };
                b.append_value(micros);
            }
            Kind::Uuid(b) => match v {
                Cv::Uuid(u) => b.append_value(u).map_err(|e| e.to_string())?,
                other => return Err(format!("unexpected value {other:?}")),
            },
            Kind::List { offsets, valid, child, .. } => {
                let Cv::Array(items) = v else { return Err(format!("unexpected value {v:?}")) };
                for item in items {
                    child.push(item)?;
                }
                let last = *offsets.last().unwrap_or(&0);
                let n = i32::try_from(items.len()).map_err(|_| "array too long")?;
                offsets.push(last.checked_add(n).ok_or("array data too large")?);
                valid.push(true);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef, String> {
        Ok(match &mut self.kind {
            Kind::Bool(b) => Arc::new(b.finish()),
            Kind::I16(b) => Arc::new(b.finish()),
            Kind::I32(b) => Arc::new(b.finish()),
            Kind::I64(b) => Arc::new(b.finish()),
            Kind::F32(b) => Arc::new(b.finish()),
            Kind::F64(b) => Arc::new(b.finish()),
            Kind::Dec(b, p, s) => {
                let a = b.finish();
                let a = a.with_precision_and_scale(*p, *s).map_err(|e| e.to_string())?;
                *b = Decimal128Builder::new().with_precision_and_scale(*p, *s).map_err(|e| e.to_string())?;
                Arc::new(a)
            }
            Kind::Utf8(b) => Arc::new(b.finish()),
            Kind::Bin(b) => Arc::new(b.finish()),
            Kind::Date(b) => Arc::new(b.finish()),
            Kind::Ts(b, zone, _) => Arc::new(b.finish().with_timezone_opt(zone.clone())),
            Kind::Uuid(b) => Arc::new(b.finish()),
            Kind::List { field, offsets, valid, child } => {
                let values = child.finish()?;
                let offsets = std::mem::replace(offsets, vec![0]);
                let valid = std::mem::take(valid);
                let nulls = valid.contains(&false).then(|| NullBuffer::from(valid));
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                Arc::new(ListArray::try_new(field.clone(), offsets, values, nulls).map_err(|e| e.to_string())?)
            }
        })
    }
}

pub(crate) fn uuid_text(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// A value as JSON text, formatted as Postgres prints jsonb (`[1, 2]`, `{"a": 1}`). Tuples are
/// arrays (objects when named), maps are objects with their keys as strings.
pub(crate) fn json(v: &Cv<'_>, ty: &ChType, out: &mut String) -> Result<(), String> {
    use std::fmt::Write;
    let ty = ty.base();
    match v {
        Cv::Null => out.push_str("null"),
        Cv::Int(i) => write!(out, "{i}").map_err(|e| e.to_string())?,
        Cv::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Cv::Float(f) if f.is_finite() => {
            let text = if matches!(ty, ChType::Float32) { format!("{}", *f as f32) } else { format!("{f}") };
            out.push_str(&text);
        }
        // JSON has no NaN or infinity; Postgres's to_jsonb writes them as strings.
        Cv::Float(f) => out.push_str(if f.is_nan() {
            "\"NaN\""
        } else if *f > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        }),
        Cv::Decimal(i, s) => out.push_str(&decimal_text(*i, *s)),
        Cv::Str(b) | Cv::Fixed(b) => {
            let b =
                if matches!(v, Cv::Fixed(_)) { &b[..b.iter().rposition(|c| *c != 0).map_or(0, |i| i + 1)] } else { b };
            let s = std::str::from_utf8(b).map_err(|_| "invalid UTF-8 in a string inside a JSON value")?;
            out.push_str(&serde_json::to_string(s).map_err(|e| e.to_string())?);
        }
        Cv::Date(d) => {
            write!(out, "\"{}\"", crate::sql::date_text(*d).ok_or("date out of range")?).map_err(|e| e.to_string())?
        }
        Cv::DateTime(_) | Cv::DateTime64(..) => {
            let (secs, nanos) = match v {
                Cv::DateTime(s) => (*s, 0),
                Cv::DateTime64(t, p) => {
                    let d = 10i64.pow(u32::from(*p));
                    (t.div_euclid(d), t.rem_euclid(d) * 10i64.pow(9 - u32::from(*p)))
                }
                _ => (0, 0),
            };
            let ts = jiff::Timestamp::new(secs, nanos as i32).map_err(|e| e.to_string())?;
            write!(out, "\"{}\"", ts).map_err(|e| e.to_string())?;
        }
        Cv::Uuid(u) => write!(out, "\"{}\"", uuid_text(u)).map_err(|e| e.to_string())?,
        Cv::Enum(code) => {
            let ChType::Enum { values, .. } = ty else { return Err("enum value".into()) };
            let name = values.iter().find(|(_, c)| c == code).ok_or("unknown enum value")?;
            out.push_str(&serde_json::to_string(&name.0).map_err(|e| e.to_string())?);
        }
        Cv::Ipv4(a) => write!(out, "\"{}\"", Ipv4Addr::from(*a)).map_err(|e| e.to_string())?,
        Cv::Ipv6(a) => write!(out, "\"{}\"", Ipv6Addr::from(*a)).map_err(|e| e.to_string())?,
        Cv::Array(items) => {
            let ChType::Array(elem) = ty else { return Err("array value".into()) };
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json(item, elem, out)?;
            }
            out.push(']');
        }
        Cv::Tuple(items) => {
            let ChType::Tuple(types) = ty else { return Err("tuple value".into()) };
            let named = types.iter().all(|(n, _)| n.is_some());
            out.push(if named { '{' } else { '[' });
            for (i, (item, (name, t))) in items.iter().zip(types).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if let (true, Some(name)) = (named, name) {
                    out.push_str(&serde_json::to_string(name).map_err(|e| e.to_string())?);
                    out.push_str(": ");
                }
                json(item, t, out)?;
            }
            out.push(if named { '}' } else { ']' });
        }
        Cv::Map(entries) => {
            let ChType::Map(kt, vt) = ty else { return Err("map value".into()) };
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let mut key = String::new();
                json(k, kt, &mut key)?;
                if key.starts_with('"') {
                    out.push_str(&key);
                } else {
                    out.push_str(&serde_json::to_string(&key).map_err(|e| e.to_string())?);
                }
                out.push_str(": ");
                json(v, vt, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// An unscaled decimal as text with `scale` digits after the point.
pub(crate) fn decimal_text(v: i128, scale: u8) -> String {
    let digits = v.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let sign = if v < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// What one call to [`RowDecoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Bytes consumed; the rest is an incomplete row (or nothing).
    Rows(usize),
    /// Bytes consumed, then something that is not a row: the server's error text starts there.
    Exception(usize),
}

/// Decodes rows of known ClickHouse types into batches of the declared schema.
pub(crate) struct RowDecoder {
    schema: SchemaRef,
    types: Vec<ChType>,
    columns: Vec<ColumnBuilder>,
    rows: usize,
}

/// A value that cannot be decoded: the column and why.
#[derive(Debug)]
pub(crate) struct DecodeError {
    pub column: String,
    pub reason: String,
}

impl RowDecoder {
    /// `types[i]` is the remote type of `schema.field(i)`; `tz` is the server's time zone.
    pub(crate) fn new(schema: SchemaRef, types: Vec<ChType>, tz: &str) -> Result<Self, DecodeError> {
        let columns = schema
            .fields()
            .iter()
            .zip(&types)
            .map(|(f, t)| {
                ColumnBuilder::new(f.name(), t, f.data_type(), f.is_nullable(), tz)
                    .map_err(|reason| DecodeError { column: f.name().clone(), reason })
            })
            .collect::<Result<_, _>>()?;
        Ok(RowDecoder { schema, types, columns, rows: 0 })
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Decodes complete rows from `buf`, at most until `max_rows` are buffered.
    pub(crate) fn decode(&mut self, buf: &[u8], max_rows: usize) -> Result<Step, DecodeError> {
        let mut pos = 0;
        let mut row: Vec<Cv<'_>> = Vec::with_capacity(self.types.len());
        while self.rows < max_rows && pos < buf.len() {
            if buf[pos] != 1 {
                return Ok(Step::Exception(pos));
            }
            let mut r = Reader { buf, pos: pos + 1 };
            row.clear();
            let mut complete = true;
            for (i, t) in self.types.iter().enumerate() {
                match r.value(t) {
                    Ok(v) => row.push(v),
                    Err(ReadError::Incomplete) => {
                        complete = false;
                        break;
                    }
                    Err(ReadError::Bad(reason)) => {
                        return Err(DecodeError { column: self.schema.field(i).name().clone(), reason });
                    }
                }
            }
            if !complete {
                break;
            }
            for (c, v) in self.columns.iter_mut().zip(&row) {
                c.push(v).map_err(|reason| DecodeError { column: c.name.clone(), reason })?;
            }
            self.rows += 1;
            pos = r.pos;
        }
        Ok(Step::Rows(pos))
    }

    /// The buffered rows as a batch; the builders start over.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, DecodeError> {
        let rows = std::mem::take(&mut self.rows);
        let arrays = self
            .columns
            .iter_mut()
            .map(|c| c.finish().map_err(|reason| DecodeError { column: c.name.clone(), reason }))
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map_err(|e| DecodeError { column: String::new(), reason: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int32Type};
    use arrow_schema::{Field, Schema};

    fn decoder(cols: &[(&str, &str, DataType)]) -> RowDecoder {
        let schema =
            Arc::new(Schema::new(cols.iter().map(|(n, _, d)| Field::new(*n, d.clone(), true)).collect::<Vec<_>>()));
        let types = cols.iter().map(|(_, t, _)| ChType::parse(t).expect("type")).collect();
        RowDecoder::new(schema, types, "UTC").expect("decoder")
    }

    #[test]
    fn rows_split_across_chunks_wait_for_the_rest() {
        let mut d = decoder(&[("i", "Nullable(Int32)", DataType::Int32), ("s", "String", DataType::Utf8)]);
        let mut bytes = vec![1u8, 0];
        bytes.extend(7i32.to_le_bytes());
        bytes.extend([3, b'a', b'b', b'c']);
        bytes.extend([1u8, 1, 0]);
        for cut in 0..bytes.len() {
            let mut d2 = decoder(&[("i", "Nullable(Int32)", DataType::Int32), ("s", "String", DataType::Utf8)]);
            let Step::Rows(n) = d2.decode(&bytes[..cut], 100).expect("decode") else { panic!("exception") };
            let Step::Rows(m) = d2.decode(&bytes[n..], 100).expect("decode") else { panic!("exception") };
            assert_eq!(n + m, bytes.len(), "cut at {cut}");
            assert_eq!(d2.rows(), 2);
        }
        assert_eq!(d.decode(&bytes, 100).expect("decode"), Step::Rows(bytes.len()));
        let batch = d.finish().expect("batch");
        assert_eq!(batch.column(0).as_primitive::<Int32Type>().value(0), 7);
        assert!(batch.column(0).is_null(1));
        assert_eq!(batch.column(1).as_string::<i32>().value(1), "");
    }

    #[test]
    fn error_text_after_rows_is_not_a_row() {
        let mut d = decoder(&[("i", "Int32", DataType::Int32)]);
        let mut bytes = vec![1u8];
        bytes.extend(5i32.to_le_bytes());
        bytes.extend(b"Code: 241, e.displayText() = DB::Exception: Memory limit\n");
        assert_eq!(d.decode(&bytes, 100).expect("decode"), Step::Exception(5));
    }

    #[test]
    fn decimals_are_rescaled_with_rounding_and_checked() {
        let mut d = decoder(&[("d", "Decimal(12, 3)", DataType::Decimal128(5, 2))]);
        let mut bytes = Vec::new();
        for v in [1_005i64, -1_005, 999_994] {
            bytes.push(1);
            bytes.extend(v.to_le_bytes());
        }
        d.decode(&bytes, 100).expect("decode");
        let b = d.finish().expect("batch");
        let a = b.column(0).as_primitive::<Decimal128Type>();
        assert_eq!((a.value(0), a.value(1), a.value(2)), (101, -101, 99_999));
        let mut bytes = vec![1];
        bytes.extend(999_995i64.to_le_bytes());
        let e = d.decode(&bytes, 100).expect_err("overflow");
        assert!(e.reason.contains("out of range"), "{}", e.reason);
    }

    #[test]
    fn uuids_enums_and_composites_decode() {
        let mut d = decoder(&[
            ("u", "UUID", DataType::FixedSizeBinary(16)),
            ("e", "Enum8('a' = 1, 'b' = -2)", DataType::Utf8),
            ("t", "Tuple(UInt8, Nullable(String))", DataType::Utf8),
            ("m", "Map(String, Array(Float64))", DataType::Utf8),
            ("n", "Tuple(a UInt8, b Decimal(5, 2))", DataType::Utf8),
        ]);
        let mut bytes = vec![1u8];
        bytes.extend([0xe7, 0x11, 0xb3, 0x5c, 0x04, 0xc4, 0xf0, 0x61, 0xa0, 0xdb, 0xd3, 0x6a, 0x00, 0xa6, 0x7b, 0x90]);
        bytes.push(0xfe);
        bytes.extend([7, 1]);
        bytes.extend([1, 1, b'k', 2]);
        bytes.extend(1.5f64.to_le_bytes());
        bytes.extend(f64::NAN.to_le_bytes());
        bytes.push(3);
        bytes.extend((-150i32).to_le_bytes());
        assert_eq!(d.decode(&bytes, 10).expect("decode"), Step::Rows(bytes.len()));
        let b = d.finish().expect("batch");
        assert_eq!(
            uuid_text(b.column(0).as_fixed_size_binary().value(0).try_into().expect("16")),
            "61f0c404-5cb3-11e7-907b-a6006ad3dba0"
        );
        assert_eq!(b.column(1).as_string::<i32>().value(0), "b");
        assert_eq!(b.column(2).as_string::<i32>().value(0), "[7, null]");
        assert_eq!(b.column(3).as_string::<i32>().value(0), "{\"k\": [1.5, \"NaN\"]}");
        assert_eq!(b.column(4).as_string::<i32>().value(0), "{\"a\": 3, \"b\": -1.50}");
    }

    #[test]
    fn wall_clock_timestamps_follow_the_column_zone() {
        let mut d = decoder(&[
            ("local", "DateTime('Europe/Berlin')", DataType::Timestamp(TimeUnit::Microsecond, None)),
            ("abs", "DateTime('Europe/Berlin')", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))),
        ]);
        let mut bytes = vec![1u8];
        bytes.extend(1_700_000_000u32.to_le_bytes());
        bytes.extend(1_700_000_000u32.to_le_bytes());
        d.decode(&bytes, 10).expect("decode");
        let b = d.finish().expect("batch");
        let local = b.column(0).as_primitive::<arrow_array::types::TimestampMicrosecondType>().value(0);
        let abs = b.column(1).as_primitive::<arrow_array::types::TimestampMicrosecondType>().value(0);
        assert_eq!(abs, 1_700_000_000_000_000);
        // 2023-11-14 22:13:20 UTC is 23:13:20 in Berlin.
        assert_eq!(local - abs, 3_600_000_000);
    }

    #[test]
    fn decimal_text_places_the_point() {
        assert_eq!(decimal_text(-150, 2), "-1.50");
        assert_eq!(decimal_text(5, 3), "0.005");
        assert_eq!(decimal_text(42, 0), "42");
    }
}
