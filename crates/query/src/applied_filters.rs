//! Dropping filter conjuncts that the engine scan below already applied exactly.
//!
//! A `WHERE time >= a AND time < b` reaches the plan twice: the engine scan turns it
//! into the time range it reads, and the `FilterExec` above the scan checks every row
//! against it again (the scan declares its filters `Inexact` to DataFusion, since it
//! does not apply every filter to every row). The engine's scan never returns a row
//! outside its range, in any path (one SST's stream, merges, memtables, the latest
//! rows), so a conjunct that is TRUE for every time in that range is TRUE for every
//! row the scan returns, and checking it again only costs CPU: about an eighth of an
//! aggregate over all hosts (`docs/benchmarks.md`, issue 16, session 28).
//!
//! [`drop_applied`] runs on the final physical plan of every query (fresh or from a
//! template), before it executes. It only removes conjuncts of the form
//! `time <op> <timestamp literal>` (`<`, `<=`, `>`, `>=`, `=`, either side) that hold at
//! both ends of the scan's inclusive range; everything else stays. A filter left with
//! nothing is replaced by its input, or by a projection when it also projected (when it
//! also limits, it keeps a `true` predicate). `EXPLAIN ANALYZE` shows the plan as
//! executed; plain `EXPLAIN` shows it before this step.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal, lit};
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
        let Some(scan) = scan_below(filter.input()) else {
            return Ok(Transformed::no(node));
        };
        let (lo, hi) = scan.time_bounds();
        let schema = filter.input().schema();
        let conjuncts = split_conjunction(filter.predicate());
        let kept: Vec<Arc<dyn PhysicalExpr>> = conjuncts
            .iter()
            .filter(|c| !holds_in_range(c, &schema, lo, hi))
            .map(|c| Arc::clone(*c))
            .collect();
        if kept.len() == conjuncts.len() {
            return Ok(Transformed::no(node));
        }
        if kept.is_empty() && node.fetch().is_none() {
            let input = Arc::clone(filter.input());
            let Some(columns) = filter.projection() else {
                return Ok(Transformed::yes(input));
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
            let projection =
                ProjectionExec::try_new_with_schema_metadata(exprs, input, &node.schema())?;
            return Ok(Transformed::yes(
                Arc::new(projection) as Arc<dyn ExecutionPlan>
            ));
        }
        let predicate = if kept.is_empty() {
            lit(true)
        } else {
            conjunction(kept)
        };
        let rebuilt = FilterExecBuilder::from(filter)
            .with_predicate(predicate)
            .build()?;
        Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>))
    })
    .data()
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
