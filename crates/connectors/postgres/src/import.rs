//! IMPORT FOREIGN SCHEMA: the remote schema's tables, views, foreign tables, materialized views
//! and partitioned tables (not partitions, as postgres_fdw), read from pg_catalog, with each
//! column declared by `format_type` of its remote type and typmod.
//!
//! A column whose type pgfed cannot hold (no [`PgType::from_oid`], or an array, which the scan
//! does not decode yet) is left out and the table imported without it; the caller learns which
//! (a WARNING through `import_schema_in`, an error through the context-free `import_schema`).
//! Leaving the table out instead would hide every other column; importing the column would
//! give a table whose scans fail.

use std::time::Instant;

use pgfed_connector_sdk::{ConnectorError, ImportRequest, ImportedColumn, ImportedTable};
use pgfed_encode::PgType;
use tokio_util::sync::CancellationToken;

use crate::conn::{ConnKey, Pool, watched};

/// A column left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skipped {
    pub table: String,
    pub column: String,
    pub remote_type: String,
}

// Domains are declared as their base type (one level): the domain does not exist locally, and
// its constraints are the remote server's to enforce on writes.
const COLUMNS_SQL: &str = "\
SELECT c.relname, a.attname, \
       CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END AS type_oid, \
       pg_catalog.format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, \
                              CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) AS type_name, \
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS declared_type, \
       a.attnotnull \
FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'f', 'm', 'p') AND NOT c.relispartition \
  AND ($2::pg_catalog.text[] IS NULL OR c.relname = ANY ($2::pg_catalog.text[])) \
  AND NOT (c.relname = ANY ($3::pg_catalog.text[])) \
ORDER BY c.relname, a.attnum";

/// Whether the connector reads this type (the decoders in `decode.rs`).
fn readable(pg_type: &PgType) -> bool {
    !matches!(pg_type, PgType::Array(_))
}

pub(crate) async fn import(
    pool: &Pool,
    key: &ConnKey,
    request: &ImportRequest,
    cancel: &CancellationToken,
    deadline: Option<Instant>,
) -> Result<(Vec<ImportedTable>, Vec<Skipped>), ConnectorError> {
    let errors = key.server.errors(format!("schema {}", request.remote_schema));
    let conn = pool.get(key, &errors, cancel, deadline).await?;
    let client = &conn.client;
    let schema_exists = watched(
        cancel,
        deadline,
        client.query_opt("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", &[&request.remote_schema]),
    )
    .await?
    .map_err(|e| errors.remote(&e))?;
    if schema_exists.is_none() {
        // postgres_fdw's wording; its SQLSTATE (HV00Q) has no ConnectorError variant.
        return Err(errors
            .server_error("HV00Q", &format!("schema \"{}\" is not present on foreign server", request.remote_schema)));
    }
    let rows = watched(
        cancel,
        deadline,
        client.query(COLUMNS_SQL, &[&request.remote_schema, &request.limit_to, &request.except]),
    )
    .await?
    .map_err(|e| errors.remote(&e))?;
    pool.put(key.clone(), conn);

    let mut tables: Vec<ImportedTable> = Vec::new();
    let mut skipped = Vec::new();
    for row in rows {
        let table: String = row.get(0);
        if tables.last().is_none_or(|t| t.name != table) {
            tables.push(ImportedTable {
                name: table.clone(),
                columns: Vec::new(),
                // Both always, as postgres_fdw: the mapping survives renaming the local table.
                options: vec![
                    ("schema_name".into(), request.remote_schema.clone()),
                    ("table_name".into(), table.clone()),
                ],
            });
        }
        // A table without columns gives one row of NULLs (the LEFT JOIN).
        let Some(column) = row.get::<_, Option<String>>(1) else { continue };
        let type_oid: u32 = row.get(2);
        let type_name: String = row.get(3);
        match PgType::from_oid(type_oid) {
            Some(pg_type) if readable(&pg_type) => {
                let imported = ImportedColumn {
                    options: vec![("column_name".into(), column.clone())],
                    name: column,
                    pg_type: type_name,
                    not_null: row.get(5),
                };
                if let Some(t) = tables.last_mut() {
                    t.columns.push(imported);
                }
            }
            _ => skipped.push(Skipped { table, column, remote_type: row.get(4) }),
        }
    }
    Ok((tables, skipped))
}

// Single-column unique keys on NOT NULL columns, the primary key first: any of them identifies
// a row for UPDATE and DELETE.
const KEY_SQL: &str = "\
SELECT a.attname \
FROM pg_catalog.pg_index i \
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
WHERE n.nspname = $1 AND c.relname = $2 AND i.indnkeyatts = 1 AND i.indisunique AND i.indisvalid \
  AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attnotnull \
ORDER BY i.indisprimary DESC, i.indexrelid";

/// The remote columns that each identify a row (see `KEY_SQL`), cached in the pool for a minute.
pub(crate) async fn unique_keys(
    pool: &Pool,
    key: &ConnKey,
    schema: &str,
    table: &str,
    cancel: &CancellationToken,
) -> Result<Vec<String>, ConnectorError> {
    if let Some(columns) = pool.cached_keys(key, schema, table) {
        return Ok(columns);
    }
    let errors = key.server.errors(format!("{schema}.{table}"));
    let conn = pool.get(key, &errors, cancel, None).await?;
    let rows =
        watched(cancel, None, conn.client.query(KEY_SQL, &[&schema, &table])).await?.map_err(|e| errors.remote(&e))?;
    pool.put(key.clone(), conn);
    let columns: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    pool.cache_keys(key, schema, table, columns.clone());
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_not_readable_yet_scalars_are() {
        assert!(readable(&PgType::Interval) && readable(&PgType::Numeric));
        assert!(!readable(&PgType::Int4.array_of()));
    }
}
