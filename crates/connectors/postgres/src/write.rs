//! INSERT, UPDATE and DELETE on the remote table, keyed by a row-id column.
//!
//! Every value is a bind parameter, typed by the **declared** column: `$1::pg_catalog.int4`,
//! sent in binary; numeric as exact decimal text cast to `pg_catalog.numeric`. Text values are
//! the exception: their placeholder has no cast and they travel in text format, so the server
//! gives them the remote column's own type (text, varchar, char, json, jsonb, citext, an enum)
//! and parses them as a string literal written there would be.
//!
//! INSERT sends many rows per statement (`VALUES (...), (...)`, up to `batch_size` rows and
//! 65535 parameters). UPDATE and DELETE run one prepared statement per row id, pipelined: all
//! rows of a batch go out before the first answer is read, so a batch costs about one round
//! trip.

use std::error::Error;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, IntervalMonthDayNanoType,
    Time64MicrosecondType, TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, IntervalUnit, TimeUnit};
use bytes::{BufMut, BytesMut};
use pgfed_connector_sdk::ConnectorError;
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};

use std::time::Instant;

use futures_util::TryStreamExt;
use futures_util::future::try_join_all;
use pgfed_connector_sdk::WriteResult;
use tokio_postgres::{Client, Row};
use tokio_util::sync::CancellationToken;

use crate::conn::{Errors, Lease, RemoteConn, Session, watched};
use crate::quote_ident;
use crate::sql::{Column, PG_EPOCH_DAYS, PG_EPOCH_MICROS, TableDef};
use crate::stream::{append_row, decoders, finish_batch, schema_of};

/// Postgres's limit on bind parameters per statement.
const MAX_PARAMS: usize = 65_535;
/// Executions sent before their answers are read (UPDATE/DELETE pipelining).
const PIPELINE_DEPTH: usize = 1000;

/// How a declared column's values are bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// No cast, text format: the remote column's type parses it.
    Text,
    /// Exact decimal text, `::pg_catalog.numeric`.
    Numeric(i8),
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
}

impl WriteType {
    fn for_column(column: &Column) -> Result<Self, ConnectorError> {
        Ok(match &column.data_type {
            DataType::Boolean => WriteType::Bool,
            DataType::Int16 => WriteType::Int2,
            DataType::Int32 => WriteType::Int4,
            DataType::Int64 => WriteType::Int8,
            DataType::Float32 => WriteType::Float4,
            DataType::Float64 => WriteType::Float8,
            DataType::Utf8 => WriteType::Text,
            DataType::Decimal128(_, s) => WriteType::Numeric(*s),
            DataType::Binary => WriteType::Bytea,
            DataType::Date32 => WriteType::Date,
            DataType::Time64(TimeUnit::Microsecond) => WriteType::Time,
            DataType::Timestamp(TimeUnit::Microsecond, None) => WriteType::Timestamp,
            DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => WriteType::TimestampTz,
            DataType::Interval(IntervalUnit::MonthDayNano) => WriteType::Interval,
            DataType::FixedSizeBinary(16) => WriteType::Uuid,
            other => {
                return Err(ConnectorError::DataType {
                    column: column.name.clone(),
                    reason: format!("writing values of type {other} is not supported"),
                });
            }
        })
    }

    fn placeholder(self, n: usize) -> String {
        let cast = match self {
            WriteType::Text => return format!("${n}"),
            WriteType::Bool => "bool",
            WriteType::Int2 => "int2",
            WriteType::Int4 => "int4",
            WriteType::Int8 => "int8",
            WriteType::Float4 => "float4",
            WriteType::Float8 => "float8",
            WriteType::Numeric(_) => "numeric",
            WriteType::Bytea => "bytea",
            WriteType::Date => "date",
            WriteType::Time => "time",
            WriteType::Timestamp => "timestamp",
            WriteType::TimestampTz => "timestamptz",
            WriteType::Interval => "interval",
            WriteType::Uuid => "uuid",
        };
        format!("${n}::pg_catalog.{cast}")
    }
}

/// One bound value, already in its wire form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bound {
    Null,
    Binary(Vec<u8>),
    Text(String),
}

impl ToSql for Bound {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Bound::Null => return Ok(IsNull::Yes),
            Bound::Binary(b) => out.put_slice(b),
            Bound::Text(s) => out.put_slice(s.as_bytes()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        match self {
            Bound::Text(_) => Format::Text,
            _ => Format::Binary,
        }
    }

    to_sql_checked!();
}

/// Exact decimal text of an unscaled Decimal128 value.
fn decimal_text(value: i128, scale: i8) -> String {
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    if scale <= 0 {
        return format!("{sign}{digits}{}", "0".repeat(usize::from(scale.unsigned_abs())));
    }
    let s = usize::from(scale.unsigned_abs());
    let padded = format!("{digits:0>width$}", width = s + 1);
    let (int, frac) = padded.split_at(padded.len() - s);
    format!("{sign}{int}.{frac}")
}

/// A column of a batch, bound row by row.
struct Source<'a> {
    column: &'a Column,
    ty: WriteType,
    array: &'a ArrayRef,
}

impl Source<'_> {
    fn bind(&self, row: usize) -> Result<Bound, ConnectorError> {
        let a = self.array;
        if a.is_null(row) {
            return Ok(Bound::Null);
        }
        let wrong = || ConnectorError::DataType {
            column: self.column.name.clone(),
            reason: format!("the batch holds {} where {} was declared", a.data_type(), self.column.data_type),
        };
        let be = |bytes: &[u8]| Bound::Binary(bytes.to_vec());
        Ok(match self.ty {
            WriteType::Bool => Bound::Binary(vec![u8::from(a.as_boolean_opt().ok_or_else(wrong)?.value(row))]),
            WriteType::Int2 => be(&a.as_primitive_opt::<Int16Type>().ok_or_else(wrong)?.value(row).to_be_bytes()),
            WriteType::Int4 => be(&a.as_primitive_opt::<Int32Type>().ok_or_else(wrong)?.value(row).to_be_bytes()),
            WriteType::Int8 => be(&a.as_primitive_opt::<Int64Type>().ok_or_else(wrong)?.value(row).to_be_bytes()),
            WriteType::Float4 => be(&a.as_primitive_opt::<Float32Type>().ok_or_else(wrong)?.value(row).to_be_bytes()),
            WriteType::Float8 => be(&a.as_primitive_opt::<Float64Type>().ok_or_else(wrong)?.value(row).to_be_bytes()),
            WriteType::Text => Bound::Text(a.as_string_opt::<i32>().ok_or_else(wrong)?.value(row).to_string()),
            WriteType::Numeric(scale) => {
                Bound::Text(decimal_text(a.as_primitive_opt::<Decimal128Type>().ok_or_else(wrong)?.value(row), scale))
            }
            WriteType::Bytea => be(a.as_binary_opt::<i32>().ok_or_else(wrong)?.value(row)),
            WriteType::Date => {
                let days = a.as_primitive_opt::<Date32Type>().ok_or_else(wrong)?.value(row);
                be(&days.checked_sub(PG_EPOCH_DAYS).ok_or_else(wrong)?.to_be_bytes())
            }
            WriteType::Time => {
                be(&a.as_primitive_opt::<Time64MicrosecondType>().ok_or_else(wrong)?.value(row).to_be_bytes())
            }
            WriteType::Timestamp | WriteType::TimestampTz => {
                let micros = a.as_primitive_opt::<TimestampMicrosecondType>().ok_or_else(wrong)?.value(row);
                be(&micros.checked_sub(PG_EPOCH_MICROS).ok_or_else(wrong)?.to_be_bytes())
            }
            WriteType::Interval => {
                let v = a.as_primitive_opt::<IntervalMonthDayNanoType>().ok_or_else(wrong)?.value(row);
                if v.nanoseconds % 1000 != 0 {
                    return Err(ConnectorError::DataType {
                        column: self.column.name.clone(),
                        reason: "interval with sub-microsecond precision".into(),
                    });
                }
                let mut out = Vec::with_capacity(16);
                out.extend_from_slice(&(v.nanoseconds / 1000).to_be_bytes());
                out.extend_from_slice(&v.days.to_be_bytes());
                out.extend_from_slice(&v.months.to_be_bytes());
                Bound::Binary(out)
            }
            WriteType::Uuid => {
                let value = a.as_fixed_size_binary_opt().ok_or_else(wrong)?.value(row);
                if value.len() != 16 {
                    return Err(wrong());
                }
                be(value)
            }
        })
    }
}

/// A remote statement with its rows of parameters.
#[derive(Debug)]
pub(crate) struct WriteStatement {
    pub sql: String,
    /// One parameter list per execution (INSERT: one per chunk of rows; UPDATE/DELETE: one per
    /// row id).
    pub executions: Vec<Vec<Bound>>,
    /// The declared columns of the RETURNING list.
    pub returning: Vec<Column>,
}

impl TableDef {
    fn target(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }

    fn returning(&self, names: &[String]) -> Result<(String, Vec<Column>), ConnectorError> {
        let columns = names.iter().map(|n| self.column(n).cloned()).collect::<Result<Vec<_>, _>>()?;
        if columns.is_empty() {
            return Ok((String::new(), columns));
        }
        let list: Vec<String> = columns.iter().map(|c| quote_ident(&c.remote)).collect();
        Ok((format!(" RETURNING {}", list.join(", ")), columns))
    }

    /// The batch's columns, as declared, each with its binding.
    fn sources<'a>(&'a self, batch: &'a RecordBatch) -> Result<Vec<Source<'a>>, ConnectorError> {
        let schema = batch.schema_ref().clone();
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let column = self.column(field.name())?;
                Ok(Source { column, ty: WriteType::for_column(column)?, array: batch.column(i) })
            })
            .collect()
    }

    /// `INSERT INTO t (cols) VALUES (...), (...) RETURNING ...`, in chunks. Only the batch's
    /// columns are listed, so the remote defaults fill the others.
    pub(crate) fn insert(
        &self,
        batch: &RecordBatch,
        returning: &[String],
        batch_size: usize,
    ) -> Result<Vec<WriteStatement>, ConnectorError> {
        let sources = self.sources(batch)?;
        let (returning_sql, returning) = self.returning(returning)?;
        let rows = batch.num_rows();
        if sources.is_empty() {
            let sql = format!("INSERT INTO {} DEFAULT VALUES{returning_sql}", self.target());
            return Ok(vec![WriteStatement { sql, executions: vec![Vec::new(); rows], returning }]);
        }
        let per_statement = batch_size.min(MAX_PARAMS / sources.len()).max(1);
        let list: Vec<String> = sources.iter().map(|s| quote_ident(&s.column.remote)).collect();
        let head = format!("INSERT INTO {} ({}) VALUES ", self.target(), list.join(", "));
        let mut statements: Vec<WriteStatement> = Vec::new();
        let mut start = 0;
        while start < rows {
            let n = per_statement.min(rows - start);
            let mut params = Vec::with_capacity(n * sources.len());
            for row in start..start + n {
                for source in &sources {
                    params.push(source.bind(row)?);
                }
            }
            // Statements of the same row count share their text, so the last, shorter chunk
            // is the only other one.
            match statements.last_mut() {
                Some(last) if last.executions.first().is_some_and(|p| p.len() == params.len()) => {
                    last.executions.push(params)
                }
                _ => {
                    let mut sql = head.clone();
                    for r in 0..n {
                        let values: Vec<String> = sources
                            .iter()
                            .enumerate()
                            .map(|(c, s)| s.ty.placeholder(r * sources.len() + c + 1))
                            .collect();
                        sql.push_str(&format!("{}({})", if r == 0 { "" } else { ", " }, values.join(", ")));
                    }
                    sql.push_str(&returning_sql);
                    statements.push(WriteStatement { sql, executions: vec![params], returning: returning.clone() });
                }
            }
            start += n;
        }
        Ok(statements)
    }

    /// `UPDATE t SET a = $1, ... WHERE key = $n RETURNING ...`, once per row.
    pub(crate) fn update(
        &self,
        key: &str,
        batch: &RecordBatch,
        returning: &[String],
    ) -> Result<WriteStatement, ConnectorError> {
        let sources = self.sources(batch)?;
        let (returning_sql, returning) = self.returning(returning)?;
        let key_at = sources.iter().position(|s| s.column.name == key).ok_or_else(|| missing_key_column(key))?;
        let sets: Vec<&Source<'_>> = sources.iter().filter(|s| s.column.name != key).collect();
        if sets.is_empty() {
            return Err(ConnectorError::Internal("UPDATE without assigned columns".into()));
        }
        let assignments: Vec<String> = sets
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{} = {}", quote_ident(&s.column.remote), s.ty.placeholder(i + 1)))
            .collect();
        let key_source = &sources[key_at];
        let sql = format!(
            "UPDATE {} SET {} WHERE {} = {}{returning_sql}",
            self.target(),
            assignments.join(", "),
            quote_ident(&key_source.column.remote),
            key_source.ty.placeholder(sets.len() + 1)
        );
        let mut executions = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let mut params = sets.iter().map(|s| s.bind(row)).collect::<Result<Vec<_>, _>>()?;
            params.push(key_bound(key_source, row)?);
            executions.push(params);
        }
        Ok(WriteStatement { sql, executions, returning })
    }

    /// `DELETE FROM t WHERE key = $1 RETURNING ...`, once per row.
    pub(crate) fn delete(
        &self,
        key: &str,
        batch: &RecordBatch,
        returning: &[String],
    ) -> Result<WriteStatement, ConnectorError> {
        let sources = self.sources(batch)?;
        let (returning_sql, returning) = self.returning(returning)?;
        let key_source = sources.iter().find(|s| s.column.name == key).ok_or_else(|| missing_key_column(key))?;
        let sql = format!(
            "DELETE FROM {} WHERE {} = {}{returning_sql}",
            self.target(),
            quote_ident(&key_source.column.remote),
            key_source.ty.placeholder(1)
        );
        let executions =
            (0..batch.num_rows()).map(|row| Ok(vec![key_bound(key_source, row)?])).collect::<Result<_, _>>()?;
        Ok(WriteStatement { sql, executions, returning })
    }
}

fn missing_key_column(key: &str) -> ConnectorError {
    ConnectorError::Internal(format!("the row-id column \"{key}\" is not in the batch"))
}

/// A row id must not be NULL: `key = NULL` would silently match nothing.
fn key_bound(source: &Source<'_>, row: usize) -> Result<Bound, ConnectorError> {
    match source.bind(row)? {
        Bound::Null => Err(ConnectorError::DataType {
            column: source.column.name.clone(),
            reason: "the row-id column is NULL".into(),
        }),
        bound => Ok(bound),
    }
}

/// Runs the statements on `client`; the caller has opened a transaction if there is more than
/// one execution, so a failure leaves nothing behind.
async fn run_on(
    client: &Client,
    statements: &[WriteStatement],
    errors: &Errors,
) -> Result<WriteResult, ConnectorError> {
    let mut rows_affected = 0u64;
    let mut returned = None;
    for statement in statements {
        let prepared = client.prepare(&statement.sql).await.map_err(|e| errors.remote(&e))?;
        if statement.returning.is_empty() {
            for chunk in statement.executions.chunks(PIPELINE_DEPTH) {
                let counts = try_join_all(chunk.iter().map(|params| client.execute_raw(&prepared, params.iter())))
                    .await
                    .map_err(|e| errors.remote(&e))?;
                rows_affected += counts.iter().sum::<u64>();
            }
            continue;
        }
        if returned.is_none() {
            returned = Some((decoders(&statement.returning, &prepared)?, schema_of(&statement.returning)));
        }
        let Some((decoders_out, _)) = returned.as_mut() else { continue };
        for chunk in statement.executions.chunks(PIPELINE_DEPTH) {
            let results = try_join_all(chunk.iter().map(|params| async {
                client.query_raw(&prepared, params.iter()).await?.try_collect::<Vec<Row>>().await
            }))
            .await
            .map_err(|e| errors.remote(&e))?;
            for row in results.iter().flatten() {
                append_row(decoders_out, row, errors)?;
                rows_affected += 1;
            }
        }
    }
    let returning = match returned {
        Some((mut d, schema)) => Some(finish_batch(&mut d, &schema, usize::try_from(rows_affected).unwrap_or(0))?),
        None => None,
    };
    Ok(WriteResult { rows_affected, returning })
}

/// Runs a write on the session's connection for `key`: inside the client's transaction on the
/// pinned connection, otherwise on a pooled one in a transaction of its own.
pub(crate) async fn run(
    session: &Session,
    key: &crate::conn::ConnKey,
    errors: &Errors,
    statements: Vec<WriteStatement>,
    empty_returning: Option<Vec<Column>>,
    cancel: &CancellationToken,
    deadline: Option<Instant>,
) -> Result<WriteResult, ConnectorError> {
    let mut result = match session.lease(key, errors, cancel, deadline).await? {
        Lease::Own(conn) => run_own(session, key, *conn, errors, &statements, cancel, deadline).await?,
        Lease::Pinned(pinned) => {
            let slot = pinned.lock().await;
            let x = slot.as_ref().ok_or_else(|| ConnectorError::Internal("the remote transaction ended".into()))?;
            let work = run_on(&x.conn.client, &statements, errors);
            tokio::pin!(work);
            match watched(cancel, deadline, &mut work).await {
                Ok(out) => out?,
                Err(stopped) => {
                    let token = x.conn.client.cancel_token();
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        crate::tls::cancel(&token, x.conn.tls()),
                    )
                    .await;
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut work).await;
                    return Err(stopped);
                }
            }
        }
    };
    if result.returning.is_none()
        && let Some(columns) = empty_returning
        && !columns.is_empty()
    {
        result.returning = Some(RecordBatch::new_empty(schema_of(&columns)));
    }
    Ok(result)
}

async fn run_own(
    session: &Session,
    key: &crate::conn::ConnKey,
    conn: RemoteConn,
    errors: &Errors,
    statements: &[WriteStatement],
    cancel: &CancellationToken,
    deadline: Option<Instant>,
) -> Result<WriteResult, ConnectorError> {
    let several = statements.iter().map(|s| s.executions.len()).sum::<usize>() > 1;
    let work = async {
        if several {
            conn.client.batch_execute("START TRANSACTION").await.map_err(|e| errors.remote(&e))?;
        }
        let out = run_on(&conn.client, statements, errors).await;
        if several {
            if out.is_ok() {
                conn.client.batch_execute("COMMIT").await.map_err(|e| errors.remote(&e))?;
            } else {
                // The statement's own error is the one to report.
                let _ = conn.client.batch_execute("ROLLBACK").await;
            }
        }
        out
    };
    match watched(cancel, deadline, work).await {
        Ok(out) => {
            if !conn.client.is_closed() {
                session.release(key.clone(), conn);
            }
            out
        }
        Err(stopped) => {
            conn.kill().await;
            Err(stopped)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Decimal128Array, Int32Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn def() -> TableDef {
        let col = |name: &str, remote: &str, data_type| Column {
            name: name.into(),
            remote: remote.into(),
            data_type,
            nullable: true,
        };
        TableDef {
            schema: "s".into(),
            table: "T\"x".into(),
            columns: vec![
                col("id", "Id", DataType::Int64),
                col("name", "name", DataType::Utf8),
                col("amount", "amount", DataType::Decimal128(12, 2)),
            ],
            same_collation: false,
        }
    }

    fn batch(n: i64) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Decimal128(12, 2), true),
        ]);
        let ids: Vec<i64> = (1..=n).collect();
        let names: Vec<Option<String>> = (1..=n).map(|i| (i % 2 == 0).then(|| format!("n'{i}"))).collect();
        let amounts = Decimal128Array::from((1..=n).map(|i| i128::from(i) * -105).collect::<Vec<_>>())
            .with_precision_and_scale(12, 2)
            .expect("decimal");
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names)), Arc::new(amounts)],
        )
        .expect("batch")
    }

    #[test]
    fn decimals_print_exactly() {
        assert_eq!(decimal_text(12345, 2), "123.45");
        assert_eq!(decimal_text(-5, 3), "-0.005");
        assert_eq!(decimal_text(0, 2), "0.00");
        assert_eq!(decimal_text(7, 0), "7");
        assert_eq!(decimal_text(-7, -2), "-700");
        assert_eq!(decimal_text(i128::MAX, 10).replace('.', ""), i128::MAX.to_string());
    }

    #[test]
    fn inserts_are_chunked_multi_row_statements_with_typed_placeholders() {
        let statements = def().insert(&batch(5), &["id".into()], 2).expect("insert");
        assert_eq!(statements.len(), 2);
        assert_eq!(
            statements[0].sql,
            "INSERT INTO \"s\".\"T\"\"x\" (\"Id\", \"name\", \"amount\") VALUES ($1::pg_catalog.int8, $2, \
             $3::pg_catalog.numeric), ($4::pg_catalog.int8, $5, $6::pg_catalog.numeric) RETURNING \"Id\""
        );
        assert_eq!(statements[0].executions.len(), 2);
        assert_eq!(statements[1].executions.len(), 1);
        assert_eq!(statements[1].executions[0].len(), 3);
        let first = &statements[0].executions[0];
        assert_eq!(first[0], Bound::Binary(1i64.to_be_bytes().to_vec()));
        assert_eq!(first[1], Bound::Null);
        assert_eq!(first[2], Bound::Text("-1.05".into()));
        assert_eq!(statements[0].executions[1][4], Bound::Text("n'4".into()));
        assert!(!statements.iter().any(|s| s.sql.contains("n'")));
    }

    #[test]
    fn updates_and_deletes_are_keyed_and_refuse_null_keys() {
        let u = def().update("id", &batch(2), &[]).expect("update");
        assert_eq!(
            u.sql,
            "UPDATE \"s\".\"T\"\"x\" SET \"name\" = $1, \"amount\" = $2::pg_catalog.numeric WHERE \"Id\" = \
             $3::pg_catalog.int8"
        );
        assert_eq!(u.executions.len(), 2);
        let d = def().delete("id", &batch(1), &["name".into(), "amount".into()]).expect("delete");
        assert_eq!(
            d.sql,
            "DELETE FROM \"s\".\"T\"\"x\" WHERE \"Id\" = $1::pg_catalog.int8 RETURNING \"name\", \"amount\""
        );
        let nulls = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from(vec![None, Some(1)]))],
        )
        .expect("batch");
        let e = def().delete("id", &nulls, &[]).expect_err("null key");
        assert_eq!(e.sqlstate(), "HV004");
        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, true)])),
            vec![Arc::new(Int32Array::from(vec![1]))],
        )
        .expect("batch");
        assert_eq!(def().delete("id", &wrong, &[]).expect_err("wrong type").sqlstate(), "HV004");
    }
}
