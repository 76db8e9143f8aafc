//! Which relation each name of the statement means, and its table provider.
//!
//! A qualified name that the catalog knows is a foreign table. Any other name is resolved by the
//! client's own session (`to_regclass`, which follows its search_path): if it is a foreign
//! table's shadow, the foreign table; otherwise a local relation, whose columns come from
//! `pg_attribute`. A name that resolves nowhere gets Postgres's own error (`$1::regclass`), so the
//! client sees exactly what Postgres would have said.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use pgfed_catalog::ForeignTable as CatalogTable;
use pgfed_connector_sdk::{OpenRequest, OptionLevel, Wrapper, validate_options};
use pgfed_encode::PgType;

use crate::context::{Runtime, StatementContext};
use crate::foreign::ForeignProvider;
use crate::local::{LocalColumn, LocalProvider};
use crate::{EngineError, SessionWrappers};

const RELATION_SQL: &str = "SELECT n.nspname::text, c.relname::text, c.oid::text, a.attname::text, \
     a.atttypid::text, a.atttypmod::text, a.attnum::text \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     WHERE c.oid = pg_catalog.to_regclass($1) ORDER BY a.attnum";

/// Quotes an identifier so Postgres reads it back exactly.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The Arrow type DataFusion sees for a column: the declared type, with timestamptz labelled in
/// the session's time zone so that date_trunc, extraction and display follow it as in Postgres.
pub(crate) fn plan_type(pg_type: &PgType, typmod: i32, tz: &str) -> DataType {
    match pg_type {
        PgType::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(tz))),
        PgType::Array(elem) => DataType::List(Arc::new(Field::new("item", plan_type(elem, typmod, tz), true))),
        other => other.arrow_type(typmod),
    }
}

pub(crate) async fn resolve(
    references: &[TableReference],
    ctx: &StatementContext,
    wrappers: &SessionWrappers,
    runtime: &Arc<Runtime>,
    tz: &str,
    write_target: Option<&TableReference>,
) -> Result<HashMap<TableReference, Arc<dyn TableProvider>>, EngineError> {
    let mut out: HashMap<TableReference, Arc<dyn TableProvider>> = HashMap::new();
    for reference in references {
        if out.contains_key(reference) {
            continue;
        }
        // A write's target gets its privileges checked by the write, column by column: a role
        // may INSERT without SELECT.
        let check_select = write_target != Some(reference);
        let provider = resolve_one(reference, ctx, wrappers, runtime, tz, check_select).await?;
        out.insert(reference.clone(), provider);
    }
    Ok(out)
}

async fn resolve_one(
    reference: &TableReference,
    ctx: &StatementContext,
    wrappers: &SessionWrappers,
    runtime: &Arc<Runtime>,
    tz: &str,
    check_select: bool,
) -> Result<Arc<dyn TableProvider>, EngineError> {
    let (schema, name) = match reference {
        TableReference::Bare { table } => (None, table.as_ref()),
        TableReference::Partial { schema, table } => (Some(schema.as_ref()), table.as_ref()),
        TableReference::Full { .. } => {
            return Err(EngineError::Unsupported("cross-database reference (catalog.schema.table)".into()));
        }
    };
    if let Some(s) = schema
        && let Some(ft) = ctx.catalog.lookup(Some(s), name, &ctx.search_path)
    {
        return open_foreign(ft, ctx, wrappers, runtime, tz, check_select).await;
    }
    let quoted = match schema {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(name)),
        None => quote_ident(name),
    };
    let rows = ctx.session.query_text(RELATION_SQL, &[Some(quoted.clone())]).await?;
    let Some(first) = rows.first() else {
        if schema.is_none()
            && let Some(ft) = ctx.catalog.lookup(None, name, &ctx.search_path)
        {
            return open_foreign(ft, ctx, wrappers, runtime, tz, check_select).await;
        }
        // Let Postgres say it, in its words and with its SQLSTATE.
        ctx.session.query_text("SELECT $1::pg_catalog.regclass::pg_catalog.text", &[Some(quoted)]).await?;
        return Err(EngineError::plan("42P01", format!("relation \"{name}\" does not exist")));
    };
    let text = |row: &Vec<Option<String>>, i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let (nsp, rel) = (text(first, 0), text(first, 1));
    if let Some(ft) = ctx.catalog.lookup(Some(&nsp), &rel, &[]) {
        return open_foreign(ft, ctx, wrappers, runtime, tz, check_select).await;
    }
    let oid: u32 = text(first, 2).parse().map_err(|_| EngineError::Internal("bad oid from pg_class".into()))?;
    let mut columns = Vec::new();
    for row in &rows {
        if row.get(3).cloned().flatten().is_none() {
            continue; // a relation without columns
        }
        let type_oid: u32 = text(row, 4).parse().unwrap_or(0);
        columns.push(LocalColumn {
            name: text(row, 3),
            attnum: text(row, 6).parse().unwrap_or(0),
            pg_type: if type_oid == 19 { Some(PgType::Text) } else { PgType::from_oid(type_oid) },
            typmod: text(row, 5).parse().unwrap_or(-1),
        });
    }
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            // A type pgfed cannot read is planned as text: Postgres may still evaluate it in SQL
            // pgfed sends; pgfed refuses to decode it (0A000) if it ever has to.
            let t = c.pg_type.as_ref().map(|t| plan_type(t, c.typmod, tz)).unwrap_or(DataType::Utf8);
            Field::new(&c.name, t, true)
        })
        .collect();
    Ok(Arc::new(LocalProvider { name: format!("{nsp}.{rel}"), oid, columns, schema: Arc::new(Schema::new(fields)) }))
}

async fn open_foreign(
    ft: &CatalogTable,
    ctx: &StatementContext,
    wrappers: &SessionWrappers,
    runtime: &Arc<Runtime>,
    tz: &str,
    check_select: bool,
) -> Result<Arc<dyn TableProvider>, EngineError> {
    let table_name = format!("{}.{}", ft.schema, ft.name);
    let server = ctx
        .catalog
        .server(&ft.server)
        .ok_or_else(|| EngineError::plan("42704", format!("server \"{}\" does not exist", ft.server)))?;
    let wrapper: Arc<dyn Wrapper> = wrappers.get(&server.wrapper).ok_or_else(|| {
        EngineError::plan("42704", format!("foreign-data wrapper \"{}\" is not available in pgfed", server.wrapper))
    })?;
    if check_select {
        ctx.access.check_select(ctx.session.as_ref(), ft).await?;
    }
    let mapping = ctx.access.user_mapping(ctx.session.as_ref(), server).await?;
    let specs = wrapper.options();
    let connector = |source| EngineError::Connector { table: table_name.clone(), source };
    let columns = ft
        .columns
        .iter()
        .map(|c| {
            let field = Field::new(&c.name, c.pg_type.arrow_type(c.typmod), !c.not_null);
            Ok((field, validate_options(specs, OptionLevel::Column, &c.options).map_err(connector)?))
        })
        .collect::<Result<Vec<_>, EngineError>>()?;
    let request = OpenRequest {
        table_name: table_name.clone(),
        server: validate_options(specs, OptionLevel::Server, &server.options).map_err(connector)?,
        user_mapping: validate_options(specs, OptionLevel::UserMapping, &mapping).map_err(connector)?,
        table: validate_options(specs, OptionLevel::Table, &ft.options).map_err(connector)?,
        columns,
    };
    let table = wrapper.open(request).await.map_err(connector)?;
    let fields: Vec<Field> =
        ft.columns.iter().map(|c| Field::new(&c.name, plan_type(&c.pg_type, c.typmod, tz), true)).collect();
    Ok(Arc::new(ForeignProvider {
        name: table_name,
        table,
        schema: Arc::new(Schema::new(fields)),
        table_oid: ft.shadow_oid,
        attnums: ft.columns.iter().map(|c| c.attnum).collect(),
        pg_types: ft.columns.iter().map(|c| (c.pg_type.clone(), c.typmod)).collect(),
        runtime: runtime.clone(),
        catalog: ft.clone(),
    }))
}
