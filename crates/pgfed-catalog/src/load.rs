//! Reading the whole catalog into a [`Snapshot`], in four queries whatever its size.

use std::collections::{BTreeMap, HashMap};

use pgfed_session::UpstreamSession;

use crate::CatalogError;
use crate::model::{ForeignTable, Server, Snapshot};
use crate::store::table::{COLUMN_SELECT, GUARD_TRIGGER, column_from_row, column_options_from_json};
use crate::store::{catalog_present, number, options_from_json, query, text};

impl Snapshot {
    /// Reads servers and foreign tables (columns from the live shadows' pg_attribute). No user
    /// mapping options are read: they are fetched per statement through the client's session.
    /// Rows whose shadow was dropped behind pgfed's back, or lost its guard trigger, are skipped;
    /// so is a table whose column type was changed to one pgfed cannot carry (with a warning).
    /// An empty snapshot when the catalog was never bootstrapped.
    pub async fn load(session: &dyn UpstreamSession) -> Result<Snapshot, CatalogError> {
        if !catalog_present(session).await? {
            return Ok(Snapshot::default());
        }
        let mut servers = HashMap::new();
        let rows = query(
            session,
            "SELECT s.name, s.wrapper, pg_catalog.pg_get_userbyid(s.owner::oid)::text, s.options::text \
             FROM pgfed.servers s",
            &[],
        )
        .await?;
        for row in &rows {
            let server = Server {
                name: text(row, 0)?,
                wrapper: text(row, 1)?,
                owner: text(row, 2)?,
                options: options_from_json(&text(row, 3)?)?,
            };
            servers.insert(server.name.clone(), server);
        }
        // A live shadow: an ordinary table that still carries the guard trigger.
        let live = format!(
            "c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g \
             WHERE g.tgrelid = c.oid AND g.tgname = '{GUARD_TRIGGER}')"
        );
        let rows = query(
            session,
            &format!(
                "SELECT c.oid::text, n.nspname::text, c.relname::text, t.server, t.options::text, \
                 t.column_options::text FROM pgfed.foreign_tables t \
                 JOIN pg_catalog.pg_class c ON c.oid = t.shadow::oid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE {live}"
            ),
            &[],
        )
        .await?;
        let attributes = query(
            session,
            &format!(
                "SELECT a.attrelid::oid::text, {COLUMN_SELECT} FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid IN (SELECT c.oid FROM pgfed.foreign_tables t \
                 JOIN pg_catalog.pg_class c ON c.oid = t.shadow::oid WHERE {live}) \
                 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum"
            ),
            &[],
        )
        .await?;
        let mut by_table: HashMap<u32, Vec<&Vec<Option<String>>>> = HashMap::new();
        for row in &attributes {
            by_table.entry(number(row, 0)?).or_default().push(row);
        }
        let mut tables = HashMap::new();
        'tables: for row in &rows {
            let oid: u32 = number(row, 0)?;
            let (schema, name) = (text(row, 1)?, text(row, 2)?);
            let column_options: BTreeMap<i16, Vec<(String, String)>> = column_options_from_json(&text(row, 5)?)?;
            let mut columns = Vec::new();
            for attr in by_table.get(&oid).map(Vec::as_slice).unwrap_or_default() {
                match column_from_row(attr, 1, &name, &column_options) {
                    Ok(c) => columns.push(c),
                    Err(CatalogError::NotSupported(reason)) => {
                        tracing::warn!(schema, table = name, reason, "foreign table skipped");
                        continue 'tables;
                    }
                    Err(e) => return Err(e),
                }
            }
            let table = ForeignTable {
                schema: schema.clone(),
                name: name.clone(),
                shadow_oid: oid,
                server: text(row, 3)?,
                options: options_from_json(&text(row, 4)?)?,
                columns,
            };
            tables.insert((schema, name), table);
        }
        Ok(Snapshot { servers, tables })
    }
}
