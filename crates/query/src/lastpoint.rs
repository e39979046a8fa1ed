//! The lastpoint fast path: aggregates that only look at each series' latest row read
//! only those rows.
//!
//! [`LastpointRule`] is a logical optimizer rule. It matches an `Aggregate` directly
//! over an engine table scan (through filters, aliases and projections of plain
//! columns only) whose
//! - grouping expressions are tag columns (any subset, or none),
//! - aggregates (none at all with a grouping: `SELECT DISTINCT tags`) are each
//!   `max(time)`, `last_value(x ORDER BY time [ASC])` or
//!   `first_value(x ORDER BY time DESC)` (no `DISTINCT`, `FILTER` or `IGNORE NULLS`;
//!   the ordering may start with grouping columns, which is how DataFusion plans
//!   `DISTINCT ON (tags) ... ORDER BY tags, time DESC`),
//! - filters are each either on tags only (a series matches or not as a whole) or a
//!   bound on `time` against a timestamp literal (`=`, `<`, `<=`, `>`, `>=`, `BETWEEN`),
//!   which the scan's time range captures exactly.
//!
//! Every such aggregate's value for a group is its value on the latest row of one of
//! the group's series (the one with the greatest time), so the scan may return only
//! each series' latest row in range ([`bulkhead_engine::ScanRequest::last_per_series`]).
//! The rule marks the scan; the engine finds those rows without reading history.
//!
//! When the aggregate groups by tags and nothing filters rows between it and the scan
//! (a `WHERE` stays above the scan as a filter, every pushed filter being inexact),
//! the scan also reduces the rows to each group's latest
//! ([`bulkhead_engine::ScanRequest::last_per_group`]), and a projection of those rows'
//! columns replaces the aggregate.

use std::sync::Arc;

use bulkhead_engine::TIME_COLUMN;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::Transformed;
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, LogicalPlan, Operator, Projection, TableScan,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::scalar::ScalarValue;

use crate::table::{EngineTable, Latest};

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct LastpointRule;

impl OptimizerRule for LastpointRule {
    fn name(&self) -> &str {
        "bulkhead_lastpoint"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(agg) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let Some(table) = engine_table(&agg.input) else {
            return Ok(Transformed::no(plan));
        };
        if table.last_per_series() {
            return Ok(Transformed::no(plan)); // already marked
        }
        let groups_are_tags = agg
            .group_expr
            .iter()
            .all(|g| matches!(g, Expr::Column(c) if table.is_tag(&c.name)));
        // No aggregate at all is `SELECT DISTINCT tags`: each group has a latest row.
        if !groups_are_tags
            || (agg.aggr_expr.is_empty() && agg.group_expr.is_empty())
            || !agg
                .aggr_expr
                .iter()
                .all(|e| latest_row_aggregate(e, &agg.group_expr))
            || !filters_ok(&agg.input, &table)
        {
            return Ok(Transformed::no(plan));
        }
        // Grouped, and no filter above the scan (every one is inexact, so a filter
        // would still drop rows after the scan): the scan can return exactly one row
        // per group, each group's latest, and a projection replaces the aggregate.
        let grouped = !agg.group_expr.is_empty() && unfiltered(&agg.input);
        let latest = if grouped {
            Latest::PerGroup(
                agg.group_expr
                    .iter()
                    .filter_map(|g| match g {
                        Expr::Column(c) => Some(c.name.clone()),
                        _ => None,
                    })
                    .collect(),
            )
        } else {
            Latest::PerSeries
        };
        let Some(input) = mark(&agg.input, &latest)? else {
            return Ok(Transformed::no(plan));
        };
        if !grouped {
            let exprs = plan.expressions();
            return Ok(Transformed::yes(plan.with_new_exprs(exprs, vec![input])?));
        }
        // Each output column is the group's latest row's: the grouping column itself,
        // or the aggregate's argument (`time` for `max(time)`), named as before.
        let exprs = agg
            .group_expr
            .iter()
            .chain(&agg.aggr_expr)
            .zip(agg.schema.iter())
            .map(|(e, (qualifier, field))| {
                let source = match e {
                    Expr::Column(_) => e.clone(),
                    e => argument(e).cloned().ok_or_else(|| {
                        DataFusionError::Internal(format!("lastpoint: no argument in {e}"))
                    })?,
                };
                Ok(source.alias_qualified(qualifier.cloned(), field.name()))
            })
            .collect::<Result<Vec<_>>>()?;
        let projection =
            Projection::try_new_with_schema(exprs, Arc::new(input), Arc::clone(&agg.schema))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}

/// The engine table under `plan`, if only filters and aliases stand between.
fn engine_table(plan: &LogicalPlan) -> Option<Arc<EngineTable>> {
    match plan {
        LogicalPlan::Filter(f) => engine_table(&f.input),
        LogicalPlan::SubqueryAlias(a) => engine_table(&a.input),
        LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
            engine_table(&p.input)
        }
        LogicalPlan::TableScan(scan) if scan.fetch.is_none() => {
            let provider: Arc<dyn TableProvider> = source_as_provider(&scan.source).ok()?;
            let table = provider.downcast_ref::<EngineTable>()?;
            Some(Arc::new(table.clone()))
        }
        _ => None,
    }
}

/// Whether every filter between the aggregate and the scan (and pushed into it) is on
/// tags only or an exact time bound.
fn filters_ok(plan: &LogicalPlan, table: &EngineTable) -> bool {
    let ok = |e: &Expr| {
        split_conjunction(e)
            .into_iter()
            .all(|c| time_bound(c) || tags_only(c, table))
    };
    match plan {
        LogicalPlan::Filter(f) => ok(&f.predicate) && filters_ok(&f.input, table),
        LogicalPlan::SubqueryAlias(a) => filters_ok(&a.input, table),
        LogicalPlan::Projection(p) => filters_ok(&p.input, table),
        LogicalPlan::TableScan(scan) => scan.filters.iter().all(ok),
        _ => false,
    }
}

/// Whether nothing between the aggregate and the scan filters rows.
fn unfiltered(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::SubqueryAlias(a) => unfiltered(&a.input),
        LogicalPlan::Projection(p) => unfiltered(&p.input),
        LogicalPlan::TableScan(scan) => scan.filters.is_empty(),
        _ => false,
    }
}

/// The column a latest-row aggregate ([`latest_row_aggregate`]) takes.
fn argument(e: &Expr) -> Option<&Expr> {
    match e {
        Expr::Alias(a) => argument(&a.expr),
        Expr::AggregateFunction(AggregateFunction { params, .. }) => params.args.first(),
        _ => None,
    }
}

/// `plan` with its engine scan marked to return only each series' (or group's)
/// latest row.
fn mark(plan: &LogicalPlan, latest: &Latest) -> Result<Option<LogicalPlan>> {
    Ok(match plan {
        LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) => {
            let Some(input) = mark(plan.inputs()[0], latest)? else {
                return Ok(None);
            };
            Some(
                plan.clone()
                    .with_new_exprs(plan.expressions(), vec![input])?,
            )
        }
        LogicalPlan::TableScan(scan) => {
            let Some(table) = engine_table(plan) else {
                return Ok(None);
            };
            let provider: Arc<dyn TableProvider> = Arc::new(table.with_latest(latest.clone()));
            let mut scan: TableScan = scan.clone();
            scan.source = provider_as_source(provider);
            Some(LogicalPlan::TableScan(scan))
        }
        _ => None,
    })
}

fn is_time(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == TIME_COLUMN)
}

/// An aggregate whose value is that of the group's latest row. Its ordering may start
/// with grouping columns (constant within a group; `DISTINCT ON (tags) ... ORDER BY
/// tags, time DESC` is planned that way) before `time`.
fn latest_row_aggregate(e: &Expr, groups: &[Expr]) -> bool {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
        return false;
    };
    if params.distinct || params.filter.is_some() || params.args.len() != 1 {
        return false;
    }
    if !matches!(params.args[0], Expr::Column(_)) {
        return false;
    }
    let respects_nulls = !matches!(params.null_treatment, Some(NullTreatment::IgnoreNulls));
    let by_time = |asc: bool| {
        let keys: Vec<&Expr> = params
            .order_by
            .iter()
            .map(|s| &s.expr)
            .skip_while(|k| groups.contains(k))
            .collect();
        let last = params.order_by.last();
        matches!(keys.as_slice(), [k] if is_time(k)) && last.is_some_and(|s| s.asc == asc)
    };
    match func.name() {
        "max" => is_time(&params.args[0]) && params.order_by.is_empty(),
        "last_value" => respects_nulls && by_time(true),
        "first_value" => respects_nulls && by_time(false),
        _ => false,
    }
}

/// `time <op> literal` (or `literal <op> time`, or `time BETWEEN a AND b`): the scan's
/// time range is then exactly the rows this keeps. A timestamp placeholder counts as a
/// literal: the plan cache ([`crate::plan_cache`]) binds only non-null timestamps there.
fn time_bound(e: &Expr) -> bool {
    let is_ts = |e: &Expr| match e {
        Expr::Literal(
            ScalarValue::TimestampNanosecond(Some(_), _)
            | ScalarValue::TimestampMicrosecond(Some(_), _)
            | ScalarValue::TimestampMillisecond(Some(_), _)
            | ScalarValue::TimestampSecond(Some(_), _),
            _,
        ) => true,
        Expr::Placeholder(p) => p
            .field
            .as_ref()
            .is_some_and(|f| matches!(f.data_type(), arrow::datatypes::DataType::Timestamp(..))),
        _ => false,
    };
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            matches!(
                op,
                Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
            ) && ((is_time(left) && is_ts(right)) || (is_ts(left) && is_time(right)))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => is_time(expr) && is_ts(low) && is_ts(high),
        _ => false,
    }
}

/// An expression over tag columns only, deterministic: it keeps or drops whole series.
fn tags_only(e: &Expr, table: &EngineTable) -> bool {
    let columns = e.column_refs();
    !columns.is_empty() && columns.iter().all(|c| table.is_tag(&c.name)) && !e.is_volatile()
}
