//! Subtrees pushed whole to ClickHouse: one table, filtered, grouped, aggregated, sorted and
//! limited, written as one `SELECT` through a quoting layer of its own.
//!
//! ClickHouse differs from Postgres in ways that change answers, so what is pushed is an
//! allow-list of what both evaluate alike, checked per expression and type; everything else is
//! left to pgfed above the remote query (or to the connector's qual path):
//!
//! - Logic over NULL: ClickHouse 18.16 makes `NULL AND 0` NULL (Postgres: false), which differs
//!   under NOT. Predicates are therefore only ANDs and ORs (each side `ifNull(.., 0)`), at the top
//!   of WHERE or HAVING, of comparisons, IS [NOT] NULL, IN lists and BETWEEN, where NULL and false
//!   both drop the row; no NOT.
//! - Floats: Postgres sorts NaN above every number and makes `NaN = NaN` true; ClickHouse does
//!   neither. A float is compared only with a finite literal, `>`/`>=` written as
//!   `(x > c OR isNaN(x))`; floats are not sort or group keys and have no min/max pushed.
//! - Text: ClickHouse compares bytes, the client's Postgres by its collation; text is compared
//!   for equality (same in every deterministic collation), never ordered.
//! - Integers: ClickHouse wraps on overflow. `sum` is pushed only over int2/int4 (an Int64 result,
//!   as Postgres's bigint) and floats and decimals; no arithmetic is pushed.
//! - Empty input: ClickHouse's `sum`/`min`/`max` of no rows are 0, Postgres's NULL. Aggregates are
//!   pushed with GROUP BY (every group has a row); without it only `count`.
//! - Casts: only integer widening, which ClickHouse's mixed-type comparison makes unnecessary.
//!
//! Inner equi-joins of tables of one server are pushed as `(SELECT ..) AS __pgfed_l ALL INNER JOIN
//! (SELECT ..) AS __pgfed_r ON ..` (NULL keys do not match in either); outer joins stay in pgfed
//! (ClickHouse fills the missing side with default values, not NULL, unless join_use_nulls). The
//! SQL is accepted by ClickHouse 18.16 and current releases: backquoted
//! identifiers, string literals with backslash escapes, `toDate('...')`, `LIMIT n OFFSET m`.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, Operator, SortExpr};

use crate::remote::{is_text, scan_source};

/// `name` as a ClickHouse identifier.
pub(crate) fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for c in name.chars() {
        match c {
            '`' => out.push_str("\\`"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('`');
    out
}

/// `s` as a ClickHouse string literal: ClickHouse reads backslash escapes, so both the quote and
/// the backslash are escaped (doubling the quote alone, as in Postgres, would let `\'` through).
pub(crate) fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn is_int(t: &DataType) -> bool {
    matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64)
}

fn is_float(t: &DataType) -> bool {
    matches!(t, DataType::Float32 | DataType::Float64)
}

/// Types whose order and equality ClickHouse shares with Postgres.
fn ordered(t: &DataType) -> bool {
    is_int(t) || matches!(t, DataType::Decimal128(_, _) | DataType::Date32 | DataType::Timestamp(_, _))
}

/// Prefix of the output columns' aliases (all of pgfed's start `__pgfed_`; a source column that
/// does disables the pushdown).
const ALIAS: &str = "__pgfed_c";

/// Last day ClickHouse's `Date` holds in every version (UInt16 days; 2149-06-06), with margin.
const MAX_DATE: i32 = 65_000;

fn literal(v: &ScalarValue) -> Option<String> {
    Some(match v {
        ScalarValue::Int16(Some(i)) => int(i64::from(*i)),
        ScalarValue::Int32(Some(i)) => int(i64::from(*i)),
        ScalarValue::Int64(Some(i)) if *i != i64::MIN => int(*i),
        ScalarValue::Float64(Some(f)) if f.is_finite() => {
            let s = format!("{f:?}");
            if *f < 0.0 { format!("({s})") } else { s }
        }
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => string(s),
        // A timestamptz is an instant, as ClickHouse's DateTime (seconds since the epoch, any
        // time zone): whole seconds within DateTime's range only.
        ScalarValue::TimestampMicrosecond(Some(us), Some(_))
            if us.rem_euclid(1_000_000) == 0 && (0..=i64::from(u32::MAX) * 1_000_000).contains(us) =>
        {
            format!("toDateTime({})", us / 1_000_000)
        }
        ScalarValue::Date32(Some(d)) if (0..=MAX_DATE).contains(d) => {
            let date = datafusion::arrow::temporal_conversions::date32_to_datetime(*d)?;
            format!("toDate({})", string(&date.format("%Y-%m-%d").to_string()))
        }
        _ => return None,
    })
}

fn int(i: i64) -> String {
    if i < 0 { format!("({i})") } else { i.to_string() }
}

/// What expressions may refer to: the SQL of each column of a node's input, by position.
struct Scope<'a> {
    schema: &'a DFSchema,
    items: &'a [String],
}

impl Scope<'_> {
    fn ty(&self, e: &Expr) -> Option<DataType> {
        e.get_type(self.schema).ok()
    }

    /// A value: a column (or a column's alias), a literal, an integer-widening cast of one.
    fn value(&self, e: &Expr) -> Option<String> {
        match e {
            Expr::Column(c) => self.items.get(self.schema.index_of_column(c).ok()?).cloned(),
            Expr::Alias(a) => self.value(&a.expr),
            Expr::Literal(v, _) => literal(v),
            Expr::Cast(c) => {
                let from = self.ty(&c.expr)?;
                let to = c.field.data_type();
                let widening = is_int(&from) && is_int(to) && int_width(&from) <= int_width(to);
                (widening || from == *to).then(|| self.value(&c.expr)).flatten()
            }
            Expr::ScalarFunction(f) => self.function(f.name(), &f.args),
            _ => None,
        }
    }

    /// Functions ClickHouse computes exactly as Postgres does, for the argument types allowed.
    fn function(&self, name: &str, args: &[Expr]) -> Option<String> {
        let values = || args.iter().map(|a| self.value(a)).collect::<Option<Vec<_>>>();
        match name {
            // The first non-NULL argument; all of one kind (DataFusion coerced them).
            "coalesce" => {
                let t = self.ty(args.first()?)?;
                (ordered(&t) || is_text(&t) || is_float(&t))
                    .then(|| Some(format!("coalesce({})", values()?.join(", "))))?
            }
            // Characters, not bytes (the database encoding is UTF-8).
            "character_length" | "char_length" | "length" if args.len() == 1 && is_text(&self.ty(&args[0])?) => {
                Some(format!("lengthUTF8({})", self.value(&args[0])?))
            }
            // Positions from 1 and non-negative lengths only: Postgres counts a start below 1 as
            // characters before the string, ClickHouse does not.
            "substr" | "substring" if is_text(&self.ty(args.first()?)?) => {
                let positive = |e: &Expr, min: i64| match e {
                    Expr::Literal(ScalarValue::Int64(Some(n)), _) => *n >= min,
                    Expr::Literal(ScalarValue::Int32(Some(n)), _) => i64::from(*n) >= min,
                    _ => false,
                };
                match args {
                    [x, from] if positive(from, 1) => {
                        Some(format!("substringUTF8({}, {})", self.value(x)?, self.value(from)?))
                    }
                    [x, from, len] if positive(from, 1) && positive(len, 0) => {
                        Some(format!("substringUTF8({}, {}, {})", self.value(x)?, self.value(from)?, self.value(len)?))
                    }
                    _ => None,
                }
            }
            // Truncation and fields of a timestamptz, in the session time zone, which the
            // column's type carries: pushed when it is UTC (ClickHouse's time zone data may not be
            // Postgres's for other zones).
            "date_trunc" | "date_part" => {
                let [Expr::Literal(ScalarValue::Utf8(Some(unit)), _), x] = args else { return None };
                let Some(DataType::Timestamp(_, Some(tz))) = self.ty(x) else { return None };
                if !matches!(tz.as_ref(), "UTC" | "+00:00" | "Etc/UTC") {
                    return None;
                }
                let x = self.value(x)?;
                let unit = unit.to_ascii_lowercase();
                let f = if name == "date_trunc" {
                    match unit.as_str() {
                        "minute" => format!("toStartOfMinute({x}, 'UTC')"),
                        "hour" => format!("toStartOfHour({x}, 'UTC')"),
                        "day" => format!("toStartOfDay({x}, 'UTC')"),
                        // ISO weeks start on Monday, as date_trunc('week') does.
                        "week" => format!("toDateTime(toMonday({x}, 'UTC'), 'UTC')"),
                        "month" => format!("toDateTime(toStartOfMonth({x}, 'UTC'), 'UTC')"),
                        "quarter" => format!("toDateTime(toStartOfQuarter({x}, 'UTC'), 'UTC')"),
                        "year" => format!("toDateTime(toStartOfYear({x}, 'UTC'), 'UTC')"),
                        _ => return None,
                    }
                } else {
                    match unit.as_str() {
                        "year" => format!("toYear({x}, 'UTC')"),
                        "quarter" => format!("toQuarter({x}, 'UTC')"),
                        "month" => format!("toMonth({x}, 'UTC')"),
                        "day" => format!("toDayOfMonth({x}, 'UTC')"),
                        "hour" => format!("toHour({x}, 'UTC')"),
                        "minute" => format!("toMinute({x}, 'UTC')"),
                        _ => return None,
                    }
                };
                Some(f)
            }
            _ => None,
        }
    }

    /// A predicate at the top of WHERE or HAVING (NULL and false both drop the row).
    fn predicate(&self, e: &Expr) -> Option<String> {
        match e {
            Expr::BinaryExpr(b) if b.op == Operator::And => {
                Some(format!("({} AND {})", self.predicate(&b.left)?, self.predicate(&b.right)?))
            }
            // Only whether it is true matters here, so each side's NULL may read as false.
            Expr::BinaryExpr(b) if b.op == Operator::Or => {
                Some(format!("(ifNull({}, 0) OR ifNull({}, 0))", self.predicate(&b.left)?, self.predicate(&b.right)?))
            }
            Expr::BinaryExpr(b) => self.comparison(&b.left, b.op, &b.right),
            Expr::IsNull(x) => Some(format!("({} IS NULL)", self.value(x)?)),
            Expr::IsNotNull(x) => Some(format!("({} IS NOT NULL)", self.value(x)?)),
            Expr::InList(l) if !l.negated => {
                let t = self.ty(&l.expr)?;
                if !(ordered(&t) || is_text(&t) || is_float(&t)) {
                    return None;
                }
                let list = l.list.iter().map(|v| match v {
                    Expr::Literal(..) | Expr::Cast(_) => self.value(v),
                    _ => None,
                });
                let list = list.collect::<Option<Vec<_>>>()?;
                Some(format!("({} IN ({}))", self.value(&l.expr)?, list.join(", ")))
            }
            Expr::Between(b) if !b.negated => {
                // NaN is outside every range in both.
                let t = self.ty(&b.expr)?;
                if !(ordered(&t) || is_float(&t)) {
                    return None;
                }
                let x = self.value(&b.expr)?;
                Some(format!("({x} >= {} AND {x} <= {})", self.value(&b.low)?, self.value(&b.high)?))
            }
            _ => None,
        }
    }

    fn comparison(&self, left: &Expr, op: Operator, right: &Expr) -> Option<String> {
        let sym = match op {
            Operator::Eq => "=",
            Operator::NotEq => "!=",
            Operator::Lt => "<",
            Operator::LtEq => "<=",
            Operator::Gt => ">",
            Operator::GtEq => ">=",
            _ => return None,
        };
        let (lt, rt) = (self.ty(left)?, self.ty(right)?);
        let equality = matches!(op, Operator::Eq | Operator::NotEq);
        if is_float(&lt) || is_float(&rt) {
            // Column against a finite literal only; put the literal on the right.
            let (col, lit, op) = match (left, right) {
                (_, Expr::Literal(..)) => (left, right, op),
                (Expr::Literal(..), _) => (right, left, op.swap()?),
                _ => return None,
            };
            let (c, v) = (self.value(col)?, self.value(lit)?);
            return Some(match op {
                Operator::Gt | Operator::GtEq => {
                    format!("({c} {} {v} OR isNaN({c}))", if op == Operator::Gt { ">" } else { ">=" })
                }
                _ => format!("({c} {sym} {v})"),
            });
        }
        let comparable = if equality {
            (ordered(&lt) || is_text(&lt)) && (ordered(&rt) || is_text(&rt)) && is_text(&lt) == is_text(&rt)
        } else {
            ordered(&lt) && ordered(&rt)
        };
        comparable.then(|| Some(format!("({} {sym} {})", self.value(left)?, self.value(right)?))).flatten()
    }

    fn aggregate(&self, e: &Expr) -> Option<String> {
        let Expr::AggregateFunction(a) = e else {
            return match e {
                Expr::Alias(a) => self.aggregate(&a.expr),
                _ => None,
            };
        };
        let p = &a.params;
        if p.filter.is_some() || !p.order_by.is_empty() || p.null_treatment.is_some() {
            return None;
        }
        let name = a.func.name();
        if name == "count" {
            return match p.args.as_slice() {
                [] => Some("count()".into()),
                [Expr::Literal(v, _)] if !v.is_null() && !p.distinct => Some("count()".into()),
                [x] => {
                    let x = self.value(x)?;
                    // ClickHouse's count(DISTINCT) of only NULLs is NULL, Postgres's 0.
                    Some(if p.distinct { format!("ifNull(count(DISTINCT {x}), 0)") } else { format!("count({x})") })
                }
                _ => None,
            };
        }
        let [x] = p.args.as_slice() else { return None };
        if p.distinct {
            return None;
        }
        // sum(int4) is coerced to sum(CAST(x AS bigint)); ClickHouse's sum of Int32 is Int64.
        let x = match x {
            Expr::Cast(c) if name == "sum" && c.field.data_type() == &DataType::Int64 => c.expr.as_ref(),
            other => other,
        };
        let t = self.ty(x)?;
        let ok = match name {
            "sum" => matches!(t, DataType::Int16 | DataType::Int32 | DataType::Decimal128(_, _)) || is_float(&t),
            "avg" => is_float(&t),
            "min" | "max" => ordered(&t),
            _ => false,
        };
        ok.then(|| Some(format!("{name}({})", self.value(x)?))).flatten()
    }
}

fn int_width(t: &DataType) -> u8 {
    match t {
        DataType::Int16 => 2,
        DataType::Int32 => 4,
        _ => 8,
    }
}

/// One SELECT being built from the bottom of the plan up.
#[derive(Default)]
struct Select {
    from: String,
    filters: Vec<String>,
    group_by: Option<Vec<String>>,
    having: Vec<String>,
    /// The SQL of each output column of the node built so far.
    items: Vec<String>,
    order_by: Vec<String>,
    /// OFFSET and LIMIT. ClickHouse has no OFFSET without LIMIT, and 18.16 returns no rows
    /// (without an error) when their sum overflows, so both are bounded.
    limit: Option<(usize, usize)>,
    projected: bool,
}

impl Select {
    fn sql(&self) -> String {
        self.sql_as(ALIAS)
    }

    /// The SELECT with its columns named `{prefix}0`, `{prefix}1`, ...
    fn sql_as(&self, prefix: &str) -> String {
        // Aliases are visible across a ClickHouse query: they must not shadow a column (the
        // source's columns are checked against this prefix).
        let items: Vec<String> =
            self.items.iter().enumerate().map(|(i, s)| format!("{s} AS {}", ident(&format!("{prefix}{i}")))).collect();
        let mut sql = format!("SELECT {} FROM {}", items.join(", "), self.from);
        if !self.filters.is_empty() {
            sql.push_str(&format!(" WHERE {}", self.filters.join(" AND ")));
        }
        if let Some(g) = self.group_by.as_ref().filter(|g| !g.is_empty()) {
            sql.push_str(&format!(" GROUP BY {}", g.join(", ")));
        }
        if !self.having.is_empty() {
            sql.push_str(&format!(" HAVING {}", self.having.join(" AND ")));
        }
        if !self.order_by.is_empty() {
            sql.push_str(&format!(" ORDER BY {}", self.order_by.join(", ")));
        }
        if let Some((skip, fetch)) = self.limit {
            match (skip, fetch) {
                (0, n) => sql.push_str(&format!(" LIMIT {n}")),
                (m, n) => sql.push_str(&format!(" LIMIT {n} OFFSET {m}")),
            }
        }
        sql
    }
}

/// `plan` as one ClickHouse query whose columns are, by position, those of `plan`'s schema; `None`
/// when any of it is not on the allow-list.
pub(crate) fn to_sql(plan: &LogicalPlan) -> Option<String> {
    let select = build(plan)?;
    (select.items.len() == plan.schema().fields().len()).then(|| select.sql())
}

fn build(plan: &LogicalPlan) -> Option<Select> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            // Each table's own relation and column names (the source passed in is the first's).
            let (local, source) = scan_source(scan)?;
            let remote = &source.columns;
            if remote.iter().any(|c| c.starts_with("__pgfed_")) {
                return None;
            }
            let from = match &source.relation {
                (Some(db), t) => format!("{}.{}", ident(db), ident(t)),
                (None, t) => ident(t),
            };
            let all: Vec<String> = remote.iter().map(|c| ident(c)).collect();
            let full = DFSchema::try_from_qualified_schema(scan.table_name.clone(), &local).ok()?;
            let scope = Scope { schema: &full, items: &all };
            let filters = scan.filters.iter().map(|f| scope.predicate(f)).collect::<Option<Vec<_>>>()?;
            let items = match &scan.projection {
                Some(p) => p.iter().map(|i| all.get(*i).cloned()).collect::<Option<Vec<_>>>()?,
                None => all.clone(),
            };
            let limit = match scan.fetch {
                Some(n) => Some((0, bounded(n)?)),
                None => None,
            };
            Some(Select { from, filters, items, limit, ..Select::default() })
        }
        LogicalPlan::SubqueryAlias(a) => build(&a.input),
        LogicalPlan::Join(j) => {
            // Inner equi-joins only: ClickHouse fills the missing side of an outer join with
            // default values unless join_use_nulls, and its default strictness differs by
            // version (`ALL` is written). NULL keys do not match, as in Postgres.
            if j.join_type != datafusion::common::JoinType::Inner
                || j.on.is_empty()
                || j.filter.is_some()
                || j.null_equality != datafusion::common::NullEquality::NullEqualsNothing
            {
                return None;
            }
            let (left, right) = (build(&j.left)?, build(&j.right)?);
            let side = |e: &Expr, plan: &LogicalPlan, alias: &str| -> Option<(String, DataType)> {
                let col = match e {
                    Expr::Column(c) => c,
                    Expr::Cast(c) if is_int(c.field.data_type()) => match c.expr.as_ref() {
                        Expr::Column(c) => c,
                        _ => return None,
                    },
                    _ => return None,
                };
                let i = plan.schema().index_of_column(col).ok()?;
                let t = plan.schema().field(i).data_type().clone();
                Some((format!("{}.{}", ident(alias), ident(&format!("{alias}{i}"))), t))
            };
            let mut on = Vec::with_capacity(j.on.len());
            for (l, r) in &j.on {
                let ((l, lt), (r, rt)) = (side(l, &j.left, "__pgfed_l")?, side(r, &j.right, "__pgfed_r")?);
                let comparable = (ordered(&lt) && ordered(&rt)) || (is_text(&lt) && is_text(&rt));
                if !comparable {
                    return None;
                }
                on.push(format!("{l} = {r}"));
            }
            let from = format!(
                "({}) AS {} ALL INNER JOIN ({}) AS {} ON {}",
                left.sql_as("__pgfed_l"),
                ident("__pgfed_l"),
                right.sql_as("__pgfed_r"),
                ident("__pgfed_r"),
                on.join(" AND ")
            );
            let items = (0..left.items.len())
                .map(|i| format!("{}.{}", ident("__pgfed_l"), ident(&format!("__pgfed_l{i}"))))
                .chain(
                    (0..right.items.len())
                        .map(|i| format!("{}.{}", ident("__pgfed_r"), ident(&format!("__pgfed_r{i}")))),
                )
                .collect();
            Some(Select { from, items, ..Select::default() })
        }
        LogicalPlan::Filter(f) => {
            let mut s = build(&f.input)?;
            if s.limit.is_some() || !s.order_by.is_empty() || s.projected && s.group_by.is_none() {
                return None;
            }
            let p = Scope { schema: f.input.schema(), items: &s.items }.predicate(&f.predicate)?;
            if s.group_by.is_some() {
                s.having.push(p)
            } else {
                s.filters.push(p)
            }
            Some(s)
        }
        LogicalPlan::Projection(p) => {
            let mut s = build(&p.input)?;
            let scope = Scope { schema: p.input.schema(), items: &s.items };
            let items = p.expr.iter().map(|e| scope.value(e)).collect::<Option<Vec<_>>>()?;
            s.items = items;
            s.projected = true;
            Some(s)
        }
        LogicalPlan::Aggregate(a) => {
            let mut s = build(&a.input)?;
            if s.group_by.is_some() || s.limit.is_some() || !s.order_by.is_empty() {
                return None;
            }
            let scope = Scope { schema: a.input.schema(), items: &s.items };
            let keys = a
                .group_expr
                .iter()
                .map(|e| {
                    let t = scope.ty(e)?;
                    (ordered(&t) || is_text(&t)).then(|| scope.value(e)).flatten()
                })
                .collect::<Option<Vec<_>>>()?;
            let aggs = a.aggr_expr.iter().map(|e| scope.aggregate(e)).collect::<Option<Vec<_>>>()?;
            let counts_only = a
                .aggr_expr
                .iter()
                .all(|e| matches!(e.clone().unalias(), Expr::AggregateFunction(f) if f.func.name() == "count"));
            if keys.is_empty() && !counts_only {
                return None;
            }
            s.items = keys.iter().cloned().chain(aggs).collect();
            s.group_by = Some(keys);
            s.projected = false;
            Some(s)
        }
        LogicalPlan::Sort(sort) => {
            let mut s = build(&sort.input)?;
            if s.limit.is_some() || !s.order_by.is_empty() {
                return None;
            }
            let scope = Scope { schema: sort.input.schema(), items: &s.items };
            s.order_by = sort.expr.iter().map(|k| sort_key(&scope, k)).collect::<Option<Vec<_>>>()?;
            if let Some(n) = sort.fetch {
                s.limit = Some((0, bounded(n)?));
            }
            Some(s)
        }
        LogicalPlan::Limit(l) => {
            let mut s = build(&l.input)?;
            let skip = match l.skip.as_deref() {
                None => 0,
                Some(Expr::Literal(ScalarValue::Int64(Some(n)), _)) if *n >= 0 => usize::try_from(*n).ok()?,
                _ => return None,
            };
            let fetch = match l.fetch.as_deref() {
                None => None,
                Some(Expr::Literal(ScalarValue::Int64(Some(n)), _)) if *n >= 0 => Some(usize::try_from(*n).ok()?),
                _ => return None,
            };
            // A limit over a limit: the inner one (from a sort's fetch) bounds the outer one.
            let fetch = match (s.limit, fetch) {
                (None, f) => f,
                (Some((0, inner)), f) => {
                    Some(f.map_or(inner.saturating_sub(skip), |f| f.min(inner.saturating_sub(skip))))
                }
                (Some(_), _) => return None,
            };
            s.limit = Some((bounded(skip)?, bounded(fetch?)?));
            Some(s)
        }
        _ => None,
    }
}

/// LIMIT and OFFSET values far from overflowing ClickHouse's arithmetic on them.
fn bounded(n: usize) -> Option<usize> {
    (n <= 1 << 53).then_some(n)
}

fn sort_key(scope: &Scope, k: &SortExpr) -> Option<String> {
    let t = scope.ty(&k.expr)?;
    if !ordered(&t) {
        return None;
    }
    let dir = if k.asc { "ASC" } else { "DESC" };
    let nulls = if k.nulls_first { "NULLS FIRST" } else { "NULLS LAST" };
    Some(format!("{} {dir} {nulls}", scope.value(&k.expr)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_backslashes_and_quotes() {
        assert_eq!(string(r"it's a \ path"), r"'it\'s a \\ path'");
        assert_eq!(string("a\nb\0"), r"'a\nb\0'");
        assert_eq!(ident("we`ird\\"), r"`we\`ird\\`");
    }

    #[test]
    fn literals_are_written_only_when_exact() {
        assert_eq!(literal(&ScalarValue::Int32(Some(-5))).as_deref(), Some("(-5)"));
        assert_eq!(literal(&ScalarValue::Float64(Some(100.0))).as_deref(), Some("100.0"));
        assert_eq!(literal(&ScalarValue::Float64(Some(f64::NAN))), None);
        assert_eq!(literal(&ScalarValue::Int64(Some(i64::MIN))), None);
        assert_eq!(literal(&ScalarValue::Date32(Some(19_723))).as_deref(), Some("toDate('2024-01-01')"));
        assert_eq!(literal(&ScalarValue::Date32(Some(-1))), None);
        assert_eq!(literal(&ScalarValue::Boolean(Some(true))), None);
    }
}
