//! Running the remote SELECT and turning rows into Arrow batches, in one of two ways:
//!
//! - Outside the client's transaction the scan owns a connection: it prepares the query (to
//!   check types before any row), streams rows with `query_raw`, and gives the connection back
//!   to the pool at the end.
//! - Inside it the connection is shared with every other scan and write of the transaction, so
//!   the scan declares a cursor and reads it with `FETCH FORWARD fetch_size`, one round trip per
//!   batch, holding the connection only during each round trip (as postgres_fdw does): two scans
//!   of one statement interleave instead of one waiting for the other's rows to be drained.
//!
//! Cancellation and the deadline end the stream with `Cancelled` or `TimedOut` and cancel the
//! remote query; dropping the stream early does the same (or closes the cursor).

use std::cell::Cell;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_schema::{Field, Schema, SchemaRef};
use futures_util::{StreamExt, TryStreamExt};
use pgfed_connector_sdk::{BatchStream, ConnectorError, ScanContext};
use tokio_postgres::types::Kind;
use tokio_postgres::{Client, Row, RowStream, Statement};
use tokio_util::sync::CancellationToken;

use crate::conn::{ConnKey, Errors, Lease, RemoteConn, Session, watched};
use crate::decode::{Decoder, Raw};
use crate::sql::{Column, RemoteQuery, is_text_type};
use crate::{BATCH_ROWS, tls};

/// Checks the types the server resolved for text placeholders.
pub(crate) fn check_text_params(statement: &Statement, text_params: &[(usize, String)]) -> Result<(), ConnectorError> {
    for (index, column) in text_params {
        let Some(ty) = statement.params().get(*index) else {
            return Err(ConnectorError::Internal(format!("no parameter {index} in the remote statement")));
        };
        let element = match ty.kind() {
            Kind::Array(member) => member,
            _ => ty,
        };
        if !is_text_type(element) {
            return Err(ConnectorError::DataType {
                column: column.clone(),
                reason: format!("remote type {} is not a text type", element.name()),
            });
        }
    }
    Ok(())
}

/// Decoders for the statement's result columns, checked against the declared ones.
pub(crate) fn decoders(columns: &[Column], statement: &Statement) -> Result<Vec<Decoder>, ConnectorError> {
    columns.iter().zip(statement.columns()).map(|(column, remote)| Decoder::new(column, remote.type_())).collect()
}

/// [`decoders`] for a scan or a generated query (`computed`), whose result must have exactly
/// the expected number of columns.
fn query_decoders(query: &RemoteQuery, statement: &Statement) -> Result<Vec<Decoder>, ConnectorError> {
    if !query.computed {
        return decoders(&query.columns, statement);
    }
    if statement.columns().len() != query.columns.len() {
        return Err(ConnectorError::Internal(format!(
            "the generated query returns {} columns, {} were expected",
            statement.columns().len(),
            query.columns.len()
        )));
    }
    query.columns.iter().zip(statement.columns()).map(|(c, remote)| Decoder::computed(c, remote.type_())).collect()
}

pub(crate) fn schema_of(columns: &[Column]) -> SchemaRef {
    let fields: Vec<Field> =
        columns.iter().map(|c| Field::new(c.name.clone(), c.data_type.clone(), c.nullable)).collect();
    Arc::new(Schema::new(fields))
}

/// Appends one row to the decoders.
pub(crate) fn append_row(decoders: &mut [Decoder], row: &Row, errors: &Errors) -> Result<(), ConnectorError> {
    for (i, decoder) in decoders.iter_mut().enumerate() {
        let raw: Option<Raw<'_>> = row.try_get(i).map_err(|e| errors.remote(&e))?;
        decoder.append(raw.map(|r| r.0))?;
    }
    Ok(())
}

pub(crate) fn finish_batch(
    decoders: &mut [Decoder],
    schema: &SchemaRef,
    rows: usize,
) -> Result<RecordBatch, ConnectorError> {
    let arrays = decoders.iter_mut().map(Decoder::finish).collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), arrays, &options)
        .map_err(|e| ConnectorError::Internal(format!("building a batch: {e}")))
}

pub(crate) async fn scan(
    session: Arc<Session>,
    key: ConnKey,
    errors: Errors,
    query: RemoteQuery,
    fetch_size: u32,
    ctx: ScanContext,
) -> Result<BatchStream, ConnectorError> {
    let (cancel, deadline) = (ctx.cancel.clone(), ctx.deadline);
    match session.lease(&key, &errors, &cancel, deadline).await? {
        Lease::Own(conn) => streamed(session, key, *conn, errors, query, cancel, deadline).await,
        Lease::Pinned(pinned) => cursor(pinned, errors, query, fetch_size, cancel, deadline).await,
    }
}

/// Owns the connection of a streamed scan; unless the query finished, dropping it cancels the
/// remote query and closes the connection. A finished scan gives the connection back.
struct Guard {
    conn: Option<RemoteConn>,
    session: Arc<Session>,
    key: ConnKey,
    /// The connection is idle (no query running): reusable.
    finished: Cell<bool>,
}

impl Guard {
    fn client(&self) -> Result<&Client, ConnectorError> {
        self.conn.as_ref().map(|c| &c.client).ok_or_else(|| ConnectorError::Internal("scan connection gone".into()))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.finished.get() {
                self.session.release(self.key.clone(), conn);
            } else {
                conn.kill_in_background();
            }
        }
    }
}

async fn streamed(
    session: Arc<Session>,
    key: ConnKey,
    conn: RemoteConn,
    errors: Errors,
    query: RemoteQuery,
    cancel: CancellationToken,
    deadline: Option<Instant>,
) -> Result<BatchStream, ConnectorError> {
    let mut conn = conn;
    let mut prepared = watched(&cancel, deadline, conn.client.prepare(&query.sql)).await?;
    if conn.reused && conn.client.is_closed() && prepared.as_ref().is_err_and(|e| e.as_db_error().is_none()) {
        conn = RemoteConn::connect(&key, &errors, &cancel, deadline).await?;
        prepared = watched(&cancel, deadline, conn.client.prepare(&query.sql)).await?;
    }
    let guard = Guard { conn: Some(conn), session, key, finished: Cell::new(false) };
    let client = guard.client()?;
    let statement = match prepared {
        Ok(s) => s,
        Err(e) => {
            // The server answered: the connection is idle again and can be reused.
            guard.finished.set(e.as_db_error().is_some());
            return Err(errors.remote(&e));
        }
    };
    guard.finished.set(true);
    check_text_params(&statement, &query.text_params)?;
    let decoders = query_decoders(&query, &statement)?;
    guard.finished.set(false);
    let rows = watched(&cancel, deadline, client.query_raw(&statement, query.params.iter())).await?.map_err(|e| {
        guard.finished.set(e.as_db_error().is_some());
        errors.remote(&e)
    })?;
    let state = Streamed {
        rows: Box::pin(rows),
        decoders,
        schema: schema_of(&query.columns),
        cancel,
        deadline,
        guard,
        errors,
        done: false,
    };
    Ok(futures_util::stream::unfold(state, |mut scan| async move {
        if scan.done {
            return None;
        }
        match scan.next_batch().await {
            Ok(Some(batch)) => Some((Ok(batch), scan)),
            Ok(None) => None,
            Err(e) => {
                scan.done = true;
                Some((Err(e), scan))
            }
        }
    })
    .boxed())
}

struct Streamed {
    rows: Pin<Box<RowStream>>,
    decoders: Vec<Decoder>,
    schema: SchemaRef,
    cancel: CancellationToken,
    deadline: Option<Instant>,
    guard: Guard,
    errors: Errors,
    /// The rows ended, or an error or cancel ended the scan.
    done: bool,
}

impl Streamed {
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let mut n = 0;
        loop {
            let row = match watched(&self.cancel, self.deadline, self.rows.next()).await {
                Ok(row) => row,
                Err(stopped) => {
                    if let Some(conn) = self.guard.conn.take() {
                        conn.kill().await;
                    }
                    return Err(stopped);
                }
            };
            match row {
                None => {
                    // The row stream must not be polled again after its end.
                    self.guard.finished.set(true);
                    self.done = true;
                    return if n > 0 { finish_batch(&mut self.decoders, &self.schema, n).map(Some) } else { Ok(None) };
                }
                Some(Err(e)) => {
                    self.guard.finished.set(e.as_db_error().is_some());
                    return Err(self.errors.remote(&e));
                }
                Some(Ok(row)) => {
                    append_row(&mut self.decoders, &row, &self.errors)?;
                    n += 1;
                    if n == BATCH_ROWS {
                        return finish_batch(&mut self.decoders, &self.schema, n).map(Some);
                    }
                }
            }
        }
    }
}

type Pinned = Arc<tokio::sync::Mutex<Option<crate::conn::XactConn>>>;

fn released() -> ConnectorError {
    ConnectorError::Internal("the remote transaction ended while a scan was using it".into())
}

/// Runs one request on a pinned connection; on cancel or deadline, sends a cancel request and
/// waits (briefly) for the request to end, so the cancel cannot hit a later one.
async fn pinned_request<'a, T>(
    client: &'a Client,
    tls: &tls::Tls,
    cancel: &CancellationToken,
    deadline: Option<Instant>,
    request: impl std::future::Future<Output = Result<T, tokio_postgres::Error>> + 'a,
) -> Result<Result<T, tokio_postgres::Error>, ConnectorError> {
    tokio::pin!(request);
    match watched(cancel, deadline, &mut request).await {
        Ok(out) => Ok(out),
        Err(stopped) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), tls::cancel(&client.cancel_token(), tls)).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut request).await;
            Err(stopped)
        }
    }
}

async fn cursor(
    pinned: Pinned,
    errors: Errors,
    query: RemoteQuery,
    fetch_size: u32,
    cancel: CancellationToken,
    deadline: Option<Instant>,
) -> Result<BatchStream, ConnectorError> {
    let mut slot = pinned.lock().await;
    let x = slot.as_mut().ok_or_else(released)?;
    let name = format!("pgfed_c{}", x.next_cursor);
    x.next_cursor += 1;
    let tls = x.conn.tls().clone();
    let client = &x.conn.client;
    let declare_sql = format!("DECLARE {name} NO SCROLL CURSOR FOR {}", query.sql);
    let declare = pinned_request(client, &tls, &cancel, deadline, client.prepare(&declare_sql))
        .await?
        .map_err(|e| errors.remote(&e))?;
    check_text_params(&declare, &query.text_params)?;
    pinned_request(client, &tls, &cancel, deadline, client.execute_raw(&declare, query.params.iter()))
        .await?
        .map_err(|e| errors.remote(&e))?;
    let fetch_sql = format!("FETCH FORWARD {fetch_size} FROM {name}");
    let fetch = pinned_request(client, &tls, &cancel, deadline, client.prepare(&fetch_sql))
        .await?
        .map_err(|e| errors.remote(&e))?;
    let decoders = query_decoders(&query, &fetch)?;
    drop(slot);
    let state = Cursor {
        pinned,
        name,
        fetch,
        fetch_size,
        tls,
        decoders,
        schema: schema_of(&query.columns),
        cancel,
        deadline,
        errors,
        done: false,
    };
    Ok(futures_util::stream::unfold(state, |mut scan| async move {
        if scan.done {
            return None;
        }
        match scan.next_batch().await {
            Ok(Some(batch)) => Some((Ok(batch), scan)),
            Ok(None) => None,
            Err(e) => {
                scan.done = true;
                Some((Err(e), scan))
            }
        }
    })
    .boxed())
}

struct Cursor {
    pinned: Pinned,
    name: String,
    fetch: Statement,
    fetch_size: u32,
    tls: tls::Tls,
    decoders: Vec<Decoder>,
    schema: SchemaRef,
    cancel: CancellationToken,
    deadline: Option<Instant>,
    errors: Errors,
    /// The cursor is exhausted (or the scan failed): nothing to close.
    done: bool,
}

impl Cursor {
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let slot = self.pinned.lock().await;
        let x = slot.as_ref().ok_or_else(released)?;
        let client = &x.conn.client;
        let rows: Vec<Row> = pinned_request(client, &self.tls, &self.cancel, self.deadline, async {
            client.query_raw(&self.fetch, std::iter::empty::<i32>()).await?.try_collect().await
        })
        .await?
        .map_err(|e| self.errors.remote(&e))?;
        drop(slot);
        if rows.len() < self.fetch_size as usize {
            self.done = true;
        }
        if rows.is_empty() {
            return Ok(None);
        }
        for row in &rows {
            append_row(&mut self.decoders, row, &self.errors)?;
        }
        finish_batch(&mut self.decoders, &self.schema, rows.len()).map(Some)
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Stopped early (a LIMIT applied locally, say): close the cursor so it stops holding
        // resources until the end of the transaction.
        let (pinned, sql) = (self.pinned.clone(), format!("CLOSE {}", self.name));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let slot = pinned.lock().await;
                if let Some(x) = slot.as_ref() {
                    let _ = tokio::time::timeout(Duration::from_secs(5), x.conn.client.batch_execute(&sql)).await;
                }
            });
        }
    }
}
