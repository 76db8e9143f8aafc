//! Postgres types pgfed can send, their OIDs, and the default mapping from Arrow types.

use std::sync::Arc;

use arrow_schema::{DataType, Field, IntervalUnit, TimeUnit};

/// A Postgres result type (a scalar type, or a one-dimensional array of one).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Varchar,
    Bpchar,
    Bytea,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Interval,
    Uuid,
    Json,
    Jsonb,
    /// A one-dimensional array (lower bound 1) of a scalar element type.
    Array(Box<PgType>),
}

impl PgType {
    /// `pg_type.oid`.
    pub fn oid(&self) -> u32 {
        match self {
            PgType::Bool => 16,
            PgType::Bytea => 17,
            PgType::Int8 => 20,
            PgType::Int2 => 21,
            PgType::Int4 => 23,
            PgType::Text => 25,
            PgType::Json => 114,
            PgType::Float4 => 700,
            PgType::Float8 => 701,
            PgType::Bpchar => 1042,
            PgType::Varchar => 1043,
            PgType::Date => 1082,
            PgType::Time => 1083,
            PgType::Timestamp => 1114,
            PgType::Timestamptz => 1184,
            PgType::Interval => 1186,
            PgType::Numeric => 1700,
            PgType::Uuid => 2950,
            PgType::Jsonb => 3802,
            PgType::Array(elem) => elem.array_oid().unwrap_or(0),
        }
    }

    /// The OID of the array type whose elements are `self` (`pg_type.typarray`); `None` for arrays.
    pub fn array_oid(&self) -> Option<u32> {
        Some(match self {
            PgType::Bool => 1000,
            PgType::Bytea => 1001,
            PgType::Int8 => 1016,
            PgType::Int2 => 1005,
            PgType::Int4 => 1007,
            PgType::Text => 1009,
            PgType::Json => 199,
            PgType::Float4 => 1021,
            PgType::Float8 => 1022,
            PgType::Bpchar => 1014,
            PgType::Varchar => 1015,
            PgType::Date => 1182,
            PgType::Time => 1183,
            PgType::Timestamp => 1115,
            PgType::Timestamptz => 1185,
            PgType::Interval => 1187,
            PgType::Numeric => 1231,
            PgType::Uuid => 2951,
            PgType::Jsonb => 3807,
            PgType::Array(_) => return None,
        })
    }

    /// The type with this `pg_type.oid`, if pgfed can send it (the inverse of [`PgType::oid`]).
    pub fn from_oid(oid: u32) -> Option<PgType> {
        const SCALARS: [PgType; 19] = [
            PgType::Bool,
            PgType::Int2,
            PgType::Int4,
            PgType::Int8,
            PgType::Float4,
            PgType::Float8,
            PgType::Numeric,
            PgType::Text,
            PgType::Varchar,
            PgType::Bpchar,
            PgType::Bytea,
            PgType::Date,
            PgType::Time,
            PgType::Timestamp,
            PgType::Timestamptz,
            PgType::Interval,
            PgType::Uuid,
            PgType::Json,
            PgType::Jsonb,
        ];
        SCALARS.iter().find_map(|t| {
            if t.oid() == oid {
                Some(t.clone())
            } else if t.array_oid() == Some(oid) {
                Some(t.clone().array_of())
            } else {
                None
            }
        })
    }

    /// The Arrow type pgfed holds values of this type in, given the column's typmod.
    ///
    /// `numeric(p, s)` with p <= 38 is `Decimal128(p, s)`; unconstrained numeric (or p > 38) is
    /// `Decimal128(38, 10)`, and decoders must refuse values that do not fit it exactly rather than
    /// round them. Text-like types and json are `Utf8`; timestamptz is UTC microseconds.
    pub fn arrow_type(&self, typmod: i32) -> DataType {
        match self {
            PgType::Bool => DataType::Boolean,
            PgType::Int2 => DataType::Int16,
            PgType::Int4 => DataType::Int32,
            PgType::Int8 => DataType::Int64,
            PgType::Float4 => DataType::Float32,
            PgType::Float8 => DataType::Float64,
            PgType::Numeric => match PgType::numeric_precision_scale(typmod) {
                Some((p, s)) if p <= 38 => DataType::Decimal128(p as u8, s as i8),
                _ => DataType::Decimal128(38, 10),
            },
            PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Json | PgType::Jsonb => DataType::Utf8,
            PgType::Bytea => DataType::Binary,
            PgType::Date => DataType::Date32,
            PgType::Time => DataType::Time64(TimeUnit::Microsecond),
            PgType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgType::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
            PgType::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            PgType::Uuid => DataType::FixedSizeBinary(16),
            PgType::Array(elem) => DataType::List(Arc::new(Field::new("item", elem.arrow_type(typmod), true))),
        }
    }

    /// `(precision, scale)` from a numeric typmod; `None` when unconstrained.
    pub fn numeric_precision_scale(typmod: i32) -> Option<(u16, u16)> {
        if typmod < 4 {
            return None;
        }
        let t = typmod - 4;
        Some((((t >> 16) & 0xffff) as u16, (t & 0xffff) as u16))
    }

    /// `pg_type.typlen` (-1 for variable length).
    pub fn typlen(&self) -> i16 {
        match self {
            PgType::Bool => 1,
            PgType::Int2 => 2,
            PgType::Int4 | PgType::Float4 | PgType::Date => 4,
            PgType::Int8 | PgType::Float8 | PgType::Time | PgType::Timestamp | PgType::Timestamptz => 8,
            PgType::Interval | PgType::Uuid => 16,
            PgType::Numeric
            | PgType::Text
            | PgType::Varchar
            | PgType::Bpchar
            | PgType::Bytea
            | PgType::Json
            | PgType::Jsonb
            | PgType::Array(_) => -1,
        }
    }

    /// An array of `self`.
    pub fn array_of(self) -> PgType {
        PgType::Array(Box::new(self))
    }

    /// The typmod Postgres reports for `numeric(precision, scale)`.
    pub fn numeric_typmod(precision: u16, scale: u16) -> i32 {
        ((i32::from(precision) << 16) | i32::from(scale)) + 4
    }

    /// The typmod Postgres reports for `varchar(n)` / `char(n)`.
    pub fn char_typmod(len: u32) -> i32 {
        i32::try_from(len).unwrap_or(i32::MAX - 4).saturating_add(4)
    }

    /// The Postgres type an Arrow type is sent as unless the caller declares another one.
    /// `None`: the Arrow type has no Postgres counterpart here.
    pub fn default_for(data_type: &DataType) -> Option<PgType> {
        Some(match data_type {
            DataType::Null | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PgType::Text,
            DataType::Boolean => PgType::Bool,
            DataType::Int8 | DataType::UInt8 | DataType::Int16 => PgType::Int2,
            DataType::UInt16 | DataType::Int32 => PgType::Int4,
            DataType::UInt32 | DataType::Int64 => PgType::Int8,
            DataType::UInt64 => PgType::Numeric,
            DataType::Float32 => PgType::Float4,
            DataType::Float64 => PgType::Float8,
            DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => {
                PgType::Numeric
            }
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => PgType::Bytea,
            DataType::FixedSizeBinary(16) => PgType::Uuid,
            DataType::FixedSizeBinary(_) => PgType::Bytea,
            DataType::Date32 | DataType::Date64 => PgType::Date,
            DataType::Time32(_) | DataType::Time64(_) => PgType::Time,
            DataType::Timestamp(_, None) => PgType::Timestamp,
            DataType::Timestamp(_, Some(_)) => PgType::Timestamptz,
            DataType::Interval(IntervalUnit::MonthDayNano | IntervalUnit::YearMonth | IntervalUnit::DayTime)
            | DataType::Duration(_) => PgType::Interval,
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                match PgType::default_for(f.data_type())? {
                    PgType::Array(_) => return None,
                    elem => elem.array_of(),
                }
            }
            _ => return None,
        })
    }

    /// Whether values of `data_type` can be sent as `self`.
    pub fn accepts(&self, data_type: &DataType) -> bool {
        use DataType as D;
        if matches!(data_type, D::Null) {
            return true;
        }
        let int = matches!(
            data_type,
            D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64
        );
        let string = matches!(data_type, D::Utf8 | D::LargeUtf8 | D::Utf8View);
        match self {
            PgType::Bool => matches!(data_type, D::Boolean),
            PgType::Int2 | PgType::Int4 | PgType::Int8 => int,
            PgType::Float4 => matches!(data_type, D::Float32),
            PgType::Float8 => matches!(data_type, D::Float32 | D::Float64),
            PgType::Numeric => {
                int || string
                    || matches!(data_type, D::Decimal32(..) | D::Decimal64(..) | D::Decimal128(..) | D::Decimal256(..))
            }
            PgType::Text | PgType::Varchar | PgType::Bpchar | PgType::Json | PgType::Jsonb => string,
            PgType::Bytea => matches!(data_type, D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_)),
            PgType::Uuid => matches!(data_type, D::FixedSizeBinary(16)),
            PgType::Date => matches!(data_type, D::Date32 | D::Date64),
            PgType::Time => matches!(data_type, D::Time32(_) | D::Time64(_)),
            PgType::Timestamp | PgType::Timestamptz => matches!(data_type, D::Timestamp(..)),
            PgType::Interval => matches!(data_type, D::Interval(_) | D::Duration(_)),
            PgType::Array(elem) => match data_type {
                D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) => {
                    !matches!(**elem, PgType::Array(_)) && elem.accepts(f.data_type())
                }
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod oid_tests {
    use super::*;

    #[test]
    fn from_oid_inverts_oid_for_scalars_and_arrays() {
        for oid in [16, 20, 21, 23, 25, 114, 700, 701, 1042, 1043, 1082, 1083, 1114, 1184, 1186, 1700, 2950, 3802, 17] {
            let t = PgType::from_oid(oid).expect("known");
            assert_eq!(t.oid(), oid);
            let arr = t.array_oid().expect("array");
            assert_eq!(PgType::from_oid(arr), Some(t.clone().array_of()));
        }
        assert_eq!(PgType::from_oid(600), None, "point is not supported");
    }

    #[test]
    fn numeric_typmods_map_to_decimals() {
        let m = PgType::numeric_typmod(12, 2);
        assert_eq!(PgType::numeric_precision_scale(m), Some((12, 2)));
        assert_eq!(PgType::Numeric.arrow_type(m), DataType::Decimal128(12, 2));
        assert_eq!(PgType::Numeric.arrow_type(-1), DataType::Decimal128(38, 10));
        assert!(PgType::Numeric.accepts(&PgType::Numeric.arrow_type(-1)));
    }
}
