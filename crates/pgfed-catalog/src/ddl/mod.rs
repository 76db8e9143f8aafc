//! SQL/MED DDL in Postgres syntax: `CREATE/ALTER/DROP SERVER`, `... USER MAPPING`,
//! `... FOREIGN TABLE`, `IMPORT FOREIGN SCHEMA` and `GRANT/REVOKE USAGE ON FOREIGN SERVER`.
//!
//! [`parse`] first looks at the leading keywords without tokenizing (the proxy calls it on every
//! statement it routes), then parses with a small recursive-descent parser over sqlparser's
//! Postgres tokens, because sqlparser does not parse most of these statements. Names follow
//! Postgres: unquoted identifiers are folded to lower case, quoted ones kept, both truncated to
//! 63 bytes. Column types are kept as type text reassembled from validated tokens (Postgres
//! resolves them when the shadow table is created). Features pgfed does not implement (table
//! constraints, `COLLATE`, `INHERITS`, `PARTITION OF`, ...) are parsed and recorded rather than
//! rejected, so that the statement can still go to Postgres untouched when it names a real
//! postgres_fdw server; [`crate::execute_ddl`] rejects them for pgfed's own objects.

mod parser;
mod types;

use std::fmt;

use crate::CatalogError;
use crate::lex::{Lexeme, Lexer};

pub(crate) use parser::truncate_ident as truncate_identifier;
pub use types::parse_type_name;

/// `ADD`, `SET` or `DROP` in `ALTER ... OPTIONS (...)`; plain `name 'value'` is `Add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionAction {
    Add,
    Set,
    Drop,
}

/// One element of an `OPTIONS (...)` clause. `Debug` never shows the value: it may be a secret,
/// and which options are secret depends on the wrapper.
#[derive(Clone, PartialEq, Eq)]
pub struct OptionItem {
    pub action: OptionAction,
    pub name: String,
    /// `None` only for `DROP name`.
    pub value: Option<String>,
}

impl fmt::Debug for OptionItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("OptionItem");
        d.field("action", &self.action).field("name", &self.name);
        if self.value.is_some() {
            d.field("value", &"********");
        }
        d.finish()
    }
}

/// Name-value pairs of a `CREATE ... OPTIONS (...)` clause, in order.
pub fn option_pairs(items: &[OptionItem]) -> Vec<(String, String)> {
    items.iter().filter_map(|o| o.value.clone().map(|v| (o.name.clone(), v))).collect()
}

/// The role in `USER MAPPING FOR ...`, `OWNER TO ...`, `GRANT ... TO ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSpec {
    /// `PUBLIC` (also written `"public"`, as in Postgres).
    Public,
    /// `CURRENT_USER`, `CURRENT_ROLE`, and `USER` in user mappings.
    CurrentUser,
    SessionUser,
    Named(String),
}

impl fmt::Display for RoleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleSpec::Public => f.write_str("public"),
            RoleSpec::CurrentUser => f.write_str("current_user"),
            RoleSpec::SessionUser => f.write_str("session_user"),
            RoleSpec::Named(n) => f.write_str(n),
        }
    }
}

/// `[schema.]name`, folded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QualifiedName {
    pub schema: Option<String>,
    pub name: String,
}

impl fmt::Display for QualifiedName {
    /// As Postgres names relations in messages: the bare name (schema only when given).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A column definition of `CREATE FOREIGN TABLE` or `ALTER FOREIGN TABLE ... ADD COLUMN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: String,
    /// Type text as reassembled from its tokens (`numeric(12,2)`, `character varying(20)[]`).
    pub type_name: String,
    pub not_null: bool,
    /// `DEFAULT expr`, re-rendered from sqlparser's syntax tree.
    pub default: Option<String>,
    pub options: Vec<OptionItem>,
    /// Column features pgfed does not implement (`COLLATE`, `CHECK`, ...), by name.
    pub unsupported: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateServer {
    pub if_not_exists: bool,
    pub name: String,
    pub server_type: Option<String>,
    pub version: Option<String>,
    pub wrapper: String,
    pub options: Vec<OptionItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterServerAction {
    /// `[VERSION 'v' | VERSION NULL] [OPTIONS (...)]`; `version`: `None` unchanged,
    /// `Some(None)` set to NULL.
    Change {
        version: Option<Option<String>>,
        options: Vec<OptionItem>,
    },
    OwnerTo(RoleSpec),
    Rename(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterServer {
    pub name: String,
    pub action: AlterServerAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropServer {
    pub if_exists: bool,
    pub names: Vec<String>,
    pub cascade: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateUserMapping {
    pub if_not_exists: bool,
    pub user: RoleSpec,
    pub server: String,
    pub options: Vec<OptionItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterUserMapping {
    pub user: RoleSpec,
    pub server: String,
    pub options: Vec<OptionItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropUserMapping {
    pub if_exists: bool,
    pub user: RoleSpec,
    pub server: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateForeignTable {
    pub if_not_exists: bool,
    pub table: QualifiedName,
    pub columns: Vec<ColumnDef>,
    pub server: String,
    pub options: Vec<OptionItem>,
    /// Table features pgfed does not implement (`INHERITS`, `PARTITION OF`, table constraints).
    pub unsupported: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterTableAction {
    Options(Vec<OptionItem>),
    ColumnOptions {
        column: String,
        options: Vec<OptionItem>,
    },
    AddColumn {
        if_not_exists: bool,
        column: ColumnDef,
    },
    DropColumn {
        if_exists: bool,
        column: String,
        cascade: bool,
    },
    SetType {
        column: String,
        type_name: String,
    },
    SetDefault {
        column: String,
        default: String,
    },
    DropDefault {
        column: String,
    },
    SetNotNull {
        column: String,
    },
    DropNotNull {
        column: String,
    },
    OwnerTo(RoleSpec),
    RenameTable(String),
    RenameColumn {
        from: String,
        to: String,
    },
    SetSchema(String),
    /// An action pgfed does not implement, named as written (`ENABLE TRIGGER`, ...).
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterForeignTable {
    pub if_exists: bool,
    pub table: QualifiedName,
    pub actions: Vec<AlterTableAction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropForeignTable {
    pub if_exists: bool,
    pub tables: Vec<QualifiedName>,
    pub cascade: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportFilter {
    All,
    LimitTo(Vec<String>),
    Except(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportForeignSchema {
    pub remote_schema: String,
    pub filter: ImportFilter,
    pub server: String,
    pub local_schema: String,
    pub options: Vec<OptionItem>,
}

/// `GRANT/REVOKE {USAGE | ALL [PRIVILEGES]} ON FOREIGN SERVER s, ... TO/FROM role, ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerGrant {
    /// `false`: REVOKE.
    pub grant: bool,
    pub servers: Vec<String>,
    pub roles: Vec<RoleSpec>,
    /// `WITH GRANT OPTION`, `GRANT OPTION FOR`, `GRANTED BY`: not implemented.
    pub unsupported: Vec<String>,
}

/// A parsed SQL/MED statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ddl {
    CreateServer(CreateServer),
    AlterServer(AlterServer),
    DropServer(DropServer),
    CreateUserMapping(CreateUserMapping),
    AlterUserMapping(AlterUserMapping),
    DropUserMapping(DropUserMapping),
    CreateForeignTable(CreateForeignTable),
    AlterForeignTable(AlterForeignTable),
    DropForeignTable(DropForeignTable),
    ImportForeignSchema(ImportForeignSchema),
    ServerGrant(ServerGrant),
}

impl Ddl {
    /// The command tag Postgres answers with.
    pub fn command_tag(&self) -> &'static str {
        match self {
            Ddl::CreateServer(_) => "CREATE SERVER",
            Ddl::AlterServer(_) => "ALTER SERVER",
            Ddl::DropServer(_) => "DROP SERVER",
            Ddl::CreateUserMapping(_) => "CREATE USER MAPPING",
            Ddl::AlterUserMapping(_) => "ALTER USER MAPPING",
            Ddl::DropUserMapping(_) => "DROP USER MAPPING",
            Ddl::CreateForeignTable(_) => "CREATE FOREIGN TABLE",
            Ddl::AlterForeignTable(_) => "ALTER FOREIGN TABLE",
            Ddl::DropForeignTable(_) => "DROP FOREIGN TABLE",
            Ddl::ImportForeignSchema(_) => "IMPORT FOREIGN SCHEMA",
            Ddl::ServerGrant(g) if g.grant => "GRANT",
            Ddl::ServerGrant(_) => "REVOKE",
        }
    }

    /// The wrapper a `CREATE SERVER` names.
    pub fn wrapper(&self) -> Option<&str> {
        match self {
            Ddl::CreateServer(c) => Some(&c.wrapper),
            _ => None,
        }
    }

    /// The existing servers the statement names (not the one `CREATE SERVER` creates).
    pub fn servers(&self) -> Vec<&str> {
        match self {
            Ddl::CreateServer(_) | Ddl::AlterForeignTable(_) | Ddl::DropForeignTable(_) => vec![],
            Ddl::AlterServer(a) => vec![&a.name],
            Ddl::DropServer(d) => d.names.iter().map(String::as_str).collect(),
            Ddl::CreateUserMapping(c) => vec![&c.server],
            Ddl::AlterUserMapping(a) => vec![&a.server],
            Ddl::DropUserMapping(d) => vec![&d.server],
            Ddl::CreateForeignTable(c) => vec![&c.server],
            Ddl::ImportForeignSchema(i) => vec![&i.server],
            Ddl::ServerGrant(g) => g.servers.iter().map(String::as_str).collect(),
        }
    }

    /// The existing foreign tables the statement names (ALTER and DROP FOREIGN TABLE).
    pub fn tables(&self) -> Vec<&QualifiedName> {
        match self {
            Ddl::AlterForeignTable(a) => vec![&a.table],
            Ddl::DropForeignTable(d) => d.tables.iter().collect(),
            _ => vec![],
        }
    }
}

/// Parses `sql` if it is SQL/MED DDL: `None` when it is not (decided from the leading keywords,
/// without tokenizing), `Some(Err)` (42601, with a position) when it is but is malformed.
/// Trailing semicolons are allowed; a second statement is not.
pub fn parse(sql: &str) -> Option<Result<Ddl, CatalogError>> {
    if !looks_like_med_ddl(sql) {
        return None;
    }
    Some(parser::parse_statement(sql))
}

/// The keyword pre-check: `CREATE/ALTER/DROP SERVER | USER MAPPING | FOREIGN TABLE`,
/// `IMPORT FOREIGN SCHEMA`, `GRANT/REVOKE ... ON FOREIGN SERVER`.
fn looks_like_med_ddl(sql: &str) -> bool {
    let mut words = Lexer::new(sql);
    let Some(Lexeme::Word(first)) = words.next() else { return false };
    let mut next_word = || match words.next() {
        Some(Lexeme::Word(w)) => Some(w),
        _ => None,
    };
    let is = |w: Option<&str>, kw: &str| w.is_some_and(|w| w.eq_ignore_ascii_case(kw));
    if ["create", "alter", "drop"].iter().any(|k| first.eq_ignore_ascii_case(k)) {
        let second = next_word();
        if is(second, "server") {
            return true;
        }
        let third = next_word();
        return (is(second, "user") && is(third, "mapping")) || (is(second, "foreign") && is(third, "table"));
    }
    if first.eq_ignore_ascii_case("import") {
        return is(next_word(), "foreign") && is(next_word(), "schema");
    }
    if first.eq_ignore_ascii_case("grant") || first.eq_ignore_ascii_case("revoke") {
        // `... ON FOREIGN SERVER ...` anywhere at the top level of the statement.
        let mut last = [None, None];
        for l in Lexer::new(sql).skip(1) {
            let w = match l {
                Lexeme::Word(w) => Some(w),
                Lexeme::Semicolon => return false,
                Lexeme::Other => None,
            };
            if is(last[0], "on") && is(last[1], "foreign") && is(w, "server") {
                return true;
            }
            last = [last[1], w];
        }
    }
    false
}

#[cfg(test)]
mod tests;
