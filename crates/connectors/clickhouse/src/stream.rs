//! A query's rows as a stream of Arrow batches: the HTTP body is read chunk by chunk and every
//! complete row decoded at once, so the first batch leaves before ClickHouse has finished and
//! memory holds one batch plus one chunk. Cancel, the deadline and dropping the stream all drop
//! the request and kill the query by its id.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use clickhouse::query::BytesCursor;
use futures_util::StreamExt;
use pgfed_connector_sdk::{BatchStream, ConnectorError, ScanContext};

use crate::client::{Connection, Exception};
use crate::decode::{DecodeError, RowDecoder, Step};

/// Rows per record batch, at most.
pub const BATCH_ROWS: usize = 8192;

/// The most error text kept from a body that turned into an error message.
const MAX_ERROR_TEXT: usize = 64 * 1024;

/// Kills the query when the stream is dropped before its end (client gone, LIMIT reached by
/// pgfed, an error elsewhere in the plan).
struct KillOnDrop {
    conn: Arc<Connection>,
    id: String,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.conn.kill(&self.id);
        }
    }
}

struct State {
    cursor: BytesCursor,
    buf: BytesMut,
    decoder: RowDecoder,
    ctx: ScanContext,
    guard: KillOnDrop,
    /// The body stopped being rows: the rest is the server's error text.
    error_text: bool,
    done: bool,
}

fn decode_error(e: DecodeError) -> ConnectorError {
    ConnectorError::DataType { column: e.column, reason: e.reason }
}

impl State {
    /// The next batch, `None` at the end. Cancel-safe: dropping the future loses nothing the
    /// stream still needs (the query is killed anyway when the stream is dropped).
    async fn next(&mut self) -> Option<Result<arrow_array::RecordBatch, ConnectorError>> {
        if self.done {
            return None;
        }
        let r = self.step().await;
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
            // A failed or finished query needs no kill; a cancelled one was killed already.
            self.guard.armed = false;
        }
        r
    }

    async fn step(&mut self) -> Option<Result<arrow_array::RecordBatch, ConnectorError>> {
        loop {
            if !self.error_text {
                match self.decoder.decode(&self.buf, BATCH_ROWS) {
                    Ok(Step::Rows(n)) => self.buf.advance(n),
                    Ok(Step::Exception(n)) => {
                        self.buf.advance(n);
                        self.error_text = true;
                    }
                    Err(e) => return Some(Err(decode_error(e))),
                }
                if self.decoder.rows() >= BATCH_ROWS {
                    return Some(self.decoder.finish().map_err(decode_error));
                }
            }
            let deadline = async {
                match self.ctx.deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let chunk = tokio::select! {
                c = self.cursor.next() => c,
                () = self.ctx.cancel.cancelled() => {
                    self.guard.conn.kill(&self.guard.id);
                    return Some(Err(ConnectorError::Cancelled));
                }
                () = deadline => {
                    self.guard.conn.kill(&self.guard.id);
                    return Some(Err(ConnectorError::TimedOut));
                }
            };
            match chunk {
                Ok(Some(bytes)) => {
                    if !self.error_text || self.buf.len() < MAX_ERROR_TEXT {
                        self.buf.extend_from_slice(&bytes);
                    }
                }
                Ok(None) => {
                    if self.error_text {
                        let text = String::from_utf8_lossy(&self.buf).into_owned();
                        let ex = Exception::parse(&text);
                        return Some(Err(ex.into_error(&self.guard.conn.config.source_name())));
                    }
                    if !self.buf.is_empty() {
                        return Some(Err(ConnectorError::Remote {
                            source_name: self.guard.conn.config.source_name(),
                            code: None,
                            message: "the response ended inside a row".into(),
                        }));
                    }
                    self.guard.armed = false;
                    if self.decoder.rows() > 0 {
                        let batch = self.decoder.finish().map_err(decode_error);
                        self.done = true;
                        return Some(batch);
                    }
                    return None;
                }
                Err(e) => return Some(Err(self.guard.conn.error(e))),
            }
        }
    }
}

/// Runs `sql` (rows prefixed by the marker, see `sql::ROW_MARKER`) and decodes its RowBinary.
pub(crate) fn run(
    conn: Arc<Connection>,
    sql: &str,
    decoder: RowDecoder,
    ctx: ScanContext,
) -> Result<BatchStream, ConnectorError> {
    let id = crate::client::query_id();
    let cursor = conn.fetch(sql, &id, "RowBinary")?;
    let state = State {
        cursor,
        buf: BytesMut::new(),
        decoder,
        ctx,
        guard: KillOnDrop { conn, id, armed: true },
        error_text: false,
        done: false,
    };
    Ok(futures_util::stream::unfold(state, |mut s| async move { s.next().await.map(|r| (r, s)) }).boxed())
}
