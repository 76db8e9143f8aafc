//! A scan: the planned requests, page after page, each page's rows converted into one record
//! batch. A 404 on a path with a `{column}` placeholder means no such row: no rows, no error.
//!
//! A task fetches pages and hands them over a channel of one, reserving its slot before each
//! request: while pgfed converts and processes page n the task fetches page n + 1, never more,
//! so a consumer that stops (a LIMIT pgfed applies itself, an error elsewhere) costs at most one
//! extra request. With a pushed LIMIT the task converts pages itself and stops paging at the
//! limit. Dropping the stream aborts the task and the
//! request in flight.

use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_schema::{Schema, SchemaRef};
use futures_util::stream;
use pgfed_connector_sdk::{BatchStream, ConnectorError};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use url::Url;

use crate::client::{Fetcher, Response};
use crate::config::{ColumnDef, Pagination, TableConfig, TableDef};
use crate::convert::{ColumnBuilder, Scalar, json_to_scalar};
use crate::error::HttpError;
use crate::jsonpath::{Kind, Object, kind, rows_in, scalar_text};
use crate::plan::{PlannedRequest, ScanPlan, first_page, page_url};

/// Aborts the producing task (and its request) when the stream is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) fn scan(table: Arc<TableConfig>, fetcher: Fetcher, plan: ScanPlan) -> BatchStream {
    let fields: Vec<_> =
        plan.columns.iter().filter_map(|i| table.def.columns.get(*i)).map(|c| c.field.clone()).collect();
    let plan = Arc::new(plan);
    let converter = Converter {
        table: table.clone(),
        plan: plan.clone(),
        schema: Arc::new(Schema::new(fields)),
        emitted: 0,
        position: 0,
    };
    // Without a limit the consumer converts pages, so the next request overlaps the conversion.
    // With one the producer converts, since only converted rows tell when to stop paging.
    let (producer_converter, consumer_converter) =
        if plan.limit.is_some() { (Some(converter), None) } else { (None, Some(converter)) };
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        let mut producer = Producer { table: &table, fetcher: &fetcher, plan: &plan, converter: producer_converter };
        if let Err(e) = producer.run(&tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Box::pin(stream::unfold((rx, AbortOnDrop(task), consumer_converter), |(mut rx, task, mut converter)| async move {
        loop {
            let batch = match rx.recv().await? {
                Ok(Item::Batch(batch)) => Ok(batch),
                Ok(Item::Page(page)) => match converter.as_mut() {
                    Some(c) => c.page(&page),
                    None => Err(ConnectorError::Internal("a page without a converter".into())),
                },
                Err(e) => Err(e),
            };
            match batch {
                Ok(b) if b.num_rows() == 0 => continue,
                other => return Some((other, (rx, task, converter))),
            }
        }
    }))
}

/// What the producer hands over: a converted batch, or a page for the consumer to convert.
enum Item {
    Batch(RecordBatch),
    Page(Page),
}

struct Page {
    response: Arc<Response>,
    /// Index into the plan's requests.
    request: usize,
    /// 1-based page number within its request.
    number: u32,
}

struct Producer<'a> {
    table: &'a TableConfig,
    fetcher: &'a Fetcher,
    plan: &'a ScanPlan,
    /// Set when the producer converts pages itself (a limit).
    converter: Option<Converter>,
}

/// Turns pages into batches; counts rows for the limit and for messages.
struct Converter {
    table: Arc<TableConfig>,
    plan: Arc<ScanPlan>,
    schema: SchemaRef,
    /// Rows sent so far (for the limit).
    emitted: u64,
    /// Rows read so far, for messages (1-based positions).
    position: u64,
}

type Sender = mpsc::Sender<Result<Item, ConnectorError>>;

impl Converter {
    fn page(&mut self, page: &Page) -> Result<RecordBatch, ConnectorError> {
        let page_rows = rows_in(&page.response.body, &self.table.def.rows).map_err(ConnectorError::Internal)?;
        let plan = self.plan.clone();
        let request = plan.requests.get(page.request).ok_or(ConnectorError::Internal("no such request".into()))?;
        Ok(self.batch(request, &page_rows, page.number)?.0)
    }
}

impl Producer<'_> {
    async fn run(&mut self, tx: &Sender) -> Result<(), ConnectorError> {
        let def = &self.table.def;
        let max_pages = def.max_pages.unwrap_or(self.table.server.max_pages);
        for (index, request) in self.plan.requests.iter().enumerate() {
            let mut url = first_page(def, &request.url);
            let mut pages = 0u32;
            let mut page_number = match &def.pagination {
                Pagination::Page { start, .. } => *start,
                _ => 0,
            };
            let mut offset = 0u64;
            loop {
                // The consumer is gone: nothing more to do.
                let Ok(permit) = tx.reserve().await else { return Ok(()) };
                let response = match self.fetcher.get(&url).await {
                    Ok(r) => r,
                    // A lookup whose key names nothing: no row, as `WHERE id = 400` finds none.
                    Err(HttpError::Status { status: 404, .. }) if def.path.columns().next().is_some() => break,
                    Err(e) => return Err(e.into()),
                };
                pages += 1;
                let shown = || self.fetcher.redactor.url(&url);
                let not_json = |e: String| HttpError::Body {
                    url: shown(),
                    reason: format!("{e}: {}", self.fetcher.redactor.snippet(&response.body)),
                };
                let page_rows = rows_in(&response.body, &def.rows).map_err(not_json)?;
                // The whole body as a value, only for the styles that read a next link or cursor.
                let body = || -> Option<&RawValue> { serde_json::from_slice(&response.body).ok() };
                match self.converter.as_mut() {
                    Some(converter) => {
                        let (batch, done) = converter.batch(request, &page_rows, pages)?;
                        if batch.num_rows() > 0 {
                            permit.send(Ok(Item::Batch(batch)));
                        }
                        if done {
                            return Ok(());
                        }
                    }
                    None => {
                        permit.send(Ok(Item::Page(Page { response: response.clone(), request: index, number: pages })))
                    }
                }
                let full = |n: usize| n > 0 && self.plan.page_size.is_none_or(|size| n as u64 >= size);
                let next: Option<Url> = match &def.pagination {
                    Pagination::None => None,
                    Pagination::NextLink { path } => {
                        let link = body()
                            .and_then(|b| path.get(b).ok().flatten())
                            .and_then(scalar_text)
                            .filter(|l| !l.is_empty());
                        link.map(|l| self.follow(&url, &l)).transpose()?
                    }
                    Pagination::LinkHeader => {
                        response.next_link.as_deref().map(|l| self.follow(&url, l)).transpose()?
                    }
                    Pagination::Page { .. } if full(page_rows.len()) => {
                        page_number += 1;
                        Some(page_url(def, &request.url, Some(page_number.to_string())))
                    }
                    Pagination::Offset { .. } if full(page_rows.len()) => {
                        offset += page_rows.len() as u64;
                        Some(page_url(def, &request.url, Some(offset.to_string())))
                    }
                    Pagination::Cursor { path, .. } => {
                        let cursor = body()
                            .and_then(|b| path.get(b).ok().flatten())
                            .and_then(scalar_text)
                            .filter(|c| !c.is_empty());
                        cursor.map(|c| page_url(def, &request.url, Some(c.into_owned())))
                    }
                    Pagination::Page { .. } | Pagination::Offset { .. } => None,
                };
                let Some(next) = next else { break };
                if pages >= max_pages {
                    return Err(
                        HttpError::TooManyPages { url: self.fetcher.redactor.url(&request.url), max_pages }.into()
                    );
                }
                url = next;
            }
        }
        Ok(())
    }

    /// A next-page link, relative ones resolved against the current URL. Only links to the base
    /// URL's origin are followed: the credentials go with every request.
    fn follow(&self, current: &Url, link: &str) -> Result<Url, HttpError> {
        let shown = || self.fetcher.redactor.url(current);
        let next =
            current.join(link).map_err(|_| HttpError::Body { url: shown(), reason: "a bad next page link".into() })?;
        let base = Url::parse(&self.table.server.base_url)
            .map_err(|_| HttpError::Body { url: shown(), reason: "a bad base_url".into() })?;
        if next.origin() != base.origin() {
            return Err(HttpError::ForeignLink { url: shown(), origin: next.origin().ascii_serialization() });
        }
        Ok(next)
    }
}

impl Converter {
    /// One page's rows as a batch, and whether the limit is reached.
    fn batch(
        &mut self,
        request: &PlannedRequest,
        page_rows: &[&RawValue],
        page: u32,
    ) -> Result<(RecordBatch, bool), ConnectorError> {
        let def = &self.table.def;
        let mut builders: Vec<ColumnBuilder> =
            self.plan.columns.iter().filter_map(|i| def.columns.get(*i)).map(|c| ColumnBuilder::new(&c.ty)).collect();
        let mut count = 0usize;
        let mut done = false;
        'rows: for (item, row) in page_rows.iter().enumerate() {
            if self.plan.limit.is_some_and(|l| self.emitted >= l) {
                done = true;
                break;
            }
            self.position += 1;
            let at = Location { position: self.position, page, item: item + 1 };
            let object =
                match kind(row) {
                    Kind::Object => Some(Object::parse(row).map_err(|e| ConnectorError::DataType {
                        column: "(row)".into(),
                        reason: format!("{at}: {e}"),
                    })?),
                    _ => None,
                };
            for (column, values) in &request.constraints {
                let Some(c) = def.columns.get(*column) else { continue };
                let value = match lookup(def, *column, row, object.as_ref())? {
                    None if values.len() == 1 => continue,
                    None => Scalar::Null,
                    Some(raw) => convert(c, raw, &at)?,
                };
                if !values.contains(&value) {
                    continue 'rows;
                }
            }
            for (builder, column) in builders.iter_mut().zip(&self.plan.columns) {
                let Some(c) = def.columns.get(*column) else { continue };
                let value = match lookup(def, *column, row, object.as_ref())? {
                    Some(raw) => convert(c, raw, &at)?,
                    // A row without the field of a column its request was filtered on has the
                    // value the request asked for.
                    None => request
                        .constraints
                        .iter()
                        .find(|(k, vs)| k == column && vs.len() == 1)
                        .and_then(|(_, vs)| vs.first().cloned())
                        .unwrap_or(Scalar::Null),
                };
                check_not_null(c, &value, &at)?;
                builder.append(&value);
            }
            count += 1;
            self.emitted += 1;
        }
        if self.plan.limit.is_some_and(|l| self.emitted >= l) {
            done = true;
        }
        let arrays = builders
            .iter_mut()
            .map(|b| b.finish().map_err(|e| ConnectorError::Internal(format!("building a batch: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(count));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map_err(|e| ConnectorError::Internal(format!("building a batch: {e}")))?;
        Ok((batch, done))
    }
}

/// Where a row is, for messages: its position in the scan, and on its page.
struct Location {
    position: u64,
    page: u32,
    item: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "row {} (page {}, item {})", self.position, self.page, self.item)
    }
}

/// The raw value of a column in a row; `None` when the field is missing.
pub(crate) fn lookup<'a>(
    def: &TableDef,
    column: usize,
    row: &'a RawValue,
    object: Option<&Object<'a>>,
) -> Result<Option<&'a RawValue>, ConnectorError> {
    let Some(c) = def.columns.get(column) else { return Ok(None) };
    let bad = |e: serde_json::Error| ConnectorError::DataType { column: c.name.clone(), reason: e.to_string() };
    match (c.path.first_key(), object) {
        (Some(key), Some(object)) => match object.get(key) {
            Some(v) => c.path.get_from(v, 1).map_err(bad),
            None => Ok(None),
        },
        _ => c.path.get(row).map_err(bad),
    }
}

pub(crate) fn convert<'a>(
    c: &ColumnDef,
    raw: &'a RawValue,
    at: &dyn std::fmt::Display,
) -> Result<Scalar<'a>, ConnectorError> {
    match json_to_scalar(raw, &c.ty) {
        Ok(v) => Ok(v),
        Err(_) if c.lenient => Ok(Scalar::Null),
        Err(reason) => Err(ConnectorError::DataType { column: c.name.clone(), reason: format!("{at}: {reason}") }),
    }
}

/// A NULL (or missing value) in a NOT NULL column is an error, as Postgres would raise.
pub(crate) fn check_not_null(
    c: &ColumnDef,
    value: &Scalar<'_>,
    at: &dyn std::fmt::Display,
) -> Result<(), ConnectorError> {
    if *value == Scalar::Null && !c.field.is_nullable() {
        return Err(ConnectorError::DataType {
            column: c.name.clone(),
            reason: format!("{at}: null value in a NOT NULL column"),
        });
    }
    Ok(())
}
