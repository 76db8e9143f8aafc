//! `FOREIGN DATA WRAPPER http`: a JSON HTTP API as a foreign table. A table is a path template
//! under the server's `base_url` (`/users/{id}`), the JSON path of the rows array in a response,
//! and a pagination style (next link in the body, Link header, page, offset or cursor
//! parameter); columns are JSON paths inside a row. `=`, IN and declared range conditions become
//! path placeholders and query parameters (`plan.rs`); every condition is re-checked by pgfed
//! unless a column is declared `exact`, and a pushed LIMIT stops paging early. Pages are
//! fetched one ahead of the consumer and converted to Arrow batches without losing digits
//! (`scan.rs`, `convert.rs`). Requests share, per server and across sessions, one client, a rate
//! limiter and a response cache, retry 429 and 5xx honouring Retry-After, and stop on cancel and
//! statement_timeout (`client.rs`). Writable tables map INSERT, UPDATE and DELETE to POST, PATCH
//! or PUT, and DELETE (`write.rs`). Credentials live in the user mapping and are scrubbed from
//! errors and EXPLAIN. docs/connectors/http.md has the options and the pushdown matrix.

mod client;
mod config;
mod convert;
mod error;
mod jsonpath;
mod plan;
mod scan;
mod write;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use async_trait::async_trait;
use pgfed_connector_sdk::{
    BatchStream, ConnectorError, ForeignTable, OpenRequest, OptionLevel, OptionSpec, Options, Pushdown, Qual,
    ScanContext, ScanRequest, Wrapper, WriteResult,
};

use client::{Fetcher, ServerState};
use config::{Auth, ServerConfig, TableConfig, TableDef};
use error::Redactor;

const S: OptionLevel = OptionLevel::Server;
const U: OptionLevel = OptionLevel::UserMapping;
const T: OptionLevel = OptionLevel::Table;
const C: OptionLevel = OptionLevel::Column;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec::required(S, "base_url", "http(s) URL that table paths are appended to"),
    OptionSpec::optional(S, "headers", "JSON object of headers sent with every request"),
    OptionSpec::optional(S, "timeout", "seconds per request, body included (default 30)"),
    OptionSpec::optional(S, "connect_timeout", "seconds to connect (default 10)"),
    OptionSpec::optional(S, "retries", "retries after 429, 5xx or a failed connection (default 2)"),
    OptionSpec::optional(S, "rate_limit", "requests per second, shared by all sessions (default unlimited)"),
    OptionSpec::optional(S, "max_pages", "pages per request at most; more is an error (default 10000)"),
    OptionSpec::optional(S, "tls_verify", "false accepts any certificate (default true)"),
    OptionSpec::optional(S, "ca_file", "PEM file of trusted roots (default: the system's)"),
    OptionSpec::optional(S, "cache_ttl", "seconds a GET response is reused (default 0: no cache)"),
    OptionSpec::optional(S, "max_response_size", "bytes per response at most (default 16777216)"),
    OptionSpec::optional(S, "max_requests", "requests one scan's IN lists may make (default 100)"),
    OptionSpec::secret(U, "bearer_token", "sent as Authorization: Bearer <token>"),
    OptionSpec::optional(U, "user", "basic authentication user"),
    OptionSpec::secret(U, "password", "basic authentication password"),
    OptionSpec::optional(U, "header_name", "a header carrying a key (with header_value)"),
    OptionSpec::secret(U, "header_value", "the value of header_name"),
    OptionSpec::required(T, "path", "path template under base_url, e.g. /users/{id}?active=true"),
    OptionSpec::optional(T, "rows", "JSON path of the rows array in a response (default: the root)"),
    OptionSpec::optional(T, "pagination", "none, next_link, link_header, page, offset or cursor (default none)"),
    OptionSpec::optional(T, "next_path", "next_link: JSON path of the next page URL (default next)"),
    OptionSpec::optional(T, "page_param", "page: the page number parameter (default page)"),
    OptionSpec::optional(T, "page_start", "page: the first page number (default 1)"),
    OptionSpec::optional(T, "offset_param", "offset: the offset parameter (default offset)"),
    OptionSpec::optional(T, "cursor_param", "cursor: the cursor parameter (default cursor)"),
    OptionSpec::optional(T, "cursor_path", "cursor: JSON path of the next cursor in a response"),
    OptionSpec::optional(T, "page_size_param", "the page size parameter (with page_size)"),
    OptionSpec::optional(T, "page_size", "rows per page; a shorter page is the last one"),
    OptionSpec::optional(T, "max_pages", "overrides the server's max_pages"),
    OptionSpec::optional(T, "in_style", "requests (one per IN value, the default) or comma (one list)"),
    OptionSpec::optional(T, "fields_param", "parameter listing the columns wanted (e.g. fields)"),
    OptionSpec::optional(T, "writable", "true maps INSERT, UPDATE, DELETE to requests (default false)"),
    OptionSpec::optional(T, "insert_path", "INSERT: POST target (default: path, if it has no placeholder)"),
    OptionSpec::optional(T, "row_path", "UPDATE/DELETE: path of one row, e.g. /users/{id}"),
    OptionSpec::optional(T, "update_method", "PATCH (default) or PUT"),
    OptionSpec::optional(T, "response_row", "JSON path of the row in a write response (default: the root)"),
    OptionSpec::optional(C, "path", "JSON path inside a row (default: the column name)"),
    OptionSpec::optional(C, "param", "query parameter that = and IN fill"),
    OptionSpec::optional(C, "param_gt", "query parameter for >"),
    OptionSpec::optional(C, "param_gte", "query parameter for >= (and >, a superset)"),
    OptionSpec::optional(C, "param_lt", "query parameter for <"),
    OptionSpec::optional(C, "param_lte", "query parameter for <= (and <, a superset)"),
    OptionSpec::optional(C, "param_format", "iso (default) or epoch: how dates and times are sent"),
    OptionSpec::optional(C, "exact", "true: the API matches = and IN exactly as Postgres (no re-check)"),
    OptionSpec::optional(C, "lenient", "true: a value that does not convert is NULL, not an error"),
    OptionSpec::optional(C, "json", "true: keep values as JSON text (jsonb columns holding strings)"),
];

/// The `http` foreign data wrapper. One instance serves every session, so each server's
/// connection pool, rate limiter and cache are shared by all of them.
#[derive(Default)]
pub struct HttpWrapper {
    /// Per server identity (all of its options): what its sessions share.
    servers: Mutex<HashMap<String, Arc<ServerState>>>,
}

impl std::fmt::Debug for HttpWrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWrapper").finish_non_exhaustive()
    }
}

/// Options joined into one key; held in memory only (a user mapping's holds secrets).
fn identity(options: &Options) -> String {
    options.iter().map(|(k, v)| format!("{k}\u{0}{v}\u{0}")).collect()
}

impl HttpWrapper {
    fn server_state(&self, options: &Options, config: &ServerConfig) -> Result<Arc<ServerState>, ConnectorError> {
        let key = identity(options);
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = servers.get(&key) {
            return Ok(state.clone());
        }
        let state = Arc::new(ServerState::new(config).map_err(|reason| ConnectorError::Unreachable {
            source_name: "HTTP API".into(),
            reason: format!("setting up the client: {reason}"),
        })?);
        servers.insert(key, state.clone());
        Ok(state)
    }
}

#[async_trait]
impl Wrapper for HttpWrapper {
    fn name(&self) -> &'static str {
        "http"
    }

    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }

    /// Server and table options; the user mapping is checked when the table is used.
    fn check(&self, request: &OpenRequest) -> Result<(), ConnectorError> {
        ServerConfig::parse(&request.server)?;
        TableDef::parse(request).map(drop)
    }

    /// Never contacts the API.
    async fn open(&self, request: OpenRequest) -> Result<Arc<dyn ForeignTable>, ConnectorError> {
        let server = Arc::new(ServerConfig::parse(&request.server)?);
        let auth = Auth::parse(&request.user_mapping)?;
        let def = TableDef::parse(&request)?;
        let state = self.server_state(&request.server, &server)?;
        let schema = Arc::new(Schema::new(request.columns.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>()));
        Ok(Arc::new(HttpTable {
            config: Arc::new(TableConfig { table_name: request.table_name.clone(), server, def }),
            schema,
            state,
            redactor: Redactor::new(auth.secrets()),
            auth: Arc::new(auth),
            credential: Arc::from(identity(&request.user_mapping)),
        }))
    }
}

/// One API table, open for one statement.
pub struct HttpTable {
    config: Arc<TableConfig>,
    schema: SchemaRef,
    state: Arc<ServerState>,
    auth: Arc<Auth>,
    credential: Arc<str>,
    redactor: Redactor,
}

impl std::fmt::Debug for HttpTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTable").field("table", &self.config.table_name).finish_non_exhaustive()
    }
}

impl HttpTable {
    fn fetcher(&self, ctx: &ScanContext) -> Fetcher {
        Fetcher {
            state: self.state.clone(),
            config: self.config.server.clone(),
            auth: self.auth.clone(),
            credential: self.credential.clone(),
            redactor: self.redactor.clone(),
            cancel: ctx.cancel.clone(),
            deadline: ctx.deadline,
        }
    }

    fn writer(&self, ctx: &ScanContext) -> write::Writer<'_> {
        write::Writer { table: &self.config, fetcher: self.fetcher(ctx) }
    }
}

#[async_trait]
impl ForeignTable for HttpTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// `Inexact` for conditions filled into requests (pgfed re-checks them), `Exact` for `=`/IN
    /// on `exact` columns; see docs/connectors/http.md.
    fn pushdown(&self, qual: &Qual) -> Pushdown {
        plan::pushdown(&self.config.def, &self.config.server, qual)
    }

    /// The first-page request URLs, secrets redacted, the pagination and the limit.
    fn explain(&self, request: &ScanRequest) -> Vec<String> {
        match plan::plan(&self.config.def, &self.config.server, request, true) {
            Ok(p) => plan::explain(&self.config.def, &self.config.server, &p, &|u| match url::Url::parse(u) {
                Ok(u) => self.redactor.url(&u),
                Err(_) => self.redactor.scrub(u),
            }),
            Err(e) => vec![format!("HTTP requests: unavailable ({e})")],
        }
    }

    async fn scan(&self, request: ScanRequest, ctx: ScanContext) -> Result<BatchStream, ConnectorError> {
        let plan = plan::plan(&self.config.def, &self.config.server, &request, false)?;
        Ok(scan::scan(self.config.clone(), self.fetcher(&ctx), plan))
    }

    fn row_id_column(&self) -> Option<&str> {
        let writes = self.config.def.writes.as_ref()?;
        self.config.def.columns.get(writes.row_id?).map(|c| c.name.as_str())
    }

    async fn insert(
        &self,
        rows: RecordBatch,
        returning: &[String],
        ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        self.writer(ctx).insert(rows, returning).await
    }

    async fn update(
        &self,
        rows: RecordBatch,
        returning: &[String],
        ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        self.writer(ctx).update_or_delete(rows, returning, false).await
    }

    async fn delete(
        &self,
        row_ids: RecordBatch,
        returning: &[String],
        ctx: &ScanContext,
    ) -> Result<WriteResult, ConnectorError> {
        self.writer(ctx).update_or_delete(row_ids, returning, true).await
    }
}
