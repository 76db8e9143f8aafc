//! Ordinary Postgres tables of a federated statement, read through the client's own upstream
//! session so they see its transaction and privileges.
//!
//! After DataFusion's optimizer has pushed filters, projections and limits into the scans,
//! [`collapse`] replaces every maximal subtree that reads only local tables, and uses only
//! operators and expressions on the allow-list below, with one [`LocalQuery`] node: the subtree
//! unparsed to Postgres SQL (DataFusion's unparser, Postgres dialect: every identifier quoted,
//! every constant a literal of the AST, nothing pasted). Postgres then evaluates it with its own
//! semantics (collations, overflow checks, time zone), which are the reference. Rows come back in
//! binary format and are decoded into Arrow by type OID, chunk by chunk.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, JoinType, Statistics};
use datafusion::datasource::{TableProvider, TableType, source_as_provider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, Operator, TableProviderFilterPushDown, UserDefinedLogicalNode,
    UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::PostgreSqlDialect;
use futures::{StreamExt, TryStreamExt};
use pgfed_encode::{BinaryColumn, PgType};
use pgfed_session::{DataRow, FieldInfo, ResultFormat};

use crate::EngineError;
use crate::context::Runtime;

/// `name`: not a type pgfed sends, but its binary form is its text, so it reads as text.
const NAME_OID: u32 = 19;

/// One column of a local relation, from `pg_attribute`.
#[derive(Debug, Clone)]
pub(crate) struct LocalColumn {
    pub name: String,
    pub attnum: i16,
    /// `None`: a type pgfed cannot decode; the column may be used inside SQL sent to Postgres
    /// but not read by pgfed.
    pub pg_type: Option<PgType>,
    pub typmod: i32,
}

/// A local relation of the statement. Never scanned on its own: [`collapse`] turns every scan of
/// it into (part of) a [`LocalQuery`].
pub(crate) struct LocalProvider {
    /// `schema.relation`, for messages.
    pub name: String,
    pub oid: u32,
    pub columns: Vec<LocalColumn>,
    pub schema: SchemaRef,
}

impl fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProvider").field("name", &self.name).finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for LocalProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Exact for everything Postgres evaluates as the client wrote it: Postgres is the reference.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if expr_pushable(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // `collapse` wraps every local scan before physical planning; reaching this is a bug.
        Err(EngineError::Internal(format!("local table {} reached the physical planner unwrapped", self.name))
            .into_datafusion())
    }
}

fn is_local_scan(plan: &LogicalPlan) -> bool {
    let LogicalPlan::TableScan(scan) = plan else { return false };
    source_as_provider(&scan.source).is_ok_and(|p| p.is::<LocalProvider>())
}

/// Whether every node and expression of `plan` may go to Postgres as SQL and every leaf is a
/// local table.
fn plan_pushable(plan: &LogicalPlan) -> bool {
    let mut ok = true;
    let _ = plan.apply(|node| {
        let node_ok = match node {
            LogicalPlan::TableScan(scan) => is_local_scan(node) && scan.filters.iter().all(expr_pushable),
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Aggregate(_) => true,
            LogicalPlan::Join(j) => {
                matches!(j.join_type, JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full)
            }
            _ => false,
        };
        let exprs_ok = node_ok && node.expressions().iter().all(expr_pushable);
        if !exprs_ok {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    ok
}

/// Expressions whose SQL text means the same to Postgres as to the client who wrote them:
/// columns, constants, casts, comparisons, arithmetic, boolean logic, LIKE, IN, BETWEEN, CASE,
/// and a short list of functions and aggregates with identical names and semantics.
pub(crate) fn expr_pushable(expr: &Expr) -> bool {
    let mut ok = true;
    let _ = expr.apply(|e| {
        let this = match e {
            Expr::Column(_) | Expr::Alias(_) | Expr::Not(_) | Expr::Negative(_) => true,
            Expr::IsNull(_) | Expr::IsNotNull(_) | Expr::IsTrue(_) | Expr::IsFalse(_) => true,
            Expr::IsNotTrue(_) | Expr::IsNotFalse(_) | Expr::Between(_) | Expr::InList(_) | Expr::Case(_) => true,
            Expr::Literal(v, _) => !matches!(
                v.data_type(),
                DataType::List(_) | DataType::Struct(_) | DataType::Map(_, _) | DataType::Dictionary(_, _)
            ),
            Expr::Like(l) => l.escape_char.is_none(),
            Expr::Cast(c) => matches!(
                c.field.data_type(),
                DataType::Boolean
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Decimal128(_, _)
                    | DataType::Utf8
                    | DataType::Date32
                    | DataType::Timestamp(_, _)
            ),
            Expr::BinaryExpr(b) => matches!(
                b.op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::Plus
                    | Operator::Minus
                    | Operator::Multiply
                    | Operator::Divide
                    | Operator::Modulo
                    | Operator::And
                    | Operator::Or
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
                    | Operator::StringConcat
                    | Operator::LikeMatch
                    | Operator::NotLikeMatch
                    | Operator::ILikeMatch
                    | Operator::NotILikeMatch
            ),
            Expr::ScalarFunction(f) => matches!(
                f.name(),
                "lower" | "upper" | "coalesce" | "nullif" | "abs" | "length" | "char_length" | "character_length"
            ),
            Expr::AggregateFunction(a) => {
                a.params.order_by.is_empty() && matches!(a.func.name(), "count" | "sum" | "min" | "max")
            }
            _ => false,
        };
        if !this {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    ok
}

/// Replaces maximal local-only subtrees with [`LocalQuery`] nodes.
pub(crate) fn collapse(plan: LogicalPlan, runtime: &Arc<Runtime>) -> Result<LogicalPlan> {
    if plan_pushable(&plan)
        && let Some(node) = LocalQuery::try_new(&plan, runtime)?
    {
        return Ok(LogicalPlan::Extension(Extension { node: Arc::new(node) }));
    }
    if is_local_scan(&plan) {
        return Err(EngineError::Internal("a local table scan could not be turned into SQL".into()).into_datafusion());
    }
    // Subquery expressions keep their own plans; local tables inside them are collapsed too.
    let plan = plan.map_subqueries(|sub| Ok(Transformed::yes(collapse(sub, runtime)?)))?.data;
    plan.map_children(|child| Ok(Transformed::yes(collapse(child, runtime)?))).map(|t| t.data)
}

/// A query on local tables, run in the client's session.
#[derive(Clone)]
pub(crate) struct LocalQuery {
    pub sql: String,
    schema: DFSchemaRef,
    runtime: Arc<Runtime>,
}

impl LocalQuery {
    fn try_new(plan: &LogicalPlan, runtime: &Arc<Runtime>) -> Result<Option<Self>> {
        let Ok(statement) = Unparser::new(&PostgreSqlDialect {}).plan_to_sql(plan) else {
            return Ok(None);
        };
        Ok(Some(LocalQuery { sql: statement.to_string(), schema: plan.schema().clone(), runtime: runtime.clone() }))
    }
}

impl fmt::Debug for LocalQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalQuery: {}", self.sql)
    }
}

impl PartialEq for LocalQuery {
    fn eq(&self, other: &Self) -> bool {
        self.sql == other.sql && self.schema == other.schema
    }
}

impl Eq for LocalQuery {}

impl Hash for LocalQuery {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.sql.hash(state);
    }
}

impl PartialOrd for LocalQuery {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.sql.partial_cmp(&other.sql)
    }
}

impl UserDefinedLogicalNodeCore for LocalQuery {
    fn name(&self) -> &str {
        "LocalQuery"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "LocalQuery: {}", self.sql)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// Plans [`LocalQuery`] nodes.
#[derive(Debug)]
pub(crate) struct LocalPlanner;

#[async_trait]
impl ExtensionPlanner for LocalPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(q) = node.as_any().downcast_ref::<LocalQuery>() else { return Ok(None) };
        let schema: SchemaRef = Arc::new(q.schema.as_arrow().clone());
        // Postgres's own estimate lets DataFusion build its hash tables from the smaller side and
        // send that side's keys to the larger (`dynamic.rs`). An error here is the one the query
        // itself would raise (and has aborted the client's transaction block as the query would).
        // Only a join above needs it: a round trip saved otherwise.
        let estimate = if q.runtime.wants_estimates.load(std::sync::atomic::Ordering::Relaxed) {
            let explain = q
                .runtime
                .session
                .query_text(&format!("EXPLAIN {}", q.sql), &[])
                .await
                .map_err(|e| EngineError::Upstream(e).into_datafusion())?;
            explain.first().and_then(|r| r.first()).and_then(|l| l.as_deref()).and_then(plan_estimate)
        } else {
            None
        };
        let mut exec = LocalQueryExec::new(q.sql.clone(), schema, q.runtime.clone());
        exec.statistics = Arc::new(estimate_statistics(estimate, &exec.schema));
        Ok(Some(Arc::new(exec)))
    }
}

/// Rows and average width from the top line of a Postgres plan
/// (`Seq Scan on t  (cost=0.00..35.50 rows=2550 width=36)`).
fn plan_estimate(line: &str) -> Option<(f64, u32)> {
    let number = |key: &str| -> Option<&str> {
        let at = line.rfind(key)? + key.len();
        let rest = &line[at..];
        Some(&rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())])
    };
    Some((number(" rows=")?.parse().ok()?, number(" width=")?.parse().ok()?))
}

/// DataFusion statistics from an estimate (rows, width); unknown without one.
pub(crate) fn estimate_statistics(estimate: Option<(f64, u32)>, schema: &SchemaRef) -> Statistics {
    let mut stats = Statistics::new_unknown(schema);
    if let Some((rows, width)) = estimate
        && rows.is_finite()
        && rows >= 0.0
    {
        // Saturating float-to-int conversion; an estimate needs no more.
        let rows = rows as usize;
        stats.num_rows = Precision::Inexact(rows);
        stats.total_byte_size = Precision::Inexact(rows.saturating_mul(width.max(1) as usize));
    }
    stats
}

/// Runs one [`LocalQuery`] in the client's session and decodes its rows.
pub(crate) struct LocalQueryExec {
    sql: String,
    schema: SchemaRef,
    runtime: Arc<Runtime>,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    statistics: Arc<Statistics>,
}

impl fmt::Debug for LocalQueryExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalQueryExec: {}", self.sql)
    }
}

impl LocalQueryExec {
    fn new(sql: String, schema: SchemaRef, runtime: Arc<Runtime>) -> Self {
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        let statistics = Arc::new(Statistics::new_unknown(&schema));
        Self { sql, schema, runtime, props, metrics: ExecutionPlanMetricsSet::new(), statistics }
    }
}

impl DisplayAs for LocalQueryExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "LocalQuery: {}", self.sql)
    }
}

impl ExecutionPlan for LocalQueryExec {
    fn name(&self) -> &str {
        "LocalQueryExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(self: Arc<Self>, _: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn partition_statistics(&self, _partition: Option<usize>) -> Result<Arc<Statistics>> {
        Ok(self.statistics.clone())
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let bytes = MetricBuilder::new(&self.metrics).counter("source_bytes", partition);
        let time = MetricBuilder::new(&self.metrics).subset_time("source_time", partition);
        let mut last = std::time::Instant::now();
        let session = self.runtime.session.clone();
        let sql = self.sql.clone();
        let schema = self.schema.clone();
        let out = schema.clone();
        let open = async move {
            let result = session.query(&sql, &[], ResultFormat::Binary).await.map_err(EngineError::Upstream)?;
            let decoders = Decoders::new(&result.fields, &out)?;
            let chunks = result.chunks.map_err(EngineError::Upstream);
            Ok::<_, EngineError>(chunks.map(move |chunk| chunk.and_then(|rows| decoders.batch(&rows))))
        };
        let stream = futures::stream::once(open).try_flatten().map(move |b| {
            let b = b.map_err(EngineError::into_datafusion)?;
            rows.add(b.num_rows());
            bytes.add(b.get_array_memory_size());
            // Wall time between batches: Postgres's time plus the consumer's, an upper bound.
            let now = std::time::Instant::now();
            time.add_duration(now - last);
            last = now;
            Ok(b)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Per result column: how to decode it and the type the plan expects.
pub(crate) struct Decoders {
    columns: Vec<(PgType, i32, Option<String>)>,
    schema: SchemaRef,
}

impl Decoders {
    pub(crate) fn new(fields: &[FieldInfo], schema: &SchemaRef) -> Result<Self, EngineError> {
        if fields.len() != schema.fields().len() {
            return Err(EngineError::Internal(format!(
                "local query returned {} columns, the plan expects {}",
                fields.len(),
                schema.fields().len()
            )));
        }
        let columns = fields
            .iter()
            .zip(schema.fields())
            .map(|(info, field)| {
                let pg_type = if info.type_oid == NAME_OID {
                    PgType::Text
                } else {
                    PgType::from_oid(info.type_oid).ok_or_else(|| {
                        EngineError::Unsupported(format!(
                            "reading column \"{}\" (type OID {}) of a local table",
                            info.name, info.type_oid
                        ))
                    })?
                };
                // Decode numerics straight to the planned precision and scale (exactly, or fail).
                let typmod = match (field.data_type(), &pg_type) {
                    (DataType::Decimal128(p, s), PgType::Numeric) if *s >= 0 => {
                        PgType::numeric_typmod(u16::from(*p), *s as u16)
                    }
                    _ => info.typmod,
                };
                let tz = match field.data_type() {
                    DataType::Timestamp(_, Some(tz)) => Some(tz.to_string()),
                    _ => None,
                };
                Ok((pg_type, typmod, tz))
            })
            .collect::<Result<_, EngineError>>()?;
        Ok(Decoders { columns, schema: schema.clone() })
    }

    pub(crate) fn batch(&self, rows: &[DataRow]) -> Result<RecordBatch, EngineError> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (i, ((pg_type, typmod, tz), field)) in self.columns.iter().zip(self.schema.fields()).enumerate() {
            let mut col = BinaryColumn::new(pg_type, *typmod, tz.as_deref()).map_err(decode_error)?;
            for row in rows {
                col.append(row.get(i)).map_err(decode_error)?;
            }
            let array = col.finish();
            let array = if array.data_type() == field.data_type() {
                array
            } else {
                cast(&array, field.data_type()).map_err(|e| EngineError::Internal(e.to_string()))?
            };
            arrays.push(array);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map_err(|e| EngineError::Internal(e.to_string()))
    }
}

fn decode_error(e: pgfed_encode::EncodeError) -> EngineError {
    match e {
        pgfed_encode::EncodeError::OutOfRange(m) => EngineError::Data { code: "22003", message: m },
        other => EngineError::Data { code: "22000", message: other.to_string() },
    }
}

impl From<EngineError> for DataFusionError {
    fn from(e: EngineError) -> Self {
        e.into_datafusion()
    }
}
