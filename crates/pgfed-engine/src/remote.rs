//! Whole subtrees pushed to SQL-capable foreign sources.
//!
//! After DataFusion's optimizer, [`push`] replaces every maximal subtree whose leaves are foreign
//! tables of one source ([`SqlSource::identity`]: same server and user mapping) and whose nodes
//! and expressions are on the allow-list below with one [`RemoteQuery`]: the subtree with each
//! table and column renamed to its remote name, every value replaced by a typed placeholder
//! (`CAST($n AS BIGINT)`) bound as a parameter, unparsed by DataFusion's unparser in the source's
//! dialect (quoted identifiers), and run through [`SdkTable::query`]. The allow-list holds what
//! the remote evaluates exactly as the client's Postgres would: for a Postgres source, everything
//! but what depends on the collation (text ordering, `<`/`>` and min/max on text, LIKE,
//! lower/upper), which is pushed only when the source says its collation is the same, and casts
//! whose result depends on session settings (text output of numbers and times, time zones).
//! A bare scan stays a `ForeignScan` (the qual path); a subtree is pushed when it holds a join,
//! an aggregate, a sort, a limit or a filter the qual path could not take.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DFSchemaRef, JoinType, NullEquality, ScalarValue, TableReference};
use datafusion::datasource::source_as_provider;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::{Cast, Placeholder};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    Expr, ExprSchemable, Extension, LogicalPlan, LogicalTableSource, Operator, Projection, SubqueryAlias, TableScan,
    TableScanBuilder, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
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
use pgfed_connector_sdk::{ForeignTable as SdkTable, SqlDialect, SqlQuery, SqlSource, Value};

use crate::EngineError;
use crate::context::Runtime;
use crate::foreign::{ForeignProvider, conform};

/// Replaces maximal single-source subtrees with [`RemoteQuery`] nodes.
pub(crate) fn push(plan: LogicalPlan, runtime: &Arc<Runtime>) -> Result<LogicalPlan> {
    push_at(plan, runtime, true)
}

fn push_at(plan: LogicalPlan, runtime: &Arc<Runtime>, root: bool) -> Result<LogicalPlan> {
    if let Some(source) = single_source(&plan)
        && worth_pushing(&plan)
        && (root || !orders_its_output(&plan))
        && (source.dialect != SqlDialect::Postgres || plan_pushable(&plan, source.text_ordering))
        && let Some(node) = RemoteQuery::try_new(&plan, runtime)?
    {
        return Ok(LogicalPlan::Extension(Extension { node: Arc::new(node) }));
    }
    let plan = plan.map_subqueries(|sub| Ok(Transformed::yes(push_at(sub, runtime, false)?)))?.data;
    plan.map_children(|child| Ok(Transformed::yes(push_at(child, runtime, false)?))).map(|t| t.data)
}

/// What a pushed subtree needs of one foreign table.
struct Foreign {
    name: String,
    table: Arc<dyn SdkTable>,
    /// Declared columns, local names.
    schema: SchemaRef,
}

/// The foreign table behind a scan, if it is one.
fn foreign(scan: &TableScan) -> Option<Foreign> {
    let provider = source_as_provider(&scan.source).ok()?;
    let f = provider.downcast_ref::<ForeignProvider>()?;
    Some(Foreign { name: f.name.clone(), table: f.table.clone(), schema: f.schema.clone() })
}

/// The source every leaf of `plan` belongs to, if they all are foreign tables of one SQL source
/// in a dialect the engine unparses.
fn single_source(plan: &LogicalPlan) -> Option<SqlSource> {
    let mut found: Option<SqlSource> = None;
    let mut ok = true;
    let _ = plan.apply(|node| {
        let leaf_ok = match node {
            LogicalPlan::TableScan(scan) => match foreign(scan).and_then(|f| f.table.sql_source()) {
                Some(s) if matches!(s.dialect, SqlDialect::Postgres | SqlDialect::ClickHouse) => match &found {
                    Some(f) => f.identity == s.identity,
                    None => {
                        found = Some(s);
                        true
                    }
                },
                _ => false,
            },
            n => !n.inputs().is_empty(),
        };
        if !leaf_ok {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if ok { found } else { None }
}

/// A bare scan (with projections and aliases) is better served by the qual path; anything more
/// is worth one remote query.
fn worth_pushing(plan: &LogicalPlan) -> bool {
    plan.exists(|n| {
        Ok(matches!(
            n,
            LogicalPlan::Join(_)
                | LogicalPlan::Aggregate(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Filter(_)
        ))
    })
    .unwrap_or(false)
}

/// Whether the rows of `plan` come out in an order its parent may rely on (an ORDER BY at its
/// top). The remote returns them in that order, but nothing tells DataFusion so, so such a
/// subtree is pushed only at the root of the statement.
fn orders_its_output(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Sort(_) => true,
        LogicalPlan::Projection(p) => orders_its_output(&p.input),
        LogicalPlan::Filter(f) => orders_its_output(&f.input),
        LogicalPlan::Limit(l) => orders_its_output(&l.input),
        LogicalPlan::SubqueryAlias(s) => orders_its_output(&s.input),
        _ => false,
    }
}

fn sorted_below(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Sort(_) => true,
        LogicalPlan::Limit(l) => sorted_below(&l.input),
        _ => false,
    }
}

/// Whether the subtree restricts what the source returns (for `pgfed.require_pushdown`): a
/// filter, a limit, an aggregate or a join computed remotely.
fn restricts(plan: &LogicalPlan) -> bool {
    plan.exists(|n| {
        Ok(match n {
            LogicalPlan::TableScan(s) => !s.filters.is_empty() || s.fetch.is_some(),
            LogicalPlan::Filter(_) | LogicalPlan::Limit(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Join(_) => true,
            _ => false,
        })
    })
    .unwrap_or(false)
}

/// Arrow's text types (Postgres text, varchar, char).
pub(crate) fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_number(t: &DataType) -> bool {
    matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Float64 | DataType::Decimal128(_, _))
}

/// Literal types that become typed placeholders (see [`to_value`]).
fn bindable(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Null
            | DataType::Boolean
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Timestamp(TimeUnit::Microsecond, _)
    ) || matches!(t, DataType::Decimal128(_, s) if *s >= 0)
}

/// Casts the remote evaluates as pgfed would, whatever its session settings: between number
/// types, text to text, to the same type, and date to timestamp.
fn cast_exact(from: &DataType, to: &DataType) -> bool {
    from == to
        || (is_number(from) && is_number(to))
        || (is_text(from) && is_text(to))
        || (*from == DataType::Date32 && *to == DataType::Timestamp(TimeUnit::Microsecond, None))
}

/// Whether every projection of `plan` is where the unparser writes it as a SELECT list of its
/// own: at the top (under ORDER BY and LIMIT) or under an alias. Anywhere else it becomes a
/// derived table named `derived_projection` while the expressions above it still name the
/// relations inside it.
fn projections_placed(plan: &LogicalPlan, allowed: bool) -> bool {
    let (here, below) = match plan {
        LogicalPlan::Projection(_) => (allowed, false),
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => (true, allowed),
        LogicalPlan::SubqueryAlias(_) => (true, true),
        _ => (true, false),
    };
    here && plan.inputs().into_iter().all(|c| projections_placed(c, below))
}

/// Whether every node and expression of `plan` is on the allow-list.
fn plan_pushable(plan: &LogicalPlan, text_ordering: bool) -> bool {
    if !projections_placed(plan, true) {
        return false;
    }
    let mut ok = true;
    let _ = plan.apply(|node| {
        let (node_ok, schema): (bool, Option<DFSchemaRef>) = match node {
            LogicalPlan::TableScan(scan) => {
                let schema = DFSchema::try_from_qualified_schema(scan.table_name.clone(), &scan.source.schema()).ok();
                (true, schema.map(Arc::new))
            }
            // The unparser turns a projection over an ORDER BY into a derived table whose
            // columns it then names wrongly; DataFusion sorts those.
            LogicalPlan::Projection(p) => (!sorted_below(&p.input), Some(p.input.schema().clone())),
            LogicalPlan::Filter(f) => (true, Some(f.input.schema().clone())),
            // The unparser loses an OFFSET under a sort that DataFusion gave a fetch.
            LogicalPlan::Limit(l) => (l.skip.is_none(), Some(l.input.schema().clone())),
            LogicalPlan::SubqueryAlias(_) => (self_contained(node), None),
            LogicalPlan::Sort(s) => {
                let schema = s.input.schema().clone();
                let keys_ok =
                    s.expr.iter().all(|k| k.expr.get_type(&schema).is_ok_and(|t| text_ordering || !is_text(&t)));
                (keys_ok, Some(schema))
            }
            LogicalPlan::Aggregate(a) => {
                // One level of aggregation: the unparser misnames the columns of nested ones
                // (DataFusion nests them for count(DISTINCT x)).
                let plain = !a.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_)))
                    && !a.input.exists(|n| Ok(matches!(n, LogicalPlan::Aggregate(_)))).unwrap_or(true);
                (plain, Some(a.input.schema().clone()))
            }
            LogicalPlan::Join(j) => (
                matches!(j.join_type, JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full)
                    // Nested joins and filters are written into the enclosing SELECT, which is
                    // only right for the left input of an inner or left join.
                    && self_contained(&j.right)
                    && (matches!(j.join_type, JoinType::Inner | JoinType::Left) || self_contained(&j.left))
                    && !j.on.is_empty()
                    && j.null_equality == NullEquality::NullEqualsNothing,
                Some(j.schema.clone()),
            ),
            _ => (false, None),
        };
        let exprs_ok = node_ok
            && match (&schema, node) {
                (_, LogicalPlan::SubqueryAlias(_)) => true,
                (Some(schema), _) => node.expressions().iter().all(|e| expr_pushable(e, schema, text_ordering)),
                (None, _) => false,
            };
        if !exprs_ok {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    ok
}

/// Expressions the remote evaluates exactly as the client's Postgres would.
fn expr_pushable(expr: &Expr, schema: &DFSchema, text_ordering: bool) -> bool {
    let ty = |e: &Expr| e.get_type(schema).ok();
    let text = |e: &Expr| ty(e).is_some_and(|t| is_text(&t));
    let mut ok = true;
    let _ = expr.apply(|e| {
        let this = match e {
            Expr::Column(_) | Expr::Alias(_) | Expr::Not(_) | Expr::Negative(_) => true,
            Expr::IsNull(_) | Expr::IsNotNull(_) | Expr::IsTrue(_) | Expr::IsFalse(_) => true,
            Expr::IsNotTrue(_) | Expr::IsNotFalse(_) | Expr::InList(_) | Expr::Case(_) => true,
            Expr::Between(b) => text_ordering || !text(&b.expr),
            Expr::Literal(v, _) => bindable(&v.data_type()),
            Expr::Like(l) => l.escape_char.is_none() && text_ordering,
            Expr::Cast(c) => ty(&c.expr).is_some_and(|from| cast_exact(&from, c.field.data_type())),
            Expr::BinaryExpr(b) => match b.op {
                Operator::Eq
                | Operator::NotEq
                | Operator::And
                | Operator::Or
                | Operator::IsDistinctFrom
                | Operator::IsNotDistinctFrom
                | Operator::Plus
                | Operator::Minus
                | Operator::Multiply => true,
                // Postgres's numeric division and modulo choose their own scale.
                Operator::Divide | Operator::Modulo => {
                    !matches!(ty(e), Some(DataType::Decimal128(_, _)) | None)
                        && !matches!(ty(&b.left), Some(DataType::Decimal128(_, _)))
                        && !matches!(ty(&b.right), Some(DataType::Decimal128(_, _)))
                }
                Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => text_ordering || !text(&b.left),
                // Non-text operands would be formatted by the remote's output functions.
                Operator::StringConcat => text(&b.left) && text(&b.right),
                Operator::LikeMatch | Operator::NotLikeMatch | Operator::ILikeMatch | Operator::NotILikeMatch => {
                    text_ordering
                }
                _ => false,
            },
            Expr::ScalarFunction(f) => match f.name() {
                "coalesce" | "nullif" | "abs" => true,
                "length" | "char_length" | "character_length" => f.args.iter().all(text),
                "lower" | "upper" => text_ordering,
                _ => false,
            },
            Expr::AggregateFunction(a) => {
                let arg = a.params.args.first().and_then(ty);
                a.params.order_by.is_empty()
                    && a.params.filter.is_none()
                    && match a.func.name() {
                        "count" => true,
                        "sum" => matches!(arg, Some(DataType::Int64 | DataType::Float64 | DataType::Decimal128(_, _))),
                        "avg" => matches!(arg, Some(DataType::Float64)),
                        "min" | "max" => arg.is_some_and(|t| bindable(&t) && (text_ordering || !is_text(&t))),
                        _ => false,
                    }
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

/// A literal as a bind parameter value; `None` for a type [`bindable`] refuses.
fn to_value(v: &ScalarValue) -> Option<Value> {
    if v.is_null() {
        return Some(Value::Null);
    }
    Some(match v {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int16(Some(i)) => Value::Int(i64::from(*i)),
        ScalarValue::Int32(Some(i)) => Value::Int(i64::from(*i)),
        ScalarValue::Int64(Some(i)) => Value::Int(*i),
        ScalarValue::Float64(Some(f)) => Value::Float(*f),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Value::Text(s.clone())
        }
        ScalarValue::Decimal128(Some(n), _, s) if *s >= 0 => Value::Numeric(decimal_text(*n, *s as u32)),
        ScalarValue::Date32(Some(d)) => Value::Date(*d),
        ScalarValue::TimestampMicrosecond(Some(t), None) => Value::Timestamp(*t),
        ScalarValue::TimestampMicrosecond(Some(t), Some(_)) => Value::TimestampTz(*t),
        _ => return None,
    })
}

/// `n` scaled by `10^-scale` as exact decimal text (`-12.50`).
fn decimal_text(n: i128, scale: u32) -> String {
    let digits = n.unsigned_abs().to_string();
    let sign = if n < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// The subtree as the remote sees it: remote table and column names, values as placeholders.
fn remote_plan(plan: &LogicalPlan) -> Result<Option<(LogicalPlan, Vec<Value>)>> {
    let renamed = rename(narrow(plan.clone())?)?;
    let mut params = Vec::new();
    let mut unbindable = false;
    let bound = renamed
        .transform_up(|node| {
            // LIMIT and OFFSET stay integer literals: the unparser needs them as such.
            if matches!(node, LogicalPlan::Limit(_)) {
                return Ok(Transformed::no(node));
            }
            let names = NamePreserver::new(&node);
            let t = node.map_expressions(|e| {
                let saved = names.save(&e);
                let t = e.transform_down(|e| match e {
                    // count(*) is count(1) in the plan; the unparser prints it as count(*).
                    Expr::AggregateFunction(a) if a.func.name() == "count" => {
                        Ok(Transformed::new(Expr::AggregateFunction(a), false, TreeNodeRecursion::Jump))
                    }
                    Expr::Literal(v, _) => {
                        let Some(value) = to_value(&v) else {
                            unbindable = true;
                            return Ok(Transformed::no(Expr::Literal(v, None)));
                        };
                        params.push(value);
                        Ok(Transformed::yes(placeholder(params.len(), &v.data_type())))
                    }
                    other => Ok(Transformed::no(other)),
                })?;
                Ok(if t.transformed { Transformed::yes(saved.restore(t.data)) } else { t })
            })?;
            Ok(t)
        })?
        .data;
    if unbindable {
        return Ok(None);
    }
    Ok(Some((bound, params)))
}

/// `CAST($n AS type)`, the only form a value takes in remote SQL. Decimals are bound as text and
/// cast twice (`CAST(CAST($n AS VARCHAR) AS DECIMAL(p, s))`) so no binary rounding happens.
fn placeholder(n: usize, data_type: &DataType) -> Expr {
    let id = format!("${n}");
    let cast = |e: Expr, t: DataType| Expr::Cast(Cast::new(Box::new(e), t));
    match data_type {
        DataType::Decimal128(_, _) => {
            let p = Expr::Placeholder(Placeholder::new_with_field(
                id,
                Some(Arc::new(Field::new("", DataType::Utf8, true))),
            ));
            cast(cast(p, DataType::Utf8), data_type.clone())
        }
        // A NULL of no type: let the remote type it from its context.
        DataType::Null => {
            let p = Expr::Placeholder(Placeholder::new_with_field(
                id,
                Some(Arc::new(Field::new("", DataType::Utf8, true))),
            ));
            cast(p, DataType::Utf8)
        }
        t => {
            let p = Expr::Placeholder(Placeholder::new_with_field(id, Some(Arc::new(Field::new("", t.clone(), true)))));
            cast(p, t.clone())
        }
    }
}

/// `plan` with a projection of exactly its output columns at the top (under any ORDER BY and
/// LIMIT, which the unparser keeps in the same SELECT): the remote returns these columns in this
/// order, whatever the unparser would print for a bare join, aggregate or derived table.
fn narrow(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Projection(_) => Ok(plan),
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
            plan.map_children(|c| Ok(Transformed::yes(narrow(c)?))).map(|t| t.data)
        }
        other => {
            let columns = other.schema().columns().into_iter().map(Expr::Column).collect();
            Ok(LogicalPlan::Projection(Projection::try_new(columns, Arc::new(other))?))
        }
    }
}

/// Every foreign scan of `plan` replaced by a derived table over its remote relation
/// ([`remote_leaf`]); an alias directly over a scan names the derived table itself, and filters
/// directly over a scan go inside it.
fn rename(plan: LogicalPlan) -> Result<LogicalPlan> {
    if let Some((scan, alias, predicates)) = filtered_scan(&plan) {
        return remote_leaf(scan, alias, predicates);
    }
    plan.map_children(|c| Ok(Transformed::yes(rename(c)?))).map(|t| t.data)
}

/// `plan` as a foreign leaf: a scan under any filters (unless it has a limit, which the filters
/// follow), the whole under at most one alias. Its filters have to be written inside the leaf's
/// derived table: the unparser writes a filter over a FROM item into the WHERE clause of the
/// SELECT holding it, which under an alias names a relation no longer in scope, and on the
/// null-extended side of an outer join filters after the join instead of before.
fn filtered_scan(plan: &LogicalPlan) -> Option<(&TableScan, &TableReference, Vec<Expr>)> {
    let (mut inner, alias) = match plan {
        LogicalPlan::SubqueryAlias(a) => (a.input.as_ref(), Some(&a.alias)),
        other => (other, None),
    };
    let mut predicates = Vec::new();
    while let LogicalPlan::Filter(f) = inner {
        predicates.push(f.predicate.clone());
        inner = f.input.as_ref();
    }
    match inner {
        LogicalPlan::TableScan(scan) if predicates.is_empty() || scan.fetch.is_none() => {
            Some((scan, alias.unwrap_or(&scan.table_name), predicates))
        }
        _ => None,
    }
}

/// Whether the unparser writes `plan`, as a join input or under an alias, as a FROM item
/// holding all of it: a leaf ([`filtered_scan`]), or a node it always writes as a derived table.
/// A join or a filter over anything else would be spliced into the enclosing SELECT.
fn self_contained(plan: &LogicalPlan) -> bool {
    if filtered_scan(plan).is_some() {
        return true;
    }
    let inner = match plan {
        LogicalPlan::SubqueryAlias(a) => a.input.as_ref(),
        other => other,
    };
    matches!(
        inner,
        LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Sort(_) | LogicalPlan::Limit(_)
    )
}

/// A foreign scan as the remote sees it: a derived table under the scan's name (`alias`) with
/// every declared column under its local name, the scan's filters and limit inside, which
/// unparses to `(SELECT "t"."Remote" AS "local", ... FROM "schema"."t" WHERE ... LIMIT n) AS
/// "alias"`. It has all the table's columns, not only the scan's: parents name theirs.
fn remote_leaf(scan: &TableScan, alias: &TableReference, predicates: Vec<Expr>) -> Result<LogicalPlan> {
    let Some((table, source)) = foreign(scan).and_then(|f| f.table.sql_source().map(|s| (f, s))) else {
        return Err(EngineError::Internal("a pushed scan lost its SQL source".into()).into_datafusion());
    };
    let local = table.schema.clone();
    if source.columns.len() != local.fields().len() {
        return Err(EngineError::Internal(format!("{}: remote column names do not match", table.name)).into());
    }
    let remote_ref = match &source.relation {
        (Some(schema), name) => TableReference::partial(schema.as_str(), name.as_str()),
        (None, name) => TableReference::bare(name.as_str()),
    };
    let fields: Vec<Field> = local
        .fields()
        .iter()
        .zip(&source.columns)
        .map(|(f, remote)| Field::new(remote, f.data_type().clone(), f.is_nullable()))
        .collect();
    let remote_schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut plan = LogicalPlan::TableScan(
        TableScanBuilder::new(remote_ref.clone(), Arc::new(LogicalTableSource::new(remote_schema))).build()?,
    );
    let to_remote = |e: Expr| {
        e.transform(|e| match e {
            Expr::Column(c) => match local.index_of(&c.name) {
                Ok(i) => {
                    Ok(Transformed::yes(Expr::Column(Column::new(Some(remote_ref.clone()), source.columns[i].clone()))))
                }
                Err(_) => {
                    Err(EngineError::Internal(format!("unknown column {c} in a pushed filter")).into_datafusion())
                }
            },
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    };
    let filters = scan.filters.iter().cloned().chain(predicates).map(to_remote).collect::<Result<Vec<_>>>()?;
    if let Some(predicate) = datafusion::logical_expr::utils::conjunction(filters) {
        plan = LogicalPlan::Filter(datafusion::logical_expr::Filter::try_new(predicate, Arc::new(plan))?);
    }
    let renamed = local
        .fields()
        .iter()
        .zip(&source.columns)
        .map(|(f, remote)| Expr::Column(Column::new(Some(remote_ref.clone()), remote.clone())).alias(f.name()))
        .collect();
    plan = LogicalPlan::Projection(Projection::try_new(renamed, Arc::new(plan))?);
    if let Some(fetch) = scan.fetch {
        plan = datafusion::logical_expr::LogicalPlanBuilder::from(plan).limit(0, Some(fetch))?.build()?;
    }
    Ok(LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(plan), alias.clone())?))
}

/// A foreign scan's declared columns (local names and types) and its own SQL source (remote
/// relation and column names).
pub(crate) fn scan_source(scan: &TableScan) -> Option<(SchemaRef, SqlSource)> {
    let table = foreign(scan)?;
    let source = table.table.sql_source()?;
    (source.columns.len() == table.schema.fields().len()).then(|| (table.schema.clone(), source))
}

/// A subtree run by one foreign source.
#[derive(Clone)]
pub(crate) struct RemoteQuery {
    pub sql: String,
    params: Vec<Value>,
    /// The foreign tables read, as the catalog names them, for EXPLAIN and messages.
    tables: Vec<String>,
    /// One of them, whose connector runs the query.
    table: Arc<dyn SdkTable>,
    schema: DFSchemaRef,
    runtime: Arc<Runtime>,
}

impl RemoteQuery {
    fn try_new(plan: &LogicalPlan, runtime: &Arc<Runtime>) -> Result<Option<Self>> {
        let mut providers = Vec::new();
        plan.apply(|n| {
            if let LogicalPlan::TableScan(s) = n
                && let Some(p) = foreign(s)
            {
                providers.push(p);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let Some(first) = providers.first() else { return Ok(None) };
        let mut tables: Vec<String> = providers.iter().map(|p| p.name.clone()).collect();
        tables.dedup();
        if runtime.require_pushdown && !restricts(plan) {
            return Err(EngineError::PushdownRequired(tables.join(", ")).into_datafusion());
        }
        let (sql, params) = match first.table.sql_source() {
            Some(source) if source.dialect == SqlDialect::ClickHouse => {
                let Some(sql) = crate::clickhouse::to_sql(plan) else { return Ok(None) };
                (sql, Vec::new())
            }
            _ => {
                let Some((remote, params)) = remote_plan(plan)? else { return Ok(None) };
                let Ok(statement) = Unparser::new(&PostgreSqlDialect {}).plan_to_sql(&remote) else {
                    return Ok(None);
                };
                (statement.to_string(), params)
            }
        };
        Ok(Some(RemoteQuery {
            sql,
            params,
            tables,
            table: first.table.clone(),
            schema: plan.schema().clone(),
            runtime: runtime.clone(),
        }))
    }

    fn describe(&self) -> String {
        format!("RemoteQuery: {}, Remote SQL: {}", self.tables.join(", "), self.sql)
    }
}

impl fmt::Debug for RemoteQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PartialEq for RemoteQuery {
    fn eq(&self, other: &Self) -> bool {
        self.sql == other.sql && self.params == other.params && self.schema == other.schema
    }
}

impl Eq for RemoteQuery {}

impl Hash for RemoteQuery {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.sql.hash(state);
    }
}

impl PartialOrd for RemoteQuery {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.sql.partial_cmp(&other.sql)
    }
}

impl UserDefinedLogicalNodeCore for RemoteQuery {
    fn name(&self) -> &str {
        "RemoteQuery"
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
        f.write_str(&self.describe())
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// Plans [`RemoteQuery`] nodes.
#[derive(Debug)]
pub(crate) struct RemotePlanner;

#[async_trait]
impl ExtensionPlanner for RemotePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(q) = node.as_any().downcast_ref::<RemoteQuery>() else { return Ok(None) };
        Ok(Some(Arc::new(RemoteQueryExec::new(q.clone()))))
    }
}

/// Runs one [`RemoteQuery`] through its source's connector.
pub(crate) struct RemoteQueryExec {
    query: RemoteQuery,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for RemoteQueryExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.query.describe())
    }
}

impl RemoteQueryExec {
    fn new(query: RemoteQuery) -> Self {
        let schema: SchemaRef = Arc::new(query.schema.as_arrow().clone());
        let props = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self { query, schema, props, metrics: ExecutionPlanMetricsSet::new() }
    }
}

impl DisplayAs for RemoteQueryExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.query.describe())
    }
}

impl ExecutionPlan for RemoteQueryExec {
    fn name(&self) -> &str {
        "RemoteQueryExec"
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

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let rows = MetricBuilder::new(&self.metrics).output_rows(partition);
        let bytes = MetricBuilder::new(&self.metrics).counter("source_bytes", partition);
        let time = MetricBuilder::new(&self.metrics).subset_time("source_time", partition);
        let q = &self.query;
        let request = SqlQuery { sql: q.sql.clone(), params: q.params.clone(), schema: self.schema.clone() };
        let (table, ctx, name) = (q.table.clone(), q.runtime.scan_context(), q.tables.join(", "));
        let schema = self.schema.clone();
        let mut last = Instant::now();
        let open = async move {
            let stream = table
                .query(request, ctx)
                .await
                .map_err(|source| EngineError::Connector { table: name.clone(), source })?;
            Ok::<_, EngineError>(stream.map_err(move |source| EngineError::Connector { table: name.clone(), source }))
        };
        let out = schema.clone();
        let stream = futures::stream::once(open).try_flatten().map(move |batch| {
            let batch = conform(batch.map_err(EngineError::into_datafusion)?, &out)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_become_exact_text() {
        assert_eq!(decimal_text(-1250, 2), "-12.50");
        assert_eq!(decimal_text(5, 3), "0.005");
        assert_eq!(decimal_text(-5, 1), "-0.5");
        assert_eq!(decimal_text(42, 0), "42");
        assert_eq!(
            decimal_text(i128::MIN, 10),
            format!("-{}.{}", &i128::MIN.unsigned_abs().to_string()[..29], &i128::MIN.unsigned_abs().to_string()[29..])
        );
    }
}
