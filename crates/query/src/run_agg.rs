//! Run aggregation: the partial step of a time-bucket `GROUP BY`, folded run by run.
//!
//! The engine returns each SST's rows sorted by series, then time, so in a query like
//! `select date_bin('1 hour', time), host, avg(usage) ... group by 1, 2` the rows of
//! one group arrive as long runs (360 rows of a host's hour at a 10 s interval).
//! DataFusion's hash aggregate still updates its per-group state row by row, and each
//! update of the same group waits for the previous one to reach memory: at 1000 hosts
//! that was half of the query's CPU (`docs/benchmarks.md`, issue 16).
//!
//! [`RunAggregateRule`] replaces the aggregate's partial step with [`RunAggregateExec`]:
//! it cuts each input batch into runs of equal group keys (`arrow`'s `partition`) and
//! reduces every run in registers, emitting one row of partial state per run, in the
//! very layout DataFusion's own partial aggregate would give. DataFusion's final
//! aggregate then merges those few rows per group. A run split by a batch boundary, or
//! a group spread over several SSTs, only means more partial rows for the same group:
//! the answer does not depend on how the input is ordered, only the speed does.
//!
//! The rule applies only where both the answer and the gain are certain:
//! - `count`, `sum`, `min`, `max` and `avg` of one argument, without `DISTINCT`,
//!   `FILTER`, `ORDER BY` or grouping sets, whose partial state has the expected types
//!   (`Float64`, `Int64` or `UInt64` values; `avg` of `Float64`, or of an `Int64`
//!   column that DataFusion casts to `Float64`, which is summed without building the
//!   cast column);
//! - group keys that are tags or a time bucket (`date_bin`, `date_trunc`) of `time`,
//!   over an input that is the engine's scan (through filters and projections), so
//!   that runs are long;
//!   (a `date_bin` with a fixed stride is computed by [`bins`], which divides only
//!   when a row leaves the previous row's bin);
//! - no `LIMIT` pushed into the aggregate;
//! - a plan of one partition (the default, `limits.query_partitions = 1`), so that the
//!   answer is the same on every run (see [`rewrite`]).
//!
//! Sums are added in a different order than a row-by-row aggregate adds them, so a
//! floating-point sum or average can differ in its last bits, as it does between
//! DataFusion's own one- and two-partition plans. Minimum and maximum follow the same
//! total order as DataFusion's (`NaN` above every number, `-0.0` below `0.0`).
//! `crates/query/tests/run_agg.rs` compares the answers with the plain aggregate's on
//! random data.

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, Float64Array, Int64Array, PrimitiveArray,
    RecordBatch, UInt32Array, UInt64Array,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, UInt64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, TaskContext};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType,
};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, InputOrderMode,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::{Stream, StreamExt};

use crate::table::EngineScanExec;

mod bins;
use bins::FastDateBin;

/// Puts [`RunAggregateExec`] under every aggregate it can answer (see the module doc).
#[derive(Debug)]
pub(crate) struct RunAggregateRule {
    /// Off in tests that compare with the plain aggregate.
    pub(crate) enabled: Arc<AtomicBool>,
}

impl PhysicalOptimizerRule for RunAggregateRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !self.enabled.load(Ordering::Relaxed) {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let rewritten = match node.downcast_ref::<AggregateExec>() {
                Some(agg) => rewrite(agg)?,
                None => None,
            };
            Ok(match rewritten {
                Some(new) => Transformed::yes(new),
                None => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "run_aggregate"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// What one aggregate reduces a run to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

/// Value types the reductions handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    F64,
    I64,
    U64,
}

impl Value {
    fn of(t: &DataType) -> Option<Self> {
        match t {
            DataType::Float64 => Some(Self::F64),
            DataType::Int64 => Some(Self::I64),
            DataType::UInt64 => Some(Self::U64),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct RunAgg {
    kind: Kind,
    value: Value,
    arg: Arc<dyn PhysicalExpr>,
    /// For `avg` of an `Int64` column, which DataFusion casts to `Float64`: the
    /// column before the cast. The run sums it converting each value as the cast
    /// does, in the same order, without building the cast column.
    widened: Option<Arc<dyn PhysicalExpr>>,
}

/// The replacement for `agg`, or `None` when the rule does not apply.
fn rewrite(agg: &AggregateExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    // Only the one-partition plan (`limits.query_partitions = 1`, the default). Under a
    // multi-partition plan's final step, partial rows arrive from the partitions in no
    // fixed order, and with several rows per group a floating-point sum could change
    // in its last digit from one run of the same query to the next; DataFusion's own
    // partial step sends one row per group and partition, whose sum does not depend
    // on the order for two partitions.
    if *agg.mode() != AggregateMode::Single
        || agg.limit_options().is_some()
        || agg.filter_expr().iter().any(Option::is_some)
        || !matches!(agg.input_order_mode(), InputOrderMode::Linear)
    {
        return Ok(None);
    }
    let group = agg.group_expr();
    if group.has_grouping_set() || group.expr().is_empty() {
        return Ok(None);
    }
    let input = agg.input();
    let input_schema = input.schema();
    if !group
        .expr()
        .iter()
        .all(|(e, _)| is_run_key(e.as_ref(), &input_schema))
        || !fed_by_engine_scan(input.as_ref())
    {
        return Ok(None);
    }
    let Some(aggs) = agg
        .aggr_expr()
        .iter()
        .map(|a| run_agg(a, &input_schema))
        .collect::<Result<Option<Vec<_>>>>()?
    else {
        return Ok(None);
    };
    // The partial step's schema, as DataFusion builds it: the run aggregate emits
    // exactly that.
    let partial = AggregateExec::try_new(
        AggregateMode::Partial,
        group.clone(),
        agg.aggr_expr().to_vec(),
        agg.filter_expr().to_vec(),
        Arc::clone(input),
        agg.input_schema(),
    )?;
    let run: Arc<dyn ExecutionPlan> = Arc::new(RunAggregateExec::new(
        Arc::clone(input),
        group.expr().to_vec(),
        aggs,
        partial.schema(),
    ));
    let last = AggregateExec::try_new(
        AggregateMode::Final,
        group.as_final(),
        agg.aggr_expr().to_vec(),
        agg.filter_expr().to_vec(),
        run,
        agg.input_schema(),
    )?;
    if last.schema() != agg.schema() {
        return Ok(None);
    }
    Ok(Some(Arc::new(last)))
}

/// A tag column, or `date_bin`/`date_trunc` of `time`: keys that stay equal over
/// long runs of the engine's (series, time) order.
fn is_run_key(e: &dyn PhysicalExpr, schema: &SchemaRef) -> bool {
    if let Some(c) = e.downcast_ref::<Column>() {
        return schema.fields().get(c.index()).is_some_and(|f| {
            f.metadata()
                .get(bulkhead_engine::ROLE_KEY)
                .is_some_and(|r| r == "tag")
        });
    }
    if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>() {
        return matches!(f.name(), "date_bin" | "date_trunc")
            && f.args().iter().any(|a| {
                a.downcast_ref::<Column>()
                    .is_some_and(|c| c.name() == bulkhead_engine::TIME_COLUMN)
            })
            && f.args().iter().all(|a| {
                a.downcast_ref::<Column>().is_some() || a.downcast_ref::<Literal>().is_some()
            });
    }
    false
}

/// Whether `plan`'s rows come from [`EngineScanExec`] through row-preserving nodes.
fn fed_by_engine_scan(plan: &dyn ExecutionPlan) -> bool {
    if plan.is::<EngineScanExec>() {
        return true;
    }
    let passes = matches!(
        plan.name(),
        "FilterExec"
            | "ProjectionExec"
            | "CoalesceBatchesExec"
            | "CoalescePartitionsExec"
            | "RepartitionExec"
            | "CooperativeExec"
            | "YieldExec"
    );
    let children = plan.children();
    passes && children.len() == 1 && fed_by_engine_scan(children[0].as_ref())
}

/// How `a` reduces a run, if it is one of the aggregates handled (see the module doc).
fn run_agg(a: &AggregateFunctionExpr, schema: &SchemaRef) -> Result<Option<RunAgg>> {
    if a.is_distinct() || !a.order_bys().is_empty() {
        return Ok(None);
    }
    let args = a.expressions();
    let [arg] = args.as_slice() else {
        return Ok(None);
    };
    let kind = match a.fun().name() {
        "count" => Kind::Count,
        "sum" => Kind::Sum,
        "min" => Kind::Min,
        "max" => Kind::Max,
        "avg" => Kind::Avg,
        _ => return Ok(None),
    };
    let arg_type = arg.data_type(schema)?;
    let value = match (kind, Value::of(&arg_type)) {
        (Kind::Count, _) => Value::I64,
        (Kind::Avg, Some(Value::F64)) => Value::F64,
        (Kind::Avg, _) | (_, None) => return Ok(None),
        (_, Some(v)) => v,
    };
    // The state layout the reductions emit; anything else is left to DataFusion.
    let expected: Vec<DataType> = match kind {
        Kind::Count => vec![DataType::Int64],
        Kind::Avg => vec![DataType::UInt64, DataType::Float64],
        _ => vec![arg_type.clone()],
    };
    let state: Vec<DataType> = a
        .state_fields()?
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    if state != expected {
        return Ok(None);
    }
    let widened = arg
        .downcast_ref::<CastExpr>()
        .filter(|c| kind == Kind::Avg && c.cast_type() == &DataType::Float64)
        .map(|c| Arc::clone(c.expr()))
        .filter(|inner| inner.data_type(schema).ok() == Some(DataType::Int64));
    Ok(Some(RunAgg {
        kind,
        value,
        arg: Arc::clone(arg),
        widened,
    }))
}

/// The partial step of an aggregate, one output row per run of equal group keys.
#[derive(Debug)]
pub(crate) struct RunAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    group: Vec<(Arc<dyn PhysicalExpr>, String)>,
    aggs: Vec<RunAgg>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl RunAggregateExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        group: Vec<(Arc<dyn PhysicalExpr>, String)>,
        aggs: Vec<RunAgg>,
        schema: SchemaRef,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            input,
            group,
            aggs,
            schema,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for RunAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.group.iter().map(|(_, n)| n.as_str()).collect();
        let aggs: Vec<String> = self
            .aggs
            .iter()
            .map(|a| format!("{:?}({})", a.kind, a.arg).to_lowercase())
            .collect();
        write!(
            f,
            "RunAggregateExec: gby=[{}], aggr=[{}]",
            keys.join(", "),
            aggs.join(", ")
        )
    }
}

impl ExecutionPlan for RunAggregateExec {
    fn name(&self) -> &str {
        "RunAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let mut recursion = TreeNodeRecursion::Continue;
        for e in self
            .group
            .iter()
            .map(|(e, _)| e)
            .chain(self.aggs.iter().map(|a| &a.arg))
        {
            recursion = f(e)?;
            if recursion == TreeNodeRecursion::Stop {
                break;
            }
        }
        Ok(recursion)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "RunAggregateExec has one child, got {}",
                children.len()
            )));
        }
        Ok(Arc::new(Self::new(
            children.swap_remove(0),
            self.group.clone(),
            self.aggs.clone(),
            Arc::clone(&self.schema),
        )))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input_schema = self.input.schema();
        Ok(Box::pin(RunAggregateStream {
            input: self.input.execute(partition, context)?,
            bins: self
                .group
                .iter()
                .map(|(e, _)| FastDateBin::of(e.as_ref(), &input_schema))
                .collect(),
            group: self.group.clone(),
            aggs: self.aggs.clone(),
            schema: Arc::clone(&self.schema),
            baseline: BaselineMetrics::new(&self.metrics, partition),
        }))
    }
}

struct RunAggregateStream {
    input: SendableRecordBatchStream,
    group: Vec<(Arc<dyn PhysicalExpr>, String)>,
    /// Per group key: its fast `date_bin`, if it is one.
    bins: Vec<Option<FastDateBin>>,
    aggs: Vec<RunAgg>,
    schema: SchemaRef,
    baseline: BaselineMetrics,
}

impl RunAggregateStream {
    /// One partial-state row per run of equal keys in `batch`.
    fn fold_batch(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let keys = self
            .group
            .iter()
            .zip(&self.bins)
            .map(
                |((e, _), fast)| match fast.as_ref().and_then(|f| f.evaluate(batch)) {
                    Some(bins) => Ok(bins),
                    None => e.evaluate(batch)?.into_array(n),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        // Boundaries by dictionary key, not value: no string is compared. A value
        // that a dictionary holds twice only splits a run, and the final step merges
        // the pieces by value.
        let codes: Vec<ArrayRef> = keys
            .iter()
            .map(|k| match k.as_any_dictionary_opt() {
                Some(d) => arrow::array::make_array(d.keys().to_data()),
                None => Arc::clone(k),
            })
            .collect();
        let runs = arrow::compute::partition(&codes)?.ranges();
        let starts = UInt32Array::from_iter_values(runs.iter().map(|r| r.start as u32));
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (key, field) in keys.iter().zip(self.schema.fields()) {
            let key = arrow::compute::take(key.as_ref(), &starts, None)?;
            columns.push(if key.data_type() == field.data_type() {
                key
            } else {
                arrow::compute::cast(&key, field.data_type())?
            });
        }
        for a in &self.aggs {
            let arg = a.widened.as_ref().unwrap_or(&a.arg);
            let values = arg.evaluate(batch)?.into_array(n)?;
            reduce(a, &values, &runs, &mut columns)?;
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

impl Stream for RunAggregateStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let batch = match self.input.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(batch))) => batch,
                Poll::Ready(None) => {
                    self.baseline.done();
                    return Poll::Ready(None);
                }
                other => return self.baseline.record_poll(other),
            };
            if batch.num_rows() == 0 {
                continue;
            }
            let timer = self.baseline.elapsed_compute().timer();
            let out = self.fold_batch(&batch);
            timer.done();
            return self.baseline.record_poll(Poll::Ready(Some(out)));
        }
    }
}

impl RecordBatchStream for RunAggregateStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// Append `a`'s partial state over each run of `values` to `out`.
fn reduce(
    a: &RunAgg,
    values: &ArrayRef,
    runs: &[Range<usize>],
    out: &mut Vec<ArrayRef>,
) -> Result<()> {
    let nulls = values.logical_nulls();
    let counts: Vec<u64> = runs
        .iter()
        .map(|r| non_null(nulls.as_ref(), r) as u64)
        .collect();
    // Runs with no value have a null state, as in DataFusion's partial aggregate.
    let seen = NullBuffer::from(counts.iter().map(|&c| c > 0).collect::<Vec<_>>());
    let seen = (seen.null_count() > 0).then_some(seen);
    match a.kind {
        Kind::Count => out.push(Arc::new(Int64Array::from_iter_values(
            counts.iter().map(|&c| c as i64),
        ))),
        Kind::Avg => {
            let sums = match a.widened {
                Some(_) => fold_runs::<Int64Type, f64>(
                    values,
                    nulls.as_ref(),
                    runs,
                    &counts,
                    sum_i64_as_f64,
                )?,
                None => {
                    fold_runs::<Float64Type, f64>(values, nulls.as_ref(), runs, &counts, sum_f64)?
                }
            };
            out.push(Arc::new(UInt64Array::new(counts.into(), seen.clone())));
            out.push(Arc::new(Float64Array::new(sums.into(), seen)));
        }
        Kind::Sum | Kind::Min | Kind::Max => out.push(match a.value {
            Value::F64 => {
                let f = match a.kind {
                    Kind::Sum => sum_f64,
                    Kind::Min => min_f64,
                    _ => max_f64,
                };
                let v = fold_runs::<Float64Type, f64>(values, nulls.as_ref(), runs, &counts, f)?;
                Arc::new(Float64Array::new(v.into(), seen)) as ArrayRef
            }
            Value::I64 => {
                let f = int_fold::<i64>(a.kind);
                let v = fold_runs::<Int64Type, i64>(values, nulls.as_ref(), runs, &counts, f)?;
                Arc::new(Int64Array::new(v.into(), seen))
            }
            Value::U64 => {
                let f = int_fold::<u64>(a.kind);
                let v = fold_runs::<UInt64Type, u64>(values, nulls.as_ref(), runs, &counts, f)?;
                Arc::new(UInt64Array::new(v.into(), seen))
            }
        }),
    }
    Ok(())
}

fn non_null(nulls: Option<&NullBuffer>, r: &Range<usize>) -> usize {
    match nulls {
        None => r.len(),
        Some(n) => r.len() - n.slice(r.start, r.len()).null_count(),
    }
}

/// `f` over the non-null values of each run (a run without any gives the default);
/// `counts` holds each run's non-null values, so only runs with nulls are sifted.
fn fold_runs<T: ArrowPrimitiveType, O: Default>(
    values: &ArrayRef,
    nulls: Option<&NullBuffer>,
    runs: &[Range<usize>],
    counts: &[u64],
    f: fn(&[T::Native]) -> O,
) -> Result<Vec<O>> {
    let values: &PrimitiveArray<T> = values.as_primitive_opt::<T>().ok_or_else(|| {
        DataFusionError::Internal(format!("run aggregate: unexpected {}", values.data_type()))
    })?;
    let raw = values.values();
    let mut scratch = Vec::new();
    Ok(runs
        .iter()
        .zip(counts)
        .map(|(r, &count)| match nulls {
            _ if count == 0 => O::default(),
            Some(n) if count < r.len() as u64 => {
                scratch.clear();
                scratch.extend(r.clone().filter(|&i| n.is_valid(i)).map(|i| raw[i]));
                f(&scratch)
            }
            _ => f(&raw[r.clone()]),
        })
        .collect())
}

/// A sum over four lanes: no add waits for the one before it.
fn sum_f64(v: &[f64]) -> f64 {
    sum_lanes(v, |x| x)
}

/// [`sum_f64`] of the values cast to `f64` (as `CAST(x AS DOUBLE)` converts them):
/// the same additions in the same order, so the same sum to the last bit.
fn sum_i64_as_f64(v: &[i64]) -> f64 {
    sum_lanes(v, |x| x as f64)
}

/// The four-lane sum of `v`'s values converted by `f`.
#[inline(always)]
fn sum_lanes<T: Copy>(v: &[T], f: impl Fn(T) -> f64) -> f64 {
    let mut lanes = [0.0f64; 4];
    let chunks = v.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += f(x);
        }
    }
    let mut s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for &x in rest {
        s += f(x);
    }
    s
}

/// The least value by IEEE total order, as DataFusion's `min` (`v` is not empty).
fn min_f64(v: &[f64]) -> f64 {
    v.iter()
        .copied()
        .reduce(|m, x| if x.total_cmp(&m).is_lt() { x } else { m })
        .unwrap_or_default()
}

/// The greatest value by IEEE total order, as DataFusion's `max` (`v` is not empty).
fn max_f64(v: &[f64]) -> f64 {
    v.iter()
        .copied()
        .reduce(|m, x| if x.total_cmp(&m).is_gt() { x } else { m })
        .unwrap_or_default()
}

trait Int: Copy + Ord + Default {
    fn wrapping_add(self, other: Self) -> Self;
}

impl Int for i64 {
    fn wrapping_add(self, other: Self) -> Self {
        i64::wrapping_add(self, other)
    }
}

impl Int for u64 {
    fn wrapping_add(self, other: Self) -> Self {
        u64::wrapping_add(self, other)
    }
}

/// Integer sums wrap on overflow, as DataFusion's partial `sum` does.
fn int_fold<T: Int>(kind: Kind) -> fn(&[T]) -> T {
    match kind {
        Kind::Sum => |v| v.iter().fold(T::default(), |s, &x| s.wrapping_add(x)),
        Kind::Min => |v| v.iter().copied().min().unwrap_or_default(),
        _ => |v| v.iter().copied().max().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_folds_follow_total_order_and_add_everything() {
        let v = [3.0, -0.0, 0.0, f64::NAN, -1.5, 7.25, 2.0, 1.0, 0.5];
        assert!(max_f64(&v).is_nan());
        assert_eq!(min_f64(&v), -1.5);
        assert_eq!(min_f64(&[0.0, -0.0]).to_bits(), (-0.0f64).to_bits());
        assert_eq!(max_f64(&[-0.0, 0.0]).to_bits(), 0.0f64.to_bits());
        let w: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(sum_f64(&w), 66.0);
        assert_eq!(sum_f64(&[]), 0.0);
        let big: Vec<i64> = (0..23).map(|i| (i * 7_919) << 40 | i).collect();
        let cast: Vec<f64> = big.iter().map(|&x| x as f64).collect();
        assert_eq!(sum_i64_as_f64(&big).to_bits(), sum_f64(&cast).to_bits());
        assert_eq!(int_fold::<i64>(Kind::Sum)(&[i64::MAX, 1]), i64::MIN);
        assert_eq!(int_fold::<u64>(Kind::Min)(&[4, 2, 9]), 2);
        assert_eq!(int_fold::<i64>(Kind::Max)(&[-4, -2, -9]), -2);
    }
}
