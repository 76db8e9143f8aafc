//! Where DataFusion's semantics differ from Postgres's, pgfed either makes them agree or refuses
//! the construct (0A000, naming it). Parts of a plan that go to Postgres as SQL are evaluated by
//! Postgres and need none of this; it applies to what DataFusion evaluates itself.
//!
//! | difference | rule |
//! |---|---|
//! | integer `+ - *` wrap around in DataFusion | rewritten to checked operations: 22003 like Postgres |
//! | float division by zero gives inf/NaN | checked: 22012 like Postgres |
//! | integer division / modulo by zero | DataFusion errors already: 22012 |
//! | text ordering and comparison | byte order of UTF-8 (as `COLLATE "C"`), documented |
//! | `now()` | the statement's start, not the transaction's, documented |
//! | `COLLATE`, `FOR UPDATE/SHARE`, `SELECT INTO` | refused (0A000) |

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::{self, Expr as SqlExpr, SelectItem, SetExpr, Statement, Visit, Visitor};

use crate::EngineError;

/// Refuses constructs whose meaning DataFusion would change.
pub(crate) fn check_statement(statement: &Statement) -> Result<(), EngineError> {
    if let Statement::Query(q) = statement {
        if !q.locks.is_empty() {
            return Err(EngineError::Unsupported("SELECT ... FOR UPDATE/SHARE".into()));
        }
        if let SetExpr::Select(s) = q.body.as_ref()
            && s.into.is_some()
        {
            return Err(EngineError::Unsupported("SELECT INTO".into()));
        }
    }
    struct Find(Option<String>);
    impl Visitor for Find {
        type Break = ();
        // DataFusion's planner would ignore these and answer as if they were absent.
        fn pre_visit_table_factor(&mut self, factor: &ast::TableFactor) -> std::ops::ControlFlow<()> {
            if let ast::TableFactor::Table { sample: Some(_), .. } | ast::TableFactor::Derived { sample: Some(_), .. } =
                factor
            {
                self.0 = Some("TABLESAMPLE".into());
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, query: &ast::Query) -> std::ops::ControlFlow<()> {
            if query.fetch.as_ref().is_some_and(|f| f.with_ties || f.percent) {
                self.0 = Some("FETCH FIRST ... WITH TIES / PERCENT".into());
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &SqlExpr) -> std::ops::ControlFlow<()> {
            let found = match expr {
                SqlExpr::Collate { .. } => Some("COLLATE"),
                SqlExpr::AtTimeZone { .. } => Some("AT TIME ZONE"),
                SqlExpr::SimilarTo { .. } => Some("SIMILAR TO"),
                _ => None,
            };
            match found {
                Some(f) => {
                    self.0 = Some(f.into());
                    std::ops::ControlFlow::Break(())
                }
                None => std::ops::ControlFlow::Continue(()),
            }
        }
    }
    let mut find = Find(None);
    let _ = statement.visit(&mut find);
    match find.0 {
        Some(construct) => Err(EngineError::Unsupported(construct)),
        None => Ok(()),
    }
}

/// Parameters used directly as a LIMIT, OFFSET or FETCH count (1-based): Postgres types them
/// int8, where DataFusion would leave them untyped.
pub(crate) fn count_placeholders(statement: &Statement) -> Vec<usize> {
    struct Find(Vec<usize>);
    fn placeholder(e: &SqlExpr) -> Option<usize> {
        match e {
            SqlExpr::Value(v) => match &v.value {
                ast::Value::Placeholder(p) => p.strip_prefix('$').and_then(|n| n.parse().ok()),
                _ => None,
            },
            SqlExpr::Nested(inner) => placeholder(inner),
            _ => None,
        }
    }
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_query(&mut self, query: &ast::Query) -> std::ops::ControlFlow<()> {
            let mut exprs: Vec<&SqlExpr> = Vec::new();
            match &query.limit_clause {
                Some(ast::LimitClause::LimitOffset { limit, offset, .. }) => {
                    exprs.extend(limit.iter());
                    exprs.extend(offset.iter().map(|o| &o.value));
                }
                Some(ast::LimitClause::OffsetCommaLimit { offset, limit }) => exprs.extend([offset, limit]),
                None => {}
            }
            if let Some(f) = &query.fetch {
                exprs.extend(f.quantity.iter());
            }
            self.0.extend(exprs.into_iter().filter_map(placeholder));
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut find = Find(Vec::new());
    let _ = statement.visit(&mut find);
    find.0
}

/// Collations under which Postgres orders text as DataFusion does (by bytes of UTF-8, which is
/// code point order).
pub(crate) fn collation_is_bytewise(collation: &str) -> bool {
    matches!(collation, "C" | "POSIX" | "C.UTF-8" | "C.utf8" | "ucs_basic")
}

/// avg over integers and numerics is numeric in Postgres, with a display scale chosen per
/// value (`avg` of 1 and 2 is `1.5000000000000000`); DataFusion's is float8 or a fixed-scale
/// decimal, and a pushed subtree's result is typed by DataFusion too. Refused (checked before
/// type coercion, which would hide the argument's type behind a cast) rather than shown with
/// other digits.
pub(crate) fn check_avg(plan: &LogicalPlan) -> Result<(), EngineError> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let exact = |t: &DataType| {
        matches!(t, DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Decimal128(_, _))
    };
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        let LogicalPlan::Aggregate(agg) = node else { return Ok(TreeNodeRecursion::Continue) };
        let schema = agg.input.schema().clone();
        for e in node.expressions() {
            e.apply(|e| {
                if let Expr::AggregateFunction(a) = e
                    && a.func.name() == "avg"
                    && let Some(arg) = a.params.args.first()
                    && arg.get_type(&schema).is_ok_and(|t| exact(&t))
                {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    })
    .map_err(EngineError::from)?;
    if found {
        return Err(EngineError::Unsupported(
            "avg of integer or numeric values across sources (Postgres's numeric result scale is not reproduced; \
             use avg(x::float8), or sum(x) and count(x))"
                .into(),
        ));
    }
    Ok(())
}

/// Refuses text comparisons that DataFusion would evaluate (window and aggregate ORDER BY,
/// `<`/`>`, min/max on text) when the database's collation is not byte order: the answer would
/// differ from Postgres's. ORDER BY itself is sorted in the collation (`collate.rs`); subtrees
/// sent to Postgres ([`crate::local::LocalQuery`]) are not inspected.
pub(crate) fn check_text_order(plan: &LogicalPlan, collation: &str) -> Result<(), EngineError> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    if collation_is_bytewise(collation) {
        return Ok(());
    }
    let is_text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let mut found: Option<&'static str> = None;
    plan.apply_with_subqueries(|node| {
        let schema = match node {
            LogicalPlan::Extension(_) | LogicalPlan::TableScan(_) => return Ok(TreeNodeRecursion::Jump),
            LogicalPlan::Join(_) => node.schema().clone(),
            other => match other.inputs().as_slice() {
                [input] => input.schema().clone(),
                _ => return Ok(TreeNodeRecursion::Continue),
            },
        };
        // ORDER BY itself is sorted in the database collation (`collate.rs`).
        for e in node.expressions() {
            e.apply(|e| {
                let hit = match e {
                    Expr::BinaryExpr(b)
                        if matches!(b.op, Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq) =>
                    {
                        b.left.get_type(&schema).is_ok_and(|t| is_text(&t)).then_some("comparing text with < or >")
                    }
                    Expr::AggregateFunction(a) if matches!(a.func.name(), "min" | "max") => a
                        .params
                        .args
                        .first()
                        .and_then(|x| x.get_type(&schema).ok())
                        .is_some_and(|t| is_text(&t))
                        .then_some("min/max of text"),
                    Expr::AggregateFunction(a)
                        if a.params.order_by.iter().any(|o| o.expr.get_type(&schema).is_ok_and(|t| is_text(&t))) =>
                    {
                        Some("an aggregate's ORDER BY on a text value")
                    }
                    Expr::WindowFunction(w) => w
                        .params
                        .order_by
                        .iter()
                        .any(|o| o.expr.get_type(&schema).is_ok_and(|t| is_text(&t)))
                        .then_some("window ORDER BY on a text value"),
                    _ => None,
                };
                if hit.is_some() {
                    found = hit;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
            if found.is_some() {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(EngineError::from)?;
    match found {
        Some(what) => Err(EngineError::Unsupported(format!(
            "{what} across sources under collation \"{collation}\" (pgfed orders text by bytes, as COLLATE \"C\")"
        ))),
        None => Ok(()),
    }
}

/// `sum(bigint)` is numeric in Postgres and never overflows; DataFusion's is a wrapping Int64.
/// Rewrites it (before type coercion) to `sum(CAST(x AS DECIMAL(38, 0)))` under the same name,
/// which gives Postgres's type and exact values.
pub(crate) fn postgres_sums(plan: LogicalPlan) -> Result<LogicalPlan, EngineError> {
    let t = plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::Aggregate(agg) = &node else {
            return Ok(Transformed::yes(node.recompute_schema()?));
        };
        let schema = agg.input.schema().clone();
        let names = NamePreserver::new(&node);
        let t = node.map_expressions(|e| {
            let saved = names.save(&e);
            let t = e.transform_up(|e| match e {
                Expr::AggregateFunction(mut a)
                    if a.func.name() == "sum"
                        && a.params.args.len() == 1
                        && a.params.args[0].get_type(&schema).is_ok_and(|t| t == DataType::Int64) =>
                {
                    let arg = a.params.args.remove(0);
                    a.params.args.push(Expr::Cast(datafusion::logical_expr::Cast::new(
                        Box::new(arg),
                        DataType::Decimal128(38, 0),
                    )));
                    Ok(Transformed::yes(Expr::AggregateFunction(a)))
                }
                other => Ok(Transformed::no(other)),
            })?;
            Ok(if t.transformed { Transformed::yes(saved.restore(t.data)) } else { t })
        })?;
        Ok(Transformed::yes(t.data.recompute_schema()?))
    })?;
    Ok(t.data)
}

/// An integer literal is int4 in Postgres when it fits (bigint only beyond), so `int4_col + 1`
/// is int4 (and overflows as int4) where DataFusion, reading every integer literal as Int64,
/// makes it Int64. Rewrites (before type coercion) Int64 literals that fit to Int32, keeping
/// names. Not LIMIT/OFFSET (the planner wants Int64 there) nor VALUES rows (typed with their
/// node), nor count's argument (`count(*)` is `count(Int64(1))` to the optimizer and unparser).
/// -2147483648 stays Int64 as in Postgres, where it is the negation of a bigint literal.
pub(crate) fn int4_literals(plan: LogicalPlan) -> Result<LogicalPlan, EngineError> {
    let t = plan.transform_up_with_subqueries(|node| {
        if matches!(node, LogicalPlan::Limit(_) | LogicalPlan::Values(_)) {
            return Ok(Transformed::no(node));
        }
        let names = NamePreserver::new(&node);
        let t = node.map_expressions(|e| {
            let saved = names.save(&e);
            let t = e.transform_down(|e| match e {
                Expr::AggregateFunction(a) if a.func.name() == "count" => {
                    Ok(Transformed::new(Expr::AggregateFunction(a), false, TreeNodeRecursion::Jump))
                }
                Expr::Literal(ScalarValue::Int64(Some(v)), meta) if v > i64::from(i32::MIN) => match i32::try_from(v) {
                    Ok(v) => Ok(Transformed::yes(Expr::Literal(ScalarValue::Int32(Some(v)), meta))),
                    Err(_) => Ok(Transformed::no(Expr::Literal(ScalarValue::Int64(Some(v)), meta))),
                },
                other => Ok(Transformed::no(other)),
            })?;
            Ok(if t.transformed { Transformed::yes(saved.restore(t.data)) } else { t })
        })?;
        if t.transformed { Ok(Transformed::yes(t.data.recompute_schema()?)) } else { Ok(t) }
    })?;
    Ok(t.data)
}

/// A numeric literal beside a float is a float, as in Postgres (`v > 900.0` with `v` float8
/// compares floats; numeric casts implicitly to float8, not the other way). DataFusion would cast
/// the float to a decimal, which fails on NaN and infinity and rounds. Runs before type coercion.
pub(crate) fn float_literals(plan: LogicalPlan) -> Result<LogicalPlan, EngineError> {
    rewrite_expressions(plan, |e, schema| {
        let is_float = |e: &Expr| e.get_type(schema).is_ok_and(|t| matches!(t, DataType::Float32 | DataType::Float64));
        Ok(match e {
            Expr::BinaryExpr(mut b) => {
                let changed = if is_float(&b.left) {
                    to_float(&mut b.right)
                } else if is_float(&b.right) {
                    to_float(&mut b.left)
                } else {
                    false
                };
                Transformed::new_transformed(Expr::BinaryExpr(b), changed)
            }
            Expr::InList(mut l) if is_float(&l.expr) => {
                let changed = l.list.iter_mut().fold(false, |c, v| to_float(v) | c);
                Transformed::new_transformed(Expr::InList(l), changed)
            }
            Expr::Between(mut b) if is_float(&b.expr) => {
                let changed = to_float(&mut b.low) | to_float(&mut b.high);
                Transformed::new_transformed(Expr::Between(b), changed)
            }
            other => Transformed::no(other),
        })
    })
}

/// A decimal literal as the nearest float8 (through its exact text, correctly rounded).
fn to_float(e: &mut Expr) -> bool {
    if let Expr::Literal(ScalarValue::Decimal128(Some(v), _, scale), _) = e
        && let Ok(f) = crate::quals::decimal_text(*v, *scale).parse::<f64>()
    {
        *e = Expr::Literal(ScalarValue::Float64(Some(f)), None);
        return true;
    }
    false
}

/// Plan-level checks after planning.
pub(crate) fn check_plan(plan: &LogicalPlan) -> Result<(), EngineError> {
    match plan {
        LogicalPlan::Dml(_) => Err(EngineError::Unsupported("writes to foreign tables through the engine".into())),
        LogicalPlan::Ddl(_) => Err(EngineError::Unsupported("DDL inside a federated statement".into())),
        _ => Ok(()),
    }
}

/// Result column names as Postgres chooses them for the top-level select list: the alias, else
/// the column or function name, else `?column?`. `None` where pgfed cannot tell (after `*`).
pub(crate) fn postgres_names(statement: &Statement) -> Vec<Option<String>> {
    let Statement::Query(q) = statement else { return Vec::new() };
    let mut body = q.body.as_ref();
    // Set operations take the names of their first branch.
    while let SetExpr::SetOperation { left, .. } = body {
        body = left.as_ref();
    }
    let SetExpr::Select(select) = body else { return Vec::new() };
    let mut names = Vec::new();
    for item in &select.projection {
        match item {
            SelectItem::UnnamedExpr(e) => names.push(Some(expr_name(e))),
            SelectItem::ExprWithAlias { alias, .. } => names.push(Some(ident(alias))),
            // After a wildcard positions are unknown; DataFusion's names are the column names.
            _ => break,
        }
    }
    names
}

/// ORDER BY as Postgres resolves it, without DataFusion's name clashes.
///
/// Postgres names an unnamed select item after its expression (`id::text` is `id`), and a bare
/// name in ORDER BY means that output column first (`SELECT id::text ... ORDER BY id` sorts the
/// text). DataFusion names `CAST(id AS text)` `id` too, which clashes with the hidden sort column
/// `id`, and would sort by the input column. So each such item gets an internal alias (its
/// output name is still Postgres's, from [`postgres_names`]), and an ORDER BY that is exactly one
/// of those names is replaced by the item's expression. GROUP BY and HAVING keep seeing input
/// columns, as in Postgres.
pub(crate) fn alias_like_postgres(statement: &mut Statement, names: &[Option<String>]) {
    let Statement::Query(q) = statement else { return };
    let SetExpr::Select(select) = q.body.as_mut() else { return };
    let count = |n: &str| names.iter().filter(|m| m.as_deref() == Some(n)).count();
    let mut renamed: Vec<(String, SqlExpr)> = Vec::new();
    for (i, (item, name)) in select.projection.iter_mut().zip(names).enumerate() {
        let Some(name) = name else { continue };
        if let SelectItem::UnnamedExpr(e) = item
            && !matches!(e, SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_))
        {
            if name != "?column?" && count(name) == 1 {
                renamed.push((name.clone(), e.clone()));
            }
            *item = SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: ast::Ident::with_quote('"', format!("__pgfed_out_{i}")),
            };
        }
    }
    let Some(order_by) = q.order_by.as_mut() else { return };
    let ast::OrderByKind::Expressions(keys) = &mut order_by.kind else { return };
    for key in keys {
        if let SqlExpr::Identifier(id) = &key.expr
            && let Some((_, e)) = renamed.iter().find(|(n, _)| *n == ident(id))
        {
            key.expr = e.clone();
        }
    }
}

fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() { i.value.clone() } else { i.value.to_lowercase() }
}

fn expr_name(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Identifier(i) => ident(i),
        SqlExpr::CompoundIdentifier(parts) => parts.last().map(ident).unwrap_or_else(|| "?column?".into()),
        SqlExpr::Function(f) => {
            f.name.0.last().and_then(|p| p.as_ident()).map(ident).unwrap_or_else(|| "?column?".into())
        }
        SqlExpr::Cast { expr, data_type, .. } => match expr.as_ref() {
            SqlExpr::Value(_) => cast_type_name(data_type),
            inner => expr_name(inner),
        },
        SqlExpr::Nested(inner) => expr_name(inner),
        SqlExpr::Case { .. } => "case".into(),
        SqlExpr::Exists { .. } => "exists".into(),
        SqlExpr::Array(_) => "array".into(),
        SqlExpr::Extract { .. } => "extract".into(),
        SqlExpr::Substring { .. } => "substring".into(),
        SqlExpr::Trim { .. } => "btrim".into(),
        SqlExpr::Position { .. } => "position".into(),
        SqlExpr::Interval(_) => "interval".into(),
        SqlExpr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s) => match s.projection.first() {
                Some(SelectItem::UnnamedExpr(e)) => expr_name(e),
                Some(SelectItem::ExprWithAlias { alias, .. }) => ident(alias),
                _ => "?column?".into(),
            },
            _ => "?column?".into(),
        },
        _ => "?column?".into(),
    }
}

/// The name Postgres gives `'1'::int` and friends: the type's internal name.
fn cast_type_name(t: &ast::DataType) -> String {
    use ast::DataType as T;
    match t {
        T::Int(_) | T::Integer(_) | T::Int4(_) => "int4".into(),
        T::BigInt(_) | T::Int8(_) => "int8".into(),
        T::SmallInt(_) | T::Int2(_) => "int2".into(),
        T::Real | T::Float4 => "float4".into(),
        T::Double(_) | T::DoublePrecision | T::Float8 => "float8".into(),
        T::Boolean | T::Bool => "bool".into(),
        T::Varchar(_) | T::CharacterVarying(_) => "varchar".into(),
        T::Char(_) | T::Character(_) => "bpchar".into(),
        T::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => "timestamptz".into(),
        T::Timestamp(_, _) => "timestamp".into(),
        other => other.to_string().to_lowercase(),
    }
}

/// Rewrites integer `+ - *` and float `/` that DataFusion will evaluate into checked versions.
/// Runs after [`crate::local::collapse`], so SQL sent to Postgres is untouched.
pub(crate) fn checked_arithmetic(plan: LogicalPlan) -> Result<LogicalPlan, EngineError> {
    rewrite_expressions(plan, rewrite_arith)
}

/// Rewrites every expression of every node (subqueries included) bottom-up with `f`, which sees
/// the schema the expression is evaluated against (a node's input; a join's own), keeping output
/// names. Scans and extension nodes (work sent to a source) are left alone.
pub(crate) fn rewrite_expressions(
    plan: LogicalPlan,
    mut f: impl FnMut(Expr, &datafusion::common::DFSchema) -> DfResult<Transformed<Expr>>,
) -> Result<LogicalPlan, EngineError> {
    let t = plan.transform_up_with_subqueries(|node| {
        let schema = match &node {
            LogicalPlan::Extension(_) | LogicalPlan::TableScan(_) => return Ok(Transformed::no(node)),
            LogicalPlan::Join(_) => node.schema().clone(),
            other => match other.inputs().as_slice() {
                [input] => input.schema().clone(),
                _ => return Ok(Transformed::no(node)),
            },
        };
        let names = NamePreserver::new(&node);
        let t = node.map_expressions(|e| {
            let saved = names.save(&e);
            let t = e.transform_up(|e| f(e, &schema))?;
            Ok(if t.transformed { Transformed::yes(saved.restore(t.data)) } else { t })
        })?;
        if t.transformed { Ok(Transformed::yes(t.data.recompute_schema()?)) } else { Ok(t) }
    })?;
    Ok(t.data)
}

fn rewrite_arith(e: Expr, schema: &datafusion::common::DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::BinaryExpr(b) = &e else { return Ok(Transformed::no(e)) };
    let (lt, rt) = (b.left.get_type(schema)?, b.right.get_type(schema)?);
    let int = |t: &DataType| matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64);
    let float = |t: &DataType| matches!(t, DataType::Float32 | DataType::Float64);
    let applies = lt == rt
        && match b.op {
            Operator::Plus | Operator::Minus | Operator::Multiply => int(&lt),
            Operator::Divide => float(&lt),
            _ => false,
        };
    if !applies {
        return Ok(Transformed::no(e));
    }
    let Expr::BinaryExpr(b) = e else { return Ok(Transformed::no(e)) };
    let udf = Arc::new(ScalarUDF::new_from_impl(PgArith::new(b.op)));
    Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(udf, vec![*b.left, *b.right]))))
}

/// `a op b` with Postgres's errors: overflow is 22003, float division by zero 22012.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgArith {
    op: Operator,
    name: String,
    signature: Signature,
}

impl PgArith {
    fn new(op: Operator) -> Self {
        PgArith {
            op,
            name: match op {
                Operator::Plus => "checked_add",
                Operator::Minus => "checked_sub",
                Operator::Multiply => "checked_mul",
                _ => "checked_div",
            }
            .to_string(),
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgArith {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (l, r) = (&arrays[0], &arrays[1]);
        let out = arith(self.op, l, r).map_err(EngineError::into_datafusion)?;
        if args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) && n <= 1 {
            return Ok(ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

fn arith(op: Operator, l: &ArrayRef, r: &ArrayRef) -> Result<ArrayRef, EngineError> {
    let overflow = || {
        let what = match l.data_type() {
            DataType::Int16 => "smallint out of range",
            DataType::Int32 => "integer out of range",
            DataType::Int64 => "bigint out of range",
            _ => "value out of range: overflow",
        };
        EngineError::Data { code: "22003", message: what.into() }
    };
    let float = matches!(l.data_type(), DataType::Float32 | DataType::Float64);
    let result = match op {
        Operator::Plus => numeric::add(l, r),
        Operator::Minus => numeric::sub(l, r),
        Operator::Multiply => numeric::mul(l, r),
        Operator::Divide => {
            if float && has_zero(r) {
                return Err(EngineError::Data { code: "22012", message: "division by zero".into() });
            }
            numeric::div(l, r)
        }
        _ => return Err(EngineError::Internal(format!("unexpected operator {op}"))),
    };
    result.map_err(|e| match e {
        datafusion::arrow::error::ArrowError::DivideByZero => {
            EngineError::Data { code: "22012", message: "division by zero".into() }
        }
        datafusion::arrow::error::ArrowError::ArithmeticOverflow(_) => overflow(),
        other => EngineError::Data { code: "22000", message: other.to_string() },
    })
}

fn has_zero(a: &ArrayRef) -> bool {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float32Type, Float64Type};
    match a.data_type() {
        DataType::Float64 => a.as_primitive::<Float64Type>().iter().any(|v| v == Some(0.0)),
        DataType::Float32 => a.as_primitive::<Float32Type>().iter().any(|v| v == Some(0.0)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::logical_expr::{LogicalPlanBuilder, col, lit, table_scan};

    fn plan() -> LogicalPlanBuilder {
        let schema =
            Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]);
        table_scan(Some("t"), &schema, None).expect("scan")
    }

    #[test]
    fn text_ordering_is_refused_only_under_a_non_bytewise_collation() {
        // ORDER BY is sorted in the collation by collate.rs; comparisons are not.
        let sorted = plan().sort(vec![col("name").sort(true, false)]).expect("sort").build().expect("plan");
        check_text_order(&sorted, "en_US.UTF-8").expect("ORDER BY is collate.rs's");
        let min = plan()
            .aggregate(
                Vec::<datafusion::logical_expr::Expr>::new(),
                vec![datafusion::functions_aggregate::min_max::min(col("name"))],
            )
            .expect("aggregate")
            .build()
            .expect("plan");
        let e = check_text_order(&min, "en_US.UTF-8").expect_err("min of text");
        assert_eq!(e.sqlstate(), "0A000");
        assert!(e.to_string().contains("min/max of text"), "{e}");
        check_text_order(&min, "C.UTF-8").expect("byte order is Postgres's order");
        let by_id = plan().sort(vec![col("id").sort(true, false)]).expect("sort").build().expect("plan");
        check_text_order(&by_id, "en_US.UTF-8").expect("no text ordering");
        let cmp = plan().filter(col("name").gt(lit("m"))).expect("filter").build().expect("plan");
        assert!(check_text_order(&cmp, "de_DE.UTF-8").is_err());
        let eq = plan().filter(col("name").eq(lit("m"))).expect("filter").build().expect("plan");
        check_text_order(&eq, "de_DE.UTF-8").expect("equality does not depend on a deterministic collation");
    }

    #[test]
    fn result_names_follow_postgres() {
        let stmt = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            "SELECT id, count(*), 1, x AS \"Y\", t.Name, '1'::int, CASE WHEN true THEN 1 END FROM t",
        )
        .expect("parse")
        .remove(0);
        let names: Vec<Option<String>> = postgres_names(&stmt);
        let want = ["id", "count", "?column?", "Y", "name", "int4", "case"];
        assert_eq!(names, want.iter().map(|n| Some(n.to_string())).collect::<Vec<_>>());
    }
}
