//! Parsing, planning and running one statement.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{ParamValues, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::Result as DfResult;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner, RelationPlanner};
use datafusion::logical_expr::{AggregateUDF, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF};
use datafusion::physical_plan::{ExecutionPlan, displayable, execute_stream};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::planner::{ParserOptions, PlannerContext, SqlToRel};
use datafusion::sql::sqlparser::ast::{Statement, UtilityOption};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::{StreamExt, TryStreamExt};
use pgfed_encode::PgType;

use crate::context::{Runtime, StatementContext};
use crate::foreign::ForeignProvider;
use tokio_util::sync::CancellationToken;

use crate::local::{LocalPlanner, LocalProvider, collapse};
use crate::params::{Param, bind};
use crate::resolve::{plan_type, resolve};
use crate::semantics;
use crate::stream::{ResultStream, Tag};
use crate::txn::{Hooks, Touched, Transactions, TxnMode};
use crate::write::WritePlan;
use crate::{EngineError, SessionWrappers};

/// A result column as RowDescription describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputColumn {
    pub name: String,
    pub pg_type: PgType,
    pub typmod: i32,
    /// The table the column is taken from unchanged (a foreign table's shadow or a local
    /// table), with its attnum; 0 otherwise.
    pub table_oid: u32,
    pub attnum: i16,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Query,
    Explain {
        analyze: bool,
        verbose: bool,
    },
    /// INSERT, UPDATE or DELETE on a foreign table (see `write`).
    Write,
}

/// A planned statement, ready to run (more than once, one execution at a time).
pub struct Prepared {
    /// `$1..$n` types, for ParameterDescription.
    pub param_types: Vec<PgType>,
    /// For RowDescription.
    pub columns: Vec<OutputColumn>,
    pub(crate) kind: Kind,
    /// For a write: the plan of the rows to write.
    pub(crate) plan: LogicalPlan,
    pub(crate) planned_param_types: Vec<DataType>,
    pub(crate) state: SessionState,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) ctx: StatementContext,
    pub(crate) tz: String,
    pub(crate) collation: String,
    /// The foreign tables of the statement, for the transaction hooks.
    pub(crate) tables: Vec<Touched>,
    pub(crate) txn: Arc<Transactions>,
    pub(crate) write: Option<Arc<WritePlan>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("param_types", &self.param_types)
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

/// The SQL planner's view of the statement's tables and the session's functions.
pub(crate) struct Provider<'a> {
    pub state: &'a SessionState,
    pub tables: HashMap<TableReference, Arc<dyn TableSource>>,
}

impl<'a> Provider<'a> {
    pub(crate) fn new(state: &'a SessionState, providers: &HashMap<TableReference, Arc<dyn TableProvider>>) -> Self {
        let tables = providers.iter().map(|(r, p)| (r.clone(), provider_as_source(p.clone()))).collect();
        Provider { state, tables }
    }
}

impl ContextProvider for Provider<'_> {
    fn get_table_source(&self, name: TableReference) -> DfResult<Arc<dyn TableSource>> {
        self.tables.get(&name).cloned().ok_or_else(|| {
            EngineError::plan("42P01", format!("relation \"{}\" does not exist", name.table())).into_datafusion()
        })
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        self.state.expr_planners()
    }

    fn get_relation_planners(&self) -> &[Arc<dyn RelationPlanner>] {
        self.state.relation_planners()
    }

    fn get_type_planner(&self) -> Option<Arc<dyn datafusion::logical_expr::planner::TypePlanner>> {
        Some(Arc::new(crate::uuid::UuidType))
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.state.scalar_functions().get(name).cloned()
    }

    fn get_higher_order_meta(&self, name: &str) -> Option<Arc<HigherOrderUDF>> {
        self.state.higher_order_functions().get(name).cloned()
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.state.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.state.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.state.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        self.state.scalar_functions().keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        self.state.higher_order_functions().keys().cloned().collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.state.aggregate_functions().keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.state.window_functions().keys().cloned().collect()
    }
}

pub(crate) fn parser_options(state: &SessionState) -> ParserOptions {
    let o = &state.config_options().sql_parser;
    ParserOptions {
        parse_float_as_decimal: o.parse_float_as_decimal,
        enable_ident_normalization: o.enable_ident_normalization,
        enable_options_value_normalization: o.enable_options_value_normalization,
        support_varchar_with_length: o.support_varchar_with_length,
        map_string_types_to_utf8view: o.map_string_types_to_utf8view,
        collect_spans: false,
        default_null_ordering: o.default_null_ordering.as_str().into(),
    }
}

/// The statement's kind and the query inside it.
pub(crate) fn classify(sql: &str) -> Result<(Kind, Statement), EngineError> {
    let mut statements =
        Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| EngineError::Syntax(e.to_string()))?;
    if statements.len() != 1 {
        return Err(EngineError::Unsupported("more than one statement in a federated query string".into()));
    }
    let statement = statements.remove(0);
    match statement {
        Statement::Query(_) => Ok((Kind::Query, statement)),
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => Ok((Kind::Write, statement)),
        Statement::Explain { analyze, verbose, statement, options, format, .. } => {
            if format.is_some() {
                return Err(EngineError::Unsupported("EXPLAIN FORMAT".into()));
            }
            let (mut analyze, mut verbose) = (analyze, verbose);
            for UtilityOption { name, arg } in options.unwrap_or_default() {
                let on = arg.map(|a| !matches!(a.to_string().to_lowercase().as_str(), "false" | "off" | "0"));
                match name.value.to_lowercase().as_str() {
                    "analyze" => analyze = on.unwrap_or(true),
                    "verbose" => verbose = on.unwrap_or(true),
                    "costs" | "timing" | "summary" | "buffers" | "settings" | "wal" => {}
                    other => return Err(EngineError::Unsupported(format!("EXPLAIN option {}", other.to_uppercase()))),
                }
            }
            match *statement {
                Statement::Query(_) => Ok((Kind::Explain { analyze, verbose }, *statement)),
                other => Err(EngineError::Unsupported(format!("EXPLAIN of {}", statement_kind(&other)))),
            }
        }
        other => Err(EngineError::Unsupported(statement_kind(&other))),
    }
}

fn statement_kind(s: &Statement) -> String {
    let text = s.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match s {
        Statement::Insert(_) => "INSERT".into(),
        Statement::Update { .. } => "UPDATE".into(),
        Statement::Delete(_) => "DELETE".into(),
        _ => words.join(" ").to_uppercase(),
    }
}

/// The session TimeZone as Arrow understands it, or an error naming it.
fn arrow_time_zone(tz: &str) -> Result<String, EngineError> {
    let tz = if tz.is_empty() { "UTC" } else { tz };
    let canonical = match tz.to_ascii_lowercase().as_str() {
        "utc" | "etc/utc" | "gmt" | "etc/gmt" | "z" | "zulu" | "universal" => "UTC".to_string(),
        _ => tz.to_string(),
    };
    canonical
        .parse::<datafusion::arrow::array::timezone::Tz>()
        .map(|_| canonical.clone())
        .map_err(|_| EngineError::Unsupported(format!("TimeZone setting \"{tz}\"")))
}

/// The plan of one query, its parameters' types (for ParameterDescription) and the Arrow types
/// they are planned with.
pub(crate) struct Planned {
    pub plan: LogicalPlan,
    pub param_types: Vec<PgType>,
    pub planned_param_types: Vec<DataType>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn prepare(
    base: &SessionState,
    wrappers: &SessionWrappers,
    sql: &str,
    param_type_oids: &[u32],
    ctx: StatementContext,
    collation: String,
    txn: Arc<Transactions>,
) -> Result<Prepared, EngineError> {
    let (kind, statement) = classify(sql)?;
    semantics::check_statement(&statement)?;
    let tz = arrow_time_zone(&ctx.time_zone)?;
    let mut state = base.clone();
    state.config_mut().options_mut().execution.time_zone = Some(tz.clone());
    let runtime = Arc::new(Runtime::new(&ctx));
    if let Kind::Write = kind {
        let session = crate::write::WriteSession { state, wrappers, ctx, runtime, tz, collation, txn };
        return crate::write::prepare(session, statement, param_type_oids).await;
    }

    let names = semantics::postgres_names(&statement);
    let mut statement = statement;
    semantics::alias_like_postgres(&mut statement, &names);
    let providers = resolve_statement(&statement, &ctx, wrappers, &runtime, &tz, None).await?;
    let tables = touched(&providers);
    let planned = plan_statement(&state, &providers, statement, param_type_oids, &tz)?;
    let columns = match kind {
        Kind::Query | Kind::Write => output_columns(&planned.plan, &names)?,
        Kind::Explain { .. } => {
            vec![OutputColumn { name: "QUERY PLAN".into(), pg_type: PgType::Text, typmod: -1, table_oid: 0, attnum: 0 }]
        }
    };
    Ok(Prepared {
        param_types: planned.param_types,
        columns,
        kind,
        plan: planned.plan,
        planned_param_types: planned.planned_param_types,
        state,
        runtime,
        ctx,
        tz,
        collation,
        tables,
        txn,
        write: None,
    })
}

/// The table providers of every relation the statement names.
pub(crate) async fn resolve_statement(
    statement: &Statement,
    ctx: &StatementContext,
    wrappers: &SessionWrappers,
    runtime: &Arc<Runtime>,
    tz: &str,
    write_target: Option<&TableReference>,
) -> Result<HashMap<TableReference, Arc<dyn TableProvider>>, EngineError> {
    let df_statement = DFStatement::Statement(Box::new(statement.clone()));
    let (references, _ctes) = datafusion::sql::resolve::resolve_table_references(&df_statement, true)?;
    resolve(&references, ctx, wrappers, runtime, tz, write_target).await
}

/// The foreign tables among `providers`.
pub(crate) fn touched(providers: &HashMap<TableReference, Arc<dyn TableProvider>>) -> Vec<Touched> {
    providers
        .values()
        .filter_map(|p| p.downcast_ref::<ForeignProvider>())
        .map(|f| Touched { name: f.name.clone(), table: f.table.clone() })
        .collect()
}

/// Plans a query (or EXPLAIN of one) over resolved tables, with its parameters typed.
pub(crate) fn plan_statement(
    state: &SessionState,
    providers: &HashMap<TableReference, Arc<dyn TableProvider>>,
    statement: Statement,
    param_type_oids: &[u32],
    tz: &str,
) -> Result<Planned, EngineError> {
    let provider = Provider::new(state, providers);

    // LIMIT $n and OFFSET $n are int8 in Postgres unless the client says otherwise.
    let mut param_type_oids = param_type_oids.to_vec();
    for n in semantics::count_placeholders(&statement) {
        if param_type_oids.len() < n {
            param_type_oids.resize(n, 0);
        }
        if param_type_oids[n - 1] == 0 {
            param_type_oids[n - 1] = PgType::Int8.oid();
        }
    }
    let param_type_oids = param_type_oids.as_slice();
    let mut declared: Vec<Option<FieldRef>> = Vec::new();
    for (i, oid) in param_type_oids.iter().enumerate() {
        if *oid == 0 {
            declared.push(None);
            continue;
        }
        let t = PgType::from_oid(*oid)
            .ok_or_else(|| EngineError::Unsupported(format!("parameter ${} of type OID {oid}", i + 1)))?;
        declared.push(Some(Arc::new(Field::new(format!("${}", i + 1), plan_type(&t, -1, tz), true))));
    }
    let mut planner_context = PlannerContext::new().with_prepare_param_data_types(declared);
    let plan = SqlToRel::new_with_options(&provider, parser_options(state))
        .sql_statement_to_plan_with_context(statement, &mut planner_context)?;
    semantics::check_plan(&plan)?;
    semantics::check_avg(&plan)?;
    let plan = semantics::int4_literals(plan)?;
    let plan = semantics::float_literals(plan)?;
    let plan = crate::uuid::uuid_literals(plan)?;
    let plan = semantics::postgres_sums(plan)?;

    // Parameters: the client's declared type, else DataFusion's inference, else text.
    let inferred = plan.get_parameter_fields()?;
    let count = inferred
        .keys()
        .filter_map(|k| k.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()))
        .max()
        .unwrap_or(0)
        .max(param_type_oids.iter().rposition(|o| *o != 0).map_or(0, |p| p + 1));
    let mut param_types = Vec::with_capacity(count);
    let mut planned_param_types = Vec::with_capacity(count);
    for i in 0..count {
        let field = inferred.get(&format!("${}", i + 1)).cloned().flatten();
        let pg = match param_type_oids.get(i).copied().filter(|o| *o != 0) {
            Some(oid) => PgType::from_oid(oid)
                .ok_or_else(|| EngineError::Unsupported(format!("parameter ${} of type OID {oid}", i + 1)))?,
            None => field.as_ref().and_then(|f| PgType::default_for(f.data_type())).unwrap_or(PgType::Text),
        };
        let planned = field.map(|f| f.data_type().clone()).unwrap_or_else(|| plan_type(&pg, -1, tz));
        param_types.push(pg);
        planned_param_types.push(planned);
    }
    Ok(Planned { plan, param_types, planned_param_types })
}

impl Prepared {
    /// Whether this is an INSERT, UPDATE or DELETE (its tag is known only at the end of its
    /// stream; see [`ResultStream::command_tag`]).
    pub fn is_write(&self) -> bool {
        matches!(self.kind, Kind::Write)
    }

    /// Whether the statement returns rows (RowDescription) or not (NoData: a write without
    /// RETURNING).
    pub fn returns_rows(&self) -> bool {
        !(self.is_write() && self.write.as_ref().is_some_and(|w| !w.has_returning()))
    }

    /// Runs the statement with Bind's parameter values. Rows stream as the plan produces them;
    /// `statement_timeout` counts from here.
    pub async fn execute(&self, params: &[Param]) -> Result<ResultStream, EngineError> {
        self.execute_with(params, &self.ctx.cancel.clone()).await
    }

    /// [`Prepared::execute`] under `cancel` rather than the token the statement was prepared
    /// with: a statement prepared in one protocol exchange (Parse) runs in a later one (Execute),
    /// whose cancel requests must reach it.
    pub async fn execute_with(
        &self,
        params: &[Param],
        cancel: &CancellationToken,
    ) -> Result<ResultStream, EngineError> {
        self.execute_in(params, cancel, TxnMode::Autocommit).await
    }

    /// [`Prepared::execute_with`] knowing the client's transaction: `mode` comes from the
    /// transaction status at the statement's start (`I`: [`TxnMode::Autocommit`], `T`:
    /// [`TxnMode::Block`]). In a block every foreign table of the statement is begun (connector
    /// `begin`) before its first use; the proxy must then end the block with
    /// [`crate::EngineSession::pre_commit`] + [`crate::EngineSession::commit`] or
    /// [`crate::EngineSession::rollback`]. In autocommit a write begins and commits its tables
    /// itself when its stream ends.
    pub async fn execute_in(
        &self,
        params: &[Param],
        cancel: &CancellationToken,
        mode: TxnMode,
    ) -> Result<ResultStream, EngineError> {
        self.txn.settle().await;
        if mode == TxnMode::Autocommit && self.txn.any().await {
            // A block ended without the proxy calling commit or rollback: never let its remote
            // transaction absorb this statement.
            tracing::warn!("remote transactions of an ended transaction block were left open; rolling them back");
            self.txn.rollback().await;
        }
        let hooks = match (mode, self.kind) {
            (TxnMode::Block, _) => {
                self.txn.begin_if_needed(&self.tables).await?;
                None
            }
            (TxnMode::Autocommit, Kind::Write) => Some(Hooks::begin(self.txn.clone(), self.tables.clone()).await?),
            (TxnMode::Autocommit, _) => None,
        };
        let started = Instant::now();
        let token = self.runtime.start(cancel, self.ctx.statement_timeout);
        let deadline = self.ctx.statement_timeout.map(|t| started + t);
        let values =
            bind(params, &self.param_types, &self.planned_param_types, &self.tz, self.ctx.session.as_ref()).await?;
        let plan = if values.is_empty() {
            self.plan.clone()
        } else {
            self.plan.clone().with_param_values(ParamValues::from(values.clone()))?
        };
        // now() and friends are this execution's start.
        let mut state = self.state.clone();
        let options = state.config_options().clone();
        state.execution_props_mut().mark_start_execution(options);
        let state = state;
        let optimized = state.optimize(&plan)?;
        let pushed = crate::remote::push(optimized, &self.runtime)?;
        let collapsed = collapse(pushed, &self.runtime)?;
        let joins =
            datafusion::common::tree_node::TreeNode::exists(&collapsed, |n| Ok(matches!(n, LogicalPlan::Join(_))))?;
        self.runtime.wants_estimates.store(joins, std::sync::atomic::Ordering::Relaxed);
        semantics::check_text_order(&collapsed, &self.collation)?;
        let collapsed = semantics::checked_arithmetic(collapsed)?;
        let physical = DefaultPhysicalPlanner::with_extension_planners(vec![
            Arc::new(LocalPlanner),
            Arc::new(crate::remote::RemotePlanner),
        ])
        .create_physical_plan(&collapsed, &state)
        .await?;
        let physical = if semantics::collation_is_bytewise(&self.collation) {
            physical
        } else {
            crate::collate::rewrite(physical, &self.runtime.session)?
        };
        match self.kind {
            Kind::Write => {
                let write = self.write.clone().ok_or_else(|| EngineError::Internal("write without its plan".into()))?;
                let source = execute_stream(physical, state.task_ctx())?;
                crate::write::run(self, write, source, hooks, &state, values, cancel, token, deadline)
            }
            Kind::Query => {
                let schema = output_schema(&physical.schema(), &self.columns);
                let out = schema.clone();
                let batches = execute_stream(physical, state.task_ctx())?
                    .map(move |b| {
                        let b = b.map_err(EngineError::from)?;
                        RecordBatch::try_new(out.clone(), b.columns().to_vec())
                            .map_err(|e| EngineError::Internal(e.to_string()))
                    })
                    .boxed();
                Ok(ResultStream::new(schema, batches, cancel.clone(), token, deadline, Tag::Select))
            }
            Kind::Explain { analyze, verbose } => {
                let schema = Arc::new(Schema::new(vec![Field::new("QUERY PLAN", DataType::Utf8, false)]));
                let lines = explain(physical, &collapsed, analyze, verbose, &state, started).await;
                let out = schema.clone();
                let batches = futures::stream::once(async move {
                    let lines = lines?;
                    RecordBatch::try_new(out, vec![Arc::new(StringArray::from(lines))])
                        .map_err(|e| EngineError::Internal(e.to_string()))
                })
                .boxed();
                Ok(ResultStream::new(schema, batches, cancel.clone(), token, deadline, Tag::Fixed("EXPLAIN")))
            }
        }
    }
}

/// Field names as the client expects them (DataFusion qualifies nothing here, but it names
/// expressions by their text; Postgres names them `?column?` or by function).
fn output_schema(physical: &SchemaRef, columns: &[OutputColumn]) -> SchemaRef {
    let fields: Vec<Field> =
        physical.fields().iter().zip(columns).map(|(f, c)| Field::new(&c.name, f.data_type().clone(), true)).collect();
    Arc::new(Schema::new(fields))
}

async fn explain(
    physical: Arc<dyn ExecutionPlan>,
    logical: &LogicalPlan,
    analyze: bool,
    verbose: bool,
    state: &SessionState,
    started: Instant,
) -> Result<Vec<String>, EngineError> {
    let mut text = String::new();
    if analyze {
        let mut stream = execute_stream(physical.clone(), state.task_ctx())?;
        while let Some(b) = stream.try_next().await? {
            drop(b);
        }
        let _ = write!(
            text,
            "{}",
            datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(physical.as_ref())
                .indent(verbose)
        );
    } else {
        let _ = write!(text, "{}", displayable(physical.as_ref()).indent(verbose));
    }
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if verbose {
        lines.push("Logical plan:".into());
        lines.extend(logical.display_indent().to_string().lines().map(|l| format!("  {l}")));
    }
    if analyze {
        lines.push(format!("Execution Time: {:.3} ms", started.elapsed().as_secs_f64() * 1000.0));
    }
    Ok(lines)
}

/// RowDescription entries: a column taken unchanged from a table carries the table's OID,
/// attnum and declared type; anything computed gets the default type of its Arrow type.
pub(crate) fn output_columns(plan: &LogicalPlan, names: &[Option<String>]) -> Result<Vec<OutputColumn>, EngineError> {
    let schema = plan.schema();
    let mut out = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let name = names.get(i).cloned().flatten().unwrap_or_else(|| field.name().clone());
        if let Some(c) = origin(plan, i).and_then(|(p, idx)| table_column(&p, idx, field.data_type())) {
            out.push(OutputColumn { name, ..c });
            continue;
        }
        let pg_type = PgType::default_for(field.data_type()).ok_or_else(|| {
            EngineError::Unsupported(format!("result column \"{name}\" of type {}", field.data_type()))
        })?;
        out.push(OutputColumn { name, pg_type, typmod: -1, table_oid: 0, attnum: 0 });
    }
    Ok(out)
}

fn table_column(provider: &Arc<dyn TableProvider>, index: usize, planned: &DataType) -> Option<OutputColumn> {
    if let Some(f) = provider.downcast_ref::<ForeignProvider>() {
        let (pg_type, typmod) = f.pg_types.get(index)?.clone();
        (f.schema.field(index).data_type() == planned).then(|| OutputColumn {
            name: String::new(),
            pg_type,
            typmod,
            table_oid: f.table_oid,
            attnum: f.attnums.get(index).copied().unwrap_or(0),
        })
    } else if let Some(l) = provider.downcast_ref::<LocalProvider>() {
        let c = l.columns.get(index)?;
        let pg_type = c.pg_type.clone()?;
        (l.schema.field(index).data_type() == planned).then(|| OutputColumn {
            name: String::new(),
            pg_type,
            typmod: c.typmod,
            table_oid: l.oid,
            attnum: c.attnum,
        })
    } else {
        None
    }
}

/// Follows output column `index` of `plan` down to a table column, through nodes that pass
/// columns through unchanged.
fn origin(plan: &LogicalPlan, index: usize) -> Option<(Arc<dyn TableProvider>, usize)> {
    match plan {
        LogicalPlan::Projection(p) => {
            let mut e = p.expr.get(index)?;
            while let datafusion::logical_expr::Expr::Alias(a) = e {
                e = a.expr.as_ref();
            }
            let datafusion::logical_expr::Expr::Column(c) = e else { return None };
            let i = p.input.schema().index_of_column(c).ok()?;
            origin(&p.input, i)
        }
        LogicalPlan::Filter(f) => origin(&f.input, index),
        LogicalPlan::Sort(s) => origin(&s.input, index),
        LogicalPlan::Limit(l) => origin(&l.input, index),
        LogicalPlan::SubqueryAlias(s) => origin(&s.input, index),
        LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(input)) => origin(input, index),
        LogicalPlan::Join(j) => {
            let left = j.left.schema().fields().len();
            match j.join_type {
                datafusion::common::JoinType::LeftSemi | datafusion::common::JoinType::LeftAnti => {
                    origin(&j.left, index)
                }
                datafusion::common::JoinType::RightSemi | datafusion::common::JoinType::RightAnti => {
                    origin(&j.right, index)
                }
                _ if index < left => origin(&j.left, index),
                _ => origin(&j.right, index - left),
            }
        }
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            let i = match &scan.projection {
                Some(p) => *p.get(index)?,
                None => index,
            };
            Some((provider, i))
        }
        _ => None,
    }
}
