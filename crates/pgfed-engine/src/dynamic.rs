//! Join keys pushed into scans at run time (semi-join filters).
//!
//! `SELECT ... FROM orders o JOIN events e ON e.order_id = o.id WHERE o.region = 'eu'` builds
//! a hash table from the small side (the orders of one region) before reading the probe side.
//! DataFusion's hash join then publishes a dynamic filter on the probe keys: the build side's
//! distinct keys as an IN list when they are few (`hash_join_inlist_pushdown_max_distinct_values`)
//! and their min/max bounds. A scan that holds that filter turns it, when its first batch is
//! asked for (after the build side is complete), into quals: `order_id = ANY(...)`,
//! `order_id >= min`, `order_id <= max`, so the source sends only rows that can join instead of
//! the whole table.
//!
//! The filter only narrows what the join probes: the join still matches every row, so a qual the
//! source applies loosely, or not at all, cannot change the answer. The scan uses it only when
//! it has no LIMIT (a limit over fewer rows would pick different rows).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator as DfOp;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, Column, DynamicFilterPhysicalExpr, InListExpr, Literal,
};
use pgfed_connector_sdk::{Operator, Qual, QualValue};

use crate::quals::scalar_to_value;

/// The dynamic filters among the filters a parent offers a scan.
pub(crate) fn collect(filters: &[Arc<dyn PhysicalExpr>]) -> Vec<Arc<DynamicFilterPhysicalExpr>> {
    filters.iter().filter_map(|f| (Arc::clone(f) as Arc<dyn std::any::Any + Send + Sync>).downcast().ok()).collect()
}

/// What a filter says about one column: its value is one of `values` (when known) and lies
/// within the bounds (each inclusive, when known).
#[derive(Debug, Clone, Default, PartialEq)]
struct Constraint {
    values: Option<Vec<ScalarValue>>,
    min: Option<ScalarValue>,
    max: Option<ScalarValue>,
}

impl Constraint {
    /// Both hold.
    fn and(mut self, other: Constraint) -> Constraint {
        if self.values.is_none() {
            self.values = other.values;
        }
        if self.min.is_none() {
            self.min = other.min;
        }
        if self.max.is_none() {
            self.max = other.max;
        }
        self
    }

    /// Either holds: the union of lists and the hull of bounds, each only if both sides know it.
    fn or(self, other: Constraint) -> Constraint {
        let values = match (self.values, other.values) {
            (Some(mut a), Some(b)) => {
                for v in b {
                    if !a.contains(&v) {
                        a.push(v);
                    }
                }
                Some(a)
            }
            _ => None,
        };
        let pick = |a: Option<ScalarValue>, b: Option<ScalarValue>, keep_less: bool| match (a, b) {
            (Some(a), Some(b)) => match a.partial_cmp(&b) {
                Some(o) if (o.is_lt() == keep_less) || o.is_eq() => Some(a),
                Some(_) => Some(b),
                None => None,
            },
            _ => None,
        };
        Constraint { values, min: pick(self.min, other.min, true), max: pick(self.max, other.max, false) }
    }

    fn is_empty(&self) -> bool {
        self.values.is_none() && self.min.is_none() && self.max.is_none()
    }
}

/// Constraints by column index. `None` means the expression is false: no row qualifies (an empty
/// partition's branch).
type Constraints = Option<HashMap<usize, Constraint>>;

/// What holds when either holds: per column known on both sides, the union of the two.
fn either(l: Constraints, r: Constraints) -> Constraints {
    match (l, r) {
        (None, x) | (x, None) => x,
        (Some(mut l), Some(mut r)) => {
            let keys: Vec<usize> = l.keys().copied().filter(|k| r.contains_key(k)).collect();
            Some(
                keys.into_iter()
                    .filter_map(|k| Some((k, l.remove(&k)?.or(r.remove(&k)?))))
                    .filter(|(_, c)| !c.is_empty())
                    .collect(),
            )
        }
    }
}

fn literal(e: &Arc<dyn PhysicalExpr>) -> Option<&ScalarValue> {
    e.downcast_ref::<Literal>().map(Literal::value)
}

fn column(e: &Arc<dyn PhysicalExpr>) -> Option<usize> {
    e.downcast_ref::<Column>().map(Column::index)
}

fn constraints(e: &Arc<dyn PhysicalExpr>) -> Constraints {
    if let Some(ScalarValue::Boolean(Some(false))) = literal(e) {
        return None;
    }
    let mut out = HashMap::new();
    if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        match b.op() {
            DfOp::And => {
                let (l, r) = (constraints(b.left())?, constraints(b.right())?);
                out = l;
                for (c, k) in r {
                    let merged = match out.remove(&c) {
                        Some(existing) => existing.and(k),
                        None => k,
                    };
                    out.insert(c, merged);
                }
            }
            DfOp::Or => return either(constraints(b.left()), constraints(b.right())),
            op @ (DfOp::GtEq | DfOp::LtEq | DfOp::Gt | DfOp::Lt) => {
                // A strict bound is kept as the inclusive one: looser, still right.
                if let (Some(c), Some(v)) = (column(b.left()), literal(b.right()))
                    && !v.is_null()
                {
                    let bound = Constraint {
                        min: matches!(op, DfOp::GtEq | DfOp::Gt).then(|| v.clone()),
                        max: matches!(op, DfOp::LtEq | DfOp::Lt).then(|| v.clone()),
                        values: None,
                    };
                    out.insert(c, bound);
                }
            }
            _ => {}
        }
    } else if let Some(list) = e.downcast_ref::<InListExpr>() {
        if !list.negated()
            && let Some(c) = column(list.expr())
        {
            let values: Option<Vec<ScalarValue>> =
                list.list().iter().map(|v| literal(v).filter(|v| !v.is_null()).cloned()).collect();
            if let Some(values) = values {
                out.insert(c, Constraint { values: Some(values), min: None, max: None });
            }
        }
    } else if let Some(case) = e.downcast_ref::<CaseExpr>() {
        // The partitioned join's filter: `CASE hash(keys) % n WHEN i THEN <partition i's filter>
        // ... ELSE false END`; a row passes only through one branch, so the union of branches.
        let mut branches = case.when_then_expr().iter().map(|(_, then)| then).collect::<Vec<_>>();
        if let Some(other) = case.else_expr() {
            branches.push(other);
        }
        return branches.into_iter().map(constraints).reduce(either).unwrap_or_else(|| Some(HashMap::new()));
    }
    Some(out)
}

/// The quals a dynamic filter implies for a scan whose output is `schema`, or `None` when it
/// admits no row at all (the build side was empty).
pub(crate) fn quals(filter: &DynamicFilterPhysicalExpr, schema: &Schema) -> Option<Vec<Qual>> {
    let Ok(current) = filter.current() else { return Some(Vec::new()) };
    let found = constraints(&current)?;
    let mut out = Vec::new();
    let mut columns: Vec<_> = found.into_iter().collect();
    columns.sort_by_key(|(c, _)| *c);
    for (index, c) in columns {
        let Some(field) = schema.fields().get(index) else { continue };
        let name = field.name().clone();
        let convert = |v: &ScalarValue| {
            // The key must have the column's own type: a value cast on the way could compare
            // differently at the source.
            (v.data_type() == *field.data_type()).then(|| scalar_to_value(v)).flatten()
        };
        if let Some(values) = &c.values
            && let Some(values) = values.iter().map(convert).collect::<Option<Vec<_>>>()
        {
            out.push(Qual { column: name.clone(), operator: Operator::Eq, value: QualValue::Any(values) });
        }
        if let Some(v) = c.min.as_ref().and_then(convert) {
            out.push(Qual { column: name.clone(), operator: Operator::GtEq, value: QualValue::One(v) });
        }
        if let Some(v) = c.max.as_ref().and_then(convert) {
            out.push(Qual { column: name, operator: Operator::LtEq, value: QualValue::One(v) });
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::physical_expr::expressions::lit;
    use pgfed_connector_sdk::Value;

    fn col(i: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(if i == 0 { "k" } else { "v" }, i))
    }

    fn schema() -> Schema {
        Schema::new(vec![Field::new("k", DataType::Int64, true), Field::new("v", DataType::Utf8, true)])
    }

    fn bounds(c: usize, lo: i64, hi: i64) -> Arc<dyn PhysicalExpr> {
        let lo = Arc::new(BinaryExpr::new(col(c), DfOp::GtEq, lit(lo)));
        let hi = Arc::new(BinaryExpr::new(col(c), DfOp::LtEq, lit(hi)));
        Arc::new(BinaryExpr::new(lo, DfOp::And, hi))
    }

    fn in_list(c: usize, values: &[i64]) -> Arc<dyn PhysicalExpr> {
        let list = values.iter().map(|v| lit(*v)).collect();
        Arc::new(InListExpr::try_new(col(c), list, false, &schema()).expect("in list"))
    }

    fn run(e: Arc<dyn PhysicalExpr>) -> Option<Vec<String>> {
        let f = DynamicFilterPhysicalExpr::new(vec![col(0)], e);
        quals(&f, &schema()).map(|q| q.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn in_list_and_bounds_become_quals() {
        let e: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(bounds(0, 1, 9), DfOp::And, in_list(0, &[1, 5, 9])));
        let q = run(e).expect("rows");
        assert_eq!(q.len(), 3, "{q:?}");
        assert!(q[0].contains("ANY") || q[0].contains("IN"), "{q:?}");
    }

    #[test]
    fn partitioned_branches_are_united() {
        let when = |i: i64| -> (Arc<dyn PhysicalExpr>, Arc<dyn PhysicalExpr>) {
            (lit(i), Arc::new(BinaryExpr::new(bounds(0, i * 10, i * 10 + 5), DfOp::And, in_list(0, &[i * 10]))))
        };
        let case = CaseExpr::try_new(Some(col(0)), vec![when(0), when(1)], Some(lit(false))).expect("case");
        let f = DynamicFilterPhysicalExpr::new(vec![col(0)], Arc::new(case));
        let q = quals(&f, &schema()).expect("rows");
        assert_eq!(q[0].value, QualValue::Any(vec![Value::Int(0), Value::Int(10)]));
        assert_eq!(q[1].value, QualValue::One(Value::Int(0)));
        assert_eq!(q[2].value, QualValue::One(Value::Int(15)));
    }

    #[test]
    fn false_means_no_rows_and_unknown_shapes_mean_no_quals() {
        assert_eq!(run(lit(false)), None);
        assert_eq!(run(lit(true)), Some(vec![]));
        // A branch that knows nothing about the column drops it.
        let e: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(in_list(0, &[1]), DfOp::Or, lit(true)));
        assert_eq!(run(e), Some(vec![]));
    }
}
