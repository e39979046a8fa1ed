//! Physical plan templates: a cached statement's physical plan, re-targeted at another
//! query's literals without physical planning and optimization again.
//!
//! The plan cache ([`crate::plan_cache`]) skips SQL planning and the logical optimizer
//! for a statement of a known shape. For a one-host query that leaves physical
//! planning (building the operators, then ~20 physical optimizer rules) as the largest
//! fixed cost: about half of its CPU (`docs/benchmarks.md`, "Physical plan templates").
//! A dashboard's next query of the same shape differs only in the literals of its
//! `WHERE` clause, and those reach the physical plan in two places only: the engine
//! scan (which turns them into a time range and series) and the `FilterExec`
//! predicates. So the first physical plan of a shape is kept with the literals it was
//! built for, and the next one is made from it by scanning again with the new
//! literals, putting them into the predicates, and rebuilding every operator above
//! (recomputing its properties).
//!
//! This is only done where the substitution is provably the same as planning afresh:
//! - the statement reads one engine table, through a single [`EngineScanExec`];
//! - every operator is one of a known list, and none holds a dynamic filter (TopK,
//!   min/max without grouping), whose state would be shared;
//! - a filter predicate is built only of plain expressions (columns, literals,
//!   comparisons, boolean logic, casts, `IN`, `LIKE`); a function call never sees a
//!   literal;
//! - the literals are pairwise distinct, and none of them equals a constant of the
//!   statement itself or is found anywhere but in a filter predicate, so a literal in
//!   the plan is the query's own exactly when it equals one; and every literal in the
//!   plan is either the query's or one of the statement's constants (none derived).
//!
//! When a condition fails for the first query's literals (two equal ones), the next
//! query of the shape tries again; when it fails for the shape, it is never tried
//! again. Whatever the template cannot build (the new literals contradict each other,
//! so the scan reads nothing) is planned afresh. Debug builds plan every templated
//! query afresh too and compare the two plans; `crates/query/tests/plan_cache.rs`
//! compares answers on random data.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::error::Result;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr_rewriter::unnormalize_cols;
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan};
use datafusion::physical_expr::expressions::{
    BinaryExpr, CastExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr, Literal,
    NegativeExpr, NotExpr, TryCastExpr, in_list,
};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::ChildrenPropertiesMode;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, ReplaceChildrenOptions};
use datafusion::scalar::ScalarValue;

use crate::run_agg::RunAggregateExec;
use crate::table::{EngineScanExec, EngineTable};

/// A cached shape's template: unset until a query of the shape could make one, then
/// the template or `None` (never).
#[derive(Debug, Default)]
pub(crate) struct Slot(OnceLock<Option<Box<PhysicalTemplate>>>);

impl Slot {
    pub(crate) fn get(&self) -> Option<&PhysicalTemplate> {
        self.0.get()?.as_deref()
    }

    /// Decide from `physical`, freshly planned from `logical` with `values`, unless
    /// an earlier query already decided.
    pub(crate) fn learn(
        &self,
        logical: &LogicalPlan,
        physical: &Arc<dyn ExecutionPlan>,
        values: &[ScalarValue],
        run_aggregate: bool,
    ) {
        if self.0.get().is_some() {
            return;
        }
        match PhysicalTemplate::of(logical, physical, values, run_aggregate) {
            Made::Ready(t) => {
                let _ = self.0.set(Some(t));
            }
            Made::Never => {
                let _ = self.0.set(None);
            }
            Made::NotNow => {}
        }
    }
}

/// What [`PhysicalTemplate::of`] decided.
enum Made {
    Ready(Box<PhysicalTemplate>),
    /// This shape is never templated.
    Never,
    /// Not with these literals (two of them are equal, or one equals a constant of
    /// the statement); the next query of the shape may try again.
    NotNow,
}

/// One statement shape's physical plan, for the literals it was built with.
#[derive(Debug)]
pub(crate) struct PhysicalTemplate {
    table: EngineTable,
    /// The cached logical plan's scan, its filters holding placeholders.
    scan: TableScan,
    /// The plan for `values`, over an [`EmptyExec`] where the scan was.
    plan: Arc<dyn ExecutionPlan>,
    values: Vec<ScalarValue>,
    /// Whether run aggregation was on when `plan` was optimized.
    run_aggregate: bool,
}

impl PhysicalTemplate {
    /// The template of `physical`, planned from `logical` (the cached plan with its
    /// placeholders) with `values` bound.
    fn of(
        logical: &LogicalPlan,
        physical: &Arc<dyn ExecutionPlan>,
        values: &[ScalarValue],
        run_aggregate: bool,
    ) -> Made {
        let Some((scan, table)) = single_scan(logical) else {
            return Made::Never;
        };
        // Bound literals are never null (`plan_cache::bind`).
        if values
            .iter()
            .any(|v| matches!(v.data_type(), DataType::Boolean))
        {
            return Made::Never;
        }
        let constants = constants(logical);
        let mut seen = HashSet::new();
        for v in values {
            let text = v.to_string();
            if constants.contains(&text) || !seen.insert(text) {
                return Made::NotNow;
            }
        }
        if physical.exists(|p| Ok(p.is::<EmptyExec>())).unwrap_or(true) {
            // These literals contradict each other, so the scan became an empty one.
            return Made::NotNow;
        }
        let mut found = vec![false; values.len()];
        let mut scans = 0;
        let ok = check_plan(physical, values, &constants, &mut found, &mut scans);
        if !ok || scans != 1 || found.contains(&false) {
            return Made::Never;
        }
        // Kept over an empty leaf: the scan holds an engine snapshot, which pins its
        // memtables and keeps compacted-away SSTs (and their cached bytes) alive.
        let leaf: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(physical_leaf_schema(physical)));
        let Ok(plan) = rebuild(physical, &leaf, values, values, false) else {
            return Made::Never;
        };
        Made::Ready(Box::new(Self {
            table,
            scan,
            plan,
            values: values.to_vec(),
            run_aggregate,
        }))
    }

    /// The physical plan for `values`, or `None` when it must be planned afresh.
    /// The template's own plan sits over an empty leaf; it is never executed.
    /// With `drop_applied`, filter conjuncts that the new scan applies are left out
    /// (see `applied_filters`).
    pub(crate) async fn instantiate(
        &self,
        state: &SessionState,
        values: &[ScalarValue],
        run_aggregate: bool,
        drop_applied: bool,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        // Bound to the same placeholder types as the template's own literals.
        debug_assert!(
            values.len() == self.values.len()
                && values
                    .iter()
                    .zip(&self.values)
                    .all(|(new, old)| new.data_type() == old.data_type())
        );
        if run_aggregate != self.run_aggregate {
            return Ok(None);
        }
        let bound = LogicalPlan::TableScan(self.scan.clone()).with_param_values(values.to_vec())?;
        let LogicalPlan::TableScan(scan) = bound else {
            return Ok(None);
        };
        let filters: Vec<Expr> = unnormalize_cols(scan.filters.iter().cloned());
        let leaf = self
            .table
            .scan(state, scan.projection.as_ref(), &filters, scan.fetch)
            .await?;
        if !leaf.is::<EngineScanExec>() {
            return Ok(None); // the literals contradict each other: nothing to read
        }
        rebuild(&self.plan, &leaf, &self.values, values, drop_applied).map(Some)
    }
}

/// The plan's only table scan and its engine table, if it reads exactly one.
fn single_scan(plan: &LogicalPlan) -> Option<(TableScan, EngineTable)> {
    let mut scans = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            scans.push(scan.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if scans.len() != 1 {
        return None;
    }
    let scan = scans.pop()?;
    let table = source_as_provider(&scan.source)
        .ok()?
        .downcast_ref::<EngineTable>()?
        .clone();
    Some((scan, table))
}

/// The statement's own constants (as text): every literal of the cached plan.
fn constants(plan: &LogicalPlan) -> HashSet<String> {
    let mut out = HashSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        let _ = node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::Literal(v, _) = e {
                    out.insert(v.to_string());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        });
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// Whether every operator of `plan` may be rebuilt, and every literal in it is either
/// one of `values` (in a filter predicate; marked in `found`) or a constant.
fn check_plan(
    plan: &Arc<dyn ExecutionPlan>,
    values: &[ScalarValue],
    constants: &HashSet<String>,
    found: &mut [bool],
    scans: &mut usize,
) -> bool {
    let filter = plan.downcast_ref::<FilterExec>();
    if plan.is::<EngineScanExec>() {
        *scans += 1;
    }
    // A dynamic filter (TopK's, min/max's) is state that rebuilt operators would share.
    let allowed = plan.dynamic_expressions_produced().is_empty()
        && (filter.is_some()
            || plan.is::<EngineScanExec>()
            || plan.is::<AggregateExec>()
            || plan.is::<SortExec>()
            || plan.is::<ProjectionExec>()
            || plan.is::<SortPreservingMergeExec>()
            || plan.is::<CoalescePartitionsExec>()
            || plan.is::<RepartitionExec>()
            || plan.is::<GlobalLimitExec>()
            || plan.is::<LocalLimitExec>()
            || plan.is::<CooperativeExec>()
            || plan.is::<RunAggregateExec>());
    if !allowed {
        return false;
    }
    let mut ok = true;
    let _ = plan.apply_expressions(&mut |root| {
        let _ = root.apply(|e| {
            if filter.is_some() && !plain(e) {
                ok = false;
            }
            if let Some(l) = e.downcast_ref::<Literal>() {
                match values.iter().position(|v| v == l.value()) {
                    // A filter's literal, with no metadata to carry over.
                    Some(i) if filter.is_some() && literal_metadata_is_empty(l) => found[i] = true,
                    Some(_) => ok = false,
                    None => ok &= constants.contains(&l.value().to_string()),
                }
            }
            if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>()
                && f.args().iter().any(|a| holds_any(a, values))
            {
                ok = false;
            }
            Ok(if ok {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        });
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok && plan
        .children()
        .into_iter()
        .all(|c| check_plan(c, values, constants, found, scans))
}

/// Expressions a filter predicate may be built of.
fn plain(e: &Arc<dyn PhysicalExpr>) -> bool {
    e.is::<Column>()
        || e.is::<Literal>()
        || e.is::<BinaryExpr>()
        || e.is::<NotExpr>()
        || e.is::<IsNullExpr>()
        || e.is::<IsNotNullExpr>()
        || e.is::<CastExpr>()
        || e.is::<TryCastExpr>()
        || e.is::<InListExpr>()
        || e.is::<LikeExpr>()
        || e.is::<NegativeExpr>()
        || e.is::<ScalarFunctionExpr>()
}

fn literal_metadata_is_empty(l: &Literal) -> bool {
    l.return_field(&Schema::empty())
        .is_ok_and(|f| f.metadata().is_empty())
}

/// Whether a literal equal to one of `values` is under `e`.
fn holds_any(e: &Arc<dyn PhysicalExpr>, values: &[ScalarValue]) -> bool {
    e.exists(|e| {
        Ok(e.downcast_ref::<Literal>()
            .is_some_and(|l| values.contains(l.value())))
    })
    .unwrap_or(true)
}

/// The schema of the plan's (only) leaf.
fn physical_leaf_schema(plan: &Arc<dyn ExecutionPlan>) -> arrow::datatypes::SchemaRef {
    match plan.children().first() {
        Some(child) => physical_leaf_schema(child),
        None => plan.schema(),
    }
}

/// `plan` over `leaf`, with `old` literals replaced by `new` in filter predicates and
/// every operator rebuilt; with `drop_applied`, without the filter conjuncts that the
/// scan applies.
fn rebuild(
    plan: &Arc<dyn ExecutionPlan>,
    leaf: &Arc<dyn ExecutionPlan>,
    old: &[ScalarValue],
    new: &[ScalarValue],
    drop_applied: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    if plan.children().is_empty() {
        return Ok(Arc::clone(leaf)); // the scan: the only leaf
    }
    let children = plan
        .children()
        .into_iter()
        .map(|c| rebuild(c, leaf, old, new, drop_applied))
        .collect::<Result<Vec<_>>>()?;
    if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        let input = children.into_iter().next().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("FilterExec without input".into())
        })?;
        let predicate = substitute(filter.predicate(), old, new, &input.schema())?;
        if drop_applied
            && let Some(replaced) =
                crate::applied_filters::without_applied(filter, &input, &predicate)?
        {
            return Ok(replaced);
        }
        let rebuilt = FilterExecBuilder::from(filter)
            .with_predicate(predicate)
            .with_input(input)
            .build()?;
        return Ok(Arc::new(rebuilt));
    }
    Arc::clone(plan).replace_children(
        children,
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )
}

/// `predicate` with each literal equal to `old[i]` replaced by `new[i]`, and every
/// `IN` list rebuilt (its lookup set is made from its literals when it is built).
fn substitute(
    predicate: &Arc<dyn PhysicalExpr>,
    old: &[ScalarValue],
    new: &[ScalarValue],
    schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    Arc::clone(predicate)
        .transform_up(|e| {
            if let Some(l) = e.downcast_ref::<Literal>()
                && let Some(i) = old.iter().position(|v| v == l.value())
            {
                return Ok(Transformed::yes(
                    Arc::new(Literal::new(new[i].clone())) as Arc<dyn PhysicalExpr>
                ));
            }
            if let Some(list) = e.downcast_ref::<InListExpr>() {
                let rebuilt = in_list(
                    Arc::clone(list.expr()),
                    list.list().to_vec(),
                    &list.negated(),
                    schema,
                )?;
                return Ok(Transformed::yes(rebuilt));
            }
            Ok(Transformed::no(e))
        })
        .data()
}

/// The plan as `EXPLAIN` prints it, with what a scan found in the engine at the time
/// (SST and memtable counts, which change between two plannings) masked.
#[cfg(debug_assertions)]
pub(crate) fn shape(plan: &Arc<dyn ExecutionPlan>) -> String {
    use datafusion::physical_plan::displayable;
    displayable(plan.as_ref())
        .indent(true)
        .to_string()
        .lines()
        .map(
            |line| match (line.find("ssts="), line.find("memtable_rows=")) {
                (Some(a), Some(b)) if a < b => {
                    let end = line[b..].find(',').map_or(line.len(), |i| b + i);
                    format!("{}…{}", &line[..a], &line[end..])
                }
                _ => line.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
}
