//! Which quals become requests, and the requests a scan makes (first pages; pagination adds the
//! rest as the scan runs).
//!
//! `=` and IN on a column named by a `{column}` placeholder or a `param` option fill the path or a
//! query parameter; IN makes one request per value, or one comma-separated value with
//! `in_style 'comma'`. Several conditions on one such column intersect. Range conditions fill
//! `param_gt`/`param_gte`/`param_lt`/`param_lte`; a strict bound may use the inclusive parameter
//! (a superset), never the other way round. Each request's rows are then checked in the connector
//! against the values that request asked for, so an API that ignores a parameter cannot return a
//! row twice for two IN values (nor a row that was not asked for, where a column is `exact`).

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use pgfed_connector_sdk::{ConnectorError, Operator, Pushdown, Qual, QualValue, ScanRequest};
use url::Url;

use crate::config::{ColumnDef, Pagination, Part, ServerConfig, TableDef, Template};
use crate::convert::{ParamFormat, Scalar, param_text, value_to_scalar};

/// Everything but RFC 3986's unreserved characters is encoded in a path placeholder, so a value
/// can never add a path segment (`/`), a query (`?`) or a fragment (`#`).
const PATH_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Whether the table applies `qual` (see the module doc).
pub(crate) fn pushdown(def: &TableDef, server: &ServerConfig, qual: &Qual) -> Pushdown {
    let Some((index, c)) = def.column(&qual.column) else {
        return Pushdown::Unsupported;
    };
    let keyed = def.path.columns().any(|p| p == index) || c.param.is_some();
    let converts = |v| value_to_scalar(v, &c.ty).is_some();
    let eq = if c.exact { Pushdown::Exact } else { Pushdown::Inexact };
    match (qual.operator, &qual.value) {
        (Operator::Eq, QualValue::One(v)) if keyed && converts(v) => eq,
        (Operator::Eq, QualValue::Any(vs))
            if keyed
                && !vs.is_empty()
                && (def.in_comma || vs.len() <= server.max_requests as usize)
                && vs.iter().all(|v| converts(v) || *v == pgfed_connector_sdk::Value::Null) =>
        {
            eq
        }
        (op, QualValue::One(v)) if range_param(c, op).is_some() && converts(v) => Pushdown::Inexact,
        _ => Pushdown::Unsupported,
    }
}

/// The parameter a range condition fills: a strict bound may use the inclusive parameter.
fn range_param(c: &ColumnDef, op: Operator) -> Option<&str> {
    match op {
        Operator::Gt => c.param_gt.as_deref().or(c.param_gte.as_deref()),
        Operator::GtEq => c.param_gte.as_deref(),
        Operator::Lt => c.param_lt.as_deref().or(c.param_lte.as_deref()),
        Operator::LtEq => c.param_lte.as_deref(),
        _ => None,
    }
}

/// One first-page request and what its rows must satisfy.
#[derive(Debug, Clone)]
pub(crate) struct PlannedRequest {
    pub url: Url,
    /// `(column, values)`: the row's value must be one of these; a row without the field gets
    /// the value when there is exactly one (`/users/{id}/posts` rows rarely repeat the id).
    pub constraints: Vec<(usize, Vec<Scalar<'static>>)>,
}

#[derive(Debug, Clone)]
pub(crate) struct ScanPlan {
    pub requests: Vec<PlannedRequest>,
    /// Indexes of the requested columns, in request order.
    pub columns: Vec<usize>,
    pub limit: Option<u64>,
    /// Rows asked per page (`page_size`, smaller when a limit is smaller).
    pub page_size: Option<u64>,
}

fn render_template(
    base: &str,
    template: &Template,
    values: &BTreeMap<usize, String>,
    def: &TableDef,
    explain: bool,
) -> Result<Url, ConnectorError> {
    let mut text = base.to_string();
    for part in &template.parts {
        match part {
            Part::Literal(l) => text.push_str(l),
            Part::Column(c) => match values.get(c) {
                Some(v) => text.push_str(v),
                // EXPLAIN of a scan whose key comes at run time (join keys): the template.
                None if explain => {
                    let name = def.columns.get(*c).map_or("?", |c| c.name.as_str());
                    text.push_str(&format!("{{{name}}}"));
                }
                None => {
                    let name = def.columns.get(*c).map_or("?", |c| c.name.as_str());
                    return Err(ConnectorError::NotSupported(format!(
                        "a scan without an equality condition on column \"{name}\" (its path has {{{name}}})"
                    )));
                }
            },
        }
    }
    Url::parse(&text).map_err(|e| ConnectorError::Internal(format!("building a request URL: {e}")))
}

/// A row-id path for a write: the placeholder filled with `value`.
pub(crate) fn row_url(
    server: &ServerConfig,
    def: &TableDef,
    template: &Template,
    column: usize,
    value: &str,
) -> Result<Url, ConnectorError> {
    let mut values = BTreeMap::new();
    values.insert(column, utf8_percent_encode(value, PATH_VALUE).to_string());
    render_template(&server.base_url, template, &values, def, false)
}

pub(crate) fn template_url(server: &ServerConfig, def: &TableDef, template: &Template) -> Result<Url, ConnectorError> {
    render_template(&server.base_url, template, &BTreeMap::new(), def, false)
}

/// The requests of a scan (see the module doc). Conditions that cannot hold give no requests.
/// `explain`: a placeholder without a condition stays `{column}` (its value may come from a join
/// at run time) instead of failing the plan.
pub(crate) fn plan(
    def: &TableDef,
    server: &ServerConfig,
    request: &ScanRequest,
    explain: bool,
) -> Result<ScanPlan, ConnectorError> {
    let columns = request
        .columns
        .iter()
        .map(|n| def.column(n).map(|(i, _)| i).ok_or_else(|| ConnectorError::ColumnNotFound(n.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    // Equality sets per column (intersected), and range parameters (the first per name).
    let mut sets: BTreeMap<usize, Vec<Scalar<'static>>> = BTreeMap::new();
    let mut ranges: Vec<(String, String)> = Vec::new();
    for qual in &request.quals {
        let Some((index, c)) = def.column(&qual.column) else { continue };
        if pushdown(def, server, qual) == Pushdown::Unsupported {
            continue;
        }
        match (qual.operator, &qual.value) {
            (Operator::Eq, QualValue::One(_) | QualValue::Any(_)) => {
                let values: Vec<&pgfed_connector_sdk::Value> = match &qual.value {
                    QualValue::One(v) => vec![v],
                    QualValue::Any(vs) => vs.iter().collect(),
                    _ => continue,
                };
                let mut scalars: Vec<Scalar<'static>> = Vec::new();
                for v in values.iter().filter_map(|v| value_to_scalar(v, &c.ty)) {
                    if !scalars.contains(&v) {
                        scalars.push(v);
                    }
                }
                let set = sets.entry(index).or_insert_with(|| scalars.clone());
                set.retain(|v| scalars.contains(v));
            }
            (op, QualValue::One(v)) => {
                let (Some(param), Some(s)) = (range_param(c, op), value_to_scalar(v, &c.ty)) else { continue };
                if ranges.iter().any(|(p, _)| p == param) {
                    continue;
                }
                if let Some(text) = bound_text(op, s, c) {
                    ranges.push((param.to_string(), text));
                }
            }
            _ => {}
        }
    }
    let limit = request.limit;
    let page_size = match (def.page_size, limit) {
        (Some(size), Some(limit)) if def.page_size_param.is_some() => Some(size.min(limit.max(1))),
        (size, _) => size,
    };
    if sets.values().any(Vec::is_empty) || limit == Some(0) {
        return Ok(ScanPlan { requests: Vec::new(), columns, limit, page_size });
    }
    // One combination per request: the cartesian product of the sets, or one comma list each.
    let mut combos: Vec<Vec<(usize, Vec<Scalar<'static>>)>> = vec![Vec::new()];
    for (column, set) in &sets {
        if def.in_comma {
            combos.iter_mut().for_each(|combo| combo.push((*column, set.clone())));
        } else {
            let mut next = Vec::with_capacity(combos.len() * set.len());
            for combo in &combos {
                for value in set {
                    let mut c = combo.clone();
                    c.push((*column, vec![value.clone()]));
                    next.push(c);
                }
            }
            combos = next;
        }
        if combos.len() > server.max_requests as usize {
            return Err(ConnectorError::NotSupported(format!(
                "a scan needing more than {} requests (max_requests)",
                server.max_requests
            )));
        }
    }
    let mut requests = Vec::with_capacity(combos.len());
    for combo in combos {
        let mut path_values = BTreeMap::new();
        let mut query: Vec<(String, String)> = Vec::new();
        for (column, values) in &combo {
            let Some(c) = def.columns.get(*column) else { continue };
            let texts: Vec<String> = values.iter().filter_map(|v| param_text(v, &c.ty, c.param_format)).collect();
            if def.path.columns().any(|p| p == *column) {
                let encoded: Vec<String> =
                    texts.iter().map(|t| utf8_percent_encode(t, PATH_VALUE).to_string()).collect();
                path_values.insert(*column, encoded.join(","));
            }
            if let Some(param) = &c.param {
                query.push((param.clone(), texts.join(",")));
            }
        }
        let mut url = render_template(&server.base_url, &def.path, &path_values, def, explain)?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query.iter().chain(&ranges) {
                pairs.append_pair(k, v);
            }
            if let Some(param) = &def.fields_param {
                let mut names: Vec<&str> = Vec::new();
                for c in columns.iter().filter_map(|i| def.columns.get(*i)) {
                    if let Some(k) = c.path.first_key().filter(|k| !names.contains(k)) {
                        names.push(k);
                    }
                }
                if !names.is_empty() {
                    pairs.append_pair(param, &names.join(","));
                }
            }
            if let (Some(param), Some(size)) = (&def.page_size_param, page_size) {
                pairs.append_pair(param, &size.to_string());
            }
        }
        // `query_pairs_mut` leaves an empty `?` when nothing was added.
        if url.query() == Some("") {
            url.set_query(None);
        }
        requests.push(PlannedRequest { url, constraints: combo });
    }
    Ok(ScanPlan { requests, columns, limit, page_size })
}

/// A range bound as parameter text. With `param_format 'epoch'` a timestamp's fraction of a
/// second is cut toward the side that keeps the request a superset: down for lower bounds, up
/// for upper ones.
fn bound_text(op: Operator, s: Scalar<'static>, c: &ColumnDef) -> Option<String> {
    match (s, c.param_format, op) {
        (Scalar::Timestamp(us), ParamFormat::Epoch, Operator::Lt | Operator::LtEq) => {
            Some(us.div_euclid(1_000_000).checked_add(i64::from(us.rem_euclid(1_000_000) != 0))?.to_string())
        }
        (s, format, _) => param_text(&s, &c.ty, format),
    }
}

/// The first-page URL of a request, with the pagination parameters of page `n` (0-based).
pub(crate) fn page_url(def: &TableDef, first: &Url, start_value: Option<String>) -> Url {
    let mut url = first.clone();
    let param = match &def.pagination {
        Pagination::Page { param, .. } | Pagination::Offset { param } | Pagination::Cursor { param, .. } => param,
        Pagination::None | Pagination::NextLink { .. } | Pagination::LinkHeader => return url,
    };
    if let Some(v) = start_value {
        url.query_pairs_mut().append_pair(param, &v);
    }
    url
}

/// What EXPLAIN shows: the first-page URLs, pagination and limit.
pub(crate) fn explain(
    def: &TableDef,
    server: &ServerConfig,
    plan: &ScanPlan,
    redact: &dyn Fn(&str) -> String,
) -> Vec<String> {
    const SHOWN: usize = 10;
    let mut lines = Vec::new();
    for r in plan.requests.iter().take(SHOWN) {
        // Braces of a `{column}` left for run time were percent-encoded by the URL parser.
        let shown = redact(first_page(def, &r.url).as_str()).replace("%7B", "{").replace("%7D", "}");
        lines.push(format!("GET {shown}"));
    }
    if plan.requests.len() > SHOWN {
        lines.push(format!("... and {} more requests", plan.requests.len() - SHOWN));
    }
    if plan.requests.is_empty() {
        lines.push("no requests (the conditions cannot hold)".into());
    }
    let max_pages = def.max_pages.unwrap_or(server.max_pages);
    let pagination = match &def.pagination {
        Pagination::None => None,
        Pagination::NextLink { path } => Some(format!("next link at {path}")),
        Pagination::LinkHeader => Some("Link header rel=\"next\"".into()),
        Pagination::Page { param, .. } => Some(format!("page parameter \"{param}\"")),
        Pagination::Offset { param } => Some(format!("offset parameter \"{param}\"")),
        Pagination::Cursor { param, path } => Some(format!("cursor parameter \"{param}\" from {path}")),
    };
    if let Some(p) = pagination {
        lines.push(format!("pagination: {p}, at most {max_pages} pages"));
    }
    if let Some(limit) = plan.limit {
        lines.push(format!("limit: {limit} rows (paging stops there)"));
    }
    lines
}

/// The URL of a request's first page.
pub(crate) fn first_page(def: &TableDef, url: &Url) -> Url {
    let start = match &def.pagination {
        Pagination::Page { start, .. } => Some(start.to_string()),
        Pagination::Offset { .. } => Some("0".to_string()),
        _ => None,
    };
    page_url(def, url, start)
}
