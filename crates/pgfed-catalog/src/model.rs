//! The catalog as pgfed holds it in memory. Secrets (user mappings) are not here: they are read per
//! statement through the client's own session, where row-level security shows each role only its
//! own.

use std::collections::HashMap;

use pgfed_encode::PgType;

/// `CREATE SERVER name FOREIGN DATA WRAPPER wrapper OPTIONS (...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    /// The connector kind (`postgres`, `clickhouse`, `http`, ...).
    pub wrapper: String,
    pub options: Vec<(String, String)>,
    pub owner: String,
}

/// A column of a foreign table. Its type is the shadow table's column type as Postgres resolved
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignColumn {
    pub name: String,
    /// `pg_attribute.attnum` of the shadow table's column (RowDescription carries it).
    pub attnum: i16,
    pub pg_type: PgType,
    pub typmod: i32,
    /// `format_type(atttypid, atttypmod)`, for messages and EXPLAIN.
    pub type_name: String,
    pub not_null: bool,
    pub options: Vec<(String, String)>,
}

/// `CREATE FOREIGN TABLE schema.name (...) SERVER s OPTIONS (...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignTable {
    pub schema: String,
    pub name: String,
    /// The shadow table's OID (RowDescription's table OID; privilege checks).
    pub shadow_oid: u32,
    pub server: String,
    pub options: Vec<(String, String)>,
    pub columns: Vec<ForeignColumn>,
}

/// Everything pgfed knows about foreign data at one moment; replaced whole on every change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub servers: HashMap<String, Server>,
    /// Keyed by (schema, name), as Postgres stores them (case-folded already).
    pub tables: HashMap<(String, String), ForeignTable>,
}

impl Snapshot {
    /// Resolves a table reference: `schema` when qualified, else the first `search_path` schema
    /// holding a table of that name (which must also be the first schema holding *any* relation of
    /// that name; the caller resolves that against Postgres when it matters).
    pub fn lookup(&self, schema: Option<&str>, name: &str, search_path: &[String]) -> Option<&ForeignTable> {
        match schema {
            Some(s) => self.tables.get(&(s.to_string(), name.to_string())),
            None => search_path.iter().find_map(|s| self.tables.get(&(s.clone(), name.to_string()))),
        }
    }

    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.get(name)
    }
}
