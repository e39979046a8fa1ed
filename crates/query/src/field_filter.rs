//! Translating pushed-down filters into a [`FieldFilter`] the engine applies itself:
//! top-level `AND` members of the form `field <op> constant` (`=`, `!=`, `<`, `<=`, `>`,
//! `>=`, either side), where the constant is non-null and has exactly the field's
//! type. The engine evaluates them with the same Arrow kernels as DataFusion's filter,
//! inside the Parquet decoder where it can (late materialization), so the filter above
//! the scan can drop them ([`crate::applied_filters`]).

use bulkhead_engine::{FieldComparison, FieldFilter, FieldOp, FieldValue, TIME_COLUMN};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;

/// The field comparisons among the conjuncts of `filters`, or `None` if there are
/// none. `schema` is the table's; `is_tag` says which columns are tags.
pub(crate) fn field_filter(
    filters: &[Expr],
    schema: &Schema,
    is_tag: impl Fn(&str) -> bool,
) -> Option<FieldFilter> {
    let conjuncts: Vec<FieldComparison> = filters
        .iter()
        .flat_map(|f| split_conjunction(f))
        .filter_map(|e| comparison(e, schema, &is_tag))
        .collect();
    (!conjuncts.is_empty()).then_some(FieldFilter { conjuncts })
}

fn comparison(
    e: &Expr,
    schema: &Schema,
    is_tag: &impl Fn(&str) -> bool,
) -> Option<FieldComparison> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    let (column, value, op) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c, v, *op),
        (Expr::Literal(v, _), Expr::Column(c)) => (c, v, op.swap()?),
        _ => return None,
    };
    let name = column.name.as_str();
    if name == TIME_COLUMN || is_tag(name) {
        return None;
    }
    let field = schema.field_with_name(name).ok()?;
    Some(FieldComparison {
        field: name.to_string(),
        op: field_op(op)?,
        value: field_value(value, field.data_type())?,
    })
}

/// The engine's form of a comparison operator.
pub(crate) fn field_op(op: Operator) -> Option<FieldOp> {
    Some(match op {
        Operator::Eq => FieldOp::Eq,
        Operator::NotEq => FieldOp::NotEq,
        Operator::Lt => FieldOp::Lt,
        Operator::LtEq => FieldOp::LtEq,
        Operator::Gt => FieldOp::Gt,
        Operator::GtEq => FieldOp::GtEq,
        _ => return None,
    })
}

/// `v` as a field value, if it is non-null and of type `ty` exactly (so the engine's
/// comparison is the one DataFusion would run, without a cast on either side).
pub(crate) fn field_value(v: &ScalarValue, ty: &DataType) -> Option<FieldValue> {
    Some(match (v, ty) {
        (ScalarValue::Float64(Some(x)), DataType::Float64) => FieldValue::F64(*x),
        (ScalarValue::Int64(Some(x)), DataType::Int64) => FieldValue::I64(*x),
        (ScalarValue::UInt64(Some(x)), DataType::UInt64) => FieldValue::U64(*x),
        (ScalarValue::Boolean(Some(x)), DataType::Boolean) => FieldValue::Bool(*x),
        (ScalarValue::Utf8(Some(x)), DataType::Utf8) => FieldValue::Str(x.clone()),
        _ => return None,
    })
}

/// Whether two field values are the same constant (floats by their bits, so `-0.0`
/// and `0.0`, which order differently, are different).
pub(crate) fn same_value(a: &FieldValue, b: &FieldValue) -> bool {
    match (a, b) {
        (FieldValue::F64(x), FieldValue::F64(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}
