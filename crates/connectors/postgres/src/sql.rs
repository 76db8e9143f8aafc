//! The quoting layer: the remote SELECT is built from quoted identifiers, fixed keywords and
//! `$n` placeholders only. Every value from a qual or the LIMIT travels as a bind parameter in
//! binary format; nothing from a value is ever written into the query text.

use std::error::Error;

use arrow_schema::{DataType, TimeUnit};
use bytes::{BufMut, BytesMut};
use pgfed_connector_sdk::{
    ConnectorError, NullsOrder, Operator, Qual, QualValue, ScanRequest, SortKey, SqlQuery, Value,
};
use tokio_postgres::types::{IsNull, Kind, ToSql, Type, to_sql_checked};

/// Days from 1970-01-01 (Arrow) to 2000-01-01 (Postgres).
pub(crate) const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 (Arrow) to 2000-01-01 (Postgres).
pub(crate) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Quotes an identifier for Postgres: always double-quoted, embedded quotes doubled, so any name
/// (keywords, upper case, spaces, quotes) reads back exactly.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A declared column: its local name, its remote name and its declared Arrow type.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    pub remote: String,
    pub data_type: DataType,
    pub nullable: bool,
}

/// The Postgres type a qual value is bound as, chosen from the declared column type. The remote
/// SQL casts the placeholder to it (`$1::pg_catalog.int8`), so the server never has to guess,
/// except for text, which is left to take the remote column's own type (text, varchar, bpchar,
/// name, citext) so the comparison is the column's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamType {
    Bool,
    Int8,
    Float8,
    Text,
    /// Sent as text and cast remotely (`$1::pg_catalog.text::pg_catalog.numeric`): exact decimal.
    Numeric,
    Bytea,
    Date,
    Timestamp,
    TimestampTz,
    Uuid,
}

impl ParamType {
    pub(crate) fn for_column(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Boolean => ParamType::Bool,
            DataType::Int16 | DataType::Int32 | DataType::Int64 => ParamType::Int8,
            DataType::Float32 | DataType::Float64 => ParamType::Float8,
            DataType::Utf8 => ParamType::Text,
            DataType::Decimal128(_, _) => ParamType::Numeric,
            DataType::Binary => ParamType::Bytea,
            DataType::Date32 => ParamType::Date,
            DataType::Timestamp(TimeUnit::Microsecond, None) => ParamType::Timestamp,
            DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => ParamType::TimestampTz,
            DataType::FixedSizeBinary(16) => ParamType::Uuid,
            _ => return None,
        })
    }

    /// The value as this type, or `None` if it is another kind of value (then the qual is not
    /// pushed down and pgfed filters).
    pub(crate) fn scalar(self, value: &Value) -> Option<Scalar> {
        Some(match (self, value) {
            (_, Value::Null) => Scalar::Null,
            (ParamType::Bool, Value::Bool(b)) => Scalar::Bool(*b),
            (ParamType::Int8, Value::Int(i)) => Scalar::Int(*i),
            (ParamType::Float8, Value::Float(f)) => Scalar::Float(*f),
            (ParamType::Text, Value::Text(s)) => Scalar::Text(s.clone()),
            (ParamType::Numeric, Value::Numeric(s)) => Scalar::Text(s.clone()),
            (ParamType::Numeric, Value::Int(i)) => Scalar::Text(i.to_string()),
            (ParamType::Bytea, Value::Bytes(b)) => Scalar::Bytes(b.clone()),
            (ParamType::Date, Value::Date(d)) => Scalar::Int4(d.checked_sub(PG_EPOCH_DAYS)?),
            (ParamType::Timestamp, Value::Timestamp(t)) | (ParamType::TimestampTz, Value::TimestampTz(t)) => {
                Scalar::Int(t.checked_sub(PG_EPOCH_MICROS)?)
            }
            (ParamType::Uuid, Value::Uuid(u)) => Scalar::Bytes(u.to_vec()),
            _ => return None,
        })
    }

    /// The placeholder with its cast; `array` for `ANY`/`ALL` lists.
    fn placeholder(self, n: usize, array: bool) -> String {
        let arr = if array { "[]" } else { "" };
        match self {
            ParamType::Text => format!("${n}"),
            ParamType::Numeric => format!("${n}::pg_catalog.text{arr}::pg_catalog.numeric{arr}"),
            other => format!("${n}::pg_catalog.{}{arr}", other.sql_name()),
        }
    }

    fn sql_name(self) -> &'static str {
        match self {
            ParamType::Bool => "bool",
            ParamType::Int8 => "int8",
            ParamType::Float8 => "float8",
            ParamType::Text | ParamType::Numeric => "text",
            ParamType::Bytea => "bytea",
            ParamType::Date => "date",
            ParamType::Timestamp => "timestamp",
            ParamType::TimestampTz => "timestamptz",
            ParamType::Uuid => "uuid",
        }
    }
}

/// One bind parameter value, already in Postgres's binary representation's terms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int4(i32),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Scalar {
    fn encode(&self, out: &mut BytesMut) -> IsNull {
        match self {
            Scalar::Null => return IsNull::Yes,
            Scalar::Bool(b) => out.put_u8(u8::from(*b)),
            Scalar::Int4(i) => out.put_i32(*i),
            Scalar::Int(i) => out.put_i64(*i),
            Scalar::Float(f) => out.put_f64(*f),
            Scalar::Text(s) => out.put_slice(s.as_bytes()),
            Scalar::Bytes(b) => out.put_slice(b),
        }
        IsNull::No
    }
}

/// A bind parameter: one value or a one-dimensional array (for `ANY`/`ALL`). Encoded for the
/// type the server resolved, which the SQL fixes by its casts (checked before execution).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    One(Scalar),
    Array(Vec<Scalar>),
    /// A value of a generated query, encoded for the resolved type.
    Typed(Value),
}

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Param::One(s) => Ok(s.encode(out)),
            Param::Typed(v) => encode_typed(v, ty, out),
            Param::Array(items) => {
                let Kind::Array(member) = ty.kind() else {
                    return Err(format!("expected an array type, the server resolved {}", ty.name()).into());
                };
                let dims = i32::from(!items.is_empty());
                out.put_i32(dims);
                out.put_i32(i32::from(items.contains(&Scalar::Null)));
                out.put_u32(member.oid());
                if dims == 1 {
                    out.put_i32(i32::try_from(items.len())?);
                    out.put_i32(1);
                }
                for item in items {
                    let at = out.len();
                    out.put_i32(0);
                    match item.encode(out) {
                        IsNull::Yes => out[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes()),
                        IsNull::No => {
                            let len = i32::try_from(out.len() - at - 4)?;
                            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
                        }
                    }
                }
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Types a [`ParamType::Text`] placeholder may resolve to remotely (its binary form is the text).
pub(crate) fn is_text_type(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME) || ty.name() == "citext"
}

/// A remote SELECT: text with `$n` placeholders, and the values bound to them.
#[derive(Debug, Clone)]
pub(crate) struct RemoteQuery {
    pub sql: String,
    pub params: Vec<Param>,
    /// For each text placeholder: its index and the column it compares with, to check the type
    /// the server resolved before anything is sent.
    pub text_params: Vec<(usize, String)>,
    /// The declared columns of the SELECT list, in order.
    pub columns: Vec<Column>,
    /// Generated by the engine ([`pgfed_connector_sdk::SqlQuery`]): result types may be wider
    /// than the expected ones (see `Decoder::computed`).
    pub computed: bool,
}

impl RemoteQuery {
    /// A query the engine generated: values are [`Param::Typed`], result columns the expected
    /// schema's fields.
    pub(crate) fn generated(query: SqlQuery) -> Self {
        let columns = query
            .schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                remote: f.name().clone(),
                data_type: f.data_type().clone(),
                nullable: f.is_nullable(),
            })
            .collect();
        RemoteQuery {
            sql: query.sql,
            params: query.params.into_iter().map(Param::Typed).collect(),
            text_params: Vec::new(),
            columns,
            computed: true,
        }
    }
}

/// Encodes a value of a generated query for the type the server resolved for its placeholder
/// (the query's casts fix it); a value that does not fit that type is an error, never a
/// conversion.
fn encode_typed(value: &Value, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
    let mismatch = || format!("a {value:?} parameter cannot be sent as {}", ty.name());
    match (value, ty) {
        (Value::Null, _) => return Ok(IsNull::Yes),
        (Value::Bool(b), &Type::BOOL) => out.put_u8(u8::from(*b)),
        (Value::Int(i), &Type::INT2) => out.put_i16(i16::try_from(*i)?),
        (Value::Int(i), &Type::INT4) => out.put_i32(i32::try_from(*i)?),
        (Value::Int(i), &Type::INT8) => out.put_i64(*i),
        (Value::Float(f), &Type::FLOAT8) => out.put_f64(*f),
        (Value::Text(s) | Value::Numeric(s), t) if is_text_type(t) => out.put_slice(s.as_bytes()),
        (Value::Bytes(b), &Type::BYTEA) => out.put_slice(b),
        (Value::Date(d), &Type::DATE) => out.put_i32(d.checked_sub(PG_EPOCH_DAYS).ok_or_else(mismatch)?),
        (Value::Timestamp(t), &Type::TIMESTAMP) | (Value::TimestampTz(t), &Type::TIMESTAMPTZ) => {
            out.put_i64(t.checked_sub(PG_EPOCH_MICROS).ok_or_else(mismatch)?)
        }
        (Value::Uuid(u), &Type::UUID) => out.put_slice(u),
        _ => return Err(mismatch().into()),
    }
    Ok(IsNull::No)
}

/// How a qual is pushed down, decided in one place for `pushdown()` and for building SQL.
pub(crate) fn qual_param_type(column: &Column, qual: &Qual, same_collation: bool) -> Result<Option<ParamType>, ()> {
    let is_text = column.data_type == DataType::Utf8;
    match qual.operator {
        Operator::IsNull | Operator::IsNotNull => {
            return if qual.value == QualValue::None { Ok(None) } else { Err(()) };
        }
        Operator::Eq | Operator::NotEq => {}
        Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
            if is_text && !same_collation {
                return Err(());
            }
        }
        Operator::Like | Operator::NotLike | Operator::ILike | Operator::NotILike => {
            if !is_text || !same_collation {
                return Err(());
            }
        }
    }
    let pt = ParamType::for_column(&column.data_type).ok_or(())?;
    let fits = |v: &Value| pt.scalar(v).is_some();
    let ok = match &qual.value {
        QualValue::None => false,
        QualValue::One(v) => fits(v),
        QualValue::Any(vs) | QualValue::All(vs) => vs.iter().all(fits),
    };
    if ok { Ok(Some(pt)) } else { Err(()) }
}

/// Whether rows can be ordered remotely by this column with Postgres's local semantics.
pub(crate) fn sortable(column: &Column, same_collation: bool) -> bool {
    match ParamType::for_column(&column.data_type) {
        Some(ParamType::Text) => same_collation,
        Some(_) => true,
        None => false,
    }
}

/// Everything the query builder needs to know about the table.
#[derive(Debug, Clone)]
pub(crate) struct TableDef {
    pub schema: String,
    pub table: String,
    pub columns: Vec<Column>,
    pub same_collation: bool,
}

impl TableDef {
    pub(crate) fn column(&self, name: &str) -> Result<&Column, ConnectorError> {
        self.columns.iter().find(|c| c.name == name).ok_or_else(|| ConnectorError::ColumnNotFound(name.to_string()))
    }

    /// Builds the remote SELECT for a scan. Fails (rather than guess) on a qual or sort key that
    /// `pushdown()` / `accepts_sort()` would have refused.
    pub(crate) fn build(&self, request: &ScanRequest) -> Result<RemoteQuery, ConnectorError> {
        let columns = request.columns.iter().map(|c| self.column(c).cloned()).collect::<Result<Vec<_>, _>>()?;
        let list: Vec<String> = columns.iter().map(|c| quote_ident(&c.remote)).collect();
        let mut sql =
            format!("SELECT {} FROM {}.{}", list.join(", "), quote_ident(&self.schema), quote_ident(&self.table));
        let mut params = Vec::new();
        let mut text_params = Vec::new();
        for (i, qual) in request.quals.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            let column = self.column(&qual.column)?;
            let refused = || {
                ConnectorError::NotSupported(format!(
                    "pushing down {} on column \"{}\" of type {}",
                    qual.operator.as_sql(),
                    qual.column,
                    column.data_type
                ))
            };
            let pt = qual_param_type(column, qual, self.same_collation).map_err(|()| refused())?;
            let col = quote_ident(&column.remote);
            let op = qual.operator.as_sql();
            let Some(pt) = pt else {
                sql.push_str(&format!("{col} {op}"));
                continue;
            };
            let n = params.len() + 1;
            let convert =
                |vs: &[Value]| vs.iter().map(|v| pt.scalar(v).ok_or_else(refused)).collect::<Result<Vec<_>, _>>();
            match &qual.value {
                QualValue::One(v) => {
                    params.push(Param::One(pt.scalar(v).ok_or_else(refused)?));
                    sql.push_str(&format!("{col} {op} {}", pt.placeholder(n, false)));
                }
                QualValue::Any(vs) => {
                    params.push(Param::Array(convert(vs)?));
                    sql.push_str(&format!("{col} {op} ANY ({})", pt.placeholder(n, true)));
                }
                QualValue::All(vs) => {
                    params.push(Param::Array(convert(vs)?));
                    sql.push_str(&format!("{col} {op} ALL ({})", pt.placeholder(n, true)));
                }
                QualValue::None => return Err(refused()),
            }
            if pt == ParamType::Text {
                text_params.push((n - 1, qual.column.clone()));
            }
        }
        for (i, key) in request.sort.iter().enumerate() {
            sql.push_str(if i == 0 { " ORDER BY " } else { ", " });
            sql.push_str(&self.sort_key(key)?);
        }
        if let Some(limit) = request.limit {
            params.push(Param::One(Scalar::Int(i64::try_from(limit).unwrap_or(i64::MAX))));
            sql.push_str(&format!(" LIMIT ${}::pg_catalog.int8", params.len()));
        }
        Ok(RemoteQuery { sql, params, text_params, columns, computed: false })
    }

    fn sort_key(&self, key: &SortKey) -> Result<String, ConnectorError> {
        let column = self.column(&key.column)?;
        if !sortable(column, self.same_collation) {
            return Err(ConnectorError::NotSupported(format!("remote ORDER BY on column \"{}\"", key.column)));
        }
        let dir = if key.descending { "DESC" } else { "ASC" };
        let nulls = if key.nulls == NullsOrder::First { "NULLS FIRST" } else { "NULLS LAST" };
        Ok(format!("{} {dir} {nulls}", quote_ident(&column.remote)))
    }

    pub(crate) fn accepts_sort(&self, keys: &[SortKey]) -> bool {
        keys.iter().all(|k| self.column(&k.column).is_ok_and(|c| sortable(c, self.same_collation)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(same_collation: bool) -> TableDef {
        let col = |name: &str, remote: &str, data_type| Column {
            name: name.into(),
            remote: remote.into(),
            data_type,
            nullable: true,
        };
        TableDef {
            schema: "my \"schema\"".into(),
            table: "T".into(),
            columns: vec![
                col("id", "id", DataType::Int64),
                col("name", "Name", DataType::Utf8),
                col("amount", "amount", DataType::Decimal128(10, 2)),
                col("at", "at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))),
            ],
            same_collation,
        }
    }

    fn qual(column: &str, operator: Operator, value: QualValue) -> Qual {
        Qual { column: column.into(), operator, value }
    }

    #[test]
    fn identifiers_are_always_quoted_and_quotes_doubled() {
        assert_eq!(quote_ident("id"), "\"id\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("x\"; drop table t; --"), "\"x\"\"; drop table t; --\"");
    }

    #[test]
    fn values_become_typed_placeholders_never_text() {
        let secret = "it's'); drop table x; --";
        let request = ScanRequest {
            columns: vec!["id".into(), "name".into()],
            quals: vec![
                qual("name", Operator::Eq, QualValue::One(Value::Text(secret.into()))),
                qual("id", Operator::NotEq, QualValue::All(vec![Value::Int(1), Value::Int(2)])),
                qual("amount", Operator::GtEq, QualValue::One(Value::Numeric("1.50".into()))),
                qual("at", Operator::IsNotNull, QualValue::None),
            ],
            sort: vec![SortKey { column: "id".into(), descending: true, nulls: NullsOrder::First }],
            limit: Some(5),
        };
        let q = table(false).build(&request).expect("builds");
        assert_eq!(
            q.sql,
            "SELECT \"id\", \"Name\" FROM \"my \"\"schema\"\"\".\"T\" WHERE \"Name\" = $1 AND \"id\" <> ALL \
             ($2::pg_catalog.int8[]) AND \"amount\" >= $3::pg_catalog.text::pg_catalog.numeric AND \"at\" IS NOT \
             NULL ORDER BY \"id\" DESC NULLS FIRST LIMIT $4::pg_catalog.int8"
        );
        assert!(!q.sql.contains("drop"));
        assert_eq!(q.params.len(), 4);
        assert_eq!(q.params[0], Param::One(Scalar::Text(secret.into())));
        assert_eq!(q.text_params, vec![(0, "name".to_string())]);
    }

    #[test]
    fn text_ordering_and_like_need_same_collation() {
        let lt = qual("name", Operator::Lt, QualValue::One(Value::Text("m".into())));
        let like = qual("name", Operator::Like, QualValue::One(Value::Text("a%".into())));
        let id_lt = qual("id", Operator::Lt, QualValue::One(Value::Int(3)));
        let wrong_kind = qual("id", Operator::Eq, QualValue::One(Value::Text("3".into())));
        let t = table(false);
        let c = |q: &Qual, t: &TableDef| qual_param_type(t.column(&q.column).expect("column"), q, t.same_collation);
        assert!(c(&lt, &t).is_err() && c(&like, &t).is_err() && c(&wrong_kind, &t).is_err());
        assert!(c(&id_lt, &t).is_ok());
        let key = |column: &str| SortKey { column: column.into(), descending: false, nulls: NullsOrder::Last };
        assert!(!t.accepts_sort(&[key("id"), key("name")]) && t.accepts_sort(&[key("id")]));
        let t = table(true);
        assert!(c(&lt, &t).is_ok() && c(&like, &t).is_ok() && t.accepts_sort(&[key("name")]));
    }

    #[test]
    fn arrays_encode_in_binary_with_nulls() {
        let p = Param::Array(vec![Scalar::Int(7), Scalar::Null]);
        let mut out = BytesMut::new();
        p.to_sql(&Type::INT8_ARRAY, &mut out).expect("encodes");
        let mut expected = vec![];
        for x in [1i32, 1] {
            expected.extend_from_slice(&x.to_be_bytes());
        }
        expected.extend_from_slice(&Type::INT8.oid().to_be_bytes());
        for x in [2i32, 1, 8] {
            expected.extend_from_slice(&x.to_be_bytes());
        }
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(&out[..], &expected[..]);
    }
}
