//! IMPORT FOREIGN SCHEMA from `system.columns`: one foreign table per remote table, each column
//! declared with the Postgres type of `ChType::import_type`, options naming the remote table,
//! database and columns. Columns of types pgfed cannot read are left out with a WARNING (or, with
//! no way to tell the user, fail the import).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgfed_connector_sdk::{
    ConnectorError, ImportRequest, ImportedColumn, ImportedTable, Notice, NoticeLevel, ScanContext,
};

use crate::quote_str;
use crate::types::ChType;

/// A TabSeparated field as its text (ClickHouse escapes `\t`, `\n`, `\\` and a few more).
pub(crate) fn unescape_tsv(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

pub(crate) async fn import(
    request: ImportRequest,
    ctx: Option<&ScanContext>,
) -> Result<Vec<ImportedTable>, ConnectorError> {
    let server = crate::parse_server(&request.server, &request.user_mapping)?;
    let conn = crate::client::connection(&server)?;
    let deadline = ctx
        .and_then(|c| c.deadline)
        .unwrap_or_else(|| Instant::now() + server.connect_timeout + Duration::from_secs(60));
    let db = quote_str(&request.remote_schema);
    let exists = conn.text(&format!("SELECT count() FROM system.databases WHERE name = {db}"), Some(deadline)).await?;
    if exists.trim() == "0" {
        return Err(ConnectorError::Remote {
            source_name: server.source_name(),
            code: Some("81 (3F000)".into()),
            message: format!("schema \"{}\" is not present on foreign server", request.remote_schema),
        });
    }
    let text = conn
        .text(
            &format!("SELECT table, name, type FROM system.columns WHERE database = {db} ORDER BY table"),
            Some(deadline),
        )
        .await?;
    let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split('\t');
        let (Some(t), Some(n), Some(ty)) = (parts.next(), parts.next(), parts.next()) else { continue };
        tables.entry(unescape_tsv(t)).or_default().push((unescape_tsv(n), unescape_tsv(ty)));
    }
    let mut out = Vec::new();
    for (table, columns) in tables {
        if let Some(only) = &request.limit_to
            && !only.contains(&table)
        {
            continue;
        }
        if request.except.contains(&table) {
            continue;
        }
        let mut imported = Vec::new();
        let mut skipped = Vec::new();
        for (name, ty) in columns {
            match ChType::parse(&ty).ok().and_then(|t| t.import_type()) {
                Some((pg_type, not_null)) => imported.push(ImportedColumn {
                    name: name.clone(),
                    pg_type,
                    not_null,
                    options: vec![("column_name".into(), name)],
                }),
                None => skipped.push(format!("\"{name}\" ({ty})")),
            }
        }
        if !skipped.is_empty() {
            let Some(ctx) = ctx else {
                return Err(ConnectorError::DataType {
                    column: format!("{table}.{}", skipped[0]),
                    reason: "remote type cannot be imported; leave the table out with EXCEPT or declare it by hand"
                        .into(),
                });
            };
            (ctx.notices)(Notice {
                level: NoticeLevel::Warning,
                message: format!(
                    "foreign table \"{table}\" imported without {} column(s) of unsupported types",
                    skipped.len()
                ),
                detail: Some(format!("Skipped: {}.", skipped.join(", "))),
                hint: Some(
                    "pgfed cannot read these ClickHouse types; cast them in a ClickHouse view to import them.".into(),
                ),
            });
        }
        out.push(ImportedTable {
            name: table.clone(),
            columns: imported,
            options: vec![("table".into(), table), ("database".into(), request.remote_schema.clone())],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_separated_escapes_are_undone() {
        assert_eq!(unescape_tsv("a\\tb\\\\c\\'d"), "a\tb\\c'd");
        assert_eq!(unescape_tsv("Enum8(\\'a\\' = 1)"), "Enum8('a' = 1)");
    }
}
