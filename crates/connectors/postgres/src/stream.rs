//! Running the remote query: connect, prepare (to check types before any row), stream rows with
//! `query_raw`, and turn them into Arrow batches. Cancellation and the deadline end the stream
//! with `Cancelled` or `TimedOut` and cancel the remote query; dropping the stream early does the
//! same.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_schema::{Field, Schema, SchemaRef};
use futures_util::StreamExt;
use pgfed_connector_sdk::{BatchStream, ConnectorError, ScanContext};
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::Kind;
use tokio_postgres::{CancelToken, Client, NoTls, RowStream};
use tokio_util::sync::CancellationToken;

use crate::decode::{Decoder, Raw};
use crate::sql::{RemoteQuery, is_text_type};
use crate::{BATCH_ROWS, ServerConfig};

/// Removes the password from any text that could reach a client or a log.
#[derive(Clone)]
struct Redactor(Option<String>);

impl Redactor {
    fn clean(&self, text: &str) -> String {
        match &self.0 {
            Some(p) if !p.is_empty() => text.replace(p.as_str(), "********"),
            _ => text.to_string(),
        }
    }
}

/// Maps a tokio-postgres error: a server error keeps its SQLSTATE and message; anything else
/// (socket, protocol, closed connection) means the server could not be reached.
struct Errors {
    source_name: String,
    table: String,
    redact: Redactor,
}

impl Errors {
    fn connect(&self, e: &tokio_postgres::Error) -> ConnectorError {
        let reason = match e.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => e.to_string(),
        };
        ConnectorError::Unreachable { source_name: self.source_name.clone(), reason: self.redact.clean(&reason) }
    }

    fn remote(&self, e: &tokio_postgres::Error) -> ConnectorError {
        match e.as_db_error() {
            Some(db) if db.code().code() == "42P01" => ConnectorError::TableNotFound(self.table.clone()),
            Some(db) => ConnectorError::Remote {
                source_name: self.source_name.clone(),
                code: Some(db.code().code().to_string()),
                message: self.redact.clean(db.message()),
            },
            None => ConnectorError::Unreachable {
                source_name: self.source_name.clone(),
                reason: self.redact.clean(&e.to_string()),
            },
        }
    }
}

/// Owns the connection task; unless the query finished, dropping it cancels the remote query
/// and closes the connection.
struct Guard {
    cancel_token: CancelToken,
    connection: JoinHandle<()>,
    finished: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.finished
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let token = self.cancel_token.clone();
            runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), token.cancel_query(NoTls)).await;
            });
        }
        self.connection.abort();
    }
}

async fn deadline_passed(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Runs `f` unless the statement is cancelled or its deadline passes first.
async fn watched<F: Future>(
    cancel: &CancellationToken,
    deadline: Option<Instant>,
    f: F,
) -> Result<F::Output, ConnectorError> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(ConnectorError::Cancelled),
        () = deadline_passed(deadline) => Err(ConnectorError::TimedOut),
        out = f => Ok(out),
    }
}

pub(crate) async fn scan(
    server: &ServerConfig,
    table: String,
    query: RemoteQuery,
    ctx: ScanContext,
) -> Result<BatchStream, ConnectorError> {
    let errors = Errors { source_name: server.source_name(), table, redact: Redactor(server.password.clone()) };
    let mut config = tokio_postgres::Config::new();
    config
        .host(&server.host)
        .port(server.port)
        .user(server.user.as_deref().unwrap_or(&ctx.user))
        .application_name("pgfed")
        .connect_timeout(server.connect_timeout)
        .ssl_mode(SslMode::Disable);
    if let Some(db) = &server.dbname {
        config.dbname(db);
    }
    if let Some(password) = &server.password {
        config.password(password);
    }
    let (cancel, deadline) = (ctx.cancel.clone(), ctx.deadline);
    let (client, connection) =
        watched(&cancel, deadline, config.connect(NoTls)).await?.map_err(|e| errors.connect(&e))?;
    let mut guard = Guard {
        cancel_token: client.cancel_token(),
        connection: tokio::spawn(async move {
            let _ = connection.await;
        }),
        finished: false,
    };
    let statement = watched(&cancel, deadline, client.prepare(&query.sql)).await?.map_err(|e| {
        guard.finished = true;
        errors.remote(&e)
    })?;
    for (index, column) in &query.text_params {
        let ty = &statement.params()[*index];
        let element = match ty.kind() {
            Kind::Array(member) => member,
            _ => ty,
        };
        if !is_text_type(element) {
            guard.finished = true;
            return Err(ConnectorError::DataType {
                column: column.clone(),
                reason: format!("remote type {} is not a text type", element.name()),
            });
        }
    }
    let decoders = query
        .columns
        .iter()
        .zip(statement.columns())
        .map(|(column, remote)| Decoder::new(column, remote.type_()))
        .collect::<Result<Vec<_>, _>>()
        .inspect_err(|_| guard.finished = true)?;
    let rows = watched(&cancel, deadline, client.query_raw(&statement, query.params.iter())).await?.map_err(|e| {
        guard.finished = true;
        errors.remote(&e)
    })?;
    let fields: Vec<Field> =
        query.columns.iter().map(|c| Field::new(c.name.clone(), c.data_type.clone(), c.nullable)).collect();
    let state = Scan {
        _client: client,
        rows: Box::pin(rows),
        decoders,
        schema: Arc::new(Schema::new(fields)),
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

struct Scan {
    /// Kept alive for the duration of the stream.
    _client: Client,
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

impl Scan {
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        let cancel = self.cancel.clone();
        let cancelled = cancel.cancelled();
        let expired = deadline_passed(self.deadline);
        tokio::pin!(cancelled, expired);
        let mut n = 0;
        loop {
            let next = tokio::select! {
                biased;
                () = &mut cancelled => Err(ConnectorError::Cancelled),
                () = &mut expired => Err(ConnectorError::TimedOut),
                row = self.rows.next() => Ok(row),
            };
            let row = match next {
                Ok(row) => row,
                Err(stopped) => {
                    self.cancel_remote().await;
                    return Err(stopped);
                }
            };
            match row {
                None => {
                    // The row stream must not be polled again after its end.
                    self.guard.finished = true;
                    self.done = true;
                    return if n > 0 { self.batch(n).map(Some) } else { Ok(None) };
                }
                Some(Err(e)) => {
                    self.guard.finished = true;
                    return Err(self.errors.remote(&e));
                }
                Some(Ok(row)) => {
                    for (i, decoder) in self.decoders.iter_mut().enumerate() {
                        let raw: Option<Raw<'_>> = row.try_get(i).map_err(|e| self.errors.remote(&e))?;
                        decoder.append(raw.map(|r| r.0))?;
                    }
                    n += 1;
                    if n == BATCH_ROWS {
                        return self.batch(n).map(Some);
                    }
                }
            }
        }
    }

    fn batch(&mut self, rows: usize) -> Result<RecordBatch, ConnectorError> {
        let arrays = self.decoders.iter_mut().map(Decoder::finish).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map_err(|e| ConnectorError::Internal(format!("building a batch: {e}")))
    }

    /// Asks the server to cancel the running query, then closes the connection.
    async fn cancel_remote(&mut self) {
        self.guard.finished = true;
        let token = self.guard.cancel_token.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), token.cancel_query(NoTls)).await;
        self.guard.connection.abort();
    }
}
