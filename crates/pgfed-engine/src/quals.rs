//! DataFusion filter expressions to the SDK's [`Qual`]s: `column op constant` in every form the
//! SDK documents (reversed comparisons, IN / NOT IN lists, IS [NOT] NULL, [I]LIKE, BETWEEN, bare
//! boolean columns). Anything else is not a qual and stays with DataFusion.

use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano};
use datafusion::logical_expr::expr::{Between, InList, Like};
use datafusion::logical_expr::{Expr, Operator as DfOp};
use datafusion::scalar::ScalarValue;
use pgfed_connector_sdk::{Operator, Qual, QualValue, Value};

/// The quals equivalent to `expr` (ANDed), or `None` if `expr` is not expressible as quals.
pub(crate) fn to_quals(expr: &Expr, columns: &[String]) -> Option<Vec<Qual>> {
    let column = |e: &Expr| column_name(e, columns);
    match expr {
        // DataFusion rewrites a short IN list (three values or fewer) into ORs of equalities.
        Expr::BinaryExpr(b) if b.op == DfOp::Or => {
            let mut leaves = Vec::new();
            or_leaves(expr, &mut leaves);
            let mut col: Option<String> = None;
            let mut values = Vec::with_capacity(leaves.len());
            for leaf in leaves {
                let [Qual { column: c, operator: Operator::Eq, value: QualValue::One(v) }] =
                    <[Qual; 1]>::try_from(to_quals(leaf, columns)?).ok()?
                else {
                    return None;
                };
                if col.get_or_insert_with(|| c.clone()) != &c {
                    return None;
                }
                values.push(v);
            }
            Some(vec![Qual { column: col?, operator: Operator::Eq, value: QualValue::Any(values) }])
        }
        Expr::BinaryExpr(b) => {
            let op = comparison(b.op)?;
            if let (Some(col), Some(v)) = (column(&b.left), literal(&b.right)) {
                return Some(vec![Qual { column: col, operator: op, value: QualValue::One(v) }]);
            }
            if let (Some(v), Some(col)) = (literal(&b.left), column(&b.right)) {
                return Some(vec![Qual { column: col, operator: flip(op), value: QualValue::One(v) }]);
            }
            None
        }
        Expr::IsNull(e) => Some(vec![Qual { column: column(e)?, operator: Operator::IsNull, value: QualValue::None }]),
        Expr::IsNotNull(e) => {
            Some(vec![Qual { column: column(e)?, operator: Operator::IsNotNull, value: QualValue::None }])
        }
        Expr::Like(Like { negated, expr, pattern, escape_char: None, case_insensitive }) => {
            let col = column(expr)?;
            let Some(Value::Text(p)) = literal(pattern) else { return None };
            let operator = match (negated, case_insensitive) {
                (false, false) => Operator::Like,
                (true, false) => Operator::NotLike,
                (false, true) => Operator::ILike,
                (true, true) => Operator::NotILike,
            };
            Some(vec![Qual { column: col, operator, value: QualValue::One(Value::Text(p)) }])
        }
        Expr::InList(InList { expr, list, negated }) => {
            let col = column(expr)?;
            let values = list.iter().map(literal).collect::<Option<Vec<_>>>()?;
            let (operator, value) = if *negated {
                (Operator::NotEq, QualValue::All(values))
            } else {
                (Operator::Eq, QualValue::Any(values))
            };
            Some(vec![Qual { column: col, operator, value }])
        }
        Expr::Between(Between { expr, negated: false, low, high }) => {
            let col = column(expr)?;
            Some(vec![
                Qual { column: col.clone(), operator: Operator::GtEq, value: QualValue::One(literal(low)?) },
                Qual { column: col, operator: Operator::LtEq, value: QualValue::One(literal(high)?) },
            ])
        }
        // `WHERE flag` and `WHERE NOT flag` on a boolean column.
        Expr::Column(_) => {
            Some(vec![Qual { column: column(expr)?, operator: Operator::Eq, value: QualValue::One(Value::Bool(true)) }])
        }
        Expr::Not(inner) if matches!(inner.as_ref(), Expr::Column(_)) => Some(vec![Qual {
            column: column(inner)?,
            operator: Operator::Eq,
            value: QualValue::One(Value::Bool(false)),
        }]),
        _ => None,
    }
}

fn or_leaves<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryExpr(b) if b.op == DfOp::Or => {
            or_leaves(&b.left, out);
            or_leaves(&b.right, out);
        }
        other => out.push(other),
    }
}

/// A column of the table, possibly under a cast DataFusion added that widens without changing any
/// value (int4 to int8, float4 to float8): comparing the widened column is what the source does
/// too when it binds the constant as the wider type.
fn column_name(e: &Expr, columns: &[String]) -> Option<String> {
    match e {
        Expr::Column(c) if columns.iter().any(|n| n == &c.name) => Some(c.name.clone()),
        Expr::Cast(cast) => {
            let Expr::Column(_) = cast.expr.as_ref() else { return None };
            match cast.field.data_type() {
                DataType::Int64 | DataType::Float64 => column_name(&cast.expr, columns),
                _ => None,
            }
        }
        _ => None,
    }
}

fn comparison(op: DfOp) -> Option<Operator> {
    Some(match op {
        DfOp::Eq => Operator::Eq,
        DfOp::NotEq => Operator::NotEq,
        DfOp::Lt => Operator::Lt,
        DfOp::LtEq => Operator::LtEq,
        DfOp::Gt => Operator::Gt,
        DfOp::GtEq => Operator::GtEq,
        DfOp::LikeMatch => Operator::Like,
        DfOp::NotLikeMatch => Operator::NotLike,
        DfOp::ILikeMatch => Operator::ILike,
        DfOp::NotILikeMatch => Operator::NotILike,
        _ => return None,
    })
}

/// `1 < id` is `id > 1`.
fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

fn literal(e: &Expr) -> Option<Value> {
    match e {
        Expr::Literal(v, _) => scalar_to_value(v),
        // A cast DataFusion folded away already would be a literal; a cast left over is of a
        // literal whose cast it could not fold, which we do not evaluate here.
        _ => None,
    }
}

/// A constant as the SDK carries it; `None` for types the SDK has no exact form for.
pub(crate) fn scalar_to_value(v: &ScalarValue) -> Option<Value> {
    if v.is_null() {
        return Some(Value::Null);
    }
    Some(match v {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int8(Some(i)) => Value::Int(i64::from(*i)),
        ScalarValue::Int16(Some(i)) => Value::Int(i64::from(*i)),
        ScalarValue::Int32(Some(i)) => Value::Int(i64::from(*i)),
        ScalarValue::Int64(Some(i)) => Value::Int(*i),
        ScalarValue::UInt8(Some(i)) => Value::Int(i64::from(*i)),
        ScalarValue::UInt16(Some(i)) => Value::Int(i64::from(*i)),
        ScalarValue::UInt32(Some(i)) => Value::Int(i64::from(*i)),
        ScalarValue::UInt64(Some(i)) => Value::Int(i64::try_from(*i).ok()?),
        ScalarValue::Float32(Some(f)) => Value::Float(f64::from(*f)),
        ScalarValue::Float64(Some(f)) => Value::Float(*f),
        ScalarValue::Decimal128(Some(x), _, s) => Value::Numeric(decimal_text(*x, *s)),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Value::Text(s.clone())
        }
        ScalarValue::Binary(Some(b)) | ScalarValue::LargeBinary(Some(b)) | ScalarValue::BinaryView(Some(b)) => {
            Value::Bytes(b.clone())
        }
        ScalarValue::FixedSizeBinary(16, Some(b)) => Value::Uuid(b.as_slice().try_into().ok()?),
        ScalarValue::Date32(Some(d)) => Value::Date(*d),
        ScalarValue::Time64Microsecond(Some(t)) => Value::Time(*t),
        ScalarValue::TimestampMicrosecond(Some(t), tz) => timestamp(*t, tz.is_some()),
        ScalarValue::TimestampMillisecond(Some(t), tz) => timestamp(t.checked_mul(1000)?, tz.is_some()),
        ScalarValue::TimestampSecond(Some(t), tz) => timestamp(t.checked_mul(1_000_000)?, tz.is_some()),
        ScalarValue::TimestampNanosecond(Some(t), tz) if t % 1000 == 0 => timestamp(t / 1000, tz.is_some()),
        ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano { months, days, nanoseconds }))
            if nanoseconds % 1000 == 0 =>
        {
            Value::Interval { months: *months, days: *days, micros: nanoseconds / 1000 }
        }
        _ => return None,
    })
}

fn timestamp(micros: i64, tz: bool) -> Value {
    if tz { Value::TimestampTz(micros) } else { Value::Timestamp(micros) }
}

/// Exact decimal text of an unscaled value and a scale: `decimal_text(-1250, 2)` is `-12.50`.
pub(crate) fn decimal_text(unscaled: i128, scale: i8) -> String {
    let neg = unscaled < 0;
    let digits = unscaled.unsigned_abs().to_string();
    let body = if scale <= 0 {
        let zeros = if unscaled == 0 { 0 } else { usize::from(scale.unsigned_abs()) };
        format!("{digits}{}", "0".repeat(zeros))
    } else {
        let s = usize::from(scale.unsigned_abs());
        let padded = if digits.len() <= s { format!("{}{digits}", "0".repeat(s + 1 - digits.len())) } else { digits };
        let (int, frac) = padded.split_at(padded.len() - s);
        format!("{int}.{frac}")
    };
    if neg { format!("-{body}") } else { body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    fn cols() -> Vec<String> {
        vec!["id".into(), "name".into(), "flag".into()]
    }

    fn one(e: Expr) -> String {
        let q = to_quals(&e, &cols()).expect("a qual");
        q.iter().map(ToString::to_string).collect::<Vec<_>>().join(" AND ")
    }

    #[test]
    fn ors_of_equalities_on_one_column_are_an_in_list() {
        use datafusion::logical_expr::{col, lit};
        let e = col("id").eq(lit(1i64)).or(lit(2i64).eq(col("id"))).or(col("id").eq(lit(3i64)));
        assert_eq!(one(e), "id = ANY (1, 2, 3)");
        assert!(to_quals(&col("id").eq(lit(1i64)).or(col("name").eq(lit("x"))), &cols()).is_none());
        assert!(to_quals(&col("id").eq(lit(1i64)).or(col("id").gt(lit(5i64))), &cols()).is_none());
    }

    #[test]
    fn comparisons_in_both_directions() {
        assert_eq!(one(col("id").eq(lit(1i64))), "id = 1");
        assert_eq!(one(lit(1i64).lt(col("id"))), "id > 1");
        assert_eq!(one(lit("x").not_eq(col("name"))), "name <> 'x'");
    }

    #[test]
    fn lists_nulls_like_between_and_booleans() {
        assert_eq!(one(col("id").in_list(vec![lit(1i64), lit(2i64)], false)), "id = ANY (1, 2)");
        assert_eq!(one(col("id").in_list(vec![lit(1i64), lit(2i64)], true)), "id <> ALL (1, 2)");
        assert_eq!(one(col("name").is_null()), "name IS NULL");
        assert_eq!(one(col("name").is_not_null()), "name IS NOT NULL");
        assert_eq!(one(col("name").like(lit("a%"))), "name LIKE 'a%'");
        assert_eq!(one(col("name").not_ilike(lit("a%"))), "name NOT ILIKE 'a%'");
        assert_eq!(one(col("id").between(lit(1i64), lit(5i64))), "id >= 1 AND id <= 5");
        assert_eq!(one(col("flag")), "flag = true");
        assert_eq!(one(!col("flag")), "flag = false");
    }

    #[test]
    fn expressions_on_columns_and_unknown_columns_are_not_quals() {
        assert!(to_quals(&(col("id") + lit(1i64)).eq(lit(2i64)), &cols()).is_none());
        assert!(to_quals(&col("other").eq(lit(2i64)), &cols()).is_none());
        assert!(to_quals(&col("id").eq(col("id")), &cols()).is_none());
        assert!(to_quals(&col("id").not_between(lit(1i64), lit(5i64)), &cols()).is_none());
    }

    #[test]
    fn decimals_render_exactly() {
        assert_eq!(decimal_text(-1250, 2), "-12.50");
        assert_eq!(decimal_text(5, 3), "0.005");
        assert_eq!(decimal_text(0, 2), "0.00");
        assert_eq!(decimal_text(12, -2), "1200");
        assert_eq!(decimal_text(i128::MAX, 0), i128::MAX.to_string());
    }
}
