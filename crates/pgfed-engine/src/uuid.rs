//! `uuid` as Postgres has it. A uuid value is 16 bytes (`FixedSizeBinary(16)`, the only type
//! pgfed maps to it); DataFusion knows no uuid type, so:
//!
//! - the SQL type `uuid` plans as `FixedSizeBinary(16)` ([`UuidType`]);
//! - before type coercion, a text literal compared with, listed against or cast to a uuid is
//!   parsed as Postgres's `uuid_in` would (braces, upper case, a hyphen after any group of four
//!   digits), 22P02 with Postgres's message when it is not one ([`uuid_literals`]);
//! - `u::text` is the canonical lowercase form (`uuid_text`); any other cast to or from uuid, which
//!   Arrow would do on the raw bytes, is refused (0A000).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, FixedSizeBinaryArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast;

use crate::EngineError;

const UUID: DataType = DataType::FixedSizeBinary(16);

/// Plans the SQL type `uuid`.
#[derive(Debug)]
pub(crate) struct UuidType;

impl TypePlanner for UuidType {
    fn plan_type_field(&self, sql_type: &ast::DataType) -> DfResult<Option<FieldRef>> {
        Ok(matches!(sql_type, ast::DataType::Uuid)
            .then(|| Arc::new(datafusion::arrow::datatypes::Field::new("", UUID, true))))
    }
}

/// `text` as Postgres's `uuid_in` reads it.
pub(crate) fn parse(text: &str) -> Option<[u8; 16]> {
    let inner = match text.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}')?,
        None => text,
    };
    let mut out = [0u8; 16];
    let mut digits = 0usize;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        let v = c.to_digit(16)? as u8;
        if digits >= 32 {
            return None;
        }
        out[digits / 2] |= if digits.is_multiple_of(2) { v << 4 } else { v };
        digits += 1;
        // A hyphen may follow any group of four digits, except the last.
        if digits.is_multiple_of(4) && digits < 32 && chars.peek() == Some(&'-') {
            chars.next();
        }
    }
    (digits == 32).then_some(out)
}

/// The canonical text form (`a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`).
pub(crate) fn format(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn invalid(text: &str) -> EngineError {
    EngineError::plan("22P02", format!("invalid input syntax for type uuid: \"{text}\""))
}

fn literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s),
        _ => None,
    }
}

/// A text literal as a uuid literal; `Ok(false)` when `e` is no text literal.
fn to_uuid(e: &mut Expr) -> Result<bool, EngineError> {
    let Some(text) = literal(e) else { return Ok(false) };
    let bytes = parse(text).ok_or_else(|| invalid(text))?;
    *e = Expr::Literal(ScalarValue::FixedSizeBinary(16, Some(bytes.to_vec())), None);
    Ok(true)
}

/// Rewrites text literals next to uuids, and casts from and to uuid, before type coercion.
pub(crate) fn uuid_literals(plan: LogicalPlan) -> Result<LogicalPlan, EngineError> {
    crate::semantics::rewrite_expressions(plan, |e, schema| rewrite(e, schema).map_err(EngineError::into_datafusion))
}

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>, EngineError> {
    let is_uuid = |e: &Expr| e.get_type(schema).is_ok_and(|t| t == UUID);
    Ok(match e {
        Expr::BinaryExpr(mut b) => {
            let changed = if is_uuid(&b.left) {
                to_uuid(&mut b.right)?
            } else if is_uuid(&b.right) {
                to_uuid(&mut b.left)?
            } else {
                false
            };
            Transformed::new_transformed(Expr::BinaryExpr(b), changed)
        }
        Expr::InList(mut l) if is_uuid(&l.expr) => {
            let mut changed = false;
            for v in &mut l.list {
                changed |= to_uuid(v)?;
            }
            Transformed::new_transformed(Expr::InList(l), changed)
        }
        Expr::Cast(c) if c.field.data_type() == &UUID => {
            if let Some(text) = literal(&c.expr) {
                let bytes = parse(text).ok_or_else(|| invalid(text))?;
                Transformed::yes(Expr::Literal(ScalarValue::FixedSizeBinary(16, Some(bytes.to_vec())), None))
            } else if is_uuid(&c.expr) {
                Transformed::yes(*c.expr)
            } else {
                return Err(EngineError::Unsupported("casting a computed value to uuid".into()));
            }
        }
        Expr::Cast(c) if is_uuid(&c.expr) => match c.field.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let udf = Arc::new(ScalarUDF::new_from_impl(UuidText::new()));
                let text = Expr::ScalarFunction(ScalarFunction::new_udf(udf, vec![*c.expr]));
                Transformed::yes(if c.field.data_type() == &DataType::Utf8 {
                    text
                } else {
                    Expr::Cast(Cast::new(Box::new(text), c.field.data_type().clone()))
                })
            }
            other => return Err(EngineError::Unsupported(format!("casting uuid to {other}"))),
        },
        other => Transformed::no(other),
    })
}

/// `uuid::text`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UuidText {
    signature: Signature,
}

impl UuidText {
    fn new() -> Self {
        Self { signature: Signature::exact(vec![UUID], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for UuidText {
    fn name(&self) -> &str {
        "uuid_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return Err(EngineError::Internal("uuid_text takes one argument".into()).into_datafusion());
        };
        let array: ArrayRef = arg.to_array(args.number_rows)?;
        let Some(bytes) = array.as_any().downcast_ref::<FixedSizeBinaryArray>() else {
            return Err(EngineError::Internal("uuid_text of a non-uuid".into()).into_datafusion());
        };
        let mut out = StringBuilder::with_capacity(bytes.len(), bytes.len() * 36);
        for i in 0..bytes.len() {
            if bytes.is_null(i) {
                out.append_null();
            } else {
                out.append_value(format(bytes.value(i)));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_postgres_accepts_and_nothing_else() {
        let want = parse("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").expect("canonical");
        for ok in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
        ] {
            assert_eq!(parse(ok), Some(want), "{ok}");
        }
        for bad in [
            "",
            "a0eebc99",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "{a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "g0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0eebc999c0b4ef8bb6d6bb9bd380a1111",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(format(&want), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    }
}
