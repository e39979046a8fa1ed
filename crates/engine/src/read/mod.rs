//! Read snapshots: a consistent view of one table (memtable rows + SST list) and scans
//! over it that yield Arrow batches deduplicated by primary key.
//!
//! Sources are ordered oldest to newest: SSTs by `max_seq`, then frozen memtables, then
//! the active memtable. Each source is already sorted and deduplicated on its own, so a
//! scan groups sources whose time ranges overlap; a group of one SST streams as it is
//! decoded (one row group's pages and one batch at a time), a memtable is converted
//! whole, and a larger group streams through a k-way merge on the sort key ([`merge`]),
//! field by field in source order (newer wins). The next group's first read overlaps
//! the current one's decoding. Output batches are sorted by (series, time) within a
//! batch; the order between batches is by time group, not globally sorted.

pub(crate) mod field_filter;
mod last;
pub(crate) mod merge;
pub(crate) mod metrics;
mod parallel;
pub(crate) mod predicate;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::ObjectStore;

use crate::core::EngineCore;
use crate::delete::Tombstone;
use crate::error::Result;
use crate::memtable::{TimeRange, merged_batch_where};
use crate::schema::{TIME_COLUMN, TableSchema};
use crate::sst::cache::MetadataCache;
use crate::sst::{SstFile, SstMeta, reader};
use crate::table::{FrozenMemtable, Table};
use field_filter::FieldFilter;
use metrics::ScanMetrics;
use predicate::TagPredicate;

/// Decides whether an SST is read (e.g. pruning on statistics); `true` keeps it.
pub type SstFilter = Arc<dyn Fn(&SstMeta) -> bool + Send + Sync>;

/// What to read from a snapshot.
#[derive(Clone, Default)]
pub struct ScanRequest {
    /// Further restricts the snapshot's range.
    pub time_range: Option<TimeRange>,
    /// Column names to return (canonical order is kept); `None` = all.
    pub projection: Option<Vec<String>>,
    /// Skip SSTs for which this returns false. Memtable data is always read.
    pub sst_filter: Option<SstFilter>,
    /// Tag name -> the values a row may have to be wanted. SST row groups whose
    /// statistics rule out every value of some tag are skipped (rows are sorted by
    /// series, so a row group holds few values of the first tag). Rows are not
    /// filtered: the caller still applies its predicate. Empty = no restriction.
    pub tag_values: BTreeMap<String, BTreeSet<String>>,
    /// A predicate on tag values: only the rows of series for which it may be TRUE are
    /// returned (SQL three-valued logic), from every source: SSTs through their series
    /// index (only those rows are read), SSTs without one by filtering decoded rows,
    /// memtables by series before any row is copied; unless it
    /// [`is_unknown`](TagPredicate::is_unknown), then nothing is filtered. So its
    /// [`exact_conjuncts`](TagPredicate::exact_conjuncts) are TRUE for every row
    /// returned.
    pub tag_predicate: Option<TagPredicate>,
    /// Only rows for which this `AND` of field comparisons is TRUE are returned, as a
    /// filter over a full scan's rows would keep them: it judges the finished rows
    /// (merged, newer wins field by field), and SSTs whose series index chose the rows
    /// also evaluate it inside the Parquet decoder (the other columns are decoded only
    /// for the rows that pass). The fields it compares are read even when not
    /// projected. Not with `last_per_series` (a scan asking for both fails).
    pub field_filter: Option<FieldFilter>,
    /// Where the scan counts what it read and skipped (see [`ScanMetrics`]).
    pub metrics: Option<Arc<ScanMetrics>>,
    /// Return only the latest row (greatest time in range) of every series, exactly as
    /// a full scan would return it, reading as little history as possible (see
    /// `read/last.rs`). For aggregates that only look at each series' latest row.
    pub last_per_series: bool,
    /// With `last_per_series`: do not use SSTs' last-row metadata, select those rows
    /// through the series index instead (as for files written without it). For tests
    /// that compare the two.
    pub ignore_last_row_metadata: bool,
    /// With `last_per_series`: then keep, of each group of series with equal values of
    /// these tags, only the series' row with the greatest time (one of them on a tie).
    /// For a `GROUP BY` of these tags whose aggregates all take the latest row.
    pub last_per_group: Option<Vec<String>>,
    /// How many time groups (sources whose time ranges overlap) a large scan may decode
    /// at once, each on a task of its own spawned on the runtime that polls the scan,
    /// at most two batches ahead of it; the batches are still handed
    /// out in an order that depends only on the data. 0 (or a scan polled outside a
    /// tokio runtime) decodes everything in the polling task. Worth it for large
    /// scans only: for a small one the hand-off to another thread costs more than it
    /// saves.
    pub decode_tasks: usize,
}

impl std::fmt::Debug for ScanRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanRequest")
            .field("time_range", &self.time_range)
            .field("projection", &self.projection)
            .field("sst_filter", &self.sst_filter.is_some())
            .field("tag_values", &self.tag_values)
            .field("tag_predicate", &self.tag_predicate)
            .field("field_filter", &self.field_filter)
            .field("last_per_series", &self.last_per_series)
            .field("ignore_last_row_metadata", &self.ignore_last_row_metadata)
            .field("last_per_group", &self.last_per_group)
            .field("decode_tasks", &self.decode_tasks)
            .finish()
    }
}

/// One source of a snapshot.
#[derive(Clone)]
enum Source {
    Sst(Arc<SstFile>),
    /// Memtable rows: a frozen memtable, or the active one's rows copied at snapshot
    /// time; converted per scan with the scan's columns.
    Mem(Arc<FrozenMemtable>, i64, i64),
}

impl Source {
    fn bounds(&self) -> (i64, i64) {
        match self {
            Source::Sst(f) => (f.meta().min_time, f.meta().max_time),
            Source::Mem(_, lo, hi) => (*lo, *hi),
        }
    }
}

/// A consistent, immutable view of one table.
#[derive(Clone)]
pub struct TableSnapshot {
    db: String,
    table: String,
    schema: Arc<TableSchema>,
    range: TimeRange,
    /// Oldest first.
    sources: Vec<Source>,
    store: Arc<dyn ObjectStore>,
    cache: Arc<MetadataCache>,
    segment_nanos: i64,
    /// The table's live tombstones: each source is read without the rows they delete.
    tombstones: Vec<Arc<Tombstone>>,
    /// How many SSTs the table had, in range or not (for a scan's pruning counts).
    table_ssts: usize,
}

impl std::fmt::Debug for TableSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableSnapshot")
            .field("db", &self.db)
            .field("table", &self.table)
            .field("range", &self.range)
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl TableSnapshot {
    pub(crate) fn take(engine: &EngineCore, table: &Table, range: TimeRange) -> Result<Self> {
        let (schema, frozen, active, mut ssts, tombstones, table_ssts) = {
            let mut st = table.state.lock();
            // Recorded when dropped, just before `st` (declared first, dropped last).
            let _hold =
                (engine.counters.stages.snapshot_lock_hold).timer_from(std::time::Instant::now());
            // A large active memtable is sealed (made immutable, a new one takes writes)
            // so that it is converted outside the lock and writers are not held up for
            // the copy; a small one is copied right here. The flush merges sealed
            // memtables back into one SST per segment.
            if st.active.bytes() >= engine.config.snapshot_seal_bytes && !st.active.is_empty() {
                let mem = std::mem::take(&mut st.active);
                let schema = Arc::clone(&st.schema);
                st.frozen.push(Arc::new(FrozenMemtable::new(mem, schema)));
            }
            let active = st.active.copy_range(range);
            let active = (!active.is_empty())
                .then(|| Arc::new(FrozenMemtable::new(active, Arc::clone(&st.schema))));
            (
                Arc::clone(&st.schema),
                st.frozen.clone(),
                active,
                st.ssts
                    .iter()
                    .filter(|f| range.overlaps(f.meta().min_time, f.meta().max_time))
                    .cloned()
                    .collect::<Vec<_>>(),
                st.tombstones.clone(),
                st.ssts.len(),
            )
        };
        ssts.sort_by_key(|f| f.meta().max_seq);
        let mut sources: Vec<Source> = ssts.into_iter().map(Source::Sst).collect();
        // Frozen memtables are immutable: scans convert them outside the lock.
        for f in frozen.into_iter().chain(active) {
            let Some((lo, hi)) = f.mem.time_range() else {
                continue;
            };
            if range.overlaps(lo, hi) {
                sources.push(Source::Mem(f, lo, hi));
            }
        }
        Ok(Self {
            db: table.db.clone(),
            table: table.name.clone(),
            schema,
            range,
            sources,
            store: Arc::clone(&engine.store),
            cache: Arc::clone(&engine.purger.cache),
            segment_nanos: engine.config.segment_nanos(),
            tombstones,
            table_ssts,
        })
    }

    /// How many SSTs the table had when the snapshot was taken, including those outside
    /// its time range: what a scan's pruning counts start from, read under the lock the
    /// snapshot takes anyway (asking [`crate::Engine::stats`] locked every table).
    pub fn table_sst_count(&self) -> usize {
        self.table_ssts
    }

    pub fn db(&self) -> &str {
        &self.db
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn time_range(&self) -> TimeRange {
        self.range
    }

    /// The table's full Arrow schema as of the snapshot.
    pub fn schema(&self) -> SchemaRef {
        self.schema.arrow_schema()
    }

    /// Metadata of every SST in the snapshot, oldest (`max_seq`) first.
    pub fn ssts(&self) -> Vec<SstMeta> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                Source::Sst(f) => Some(f.meta().clone()),
                Source::Mem(..) => None,
            })
            .collect()
    }

    /// Rows held in memtables (already copied into the snapshot).
    pub fn memtable_rows(&self) -> usize {
        self.sources
            .iter()
            .map(|s| match s {
                Source::Mem(m, ..) => m.mem.rows(),
                Source::Sst(_) => 0,
            })
            .sum()
    }

    /// Stream the rows matching `req`, one row per primary key (tags, time), with
    /// overwrites merged field by field. CPU work (decode, merge) runs on whichever
    /// runtime polls the stream; object-store reads run on `io` through the store.
    pub fn scan(&self, req: ScanRequest) -> BoxStream<'static, Result<RecordBatch>> {
        let range = req
            .time_range
            .map(|r| r.intersect(&self.range))
            .unwrap_or(self.range);
        let final_schema = self.schema.projected_schema(req.projection.as_deref());
        let fields = req.field_filter.filter(|f| !f.is_empty());
        if req.last_per_series && fields.is_some() {
            let e = crate::error::Error::InvalidInput(
                "a scan for the latest row per series cannot also filter on fields".into(),
            );
            return stream::once(async move { Err(e) }).boxed();
        }
        // The compared fields are read too, and dropped after the filter.
        let mut projection = req.projection;
        if let (Some(p), Some(f)) = (&mut projection, &fields) {
            for c in f.columns() {
                if !p.iter().any(|x| x == c) {
                    p.push(c.to_string());
                }
            }
        }
        let out_schema = self.schema.projected_schema(projection.as_deref());
        let sources: Vec<Source> = self
            .sources
            .iter()
            .filter(|s| match s {
                Source::Sst(f) => req.sst_filter.as_ref().is_none_or(|keep| keep(f.meta())),
                Source::Mem(..) => true,
            })
            .filter(|s| {
                let (lo, hi) = s.bounds();
                range.overlaps(lo, hi)
            })
            .cloned()
            .collect();
        let ctx = Arc::new(ScanCtx {
            schema: Arc::clone(&self.schema),
            out_schema,
            projection,
            range,
            tag_values: req.tag_values,
            tag_predicate: req.tag_predicate,
            fields,
            metrics: req.metrics.unwrap_or_default(),
            use_last_rows: !req.ignore_last_row_metadata,
            last_per_group: req.last_per_group,
            store: Arc::clone(&self.store),
            cache: Arc::clone(&self.cache),
            segment_nanos: self.segment_nanos,
            tombstones: self.tombstones.clone(),
        });
        if req.last_per_series {
            return stream::once(async move { ctx.last_rows(sources).await })
                .map_ok(|batches| stream::iter(batches.into_iter().map(Ok)))
                .try_flatten()
                .boxed();
        }
        // One group after another. The next group's read starts when the current one
        // is handed out, so its first object-store request (metadata or pages, run on
        // `io`) overlaps the current group's decoding; never more than one ahead.
        let filter = ctx.fields.clone().map(|f| (f, Arc::clone(&ctx.metrics)));
        let groups = overlap_groups(sources);
        let batches = match parallel::spawner(&groups, req.decode_tasks) {
            Some((handle, tasks)) => parallel::decode(groups, ctx, tasks, handle),
            None => stream::iter(groups)
                .map(move |group| {
                    let ctx = Arc::clone(&ctx);
                    async move { ctx.read_group(group).await }
                })
                .buffered(2)
                .try_flatten()
                .boxed(),
        };
        match filter {
            Some((f, metrics)) => filtered(batches, f, final_schema, metrics),
            None => batches,
        }
    }
}

/// The rows of `input` (finished: merged, in range) that `filter` keeps, in
/// `schema`'s columns, gathered into batches of about [`reader::BATCH_ROWS`] rows:
/// filtering leaves batches of a few rows, and each batch costs the operators above
/// (and a response) a step of their own. SSTs read through their series index have
/// applied `filter` inside the decoder already; their rows pass again.
fn filtered(
    input: BoxStream<'static, Result<RecordBatch>>,
    filter: FieldFilter,
    schema: SchemaRef,
    metrics: Arc<ScanMetrics>,
) -> BoxStream<'static, Result<RecordBatch>> {
    let coalescer = arrow::compute::BatchCoalescer::new(Arc::clone(&schema), reader::BATCH_ROWS);
    let push = move |coalescer: &mut arrow::compute::BatchCoalescer, b: RecordBatch| {
        let mask = filter.mask(&b)?;
        ScanMetrics::add(&metrics.rows_filtered_field, mask.len() - mask.true_count());
        let columns = schema
            .fields()
            .iter()
            .map(|f| b.schema().index_of(f.name()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        coalescer.push_batch_with_filter(b.project(&columns)?, &mask)
    };
    stream::unfold(
        (input, coalescer, push, false),
        |(mut input, mut coalescer, push, mut ended)| async move {
            loop {
                if let Some(b) = coalescer.next_completed_batch() {
                    return Some((Ok(b), (input, coalescer, push, ended)));
                }
                if ended {
                    return None;
                }
                let pushed = match input.next().await {
                    Some(Ok(b)) => push(&mut coalescer, b),
                    Some(Err(e)) => return Some((Err(e), (input, coalescer, push, true))),
                    None => {
                        ended = true;
                        coalescer.finish_buffered_batch()
                    }
                };
                if let Err(e) = pushed {
                    return Some((Err(e.into()), (input, coalescer, push, true)));
                }
            }
        },
    )
    .boxed()
}

struct ScanCtx {
    schema: Arc<TableSchema>,
    out_schema: SchemaRef,
    projection: Option<Vec<String>>,
    range: TimeRange,
    tag_values: BTreeMap<String, BTreeSet<String>>,
    tag_predicate: Option<TagPredicate>,
    /// See [`ScanRequest::field_filter`].
    fields: Option<FieldFilter>,
    metrics: Arc<ScanMetrics>,
    /// Whether `last_per_series` may use SSTs' last-row metadata.
    use_last_rows: bool,
    /// See [`ScanRequest::last_per_group`].
    last_per_group: Option<Vec<String>>,
    store: Arc<dyn ObjectStore>,
    cache: Arc<MetadataCache>,
    segment_nanos: i64,
    tombstones: Vec<Arc<Tombstone>>,
}

impl ScanCtx {
    /// The tombstones that remove rows of `source`.
    fn tombstones_for(&self, source: &Source) -> Vec<Arc<Tombstone>> {
        if self.tombstones.is_empty() {
            return Vec::new();
        }
        let seq = match source {
            Source::Sst(f) => f.meta().deletes_seen(),
            Source::Mem(m, ..) => m.mem.max_seq(),
        };
        let (lo, hi) = source.bounds();
        crate::delete::applicable(&self.tombstones, seq, lo, hi)
    }

    /// The rows of a group of sources whose time ranges overlap, as they are decoded:
    /// one SST or memtable as it is, several through a streaming merge.
    async fn read_group(
        self: Arc<Self>,
        group: Vec<Source>,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        if let [source] = group.as_slice() {
            // Already sorted and deduplicated: just filter, project and align.
            return self
                .open(
                    source,
                    self.projection.as_deref(),
                    self.fields.as_ref(),
                    &self.out_schema,
                )
                .await;
        }
        // Only times covered by two or more sources can hold duplicate keys. Rows outside
        // those contested ranges pass through as they are; the rest is merged on the
        // sort key, field by field (newer source wins). With in-order ingest consecutive
        // flushes touch only at a boundary timestamp, so almost nothing is merged.
        let contested = contested_ranges(&group);
        // The merge needs the primary key (every tag, time) and the wanted fields; the
        // other fields of a wide table stay unread.
        let merge_columns: Option<Vec<String>> = self.projection.as_ref().map(|p| {
            let mut cols = p.clone();
            cols.extend(self.schema.tags.iter().cloned());
            cols.push(TIME_COLUMN.to_string());
            cols
        });
        let merge_schema = self.schema.projected_schema(merge_columns.as_deref());
        let opening = group
            .iter()
            .map(|s| self.open(s, merge_columns.as_deref(), None, &merge_schema));
        let sources = futures::future::try_join_all(opening).await?;
        let out_schema = Arc::clone(&self.out_schema);
        merge::merged_stream(
            &self.schema,
            merge_schema,
            sources,
            contested,
            move |b: &RecordBatch| (b.num_rows() > 0).then(|| align(b, &out_schema)),
        )
    }

    /// The rows of one `source` in range, as decoded, without its deleted rows, in
    /// `schema`: `columns` (all if `None`; plus `time`) are read, and `fields` filters
    /// SST rows inside the decoder where the series index chose them. The stream keeps
    /// the source alive until it ends.
    async fn open(
        &self,
        source: &Source,
        columns: Option<&[String]>,
        fields: Option<&FieldFilter>,
        schema: &SchemaRef,
    ) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let batches = match source {
            Source::Mem(..) => {
                stream::iter(self.load(source, columns).await?.into_iter().map(Ok)).boxed()
            }
            Source::Sst(f) => {
                let tombs = self.tombstones_for(source);
                let wanted = self.wanted(columns, !tombs.is_empty());
                let mut want = self.sst_want(wanted.as_deref());
                want.fields = fields;
                let batches = reader::read_stream(&self.store, f.meta(), &self.cache, want).await?;
                if tombs.is_empty() {
                    batches
                } else {
                    batches
                        .and_then(move |b| {
                            futures::future::ready(crate::delete::filter_batch(&b, &tombs))
                        })
                        .boxed()
                }
            }
        };
        // The stream holds the source: an SST that compaction replaced meanwhile is
        // deleted only when its last holder lets go, and that may be this stream.
        let schema = Arc::clone(schema);
        let held = source.clone();
        Ok(batches
            .and_then(move |b| {
                let _held = &held;
                futures::future::ready(align(&b, &schema))
            })
            .boxed())
    }

    /// What to read of an SST for this scan: `columns` (all if `None`), the scan's
    /// range, and the rows its tag filters may want.
    fn sst_want<'a>(&'a self, columns: Option<&'a [String]>) -> reader::Want<'a> {
        reader::Want {
            columns,
            range: self.range,
            tag_values: &self.tag_values,
            predicate: self.tag_predicate.as_ref(),
            rows: None,
            fields: None,
            metrics: &self.metrics,
        }
    }

    /// The columns to read for `columns` (all if `None`): plus `time`, and with
    /// `tombstones` every tag, which their predicates read (callers align the batches
    /// to their schema, which drops them again).
    fn wanted(&self, columns: Option<&[String]>, tombstones: bool) -> Option<Vec<String>> {
        let mut wanted: Option<Vec<String>> = columns.map(|c| c.to_vec());
        if let Some(w) = &mut wanted {
            if !w.iter().any(|c| c == TIME_COLUMN) {
                w.push(TIME_COLUMN.to_string());
            }
            if tombstones {
                for t in &self.schema.tags {
                    if !w.contains(t) {
                        w.push(t.clone());
                    }
                }
            }
        }
        wanted
    }

    /// The rows of `source` in range; `columns` limits the columns (plus `time`).
    async fn load(&self, source: &Source, columns: Option<&[String]>) -> Result<Vec<RecordBatch>> {
        let tombs = self.tombstones_for(source);
        let wanted = self.wanted(columns, !tombs.is_empty());
        let batches = match source {
            Source::Mem(m, ..) => {
                let b = merged_batch_where(
                    &[&m.mem],
                    &m.schema,
                    self.range,
                    wanted.as_deref(),
                    self.tag_predicate.as_ref(),
                )?;
                b.into_iter().collect()
            }
            Source::Sst(f) => {
                // Skipping a series' rows is safe in merges too: every version of a
                // key has the same tag values, so all of them are skipped together.
                let want = self.sst_want(wanted.as_deref());
                reader::read(&self.store, f.meta(), &self.cache, want).await?
            }
        };
        if tombs.is_empty() {
            return Ok(batches);
        }
        batches
            .iter()
            .map(|b| crate::delete::filter_batch(b, &tombs))
            .collect()
    }
}

/// Group sources whose time bounds overlap (transitively), keeping source order
/// (oldest first) inside each group; groups come out ordered by time.
fn overlap_groups(sources: Vec<Source>) -> Vec<Vec<Source>> {
    let mut indexed: Vec<(usize, Source)> = sources.into_iter().enumerate().collect();
    indexed.sort_by_key(|(_, s)| s.bounds().0);
    let mut groups: Vec<(i64, Vec<(usize, Source)>)> = Vec::new();
    for (i, s) in indexed {
        let (lo, hi) = s.bounds();
        match groups.last_mut() {
            Some((end, g)) if lo <= *end => {
                *end = (*end).max(hi);
                g.push((i, s));
            }
            _ => groups.push((hi, vec![(i, s)])),
        }
    }
    groups
        .into_iter()
        .map(|(_, mut g)| {
            g.sort_by_key(|(i, _)| *i);
            g.into_iter().map(|(_, s)| s).collect()
        })
        .collect()
}

/// Inclusive time ranges covered by at least two of `sources`, sorted and disjoint.
fn contested_ranges(sources: &[Source]) -> Vec<(i64, i64)> {
    let mut pairs = Vec::new();
    for (i, a) in sources.iter().enumerate() {
        let (alo, ahi) = a.bounds();
        for b in &sources[i + 1..] {
            let (blo, bhi) = b.bounds();
            let (lo, hi) = (alo.max(blo), ahi.min(bhi));
            if lo <= hi {
                pairs.push((lo, hi));
            }
        }
    }
    pairs.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(pairs.len());
    for (lo, hi) in pairs {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Split `batch` into the rows whose time falls in one of `ranges` and the others.
fn split_by_ranges(
    batch: &RecordBatch,
    ranges: &[(i64, i64)],
) -> Result<(RecordBatch, RecordBatch)> {
    use arrow::array::{BooleanArray, TimestampNanosecondArray};
    let times = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| crate::error::Error::InvalidInput("batch without a time column".into()))?;
    let inside: BooleanArray = times
        .values()
        .iter()
        .map(|t| {
            // The last range starting at or before t.
            let idx = ranges.partition_point(|(lo, _)| lo <= t);
            Some(idx > 0 && *t <= ranges[idx - 1].1)
        })
        .collect();
    let outside = arrow::compute::not(&inside)?;
    Ok((
        arrow::compute::filter_record_batch(batch, &inside)?,
        arrow::compute::filter_record_batch(batch, &outside)?,
    ))
}

/// Reshape `batch` to `schema`: same columns in the same order, missing ones as nulls,
/// types cast where the file differs (e.g. a tag stored as plain strings).
pub(crate) fn align(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let col = match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Arc::clone(c),
            Some(c) => cast(c, f.data_type())?,
            None => new_null_array(f.data_type(), batch.num_rows()),
        };
        columns.push(col);
    }
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}
