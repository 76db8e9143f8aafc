//! Declarative catalog definitions for GitOps setups: SQL/MED DDL files named in pgfed.toml
//! (`[catalog] files = ["catalog/*.sql"]`), whose objects pgfed makes the stored catalog match
//! at startup ([`reconcile`]).
//!
//! A file holds the statements users already know, parsed by the same parser as DDL sent
//! through pgfed: `CREATE SERVER`, `CREATE USER MAPPING`, `CREATE FOREIGN TABLE`, `IMPORT FOREIGN
//! SCHEMA` and `GRANT USAGE ON FOREIGN SERVER`. They *declare* the desired objects; ALTER and
//! DROP have no place in them (removing a statement is how an object is dropped). Option values
//! may reference secrets kept out of git, `${env:NAME}` and `${file:PATH}`, expanded after
//! parsing so a value can never change a statement's structure. This module reads, parses and
//! checks the files without a database (what `pgfed check-config` runs); `reconcile.rs` applies
//! them.

mod reconcile;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use pgfed_connector_sdk::OptionLevel;

use crate::ddl::{
    CreateForeignTable, CreateServer, CreateUserMapping, Ddl, ImportForeignSchema, OptionItem, ServerGrant,
    option_pairs,
};
use crate::{CatalogError, Registry};

pub use reconcile::{Changes, reconcile, reconcile_on};

/// Where a statement is: the file, its first line, and its number in the file (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub statement: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} (statement {})", self.file.display(), self.line, self.statement)
    }
}

/// Errors reading, checking or applying the catalog files. None carries an option value; a
/// missing secret is named by its variable or file, never shown.
#[derive(Debug, thiserror::Error)]
pub enum DeclareError {
    /// A pattern of `catalog.files` that matches no file, or has a wildcard outside its last
    /// component.
    #[error("catalog files: {pattern}: {message}")]
    Pattern { pattern: PathBuf, message: String },
    #[error("cannot read catalog file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// A statement that does not parse, is not a declaration, or is invalid (options checked by
    /// the connector, unsupported features): the catalog's own error and SQLSTATE.
    #[error("{at}: {}", describe(.error))]
    Statement { at: Location, error: Box<CatalogError> },
    /// `${env:NAME}` with NAME unset, `${file:PATH}` unreadable, an unknown `${...}` reference.
    #[error("{at}: {message}")]
    Reference { at: Location, message: String },
    /// The same object declared twice.
    #[error("{at}: {what} is declared twice (first at {first})")]
    Duplicate { at: Location, what: String, first: Location },
    /// Applying a change failed; `at` is the declaring statement, or for a drop the statement
    /// that once declared the object.
    #[error("{at}: {what}: {}", describe(.error))]
    Apply { at: String, what: String, error: Box<CatalogError> },
    /// The files need pgfed's own service connection.
    #[error(
        "catalog files need pgfed's service connection, but upstream.url names no user; \
         add one (postgres://svc:password@host/db) or remove [catalog] files"
    )]
    NoServiceUser,
    #[error("catalog files: cannot connect to the upstream as the service user: {0}")]
    Connect(#[source] tokio_postgres::Error),
}

impl DeclareError {
    /// The SQLSTATE of the underlying catalog error, if the error has one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            DeclareError::Statement { error, .. } | DeclareError::Apply { error, .. } => Some(error.sqlstate()),
            _ => None,
        }
    }
}

/// A catalog error as a startup message: message, SQLSTATE, and the detail and hint when present.
fn describe(error: &CatalogError) -> String {
    let mut out = match error {
        // Postgres's own error says its SQLSTATE already.
        CatalogError::Upstream(pgfed_session::UpstreamError::Server { .. }) => error.to_string(),
        _ => format!("{error} (SQLSTATE {})", error.sqlstate()),
    };
    if let Some(detail) = error.detail() {
        out.push_str(&format!("; DETAIL: {detail}"));
    }
    if let Some(hint) = error.hint() {
        out.push_str(&format!("; HINT: {hint}"));
    }
    out
}

/// The objects the files declare, in file order, option values expanded. `Debug` shows no
/// option value ([`OptionItem`] redacts them).
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    pub servers: Vec<(Location, CreateServer)>,
    pub grants: Vec<(Location, ServerGrant)>,
    pub mappings: Vec<(Location, CreateUserMapping)>,
    pub tables: Vec<(Location, CreateForeignTable)>,
    pub imports: Vec<(Location, ImportForeignSchema)>,
}

impl Declarations {
    /// Reads the files the patterns name ([`expand_patterns`]), in order, resolving `${env:..}`
    /// through `env`.
    pub fn load(patterns: &[PathBuf], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, DeclareError> {
        let mut out = Declarations::default();
        for path in expand_patterns(patterns)? {
            let text =
                std::fs::read_to_string(&path).map_err(|source| DeclareError::Read { path: path.clone(), source })?;
            out.add_file(&path, &text, env)?;
            out.files.push(path);
        }
        Ok(out)
    }

    /// Parses one file's statements into the declarations.
    pub fn add_file(
        &mut self,
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), DeclareError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        for (n, statement) in crate::lex::split_statements(text).into_iter().enumerate() {
            // split_statements returns slices of `text`, so the offset gives the line.
            let offset = (statement.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
            let at = Location { file: path.to_path_buf(), line: line_of(text, offset), statement: n + 1 };
            let ddl = match crate::ddl::parse(statement) {
                None => {
                    return Err(DeclareError::Statement {
                        at,
                        error: Box::new(CatalogError::NotSupported(
                            "catalog files hold SQL/MED declarations only (CREATE SERVER, CREATE USER MAPPING, \
                             CREATE FOREIGN TABLE, IMPORT FOREIGN SCHEMA, GRANT USAGE ON FOREIGN SERVER)"
                                .into(),
                        )),
                    });
                }
                Some(Err(error)) => {
                    let at = match error.position() {
                        Some(p) => {
                            let within: usize =
                                statement.chars().take(p.saturating_sub(1) as usize).map(char::len_utf8).sum();
                            Location { line: line_of(text, offset + within), ..at }
                        }
                        None => at,
                    };
                    return Err(DeclareError::Statement { at, error: Box::new(error) });
                }
                Some(Ok(ddl)) => ddl,
            };
            let expand = |items: &mut Vec<OptionItem>| -> Result<(), DeclareError> {
                for item in items.iter_mut() {
                    if let Some(v) = &item.value {
                        let expanded = expand(v, dir, env).map_err(|message| DeclareError::Reference {
                            at: at.clone(),
                            message: format!("option \"{}\": {message}", item.name),
                        })?;
                        item.value = Some(expanded);
                    }
                }
                Ok(())
            };
            match ddl {
                Ddl::CreateServer(mut c) => {
                    expand(&mut c.options)?;
                    self.servers.push((at, c));
                }
                Ddl::CreateUserMapping(mut c) => {
                    expand(&mut c.options)?;
                    self.mappings.push((at, c));
                }
                Ddl::CreateForeignTable(mut c) => {
                    expand(&mut c.options)?;
                    for column in &mut c.columns {
                        expand(&mut column.options)?;
                    }
                    self.tables.push((at, c));
                }
                Ddl::ImportForeignSchema(mut i) => {
                    expand(&mut i.options)?;
                    self.imports.push((at, i));
                }
                Ddl::ServerGrant(g) if g.grant => self.grants.push((at, g)),
                other => {
                    return Err(DeclareError::Statement {
                        at,
                        error: Box::new(CatalogError::NotSupported(format!(
                            "{} in a catalog file: the files declare objects with CREATE and GRANT; pgfed alters \
                             what changed and drops what is no longer declared",
                            other.command_tag()
                        ))),
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks what can be checked without a database: wrappers exist, option names and values
    /// at every level (the connector's own validation), no unsupported features, references
    /// between declarations, no object declared twice. Types, schemas, roles and the connector's
    /// whole-table checks need the upstream and are checked by [`reconcile`].
    pub fn check(&self, registry: &Registry) -> Result<(), DeclareError> {
        let statement =
            |at: &Location, error: CatalogError| DeclareError::Statement { at: at.clone(), error: Box::new(error) };
        let mut servers: HashMap<&str, (&Location, &CreateServer)> = HashMap::new();
        for (at, s) in &self.servers {
            if let Some((first, _)) = servers.get(s.name.as_str()) {
                return Err(duplicate(at, format!("server \"{}\"", s.name), first));
            }
            let w = registry.get(&s.wrapper).ok_or_else(|| {
                statement(at, CatalogError::UnknownWrapper { name: s.wrapper.clone(), known: registry.names() })
            })?;
            crate::store::validate(w.options(), OptionLevel::Server, &option_pairs(&s.options))
                .map_err(|e| statement(at, e))?;
            servers.insert(&s.name, (at, s));
        }
        let wrapper_of = |server: &str| servers.get(server).and_then(|(_, s)| registry.get(&s.wrapper));
        for (at, g) in &self.grants {
            if let Some(what) = g.unsupported.first() {
                return Err(statement(
                    at,
                    CatalogError::NotSupported(format!("{what} is not supported for pgfed foreign servers")),
                ));
            }
            if let Some(s) = g.servers.iter().find(|s| !servers.contains_key(s.as_str())) {
                return Err(statement(
                    at,
                    CatalogError::UndefinedObject(format!(
                        "server \"{s}\" is not declared in the catalog files (GRANT USAGE in them applies to the \
                         servers they declare)"
                    )),
                ));
            }
        }
        let mut mappings: HashMap<(&str, String), &Location> = HashMap::new();
        for (at, m) in &self.mappings {
            if let Some(first) = mappings.insert((&m.server, m.user.to_string()), at) {
                return Err(duplicate(at, format!("user mapping for {} on server \"{}\"", m.user, m.server), first));
            }
            if let Some(w) = wrapper_of(&m.server) {
                crate::store::validate(w.options(), OptionLevel::UserMapping, &option_pairs(&m.options))
                    .map_err(|e| statement(at, e))?;
            }
        }
        let mut tables: HashMap<(Option<&str>, &str), &Location> = HashMap::new();
        for (at, t) in &self.tables {
            if let Some(first) = tables.insert((t.table.schema.as_deref(), &t.table.name), at) {
                return Err(duplicate(at, format!("foreign table \"{}\"", t.table), first));
            }
            check_table(t, wrapper_of(&t.server).map(|w| w.options())).map_err(|e| statement(at, e))?;
        }
        for (at, i) in &self.imports {
            crate::store::options_not_allowed("IMPORT FOREIGN SCHEMA", &i.options).map_err(|e| statement(at, e))?;
        }
        Ok(())
    }

    /// `2 servers, 1 user mapping, ...`, for logs and `check-config`.
    pub fn summary(&self) -> String {
        let count = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        [
            count(self.servers.len(), "server", "servers"),
            count(self.mappings.len(), "user mapping", "user mappings"),
            count(self.tables.len(), "foreign table", "foreign tables"),
            count(self.imports.len(), "IMPORT FOREIGN SCHEMA", "IMPORT FOREIGN SCHEMA statements"),
            count(self.grants.len(), "GRANT", "GRANTs"),
        ]
        .join(", ")
    }
}

/// Features and options of a declared table, as `execute_ddl` would check them.
pub(crate) fn check_table(
    t: &CreateForeignTable,
    specs: Option<&[pgfed_connector_sdk::OptionSpec]>,
) -> Result<(), CatalogError> {
    if let Some(f) = t.unsupported.first() {
        return Err(CatalogError::NotSupported(format!(
            "{f} is not supported for pgfed foreign tables (CREATE FOREIGN TABLE {})",
            t.table
        )));
    }
    for c in &t.columns {
        if let Some(f) = c.unsupported.first() {
            return Err(CatalogError::NotSupported(format!(
                "{f} is not supported for pgfed foreign tables (column \"{}\")",
                c.name
            )));
        }
    }
    if let Some(specs) = specs {
        crate::store::validate(specs, OptionLevel::Table, &option_pairs(&t.options))?;
        for c in &t.columns {
            crate::store::validate(specs, OptionLevel::Column, &option_pairs(&c.options))?;
        }
    }
    Ok(())
}

fn duplicate(at: &Location, what: String, first: &Location) -> DeclareError {
    DeclareError::Duplicate { at: at.clone(), what, first: first.clone() }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Expands `${env:NAME}` (an environment variable) and `${file:PATH}` (a file's contents without
/// its final newline; a relative path is relative to `dir`, the catalog file's directory) in an
/// option value; `$${` is a literal `${`. The error names the variable or file, never a value.
pub fn expand(value: &str, dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| "a \"${\" reference without its closing \"}\"".to_string())?;
            let reference = &tail[..end];
            out.push_str(&resolve(reference, dir, env)?);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(reference: &str, dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("\"${{env:{name}}}\" is not a valid environment variable name"));
        }
        return env(name).ok_or_else(|| format!("environment variable {name} is not set"));
    }
    if let Some(path) = reference.strip_prefix("file:") {
        let path = dir.join(path);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
        return Ok(text.to_string());
    }
    Err(format!(
        "unknown reference \"${{{reference}}}\": use ${{env:NAME}} or ${{file:PATH}} (write $${{ for a literal ${{)"
    ))
}

/// The files `patterns` name, in order: a pattern's last component may hold `*` and `?`
/// wildcards (matches sorted by name); a pattern matching nothing is an error, so a typo cannot
/// make every declared object look removed. A file named twice is read once.
pub fn expand_patterns(patterns: &[PathBuf]) -> Result<Vec<PathBuf>, DeclareError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        let err = |message: &str| DeclareError::Pattern { pattern: pattern.clone(), message: message.to_string() };
        let name = pattern.file_name().and_then(|n| n.to_str()).ok_or_else(|| err("not a file name"))?;
        let dir = match pattern.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if dir.to_string_lossy().contains(['*', '?']) {
            return Err(err("wildcards are allowed in the file name only"));
        }
        let mut found = Vec::new();
        if name.contains(['*', '?']) {
            let entries = std::fs::read_dir(&dir).map_err(|e| err(&format!("cannot list {}: {e}", dir.display())))?;
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                if let Some(n) = file_name.to_str()
                    && wildcard_match(name, n)
                    && entry.path().is_file()
                {
                    found.push(dir.join(n));
                }
            }
            found.sort();
        } else if pattern.is_file() {
            found.push(pattern.clone());
        }
        if found.is_empty() {
            return Err(err("matches no file"));
        }
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// `*` matches any run of characters, `?` one character. Hidden files match only a pattern
/// that starts with a dot, as in a shell.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with backtracking to the last `*`.
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests;
