//! ClickHouse types: parsing the type names `system.columns` and `DESCRIBE` report, which
//! declared (Arrow) types each may be read into, and the Postgres type IMPORT FOREIGN SCHEMA
//! declares for it.

use arrow_schema::{DataType, TimeUnit};

/// A ClickHouse column type, as far as pgfed reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChType {
    /// `Int8`..`Int64` (`signed`) and `UInt8`..`UInt64`; `bytes` is 1, 2, 4 or 8.
    Int {
        bytes: u8,
        signed: bool,
    },
    Float32,
    Float64,
    /// `Decimal(P, S)` (also `Decimal32(S)` ...): stored in 4, 8 or 16 bytes by precision.
    Decimal {
        precision: u8,
        scale: u8,
    },
    String,
    FixedString(usize),
    /// Days since 1970-01-01 as UInt16.
    Date,
    /// Days since 1970-01-01 as Int32 (newer servers).
    Date32,
    /// Seconds since the epoch as UInt32; the zone only changes how it reads as wall-clock time.
    DateTime(Option<String>),
    /// Ticks of 10^-precision seconds since the epoch as Int64 (newer servers).
    DateTime64 {
        precision: u8,
        tz: Option<String>,
    },
    Uuid,
    Bool,
    /// `Enum8('a' = 1, ...)` / `Enum16(...)`: `wide` for Enum16.
    Enum {
        wide: bool,
        values: Vec<(String, i16)>,
    },
    Ipv4,
    Ipv6,
    Nullable(Box<ChType>),
    LowCardinality(Box<ChType>),
    Array(Box<ChType>),
    /// Element names are present for named tuples.
    Tuple(Vec<(Option<String>, ChType)>),
    Map(Box<ChType>, Box<ChType>),
    /// The type of a bare `NULL`.
    Nothing,
}

impl ChType {
    /// Parses a ClickHouse type name (`Nullable(Decimal(12, 3))`, `DateTime('Europe/Berlin')`).
    pub(crate) fn parse(name: &str) -> Result<ChType, String> {
        let mut p = Parser { s: name.as_bytes(), pos: 0 };
        let t = p.ty()?;
        p.ws();
        if p.pos != p.s.len() {
            return Err(format!("unexpected text after type in {name}"));
        }
        Ok(t)
    }

    /// The type without `Nullable` and `LowCardinality` wrappers.
    pub(crate) fn base(&self) -> &ChType {
        match self {
            ChType::Nullable(t) | ChType::LowCardinality(t) => t.base(),
            t => t,
        }
    }

    pub(crate) fn is_nullable(&self) -> bool {
        match self {
            ChType::Nullable(_) => true,
            ChType::LowCardinality(t) => t.is_nullable(),
            _ => false,
        }
    }

    /// The ClickHouse spelling, for messages and generated casts.
    pub(crate) fn name(&self) -> String {
        match self {
            ChType::Int { bytes, signed } => format!("{}Int{}", if *signed { "" } else { "U" }, u32::from(*bytes) * 8),
            ChType::Float32 => "Float32".into(),
            ChType::Float64 => "Float64".into(),
            ChType::Decimal { precision, scale } => format!("Decimal({precision}, {scale})"),
            ChType::String => "String".into(),
            ChType::FixedString(n) => format!("FixedString({n})"),
            ChType::Date => "Date".into(),
            ChType::Date32 => "Date32".into(),
            ChType::DateTime(None) => "DateTime".into(),
            ChType::DateTime(Some(tz)) => format!("DateTime({})", crate::sql::quote_str(tz)),
            ChType::DateTime64 { precision, tz: None } => format!("DateTime64({precision})"),
            ChType::DateTime64 { precision, tz: Some(tz) } => {
                format!("DateTime64({precision}, {})", crate::sql::quote_str(tz))
            }
            ChType::Uuid => "UUID".into(),
            ChType::Bool => "Bool".into(),
            ChType::Enum { wide, values } => {
                let items: Vec<String> =
                    values.iter().map(|(n, v)| format!("{} = {v}", crate::sql::quote_str(n))).collect();
                format!("Enum{}({})", if *wide { 16 } else { 8 }, items.join(", "))
            }
            ChType::Ipv4 => "IPv4".into(),
            ChType::Ipv6 => "IPv6".into(),
            ChType::Nullable(t) => format!("Nullable({})", t.name()),
            ChType::LowCardinality(t) => format!("LowCardinality({})", t.name()),
            ChType::Array(t) => format!("Array({})", t.name()),
            ChType::Tuple(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|(n, t)| match n {
                        Some(n) => format!("{} {}", crate::sql::quote_ident(n), t.name()),
                        None => t.name(),
                    })
                    .collect();
                format!("Tuple({})", items.join(", "))
            }
            ChType::Map(k, v) => format!("Map({}, {})", k.name(), v.name()),
            ChType::Nothing => "Nothing".into(),
        }
    }

    /// The Postgres type IMPORT FOREIGN SCHEMA declares, or `None` if pgfed cannot read it.
    /// `not_null` is whether the column is declared NOT NULL.
    pub(crate) fn import_type(&self) -> Option<(String, bool)> {
        let not_null = !self.is_nullable();
        let pg = match self.base() {
            ChType::Int { bytes: 1, .. } | ChType::Int { bytes: 2, signed: true } => "smallint".into(),
            ChType::Int { bytes: 2, signed: false } | ChType::Int { bytes: 4, signed: true } => "integer".into(),
            ChType::Int { bytes: 4, signed: false } | ChType::Int { bytes: 8, signed: true } => "bigint".into(),
            ChType::Int { bytes: 8, signed: false } => "numeric(20,0)".into(),
            ChType::Int { .. } => return None,
            ChType::Float32 => "real".into(),
            ChType::Float64 => "double precision".into(),
            ChType::Decimal { precision, scale } => format!("numeric({precision},{scale})"),
            ChType::String | ChType::FixedString(_) | ChType::Enum { .. } | ChType::Ipv4 | ChType::Ipv6 => {
                "text".into()
            }
            ChType::Date | ChType::Date32 => "date".into(),
            ChType::DateTime(_) => "timestamp(0) with time zone".into(),
            ChType::DateTime64 { precision, .. } => format!("timestamp({}) with time zone", (*precision).min(6)),
            ChType::Uuid => "uuid".into(),
            ChType::Bool => "boolean".into(),
            ChType::Array(elem) => match elem.base() {
                ChType::Array(_) | ChType::Tuple(_) | ChType::Map(..) | ChType::Nothing => "jsonb".into(),
                _ => match ChType::clone(elem).import_type()?.0.as_str() {
                    // An array of jsonb would hold JSON per element; the whole value as jsonb is simpler.
                    "jsonb" => "jsonb".into(),
                    t => format!("{t}[]"),
                },
            },
            ChType::Tuple(_) | ChType::Map(..) => "jsonb".into(),
            ChType::Nothing => return None,
            ChType::Nullable(_) | ChType::LowCardinality(_) => return None,
        };
        Some((pg, not_null))
    }

    /// Whether values of this type can be read into the declared Arrow type. `strict` (declared
    /// columns) allows only conversions that can never fail or lose anything; otherwise
    /// (computed columns of generated queries) integer and decimal narrowing is allowed and each
    /// value is range-checked.
    pub(crate) fn fits(&self, declared: &DataType, strict: bool) -> bool {
        use DataType as D;
        let base = self.base();
        if let ChType::Nothing = base {
            return true;
        }
        match declared {
            D::Boolean => matches!(base, ChType::Bool | ChType::Int { bytes: 1, signed: false }),
            D::Int16 | D::Int32 | D::Int64 => match base {
                ChType::Int { bytes, signed } => {
                    let width = match declared {
                        D::Int16 => 2,
                        D::Int32 => 4,
                        _ => 8,
                    };
                    !strict || if *signed { *bytes <= width } else { *bytes < width }
                }
                ChType::Bool => !strict,
                _ => false,
            },
            D::Float32 => matches!(base, ChType::Float32),
            D::Float64 => {
                matches!(base, ChType::Float32 | ChType::Float64) || (!strict && matches!(base, ChType::Int { .. }))
            }
            D::Decimal128(p, s) => match base {
                ChType::Int { bytes, signed } => {
                    let digits = match (bytes, signed) {
                        (1, _) => 3,
                        (2, _) => 5,
                        (4, _) => 10,
                        (8, true) => 19,
                        _ => 20,
                    };
                    !strict || i32::from(*p) - i32::from(*s) >= digits
                }
                ChType::Decimal { precision, scale } => {
                    !strict || i32::from(*p) - i32::from(*s) >= i32::from(*precision) - i32::from(*scale)
                }
                _ => false,
            },
            D::Utf8 => matches!(
                base,
                ChType::String
                    | ChType::FixedString(_)
                    | ChType::Enum { .. }
                    | ChType::Ipv4
                    | ChType::Ipv6
                    | ChType::Uuid
                    | ChType::Tuple(_)
                    | ChType::Map(..)
                    | ChType::Array(_)
            ),
            D::Binary => matches!(base, ChType::String | ChType::FixedString(_)),
            D::Date32 => matches!(base, ChType::Date | ChType::Date32),
            D::Timestamp(TimeUnit::Microsecond, _) => matches!(base, ChType::DateTime(_) | ChType::DateTime64 { .. }),
            D::FixedSizeBinary(16) => matches!(base, ChType::Uuid),
            D::List(item) => match base {
                ChType::Array(elem) => elem.fits(item.data_type(), strict),
                _ => false,
            },
            _ => false,
        }
    }
}

/// Recursive descent over a type name.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { Err(format!("expected '{}' at offset {}", c as char, self.pos)) }
    }

    fn ident(&mut self) -> Result<String, String> {
        self.ws();
        if self.s.get(self.pos) == Some(&b'`') {
            return self.quoted(b'`');
        }
        let start = self.pos;
        while self.pos < self.s.len() && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_') {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(format!("expected a name at offset {start}"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    /// A quoted string or identifier with backslash escapes (ClickHouse's own quoting).
    fn quoted(&mut self, quote: u8) -> Result<String, String> {
        self.ws();
        if self.s.get(self.pos) != Some(&quote) {
            return Err(format!("expected a quoted string at offset {}", self.pos));
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.pos) {
                None => return Err("unterminated string in type name".into()),
                Some(b'\\') => {
                    let c = *self.s.get(self.pos + 1).ok_or("unterminated escape in type name")?;
                    out.push(match c {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'0' => 0,
                        c => c,
                    });
                    self.pos += 2;
                }
                Some(&c) if c == quote => {
                    // A doubled quote is an escaped quote too.
                    if self.s.get(self.pos + 1) == Some(&quote) {
                        out.push(quote);
                        self.pos += 2;
                    } else {
                        self.pos += 1;
                        break;
                    }
                }
                Some(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| "invalid UTF-8 in type name".to_string())
    }

    fn number(&mut self) -> Result<i64, String> {
        self.ws();
        let start = self.pos;
        if self.s.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("expected a number at offset {start}"))
    }

    fn small(&mut self, max: i64) -> Result<u8, String> {
        let n = self.number()?;
        if (0..=max).contains(&n) { Ok(n as u8) } else { Err(format!("number {n} out of range")) }
    }

    fn ty(&mut self) -> Result<ChType, String> {
        let name = self.ident()?;
        let int = |bytes: u8, signed: bool| Ok(ChType::Int { bytes, signed });
        match name.as_str() {
            "Int8" => int(1, true),
            "Int16" => int(2, true),
            "Int32" => int(4, true),
            "Int64" => int(8, true),
            "UInt8" => int(1, false),
            "UInt16" => int(2, false),
            "UInt32" => int(4, false),
            "UInt64" => int(8, false),
            "Float32" => Ok(ChType::Float32),
            "Float64" => Ok(ChType::Float64),
            "String" => Ok(ChType::String),
            "Date" => Ok(ChType::Date),
            "Date32" => Ok(ChType::Date32),
            "UUID" => Ok(ChType::Uuid),
            "Bool" | "Boolean" => Ok(ChType::Bool),
            "IPv4" => Ok(ChType::Ipv4),
            "IPv6" => Ok(ChType::Ipv6),
            "Nothing" => Ok(ChType::Nothing),
            "FixedString" => {
                self.expect(b'(')?;
                let n = self.number()?;
                self.expect(b')')?;
                usize::try_from(n).map(ChType::FixedString).map_err(|_| "bad FixedString length".into())
            }
            "DateTime" => {
                let tz = if self.eat(b'(') {
                    let tz = self.quoted(b'\'')?;
                    self.expect(b')')?;
                    Some(tz)
                } else {
                    None
                };
                Ok(ChType::DateTime(tz))
            }
            "DateTime64" => {
                self.expect(b'(')?;
                let precision = self.small(9)?;
                let tz = if self.eat(b',') { Some(self.quoted(b'\'')?) } else { None };
                self.expect(b')')?;
                Ok(ChType::DateTime64 { precision, tz })
            }
            "Decimal" => {
                self.expect(b'(')?;
                let precision = self.small(76)?;
                let scale = if self.eat(b',') { self.small(76)? } else { 0 };
                self.expect(b')')?;
                Ok(ChType::Decimal { precision, scale })
            }
            "Decimal32" | "Decimal64" | "Decimal128" | "Decimal256" => {
                self.expect(b'(')?;
                let scale = self.small(76)?;
                self.expect(b')')?;
                let precision = match name.as_str() {
                    "Decimal32" => 9,
                    "Decimal64" => 18,
                    "Decimal128" => 38,
                    _ => 76,
                };
                Ok(ChType::Decimal { precision, scale })
            }
            "Enum8" | "Enum16" => {
                self.expect(b'(')?;
                let mut values = Vec::new();
                loop {
                    let n = self.quoted(b'\'')?;
                    self.expect(b'=')?;
                    let v = i16::try_from(self.number()?).map_err(|_| "enum value out of range")?;
                    values.push((n, v));
                    if !self.eat(b',') {
                        break;
                    }
                }
                self.expect(b')')?;
                Ok(ChType::Enum { wide: name == "Enum16", values })
            }
            "Nullable" | "LowCardinality" | "Array" => {
                self.expect(b'(')?;
                let inner = Box::new(self.ty()?);
                self.expect(b')')?;
                Ok(match name.as_str() {
                    "Nullable" => ChType::Nullable(inner),
                    "LowCardinality" => ChType::LowCardinality(inner),
                    _ => ChType::Array(inner),
                })
            }
            "Map" => {
                self.expect(b'(')?;
                let k = self.ty()?;
                self.expect(b',')?;
                let v = self.ty()?;
                self.expect(b')')?;
                Ok(ChType::Map(Box::new(k), Box::new(v)))
            }
            // Nested(a T, b U) reads as Array(Tuple(a T, b U)).
            "Tuple" | "Nested" => {
                self.expect(b'(')?;
                let mut items = Vec::new();
                loop {
                    items.push(self.tuple_item()?);
                    if !self.eat(b',') {
                        break;
                    }
                }
                self.expect(b')')?;
                let tuple = ChType::Tuple(items);
                Ok(if name == "Nested" { ChType::Array(Box::new(tuple)) } else { tuple })
            }
            other => Err(format!("unsupported ClickHouse type {other}")),
        }
    }

    /// `T` or `name T` inside Tuple(...).
    fn tuple_item(&mut self) -> Result<(Option<String>, ChType), String> {
        let save = self.pos;
        // `name Type`: a name followed by another name; otherwise it is a bare type.
        if let Ok(first) = self.ident() {
            self.ws();
            let next_is_name = self.s.get(self.pos).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'`');
            let had_space = self.pos > save && self.s[self.pos - 1].is_ascii_whitespace();
            if next_is_name && had_space {
                let ty = self.ty()?;
                return Ok((Some(first), ty));
            }
        }
        self.pos = save;
        Ok((None, self.ty()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_schema::Field;

    #[test]
    fn type_names_parse_and_print_back() {
        for name in [
            "Int8",
            "UInt64",
            "Nullable(Decimal(12, 3))",
            "DateTime('Europe/Berlin')",
            "DateTime64(3, 'UTC')",
            "Array(Nullable(String))",
            "LowCardinality(Nullable(String))",
            "Enum8('a' = 1, 'it\\'s' = -2)",
            "Tuple(UInt8, String)",
            "Tuple(`a b` UInt8, c String)",
            "Map(String, Array(UInt64))",
            "FixedString(16)",
        ] {
            let t = ChType::parse(name).expect(name);
            assert_eq!(ChType::parse(&t.name()).expect("reparse"), t, "{name}");
        }
        assert_eq!(ChType::parse("Decimal64(4)").expect("d64"), ChType::Decimal { precision: 18, scale: 4 });
        assert_eq!(
            ChType::parse("Nested(a UInt8, b String)").expect("nested"),
            ChType::Array(Box::new(ChType::Tuple(vec![
                (Some("a".into()), ChType::Int { bytes: 1, signed: false }),
                (Some("b".into()), ChType::String)
            ])))
        );
        assert!(ChType::parse("AggregateFunction(sum, UInt64)").is_err());
        assert!(ChType::parse("Int32 junk").is_err());
    }

    #[test]
    fn declared_types_must_hold_every_remote_value() {
        let t = |s: &str| ChType::parse(s).expect("type");
        assert!(t("Int32").fits(&DataType::Int32, true));
        assert!(!t("Int64").fits(&DataType::Int32, true));
        assert!(t("Int64").fits(&DataType::Int32, false));
        assert!(!t("UInt32").fits(&DataType::Int32, true));
        assert!(t("UInt32").fits(&DataType::Int64, true));
        assert!(!t("UInt64").fits(&DataType::Int64, true));
        assert!(t("UInt64").fits(&DataType::Decimal128(20, 0), true));
        assert!(!t("UInt64").fits(&DataType::Decimal128(19, 0), true));
        assert!(t("Decimal(12, 3)").fits(&DataType::Decimal128(12, 2), true));
        assert!(!t("Decimal(12, 3)").fits(&DataType::Decimal128(10, 3), true));
        assert!(t("Nullable(String)").fits(&DataType::Utf8, true));
        assert!(t("LowCardinality(String)").fits(&DataType::Binary, true));
        assert!(!t("String").fits(&DataType::Int32, true));
        let list = DataType::List(Arc::new(Field::new("item", DataType::Int64, true)));
        assert!(t("Array(Int32)").fits(&list, true));
        assert!(!t("Array(String)").fits(&list, true));
        assert!(t("DateTime('Asia/Tokyo')").fits(&DataType::Timestamp(TimeUnit::Microsecond, None), true));
    }

    #[test]
    fn import_declares_postgres_types() {
        let i = |s: &str| ChType::parse(s).expect("type").import_type();
        assert_eq!(i("UInt64"), Some(("numeric(20,0)".into(), true)));
        assert_eq!(i("Nullable(UInt32)"), Some(("bigint".into(), false)));
        assert_eq!(i("LowCardinality(String)"), Some(("text".into(), true)));
        assert_eq!(i("Array(Nullable(Int16))"), Some(("smallint[]".into(), true)));
        assert_eq!(i("Array(Array(Int16))"), Some(("jsonb".into(), true)));
        assert_eq!(i("Map(String, UInt8)"), Some(("jsonb".into(), true)));
        assert_eq!(i("DateTime"), Some(("timestamp(0) with time zone".into(), true)));
        assert_eq!(i("Enum8('a' = 1)"), Some(("text".into(), true)));
    }
}
