//! Dropping filter conjuncts that the engine scan below already applied exactly.
//!
//! A `WHERE host = 'a' AND time >= x AND time < y` reaches the plan twice: the engine
//! scan turns it into the time range and the tag predicate it reads by, and the
//! `FilterExec` above the scan checks every row against it again (the scan declares
//! its filters `Inexact` to DataFusion, since it cannot apply every filter). But the
//! engine's scan never returns a row outside its range, and from every source (SSTs
//! through their series index or a row filter, memtables by series) only rows for which
//! its tag predicate may be TRUE, so each fully known `AND` member of that predicate is
//! TRUE for every row returned. Checking those again only costs CPU, and for a
//! one-host query building the `FilterExec` costs more than running it
//! (`docs/benchmarks.md`, issue 16, session 28).
//!
//! [`drop_applied`] runs on the final physical plan of every query, and physical plan
//! templates call [`without_applied`] as they rebuild a plan. Only two kinds of
//! conjunct are removed, everything else stays:
//! - `time <op> <timestamp literal>` (`<`, `<=`, `>`, `>=`, `=`, either side) that
//!   holds at both ends of the scan's inclusive range;
//! - `tag = 'v'` or `tag IN ('v', ...)` when one of the scan's exact tag conjuncts
//!   allows only values it lists;
//! - `field <op> constant`, when it is one of the comparisons of the scan's field
//!   filter (same field, operator and constant; see [`crate::field_filter`]).
//!
//! A filter left with nothing is replaced by its input, or by a projection when it also
//! projected (when it also limits, it keeps a `true` predicate). `EXPLAIN ANALYZE`
//! shows the plan as executed; plain `EXPLAIN` shows it before this step.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::DataType;
use bulkhead_engine::{FieldComparison, TagPredicate};

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CastExpr, Column, InListExpr, Literal, lit,
};
use datafusion::physical_expr::{PhysicalExpr, conjunction, split_conjunction};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::scalar::ScalarValue;

use crate::table::EngineScanExec;

/// `plan` without the filter conjuncts that its engine scans already applied.
pub(crate) fn drop_applied(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(filter) = node.downcast_ref::<FilterExec>() else {
            return Ok(Transformed::no(node));
        };
        Ok(
            match without_applied(filter, filter.input(), filter.predicate())? {
                Some(replaced) => Transformed::yes(replaced),
                None => Transformed::no(node),
            },
        )
    })
    .data()
}

/// `filter`, over `input` and with `predicate`, without the conjuncts that the engine
/// scan feeding `input` applied; `None` when it applied none of them (or there is no
/// such scan). Physical plan templates call it while they rebuild a plan, so the
/// operators above are rebuilt once.
pub(crate) fn without_applied(
    filter: &FilterExec,
    input: &Arc<dyn ExecutionPlan>,
    predicate: &Arc<dyn PhysicalExpr>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(scan) = scan_below(input) else {
        return Ok(None);
    };
    let (lo, hi) = scan.time_bounds();
    let tags = scan.exact_tag_conjuncts();
    let fields = scan.field_conjuncts();
    let schema = input.schema();
    let conjuncts = split_conjunction(predicate);
    let kept: Vec<Arc<dyn PhysicalExpr>> = conjuncts
        .iter()
        .filter(|c| {
            !holds_in_range(c, &schema, lo, hi)
                && !implied_by_tags(c, &schema, &tags)
                && !applied_field(c, &schema, fields)
        })
        .map(|c| Arc::clone(*c))
        .collect();
    if kept.len() == conjuncts.len() {
        return Ok(None);
    }
    if kept.is_empty() && filter.fetch().is_none() {
        let Some(columns) = filter.projection() else {
            return Ok(Some(Arc::clone(input)));
        };
        // The filter's projection alone: picks columns, copies no rows.
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = columns
            .iter()
            .map(|&i| {
                let name = schema.field(i).name().clone();
                (
                    Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect();
        let projection = ProjectionExec::try_new_with_schema_metadata(
            exprs,
            Arc::clone(input),
            &filter.schema(),
        )?;
        return Ok(Some(Arc::new(projection)));
    }
    let predicate = if kept.is_empty() {
        lit(true)
    } else {
        conjunction(kept)
    };
    let rebuilt = FilterExecBuilder::from(filter)
        .with_predicate(predicate)
        .with_input(Arc::clone(input))
        .build()?;
    Ok(Some(Arc::new(rebuilt)))
}

/// The engine scan whose rows reach `plan` unchanged (through cooperative wrappers and
/// repartitions, which only move rows between partitions).
fn scan_below(plan: &Arc<dyn ExecutionPlan>) -> Option<&EngineScanExec> {
    if let Some(scan) = plan.downcast_ref::<EngineScanExec>() {
        return Some(scan);
    }
    if plan.is::<CooperativeExec>() || plan.is::<RepartitionExec>() {
        return scan_below(plan.children().into_iter().next()?);
    }
    None
}

/// Whether `e` is `time <op> literal` (or `literal <op> time`) and TRUE for every time
/// in `lo..=hi`: the comparisons are monotone, so checking both ends suffices.
fn holds_in_range(
    e: &Arc<dyn PhysicalExpr>,
    schema: &arrow::datatypes::Schema,
    lo: i64,
    hi: i64,
) -> bool {
    let Some(b) = e.downcast_ref::<BinaryExpr>() else {
        return false;
    };
    let (value, op) = match (time_column(b.left(), schema), timestamp(b.right())) {
        (true, Some(v)) => (v, *b.op()),
        _ => match (
            timestamp(b.left()),
            time_column(b.right(), schema),
            b.op().swap(),
        ) {
            (Some(v), true, Some(op)) => (v, op),
            _ => return false,
        },
    };
    if lo > hi {
        return false;
    }
    let holds = |t: i64| match op {
        Operator::Lt => t < value,
        Operator::LtEq => t <= value,
        Operator::Gt => t > value,
        Operator::GtEq => t >= value,
        Operator::Eq => t == value,
        _ => false,
    };
    holds(lo) && holds(hi)
}

/// Whether `e` is the scan's `time` column (by name and position).
fn time_column(e: &Arc<dyn PhysicalExpr>, schema: &arrow::datatypes::Schema) -> bool {
    e.downcast_ref::<Column>().is_some_and(|c| {
        c.name() == bulkhead_engine::TIME_COLUMN
            && schema
                .fields()
                .get(c.index())
                .is_some_and(|f| f.name() == bulkhead_engine::TIME_COLUMN)
    })
}

/// The value of a non-null nanosecond timestamp literal (the `time` column's type).
fn timestamp(e: &Arc<dyn PhysicalExpr>) -> Option<i64> {
    match e.downcast_ref::<Literal>()?.value() {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        _ => None,
    }
}

/// Whether `e` is `tag = 'v'` or `tag IN ('v', ...)` and one of the scan's exact tag
/// conjuncts (`tag = 'w'`, `tag IN (...)`) allows only values it lists: then it is
/// TRUE for every row the scan returns.
fn implied_by_tags(
    e: &Arc<dyn PhysicalExpr>,
    schema: &arrow::datatypes::Schema,
    exact: &[&TagPredicate],
) -> bool {
    let Some((tag, values)) = tag_values(e, schema) else {
        return false;
    };
    exact.iter().any(|p| match p {
        TagPredicate::Eq(t, v) => *t == tag && values.contains(v),
        TagPredicate::In(t, vs) => *t == tag && vs.is_subset(&values),
        _ => false,
    })
}

/// `column = 'v'` (either side) or `column IN ('v', ...)`: the column's name and the
/// values it is compared with.
fn tag_values(
    e: &Arc<dyn PhysicalExpr>,
    schema: &arrow::datatypes::Schema,
) -> Option<(String, BTreeSet<String>)> {
    if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        if *b.op() != Operator::Eq {
            return None;
        }
        let (col, value) = match (column_name(b.left(), schema), string(b.right())) {
            (Some(c), Some(v)) => (c, v),
            _ => (column_name(b.right(), schema)?, string(b.left())?),
        };
        return Some((col, BTreeSet::from([value])));
    }
    let list = e.downcast_ref::<InListExpr>()?;
    if list.negated() {
        return None;
    }
    let col = column_name(list.expr(), schema)?;
    let values = list
        .list()
        .iter()
        .map(string)
        .collect::<Option<BTreeSet<String>>>()?;
    Some((col, values))
}

/// The name of the input column `e` reads (through casts to a string type, which keep
/// a tag's values), checked against the schema.
fn column_name(e: &Arc<dyn PhysicalExpr>, schema: &arrow::datatypes::Schema) -> Option<String> {
    if let Some(cast) = e.downcast_ref::<CastExpr>() {
        return match cast.cast_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                column_name(cast.expr(), schema)
            }
            _ => None,
        };
    }
    let c = e.downcast_ref::<Column>()?;
    let field = schema.fields().get(c.index())?;
    (field.name() == c.name()).then(|| c.name().to_string())
}

/// The value of a non-null string literal (plain or dictionary-encoded).
fn string(e: &Arc<dyn PhysicalExpr>) -> Option<String> {
    crate::pruning::as_string(e.downcast_ref::<Literal>()?.value())
}

/// Whether `e` is `field <op> constant` (either side) and one of `applied`: the same
/// field, operator and constant, so the engine kept only rows for which it is TRUE.
fn applied_field(
    e: &Arc<dyn PhysicalExpr>,
    schema: &arrow::datatypes::Schema,
    applied: &[FieldComparison],
) -> bool {
    if applied.is_empty() {
        return false;
    }
    let Some(b) = e.downcast_ref::<BinaryExpr>() else {
        return false;
    };
    let column = |e: &Arc<dyn PhysicalExpr>| {
        let c = e.downcast_ref::<Column>()?;
        let field = schema.fields().get(c.index())?;
        (field.name() == c.name()).then_some(field)
    };
    let (field, value, op) = match (column(b.left()), literal_value(b.right())) {
        (Some(f), Some(v)) => (f, v, *b.op()),
        _ => match (column(b.right()), literal_value(b.left()), b.op().swap()) {
            (Some(f), Some(v), Some(op)) => (f, v, op),
            _ => return false,
        },
    };
    let (Some(op), Some(value)) = (
        crate::field_filter::field_op(op),
        crate::field_filter::field_value(value, field.data_type()),
    ) else {
        return false;
    };
    applied.iter().any(|a| {
        a.field == *field.name() && a.op == op && crate::field_filter::same_value(&a.value, &value)
    })
}

/// The value of `e` if it is a literal.
fn literal_value(e: &Arc<dyn PhysicalExpr>) -> Option<&ScalarValue> {
    e.downcast_ref::<Literal>().map(Literal::value)
}
