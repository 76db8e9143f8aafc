//! ORDER BY on text in the client's collation.
//!
//! DataFusion compares text bytewise; Postgres by the database collation (`en_US.UTF-8` orders
//! `a` < `B` < `c`, bytes order `B` < `a` < `c`). Where a sort on text is left to pgfed (not pushed
//! to Postgres), [`rewrite`] replaces DataFusion's sort with [`CollatedSortExec`]: it reads its
//! input, asks the client's own session to order the distinct values of each text key (`SELECT v
//! FROM unnest($1::text[]) v ORDER BY v`, one round trip per text key), and sorts by those ranks.
//! The order is then Postgres's own, whatever the collation provider or version. Other text
//! comparisons (`<`, min/max, window and aggregate ORDER BY) stay refused
//! (`semantics::check_text_order`).
//!
//! The sort holds its whole input in memory, under the engine's memory pool.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{LexOrdering, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use pgfed_session::UpstreamSession;

use crate::EngineError;
use crate::remote::is_text;

fn has_text_key(expr: &LexOrdering, schema: &SchemaRef) -> bool {
    expr.iter().any(|k| k.expr.data_type(schema).is_ok_and(|t| is_text(&t)))
}

/// Replaces DataFusion's sorts on text keys (and the merge of their partitions) with
/// [`CollatedSortExec`].
pub(crate) fn rewrite(
    plan: Arc<dyn ExecutionPlan>,
    session: &Arc<dyn UpstreamSession>,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_down(|node| {
        let (input, expr, fetch) = if let Some(merge) = node.downcast_ref::<SortPreservingMergeExec>() {
            let Some(sort) = merge.input().downcast_ref::<SortExec>() else { return Ok(Transformed::no(node)) };
            let fetch = match (merge.fetch(), sort.fetch()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            (sort.input().clone(), merge.expr().clone(), fetch)
        } else if let Some(sort) = node.downcast_ref::<SortExec>() {
            (sort.input().clone(), sort.expr().clone(), sort.fetch())
        } else {
            return Ok(Transformed::no(node));
        };
        if !has_text_key(&expr, &input.schema()) {
            return Ok(Transformed::no(node));
        }
        let input: Arc<dyn ExecutionPlan> = if input.output_partitioning().partition_count() > 1 {
            Arc::new(CoalescePartitionsExec::new(input))
        } else {
            input
        };
        let sort = CollatedSortExec::new(input, expr, fetch, session.clone());
        // Its input was rewritten already (top-down, the nodes below are visited next).
        Ok(Transformed::new(Arc::new(sort) as Arc<dyn ExecutionPlan>, true, TreeNodeRecursion::Continue))
    })
    .map(|t| t.data)
}

/// A sort whose text keys are ordered by the client's Postgres.
pub(crate) struct CollatedSortExec {
    input: Arc<dyn ExecutionPlan>,
    expr: LexOrdering,
    fetch: Option<usize>,
    session: Arc<dyn UpstreamSession>,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl CollatedSortExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        expr: LexOrdering,
        fetch: Option<usize>,
        session: Arc<dyn UpstreamSession>,
    ) -> Self {
        let props = Arc::new(PlanProperties::new(
            input.equivalence_properties().clone(),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self { input, expr, fetch, session, props, metrics: ExecutionPlanMetricsSet::new() }
    }
}

impl fmt::Debug for CollatedSortExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CollatedSortExec: [{}]", self.expr)
    }
}

impl DisplayAs for CollatedSortExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CollatedSortExec: expr=[{}], text in the database collation", self.expr)?;
        if let Some(n) = self.fetch {
            write!(f, ", fetch={n}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for CollatedSortExec {
    fn name(&self) -> &str {
        "CollatedSortExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| EngineError::Internal("CollatedSortExec takes one input".into()).into_datafusion())?;
        Ok(Arc::new(CollatedSortExec::new(input, self.expr.clone(), self.fetch, self.session.clone())))
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for k in self.expr.iter() {
            if f(&k.expr)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let schema = self.input.schema();
        let rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let (expr, fetch, session) = (self.expr.clone(), self.fetch, self.session.clone());
        let batch_size = context.session_config().batch_size().max(1);
        let reservation = MemoryConsumer::new("CollatedSortExec").register(context.memory_pool());
        let out = schema.clone();
        let sorted = async move {
            let reservation = reservation;
            let mut batches = Vec::new();
            let mut input = input;
            while let Some(b) = input.next().await {
                let b = b?;
                reservation.try_grow(b.get_array_memory_size())?;
                batches.push(b);
            }
            let all = concat_batches(&out, &batches)?;
            drop(batches);
            let sorted = sort(&all, &expr, fetch, session.as_ref()).await?;
            let chunks: Vec<Result<RecordBatch>> = (0..sorted.num_rows())
                .step_by(batch_size)
                .map(|start| Ok(sorted.slice(start, batch_size.min(sorted.num_rows() - start))))
                .collect();
            Ok::<_, datafusion::error::DataFusionError>(futures::stream::iter(chunks))
        };
        let stream = futures::stream::once(sorted).try_flatten().inspect_ok(move |b| rows.add(b.num_rows()));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

async fn sort(
    batch: &RecordBatch,
    expr: &LexOrdering,
    fetch: Option<usize>,
    session: &dyn UpstreamSession,
) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(expr.len());
    for k in expr.iter() {
        let values = k.expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let values = if is_text(values.data_type()) { ranks(&values, session).await? } else { values };
        columns.push(SortColumn {
            values,
            options: Some(SortOptions { descending: k.options.descending, nulls_first: k.options.nulls_first }),
        });
    }
    let indices = lexsort_to_indices(&columns, fetch)?;
    Ok(take_record_batch(batch, &indices)?)
}

/// Each text value's position among the distinct values in the database collation (NULLs kept).
async fn ranks(values: &ArrayRef, session: &dyn UpstreamSession) -> Result<ArrayRef> {
    let text = datafusion::arrow::compute::cast(values, &DataType::Utf8)?;
    let text = text
        .as_any()
        .downcast_ref::<datafusion::arrow::array::StringArray>()
        .ok_or_else(|| EngineError::Internal("a text sort key is not text".into()).into_datafusion())?;
    let mut distinct: HashMap<&str, u32> = HashMap::new();
    for v in text.iter().flatten() {
        distinct.entry(v).or_insert(0);
    }
    let list: Vec<Option<String>> = distinct.keys().map(|v| Some((*v).to_string())).collect();
    let rows = session
        .query_text(
            "SELECT u.v FROM pg_catalog.unnest($1::pg_catalog.text[]) AS u(v) ORDER BY u.v",
            &[Some(crate::write::array_literal(&list))],
        )
        .await
        .map_err(|e| EngineError::Upstream(e).into_datafusion())?;
    for (i, row) in rows.iter().enumerate() {
        if let Some(Some(v)) = row.first()
            && let Some(rank) = distinct.get_mut(v.as_str())
        {
            *rank = u32::try_from(i).unwrap_or(u32::MAX);
        }
    }
    let ranked: UInt32Array = text.iter().map(|v| v.map(|v| distinct.get(v).copied().unwrap_or(u32::MAX))).collect();
    Ok(Arc::new(ranked))
}
