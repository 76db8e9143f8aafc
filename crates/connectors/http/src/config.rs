//! Server, user-mapping, table and column options, parsed into what a scan or write needs.
//! Nothing here contacts the API; errors name options, never their values.

use std::sync::Arc;
use std::time::Duration;

use arrow_schema::Field;
use pgfed_connector_sdk::{ConnectorError, OpenRequest, OptionLevel, Options};
use reqwest::header::{HeaderName, HeaderValue};
use url::Url;

use crate::convert::{ColType, ParamFormat};
use crate::jsonpath::JsonPath;

fn invalid(name: &str, reason: impl Into<String>) -> ConnectorError {
    ConnectorError::InvalidOptionValue { name: name.into(), reason: reason.into() }
}

fn positive<T: std::str::FromStr + Default + PartialEq>(o: &Options, name: &str) -> Result<Option<T>, ConnectorError> {
    match o.parse::<T>(name, "a positive whole number")? {
        Some(v) if v == T::default() => Err(invalid(name, "must be positive")),
        v => Ok(v),
    }
}

fn seconds(o: &Options, name: &str) -> Result<Option<Duration>, ConnectorError> {
    match o.parse::<f64>(name, "a number of seconds")? {
        Some(s) if !(0.0..1e9).contains(&s) => Err(invalid(name, "expected a number of seconds")),
        Some(s) => Ok(Some(Duration::from_secs_f64(s))),
        None => Ok(None),
    }
}

/// How requests authenticate (user mapping). `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) enum Auth {
    #[default]
    None,
    Bearer(String),
    Basic {
        user: String,
        password: Option<String>,
    },
    Header {
        name: HeaderName,
        value: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Bearer(_) => "Bearer(********)",
            Auth::Basic { .. } => "Basic(********)",
            Auth::Header { .. } => "Header(********)",
        })
    }
}

impl Auth {
    pub fn parse(um: &Options) -> Result<Self, ConnectorError> {
        let given = [um.get("bearer_token").is_some(), um.get("user").is_some(), um.get("header_name").is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(invalid("bearer_token", "give one of bearer_token, user (basic auth) or header_name"));
        }
        if um.get("password").is_some() && um.get("user").is_none() {
            return Err(ConnectorError::MissingOption {
                name: "user".into(),
                level: OptionLevel::UserMapping.as_str(),
            });
        }
        if um.get("header_value").is_some() != um.get("header_name").is_some() {
            let missing = if um.get("header_name").is_some() { "header_value" } else { "header_name" };
            return Err(ConnectorError::MissingOption {
                name: missing.into(),
                level: OptionLevel::UserMapping.as_str(),
            });
        }
        if let Some(token) = um.get("bearer_token") {
            HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| invalid("bearer_token", "not a valid header value"))?;
            return Ok(Auth::Bearer(token.to_string()));
        }
        if let Some(user) = um.get("user") {
            return Ok(Auth::Basic { user: user.to_string(), password: um.get("password").map(str::to_string) });
        }
        if let (Some(name), Some(value)) = (um.get("header_name"), um.get("header_value")) {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("header_name", "not a header name"))?;
            HeaderValue::from_str(value).map_err(|_| invalid("header_value", "not a valid header value"))?;
            return Ok(Auth::Header { name, value: value.to_string() });
        }
        Ok(Auth::None)
    }

    /// Secret texts to scrub from anything shown (error snippets, URLs).
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Auth::None => vec![],
            Auth::Bearer(t) => vec![t.clone()],
            Auth::Basic { password, .. } => password.iter().cloned().collect(),
            Auth::Header { value, .. } => vec![value.clone()],
        }
    }
}

/// Server options.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    /// Without a trailing slash; table paths are appended to it.
    pub base_url: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retries: u32,
    /// Requests per second, shared by every session using this server.
    pub rate_limit: Option<f64>,
    pub max_pages: u32,
    pub tls_verify: bool,
    pub ca_file: Option<String>,
    pub cache_ttl: Option<Duration>,
    pub max_response_size: u64,
    /// At most this many requests for one scan's IN lists.
    pub max_requests: u32,
}

impl ServerConfig {
    pub fn parse(o: &Options) -> Result<Self, ConnectorError> {
        let base = o
            .get("base_url")
            .ok_or(ConnectorError::MissingOption { name: "base_url".into(), level: OptionLevel::Server.as_str() })?;
        let url = Url::parse(base).map_err(|_| invalid("base_url", "not an absolute URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("base_url", "expected an http or https URL without query or fragment"));
        }
        let headers = match o.get("headers") {
            None => Vec::new(),
            Some(text) => {
                let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
                    .map_err(|_| invalid("headers", "expected a JSON object of header names to strings"))?;
                map.into_iter()
                    .map(|(k, v)| {
                        let name =
                            HeaderName::from_bytes(k.as_bytes()).map_err(|_| invalid("headers", "a bad name"))?;
                        let v = v.as_str().ok_or_else(|| invalid("headers", "values must be strings"))?;
                        let value = HeaderValue::from_str(v).map_err(|_| invalid("headers", "a bad value"))?;
                        Ok((name, value))
                    })
                    .collect::<Result<_, ConnectorError>>()?
            }
        };
        let rate_limit = match o.parse::<f64>("rate_limit", "requests per second")? {
            Some(r) if !(r.is_finite() && r > 0.0) => return Err(invalid("rate_limit", "must be positive")),
            r => r,
        };
        Ok(ServerConfig {
            base_url: base.trim_end_matches('/').to_string(),
            headers,
            timeout: seconds(o, "timeout")?.unwrap_or(Duration::from_secs(30)),
            connect_timeout: seconds(o, "connect_timeout")?.unwrap_or(Duration::from_secs(10)),
            retries: o.parse::<u32>("retries", "a whole number")?.unwrap_or(2),
            rate_limit,
            max_pages: positive(o, "max_pages")?.unwrap_or(10_000),
            tls_verify: o.flag("tls_verify")?.unwrap_or(true),
            ca_file: o.get("ca_file").map(str::to_string),
            cache_ttl: seconds(o, "cache_ttl")?.filter(|d| !d.is_zero()),
            max_response_size: positive(o, "max_response_size")?.unwrap_or(16 << 20),
            max_requests: positive(o, "max_requests")?.unwrap_or(100),
        })
    }
}

/// A `path` template: literal text and `{column}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Literal(String),
    /// Index into the table's columns.
    Column(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub parts: Vec<Part>,
}

impl Template {
    pub fn parse(option: &str, text: &str, columns: &[ColumnDef]) -> Result<Self, ConnectorError> {
        if !text.starts_with('/') {
            return Err(invalid(option, "must start with /"));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or_else(|| invalid(option, "a { without }"))? + open;
            let name = &rest[open + 1..close];
            let index = columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| invalid(option, "a {placeholder} must name a declared column"))?;
            parts.push(Part::Column(index));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(invalid(option, "a } without {"));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    pub fn columns(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Column(c) => Some(*c),
            Part::Literal(_) => None,
        })
    }
}

/// How the next page is found (table option `pagination`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pagination {
    None,
    /// The next page's URL at a body path.
    NextLink {
        path: JsonPath,
    },
    /// `Link: <...>; rel="next"`.
    LinkHeader,
    /// `page=n`, from `start`.
    Page {
        param: String,
        start: u64,
    },
    /// `offset=n`, advanced by the rows received.
    Offset {
        param: String,
    },
    /// `cursor=<value at a body path>`.
    Cursor {
        param: String,
        path: JsonPath,
    },
}

/// One declared column.
#[derive(Debug, Clone)]
pub(crate) struct ColumnDef {
    pub name: String,
    pub ty: ColType,
    /// The declared field (type and NOT NULL), as batches must carry it.
    pub field: Field,
    pub path: JsonPath,
    /// Query parameter for `=` and IN.
    pub param: Option<String>,
    pub param_gt: Option<String>,
    pub param_gte: Option<String>,
    pub param_lt: Option<String>,
    pub param_lte: Option<String>,
    pub param_format: ParamFormat,
    /// `=` / IN filled into the request are exact (the API matches exactly as Postgres would).
    pub exact: bool,
    /// A value that does not convert is NULL instead of an error.
    pub lenient: bool,
}

/// Table options.
#[derive(Debug, Clone)]
pub(crate) struct TableDef {
    pub columns: Vec<ColumnDef>,
    pub path: Template,
    pub rows: JsonPath,
    pub pagination: Pagination,
    pub page_size_param: Option<String>,
    pub page_size: Option<u64>,
    pub max_pages: Option<u32>,
    /// IN lists as one comma-separated value instead of one request per value.
    pub in_comma: bool,
    pub fields_param: Option<String>,
    pub writes: Option<WriteDef>,
}

/// Write options of a table with `writable 'true'`.
#[derive(Debug, Clone)]
pub(crate) struct WriteDef {
    pub insert_path: Option<Template>,
    pub row_path: Option<Template>,
    /// The column named by `row_path`'s placeholder.
    pub row_id: Option<usize>,
    pub put: bool,
    pub response_row: JsonPath,
}

fn json_path(o: &Options, name: &str) -> Result<Option<JsonPath>, ConnectorError> {
    o.get(name).map(|p| JsonPath::parse(p).map_err(|e| invalid(name, e))).transpose()
}

fn column_def(field: &Field, o: &Options) -> Result<ColumnDef, ConnectorError> {
    let json = o.flag("json")?.unwrap_or(false);
    let ty = ColType::from_arrow(field.data_type(), json).ok_or_else(|| ConnectorError::DataType {
        column: field.name().clone(),
        reason: format!(
            "type {} is not supported by the http wrapper (text, varchar, json, jsonb, smallint, integer, \
             bigint, numeric, real, double precision, boolean, date, timestamp, timestamptz are)",
            field.data_type()
        ),
    })?;
    let param_format = match o.get("param_format") {
        None | Some("iso") => ParamFormat::Iso,
        Some("epoch") => ParamFormat::Epoch,
        Some(_) => return Err(invalid("param_format", "expected iso or epoch")),
    };
    let text = |n: &str| o.get(n).map(str::to_string);
    Ok(ColumnDef {
        name: field.name().clone(),
        ty,
        field: field.clone(),
        path: json_path(o, "path")?.unwrap_or_else(|| JsonPath::key(field.name())),
        param: text("param"),
        param_gt: text("param_gt"),
        param_gte: text("param_gte"),
        param_lt: text("param_lt"),
        param_lte: text("param_lte"),
        param_format,
        exact: o.flag("exact")?.unwrap_or(false),
        lenient: o.flag("lenient")?.unwrap_or(false),
    })
}

impl TableDef {
    pub fn parse(request: &OpenRequest) -> Result<Self, ConnectorError> {
        let t = &request.table;
        let columns: Vec<ColumnDef> =
            request.columns.iter().map(|(f, o)| column_def(f, o)).collect::<Result<_, _>>()?;
        let path_text = t
            .get("path")
            .ok_or(ConnectorError::MissingOption { name: "path".into(), level: OptionLevel::Table.as_str() })?;
        let path = Template::parse("path", path_text, &columns)?;
        let name = |n: &str, default: &str| t.get(n).unwrap_or(default).to_string();
        let pagination = match t.get("pagination") {
            None | Some("none") => Pagination::None,
            Some("next_link") => {
                Pagination::NextLink { path: json_path(t, "next_path")?.unwrap_or(JsonPath::key("next")) }
            }
            Some("link_header") => Pagination::LinkHeader,
            Some("page") => Pagination::Page {
                param: name("page_param", "page"),
                start: t.parse::<u64>("page_start", "a whole number")?.unwrap_or(1),
            },
            Some("offset") => Pagination::Offset { param: name("offset_param", "offset") },
            Some("cursor") => Pagination::Cursor {
                param: name("cursor_param", "cursor"),
                path: json_path(t, "cursor_path")?.ok_or(ConnectorError::MissingOption {
                    name: "cursor_path".into(),
                    level: OptionLevel::Table.as_str(),
                })?,
            },
            Some(_) => {
                return Err(invalid("pagination", "expected none, next_link, link_header, page, offset or cursor"));
            }
        };
        let in_comma = match t.get("in_style") {
            None | Some("requests") => false,
            Some("comma") => true,
            Some(_) => return Err(invalid("in_style", "expected requests or comma")),
        };
        let page_size = positive::<u64>(t, "page_size")?;
        let page_size_param = t.get("page_size_param").map(str::to_string);
        if page_size_param.is_some() && page_size.is_none() {
            return Err(ConnectorError::MissingOption { name: "page_size".into(), level: OptionLevel::Table.as_str() });
        }
        let writes = if t.flag("writable")?.unwrap_or(false) {
            let template = |n: &str| t.get(n).map(|p| Template::parse(n, p, &columns)).transpose();
            let row_path = template("row_path")?;
            let row_id = match &row_path {
                Some(rp) => {
                    let ids: Vec<usize> = rp.columns().collect();
                    if ids.len() != 1 {
                        return Err(invalid("row_path", "must hold exactly one {column} placeholder (the row id)"));
                    }
                    ids.first().copied()
                }
                None => None,
            };
            let insert_path = match template("insert_path")? {
                Some(p) => Some(p),
                None if path.columns().next().is_none() => Some(path.clone()),
                None => None,
            };
            let put = match t.get("update_method").map(str::to_ascii_uppercase).as_deref() {
                None | Some("PATCH") => false,
                Some("PUT") => true,
                Some(_) => return Err(invalid("update_method", "expected PATCH or PUT")),
            };
            Some(WriteDef {
                insert_path,
                row_path,
                row_id,
                put,
                response_row: json_path(t, "response_row")?.unwrap_or_default(),
            })
        } else {
            None
        };
        Ok(TableDef {
            columns,
            path,
            rows: json_path(t, "rows")?.unwrap_or_default(),
            pagination,
            page_size_param,
            page_size,
            max_pages: positive(t, "max_pages")?,
            in_comma,
            fields_param: t.get("fields_param").map(str::to_string),
            writes,
        })
    }

    pub fn column(&self, name: &str) -> Option<(usize, &ColumnDef)> {
        self.columns.iter().enumerate().find(|(_, c)| c.name == name)
    }
}

/// Everything one open table needs, shared by its scans.
#[derive(Debug)]
pub(crate) struct TableConfig {
    pub table_name: String,
    pub server: Arc<ServerConfig>,
    pub def: TableDef,
}
