//! INSERT, UPDATE and DELETE on a foreign table.
//!
//! The rows to write are a query DataFusion plans like any other (so sources may be foreign,
//! local or both, and filters are pushed as usual):
//!
//! | statement | source query |
//! |---|---|
//! | `INSERT INTO t (a, b) VALUES ... / SELECT ...` | the VALUES or SELECT itself |
//! | `UPDATE t SET a = e1 [FROM f] WHERE w` | `SELECT t.<row id>, e1 FROM t [, f] WHERE w` |
//! | `DELETE FROM t [USING f] WHERE w` | `SELECT t.<row id> FROM t [, f] WHERE w` |
//!
//! Each source batch is converted to the declared column types as Postgres assigns values (see
//! [`coerce`]) and handed to the connector's `insert`/`update`/`delete`; RETURNING expressions are
//! evaluated on the rows the connector gives back. Columns an INSERT leaves out are left out of
//! the batch, so the remote defaults apply. Privileges are Postgres's, checked on the shadow
//! table before anything is written.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ParamValues, ScalarValue, TableReference};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion::sql::planner::{PlannerContext, SqlToRel, object_name_to_table_reference};
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, Expr as SqlExpr, FromTable, Ident, ObjectName, SelectItem, SetExpr, Statement, TableFactor,
    TableWithJoins, UpdateTableFromKind, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::StreamExt;
use pgfed_catalog::Privilege;
use pgfed_connector_sdk::{ForeignTable as SdkTable, ScanContext};
use pgfed_encode::{BatchEncoder, ColumnSpec, PgType, TextSettings};
use pgfed_session::{ResultFormat, UpstreamSession};
use tokio_util::sync::CancellationToken;

use crate::context::{Runtime, StatementContext};
use crate::foreign::{ForeignProvider, conform};
use crate::local::Decoders;
use crate::params::sql_type_name;
use crate::planner::{Kind, Prepared, Provider, output_columns, parser_options, plan_statement, resolve_statement};
use crate::resolve::plan_type;
use crate::stream::{ResultStream, Tag};
use crate::txn::{Hooks, Transactions};
use crate::{EngineError, SessionWrappers, semantics};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Insert,
    Update,
    Delete,
}

impl WritePlan {
    pub(crate) fn has_returning(&self) -> bool {
        self.returning.is_some()
    }
}

impl Op {
    fn tag(self) -> &'static str {
        match self {
            Op::Insert => "INSERT 0",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
        }
    }
}

/// One column of the batches handed to the connector.
#[derive(Debug, Clone)]
pub(crate) struct WriteColumn {
    /// Which output column of the source plan holds it.
    source: usize,
    name: String,
    pg_type: PgType,
    typmod: i32,
    /// The row-id column of UPDATE/DELETE: passed as scanned, never converted.
    row_id: bool,
}

/// What a write statement does with its source rows.
pub(crate) struct WritePlan {
    op: Op,
    name: String,
    /// The foreign table written, or `None` for an INSERT into a local table ([`LocalSink`]).
    table: Option<Arc<dyn SdkTable>>,
    local: Option<LocalSink>,
    columns: Vec<WriteColumn>,
    returning: Option<Returning>,
    /// UPDATE ... FROM / DELETE ... USING may join a target row more than once; Postgres writes
    /// it once, so later occurrences of a row id are skipped.
    dedupe: bool,
    /// The source reads local tables through the client's session: its rows are read to the end
    /// before the first conversion query uses that session.
    reads_local: bool,
}

/// `INSERT INTO local_table ... SELECT ... FROM foreign_table`: each source batch is sent to the
/// client's session as one `INSERT INTO <target as written> [(cols)] SELECT u.c1::type1, ...
/// FROM unnest($1::text[], ...) AS u(c1, ...) [ON CONFLICT ...]`, the values in Postgres's text
/// form and cast from the source column's type, so Postgres assigns them to the target columns
/// (and checks privileges, constraints and conflicts) exactly as in an INSERT ... SELECT of its
/// own. It runs in the client's transaction (the unit's implicit one in autocommit), so a failure
/// in any batch undoes them all.
struct LocalSink {
    sql: String,
    /// The source columns' types, for their text form.
    types: Vec<PgType>,
}

/// `RETURNING ...`: a projection over the target's columns, evaluated on the rows the connector
/// returns.
struct Returning {
    plan: LogicalPlan,
    /// Every declared column, asked of the connector.
    names: Vec<String>,
    /// The target's planned schema (the batches the expressions read).
    input: SchemaRef,
    output: SchemaRef,
    /// RowDescription of the statement.
    columns: Vec<crate::planner::OutputColumn>,
}

/// What planning a write needs from the session.
pub(crate) struct WriteSession<'a> {
    pub state: SessionState,
    pub wrappers: &'a SessionWrappers,
    pub ctx: StatementContext,
    pub runtime: Arc<Runtime>,
    pub tz: String,
    pub collation: String,
    pub txn: Arc<Transactions>,
}

fn unsupported(what: impl Into<String>) -> EngineError {
    EngineError::Unsupported(what.into())
}

/// A column name as Postgres folds it.
fn normalize(ident: &Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

fn last_ident(name: &ObjectName) -> Result<String, EngineError> {
    match name.0.last().and_then(|p| p.as_ident()) {
        Some(ident) => Ok(normalize(ident)),
        None => Err(unsupported(format!("column reference {name}"))),
    }
}

fn is_default(e: &SqlExpr) -> bool {
    matches!(e, SqlExpr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

fn placeholder(e: &SqlExpr) -> Option<usize> {
    let SqlExpr::Value(v) = e else { return None };
    let Value::Placeholder(p) = &v.value else { return None };
    p.strip_prefix('$')?.parse().ok()
}

/// `$n` used directly as a value written to a column gets that column's type, as Postgres
/// infers it (unless the client declared one).
fn hint_param(oids: &mut Vec<u32>, e: &SqlExpr, pg_type: &PgType) {
    if let Some(n) = placeholder(e).filter(|n| *n > 0) {
        if oids.len() < n {
            oids.resize(n, 0);
        }
        if oids[n - 1] == 0 {
            oids[n - 1] = pg_type.oid();
        }
    }
}

/// `SELECT 1 FROM t AS a` parsed, for its pieces to be replaced: the AST is built, never text.
fn select_template() -> Result<(Box<ast::Query>, ast::Select), EngineError> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT 1 FROM t AS a")
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let Some(Statement::Query(query)) = statements.pop() else {
        return Err(EngineError::Internal("template is not a query".into()));
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(EngineError::Internal("template is not a SELECT".into()));
    };
    let select = select.as_ref().clone();
    Ok((query, select))
}

fn query_of(mut query: Box<ast::Query>, select: ast::Select) -> Statement {
    query.body = Box::new(SetExpr::Select(Box::new(select)));
    Statement::Query(query)
}

/// The relation `name AS alias` as a FROM item.
fn from_item(name: &ObjectName, alias: Option<&Ident>) -> Result<TableWithJoins, EngineError> {
    let (_, mut select) = select_template()?;
    let mut item = select.from.pop().ok_or_else(|| EngineError::Internal("template without FROM".into()))?;
    if let TableFactor::Table { name: n, alias: a, .. } = &mut item.relation {
        *n = name.clone();
        match alias {
            Some(alias) => {
                if let Some(a) = a {
                    a.name = alias.clone();
                }
            }
            None => *a = None,
        }
    }
    Ok(item)
}

struct Target {
    reference: TableReference,
    provider: Arc<dyn TableProvider>,
}

impl Target {
    fn foreign(&self) -> Result<&ForeignProvider, EngineError> {
        self.provider
            .downcast_ref::<ForeignProvider>()
            .ok_or_else(|| EngineError::Internal("target is not foreign".into()))
    }
}

fn target_reference(name: &ObjectName) -> Result<TableReference, EngineError> {
    Ok(object_name_to_table_reference(name.clone(), true)?)
}

/// Opens the target: it must be a foreign table (writes to Postgres's own tables in a federated
/// statement are not built yet).
fn check_target(
    op: Op,
    reference: &TableReference,
    providers: &HashMap<TableReference, Arc<dyn TableProvider>>,
) -> Result<Target, EngineError> {
    let provider =
        providers.get(reference).cloned().ok_or_else(|| EngineError::Internal("write target not resolved".into()))?;
    if let Some(local) = provider.downcast_ref::<crate::local::LocalProvider>() {
        let verb = match op {
            Op::Insert => "INSERT into",
            Op::Update => "UPDATE of",
            Op::Delete => "DELETE from",
        };
        return Err(unsupported(format!("{verb} the local table {} (write it in a statement of its own)", local.name)));
    }
    Ok(Target { reference: reference.clone(), provider })
}

pub(crate) async fn prepare(
    session: WriteSession<'_>,
    statement: Statement,
    param_type_oids: &[u32],
) -> Result<Prepared, EngineError> {
    match statement {
        Statement::Insert(insert) => prepare_insert(session, insert, param_type_oids).await,
        Statement::Update(update) => prepare_update(session, update, param_type_oids).await,
        Statement::Delete(delete) => prepare_delete(session, delete, param_type_oids).await,
        other => Err(unsupported(other.to_string())),
    }
}

async fn prepare_insert(
    s: WriteSession<'_>,
    insert: ast::Insert,
    param_type_oids: &[u32],
) -> Result<Prepared, EngineError> {
    let ast::TableObject::TableName(table_name) = &insert.table else {
        return Err(unsupported("INSERT INTO a table function"));
    };
    let reference = target_reference(table_name)?;
    let target_statement = query_of(select_template()?.0, {
        let (_, mut select) = select_template()?;
        select.from = vec![from_item(table_name, None)?];
        select
    });
    let targets = resolve_statement(&target_statement, &s.ctx, s.wrappers, &s.runtime, &s.tz, Some(&reference)).await?;
    if let Some(provider) = targets.get(&reference)
        && provider.downcast_ref::<crate::local::LocalProvider>().is_some()
    {
        return prepare_local_insert(s, insert, param_type_oids).await;
    }
    if insert.on.is_some() {
        return Err(unsupported("INSERT ... ON CONFLICT into a foreign table"));
    }
    let target = check_target(Op::Insert, &reference, &targets)?;
    let foreign = target.foreign()?;
    let declared = &foreign.catalog.columns;
    let relation = foreign.catalog.name.clone();

    // Target columns, as Postgres checks them.
    let mut names: Vec<String> = Vec::new();
    for c in &insert.columns {
        let name = last_ident(c)?;
        if !declared.iter().any(|d| d.name == name) {
            return Err(EngineError::plan(
                "42703",
                format!("column \"{name}\" of relation \"{relation}\" does not exist"),
            ));
        }
        if names.contains(&name) {
            return Err(EngineError::plan("42701", format!("column \"{name}\" specified more than once")));
        }
        names.push(name);
    }
    let explicit = !insert.columns.is_empty();
    if !explicit {
        names = declared.iter().map(|d| d.name.clone()).collect();
    }

    let mut oids = param_type_oids.to_vec();
    let mut source = match insert.source.clone() {
        Some(q) => q,
        // DEFAULT VALUES: one row, no column.
        None => {
            names.clear();
            select_template()?.0
        }
    };
    let default_values = insert.source.is_none();
    // VALUES: a column that is DEFAULT in every row is left out (the remote default applies);
    // $n written straight into a column takes the column's type.
    if let SetExpr::Values(values) = source.body.as_mut() {
        let width = values.rows.first().map_or(0, |r| r.content.len());
        if values.rows.iter().any(|r| r.content.len() != width) {
            return Err(EngineError::plan("42601", "VALUES lists must all be the same length"));
        }
        let mut keep = vec![true; width];
        for (i, k) in keep.iter_mut().enumerate() {
            let defaults = values.rows.iter().filter(|r| is_default(&r.content[i])).count();
            if defaults == values.rows.len() {
                *k = false;
            } else if defaults > 0 {
                return Err(unsupported("DEFAULT in some rows of a VALUES column but not in others"));
            }
        }
        if width > names.len() {
            return Err(EngineError::plan("42601", "INSERT has more expressions than target columns"));
        }
        if keep.iter().any(|k| !k) {
            if keep.iter().all(|k| !k) {
                return Err(unsupported("INSERT ... VALUES with DEFAULT in every column (use DEFAULT VALUES)"));
            }
            for row in &mut values.rows {
                let mut i = 0;
                row.content.retain(|_| {
                    i += 1;
                    keep[i - 1]
                });
            }
            let mut i = 0;
            names.retain(|_| {
                i += 1;
                i > keep.len() || keep[i - 1]
            });
        }
        for row in &values.rows {
            for (e, name) in row.content.iter().zip(&names) {
                if let Some(d) = declared.iter().find(|d| &d.name == name) {
                    hint_param(&mut oids, e, &d.pg_type);
                }
            }
        }
    }

    let source_statement = Statement::Query(source);
    let mut providers = resolve_statement(&source_statement, &s.ctx, s.wrappers, &s.runtime, &s.tz, None).await?;
    let planned = plan_statement(&s.state, &providers, source_statement, &oids, &s.tz)?;
    let width = if default_values { 0 } else { planned.plan.schema().fields().len() };
    if width > names.len() {
        return Err(EngineError::plan("42601", "INSERT has more expressions than target columns"));
    }
    if explicit && width < names.len() {
        return Err(EngineError::plan("42601", "INSERT has more target columns than expressions"));
    }
    names.truncate(width);
    let columns = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let d = declared.iter().find(|d| &d.name == name).ok_or_else(|| EngineError::Internal(name.clone()))?;
            Ok(WriteColumn {
                source: i,
                name: name.clone(),
                pg_type: d.pg_type.clone(),
                typmod: d.typmod,
                row_id: false,
            })
        })
        .collect::<Result<Vec<_>, EngineError>>()?;

    let access = s.ctx.access.clone();
    access.check_privilege(s.ctx.session.as_ref(), &foreign.catalog, &Privilege::Insert(names.clone())).await?;
    let alias = insert.table_alias.as_ref().map(|a| a.alias.clone());
    let returning = match &insert.returning {
        Some(items) => Some(
            plan_returning(&s, &target, from_item(table_name, alias.as_ref())?, items, &planned.planned_param_types)
                .await?,
        ),
        None => None,
    };
    if let Some((_, read)) = &returning
        && !read.is_empty()
    {
        let read = dedup(read.clone());
        access.check_privilege(s.ctx.session.as_ref(), &foreign.catalog, &Privilege::Select(read)).await?;
    }
    let write = WritePlan {
        op: Op::Insert,
        name: foreign.name.clone(),
        table: Some(foreign.table.clone()),
        local: None,
        columns,
        dedupe: false,
        reads_local: reads_local(&providers),
        returning: returning.map(|r| r.0),
    };
    providers.insert(reference, target.provider.clone());
    finish(s, planned, providers, write)
}

/// `INSERT INTO local_table [(cols)] SELECT ... [ON CONFLICT ...]` whose SELECT reads foreign
/// tables: the SELECT is planned here, the INSERT is Postgres's ([`LocalSink`]).
async fn prepare_local_insert(
    s: WriteSession<'_>,
    insert: ast::Insert,
    param_type_oids: &[u32],
) -> Result<Prepared, EngineError> {
    if insert.returning.is_some() {
        return Err(unsupported("RETURNING in an INSERT into a local table from foreign tables"));
    }
    let Some(source) = insert.source.clone() else {
        return Err(unsupported("INSERT ... DEFAULT VALUES here"));
    };
    let source_statement = Statement::Query(source);
    let providers = resolve_statement(&source_statement, &s.ctx, s.wrappers, &s.runtime, &s.tz, None).await?;
    let planned = plan_statement(&s.state, &providers, source_statement, param_type_oids, &s.tz)?;
    let fields = planned.plan.schema().fields().clone();
    let types = fields
        .iter()
        .map(|f| {
            PgType::default_for(f.data_type())
                .ok_or_else(|| unsupported(format!("inserting a value of type {} into a local table", f.data_type())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<String> = (1..=types.len()).map(|i| format!("c{i}")).collect();
    let select = format!(
        // Multi-argument unnest is FROM-clause syntax for ROWS FROM (unnest(..), ..), written
        // unqualified (the schema-qualified function takes one array).
        "SELECT {} FROM unnest({}) AS pgfed_rows({})",
        names
            .iter()
            .zip(&types)
            .map(|(n, t)| format!("pgfed_rows.{n}::{}", sql_type_name(t)))
            .collect::<Vec<_>>()
            .join(", "),
        (1..=types.len()).map(|i| format!("${i}::pg_catalog.text[]")).collect::<Vec<_>>().join(", "),
        names.join(", "),
    );
    let mut statements =
        Parser::parse_sql(&PostgreSqlDialect {}, &select).map_err(|e| EngineError::Internal(e.to_string()))?;
    let Some(Statement::Query(rows)) = statements.pop() else {
        return Err(EngineError::Internal("unnest template".into()));
    };
    let mut local = insert.clone();
    local.source = Some(rows);
    let sql = Statement::Insert(local).to_string();
    let write = WritePlan {
        op: Op::Insert,
        name: target_reference(match &insert.table {
            ast::TableObject::TableName(n) => n,
            _ => return Err(unsupported("INSERT INTO a table function")),
        })?
        .to_string(),
        table: None,
        local: Some(LocalSink { sql, types }),
        columns: Vec::new(),
        dedupe: false,
        reads_local: reads_local(&providers),
        returning: None,
    };
    finish(s, planned, providers, write)
}

async fn prepare_update(
    s: WriteSession<'_>,
    update: ast::Update,
    param_type_oids: &[u32],
) -> Result<Prepared, EngineError> {
    if !update.order_by.is_empty() || update.limit.is_some() {
        return Err(unsupported("UPDATE ... ORDER BY / LIMIT"));
    }
    let from = match update.from {
        Some(UpdateTableFromKind::AfterSet(f)) | Some(UpdateTableFromKind::BeforeSet(f)) => f,
        None => Vec::new(),
    };
    let (select_items, target_item, reference, target, row_id, set) = {
        let (item, reference) = single_target(&update.table)?;
        let probe = probe_statement(&item, &from, update.selection.as_ref())?;
        let providers = resolve_statement(&probe, &s.ctx, s.wrappers, &s.runtime, &s.tz, Some(&reference)).await?;
        let target = check_target(Op::Update, &reference, &providers)?;
        let foreign = target.foreign()?;
        let row_id = row_id(foreign)?;
        let mut set: Vec<(String, SqlExpr)> = Vec::new();
        for a in &update.assignments {
            let name = match &a.target {
                AssignmentTarget::ColumnName(n) => last_ident(n)?,
                AssignmentTarget::Tuple(_) => return Err(unsupported("UPDATE ... SET (a, b) = (...)")),
            };
            if !foreign.catalog.columns.iter().any(|c| c.name == name) {
                return Err(EngineError::plan(
                    "42703",
                    format!("column \"{name}\" of relation \"{}\" does not exist", foreign.catalog.name),
                ));
            }
            if set.iter().any(|(n, _)| *n == name) {
                return Err(EngineError::plan("42601", format!("multiple assignments to same column \"{name}\"")));
            }
            if is_default(&a.value) {
                return Err(unsupported("UPDATE ... SET column = DEFAULT"));
            }
            if name == row_id {
                return Err(unsupported(format!("UPDATE of the row-id column \"{name}\"")));
            }
            set.push((name, a.value.clone()));
        }
        let items: Vec<SelectItem> = std::iter::once(row_id_item(&item, &reference, &row_id))
            .chain(set.iter().map(|(_, e)| SelectItem::UnnamedExpr(e.clone())))
            .collect();
        (items, item, reference, target, row_id, set)
    };
    let foreign = target.foreign()?;
    let mut oids = param_type_oids.to_vec();
    for (name, e) in &set {
        if let Some(d) = foreign.catalog.columns.iter().find(|d| &d.name == name) {
            hint_param(&mut oids, e, &d.pg_type);
        }
    }
    let (query, mut select) = select_template()?;
    select.projection = select_items;
    select.from = std::iter::once(target_item.clone()).chain(from.iter().cloned()).collect();
    select.selection = update.selection.clone();
    let source_statement = query_of(query, select);
    let providers =
        resolve_statement(&source_statement, &s.ctx, s.wrappers, &s.runtime, &s.tz, Some(&reference)).await?;
    let planned = plan_statement(&s.state, &providers, source_statement, &oids, &s.tz)?;

    let mut columns = vec![row_id_column(foreign, &row_id)?];
    for (i, (name, _)) in set.iter().enumerate() {
        let d = foreign
            .catalog
            .columns
            .iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| EngineError::Internal(name.clone()))?;
        columns.push(WriteColumn {
            source: i + 1,
            name: name.clone(),
            pg_type: d.pg_type.clone(),
            typmod: d.typmod,
            row_id: false,
        });
    }
    let access = s.ctx.access.clone();
    let session = s.ctx.session.clone();
    access
        .check_privilege(
            session.as_ref(),
            &foreign.catalog,
            &Privilege::Update(set.iter().map(|(n, _)| n.clone()).collect()),
        )
        .await?;
    let qualifier = qualifier(&target_item, &reference);
    let mut read = columns_read(&planned.plan, &qualifier, 1);
    let returning = match &update.returning {
        Some(items) => {
            Some(plan_returning(&s, &target, target_item.clone(), items, &planned.planned_param_types).await?)
        }
        None => None,
    };
    if let Some((_, cols)) = &returning {
        read.extend(cols.iter().cloned());
    }
    if !read.is_empty() {
        access.check_privilege(session.as_ref(), &foreign.catalog, &Privilege::Select(dedup(read))).await?;
    }
    let write = WritePlan {
        op: Op::Update,
        name: foreign.name.clone(),
        table: Some(foreign.table.clone()),
        local: None,
        columns,
        dedupe: !from.is_empty(),
        reads_local: reads_local(&providers),
        returning: returning.map(|r| r.0),
    };
    finish(s, planned, providers, write)
}

async fn prepare_delete(
    s: WriteSession<'_>,
    delete: ast::Delete,
    param_type_oids: &[u32],
) -> Result<Prepared, EngineError> {
    if !delete.order_by.is_empty() || delete.limit.is_some() || !delete.tables.is_empty() {
        return Err(unsupported("DELETE ... ORDER BY / LIMIT / of several tables"));
    }
    let tables = match &delete.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    let [table] = tables.as_slice() else {
        return Err(unsupported("DELETE from several tables"));
    };
    let using = delete.using.clone().unwrap_or_default();
    let (item, reference) = single_target(table)?;
    let probe = probe_statement(&item, &using, delete.selection.as_ref())?;
    let providers = resolve_statement(&probe, &s.ctx, s.wrappers, &s.runtime, &s.tz, Some(&reference)).await?;
    let target = check_target(Op::Delete, &reference, &providers)?;
    let foreign = target.foreign()?;
    let row_id = row_id(foreign)?;
    let (query, mut select) = select_template()?;
    select.projection = vec![row_id_item(&item, &reference, &row_id)];
    select.from = std::iter::once(item.clone()).chain(using.iter().cloned()).collect();
    select.selection = delete.selection.clone();
    let source_statement = query_of(query, select);
    let planned = plan_statement(&s.state, &providers, source_statement, param_type_oids, &s.tz)?;
    let access = s.ctx.access.clone();
    let session = s.ctx.session.clone();
    access.check_privilege(session.as_ref(), &foreign.catalog, &Privilege::Delete).await?;
    let qualifier = qualifier(&item, &reference);
    let mut read = columns_read(&planned.plan, &qualifier, 1);
    let returning = match &delete.returning {
        Some(items) => Some(plan_returning(&s, &target, item.clone(), items, &planned.planned_param_types).await?),
        None => None,
    };
    if let Some((_, cols)) = &returning {
        read.extend(cols.iter().cloned());
    }
    if !read.is_empty() {
        access.check_privilege(session.as_ref(), &foreign.catalog, &Privilege::Select(dedup(read))).await?;
    }
    let write = WritePlan {
        op: Op::Delete,
        name: foreign.name.clone(),
        table: Some(foreign.table.clone()),
        local: None,
        columns: vec![row_id_column(foreign, &row_id)?],
        dedupe: !using.is_empty(),
        reads_local: reads_local(&providers),
        returning: returning.map(|r| r.0),
    };
    finish(s, planned, providers, write)
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    v.retain(|c| seen.insert(c.clone()));
    v
}

/// The UPDATE/DELETE target: one plain table, maybe aliased, no joins.
fn single_target(t: &TableWithJoins) -> Result<(TableWithJoins, TableReference), EngineError> {
    if !t.joins.is_empty() {
        return Err(unsupported("a join as the target of UPDATE/DELETE"));
    }
    let TableFactor::Table { name, .. } = &t.relation else {
        return Err(unsupported("UPDATE/DELETE of something other than a table"));
    };
    Ok((t.clone(), target_reference(name)?))
}

/// `SELECT 1 FROM target, others WHERE w`: what the statement reads, for resolution.
fn probe_statement(
    item: &TableWithJoins,
    others: &[TableWithJoins],
    selection: Option<&SqlExpr>,
) -> Result<Statement, EngineError> {
    let (query, mut select) = select_template()?;
    select.from = std::iter::once(item.clone()).chain(others.iter().cloned()).collect();
    select.selection = selection.cloned();
    Ok(query_of(query, select))
}

/// How the statement names the target's columns: its alias, else its name.
fn qualifier(item: &TableWithJoins, reference: &TableReference) -> TableReference {
    match &item.relation {
        TableFactor::Table { alias: Some(a), .. } => TableReference::bare(normalize(&a.name)),
        _ => reference.clone(),
    }
}

fn row_id_item(item: &TableWithJoins, reference: &TableReference, row_id: &str) -> SelectItem {
    let mut parts: Vec<Ident> = match qualifier(item, reference) {
        TableReference::Bare { table } => vec![Ident::with_quote('"', table.as_ref())],
        TableReference::Partial { schema, table } => {
            vec![Ident::with_quote('"', schema.as_ref()), Ident::with_quote('"', table.as_ref())]
        }
        TableReference::Full { catalog, schema, table } => vec![
            Ident::with_quote('"', catalog.as_ref()),
            Ident::with_quote('"', schema.as_ref()),
            Ident::with_quote('"', table.as_ref()),
        ],
    };
    parts.push(Ident::with_quote('"', row_id));
    SelectItem::UnnamedExpr(SqlExpr::CompoundIdentifier(parts))
}

fn row_id(foreign: &ForeignProvider) -> Result<String, EngineError> {
    foreign.table.row_id_column().map(str::to_string).ok_or_else(|| EngineError::Connector {
        table: foreign.name.clone(),
        source: pgfed_connector_sdk::ConnectorError::MissingOption { name: "key".into(), level: "foreign table" },
    })
}

fn row_id_column(foreign: &ForeignProvider, row_id: &str) -> Result<WriteColumn, EngineError> {
    let d = foreign
        .catalog
        .columns
        .iter()
        .find(|c| c.name == row_id)
        .ok_or_else(|| EngineError::Internal(format!("row-id column {row_id} is not declared")))?;
    Ok(WriteColumn { source: 0, name: d.name.clone(), pg_type: d.pg_type.clone(), typmod: d.typmod, row_id: true })
}

/// Target columns the user's expressions read (Postgres wants SELECT on them): every column of
/// `qualifier` in the plan's expressions but the first `skip` outputs (the row id pgfed adds).
fn columns_read(plan: &LogicalPlan, qualifier: &TableReference, skip: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |c: &Column| {
        if c.relation.as_ref() == Some(qualifier) {
            out.push(c.name.clone());
        }
    };
    if let LogicalPlan::Projection(p) = plan {
        for e in p.expr.iter().skip(skip) {
            e.column_refs().into_iter().for_each(&mut add);
        }
        let _ = p.input.apply(|node| {
            for e in node.expressions() {
                e.column_refs().into_iter().for_each(&mut add);
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
    out
}

fn reads_local(providers: &HashMap<TableReference, Arc<dyn TableProvider>>) -> bool {
    providers.values().any(|p| p.downcast_ref::<crate::local::LocalProvider>().is_some())
}

/// Plans `SELECT <items> FROM target [AS alias]` over the target alone; returns it and the
/// target columns it reads.
async fn plan_returning(
    s: &WriteSession<'_>,
    target: &Target,
    item: TableWithJoins,
    items: &[SelectItem],
    param_types: &[DataType],
) -> Result<(Returning, Vec<String>), EngineError> {
    let (query, mut select) = select_template()?;
    select.projection = items.to_vec();
    select.from = vec![item.clone()];
    let statement = query_of(query, select);
    semantics::check_statement(&statement)?;
    let names = semantics::postgres_names(&statement);
    let mut providers = HashMap::new();
    providers.insert(target.reference.clone(), target.provider.clone());
    let provider = Provider::new(&s.state, &providers);
    let declared: Vec<Option<datafusion::arrow::datatypes::FieldRef>> = param_types
        .iter()
        .enumerate()
        .map(|(i, t)| Some(Arc::new(Field::new(format!("${}", i + 1), t.clone(), true))))
        .collect();
    let mut planner_context = PlannerContext::new().with_prepare_param_data_types(declared);
    let plan = SqlToRel::new_with_options(&provider, parser_options(&s.state))
        .sql_statement_to_plan_with_context(statement, &mut planner_context)?;
    semantics::check_plan(&plan)?;
    let LogicalPlan::Projection(p) = &plan else {
        return Err(unsupported("this form of RETURNING"));
    };
    let q = qualifier(&item, &target.reference);
    let mut read = Vec::new();
    for e in &p.expr {
        for c in e.column_refs() {
            if c.relation.as_ref() == Some(&q) {
                read.push(c.name.clone());
            }
        }
    }
    let columns = output_columns(&plan, &names)?;
    let output: SchemaRef = Arc::new(Schema::new(
        p.schema
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| Field::new(&c.name, f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let foreign = target.foreign()?;
    let returning = Returning {
        plan: plan.clone(),
        names: foreign.catalog.columns.iter().map(|c| c.name.clone()).collect(),
        input: foreign.schema.clone(),
        output,
        columns,
    };
    Ok((returning, read))
}

fn finish(
    s: WriteSession<'_>,
    planned: crate::planner::Planned,
    providers: HashMap<TableReference, Arc<dyn TableProvider>>,
    write: WritePlan,
) -> Result<Prepared, EngineError> {
    let columns = write.returning.as_ref().map(|r| r.columns.clone()).unwrap_or_default();
    let mut tables = crate::planner::touched(&providers);
    if let Some(table) = &write.table
        && !tables.iter().any(|t| std::ptr::addr_eq(Arc::as_ptr(&t.table), Arc::as_ptr(table)))
    {
        tables.push(crate::txn::Touched { name: write.name.clone(), table: table.clone() });
    }
    Ok(Prepared {
        param_types: planned.param_types,
        columns,
        kind: Kind::Write,
        plan: planned.plan,
        planned_param_types: planned.planned_param_types,
        state: s.state,
        runtime: s.runtime,
        ctx: s.ctx,
        tz: s.tz,
        collation: s.collation,
        tables,
        txn: s.txn,
        write: Some(Arc::new(write)),
    })
}

/// One execution of a write: the stream of RETURNING batches (empty without RETURNING), ending
/// with the command tag's count.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    prepared: &Prepared,
    write: Arc<WritePlan>,
    source: SendableRecordBatchStream,
    hooks: Option<Hooks>,
    state: &SessionState,
    values: Vec<ScalarValue>,
    cancel: &CancellationToken,
    token: CancellationToken,
    deadline: Option<Instant>,
) -> Result<ResultStream, EngineError> {
    let returning = match &write.returning {
        Some(r) => {
            let plan = if values.is_empty() {
                r.plan.clone()
            } else {
                r.plan.clone().with_param_values(ParamValues::from(values))?
            };
            let plan = semantics::checked_arithmetic(plan)?;
            let LogicalPlan::Projection(p) = &plan else {
                return Err(unsupported("this form of RETURNING"));
            };
            let exprs = p
                .expr
                .iter()
                .map(|e| {
                    create_physical_expr(
                        e,
                        p.input.schema(),
                        state.execution_props(),
                        &PhysicalPlanningContext::default(),
                    )
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| unsupported(format!("RETURNING expression ({e})")))?;
            Some(Eval { exprs, input: r.input.clone(), output: r.output.clone(), names: r.names.clone() })
        }
        None => None,
    };
    let schema = returning.as_ref().map_or_else(|| Arc::new(Schema::empty()), |r| r.output.clone());
    let affected = Arc::new(AtomicU64::new(0));
    let writer = Writer {
        write: write.clone(),
        source: Some(source),
        buffered: Vec::new(),
        hooks,
        returning,
        session: prepared.ctx.session.clone(),
        scan: prepared.runtime.scan_context(),
        tz: prepared.tz.clone(),
        affected: affected.clone(),
        seen: HashSet::new(),
        wrote_local: false,
    };
    let batches = futures::stream::unfold(Some(writer), |state| async move {
        let mut writer = state?;
        match writer.step().await {
            Ok(Some(batch)) => Some((Ok(batch), Some(writer))),
            Ok(None) => match writer.hooks.take() {
                Some(h) => match h.commit().await {
                    Ok(()) => None,
                    Err(e) => Some((Err(e), None)),
                },
                None => None,
            },
            Err(e) => {
                if let Some(h) = writer.hooks.take() {
                    h.rollback().await;
                }
                Some((Err(e), None))
            }
        }
    })
    .boxed();
    Ok(ResultStream::new(schema, batches, cancel.clone(), token, deadline, Tag::Write(write.op.tag(), affected)))
}

struct Eval {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    input: SchemaRef,
    output: SchemaRef,
    names: Vec<String>,
}

struct Writer {
    write: Arc<WritePlan>,
    source: Option<SendableRecordBatchStream>,
    /// Source batches read ahead (when the source reads the client's session).
    buffered: Vec<RecordBatch>,
    hooks: Option<Hooks>,
    returning: Option<Eval>,
    session: Arc<dyn UpstreamSession>,
    scan: ScanContext,
    tz: String,
    affected: Arc<AtomicU64>,
    seen: HashSet<String>,
    wrote_local: bool,
}

/// One INSERT of a [`LocalSink`] with `batch`'s rows (none: empty arrays); rows inserted.
async fn insert_local(
    sink: &LocalSink,
    session: &dyn UpstreamSession,
    batch: Option<&RecordBatch>,
) -> Result<u64, EngineError> {
    let params = match batch {
        Some(batch) => batch
            .columns()
            .iter()
            .zip(&sink.types)
            .map(|(a, t)| text_values(a, t).map(|v| Some(array_literal(&v))))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![Some("{}".to_string()); sink.types.len()],
    };
    let tag = session.execute(&sink.sql, &params).await?;
    // "INSERT 0 n"
    Ok(tag.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0))
}

impl Writer {
    async fn next_source(&mut self) -> Result<Option<RecordBatch>, EngineError> {
        if self.write.reads_local
            && let Some(mut source) = self.source.take()
        {
            // The conversion queries below use the client's session, which the source's local
            // queries hold until read to the end.
            while let Some(b) = source.next().await {
                self.buffered.push(b?);
            }
            self.buffered.reverse();
        }
        if self.write.reads_local {
            return Ok(self.buffered.pop());
        }
        match &mut self.source {
            Some(s) => match s.next().await {
                Some(b) => Ok(Some(b?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Writes source batches until one gives RETURNING rows; `None` at the end.
    async fn step(&mut self) -> Result<Option<RecordBatch>, EngineError> {
        loop {
            let Some(batch) = self.next_source().await? else {
                // No row at all: the INSERT still runs once, so Postgres reports what it would
                // (privileges, column counts, constraints of the statement).
                if let Some(sink) = &self.write.local
                    && !self.wrote_local
                {
                    self.wrote_local = true;
                    insert_local(sink, self.session.as_ref(), None).await?;
                }
                return Ok(None);
            };
            let batch = if self.write.dedupe { self.dedupe(batch)? } else { batch };
            if batch.num_rows() == 0 {
                continue;
            }
            let write = self.write.clone();
            let session = self.session.clone();
            if let Some(sink) = &write.local {
                self.affected.fetch_add(insert_local(sink, session.as_ref(), Some(&batch)).await?, Ordering::Relaxed);
                self.wrote_local = true;
                continue;
            }
            let rows = convert(&write, &self.tz, session.as_ref(), &batch).await?;
            let names = self.returning.as_ref().map(|r| r.names.clone()).unwrap_or_default();
            let Some(table) = &self.write.table else {
                return Err(EngineError::Internal("a foreign write without its table".into()));
            };
            let result = match self.write.op {
                Op::Insert => table.insert(rows, &names, &self.scan).await,
                Op::Update => table.update(rows, &names, &self.scan).await,
                Op::Delete => table.delete(rows, &names, &self.scan).await,
            }
            .map_err(|source| EngineError::Connector { table: self.write.name.clone(), source })?;
            self.affected.fetch_add(result.rows_affected, Ordering::Relaxed);
            if let (Some(eval), Some(returned)) = (&self.returning, result.returning) {
                let input = conform(returned, &eval.input)?;
                let n = input.num_rows();
                let arrays = eval
                    .exprs
                    .iter()
                    .map(|e| e.evaluate(&input).and_then(|v| v.into_array(n)))
                    .collect::<Result<Vec<_>, _>>()?;
                let options = RecordBatchOptions::new().with_row_count(Some(n));
                let out = RecordBatch::try_new_with_options(eval.output.clone(), arrays, &options)
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                if n > 0 {
                    return Ok(Some(out));
                }
            }
        }
    }

    /// Drops rows whose row id was written already in this statement.
    fn dedupe(&mut self, batch: RecordBatch) -> Result<RecordBatch, EngineError> {
        let ids = batch.column(0);
        let mut keep = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let key = ScalarValue::try_from_array(ids, i)?.to_string();
            keep.push(self.seen.insert(key));
        }
        let mask = datafusion::arrow::array::BooleanArray::from(keep);
        datafusion::arrow::compute::filter_record_batch(&batch, &mask).map_err(|e| EngineError::Internal(e.to_string()))
    }
}

/// The connector's batch: the written columns, converted to their declared types.
async fn convert(
    write: &WritePlan,
    tz: &str,
    session: &dyn UpstreamSession,
    batch: &RecordBatch,
) -> Result<RecordBatch, EngineError> {
    {
        let mut fields = Vec::with_capacity(write.columns.len());
        let mut arrays = Vec::with_capacity(write.columns.len());
        for c in &write.columns {
            let array = batch.column(c.source).clone();
            let planned = plan_type(&c.pg_type, c.typmod, tz);
            let array = if c.row_id { array } else { coerce(array, c, &planned, session).await? };
            let declared = c.pg_type.arrow_type(c.typmod);
            let array = if array.data_type() == &declared {
                array
            } else {
                cast(&array, &declared).map_err(|e| EngineError::Internal(e.to_string()))?
            };
            fields.push(Field::new(&c.name, declared, true));
            arrays.push(array);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
            .map_err(|e| EngineError::Internal(e.to_string()))
    }
}

/// Converts a source column to a target column's type as Postgres assigns it. Conversions that
/// cannot change a value (same type, integer widening, integer or float4 to float8, a NULL
/// column) are done here; every other one is done by Postgres itself in the client's session
/// (`v::source_type::target_type` over the values sent as text), so rounding, range errors
/// (22003), input syntax (22P02, 22007) and their messages are Postgres's own.
async fn coerce(
    array: ArrayRef,
    column: &WriteColumn,
    planned: &DataType,
    session: &dyn UpstreamSession,
) -> Result<ArrayRef, EngineError> {
    let source = array.data_type().clone();
    if &source == planned {
        return Ok(array);
    }
    if source == DataType::Null || array.null_count() == array.len() {
        return Ok(new_null_array(planned, array.len()));
    }
    if lossless(&source, planned) {
        return cast(&array, planned).map_err(|e| EngineError::Internal(e.to_string()));
    }
    let source_pg = PgType::default_for(&source)
        .ok_or_else(|| unsupported(format!("assigning a value of type {source} to column \"{}\"", column.name)))?;
    let texts = text_values(&array, &source_pg)?;
    let mut target_sql = sql_type_name(&column.pg_type);
    if column.pg_type == PgType::Numeric
        && let Some((p, s)) = PgType::numeric_precision_scale(column.typmod)
    {
        target_sql = format!("{target_sql}({p},{s})");
    }
    let from =
        if matches!(source_pg, PgType::Text) { String::new() } else { format!("::{}", sql_type_name(&source_pg)) };
    let sql = format!(
        "SELECT u.v{from}::{target_sql} FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY AS u(v, n) ORDER BY u.n"
    );
    let rows = session.query(&sql, &[Some(array_literal(&texts))], ResultFormat::Binary).await?;
    let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(&column.name, planned.clone(), true)]));
    let decoders = Decoders::new(&rows.fields, &schema)?;
    let mut chunks = rows.chunks;
    let mut parts = Vec::new();
    while let Some(chunk) = chunks.next().await {
        parts.push(decoders.batch(&chunk?)?);
    }
    let all = datafusion::arrow::compute::concat_batches(&schema, &parts)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    if all.num_rows() != array.len() {
        return Err(EngineError::Internal("conversion returned a different number of rows".into()));
    }
    Ok(all.column(0).clone())
}

/// Conversions that give the same value in Postgres and in Arrow.
fn lossless(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    matches!(
        (from, to),
        (Int16, Int32 | Int64 | Float64 | Float32)
            | (Int32, Int64 | Float64 | Float32)
            | (Int64, Float64 | Float32)
            | (Float32, Float64)
    ) || matches!((from, to), (Timestamp(a, Some(_)), Timestamp(b, Some(_))) if a == b)
}

/// Each value as Postgres prints it (pgfed-encode's text format, ISO dates, UTC), which
/// Postgres reads back exactly.
fn text_values(array: &ArrayRef, pg_type: &PgType) -> Result<Vec<Option<String>>, EngineError> {
    let schema = Arc::new(Schema::new(vec![Field::new("v", array.data_type().clone(), true)]));
    let encoder = BatchEncoder::new(schema.clone(), &[ColumnSpec::of(pg_type.clone())], &[], TextSettings::default())
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let batch = RecordBatch::try_new(schema, vec![array.clone()]).map_err(|e| EngineError::Internal(e.to_string()))?;
    let mut out = Vec::with_capacity(array.len());
    let mut buf = bytes::BytesMut::new();
    for row in 0..array.len() {
        buf.clear();
        encoder.write_data_row_body(&batch, row, &mut buf).map_err(|e| EngineError::Internal(e.to_string()))?;
        // Body: column count (2 bytes), then length (4 bytes, -1 for NULL) and the value.
        let len = buf.get(2..6).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(-1);
        if len < 0 {
            out.push(None);
        } else {
            let bytes = buf.get(6..6 + len as usize).unwrap_or_default();
            out.push(Some(String::from_utf8_lossy(bytes).into_owned()));
        }
    }
    Ok(out)
}

/// A `text[]` literal: every element double-quoted with `"` and `\` escaped, NULL unquoted.
pub(crate) fn array_literal(values: &[Option<String>]) -> String {
    let mut s = String::from("{");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match v {
            None => s.push_str("NULL"),
            Some(v) => {
                s.push('"');
                for ch in v.chars() {
                    if ch == '"' || ch == '\\' {
                        s.push('\\');
                    }
                    s.push(ch);
                }
                s.push('"');
            }
        }
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literal_quotes_every_element() {
        let v = vec![Some("a\"b".to_string()), None, Some("c\\,d}".to_string()), Some("NULL".to_string())];
        assert_eq!(array_literal(&v), r#"{"a\"b",NULL,"c\\,d}","NULL"}"#);
    }

    #[test]
    fn only_value_preserving_conversions_are_local() {
        assert!(lossless(&DataType::Int32, &DataType::Int64));
        assert!(!lossless(&DataType::Int64, &DataType::Int32));
        assert!(!lossless(&DataType::Float64, &DataType::Int64));
        assert!(!lossless(&DataType::Utf8, &DataType::Date32));
    }
}
