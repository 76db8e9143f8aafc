//! The result of an execution: batches as the plan produces them, stopped by the client's cancel
//! or statement_timeout, then a command tag.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

use crate::EngineError;

/// Batches of one execution. Dropping it stops the plan and every remote query.
pub struct ResultStream {
    schema: SchemaRef,
    inner: BoxStream<'static, Result<RecordBatch, EngineError>>,
    /// The client's own token: it firing means a cancel request.
    client: CancellationToken,
    /// This execution's token, cancelled here on timeout so connectors stop too.
    run: CancellationToken,
    deadline: Option<Instant>,
    rows: u64,
    tag: Tag,
    finished: bool,
}

/// What the CommandComplete tag counts.
#[derive(Debug, Clone)]
pub(crate) enum Tag {
    /// `SELECT n`: the rows returned.
    Select,
    /// A tag without a count.
    Fixed(&'static str),
    /// `INSERT 0 n`, `UPDATE n`, `DELETE n`: rows the connector reports written (RETURNING rows
    /// may be fewer only if the source returns fewer).
    Write(&'static str, Arc<AtomicU64>),
}

impl std::fmt::Debug for ResultStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultStream").field("rows", &self.rows).field("finished", &self.finished).finish()
    }
}

impl ResultStream {
    pub(crate) fn new(
        schema: SchemaRef,
        inner: BoxStream<'static, Result<RecordBatch, EngineError>>,
        client: CancellationToken,
        run: CancellationToken,
        deadline: Option<Instant>,
        tag: Tag,
    ) -> Self {
        ResultStream { schema, inner, client, run, deadline, rows: 0, tag, finished: false }
    }

    /// The Arrow schema of the batches (same order as [`crate::Prepared::columns`]).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The next batch; `None` at the end. After an error the stream is finished.
    /// Cancel-safe: a batch is never lost by dropping the future.
    pub async fn next(&mut self) -> Option<Result<RecordBatch, EngineError>> {
        if self.finished {
            return None;
        }
        let deadline = self.deadline;
        let timeout = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let item = tokio::select! {
            biased;
            _ = self.client.cancelled() => Some(Err(EngineError::Cancelled)),
            _ = timeout => {
                self.run.cancel();
                Some(Err(EngineError::TimedOut))
            }
            item = self.inner.next() => item,
        };
        match &item {
            Some(Ok(b)) => self.rows += b.num_rows() as u64,
            Some(Err(_)) | None => {
                self.finished = true;
                // Stop whatever still runs (remote queries, spawned tasks).
                self.inner = futures::stream::empty().boxed();
            }
        }
        item.map(|r| r.map_err(|e| self.refine(e)))
    }

    /// A connector that saw our token fire reports "cancelled"; say why.
    fn refine(&self, e: EngineError) -> EngineError {
        let cancelled = matches!(
            &e,
            EngineError::Cancelled
                | EngineError::Connector { source: pgfed_connector_sdk::ConnectorError::Cancelled, .. }
        );
        if cancelled && self.deadline.is_some_and(|d| Instant::now() >= d) && !self.client.is_cancelled() {
            EngineError::TimedOut
        } else if cancelled {
            EngineError::Cancelled
        } else {
            e
        }
    }

    /// Rows returned so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The CommandComplete tag: `SELECT n`, `EXPLAIN`, `INSERT 0 n`, `UPDATE n`, `DELETE n`. For
    /// a write it is final only once [`ResultStream::next`] has returned `None`.
    pub fn command_tag(&self) -> String {
        match &self.tag {
            Tag::Select => format!("SELECT {}", self.rows),
            Tag::Fixed(t) => t.to_string(),
            Tag::Write(prefix, n) => format!("{prefix} {}", n.load(Ordering::Relaxed)),
        }
    }
}
