//! What pgfed asks of a scan: columns, quals, sort keys and a limit. Each type's doc shows the SQL
//! that produces it. `Display` renders them for EXPLAIN only; connectors build remote queries
//! through their own dialect layer, never from these strings.

use std::fmt;

/// A constant from the query, after parameters (`$1`) are resolved. Times follow Arrow's
/// conventions (Unix epoch).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// numeric, as exact decimal text (`-12.50`): no binary rounding on the way to the source.
    Numeric(String),
    Text(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 1970-01-01 00:00, no time zone (`timestamp`).
    Timestamp(i64),
    /// Microseconds since 1970-01-01 00:00 UTC (`timestamptz`).
    TimestampTz(i64),
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
    Uuid([u8; 16]),
    Json(String),
}

/// The comparison in a qual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    /// `LIKE`, with Postgres's escape rules (backslash escapes unless `ESCAPE` says otherwise).
    Like,
    NotLike,
    ILike,
    NotILike,
    IsNull,
    IsNotNull,
}

impl Operator {
    pub fn as_sql(self) -> &'static str {
        match self {
            Operator::Eq => "=",
            Operator::NotEq => "<>",
            Operator::Lt => "<",
            Operator::LtEq => "<=",
            Operator::Gt => ">",
            Operator::GtEq => ">=",
            Operator::Like => "LIKE",
            Operator::NotLike => "NOT LIKE",
            Operator::ILike => "ILIKE",
            Operator::NotILike => "NOT ILIKE",
            Operator::IsNull => "IS NULL",
            Operator::IsNotNull => "IS NOT NULL",
        }
    }
}

/// The right-hand side of a qual.
#[derive(Debug, Clone, PartialEq)]
pub enum QualValue {
    /// `IS NULL` / `IS NOT NULL` take no value.
    None,
    One(Value),
    /// `col IN (1, 2)` and `col = ANY($1)`: true if the operator holds for any element.
    Any(Vec<Value>),
    /// `col NOT IN (1, 2)` (as `<> ALL`) and `col > ALL($1)`: true if it holds for every element.
    All(Vec<Value>),
}

/// One condition on one column; a scan's quals are ANDed.
///
/// | SQL | Qual |
/// |---|---|
/// | `WHERE id = 1` | `Qual { column: "id", operator: Eq, value: One(Int(1)) }` |
/// | `WHERE name LIKE 'a%'` | `Qual { column: "name", operator: Like, value: One(Text("a%")) }` |
/// | `WHERE id IN (1, 2)` | `Qual { column: "id", operator: Eq, value: Any([Int(1), Int(2)]) }` |
/// | `WHERE id NOT IN (1, 2)` | `Qual { column: "id", operator: NotEq, value: All([Int(1), Int(2)]) }` |
/// | `WHERE ts >= $1` (bound to a timestamptz) | `Qual { column: "ts", operator: GtEq, value: One(TimestampTz(..)) }` |
/// | `WHERE note IS NULL` | `Qual { column: "note", operator: IsNull, value: None }` |
///
/// `WHERE 1 = id` arrives as `id = 1`; expressions on the column (`lower(name) = 'x'`) are not
/// quals: pgfed evaluates them, or pushes them whole to SQL-capable sources through the unparser.
#[derive(Debug, Clone, PartialEq)]
pub struct Qual {
    pub column: String,
    pub operator: Operator,
    pub value: QualValue,
}

/// How a table applies a qual it was offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushdown {
    /// The source returns exactly the rows satisfying it, with Postgres semantics (NULLs,
    /// collation, time zones). pgfed does not re-check.
    Exact,
    /// The source narrows the rows but may return extra ones; pgfed re-checks every row.
    Inexact,
    /// Not sent to the source; pgfed filters.
    Unsupported,
}

/// Where NULLs sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullsOrder {
    First,
    Last,
}

/// One ORDER BY key on a column: `ORDER BY ts DESC` gives
/// `SortKey { column: "ts", descending: true, nulls: First }` (Postgres's default for DESC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub column: String,
    pub descending: bool,
    pub nulls: NullsOrder,
}

/// A scan of one foreign table.
///
/// `SELECT id, name FROM t WHERE id > 10 ORDER BY id LIMIT 5` gives
/// `columns: ["id", "name"]`, `quals: [id > 10]`, `sort: [id ASC NULLS LAST]`, `limit: Some(5)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScanRequest {
    /// Columns needed, in this order, in the returned batches. Empty when no column is needed
    /// (`SELECT count(*)`): return batches with the right row counts and no columns.
    pub columns: Vec<String>,
    /// Quals the table accepted (Exact or Inexact), ANDed.
    pub quals: Vec<Qual>,
    /// Set only when the table accepted it ([`crate::ForeignTable::accepts_sort`]).
    pub sort: Vec<SortKey>,
    /// Set only when every qual of the query was accepted as Exact and any ORDER BY is in `sort`,
    /// so that stopping after `limit` rows cannot change the answer.
    pub limit: Option<u64>,
}

/// A table's guess at a scan's size, for join planning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub rows: f64,
    /// Average row width in bytes.
    pub width: u32,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Numeric(n) => write!(f, "{n}"),
            Value::Text(s) | Value::Json(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Value::Bytes(b) => {
                write!(f, "'\\x")?;
                b.iter().try_for_each(|x| write!(f, "{x:02x}"))?;
                write!(f, "'")
            }
            Value::Date(d) => write!(f, "date {d}d"),
            Value::Time(t) => write!(f, "time {t}us"),
            Value::Timestamp(t) => write!(f, "timestamp {t}us"),
            Value::TimestampTz(t) => write!(f, "timestamptz {t}us"),
            Value::Interval { months, days, micros } => write!(f, "interval {months}mon {days}d {micros}us"),
            Value::Uuid(u) => {
                let h: String = u.iter().map(|x| format!("{x:02x}")).collect();
                write!(f, "'{}-{}-{}-{}-{}'", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
            }
        }
    }
}

impl fmt::Display for Qual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let col = quote_ident(&self.column);
        let op = self.operator.as_sql();
        let list = |f: &mut fmt::Formatter<'_>, vs: &[Value]| {
            vs.iter().enumerate().try_for_each(|(i, v)| if i == 0 { write!(f, "{v}") } else { write!(f, ", {v}") })
        };
        match &self.value {
            QualValue::None => write!(f, "{col} {op}"),
            QualValue::One(v) => write!(f, "{col} {op} {v}"),
            QualValue::Any(vs) => {
                write!(f, "{col} {op} ANY (")?;
                list(f, vs)?;
                write!(f, ")")
            }
            QualValue::All(vs) => {
                write!(f, "{col} {op} ALL (")?;
                list(f, vs)?;
                write!(f, ")")
            }
        }
    }
}

impl fmt::Display for SortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.descending { "DESC" } else { "ASC" };
        let nulls = if self.nulls == NullsOrder::First { "NULLS FIRST" } else { "NULLS LAST" };
        write!(f, "{} {dir} {nulls}", quote_ident(&self.column))
    }
}

/// Quotes an identifier unless Postgres would read it back unchanged without quotes.
fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { name.to_string() } else { format!("\"{}\"", name.replace('"', "\"\"")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(column: &str, operator: Operator, value: QualValue) -> Qual {
        Qual { column: column.into(), operator, value }
    }

    #[test]
    fn quals_render_as_the_sql_that_produces_them() {
        assert_eq!(q("id", Operator::Eq, QualValue::One(Value::Int(1))).to_string(), "id = 1");
        assert_eq!(
            q("name", Operator::Like, QualValue::One(Value::Text("it's%".into()))).to_string(),
            "name LIKE 'it''s%'"
        );
        assert_eq!(
            q("id", Operator::NotEq, QualValue::All(vec![Value::Int(1), Value::Int(2)])).to_string(),
            "id <> ALL (1, 2)"
        );
        assert_eq!(q("Note", Operator::IsNull, QualValue::None).to_string(), "\"Note\" IS NULL");
        assert_eq!(q("b", Operator::Eq, QualValue::One(Value::Bytes(vec![0, 255]))).to_string(), "b = '\\x00ff'");
        let key = SortKey { column: "ts".into(), descending: true, nulls: NullsOrder::First };
        assert_eq!(key.to_string(), "ts DESC NULLS FIRST");
    }

    #[test]
    fn uuids_render_in_canonical_form() {
        let v = Value::Uuid([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(v.to_string(), "'12345678-9abc-def0-0001-020304050607'");
    }
}
