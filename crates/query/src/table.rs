//! [`EngineTable`]: a DataFusion table over one engine table, and [`EngineScanExec`],
//! the scan that reads an engine snapshot.
//!
//! At plan time the pushed-down filters become a time range and tag value sets
//! ([`crate::pruning`]); the engine snapshot is taken for that range, so segments and
//! SSTs outside it are never opened, and SSTs whose tag statistics exclude the wanted
//! values are skipped. Filters stay `Inexact`: DataFusion still applies them to rows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bulkhead_engine::{
    Engine, FieldComparison, FieldFilter, ROLE_KEY, ScanMetrics, ScanRequest, SstMeta, TIME_COLUMN,
    TableSnapshot, TagPredicate, TimeRange,
};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::StreamExt;

use crate::pruning::{Pruning, TimeBounds};
use crate::stats::QueryStats;

/// One engine table as a DataFusion table.
#[derive(Debug, Clone)]
pub(crate) struct EngineTable {
    engine: Arc<Engine>,
    stats: Arc<QueryStats>,
    db: String,
    table: String,
    schema: SchemaRef,
    /// What scans return of each series (set by [`crate::lastpoint`]).
    latest: Latest,
}

/// What a scan returns of each series: every row in range, or only the latest one
/// ([`ScanRequest::last_per_series`]), optionally only each group's latest
/// ([`ScanRequest::last_per_group`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Latest {
    #[default]
    Every,
    PerSeries,
    PerGroup(Vec<String>),
}

impl EngineTable {
    pub(crate) fn new(
        engine: Arc<Engine>,
        stats: Arc<QueryStats>,
        db: String,
        table: String,
        schema: SchemaRef,
    ) -> Self {
        Self {
            engine,
            stats,
            db,
            table,
            schema,
            latest: Latest::Every,
        }
    }

    /// This table, with scans that return only each series' latest row in range (or
    /// each group's, see [`Latest`]).
    pub(crate) fn with_latest(&self, latest: Latest) -> Self {
        Self {
            latest,
            ..self.clone()
        }
    }

    pub(crate) fn last_per_series(&self) -> bool {
        self.latest != Latest::Every
    }

    /// The schema this table was looked up with.
    pub(crate) fn schema_ref(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The table's schema now (`None` once it is dropped): a plan cached with
    /// [`Self::schema_ref`] is stale when they differ.
    pub(crate) fn current_schema(&self) -> Option<SchemaRef> {
        self.engine.table_schema(&self.db, &self.table)
    }

    pub(crate) fn is_tag(&self, column: &str) -> bool {
        self.schema
            .field_with_name(column)
            .is_ok_and(|f| f.metadata().get(ROLE_KEY).is_some_and(|r| r == "tag"))
    }
}

#[async_trait]
impl TableProvider for EngineTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => Arc::clone(&self.schema),
        };
        let pruning = Pruning::from_filters(filters, |c| self.is_tag(c));
        let tag_predicate = crate::series_filter::tag_predicate(filters, |c| self.is_tag(c));
        // The latest row per series is judged before any filter on fields would be.
        let push = state.config_options().execution.parquet.pushdown_filters;
        let field_filter = match self.latest {
            Latest::Every if push => {
                crate::field_filter::field_filter(filters, &self.schema, |c| self.is_tag(c))
            }
            _ => None,
        };
        if pruning.time.is_empty() || pruning.tags.values().any(BTreeSet::is_empty) {
            // The filters contradict each other: nothing can match, read nothing.
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let range = to_range(pruning.time);
        let snapshot = self
            .engine
            .snapshot(&self.db, &self.table, range)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let in_range = snapshot.ssts();
        let selected: Vec<SstMeta> = in_range
            .iter()
            .filter(|m| tags_may_match(m, &pruning.tags))
            .cloned()
            .collect();
        let total_ssts = snapshot.table_sst_count().max(in_range.len());
        // A scan of a few series is small; the series index finds their rows cheaply.
        let selects_series = !pruning.tags.is_empty() || tag_predicate.is_some();
        let decode_tasks = match self.latest {
            Latest::Every if !selects_series => {
                let rows = estimated_rows(&selected, range) + snapshot.memtable_rows() as u64;
                let options = crate::options::BulkheadOptions::of(state.config_options());
                if rows >= options.scan_tasks_min_rows {
                    options.scan_tasks
                } else {
                    0
                }
            }
            _ => 0,
        };
        let exec = EngineScanExec::new(
            snapshot,
            projected,
            pruning,
            Predicates {
                tags: tag_predicate,
                fields: field_filter,
            },
            self.latest.clone(),
            ScanCounts {
                total: total_ssts,
                by_time: total_ssts - in_range.len(),
                by_tags: in_range.len() - selected.len(),
                selected: selected.iter().map(|m| m.file_id.clone()).collect(),
            },
            Arc::clone(&self.stats),
        )
        .with_decode_tasks(decode_tasks);
        Ok(Arc::new(exec))
    }
}

/// Rows `ssts` hold in `range`, assuming each file's rows spread evenly over its time
/// bounds.
fn estimated_rows(ssts: &[SstMeta], range: TimeRange) -> u64 {
    let (start, last) = (range.start, range.last);
    ssts.iter()
        .map(|m| {
            let (a, b) = (m.min_time.max(start), m.max_time.min(last));
            if b < a {
                return 0;
            }
            let width = (m.max_time as f64 - m.min_time as f64) + 1.0;
            let inside = (b as f64 - a as f64) + 1.0;
            (m.rows as f64 * (inside / width).min(1.0)) as u64
        })
        .sum()
}

/// Inclusive bounds to the engine's (inclusive) range.
fn to_range(t: TimeBounds) -> TimeRange {
    TimeRange::inclusive(t.min, t.max)
}

/// Whether `meta`'s tag statistics allow a row with the wanted tag values. SSTs without
/// statistics for a tag may match.
fn tags_may_match(meta: &SstMeta, wanted: &BTreeMap<String, BTreeSet<String>>) -> bool {
    wanted
        .iter()
        .all(|(tag, values)| match tag_range(meta, tag) {
            Some((min, max)) => values
                .iter()
                .any(|v| v.as_str() >= min && v.as_str() <= max),
            None => true,
        })
}

/// The (min, max) value of `tag` in the SST, when its metadata records it.
fn tag_range<'a>(meta: &'a SstMeta, tag: &str) -> Option<(&'a str, &'a str)> {
    meta.tag_ranges
        .get(tag)
        .map(|(lo, hi)| (lo.as_str(), hi.as_str()))
}

#[derive(Debug, Clone)]
struct ScanCounts {
    total: usize,
    by_time: usize,
    by_tags: usize,
    selected: BTreeSet<String>,
}

/// What a scan filters rows by, beyond its time range: both are applied by the engine
/// to every row it returns.
#[derive(Debug, Clone, Default)]
struct Predicates {
    tags: Option<TagPredicate>,
    fields: Option<FieldFilter>,
}

/// Reads an engine snapshot: SSTs (fetched on `io`, decoded here) and memtable rows,
/// merged and deduplicated by primary key.
pub(crate) struct EngineScanExec {
    snapshot: TableSnapshot,
    schema: SchemaRef,
    pruning: Pruning,
    predicates: Predicates,
    latest: Latest,
    counts: ScanCounts,
    stats: Arc<QueryStats>,
    /// [`ScanRequest::decode_tasks`], from the session's `bulkhead.scan_tasks`.
    decode_tasks: usize,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for EngineScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineScanExec")
            .field("db", &self.snapshot.db())
            .field("table", &self.snapshot.table())
            .finish_non_exhaustive()
    }
}

impl EngineScanExec {
    /// The inclusive time range it reads: the engine returns no row outside it.
    pub(crate) fn time_bounds(&self) -> (i64, i64) {
        (self.pruning.time.min, self.pruning.time.max)
    }

    /// Tag conditions TRUE for every row it returns: the engine keeps, from every
    /// source, only rows for which the tag predicate may be TRUE (see
    /// [`TagPredicate::exact_conjuncts`]).
    pub(crate) fn exact_tag_conjuncts(&self) -> Vec<&TagPredicate> {
        self.predicates
            .tags
            .as_ref()
            .map(TagPredicate::exact_conjuncts)
            .unwrap_or_default()
    }

    /// Field comparisons TRUE for every row it returns (the engine applies them).
    pub(crate) fn field_conjuncts(&self) -> &[FieldComparison] {
        self.predicates
            .fields
            .as_ref()
            .map(|f| f.conjuncts.as_slice())
            .unwrap_or_default()
    }

    fn new(
        snapshot: TableSnapshot,
        schema: SchemaRef,
        pruning: Pruning,
        predicates: Predicates,
        latest: Latest,
        counts: ScanCounts,
        stats: Arc<QueryStats>,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            snapshot,
            schema,
            pruning,
            predicates,
            latest,
            counts,
            stats,
            decode_tasks: 0,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl EngineScanExec {
    /// Decode up to `n` time groups at once on tasks of their own
    /// ([`ScanRequest::decode_tasks`]).
    fn with_decode_tasks(mut self, n: usize) -> Self {
        self.decode_tasks = n;
        self
    }
}

impl DisplayAs for EngineScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "EngineScanExec: table={}.{}, ssts={}/{} (pruned: {} by time, {} by tags), memtable_rows={}",
            self.snapshot.db(),
            self.snapshot.table(),
            c.selected.len(),
            c.total,
            c.by_time,
            c.by_tags,
            self.snapshot.memtable_rows(),
        )?;
        if !self.pruning.time.is_unbounded() {
            write!(
                f,
                ", time=[{}, {}]",
                self.pruning.time.min, self.pruning.time.max
            )?;
        }
        for (tag, values) in &self.pruning.tags {
            write!(f, ", {tag} in {values:?}")?;
        }
        if let Some(p) = &self.predicates.tags {
            write!(f, ", series={p}")?;
        }
        if let Some(p) = &self.predicates.fields {
            write!(f, ", fields=({p})")?;
        }
        match &self.latest {
            Latest::Every => {}
            Latest::PerSeries => write!(f, ", last_per_series")?,
            Latest::PerGroup(g) => write!(f, ", last_per_series, per group of [{}]", g.join(", "))?,
        }
        if matches!(t, DisplayFormatType::Default | DisplayFormatType::Verbose) {
            let names: Vec<&str> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for EngineScanExec {
    fn name(&self) -> &str {
        "EngineScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "EngineScanExec has one partition, asked for {partition}"
            )));
        }
        let c = &self.counts;
        MetricBuilder::new(&self.metrics)
            .global_counter("ssts_read")
            .add(c.selected.len());
        MetricBuilder::new(&self.metrics)
            .global_counter("ssts_pruned")
            .add(c.by_time + c.by_tags);
        self.stats
            .ssts_read
            .fetch_add(c.selected.len() as u64, Ordering::Relaxed);
        self.stats
            .ssts_pruned
            .fetch_add((c.by_time + c.by_tags) as u64, Ordering::Relaxed);

        let selected = c.selected.clone();
        let scan_metrics = Arc::new(ScanMetrics::default());
        // `count(*)` projects no column; read `time` (the cheapest) to count rows.
        let mut columns: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if columns.is_empty() {
            columns.push(TIME_COLUMN.to_string());
        }
        let request = ScanRequest {
            time_range: Some(to_range(self.pruning.time)),
            projection: Some(columns),
            sst_filter: Some(Arc::new(move |m: &SstMeta| selected.contains(&m.file_id))),
            tag_values: self.pruning.tags.clone(),
            tag_predicate: self.predicates.tags.clone(),
            field_filter: self.predicates.fields.clone(),
            metrics: Some(Arc::clone(&scan_metrics)),
            last_per_series: self.latest != Latest::Every,
            ignore_last_row_metadata: false,
            last_per_group: match &self.latest {
                Latest::PerGroup(g) => Some(g.clone()),
                _ => None,
            },
            decode_tasks: self.decode_tasks,
        };
        let schema = Arc::clone(&self.schema);
        let out_schema = Arc::clone(&schema);
        // The engine's read counters become this plan's metrics when the scan ends
        // (`EXPLAIN ANALYZE`), added once.
        let counters: Vec<_> = ScanMetrics::default()
            .snapshot()
            .named()
            .iter()
            .map(|(name, _)| MetricBuilder::new(&self.metrics).global_counter(*name))
            .collect();
        let tail = futures::stream::once(async move {
            for (c, (_, v)) in counters.iter().zip(scan_metrics.snapshot().named()) {
                c.add(v as usize);
            }
        })
        .filter_map(|()| async { None });
        let scan = self.snapshot.scan(request).chain(tail);
        let stream = scan.map(move |batch| {
            let batch = batch.map_err(|e| DataFusionError::External(Box::new(e)))?;
            // Same columns in the same order (none for `count(*)`); re-attach the plan's
            // exact schema and keep the row count.
            let columns = if out_schema.fields().is_empty() {
                vec![]
            } else {
                batch.columns().to_vec()
            };
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            Ok(RecordBatch::try_new_with_options(
                Arc::clone(&out_schema),
                columns,
                &options,
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}
