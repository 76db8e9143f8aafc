//! SQL cursors over federated queries: `DECLARE c CURSOR FOR <query on foreign tables>`, then
//! `FETCH` and `CLOSE` (what psycopg named cursors, SQLAlchemy's `stream_results` and psql's
//! FETCH_COUNT send). A cursor holds the running engine stream; FETCH takes the next rows from
//! it. Cursors are forward-only and live until the transaction ends, as Postgres's NO SCROLL,
//! WITHOUT HOLD cursors do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::RecordBatch;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use pgfed_proxy::federation::{FedError, ResultColumns};
use pgfed_wire::PgError;
use sqlparser::ast::{CloseCursor, FetchDirection, Ident, Statement, Value};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// An open cursor.
pub(crate) struct Cursor {
    pub columns: ResultColumns,
    pub settings: pgfed_encode::TextSettings,
    pub rows: BoxStream<'static, Result<RecordBatch, FedError>>,
    /// Rows of a batch not fetched yet.
    pub held: Option<(RecordBatch, usize)>,
}

/// The session's cursors. A FETCH takes its cursor out while it runs.
#[derive(Default)]
pub(crate) struct Cursors {
    open: Mutex<HashMap<String, Option<Cursor>>>,
}

impl Cursors {
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).contains_key(name)
    }

    pub(crate) fn insert(&self, name: String, cursor: Cursor) -> Result<(), FedError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.contains_key(&name) {
            return Err(FedError::Pg(PgError::error("42P03", format!("cursor \"{name}\" already exists"))));
        }
        open.insert(name, Some(cursor));
        Ok(())
    }

    pub(crate) fn take(&self, name: &str) -> Result<Cursor, FedError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        match open.get_mut(name).and_then(Option::take) {
            Some(c) => Ok(c),
            None => Err(undefined(name)),
        }
    }

    /// Puts a cursor back after a FETCH (unless it was closed meanwhile).
    pub(crate) fn put_back(&self, name: &str, cursor: Cursor) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = open.get_mut(name) {
            *slot = Some(cursor);
        }
    }

    pub(crate) fn columns(&self, name: &str) -> Option<ResultColumns> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(name).and_then(|c| c.as_ref().map(|c| c.columns.clone()))
    }

    pub(crate) fn close(&self, name: Option<&str>) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        match name {
            Some(n) => {
                open.remove(n);
            }
            None => open.clear(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }
}

fn undefined(name: &str) -> FedError {
    FedError::Pg(PgError::error("34000", format!("cursor \"{name}\" does not exist")))
}

fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

/// What a cursor statement asks.
pub(crate) enum CursorStatement {
    /// `DECLARE name CURSOR FOR query`: the name and the query's text.
    Declare { name: String, query: String },
    /// `FETCH [FORWARD] n | NEXT | ALL [FROM | IN] name`: `None` is ALL.
    Fetch { name: String, count: Option<u64> },
    /// `CLOSE name | ALL`.
    Close { name: Option<String> },
}

/// The first keyword, lower-cased.
fn first_word(sql: &str) -> String {
    sql.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("").to_ascii_lowercase()
}

/// Whether `sql` is a FETCH or CLOSE of one of these cursors (cheap when it is not a cursor
/// statement at all).
pub(crate) fn names_cursor(sql: &str, cursors: &Cursors) -> bool {
    if cursors.is_empty() || !matches!(first_word(sql).as_str(), "fetch" | "close" | "move") {
        return false;
    }
    match parse(sql) {
        Some(Ok(CursorStatement::Fetch { name, .. })) => cursors.contains(&name),
        Some(Ok(CursorStatement::Close { name: Some(name) })) => cursors.contains(&name),
        Some(Ok(CursorStatement::Close { name: None })) => true,
        // MOVE and scrolling FETCHes of a pgfed cursor: refused in prepare.
        Some(Err(_)) => true,
        _ => false,
    }
}

/// Parses a cursor statement; `None` when `sql` is not one.
pub(crate) fn parse(sql: &str) -> Option<Result<CursorStatement, FedError>> {
    let word = first_word(sql);
    if !matches!(word.as_str(), "declare" | "fetch" | "close" | "move") {
        return None;
    }
    if word == "move" {
        return Some(Err(unsupported("MOVE")));
    }
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [statement] = statements.as_slice() else { return None };
    Some(match statement {
        Statement::Declare { stmts } => {
            let [d] = stmts.as_slice() else { return Some(Err(unsupported("DECLARE of several cursors"))) };
            let (Some(query), [name]) = (&d.for_query, d.names.as_slice()) else { return None };
            if d.hold == Some(true) {
                return Some(Err(unsupported("DECLARE ... WITH HOLD")));
            }
            if d.scroll == Some(true) {
                return Some(Err(unsupported("DECLARE ... SCROLL")));
            }
            if d.binary == Some(true) {
                return Some(Err(unsupported("DECLARE BINARY")));
            }
            Ok(CursorStatement::Declare { name: fold(name), query: query.to_string() })
        }
        Statement::Fetch { name, direction, into: None, .. } => {
            let count = |v: &Value| match v {
                Value::Number(n, _) => n.parse::<u64>().ok(),
                _ => None,
            };
            let n = match direction {
                FetchDirection::Next => Some(1),
                FetchDirection::All | FetchDirection::ForwardAll => None,
                FetchDirection::Forward { limit: None } => Some(1),
                FetchDirection::Count { limit } | FetchDirection::Forward { limit: Some(limit) } => {
                    match count(&limit.value) {
                        Some(n) => Some(n),
                        None => return Some(Err(unsupported("FETCH with a negative or non-constant count"))),
                    }
                }
                _ => return Some(Err(unsupported("FETCH in a direction other than forward (NO SCROLL cursor)"))),
            };
            Ok(CursorStatement::Fetch { name: fold(name), count: n })
        }
        Statement::Close { cursor } => Ok(CursorStatement::Close {
            name: match cursor {
                CloseCursor::All => None,
                CloseCursor::Specific { name } => Some(fold(name)),
            },
        }),
        _ => return None,
    })
}

fn unsupported(what: &str) -> FedError {
    FedError::Pg(PgError::error("0A000", format!("{what} is not supported on cursors over foreign tables")))
}

/// Takes up to `count` rows (all when `None`) from a cursor.
pub(crate) async fn fetch(cursor: &mut Cursor, count: Option<u64>) -> Result<(Vec<RecordBatch>, u64), FedError> {
    let mut budget = count.unwrap_or(u64::MAX);
    let mut out = Vec::new();
    let mut taken = 0u64;
    while budget > 0 {
        let (batch, offset) = match cursor.held.take() {
            Some(h) => h,
            None => match cursor.rows.next().await {
                Some(b) => (b?, 0),
                None => break,
            },
        };
        let available = (batch.num_rows() - offset) as u64;
        let take = available.min(budget) as usize;
        if take > 0 {
            out.push(batch.slice(offset, take));
        }
        taken += take as u64;
        budget -= take as u64;
        if offset + take < batch.num_rows() {
            cursor.held = Some((batch, offset + take));
        }
    }
    Ok((out, taken))
}

/// A shareable handle on the session's cursors.
pub(crate) type SharedCursors = Arc<Cursors>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_statements_parse() {
        match parse("DECLARE \"Cur\" CURSOR WITHOUT HOLD FOR SELECT id FROM t WHERE id > $1") {
            Some(Ok(CursorStatement::Declare { name, query })) => {
                assert_eq!(name, "Cur");
                assert!(query.contains("$1"), "{query}");
            }
            _ => panic!("declare"),
        }
        assert!(matches!(parse("fetch forward 500 from c"), Some(Ok(CursorStatement::Fetch { count: Some(500), .. }))));
        assert!(matches!(parse("FETCH ALL IN c"), Some(Ok(CursorStatement::Fetch { count: None, .. }))));
        assert!(matches!(parse("FETCH 3 FROM c"), Some(Ok(CursorStatement::Fetch { count: Some(3), .. }))));
        assert!(matches!(parse("FETCH NEXT FROM c"), Some(Ok(CursorStatement::Fetch { count: Some(1), .. }))));
        assert!(matches!(parse("FETCH PRIOR FROM c"), Some(Err(_))));
        assert!(matches!(parse("CLOSE c"), Some(Ok(CursorStatement::Close { name: Some(_) }))));
        assert!(matches!(parse("CLOSE ALL"), Some(Ok(CursorStatement::Close { name: None }))));
        assert!(matches!(parse("DECLARE c CURSOR WITH HOLD FOR SELECT 1"), Some(Err(_))));
        assert!(parse("SELECT 1").is_none());
    }
}
