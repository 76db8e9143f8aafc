//! Writes. INSERT sends the batch as RowBinary (`INSERT INTO t (cols) FORMAT RowBinary`), each
//! value encoded for the remote column's type with range checks, so nothing is parsed from text
//! on the server. UPDATE and DELETE are `ALTER TABLE` mutations keyed by the `key` column,
//! waited for (`mutations_sync` where the server has it, else polling `system.mutations` until
//! the deadline). ClickHouse has no transactions: each request stands on its own.

use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use futures_util::StreamExt;
use pgfed_connector_sdk::{ConnectorError, Operator, Qual, QualValue, ScanContext, ScanRequest, Value, WriteResult};

use crate::ClickHouseTable;
use crate::decode::{RowDecoder, Step, decimal_text};
use crate::sql::{Column, date_text, float_literal, quote_ident, quote_str};
use crate::types::ChType;

/// The most row ids in one mutation.
const MUTATION_ROWS: usize = 1000;
/// Without a statement deadline, how long pgfed waits for a mutation.
const MUTATION_WAIT: Duration = Duration::from_secs(300);

/// One Arrow value, as the encoders need it.
#[derive(Debug, Clone)]
enum Val<'a> {
    Null,
    Int(i128),
    Float(f64),
    Dec(i128, i8),
    Text(&'a str),
    Bytes(&'a [u8]),
    Date(i32),
    /// Microseconds; `true` for a zoned (timestamptz) value.
    Ts(i64, bool),
    Uuid(&'a [u8]),
    Bool(bool),
    List(ArrayRef),
}

fn val(a: &dyn Array, i: usize) -> Result<Val<'_>, String> {
    if a.is_null(i) {
        return Ok(Val::Null);
    }
    Ok(match a.data_type() {
        DataType::Boolean => Val::Bool(a.as_boolean().value(i)),
        DataType::Int16 => Val::Int(a.as_primitive::<Int16Type>().value(i).into()),
        DataType::Int32 => Val::Int(a.as_primitive::<Int32Type>().value(i).into()),
        DataType::Int64 => Val::Int(a.as_primitive::<Int64Type>().value(i).into()),
        DataType::Float32 => Val::Float(a.as_primitive::<Float32Type>().value(i).into()),
        DataType::Float64 => Val::Float(a.as_primitive::<Float64Type>().value(i)),
        DataType::Decimal128(_, s) => Val::Dec(a.as_primitive::<Decimal128Type>().value(i), *s),
        DataType::Utf8 => Val::Text(a.as_string::<i32>().value(i)),
        DataType::Binary => Val::Bytes(a.as_binary::<i32>().value(i)),
        DataType::Date32 => Val::Date(a.as_primitive::<Date32Type>().value(i)),
        DataType::Timestamp(_, tz) => Val::Ts(a.as_primitive::<TimestampMicrosecondType>().value(i), tz.is_some()),
        DataType::FixedSizeBinary(16) => Val::Uuid(a.as_fixed_size_binary().value(i)),
        DataType::List(_) => Val::List(a.as_list::<i32>().value(i)),
        other => return Err(format!("values of type {other} cannot be written")),
    })
}

fn pow10(n: u32) -> i128 {
    10i128.pow(n)
}

/// Rescales an unscaled decimal, rounding half away from zero (as Postgres assigns numerics).
fn rescale(v: i128, from: i32, to: i32) -> Option<i128> {
    if to >= from {
        v.checked_mul(pow10(u32::try_from(to - from).ok()?))
    } else {
        let d = pow10(u32::try_from(from - to).ok()?);
        let (q, r) = (v / d, v % d);
        Some(if r.abs() * 2 >= d { q + v.signum() } else { q })
    }
}

/// Whole seconds of a timestamp for a DateTime column: rounded to the second as a cast to
/// `timestamp(0)` rounds; a wall-clock value is read in the column's zone.
fn datetime_secs(us: i64, zoned: bool, col: &Column) -> Result<u32, String> {
    let secs = rescale(i128::from(us), 6, 0).ok_or("timestamp out of range")?;
    let secs = i64::try_from(secs).map_err(|_| "timestamp out of range")?;
    let secs = if zoned || crate::sql::is_utc(&col.tz) {
        secs
    } else {
        let zone = jiff::tz::TimeZone::get(&col.tz).map_err(|e| e.to_string())?;
        let civil =
            jiff::Timestamp::from_second(secs).map_err(|e| e.to_string())?.to_zoned(jiff::tz::TimeZone::UTC).datetime();
        zone.to_ambiguous_zoned(civil).compatible().map_err(|e| e.to_string())?.timestamp().as_second()
    };
    u32::try_from(secs).map_err(|_| format!("timestamp out of range for ClickHouse {}", col.ch.name()))
}

fn int_of(v: &Val<'_>) -> Result<i128, String> {
    match v {
        Val::Int(i) => Ok(*i),
        Val::Bool(b) => Ok(i128::from(*b)),
        Val::Dec(d, s) => {
            let p = pow10(u32::try_from(*s).unwrap_or(0));
            if d % p != 0 {
                return Err("a fractional value cannot be written to an integer column".into());
            }
            Ok(d / p)
        }
        other => Err(format!("cannot write {other:?} to an integer column")),
    }
}

fn checked_int(ch: &ChType, i: i128) -> Result<(), String> {
    let ChType::Int { bytes, signed } = ch else { return Ok(()) };
    let bits = u32::from(*bytes) * 8;
    let (min, max) =
        if *signed { (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1) } else { (0, (1i128 << bits) - 1) };
    if i < min || i > max { Err(format!("value {i} out of range for ClickHouse {}", ch.name())) } else { Ok(()) }
}

fn enum_code(ch: &ChType, s: &str) -> Result<i16, String> {
    let ChType::Enum { values, .. } = ch else { return Err("not an enum".into()) };
    values
        .iter()
        .find(|(n, _)| n == s)
        .map(|(_, c)| *c)
        .ok_or_else(|| format!("\"{s}\" is not a value of {}", ch.name()))
}

fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends one value in RowBinary for `ch`.
fn encode(out: &mut Vec<u8>, ch: &ChType, v: &Val<'_>, col: &Column) -> Result<(), String> {
    match (ch, v) {
        (ChType::Nullable(_), Val::Null) => {
            out.push(1);
            return Ok(());
        }
        (ChType::Nullable(inner), v) => {
            out.push(0);
            return encode(out, inner, v, col);
        }
        (ChType::LowCardinality(inner), v) => return encode(out, inner, v, col),
        (_, Val::Null) => return Err("null value in a ClickHouse column that is not Nullable".into()),
        _ => {}
    }
    match ch {
        ChType::Int { bytes, .. } => {
            let i = int_of(v)?;
            checked_int(ch, i)?;
            out.extend_from_slice(&i.to_le_bytes()[..usize::from(*bytes)]);
        }
        ChType::Bool => out.push(u8::from(int_of(v)? != 0)),
        ChType::Float32 => match v {
            Val::Float(f) => out.extend_from_slice(&(*f as f32).to_le_bytes()),
            _ => return Err("expected a float".into()),
        },
        ChType::Float64 => match v {
            Val::Float(f) => out.extend_from_slice(&f.to_le_bytes()),
            _ => return Err("expected a float".into()),
        },
        ChType::Decimal { precision, scale } => {
            let (d, s) = match v {
                Val::Dec(d, s) => (*d, i32::from(*s)),
                other => (int_of(other)?, 0),
            };
            let d = rescale(d, s, i32::from(*scale)).ok_or("numeric field overflow")?;
            if d.abs() >= pow10(u32::from(*precision)) {
                return Err(format!("numeric field overflow for ClickHouse {}", ch.name()));
            }
            match precision {
                0..=9 => out.extend_from_slice(&(d as i32).to_le_bytes()),
                10..=18 => out.extend_from_slice(&(d as i64).to_le_bytes()),
                19..=38 => out.extend_from_slice(&d.to_le_bytes()),
                _ => return Err(format!("{} cannot be written", ch.name())),
            }
        }
        ChType::String => {
            let b = match v {
                Val::Text(s) => s.as_bytes(),
                Val::Bytes(b) => b,
                _ => return Err("expected text".into()),
            };
            write_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        ChType::FixedString(n) => {
            let b = match v {
                Val::Text(s) => s.as_bytes(),
                Val::Bytes(b) => b,
                _ => return Err("expected text".into()),
            };
            if b.len() > *n {
                return Err(format!("value too long for ClickHouse FixedString({n})"));
            }
            out.extend_from_slice(b);
            out.extend(std::iter::repeat_n(0u8, n - b.len()));
        }
        ChType::Date | ChType::Date32 => {
            let Val::Date(d) = v else { return Err("expected a date".into()) };
            if matches!(ch, ChType::Date) {
                let d = u16::try_from(*d)
                    .map_err(|_| "date out of range for ClickHouse Date (1970-01-01 to 2149-06-06)")?;
                out.extend_from_slice(&d.to_le_bytes());
            } else {
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
        ChType::DateTime(_) => {
            let Val::Ts(us, zoned) = v else { return Err("expected a timestamp".into()) };
            out.extend_from_slice(&datetime_secs(*us, *zoned, col)?.to_le_bytes());
        }
        ChType::Uuid => {
            let u = match v {
                Val::Uuid(u) => *u,
                _ => return Err("expected a uuid".into()),
            };
            for half in [&u[..8], &u[8..]] {
                out.extend(half.iter().rev());
            }
        }
        ChType::Enum { wide, .. } => {
            let Val::Text(s) = v else { return Err("expected text".into()) };
            let code = enum_code(ch, s)?;
            if *wide {
                out.extend_from_slice(&code.to_le_bytes());
            } else {
                out.push(i8::try_from(code).map_err(|_| "enum value out of range")? as u8);
            }
        }
        ChType::Ipv4 => {
            let Val::Text(s) = v else { return Err("expected text".into()) };
            let ip: std::net::Ipv4Addr = s.parse().map_err(|_| format!("invalid IPv4 address \"{s}\""))?;
            out.extend_from_slice(&u32::from(ip).to_le_bytes());
        }
        ChType::Ipv6 => {
            let Val::Text(s) = v else { return Err("expected text".into()) };
            let ip: std::net::IpAddr = s.parse().map_err(|_| format!("invalid IP address \"{s}\""))?;
            let v6 = match ip {
                std::net::IpAddr::V4(a) => a.to_ipv6_mapped(),
                std::net::IpAddr::V6(a) => a,
            };
            out.extend_from_slice(&v6.octets());
        }
        ChType::Array(elem) => {
            let Val::List(items) = v else { return Err("expected an array".into()) };
            write_varint(out, items.len() as u64);
            for i in 0..items.len() {
                encode(out, elem, &val(items.as_ref(), i)?, col)?;
            }
        }
        other => return Err(format!("values of ClickHouse type {} cannot be written by pgfed", other.name())),
    }
    Ok(())
}

/// One value as a ClickHouse literal of the column's type, for mutations.
fn literal(ch: &ChType, v: &Val<'_>, col: &Column) -> Result<String, String> {
    let base = ch.base();
    let lit = match (base, v) {
        (_, Val::Null) if ch.is_nullable() => "NULL".to_string(),
        (_, Val::Null) => return Err("null value in a ClickHouse column that is not Nullable".into()),
        (ChType::Int { .. } | ChType::Bool, v) => {
            let i = int_of(v)?;
            checked_int(base, i)?;
            i.to_string()
        }
        (ChType::Float32 | ChType::Float64, Val::Float(f)) => match float_literal(*f) {
            Some(l) => l,
            None => format!(
                "reinterpretAsFloat64(unhex('{}'))",
                f.to_le_bytes().iter().map(|b| format!("{b:02X}")).collect::<String>()
            ),
        },
        (ChType::Decimal { precision, scale }, v) => {
            let (d, s) = match v {
                Val::Dec(d, s) => (*d, i32::from(*s)),
                other => (int_of(other)?, 0),
            };
            let d = rescale(d, s, i32::from(*scale)).ok_or("numeric field overflow")?;
            if d.abs() >= pow10(u32::from(*precision)) {
                return Err(format!("numeric field overflow for ClickHouse {}", base.name()));
            }
            format!("toDecimal128({}, {scale})", quote_str(&decimal_text(d, *scale)))
        }
        (ChType::String | ChType::FixedString(_), Val::Text(s)) => quote_str(s),
        (ChType::String | ChType::FixedString(_), Val::Bytes(b)) => {
            format!("unhex('{}')", b.iter().map(|x| format!("{x:02X}")).collect::<String>())
        }
        (ChType::Enum { .. }, Val::Text(s)) => {
            enum_code(base, s)?;
            quote_str(s)
        }
        (ChType::Date | ChType::Date32, Val::Date(d)) => {
            let mut probe = Vec::new();
            encode(&mut probe, base, v, col)?;
            format!("toDate({})", quote_str(&date_text(*d).ok_or("date out of range")?))
        }
        (ChType::DateTime(_), Val::Ts(us, zoned)) => format!("toDateTime({})", datetime_secs(*us, *zoned, col)?),
        (ChType::Uuid, Val::Uuid(u)) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(u);
            format!("toUUID({})", quote_str(&crate::decode::uuid_text(&a)))
        }
        (other, _) => return Err(format!("values of ClickHouse type {} cannot be written by pgfed", other.name())),
    };
    Ok(format!("CAST({lit} AS {})", ch.name()))
}

fn data_error(col: &Column, reason: String) -> ConnectorError {
    ConnectorError::DataType { column: col.name.clone(), reason }
}

pub(crate) async fn insert(
    table: &ClickHouseTable,
    rows: RecordBatch,
    returning: &[String],
    ctx: &ScanContext,
) -> Result<WriteResult, ConnectorError> {
    if rows.num_columns() == 0 {
        return Err(ConnectorError::NotSupported("INSERT without columns (DEFAULT VALUES) into ClickHouse".into()));
    }
    let columns: Vec<&Column> =
        rows.schema().fields().iter().map(|f| table.def.column(f.name())).collect::<Result<_, _>>()?;
    if !returning.is_empty() && returning.iter().any(|r| !columns.iter().any(|c| &c.name == r)) {
        return Err(ConnectorError::NotSupported(
            "RETURNING on ClickHouse with columns left to their remote defaults".into(),
        ));
    }
    let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.remote)).collect();
    let sql = format!("INSERT INTO {} ({}) FORMAT RowBinary", table.def.relation(), names.join(", "));
    // RETURNING: the encoded rows decoded back, so they are what ClickHouse stores.
    let mut echo = Vec::new();
    let mut body = Vec::new();
    let mut start = 0;
    while start < rows.num_rows() {
        let end = (start + table.batch_size).min(rows.num_rows());
        body.clear();
        for i in start..end {
            if !returning.is_empty() {
                echo.push(1u8);
            }
            let row_start = body.len();
            for (c, array) in columns.iter().zip(rows.columns()) {
                let v = val(array.as_ref(), i).map_err(|e| data_error(c, e))?;
                encode(&mut body, &c.ch, &v, c).map_err(|e| data_error(c, e))?;
            }
            if !returning.is_empty() {
                echo.extend_from_slice(&body[row_start..]);
            }
        }
        let id = crate::client::query_id();
        let mut request = table.conn.client().insert_formatted_with(sql.clone()).with_setting("query_id", id.clone());
        let payload = Bytes::from(std::mem::take(&mut body));
        let send = async {
            request.send(payload).await.map_err(|e| table.conn.error(e))?;
            request.end().await.map_err(|e| table.conn.error(e))
        };
        table.conn.watch(&id, ctx, send).await?;
        start = end;
    }
    let returned = if returning.is_empty() {
        None
    } else {
        let mut decoder =
            RowDecoder::new(rows.schema(), columns.iter().map(|c| c.ch.clone()).collect(), &table.info.timezone)
                .map_err(|e| ConnectorError::DataType { column: e.column, reason: e.reason })?;
        match decoder.decode(&echo, usize::MAX) {
            Ok(Step::Rows(n)) if n == echo.len() => {}
            _ => return Err(ConnectorError::Internal("RETURNING rows could not be read back".into())),
        }
        let batch = decoder.finish().map_err(|e| ConnectorError::DataType { column: e.column, reason: e.reason })?;
        let idx: Vec<usize> = returning.iter().filter_map(|r| batch.schema().index_of(r).ok()).collect();
        Some(batch.project(&idx).map_err(|e| ConnectorError::Internal(e.to_string()))?)
    };
    Ok(WriteResult { rows_affected: rows.num_rows() as u64, returning: returned })
}

/// The row-id column and the ids of `rows` as qual values (a NULL id is an error).
fn row_ids(table: &ClickHouseTable, rows: &RecordBatch) -> Result<(Column, Vec<Value>), ConnectorError> {
    let key =
        table.key.as_deref().ok_or(ConnectorError::MissingOption { name: "key".into(), level: "foreign table" })?;
    let col = table.def.column(key)?.clone();
    let array = rows.column(0);
    let mut ids = Vec::with_capacity(rows.num_rows());
    for i in 0..rows.num_rows() {
        let v = match val(array.as_ref(), i).map_err(|e| data_error(&col, e))? {
            Val::Null => return Err(data_error(&col, "NULL row id".into())),
            Val::Int(n) => Value::Int(i64::try_from(n).map_err(|_| data_error(&col, "row id out of range".into()))?),
            Val::Dec(d, s) => Value::Numeric(decimal_text(d, u8::try_from(s).unwrap_or(0))),
            Val::Text(t) => Value::Text(t.to_string()),
            Val::Date(d) => Value::Date(d),
            Val::Ts(t, true) => Value::TimestampTz(t),
            Val::Ts(t, false) => Value::Timestamp(t),
            Val::Uuid(u) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(u);
                Value::Uuid(a)
            }
            other => return Err(data_error(&col, format!("{other:?} cannot identify a row"))),
        };
        ids.push(v);
    }
    Ok((col, ids))
}

/// `key IN (ids)` through the qual translator (exact, typed literals).
fn id_condition(col: &Column, ids: &[Value]) -> Result<String, ConnectorError> {
    col.qual_sql(&Qual { column: col.name.clone(), operator: Operator::Eq, value: QualValue::Any(ids.to_vec()) })
        .ok_or_else(|| {
            ConnectorError::NotSupported(format!("row ids of column \"{}\" in a ClickHouse mutation", col.name))
        })
}

/// How many rows the ids match (ALTER reports no count).
async fn count(table: &ClickHouseTable, cond: &str, ctx: &ScanContext) -> Result<u64, ConnectorError> {
    let sql = format!("SELECT count() FROM {} WHERE {cond}", table.def.relation());
    let text = table.conn.text(&sql, ctx.deadline).await?;
    text.trim().parse().map_err(|_| ConnectorError::Internal("unreadable count".into()))
}

/// The rows of these ids, with the asked columns (RETURNING).
async fn select(
    table: &ClickHouseTable,
    col: &Column,
    ids: &[Value],
    returning: &[String],
    ctx: &ScanContext,
) -> Result<Option<RecordBatch>, ConnectorError> {
    if returning.is_empty() {
        return Ok(None);
    }
    let request = ScanRequest {
        columns: returning.to_vec(),
        quals: vec![Qual { column: col.name.clone(), operator: Operator::Eq, value: QualValue::Any(ids.to_vec()) }],
        ..ScanRequest::default()
    };
    let mut stream = table.scan_rows(&request, ctx.clone()).await?;
    let mut batches = Vec::new();
    while let Some(b) = stream.next().await {
        batches.push(b?);
    }
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(
        returning
            .iter()
            .map(|r| table.schema.field_with_name(r).cloned())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConnectorError::Internal(e.to_string()))?,
    ));
    arrow_select_concat(&schema, &batches).map(Some)
}

fn arrow_select_concat(
    schema: &arrow_schema::SchemaRef,
    batches: &[RecordBatch],
) -> Result<RecordBatch, ConnectorError> {
    let mut columns = Vec::new();
    for i in 0..schema.fields().len() {
        let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
        if arrays.is_empty() {
            columns.push(arrow_array::new_empty_array(schema.field(i).data_type()));
        } else {
            columns.push(arrow_select::concat::concat(&arrays).map_err(|e| ConnectorError::Internal(e.to_string()))?);
        }
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| ConnectorError::Internal(e.to_string()))
}

/// Runs a mutation and waits until ClickHouse has applied it.
async fn mutate(table: &ClickHouseTable, sql: &str, ctx: &ScanContext) -> Result<(), ConnectorError> {
    let sync = table.info.has_mutations_sync();
    let sql = if sync { format!("{sql} SETTINGS mutations_sync = 1") } else { sql.to_string() };
    table.conn.execute(&sql, ctx).await?;
    if sync {
        return Ok(());
    }
    // 18.x: poll system.mutations until none of the table's is pending.
    let deadline = ctx.deadline.unwrap_or_else(|| Instant::now() + MUTATION_WAIT);
    let db = match &table.def.database {
        Some(d) => quote_str(d),
        None => "currentDatabase()".into(),
    };
    let probe = format!(
        "SELECT count() FROM system.mutations WHERE database = {db} AND table = {} AND is_done = 0",
        quote_str(&table.def.table)
    );
    let mut wait = Duration::from_millis(20);
    loop {
        if table.conn.text(&probe, Some(deadline)).await?.trim() == "0" {
            return Ok(());
        }
        if ctx.cancel.is_cancelled() {
            return Err(ConnectorError::Cancelled);
        }
        if Instant::now() >= deadline {
            return Err(ConnectorError::TimedOut);
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(500));
    }
}

pub(crate) async fn delete(
    table: &ClickHouseTable,
    rows: RecordBatch,
    returning: &[String],
    ctx: &ScanContext,
) -> Result<WriteResult, ConnectorError> {
    let (col, ids) = row_ids(table, &rows)?;
    let mut affected = 0;
    let mut returned = Vec::new();
    for chunk in ids.chunks(MUTATION_ROWS) {
        let cond = id_condition(&col, chunk)?;
        affected += count(table, &cond, ctx).await?;
        if let Some(b) = select(table, &col, chunk, returning, ctx).await? {
            returned.push(b);
        }
        mutate(table, &format!("ALTER TABLE {} DELETE WHERE {cond}", table.def.relation()), ctx).await?;
    }
    finish(table, affected, returning, returned)
}

pub(crate) async fn update(
    table: &ClickHouseTable,
    rows: RecordBatch,
    returning: &[String],
    ctx: &ScanContext,
) -> Result<WriteResult, ConnectorError> {
    let (col, ids) = row_ids(table, &rows)?;
    let key = quote_ident(&col.remote);
    let assigned: Vec<&Column> =
        rows.schema().fields().iter().skip(1).map(|f| table.def.column(f.name())).collect::<Result<_, _>>()?;
    let mut affected = 0;
    let mut returned = Vec::new();
    for (n, chunk) in ids.chunks(MUTATION_ROWS).enumerate() {
        let base = n * MUTATION_ROWS;
        let cond = id_condition(&col, chunk)?;
        let mut sets = Vec::new();
        for (j, c) in assigned.iter().enumerate() {
            let array = rows.column(j + 1);
            // multiIf(key = id1, v1, key = id2, v2, ..., current value)
            let mut arms = Vec::new();
            for (k, id) in chunk.iter().enumerate() {
                let id_lit = col
                    .qual_sql(&Qual {
                        column: col.name.clone(),
                        operator: Operator::Eq,
                        value: QualValue::One(id.clone()),
                    })
                    .ok_or_else(|| ConnectorError::NotSupported("this row id in a mutation".into()))?;
                let v = val(array.as_ref(), base + k).map_err(|e| data_error(c, e))?;
                arms.push(format!("{id_lit}, {}", literal(&c.ch, &v, c).map_err(|e| data_error(c, e))?));
            }
            sets.push(format!("{} = multiIf({}, {})", quote_ident(&c.remote), arms.join(", "), quote_ident(&c.remote)));
        }
        let _ = &key;
        affected += count(table, &cond, ctx).await?;
        if !sets.is_empty() {
            mutate(
                table,
                &format!("ALTER TABLE {} UPDATE {} WHERE {cond}", table.def.relation(), sets.join(", ")),
                ctx,
            )
            .await?;
        }
        if let Some(b) = select(table, &col, chunk, returning, ctx).await? {
            returned.push(b);
        }
    }
    finish(table, affected, returning, returned)
}

fn finish(
    table: &ClickHouseTable,
    affected: u64,
    returning: &[String],
    batches: Vec<RecordBatch>,
) -> Result<WriteResult, ConnectorError> {
    let returning = if returning.is_empty() {
        None
    } else {
        let schema = std::sync::Arc::new(arrow_schema::Schema::new(
            returning
                .iter()
                .map(|r| table.schema.field_with_name(r).cloned())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConnectorError::Internal(e.to_string()))?,
        ));
        Some(arrow_select_concat(&schema, &batches)?)
    };
    Ok(WriteResult { rows_affected: affected, returning })
}
