//! CREATE/ALTER/DROP FOREIGN TABLE and IMPORT FOREIGN SCHEMA: a row in `pgfed.foreign_tables`
//! plus a shadow table (an empty ordinary table with the declared columns, guard triggers that
//! refuse direct writes, and a comment naming the server).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::Field;
use pgfed_connector_sdk::{
    ConnectorError, ImportRequest, OpenRequest, OptionLevel, Options, ScanContext, Wrapper, validate_options,
};
use pgfed_encode::PgType;
use pgfed_session::UpstreamSession;
use serde_json::{Map, Value};

use super::server::{existing_server, resolve_role, wrapper};
use super::{
    apply_option_changes, execute, flag, notice, notify, number, options_from_json, options_json, query, text,
    user_mapping, validate,
};
use crate::ddl::{
    AlterForeignTable, AlterTableAction, ColumnDef, CreateForeignTable, DropForeignTable, ImportFilter,
    ImportForeignSchema, QualifiedName, RoleSpec, option_pairs, parse_type_name,
};
use crate::model::ForeignColumn;
use crate::{CatalogError, Registry, quote};

/// The names of the guard triggers every shadow table carries; a table without the row-level one
/// is not a shadow (see docs/design/catalog.md, "Identity").
pub(crate) const GUARD_TRIGGER: &str = "pgfed_shadow_guard";
const GUARD_TRUNCATE_TRIGGER: &str = "pgfed_shadow_guard_truncate";

/// A relation a statement names, as the session resolves it.
pub(crate) struct Relation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// It is a pgfed foreign table's shadow.
    pub is_shadow: bool,
    pub is_owner: bool,
}

impl Relation {
    fn quoted(&self) -> String {
        quote::qualified(&self.schema, &self.name)
    }
}

/// Resolves `[schema.]name` as Postgres would (search_path, temp schema first).
pub(crate) async fn resolve(
    session: &dyn UpstreamSession,
    name: &QualifiedName,
) -> Result<Option<Relation>, CatalogError> {
    let text_name = match &name.schema {
        Some(s) => quote::qualified(s, &name.name),
        None => quote::ident(&name.name),
    };
    let sql = format!(
        "SELECT c.oid::text, n.nspname::text, c.relname::text, \
         (c.relkind = 'r' AND EXISTS (SELECT 1 FROM pgfed.foreign_tables t WHERE t.shadow::oid = c.oid) \
          AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = '{GUARD_TRIGGER}'))::text, \
         pg_catalog.pg_has_role(c.relowner, 'USAGE')::text \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.oid = pg_catalog.to_regclass($1)::oid"
    );
    let rows = query(session, &sql, &[Some(text_name)]).await?;
    let Some(row) = rows.first() else { return Ok(None) };
    Ok(Some(Relation {
        oid: number(row, 0)?,
        schema: text(row, 1)?,
        name: text(row, 2)?,
        is_shadow: flag(row, 3),
        is_owner: flag(row, 4),
    }))
}

/// The pg_attribute columns [`column_from_row`] reads, for a shadow `a.attrelid`.
pub(crate) const COLUMN_SELECT: &str = "a.attnum::text, a.attname::text, a.atttypid::oid::text, a.atttypmod::text, \
     pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull::text";

/// A column from the [`COLUMN_SELECT`] values starting at `row[at]`, with its type checked: a type
/// pgfed cannot carry is refused, naming the column and the type.
pub(crate) fn column_from_row(
    row: &[Option<String>],
    at: usize,
    table: &str,
    column_options: &BTreeMap<i16, Vec<(String, String)>>,
) -> Result<ForeignColumn, CatalogError> {
    let attnum: i16 = number(row, at)?;
    let name = text(row, at + 1)?;
    let type_name = text(row, at + 4)?;
    let pg_type = PgType::from_oid(number(row, at + 2)?).ok_or_else(|| {
        CatalogError::NotSupported(format!(
            "column \"{name}\" of foreign table \"{table}\" has type {type_name}, which pgfed does not support"
        ))
    })?;
    Ok(ForeignColumn {
        name,
        attnum,
        pg_type,
        typmod: number(row, at + 3)?,
        type_name,
        not_null: flag(row, at + 5),
        options: column_options.get(&attnum).cloned().unwrap_or_default(),
    })
}

/// The shadow's columns, types checked.
pub(crate) async fn read_columns(
    session: &dyn UpstreamSession,
    oid: u32,
    table: &str,
    column_options: &BTreeMap<i16, Vec<(String, String)>>,
) -> Result<Vec<ForeignColumn>, CatalogError> {
    let rows = query(
        session,
        &format!(
            "SELECT {COLUMN_SELECT} FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ),
        &[Some(oid.to_string())],
    )
    .await?;
    rows.iter().map(|row| column_from_row(row, 0, table, column_options)).collect()
}

/// Column options as stored: `{"attnum": {"name": "value"}}`.
pub(crate) fn column_options_from_json(json: &str) -> Result<BTreeMap<i16, Vec<(String, String)>>, CatalogError> {
    let map: Map<String, Value> = serde_json::from_str(json)
        .map_err(|_| CatalogError::CatalogState("pgfed.foreign_tables.column_options is not a JSON object".into()))?;
    map.into_iter()
        .map(|(k, v)| {
            let attnum = k.parse().map_err(|_| {
                CatalogError::CatalogState("pgfed.foreign_tables.column_options has a key that is not an attnum".into())
            })?;
            Ok((attnum, options_from_json(&v.to_string())?))
        })
        .collect()
}

fn column_options_json(options: &BTreeMap<i16, Vec<(String, String)>>) -> String {
    let map: Map<String, Value> = options
        .iter()
        .filter(|(_, o)| !o.is_empty())
        .filter_map(|(k, o)| serde_json::from_str(&options_json(o)).ok().map(|v| (k.to_string(), v)))
        .collect();
    Value::Object(map).to_string()
}

/// `"c" type [NOT NULL] [DEFAULT expr]`.
pub(crate) fn column_sql(c: &ColumnDef) -> String {
    let mut out = format!("{} {}", quote::ident(&c.name), c.type_name);
    if c.not_null {
        out.push_str(" NOT NULL");
    }
    if let Some(d) = &c.default {
        out.push_str(" DEFAULT ");
        out.push_str(d);
    }
    out
}

fn reject_unsupported(features: &[String], what: &str) -> Result<(), CatalogError> {
    match features.first() {
        Some(f) => Err(CatalogError::NotSupported(format!("{f} is not supported for pgfed foreign tables ({what})"))),
        None => Ok(()),
    }
}

/// What one foreign table needs to be created.
struct NewTable<'a> {
    schema: &'a str,
    name: &'a str,
    columns: Vec<ColumnDef>,
    server: &'a str,
    wrapper: &'a Arc<dyn Wrapper>,
    server_options: &'a Options,
    options: Vec<(String, String)>,
}

/// Creates the shadow table and the catalog row; returns the shadow's OID.
async fn create_shadow(session: &dyn UpstreamSession, t: NewTable<'_>) -> Result<u32, CatalogError> {
    let specs = t.wrapper.options();
    let table_options = validate(specs, OptionLevel::Table, &t.options)?;
    let mut declared_options = Vec::new();
    for c in &t.columns {
        reject_unsupported(&c.unsupported, &format!("column \"{}\"", c.name))?;
        let pairs = option_pairs(&c.options);
        declared_options.push((validate(specs, OptionLevel::Column, &pairs)?, pairs));
    }
    let shadow = quote::qualified(t.schema, t.name);
    let columns: Vec<String> = t.columns.iter().map(column_sql).collect();
    execute(session, &format!("CREATE TABLE {shadow} ({})", columns.join(", ")), &[]).await?;
    let rows = query(
        session,
        "SELECT c.oid::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2",
        &[Some(t.schema.to_string()), Some(t.name.to_string())],
    )
    .await?;
    let oid: u32 = number(rows.first().ok_or_else(|| CatalogError::Internal("new shadow table not found".into()))?, 0)?;
    let mut columns = read_columns(session, oid, t.name, &BTreeMap::new()).await?;
    for (col, (_, pairs)) in columns.iter_mut().zip(&declared_options) {
        col.options = pairs.clone();
    }
    let column_options: BTreeMap<i16, Vec<(String, String)>> =
        columns.iter().map(|c| (c.attnum, c.options.clone())).collect();
    check_with_wrapper(
        session,
        t.wrapper,
        t.server,
        t.server_options,
        &format!("{}.{}", t.schema, t.name),
        &table_options,
        &columns,
        declared_options.into_iter().map(|(o, _)| o).collect(),
    )
    .await?;
    execute(
        session,
        &format!(
            "CREATE TRIGGER {GUARD_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE ON {shadow} \
             FOR EACH ROW EXECUTE FUNCTION pgfed.shadow_guard()"
        ),
        &[],
    )
    .await?;
    execute(
        session,
        &format!(
            "CREATE TRIGGER {GUARD_TRUNCATE_TRIGGER} BEFORE TRUNCATE ON {shadow} \
             FOR EACH STATEMENT EXECUTE FUNCTION pgfed.shadow_guard()"
        ),
        &[],
    )
    .await?;
    let comment = format!("pgfed foreign table on server {} ({})", t.server, t.wrapper.name());
    execute(session, &format!("COMMENT ON TABLE {shadow} IS {}", quote::literal(&comment)), &[]).await?;
    // A row left by a shadow dropped behind pgfed's back may carry this (reused) OID.
    execute(session, "DELETE FROM pgfed.foreign_tables WHERE shadow::oid = $1::oid", &[Some(oid.to_string())]).await?;
    execute(
        session,
        "INSERT INTO pgfed.foreign_tables (shadow, server, options, column_options) \
         VALUES ($1::oid::regclass, $2, $3::jsonb, $4::jsonb)",
        &[
            Some(oid.to_string()),
            Some(t.server.to_string()),
            Some(options_json(&t.options)),
            Some(column_options_json(&column_options)),
        ],
    )
    .await?;
    Ok(oid)
}

/// The wrapper's own DDL-time check (option values that need more than a name check).
#[allow(clippy::too_many_arguments)]
async fn check_with_wrapper(
    session: &dyn UpstreamSession,
    wrapper: &Arc<dyn Wrapper>,
    server: &str,
    server_options: &Options,
    table_name: &str,
    table_options: &Options,
    columns: &[ForeignColumn],
    column_options: Vec<Options>,
) -> Result<(), CatalogError> {
    // The user mapping is part of the request; an unreadable or invalid one is checked when the
    // table is used, not here.
    let mapping = user_mapping(session, server).await?;
    let user_mapping =
        validate_options(wrapper.options(), OptionLevel::UserMapping, &mapping).unwrap_or_else(|_| Options::default());
    let request = OpenRequest {
        table_name: table_name.to_string(),
        server: server_options.clone(),
        user_mapping,
        table: table_options.clone(),
        columns: columns
            .iter()
            .zip(column_options)
            .map(|(c, o)| (Field::new(&c.name, c.pg_type.arrow_type(c.typmod), !c.not_null), o))
            .collect(),
    };
    wrapper.check(&request)?;
    Ok(())
}

/// The schema an unqualified CREATE puts a table in: `current_schema()`, as Postgres does.
async fn creation_schema(session: &dyn UpstreamSession, given: &Option<String>) -> Result<String, CatalogError> {
    let schema = match given {
        Some(s) => s.clone(),
        None => {
            let rows = query(session, "SELECT pg_catalog.current_schema()::text", &[]).await?;
            rows.first()
                .cloned()
                .and_then(|r| r.into_iter().next().flatten())
                .ok_or_else(|| CatalogError::InvalidSchemaName("no schema has been selected to create in".into()))?
        }
    };
    if schema.starts_with("pg_temp") {
        return Err(CatalogError::NotSupported("temporary foreign tables are not supported by pgfed".into()));
    }
    Ok(schema)
}

pub(super) async fn create(
    session: &dyn UpstreamSession,
    registry: &Registry,
    c: &CreateForeignTable,
    ctx: &ScanContext,
) -> Result<(), CatalogError> {
    reject_unsupported(&c.unsupported, &format!("CREATE FOREIGN TABLE {}", c.table))?;
    let server = existing_server(session, &c.server).await?;
    let w = wrapper(registry, &server.wrapper)?;
    if !server.has_usage {
        return Err(super::server::no_usage(&server.name));
    }
    let server_options = validate(w.options(), OptionLevel::Server, &server.options)?;
    let schema = creation_schema(session, &c.table.schema).await?;
    if c.if_not_exists {
        let rows = query(
            session,
            "SELECT 1::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[Some(schema.clone()), Some(c.table.name.clone())],
        )
        .await?;
        if !rows.is_empty() {
            notice(ctx, format!("relation \"{}\" already exists, skipping", c.table.name), None);
            return Ok(());
        }
    }
    create_shadow(
        session,
        NewTable {
            schema: &schema,
            name: &c.table.name,
            columns: c.columns.clone(),
            server: &server.name,
            wrapper: w,
            server_options: &server_options,
            options: option_pairs(&c.options),
        },
    )
    .await?;
    notify(session).await
}

/// A live column's attnum.
async fn column_attnum(session: &dyn UpstreamSession, oid: u32, column: String) -> Result<Option<i16>, CatalogError> {
    let rows = query(
        session,
        "SELECT attnum::text FROM pg_catalog.pg_attribute WHERE attrelid = $1::oid AND attname = $2 \
         AND attnum > 0 AND NOT attisdropped",
        &[Some(oid.to_string()), Some(column)],
    )
    .await?;
    rows.first().map(|r| number(r, 0)).transpose()
}

/// The shadow of a pgfed foreign table named by ALTER or DROP, or Postgres's error.
fn not_foreign(rel: &Relation, hint: &str) -> CatalogError {
    CatalogError::WrongObjectType {
        message: format!("\"{}\" is not a foreign table", rel.name),
        hint: Some(hint.into()),
    }
}

pub(super) async fn alter(
    session: &dyn UpstreamSession,
    registry: &Registry,
    a: &AlterForeignTable,
    ctx: &ScanContext,
) -> Result<(), CatalogError> {
    let Some(rel) = resolve(session, &a.table).await? else {
        if a.if_exists {
            notice(ctx, format!("relation \"{}\" does not exist, skipping", a.table.name), None);
            return Ok(());
        }
        return Err(CatalogError::UndefinedTable(format!("relation \"{}\" does not exist", a.table)));
    };
    if !rel.is_shadow {
        return Err(not_foreign(&rel, "Use ALTER TABLE instead."));
    }
    for action in &a.actions {
        if let AlterTableAction::Unsupported(what) = action {
            return Err(CatalogError::NotSupported(format!(
                "ALTER FOREIGN TABLE ... {what} is not supported for pgfed foreign tables"
            )));
        }
    }
    if !rel.is_owner {
        return Err(CatalogError::InsufficientPrivilege {
            message: format!("must be owner of foreign table {}", rel.name),
            hint: None,
        });
    }
    let rows = query(
        session,
        "SELECT server, options::text, column_options::text FROM pgfed.foreign_tables WHERE shadow::oid = $1::oid",
        &[Some(rel.oid.to_string())],
    )
    .await?;
    let row = rows.first().ok_or_else(|| CatalogError::Internal("foreign table row vanished".into()))?;
    let server = existing_server(session, &text(row, 0)?).await?;
    let w = wrapper(registry, &server.wrapper)?;
    let specs = w.options();
    let mut table_options = options_from_json(&text(row, 1)?)?;
    let mut column_options = column_options_from_json(&text(row, 2)?)?;
    let shadow = rel.quoted();
    let attnum = |column: String| column_attnum(session, rel.oid, column);
    let no_column =
        |c: &str| CatalogError::UndefinedColumn(format!("column \"{c}\" of relation \"{}\" does not exist", rel.name));
    let alter_table = |clause: String| format!("ALTER TABLE {shadow} {clause}");
    for action in &a.actions {
        match action {
            AlterTableAction::Options(items) => {
                table_options = apply_option_changes(table_options, items)?;
                validate(specs, OptionLevel::Table, &table_options)?;
            }
            AlterTableAction::ColumnOptions { column, options } => {
                let n = attnum(column.clone()).await?.ok_or_else(|| no_column(column))?;
                let new = apply_option_changes(column_options.remove(&n).unwrap_or_default(), options)?;
                validate(specs, OptionLevel::Column, &new)?;
                column_options.insert(n, new);
            }
            AlterTableAction::AddColumn { if_not_exists, column } => {
                reject_unsupported(&column.unsupported, &format!("column \"{}\"", column.name))?;
                let pairs = option_pairs(&column.options);
                validate(specs, OptionLevel::Column, &pairs)?;
                let existed = attnum(column.name.clone()).await?.is_some();
                let ine = if *if_not_exists { "IF NOT EXISTS " } else { "" };
                execute(session, &alter_table(format!("ADD COLUMN {ine}{}", column_sql(column))), &[]).await?;
                if existed {
                    notice(
                        ctx,
                        format!("column \"{}\" of relation \"{}\" already exists, skipping", column.name, rel.name),
                        None,
                    );
                } else if let Some(n) = attnum(column.name.clone()).await? {
                    column_options.insert(n, pairs);
                }
            }
            AlterTableAction::DropColumn { if_exists, column, cascade } => {
                let Some(n) = attnum(column.clone()).await? else {
                    if *if_exists {
                        notice(
                            ctx,
                            format!("column \"{column}\" of relation \"{}\" does not exist, skipping", rel.name),
                            None,
                        );
                        continue;
                    }
                    return Err(no_column(column));
                };
                let behavior = if *cascade { " CASCADE" } else { "" };
                execute(session, &alter_table(format!("DROP COLUMN {}{behavior}", quote::ident(column))), &[]).await?;
                column_options.remove(&n);
            }
            AlterTableAction::SetType { column, type_name } => {
                execute(session, &alter_table(format!("ALTER COLUMN {} TYPE {type_name}", quote::ident(column))), &[])
                    .await?;
            }
            AlterTableAction::SetDefault { column, default } => {
                execute(
                    session,
                    &alter_table(format!("ALTER COLUMN {} SET DEFAULT {default}", quote::ident(column))),
                    &[],
                )
                .await?;
            }
            AlterTableAction::DropDefault { column } => {
                execute(session, &alter_table(format!("ALTER COLUMN {} DROP DEFAULT", quote::ident(column))), &[])
                    .await?;
            }
            AlterTableAction::SetNotNull { column } => {
                execute(session, &alter_table(format!("ALTER COLUMN {} SET NOT NULL", quote::ident(column))), &[])
                    .await?;
            }
            AlterTableAction::DropNotNull { column } => {
                execute(session, &alter_table(format!("ALTER COLUMN {} DROP NOT NULL", quote::ident(column))), &[])
                    .await?;
            }
            AlterTableAction::OwnerTo(spec) => {
                let role = match spec {
                    RoleSpec::Public => {
                        return Err(CatalogError::UndefinedObject("role \"public\" does not exist".into()));
                    }
                    other => resolve_role(session, other).await?.1,
                };
                execute(session, &alter_table(format!("OWNER TO {}", quote::ident(&role))), &[]).await?;
            }
            AlterTableAction::RenameTable(new) => {
                execute(session, &alter_table(format!("RENAME TO {}", quote::ident(new))), &[]).await?;
            }
            AlterTableAction::RenameColumn { from, to } => {
                execute(
                    session,
                    &alter_table(format!("RENAME COLUMN {} TO {}", quote::ident(from), quote::ident(to))),
                    &[],
                )
                .await?;
            }
            AlterTableAction::SetSchema(schema) => {
                execute(session, &alter_table(format!("SET SCHEMA {}", quote::ident(schema))), &[]).await?;
            }
            AlterTableAction::Unsupported(what) => {
                return Err(CatalogError::NotSupported(format!("ALTER FOREIGN TABLE ... {what}")));
            }
        }
    }
    // Types may have changed (ADD COLUMN, TYPE): check them, and the options, as at creation.
    let table_name = a.table.name.clone();
    let columns = read_columns(session, rel.oid, &table_name, &column_options).await?;
    let server_options = validate(specs, OptionLevel::Server, &server.options)?;
    let table_opts = validate(specs, OptionLevel::Table, &table_options)?;
    let mut col_opts = Vec::new();
    for c in &columns {
        col_opts.push(validate(specs, OptionLevel::Column, &c.options)?);
    }
    check_with_wrapper(session, w, &server.name, &server_options, &rel.name, &table_opts, &columns, col_opts).await?;
    execute(
        session,
        "UPDATE pgfed.foreign_tables SET options = $2::jsonb, column_options = $3::jsonb WHERE shadow::oid = $1::oid",
        &[Some(rel.oid.to_string()), Some(options_json(&table_options)), Some(column_options_json(&column_options))],
    )
    .await?;
    notify(session).await
}

pub(super) async fn drop(
    session: &dyn UpstreamSession,
    d: &DropForeignTable,
    ctx: &ScanContext,
) -> Result<(), CatalogError> {
    let mut shadows = Vec::new();
    for name in &d.tables {
        match resolve(session, name).await? {
            None if d.if_exists => {
                notice(ctx, format!("foreign table \"{}\" does not exist, skipping", name.name), None);
            }
            None => {
                return Err(CatalogError::UndefinedTable(format!("foreign table \"{}\" does not exist", name.name)));
            }
            Some(rel) if !rel.is_shadow => return Err(not_foreign(&rel, "Use DROP TABLE to remove a table.")),
            Some(rel) => shadows.push(rel),
        }
    }
    if shadows.is_empty() {
        return Ok(());
    }
    let behavior = if d.cascade { " CASCADE" } else { "" };
    for rel in &shadows {
        execute(session, &format!("DROP TABLE {}{behavior}", rel.quoted()), &[]).await?;
        execute(session, "DELETE FROM pgfed.foreign_tables WHERE shadow::oid = $1::oid", &[Some(rel.oid.to_string())])
            .await?;
    }
    notify(session).await
}

pub(super) async fn import(
    session: &dyn UpstreamSession,
    registry: &Registry,
    i: &ImportForeignSchema,
    ctx: &ScanContext,
) -> Result<(), CatalogError> {
    let server = existing_server(session, &i.server).await?;
    let w = wrapper(registry, &server.wrapper)?;
    let server_options = validate(w.options(), OptionLevel::Server, &server.options)?;
    for t in import_definitions(session, registry, i, ctx).await? {
        create_shadow(
            session,
            NewTable {
                schema: &i.local_schema,
                name: &t.table.name,
                columns: t.columns,
                server: &server.name,
                wrapper: w,
                server_options: &server_options,
                options: option_pairs(&t.options),
            },
        )
        .await?;
    }
    notify(session).await
}

/// What `IMPORT FOREIGN SCHEMA` would create, as `CREATE FOREIGN TABLE` statements (qualified
/// with the local schema), after the same checks: USAGE on the server, the local schema exists,
/// the wrapper's answer filtered again by `LIMIT TO`/`EXCEPT` as Postgres does.
pub(crate) async fn import_definitions(
    session: &dyn UpstreamSession,
    registry: &Registry,
    i: &ImportForeignSchema,
    ctx: &ScanContext,
) -> Result<Vec<CreateForeignTable>, CatalogError> {
    let server = existing_server(session, &i.server).await?;
    let w = wrapper(registry, &server.wrapper)?;
    if !server.has_usage {
        return Err(super::server::no_usage(&server.name));
    }
    // The SDK's import request has no options yet.
    super::options_not_allowed("IMPORT FOREIGN SCHEMA", &i.options)?;
    let rows = query(
        session,
        "SELECT 1::text FROM pg_catalog.pg_namespace WHERE nspname = $1",
        &[Some(i.local_schema.clone())],
    )
    .await?;
    if rows.is_empty() {
        return Err(CatalogError::InvalidSchemaName(format!("schema \"{}\" does not exist", i.local_schema)));
    }
    let server_options = validate(w.options(), OptionLevel::Server, &server.options)?;
    let mapping = user_mapping(session, &server.name).await?;
    let user_mapping = validate(w.options(), OptionLevel::UserMapping, &mapping)?;
    let (limit_to, except) = match &i.filter {
        ImportFilter::All => (None, vec![]),
        ImportFilter::LimitTo(t) => (Some(t.clone()), vec![]),
        ImportFilter::Except(t) => (None, t.clone()),
    };
    let request = ImportRequest {
        server: server_options,
        user_mapping,
        remote_schema: i.remote_schema.clone(),
        limit_to: limit_to.clone(),
        except: except.clone(),
    };
    let add = |(k, v): &(String, String)| crate::ddl::OptionItem {
        action: crate::ddl::OptionAction::Add,
        name: k.clone(),
        value: Some(v.clone()),
    };
    let mut out = Vec::new();
    for t in w.import_schema_in(request, ctx).await? {
        // Postgres filters the wrapper's answer again; so does pgfed.
        if limit_to.as_ref().is_some_and(|l| !l.contains(&t.name)) || except.contains(&t.name) {
            continue;
        }
        let mut columns = Vec::new();
        for c in &t.columns {
            let type_name = parse_type_name(&c.pg_type).map_err(|_| {
                CatalogError::Connector(ConnectorError::DataType {
                    column: c.name.clone(),
                    reason: format!("the wrapper gave a type pgfed cannot read for remote table \"{}\"", t.name),
                })
            })?;
            columns.push(ColumnDef {
                name: crate::ddl::truncate_identifier(c.name.clone()),
                type_name,
                not_null: c.not_null,
                default: None,
                options: c.options.iter().map(add).collect(),
                unsupported: vec![],
            });
        }
        out.push(CreateForeignTable {
            if_not_exists: false,
            table: QualifiedName {
                schema: Some(i.local_schema.clone()),
                name: crate::ddl::truncate_identifier(t.name.clone()),
            },
            columns,
            server: server.name.clone(),
            options: t.options.iter().map(add).collect(),
            unsupported: vec![],
        });
    }
    Ok(out)
}
