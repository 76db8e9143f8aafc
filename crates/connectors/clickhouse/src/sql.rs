//! The ClickHouse quoting layer and the scan's SELECT.
//!
//! Identifiers are always in backticks and string literals in single quotes, both with
//! backslash escapes (ClickHouse reads `\` as an escape in both, so a backslash is doubled as
//! well as the quote). Other values are rendered from their exact representation: integers as
//! digits, floats in their shortest round-trip form, numerics as exact decimal text inside
//! `toDecimal128('…', scale)`, dates and times as typed conversion calls. Each qual is translated
//! only where ClickHouse's result equals Postgres's for every row (NULLs, NaN, ranges, text
//! comparison, LIKE escapes); otherwise it is not pushed (docs/connectors/clickhouse.md).

use arrow_schema::DataType;
use pgfed_connector_sdk::{ConnectorError, NullsOrder, Operator, Qual, QualValue, ScanRequest, SortKey, Value};

use crate::types::ChType;

/// The prefix of every generated query's result: each row starts with this byte, so text a
/// server appends to a streaming body after an error (`Code: …`) is never read as a row.
pub(crate) const ROW_MARKER: &str = "toUInt8(1)";

/// Quotes an identifier: backticks, with backslash and backtick escaped.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for c in name.chars() {
        if c == '\\' || c == '`' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('`');
    out
}

/// Quotes a string literal: single quotes, with backslash and quote escaped.
pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' | '\'' => {
                out.push('\\');
                out.push(c);
            }
            // Not needed for correctness; keeps EXPLAIN and logs on one line.
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Bytes as a String-typed expression (any byte sequence, no escaping questions).
fn bytes_literal(b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!("unhex('{hex}')")
}

/// A float in a form ClickHouse parses back to the same bits; `None` for subnormals, which
/// older servers refuse to parse.
pub(crate) fn float_literal(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("nan".into())
    } else if f.is_infinite() {
        Some(if f > 0.0 { "inf".into() } else { "-inf".into() })
    } else if f != 0.0 && f.abs() < f64::MIN_POSITIVE {
        None
    } else {
        Some(format!("{f:?}"))
    }
}

/// Exact decimal text (`-12.50`) as `(negative, digits before the point, digits after)`.
fn parse_decimal(s: &str) -> Option<(bool, &str, &str)> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    (!int.is_empty() && digits(int) && digits(frac)).then_some((neg, int, frac))
}

/// A numeric literal as a Decimal expression of exactly its own scale (no rounding), or `None`
/// if it has more than 38 significant digits.
fn decimal_literal(s: &str) -> Option<String> {
    let (neg, int, frac) = parse_decimal(s)?;
    let int = int.trim_start_matches('0');
    if int.len() + frac.len() > 38 {
        return None;
    }
    let text = format!(
        "{}{}{}{}",
        if neg { "-" } else { "" },
        if int.is_empty() { "0" } else { int },
        if frac.is_empty() { "" } else { "." },
        frac
    );
    Some(format!("toDecimal128({}, {})", quote_str(&text), frac.len()))
}

/// The integer value of a numeric literal without a fractional part (`"12.000"` is 12).
fn integral(s: &str) -> Option<i128> {
    let (neg, int, frac) = parse_decimal(s)?;
    if !frac.bytes().all(|b| b == b'0') || int.len() > 30 {
        return None;
    }
    let v: i128 = int.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Days since 1970-01-01 as `YYYY-MM-DD`.
pub(crate) fn date_text(days: i32) -> Option<String> {
    let epoch = jiff::civil::date(1970, 1, 1);
    epoch.checked_add(jiff::Span::new().days(i64::from(days))).ok().map(|d| d.to_string())
}

/// A declared column and what the remote says it is.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    pub remote: String,
    pub data_type: DataType,
    pub ch: ChType,
    /// The zone a DateTime column's values are read in as wall-clock time (the column's own,
    /// else the server's).
    pub tz: String,
}

/// Zones whose wall-clock time is UTC: a `timestamp` (no zone) column's values then compare and
/// sort in ClickHouse exactly as their epoch seconds do.
pub(crate) fn is_utc(tz: &str) -> bool {
    matches!(
        tz,
        "UTC"
            | "Etc/UTC"
            | "GMT"
            | "Etc/GMT"
            | "Universal"
            | "Etc/Universal"
            | "Zulu"
            | "Etc/Zulu"
            | "UCT"
            | "Etc/UCT"
            | "GMT0"
            | "Etc/GMT0"
    )
}

/// How a value relates to the range of the column's ClickHouse type.
enum Lit {
    /// A ClickHouse expression of the value.
    Sql(String),
    /// Greater than every value the column can hold.
    Above,
    /// Less than every value the column can hold.
    Below,
}

/// How the column's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Totally ordered as in Postgres (integers, decimals, dates, epoch times).
    Ordered,
    /// Floats: ordered, with Postgres's NaN (equal to itself, above everything) emulated.
    Float,
    /// Equality only (text, enums, uuid, bool).
    Equality,
}

impl Column {
    fn ident(&self) -> String {
        quote_ident(&self.remote)
    }

    /// What the qual machinery may do with this column; `None`: only IS [NOT] NULL.
    fn kind(&self) -> Option<Kind> {
        let d = &self.data_type;
        Some(match (self.ch.base(), d) {
            (ChType::Int { .. }, DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Decimal128(..)) => {
                Kind::Ordered
            }
            (ChType::Int { bytes: 1, signed: false } | ChType::Bool, DataType::Boolean) => Kind::Equality,
            (ChType::Decimal { .. }, DataType::Decimal128(..)) => Kind::Ordered,
            (ChType::Float32 | ChType::Float64, DataType::Float32 | DataType::Float64) => Kind::Float,
            (ChType::String, DataType::Utf8 | DataType::Binary) => Kind::Equality,
            (ChType::Enum { .. }, DataType::Utf8) => Kind::Equality,
            (ChType::Uuid, DataType::FixedSizeBinary(16)) => Kind::Equality,
            (ChType::Date | ChType::Date32, DataType::Date32) => Kind::Ordered,
            (ChType::DateTime(_), DataType::Timestamp(_, Some(_))) => Kind::Ordered,
            (ChType::DateTime(_), DataType::Timestamp(_, None)) if is_utc(&self.tz) => Kind::Ordered,
            _ => return None,
        })
    }

    /// The value as a literal comparable with this column, `None` if it cannot be written
    /// exactly (then the qual is not pushed).
    fn literal(&self, v: &Value) -> Option<Lit> {
        let int_range = |bytes: u8, signed: bool, i: i128| -> Lit {
            let bits = u32::from(bytes) * 8;
            let (min, max) =
                if signed { (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1) } else { (0, (1i128 << bits) - 1) };
            if i < min {
                Lit::Below
            } else if i > max {
                Lit::Above
            } else {
                Lit::Sql(i.to_string())
            }
        };
        let ranged = |x: i64, min: i64, max: i64, sql: &dyn Fn() -> Option<String>| -> Option<Lit> {
            if x < min {
                Some(Lit::Below)
            } else if x > max {
                Some(Lit::Above)
            } else {
                sql().map(Lit::Sql)
            }
        };
        match (self.ch.base(), v) {
            (ChType::Int { bytes, signed }, Value::Int(i)) => Some(int_range(*bytes, *signed, i128::from(*i))),
            (ChType::Int { bytes, signed }, Value::Numeric(s)) => Some(int_range(*bytes, *signed, integral(s)?)),
            (ChType::Float32 | ChType::Float64, Value::Float(f)) => float_literal(*f).map(Lit::Sql),
            (ChType::Decimal { .. }, Value::Numeric(s)) => decimal_literal(s).map(Lit::Sql),
            (ChType::Decimal { .. }, Value::Int(i)) => decimal_literal(&i.to_string()).map(Lit::Sql),
            (ChType::String, Value::Text(s)) => Some(Lit::Sql(quote_str(s))),
            (ChType::String, Value::Bytes(b)) => Some(Lit::Sql(bytes_literal(b))),
            (ChType::Enum { values, .. }, Value::Text(s)) => {
                // A name that is not a member would make ClickHouse fail the query.
                values.iter().any(|(n, _)| n == s).then(|| Lit::Sql(quote_str(s)))
            }
            (ChType::Uuid, Value::Uuid(u)) => {
                let h: String = u.iter().map(|x| format!("{x:02x}")).collect();
                let text = format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]);
                Some(Lit::Sql(format!("toUUID({})", quote_str(&text))))
            }
            // Date: UInt16 days; kept well inside the range every version handles.
            (ChType::Date, Value::Date(d)) => {
                ranged(i64::from(*d), 0, 47_481, &|| date_text(*d).map(|t| format!("toDate({})", quote_str(&t))))
            }
            (ChType::Date32, Value::Date(d)) => ranged(i64::from(*d), -25_567, 120_529, &|| {
                date_text(*d).map(|t| format!("toDate32({})", quote_str(&t)))
            }),
            (ChType::DateTime(_), Value::TimestampTz(us) | Value::Timestamp(us)) => {
                let declared_tz = matches!(self.data_type, DataType::Timestamp(_, Some(_)));
                if declared_tz != matches!(v, Value::TimestampTz(_)) {
                    return None;
                }
                // Whole seconds only: DateTime holds nothing finer.
                if us.rem_euclid(1_000_000) != 0 {
                    return None;
                }
                let secs = us.div_euclid(1_000_000);
                ranged(secs, 0, i64::from(u32::MAX), &|| Some(format!("toDateTime({secs})")))
            }
            _ => None,
        }
    }

    /// `col op value`, exactly as Postgres evaluates it, or `None`.
    fn compare(&self, op: Operator, v: &Value, kind: Kind) -> Option<String> {
        let c = self.ident();
        if *v == Value::Null {
            // Any comparison with NULL is NULL in Postgres: no row qualifies.
            return Some("0".into());
        }
        let ordered = matches!(op, Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq);
        if ordered && kind == Kind::Equality {
            return None;
        }
        let not_null = format!("isNotNull({c})");
        if let (Kind::Equality, ChType::Int { .. } | ChType::Bool, Value::Bool(b)) = (kind, self.ch.base(), v) {
            // Any non-zero UInt8 reads as true.
            let truth = match op {
                Operator::Eq => *b,
                Operator::NotEq => !*b,
                _ => return None,
            };
            return Some(if truth { format!("({c} != 0)") } else { format!("({c} = 0)") });
        }
        if kind == Kind::Float {
            let Value::Float(f) = v else { return None };
            if f.is_nan() {
                return Some(match op {
                    Operator::Eq | Operator::GtEq => format!("isNaN({c})"),
                    Operator::NotEq | Operator::Lt => format!("NOT isNaN({c})"),
                    Operator::LtEq => not_null,
                    Operator::Gt => "0".into(),
                    _ => return None,
                });
            }
            let lit = float_literal(*f)?;
            return Some(match op {
                Operator::Eq => format!("({c} = {lit})"),
                Operator::NotEq => format!("({c} != {lit})"),
                Operator::Lt => format!("({c} < {lit})"),
                Operator::LtEq => format!("({c} <= {lit})"),
                // Postgres orders NaN above every number.
                Operator::Gt => format!("({c} > {lit} OR isNaN({c}))"),
                Operator::GtEq => format!("({c} >= {lit} OR isNaN({c}))"),
                _ => return None,
            });
        }
        let sym = match op {
            Operator::Eq => "=",
            Operator::NotEq => "!=",
            Operator::Lt => "<",
            Operator::LtEq => "<=",
            Operator::Gt => ">",
            Operator::GtEq => ">=",
            _ => return None,
        };
        Some(match self.literal(v)? {
            Lit::Sql(lit) => format!("({c} {sym} {lit})"),
            // Out of the column type's range: decided without comparing.
            Lit::Above => match op {
                Operator::NotEq | Operator::Lt | Operator::LtEq => not_null,
                _ => "0".into(),
            },
            Lit::Below => match op {
                Operator::NotEq | Operator::Gt | Operator::GtEq => not_null,
                _ => "0".into(),
            },
        })
    }

    /// Whether the column's literals are plain SQL literals (digits, quoted strings), which is
    /// what ClickHouse's `IN (...)` accepts on every version; other literals are calls.
    fn plain_literals(&self, values: &[Value]) -> bool {
        matches!(self.ch.base(), ChType::Int { .. } | ChType::String | ChType::Enum { .. })
            && values.iter().all(|v| matches!(v, Value::Int(_) | Value::Numeric(_) | Value::Text(_) | Value::Null))
    }

    /// `col IN (...)` / `col = ANY (...)`.
    fn any_eq(&self, values: &[Value], kind: Kind) -> Option<String> {
        let c = self.ident();
        if !self.plain_literals(values) {
            // A NULL element never makes `=` true; without a match the result is NULL, which
            // filters the row as false would.
            let parts: Option<Vec<String>> =
                values.iter().filter(|v| **v != Value::Null).map(|v| self.compare(Operator::Eq, v, kind)).collect();
            let parts = parts?;
            return Some(if parts.is_empty() { "0".into() } else { format!("({})", parts.join(" OR ")) });
        }
        let mut lits = Vec::new();
        for v in values {
            match v {
                Value::Null => {}
                v => match self.literal(v)? {
                    Lit::Sql(l) => lits.push(l),
                    // Out of the type's range: never equal (and ClickHouse might convert it).
                    Lit::Above | Lit::Below => {}
                },
            }
        }
        if lits.is_empty() {
            return Some("0".into());
        }
        Some(format!("({c} IN ({}))", lits.join(", ")))
    }

    /// `col NOT IN (...)` / `col <> ALL (...)`.
    fn all_ne(&self, values: &[Value], kind: Kind) -> Option<String> {
        let c = self.ident();
        if values.is_empty() {
            // `<> ALL ('{}')` is true, even for NULL.
            return Some("1".into());
        }
        if values.contains(&Value::Null) {
            // Never true: at best NULL.
            return Some("0".into());
        }
        if !self.plain_literals(values) {
            let parts: Option<Vec<String>> = values.iter().map(|v| self.compare(Operator::NotEq, v, kind)).collect();
            return Some(format!("({})", parts?.join(" AND ")));
        }
        let mut lits = Vec::new();
        for v in values {
            if let Lit::Sql(l) = self.literal(v)? {
                lits.push(l);
            }
        }
        if lits.is_empty() {
            return Some(format!("isNotNull({c})"));
        }
        // ClickHouse's NOT IN is true for a NULL left side; Postgres's is NULL.
        Some(format!("(isNotNull({c}) AND {c} NOT IN ({}))", lits.join(", ")))
    }

    /// The qual as ClickHouse SQL, or `None` if it cannot be pushed exactly.
    pub(crate) fn qual_sql(&self, qual: &Qual) -> Option<String> {
        let c = self.ident();
        match (qual.operator, &qual.value) {
            (Operator::IsNull, QualValue::None) => return Some(format!("isNull({c})")),
            (Operator::IsNotNull, QualValue::None) => return Some(format!("isNotNull({c})")),
            _ => {}
        }
        let kind = self.kind()?;
        match (qual.operator, &qual.value) {
            (Operator::Like | Operator::NotLike, QualValue::One(Value::Text(p)))
                if matches!(self.ch.base(), ChType::String) && self.data_type == DataType::Utf8 =>
            {
                let pattern = quote_str(&like_pattern(p)?);
                Some(if qual.operator == Operator::Like {
                    format!("({c} LIKE {pattern})")
                } else {
                    format!("({c} NOT LIKE {pattern})")
                })
            }
            (Operator::Like | Operator::NotLike | Operator::ILike | Operator::NotILike, _) => None,
            (op, QualValue::One(v)) => self.compare(op, v, kind),
            (Operator::Eq, QualValue::Any(vs)) => self.any_eq(vs, kind),
            (Operator::NotEq, QualValue::All(vs)) => self.all_ne(vs, kind),
            _ => None,
        }
    }

    /// Whether ClickHouse sorts this column as Postgres does.
    fn sortable(&self) -> bool {
        matches!(self.kind(), Some(Kind::Ordered))
            || matches!(
                (self.ch.base(), &self.data_type),
                (ChType::Int { bytes: 1, signed: false } | ChType::Bool, DataType::Boolean)
            )
    }
}

/// A Postgres LIKE pattern (backslash escapes) rewritten so that ClickHouse matches exactly the
/// same strings: `%` and `_` stay wildcards, every literal `%`, `_` and `\` is escaped, and no
/// other escape is emitted. `None` for a pattern ending in a lone backslash (Postgres raises an
/// error there, so pgfed evaluates it).
pub(crate) fn like_pattern(p: &str) -> Option<String> {
    let mut out = String::with_capacity(p.len());
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next()?;
                if matches!(next, '%' | '_' | '\\') {
                    out.push('\\');
                }
                out.push(next);
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// The table as declared, with the remote's types.
#[derive(Debug, Clone)]
pub(crate) struct TableDef {
    /// `None`: the connection's default database.
    pub database: Option<String>,
    pub table: String,
    pub columns: Vec<Column>,
}

impl TableDef {
    pub(crate) fn column(&self, name: &str) -> Result<&Column, ConnectorError> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ConnectorError::Internal(format!("column \"{name}\" is not declared")))
    }

    pub(crate) fn relation(&self) -> String {
        match &self.database {
            Some(db) => format!("{}.{}", quote_ident(db), quote_ident(&self.table)),
            None => quote_ident(&self.table),
        }
    }

    pub(crate) fn qual_sql(&self, qual: &Qual) -> Option<String> {
        self.column(&qual.column).ok()?.qual_sql(qual)
    }

    pub(crate) fn accepts_sort(&self, keys: &[SortKey]) -> bool {
        keys.iter().all(|k| self.column(&k.column).is_ok_and(Column::sortable))
    }

    /// The scan's SELECT (without FORMAT): the row marker, the columns, the quals, the sort and
    /// the limit. A qual or sort key the table refused is an error, never silently dropped.
    pub(crate) fn select(&self, request: &ScanRequest) -> Result<String, ConnectorError> {
        let mut sql = format!("SELECT {ROW_MARKER}");
        for name in &request.columns {
            sql.push_str(", ");
            sql.push_str(&self.column(name)?.ident());
        }
        sql.push_str(" FROM ");
        sql.push_str(&self.relation());
        let mut conds = Vec::new();
        for q in &request.quals {
            conds.push(self.qual_sql(q).ok_or_else(|| ConnectorError::NotSupported(format!("the condition {q}")))?);
        }
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        if !request.sort.is_empty() {
            if !self.accepts_sort(&request.sort) {
                return Err(ConnectorError::NotSupported("this ORDER BY".into()));
            }
            let keys: Vec<String> = request
                .sort
                .iter()
                .map(|k| {
                    let c = self.column(&k.column).map(Column::ident).unwrap_or_default();
                    let dir = if k.descending { "DESC" } else { "ASC" };
                    let nulls = if k.nulls == NullsOrder::First { "NULLS FIRST" } else { "NULLS LAST" };
                    format!("{c} {dir} {nulls}")
                })
                .collect();
            sql.push_str(" ORDER BY ");
            sql.push_str(&keys.join(", "));
        }
        if let Some(limit) = request.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        Ok(sql)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn column(name: &str, ch: &str, data_type: DataType) -> Column {
        Column {
            name: name.into(),
            remote: name.into(),
            data_type,
            ch: ChType::parse(ch).expect("type"),
            tz: "UTC".into(),
        }
    }

    fn q(column: &str, operator: Operator, value: QualValue) -> Qual {
        Qual { column: column.into(), operator, value }
    }

    #[test]
    fn identifiers_and_strings_escape_backslash_and_quote() {
        assert_eq!(quote_ident("a`b\\c"), "`a\\`b\\\\c`");
        assert_eq!(quote_str("it's \\ 'x'"), "'it\\'s \\\\ \\'x\\''");
        assert_eq!(quote_str("a\nb"), "'a\\nb'");
    }

    #[test]
    fn floats_round_trip_and_subnormals_are_refused() {
        assert_eq!(float_literal(0.1 + 0.2).as_deref(), Some("0.30000000000000004"));
        assert_eq!(float_literal(1e300).as_deref(), Some("1e300"));
        assert_eq!(float_literal(-0.0).as_deref(), Some("-0.0"));
        assert_eq!(float_literal(f64::NAN).as_deref(), Some("nan"));
        assert_eq!(float_literal(f64::NEG_INFINITY).as_deref(), Some("-inf"));
        assert_eq!(float_literal(5e-324), None);
    }

    #[test]
    fn like_patterns_keep_postgres_escapes() {
        assert_eq!(like_pattern("a%b_c").as_deref(), Some("a%b_c"));
        assert_eq!(like_pattern("100\\%").as_deref(), Some("100\\%"));
        assert_eq!(like_pattern("a\\_b").as_deref(), Some("a\\_b"));
        assert_eq!(like_pattern("a\\\\b").as_deref(), Some("a\\\\b"));
        // `\x` is a literal x in Postgres; ClickHouse would reject the escape.
        assert_eq!(like_pattern("a\\xb").as_deref(), Some("axb"));
        assert_eq!(like_pattern("a.b*(c)").as_deref(), Some("a.b*(c)"));
        assert_eq!(like_pattern("ends\\"), None);
    }

    #[test]
    fn quals_translate_with_postgres_semantics() {
        let i = column("i", "Nullable(Int32)", DataType::Int32);
        let sql = |c: &Column, op, v| c.qual_sql(&q(&c.name, op, v));
        assert_eq!(sql(&i, Operator::Eq, QualValue::One(Value::Int(5))).as_deref(), Some("(`i` = 5)"));
        assert_eq!(sql(&i, Operator::Eq, QualValue::One(Value::Null)).as_deref(), Some("0"));
        assert_eq!(sql(&i, Operator::Lt, QualValue::One(Value::Int(1 << 40))).as_deref(), Some("isNotNull(`i`)"));
        assert_eq!(sql(&i, Operator::Gt, QualValue::One(Value::Int(1 << 40))).as_deref(), Some("0"));
        assert_eq!(
            sql(&i, Operator::Eq, QualValue::Any(vec![Value::Int(1), Value::Null, Value::Int(1 << 40)])).as_deref(),
            Some("(`i` IN (1))")
        );
        assert_eq!(
            sql(&i, Operator::NotEq, QualValue::All(vec![Value::Int(1), Value::Int(2)])).as_deref(),
            Some("(isNotNull(`i`) AND `i` NOT IN (1, 2))")
        );
        assert_eq!(sql(&i, Operator::NotEq, QualValue::All(vec![Value::Int(1), Value::Null])).as_deref(), Some("0"));
        assert_eq!(sql(&i, Operator::NotEq, QualValue::All(vec![])).as_deref(), Some("1"));
        assert_eq!(sql(&i, Operator::IsNull, QualValue::None).as_deref(), Some("isNull(`i`)"));

        let f = column("f", "Float64", DataType::Float64);
        assert_eq!(
            sql(&f, Operator::Gt, QualValue::One(Value::Float(100.0))).as_deref(),
            Some("(`f` > 100.0 OR isNaN(`f`))")
        );
        assert_eq!(sql(&f, Operator::Eq, QualValue::One(Value::Float(f64::NAN))).as_deref(), Some("isNaN(`f`)"));

        let t = column("t", "String", DataType::Utf8);
        assert_eq!(
            sql(&t, Operator::Eq, QualValue::One(Value::Text("a'b".into()))).as_deref(),
            Some("(`t` = 'a\\'b')")
        );
        assert_eq!(sql(&t, Operator::Lt, QualValue::One(Value::Text("m".into()))), None);
        assert_eq!(sql(&t, Operator::ILike, QualValue::One(Value::Text("a%".into()))), None);
        assert_eq!(
            sql(&t, Operator::NotLike, QualValue::One(Value::Text("a\\%%".into()))).as_deref(),
            Some("(`t` NOT LIKE 'a\\\\%%')")
        );

        let d = column("d", "Decimal(12, 3)", DataType::Decimal128(12, 3));
        assert_eq!(
            sql(&d, Operator::GtEq, QualValue::One(Value::Numeric("-1.2500".into()))).as_deref(),
            Some("(`d` >= toDecimal128('-1.2500', 4))")
        );
        let u = column("u", "UInt64", DataType::Decimal128(20, 0));
        assert_eq!(
            sql(&u, Operator::Eq, QualValue::One(Value::Numeric("18446744073709551615".into()))).as_deref(),
            Some("(`u` = 18446744073709551615)")
        );
        assert_eq!(sql(&u, Operator::Eq, QualValue::One(Value::Numeric("1.5".into()))), None);
        let ts = column("ts", "DateTime", DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into())));
        assert_eq!(
            sql(&ts, Operator::Lt, QualValue::One(Value::TimestampTz(1_700_000_000_000_000))).as_deref(),
            Some("(`ts` < toDateTime(1700000000))")
        );
        assert_eq!(sql(&ts, Operator::Lt, QualValue::One(Value::TimestampTz(1))), None);
        let b = column("b", "UInt8", DataType::Boolean);
        assert_eq!(sql(&b, Operator::Eq, QualValue::One(Value::Bool(true))).as_deref(), Some("(`b` != 0)"));
        let e = column("e", "Enum8('a' = 1, 'b' = 2)", DataType::Utf8);
        assert_eq!(sql(&e, Operator::Eq, QualValue::One(Value::Text("zz".into()))), None);
        assert_eq!(sql(&e, Operator::Eq, QualValue::One(Value::Text("a".into()))).as_deref(), Some("(`e` = 'a')"));
        let date = column("d", "Date", DataType::Date32);
        assert_eq!(sql(&date, Operator::Gt, QualValue::One(Value::Date(-1))).as_deref(), Some("isNotNull(`d`)"));
        assert_eq!(
            sql(&date, Operator::Eq, QualValue::One(Value::Date(19782))).as_deref(),
            Some("(`d` = toDate('2024-02-29'))")
        );
    }

    #[test]
    fn select_carries_marker_columns_quals_sort_and_limit() {
        let def = TableDef {
            database: Some("db".into()),
            table: "t`1".into(),
            columns: vec![column("id", "Int64", DataType::Int64), column("name", "String", DataType::Utf8)],
        };
        let request = ScanRequest {
            columns: vec!["name".into()],
            quals: vec![q("id", Operator::Gt, QualValue::One(Value::Int(3)))],
            sort: vec![SortKey { column: "id".into(), descending: true, nulls: NullsOrder::First }],
            limit: Some(7),
        };
        assert_eq!(
            def.select(&request).expect("select"),
            "SELECT toUInt8(1), `name` FROM `db`.`t\\`1` WHERE (`id` > 3) ORDER BY `id` DESC NULLS FIRST LIMIT 7"
        );
        let bad = ScanRequest {
            sort: vec![SortKey { column: "name".into(), descending: false, nulls: NullsOrder::Last }],
            ..ScanRequest::default()
        };
        assert!(def.select(&bad).is_err());
    }
}

/// Writes the SQL this layer generates, with a table to run it on, to the file named by
/// `PGFED_CH_SQL_SAMPLES` (scripts/check-clickhouse-sql runs it through current ClickHouse).
#[cfg(test)]
mod samples {
    use super::tests::column;
    use super::*;

    #[test]
    fn write_sql_samples() {
        let Ok(path) = std::env::var("PGFED_CH_SQL_SAMPLES") else { return };
        let def = TableDef {
            database: None,
            table: "samples".into(),
            columns: vec![
                column("i", "Nullable(Int32)", DataType::Int32),
                column("u", "UInt64", DataType::Decimal128(20, 0)),
                column("f", "Float64", DataType::Float64),
                column("d", "Decimal(12, 3)", DataType::Decimal128(12, 3)),
                column("s", "Nullable(String)", DataType::Utf8),
                column("e", "Enum8('a' = 1, 'b' = 2)", DataType::Utf8),
                column("dt", "Date", DataType::Date32),
                column("ts", "DateTime", DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()))),
                column("id", "UUID", DataType::FixedSizeBinary(16)),
                column("b", "UInt8", DataType::Boolean),
            ],
        };
        let create = "CREATE TABLE samples (i Nullable(Int32), u UInt64, f Float64, d Decimal(12, 3), s Nullable(String), \
                      e Enum8('a' = 1, 'b' = 2), dt Date, ts DateTime, id UUID, b UInt8) ENGINE = Memory";
        let values = [
            ("i", vec![Value::Int(5), Value::Int(1 << 40), Value::Null]),
            ("u", vec![Value::Numeric("18446744073709551615".into()), Value::Int(3)]),
            (
                "f",
                vec![
                    Value::Float(100.0),
                    Value::Float(f64::NAN),
                    Value::Float(f64::NEG_INFINITY),
                    Value::Float(0.1 + 0.2),
                ],
            ),
            ("d", vec![Value::Numeric("-1.2500".into()), Value::Int(7)]),
            ("s", vec![Value::Text("it's \\ ü".into()), Value::Bytes(vec![0, 255])]),
            ("e", vec![Value::Text("a".into())]),
            ("dt", vec![Value::Date(19782), Value::Date(-5)]),
            ("ts", vec![Value::TimestampTz(1_700_000_000_000_000)]),
            ("id", vec![Value::Uuid([7; 16])]),
            ("b", vec![Value::Bool(true), Value::Bool(false)]),
        ];
        let mut out = vec![create.to_string()];
        for (name, vs) in &values {
            let mut quals = vec![Qual { column: (*name).into(), operator: Operator::IsNull, value: QualValue::None }];
            for op in [Operator::Eq, Operator::NotEq, Operator::Lt, Operator::GtEq, Operator::Gt, Operator::LtEq] {
                for v in vs {
                    quals.push(Qual { column: (*name).into(), operator: op, value: QualValue::One(v.clone()) });
                }
            }
            quals.push(Qual { column: (*name).into(), operator: Operator::Eq, value: QualValue::Any(vs.clone()) });
            quals.push(Qual { column: (*name).into(), operator: Operator::NotEq, value: QualValue::All(vs.clone()) });
            for p in ["a%", "100\\%", "a\\_b_", "x\\y"] {
                quals.push(Qual {
                    column: (*name).into(),
                    operator: Operator::Like,
                    value: QualValue::One(Value::Text(p.into())),
                });
                quals.push(Qual {
                    column: (*name).into(),
                    operator: Operator::NotLike,
                    value: QualValue::One(Value::Text(p.into())),
                });
            }
            for qual in quals {
                if def.qual_sql(&qual).is_none() {
                    continue;
                }
                let sort = if def.accepts_sort(&[SortKey {
                    column: (*name).into(),
                    descending: true,
                    nulls: NullsOrder::First,
                }]) {
                    vec![SortKey { column: (*name).into(), descending: true, nulls: NullsOrder::First }]
                } else {
                    vec![]
                };
                let request = ScanRequest { columns: vec![(*name).into()], quals: vec![qual], sort, limit: Some(3) };
                out.push(def.select(&request).expect("select"));
            }
        }
        std::fs::write(path, out.join(";\n") + ";\n").expect("write samples");
    }
}
