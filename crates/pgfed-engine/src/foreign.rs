//! Foreign tables as DataFusion table providers: filters become SDK quals (the connector says
//! Exact, Inexact or Unsupported for each), projections become the requested columns, and a limit
//! is passed only when every filter of the scan was Exact. Sort pushdown is not offered to
//! connectors yet (DataFusion 55 gives providers no ORDER BY to accept; pgfed sorts).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::Statistics;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use pgfed_connector_sdk::{ForeignTable as SdkTable, Pushdown, Qual, ScanRequest};

use crate::EngineError;
use crate::context::Runtime;
use crate::quals::to_quals;

/// One foreign table of the statement.
pub(crate) struct ForeignProvider {
    /// `schema.table` as the catalog names it, for messages and EXPLAIN.
    pub name: String,
    pub table: Arc<dyn SdkTable>,
    /// The DataFusion-facing schema: declared types, with timestamptz in the session time zone.
    pub schema: SchemaRef,
    /// Shadow table OID and attnums, for RowDescription.
    pub table_oid: u32,
    pub attnums: Vec<i16>,
    pub pg_types: Vec<(pgfed_encode::PgType, i32)>,
    pub runtime: Arc<Runtime>,
    /// The catalog entry, for privilege checks of writes.
    pub catalog: pgfed_catalog::ForeignTable,
}

impl fmt::Debug for ForeignProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForeignProvider").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ForeignProvider {
    fn column_names(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    /// The quals of one filter and how the table applies them, together.
    fn decide(&self, filter: &Expr, columns: &[String]) -> (Vec<Qual>, TableProviderFilterPushDown) {
        let Some(quals) = to_quals(filter, columns) else {
            return (Vec::new(), TableProviderFilterPushDown::Unsupported);
        };
        let decisions: Vec<Pushdown> = quals.iter().map(|q| self.table.pushdown(q)).collect();
        let accepted: Vec<Qual> =
            quals.into_iter().zip(&decisions).filter(|(_, d)| **d != Pushdown::Unsupported).map(|(q, _)| q).collect();
        let verdict = if decisions.iter().all(|d| *d == Pushdown::Exact) {
            TableProviderFilterPushDown::Exact
        } else if accepted.is_empty() {
            TableProviderFilterPushDown::Unsupported
        } else {
            TableProviderFilterPushDown::Inexact
        };
        (accepted, verdict)
    }
}

#[async_trait]
impl TableProvider for ForeignProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        let columns = self.column_names();
        Ok(filters.iter().map(|f| self.decide(f, &columns).1).collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let names = self.column_names();
        let mut quals = Vec::new();
        let mut rechecked = Vec::new();
        let mut all_exact = true;
        for f in filters {
            let (accepted, verdict) = self.decide(f, &names);
            match verdict {
                TableProviderFilterPushDown::Exact => quals.extend(accepted),
                TableProviderFilterPushDown::Inexact => {
                    all_exact = false;
                    rechecked.push(f.to_string());
                    quals.extend(accepted);
                }
                // DataFusion hands over only filters we accepted; be safe anyway.
                TableProviderFilterPushDown::Unsupported => all_exact = false,
            }
        }
        let indices: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..names.len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&indices)?);
        let request = ScanRequest {
            columns: indices.iter().map(|i| names[*i].clone()).collect(),
            quals,
            sort: Vec::new(),
            limit: if all_exact { limit.map(|l| l as u64) } else { None },
        };
        if self.runtime.require_pushdown && request.quals.is_empty() && request.limit.is_none() {
            return Err(EngineError::PushdownRequired(self.name.clone()).into_datafusion());
        }
        Ok(Arc::new(ForeignScanExec::new(
            self.name.clone(),
            self.table.clone(),
            request,
            rechecked,
            schema,
            self.runtime.clone(),
        )))
    }
}

/// Scans one foreign table through its connector.
pub(crate) struct ForeignScanExec {
    name: String,
    table: Arc<dyn SdkTable>,
    request: ScanRequest,
    /// Filters the source narrows by but pgfed re-checks (Inexact), for EXPLAIN.
    rechecked: Vec<String>,
    schema: SchemaRef,
    runtime: Arc<Runtime>,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Join keys published by a hash join above (see [`crate::dynamic`]).
    dynamic: Vec<Arc<DynamicFilterPhysicalExpr>>,
    /// The quals taken from them at run time, for EXPLAIN ANALYZE.
    applied: Arc<Mutex<Vec<String>>>,
}

impl fmt::Debug for ForeignScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForeignScanExec").field("name", &self.name).field("request", &self.request).finish()
    }
}

impl ForeignScanExec {
    fn new(
        name: String,
        table: Arc<dyn SdkTable>,
        request: ScanRequest,
        rechecked: Vec<String>,
        schema: SchemaRef,
        runtime: Arc<Runtime>,
    ) -> Self {
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            name,
            table,
            request,
            rechecked,
            schema,
            runtime,
            props,
            metrics: ExecutionPlanMetricsSet::new(),
            dynamic: Vec::new(),
            applied: Arc::default(),
        }
    }

    fn with_dynamic(&self, dynamic: Vec<Arc<DynamicFilterPhysicalExpr>>) -> Self {
        let mut scan = Self::new(
            self.name.clone(),
            self.table.clone(),
            self.request.clone(),
            self.rechecked.clone(),
            self.schema.clone(),
            self.runtime.clone(),
        );
        scan.dynamic = dynamic;
        scan
    }
}

/// The request with the join keys of `dynamic` added as the table accepts them; `None` when the
/// build side was empty, so no row can join.
fn with_join_keys(
    table: &dyn SdkTable,
    mut request: ScanRequest,
    dynamic: &[Arc<DynamicFilterPhysicalExpr>],
    schema: &SchemaRef,
    applied: &Mutex<Vec<String>>,
) -> Option<ScanRequest> {
    // A limit counts rows before the join: narrowing them would pick different ones.
    if request.limit.is_some() {
        return Some(request);
    }
    for filter in dynamic {
        for qual in crate::dynamic::quals(filter, schema)? {
            if table.pushdown(&qual) != Pushdown::Unsupported {
                if let Ok(mut a) = applied.lock() {
                    a.push(qual.to_string());
                }
                request.quals.push(qual);
            }
        }
    }
    Some(request)
}

impl DisplayAs for ForeignScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ForeignScan: {}", self.name)?;
        for line in self.table.explain(&self.request) {
            write!(f, ", {line}")?;
        }
        if !self.request.quals.is_empty() {
            let q: Vec<String> = self.request.quals.iter().map(ToString::to_string).collect();
            write!(f, ", pushed: {}", q.join(" AND "))?;
        }
        if !self.rechecked.is_empty() {
            write!(f, ", rechecked by pgfed: {}", self.rechecked.join(" AND "))?;
        }
        if let Some(l) = self.request.limit {
            write!(f, ", limit: {l}")?;
        }
        if !self.dynamic.is_empty() {
            match self.applied.lock().map(|a| a.clone()).unwrap_or_default() {
                a if a.is_empty() => write!(f, ", join keys: at run time")?,
                a => write!(f, ", join keys pushed: {}", a.join(" AND "))?,
            }
        }
        Ok(())
    }
}

impl ExecutionPlan for ForeignScanExec {
    fn name(&self) -> &str {
        "ForeignScanExec"
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
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // The hash join publishes its keys only when a node below it holds its filter.
        for d in &self.dynamic {
            if f(&(d.clone() as Arc<dyn PhysicalExpr>))? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    /// The connector's estimate; without one a foreign table is taken to be large (federation
    /// reads analytical tables), so a join builds its hash table from the other side, when that
    /// side's size is known, and sends its keys here.
    fn partition_statistics(&self, _partition: Option<usize>) -> Result<Arc<Statistics>> {
        let estimate = self.table.estimate(&self.request).map(|e| (e.rows, e.width)).or(Some((1e9, 100)));
        Ok(Arc::new(crate::local::estimate_statistics(estimate, &self.schema)))
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let filters: Vec<Arc<dyn PhysicalExpr>> =
            child_pushdown_result.parent_filters.iter().map(|f| f.filter.clone()).collect();
        // Nothing is applied for the parent: the join still checks every row.
        let mut result = FilterPushdownPropagation::with_parent_pushdown_result(vec![PushedDown::No; filters.len()]);
        let dynamic = crate::dynamic::collect(&filters);
        if phase == FilterPushdownPhase::Post && !dynamic.is_empty() && self.request.limit.is_none() {
            result = result.with_updated_node(Arc::new(self.with_dynamic(dynamic)) as Arc<dyn ExecutionPlan>);
        }
        Ok(result)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let rows: Count = MetricBuilder::new(&self.metrics).output_rows(partition);
        let bytes: Count = MetricBuilder::new(&self.metrics).counter("source_bytes", partition);
        let time: Time = MetricBuilder::new(&self.metrics).subset_time("source_time", partition);
        let table = self.table.clone();
        let request = self.request.clone();
        let scan_ctx = self.runtime.scan_context();
        let name = self.name.clone();
        let schema = self.schema.clone();
        let schema_for_keys = schema.clone();
        let mut last = Instant::now();
        let (dynamic, applied) = (self.dynamic.clone(), self.applied.clone());
        let open = async move {
            // Polled only once the join above has built its side, so its keys are final.
            let Some(request) = with_join_keys(table.as_ref(), request, &dynamic, &schema_for_keys, &applied) else {
                return Ok(futures::stream::empty().boxed());
            };
            let stream = table
                .scan(request, scan_ctx)
                .await
                .map_err(|source| EngineError::Connector { table: name.clone(), source })?;
            Ok::<_, EngineError>(
                stream.map_err(move |source| EngineError::Connector { table: name.clone(), source }).boxed(),
            )
        };
        let out_schema = schema.clone();
        let stream = futures::stream::once(open).try_flatten().map(move |batch| {
            let batch = batch.map_err(EngineError::into_datafusion)?;
            let batch = conform(batch, &out_schema)?;
            rows.add(batch.num_rows());
            bytes.add(batch.get_array_memory_size());
            // Wall time between batches: the source's time plus the consumer's, an upper bound.
            let now = Instant::now();
            time.add_duration(now - last);
            last = now;
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Gives a batch exactly the schema the plan expects: same values, types relabelled where the
/// source's Arrow type differs only in representation (timestamptz's zone label, for example).
pub(crate) fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.num_columns() != schema.fields().len() {
        return Err(DataFusionError::Execution(format!(
            "source returned {} columns, {} were requested",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(a, f)| if a.data_type() == f.data_type() { Ok(a.clone()) } else { cast(a, f.data_type()) })
        .collect::<std::result::Result<_, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(schema.clone(), columns, &options)?)
}
