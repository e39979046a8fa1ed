//! Reading an SST back as Arrow batches.
//!
//! Queries use [`read`]: ranged GETs through the io-bound store, the Parquet footer,
//! page index and series index first ([`open`], cached per file), then only the pages
//! of the projected columns that hold selected rows. Decoding runs on the caller's
//! runtime (`query`).
//! Compaction needs every column of every row, so it [`fetch`]es the whole object on
//! `io` first and [`decode`]s it on `compact` afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Array, ArrayRef, BooleanArray, TimestampNanosecondArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicate, ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions,
    ParquetRecordBatchReaderBuilder, RowFilter,
};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData,
};
use parquet::file::statistics::Statistics;

use super::SstMeta;
use super::cache::{MetadataCache, SstMetadata};
use super::index_tags::{KeptRows, RowFeed, index_tag_columns};
use super::last_rows;
use super::selection;
use super::series_index::{self, SeriesIndex};
use crate::error::{Error, Result};
use crate::memtable::TimeRange;
use crate::read::field_filter::FieldFilter;
use crate::read::metrics::ScanMetrics;
use crate::read::predicate::TagPredicate;
use crate::schema::TIME_COLUMN;

/// Fetch the whole object (compaction inputs; bounded by the compaction budget).
pub(crate) async fn fetch(store: &Arc<dyn ObjectStore>, meta: &SstMeta) -> Result<Bytes> {
    let err = |source| Error::ObjectStore {
        op: "read SST",
        source,
    };
    if let Some(off) = meta.pack_offset {
        // A pack member: its own bytes only.
        return store
            .get_range(&meta.object_path(), off..off + meta.bytes)
            .await
            .map_err(err);
    }
    let result = store.get(&meta.object_path()).await.map_err(err)?;
    result.bytes().await.map_err(err)
}

/// Bytes fetched with the first ranged GET: enough for the footer, the page index and
/// the series index of typical SSTs, so opening a file costs one request.
const FOOTER_HINT: usize = 256 * 1024;

/// Rows per decoded batch.
pub(crate) const BATCH_ROWS: usize = 8192;

/// What [`read`] keeps of an SST.
pub(crate) struct Want<'a> {
    /// The columns named here that the file has (all if `None`).
    pub(crate) columns: Option<&'a [String]>,
    /// Rows in this range (exactly).
    pub(crate) range: TimeRange,
    /// Row groups whose tag statistics admit one of these values per tag (pruning only,
    /// for SSTs without a series index).
    pub(crate) tag_values: &'a BTreeMap<String, BTreeSet<String>>,
    /// Series for which this may be TRUE (resolved against the SST's series index;
    /// the rows of other series are not read). `None`: every series.
    pub(crate) predicate: Option<&'a TagPredicate>,
    /// Read exactly these rows (file-wide, sorted, disjoint) instead of resolving
    /// `predicate`: e.g. the last row of each series, from the series index.
    pub(crate) rows: Option<Vec<Range<usize>>>,
    /// A filter the decoder may apply (when the series index chose the rows: the
    /// other columns are then decoded only for the rows that pass). The caller still
    /// filters what this returns. `None`: every row.
    pub(crate) fields: Option<&'a FieldFilter>,
    pub(crate) metrics: &'a Arc<ScanMetrics>,
}

/// The parsed metadata of `meta`'s SST: from `cache`, or read with ranged GETs (the
/// footer, page index and series index, usually in one request) and cached.
pub(crate) async fn open(
    store: &Arc<dyn ObjectStore>,
    meta: &SstMeta,
    cache: &MetadataCache,
    metrics: &ScanMetrics,
) -> Result<SstMetadata> {
    if let Some(m) = cache.get(&meta.cache_key()) {
        ScanMetrics::add(&metrics.metadata_cache_hits, 1);
        return Ok(m);
    }
    let mut reader = RangedReader {
        store: Arc::clone(store),
        path: meta.object_path(),
        offset: meta.offset(),
        size: meta.bytes,
    };
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let arrow = ArrowReaderMetadata::load_async(&mut reader, options).await?;
    let index = arrow
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == series_index::KEY))
        .and_then(|e| e.value.as_deref())
        .and_then(|text| match SeriesIndex::decode(text) {
            Ok(ix) if ix.rows() == meta.rows => Some(Arc::new(ix)),
            Ok(ix) => {
                tracing::warn!(path = %meta.path, index_rows = ix.rows(), rows = meta.rows,
                    "SST series index does not cover the file; reading without it");
                None
            }
            Err(e) => {
                tracing::warn!(path = %meta.path, error = %e, "reading an SST without its series index");
                None
            }
        });
    // The last row of each series (lastpoint); only alongside a valid index.
    let last_rows = index.as_ref().and_then(|ix| {
        let text = arrow
            .metadata()
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|e| e.key == last_rows::KEY)?
            .value
            .as_deref()?;
        match last_rows::decode(text) {
            Ok(rows) if rows.num_rows() == ix.series() => Some(rows),
            Ok(_) | Err(_) => {
                tracing::warn!(path = %meta.path, "SST last rows unreadable or not one per series; ignored");
                None
            }
        }
    });
    let opened = SstMetadata {
        arrow,
        index,
        last_rows,
    };
    cache.insert(&meta.cache_key(), opened.clone());
    Ok(opened)
}

/// [`read_stream`], collected: for reads of a few rows (the latest of each series)
/// and merges, which need the whole source anyway.
pub(crate) async fn read(
    store: &Arc<dyn ObjectStore>,
    meta: &SstMeta,
    cache: &MetadataCache,
    want: Want<'_>,
) -> Result<Vec<RecordBatch>> {
    read_stream(store, meta, cache, want)
        .await?
        .try_collect()
        .await
}

/// Read the rows `want`s of `meta`, with ranged GETs: the metadata (unless cached),
/// then only the pages of the projected columns that hold selected rows. Rows are
/// selected by row-group time and tag statistics, the series index (tag predicate)
/// and the time column's page statistics; the exact time filter then runs inside the
/// decoder, so the other columns of rows outside the range are never materialized.
///
/// The metadata is read before this returns; the rows stream out as they are
/// decoded, a batch of at most [`BATCH_ROWS`] at a time, with one row group's
/// projected column chunks fetched at a time. So a scan holds one row group's
/// compressed bytes and one decoded batch of an SST, never the whole file.
pub(crate) async fn read_stream(
    store: &Arc<dyn ObjectStore>,
    meta: &SstMeta,
    cache: &MetadataCache,
    want: Want<'_>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let Want {
        columns,
        range,
        tag_values,
        predicate,
        rows: only_rows,
        fields,
        metrics: m,
    } = want;
    let fields = fields.filter(|f| !f.is_empty());
    let opened = open(store, meta, cache, m).await?;
    let md = Arc::clone(opened.arrow.metadata());
    let parquet_schema = md.file_metadata().schema_descr();
    let time_idx = parquet_schema
        .columns()
        .iter()
        .position(|c| c.name() == TIME_COLUMN);
    ScanMetrics::add(&m.ssts, 1);
    ScanMetrics::add(&m.rows, md.file_metadata().num_rows().max(0) as usize);

    // Rows of the series the predicate may match (file-wide row numbers).
    let series_rows = match (predicate, &opened.index) {
        _ if only_rows.is_some() => only_rows,
        (Some(p), Some(ix)) if !p.is_unknown() => {
            let (ranges, matched) = ix.select(p);
            ScanMetrics::add(&m.ssts_with_index, 1);
            ScanMetrics::add(&m.series, ix.series());
            ScanMetrics::add(&m.series_matched, matched);
            Some(ranges)
        }
        _ => None,
    };
    let tag_columns: Vec<(usize, &BTreeSet<String>)> = if series_rows.is_some() {
        Vec::new() // the index is exact per series; statistics add nothing
    } else {
        tag_values
            .iter()
            .filter_map(|(tag, values)| {
                let i = parquet_schema
                    .columns()
                    .iter()
                    .position(|c| c.name() == tag)?;
                Some((i, values))
            })
            .collect()
    };

    // Per row group: skipped whole, or the row ranges (row-group relative) to read.
    let mut plan: Vec<(usize, Vec<Range<usize>>)> = Vec::new();
    let mut rg_start = 0usize;
    for (i, rg) in md.row_groups().iter().enumerate() {
        let n = rg.num_rows().max(0) as usize;
        let span = rg_start..rg_start + n;
        rg_start += n;
        ScanMetrics::add(&m.row_groups, 1);
        if time_idx.is_some_and(|t| !may_overlap(rg, t, range)) {
            ScanMetrics::add(&m.row_groups_skipped_time, 1);
            continue;
        }
        if !tag_columns
            .iter()
            .all(|(c, values)| may_hold_any(rg, *c, values))
        {
            ScanMetrics::add(&m.row_groups_skipped_stats, 1);
            continue;
        }
        let mut ranges: Vec<Range<usize>> = std::iter::once(0..n).collect();
        if let Some(rows) = &series_rows {
            ranges = selection::relative(rows, span);
            ScanMetrics::add(&m.rows_skipped_index, n - selection::count(&ranges));
            if ranges.is_empty() {
                ScanMetrics::add(&m.row_groups_skipped_index, 1);
                continue;
            }
        }
        if let Some(pages) = time_idx.and_then(|t| selection::time_pages(&md, i, t, range)) {
            let before = selection::count(&ranges);
            ranges = selection::intersect(&ranges, &pages);
            ScanMetrics::add(
                &m.rows_skipped_time_pages,
                before - selection::count(&ranges),
            );
            if ranges.is_empty() {
                ScanMetrics::add(&m.row_groups_skipped_time, 1);
                continue;
            }
        }
        plan.push((i, ranges));
    }
    if plan.is_empty() {
        return Ok(futures::stream::empty().boxed());
    }
    let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(
        RangedReader {
            store: Arc::clone(store),
            path: meta.object_path(),
            offset: meta.offset(),
            size: meta.bytes,
        },
        opened.arrow.clone(),
    );
    let selected: usize = plan.iter().map(|(_, r)| selection::count(r)).sum();
    // A compared field the file lacks is NULL in every row: no row can pass.
    if let Some(f) = fields
        && f.columns()
            .iter()
            .any(|c| builder.schema().index_of(c).is_err())
    {
        ScanMetrics::add(&m.rows_filtered_field, selected);
        return Ok(futures::stream::empty().boxed());
    }
    // Rows outside the range exist only if the range cuts the file's time bounds. When
    // it keeps a small part of the file's time span, the time filter runs inside the
    // decoder (other columns are materialized only for rows in range). When it keeps
    // most of a full scan, the fragmented selection would cost more than it saves; and
    // when the series index chose the rows, the time pages above already cut each run
    // to within a page of the range, so a second pass over the time column (its own
    // column chunk reader, zstd contexts and decode) costs more than the few extra rows
    // it would drop. In both cases rows are filtered after decoding.
    let cut = range.start > meta.min_time || range.last < meta.max_time;
    let late =
        cut && series_rows.is_none() && kept_share(range, meta.min_time, meta.max_time) <= 0.5;
    // Without a series index (files from before it), the tag predicate is applied to
    // the decoded tag values, so a scan returns the same rows from every source.
    let tag_filter = predicate.filter(|p| series_rows.is_none() && !p.is_unknown());
    // The field filter runs inside the decoder when the series index chose the rows
    // and the file stores every compared field with its constant's type; else only
    // the caller filters (after merging). Inside the decoder it costs a pass of its own over the
    // compared columns, which pays only when whole pages of the other columns hold
    // no passing row: likely among a few series' rows, rare in a scan of every
    // series, where a quarter of the rows passing at random cost 15 % more CPU
    // (high-cpu-all, `docs/benchmarks.md`). With tags built from the series index,
    // it must be the decoder's only filter: the rows it keeps are then the index
    // rows its masks say (`KeptRows`).
    let in_decoder = fields.filter(|f| {
        series_rows.is_some()
            && !late
            && tag_filter.is_none()
            && f.columns().iter().all(|c| {
                let ty = builder.schema().field_with_name(c).map(|x| x.data_type());
                ty.ok() == f.expected_type(c).as_ref()
            })
    });
    // With the series index choosing the rows, the projected tag columns are built
    // from the index (see `IndexTags`) and their pages are never fetched.
    let feed = match in_decoder {
        Some(_) => RowFeed::default(),
        None => RowFeed::of(file_rows(&md, &plan)),
    };
    let index_tags = match (&series_rows, &opened.index, columns) {
        (Some(_), Some(ix), Some(cols)) => {
            index_tag_columns(builder.schema(), ix, cols, feed.clone())
        }
        _ => None,
    };
    let (mask, leaves) = match columns {
        Some(cols) => {
            let indices: Vec<usize> = builder
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| cols.iter().any(|c| c == f.name()))
                .filter(|(i, _)| !index_tags.as_ref().is_some_and(|t| t.builds(*i)))
                .map(|(i, _)| i)
                .collect();
            let mask = ProjectionMask::roots(parquet_schema, indices);
            let leaves: Vec<usize> = (0..parquet_schema.num_columns())
                .filter(|&c| mask.leaf_included(c))
                .collect();
            (mask, leaves)
        }
        None => (
            ProjectionMask::all(),
            (0..parquet_schema.num_columns()).collect::<Vec<usize>>(),
        ),
    };
    let (pages, skipped) = selection::count_pages(&md, &plan, &leaves);
    ScanMetrics::add(&m.pages, pages);
    ScanMetrics::add(&m.pages_skipped, skipped);
    ScanMetrics::add(&m.rows_selected, selected);
    let row_groups: Vec<usize> = plan.iter().map(|(i, _)| *i).collect();
    let whole = plan
        .iter()
        .all(|(i, r)| r.len() == 1 && r[0] == (0..md.row_group(*i).num_rows().max(0) as usize));
    let mut builder = builder
        .with_row_groups(row_groups)
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS);
    if !whole {
        builder = builder.with_row_selection(selection::to_selection(&md, &plan));
    }
    let mut filters: Vec<Box<dyn ArrowPredicate>> = Vec::new();
    if let (Some(t), true) = (time_idx, late) {
        let predicate =
            ArrowPredicateFn::new(ProjectionMask::leaves(parquet_schema, [t]), move |b| {
                time_mask(b.column(0).as_ref(), range)
            });
        filters.push(Box::new(predicate));
    }
    if let Some(p) = tag_filter {
        let tags = p.tags();
        let leaves: Vec<usize> = (0..parquet_schema.num_columns())
            .filter(|&c| tags.contains(parquet_schema.column(c).name()))
            .collect();
        if leaves.is_empty() {
            // Every tag it names is unset in this file: the same answer for every row.
            if !p.may_match(|_| None) {
                return Ok(futures::stream::empty().boxed());
            }
        } else {
            let p = p.clone();
            let predicate =
                ArrowPredicateFn::new(ProjectionMask::leaves(parquet_schema, leaves), move |b| {
                    tag_mask(&b, &p)
                });
            filters.push(Box::new(predicate));
        }
    }
    let field_dropped = Arc::new(AtomicUsize::new(0));
    if let Some(f) = in_decoder {
        let names = f.columns();
        let leaves: Vec<usize> = (0..parquet_schema.num_columns())
            .filter(|&c| names.contains(parquet_schema.column(c).name()))
            .collect();
        let f = f.clone();
        let dropped = Arc::clone(&field_dropped);
        let mut kept = KeptRows::new(file_rows(&md, &plan), feed);
        let track = index_tags.is_some();
        let predicate =
            ArrowPredicateFn::new(ProjectionMask::leaves(parquet_schema, leaves), move |b| {
                let mask = f.mask(&b)?;
                dropped.fetch_add(mask.len() - mask.true_count(), Ordering::Relaxed);
                if track {
                    kept.push(&mask)?;
                }
                Ok(mask)
            });
        filters.push(Box::new(predicate));
    }
    if !filters.is_empty() {
        builder = builder.with_row_filter(RowFilter::new(filters));
    }
    let metrics = Arc::clone(m);
    let output = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&output);
    let mut index_tags = index_tags;
    let batches = builder
        .build()?
        .map_err(Error::from)
        .and_then(move |batch| {
            let batch = match &mut index_tags {
                Some(tags) => tags.add_to(batch),
                None => Ok(batch),
            };
            let batch = match batch {
                Ok(b) if cut && !late => filter_time(&b, range),
                other => other,
            };
            if let Ok(b) = &batch {
                counted.fetch_add(b.num_rows(), Ordering::Relaxed);
            }
            futures::future::ready(batch)
        })
        .try_filter(|b| futures::future::ready(b.num_rows() > 0));
    // Once the file is read: how many selected rows the time and field filters dropped.
    let tail = futures::stream::once(async move {
        let rows = output.load(Ordering::Relaxed);
        let by_field = field_dropped.load(Ordering::Relaxed);
        ScanMetrics::add(&metrics.rows_output, rows);
        ScanMetrics::add(&metrics.rows_filtered_field, by_field);
        ScanMetrics::add(
            &metrics.rows_filtered_time,
            selected.saturating_sub(rows + by_field),
        );
    })
    .filter_map(|()| futures::future::ready(None));
    Ok(batches.chain(tail).boxed())
}

/// The file-wide row ranges `plan` selects, in order.
fn file_rows(md: &ParquetMetaData, plan: &[(usize, Vec<Range<usize>>)]) -> Vec<Range<usize>> {
    let mut starts = Vec::with_capacity(md.num_row_groups());
    let mut at = 0usize;
    for rg in md.row_groups() {
        starts.push(at);
        at += rg.num_rows().max(0) as usize;
    }
    plan.iter()
        .flat_map(|(i, ranges)| {
            ranges
                .iter()
                .map(|r| starts[*i] + r.start..starts[*i] + r.end)
        })
        .collect()
}

/// The share of the inclusive span `[min, max]` that `range` keeps (0 to 1).
fn kept_share(range: TimeRange, min: i64, max: i64) -> f64 {
    let lo = range.start.max(min);
    let hi = range.last.min(max);
    if hi < lo {
        return 0.0;
    }
    let span = (max as f64 - min as f64) + 1.0;
    ((hi as f64 - lo as f64) + 1.0) / span
}

/// The rows of a `time` column inside `range`.
fn time_mask(col: &dyn Array, range: TimeRange) -> std::result::Result<BooleanArray, ArrowError> {
    let times = col
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .ok_or_else(|| ArrowError::CastError("SST time column has an unexpected type".into()))?;
    Ok(times
        .iter()
        .map(|t| Some(t.is_some_and(|t| range.contains(t))))
        .collect())
}

/// Parquet's async reader over our store: every read is a ranged GET (the store is
/// io-bound, so the requests run on `io` while the caller just awaits).
struct RangedReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// Where the file starts in the object (a pack member's offset; else 0): ranges
    /// are relative to the file.
    offset: u64,
    size: u64,
}

fn to_parquet(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for RangedReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let off = self.offset;
            self.store
                .get_range(&self.path, range.start + off..range.end + off)
                .await
                .map_err(to_parquet)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            let off = self.offset;
            let ranges: Vec<_> = ranges
                .into_iter()
                .map(|r| r.start + off..r.end + off)
                .collect();
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(to_parquet)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .with_prefetch_hint(Some(FOOTER_HINT))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Whether row group `rg` may hold times in `range`, by the min/max statistics of its
/// time column (leaf `time_idx`); without statistics it may.
fn may_overlap(rg: &RowGroupMetaData, time_idx: usize, range: TimeRange) -> bool {
    if range == TimeRange::ALL {
        return true;
    }
    match rg.column(time_idx).statistics() {
        Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
            (Some(&lo), Some(&hi)) => hi >= range.start && lo <= range.last,
            _ => true,
        },
        _ => true,
    }
}

/// Whether the row group's min/max statistics of string column `idx` admit one of
/// `values` (without statistics: yes). Min/max compare as bytes, like the writer's.
fn may_hold_any(rg: &RowGroupMetaData, idx: usize, values: &BTreeSet<String>) -> bool {
    match rg.column(idx).statistics() {
        Some(Statistics::ByteArray(s)) => match (s.min_bytes_opt(), s.max_bytes_opt()) {
            (Some(lo), Some(hi)) => values
                .iter()
                .any(|v| lo <= v.as_bytes() && v.as_bytes() <= hi),
            _ => true,
        },
        _ => true,
    }
}

/// Decode `bytes`, keeping the columns named in `columns` that the file has (all if
/// `None`) and the rows in `range`.
pub(crate) fn decode(
    bytes: Bytes,
    columns: Option<&[String]>,
    range: TimeRange,
) -> Result<Vec<RecordBatch>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let builder = match columns {
        Some(cols) => {
            let arrow_schema = Arc::clone(builder.schema());
            let indices: Vec<usize> = arrow_schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| cols.iter().any(|c| c == f.name()))
                .map(|(i, _)| i)
                .collect();
            let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
            builder.with_projection(mask)
        }
        None => builder,
    };
    let reader = builder.with_batch_size(BATCH_ROWS).build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let batch = filter_time(&batch, range)?;
        if batch.num_rows() > 0 {
            out.push(batch);
        }
    }
    Ok(out)
}

/// Per row of `batch` (tag columns), whether `pred` may be TRUE for its tag values.
fn tag_mask(
    batch: &RecordBatch,
    pred: &TagPredicate,
) -> std::result::Result<BooleanArray, ArrowError> {
    // Each tag column as plain strings (dictionary-encoded in files Bulkhead writes).
    let mut columns: Vec<(String, ArrayRef)> = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        columns.push((f.name().clone(), arrow::compute::cast(c, &DataType::Utf8)?));
    }
    let strings: Vec<(&str, &arrow::array::StringArray)> = columns
        .iter()
        .filter_map(|(n, c)| Some((n.as_str(), c.as_any().downcast_ref()?)))
        .collect();
    Ok((0..batch.num_rows())
        .map(|row| {
            Some(pred.may_match(|tag| {
                let (_, col) = strings.iter().find(|(n, _)| *n == tag)?;
                col.is_valid(row).then(|| col.value(row))
            }))
        })
        .collect())
}

/// Keep the rows of `batch` whose `time` lies in `range`.
pub(crate) fn filter_time(batch: &RecordBatch, range: TimeRange) -> Result<RecordBatch> {
    if range == TimeRange::ALL {
        return Ok(batch.clone());
    }
    let Some(idx) = batch.schema().index_of(TIME_COLUMN).ok() else {
        return Ok(batch.clone());
    };
    let times = batch
        .column(idx)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .ok_or_else(|| Error::Manifest("SST time column has an unexpected type".into()))?;
    if times.is_empty() {
        return Ok(batch.clone());
    }
    let mask: BooleanArray = times.iter().map(|t| t.map(|t| range.contains(t))).collect();
    Ok(filter_record_batch(batch, &mask)?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{DictionaryArray, StringArray};
    use arrow::datatypes::{Field, Int32Type, Schema};

    use super::*;

    /// Files without a series index filter decoded rows by the predicate, with SQL's
    /// three-valued logic, from plain and dictionary-encoded tag columns alike.
    #[test]
    fn tag_mask_judges_each_row_by_its_tags() {
        let host: DictionaryArray<Int32Type> = vec![Some("a"), Some("b"), None, Some("a")]
            .into_iter()
            .collect();
        let dc = StringArray::from(vec![Some("eu"), None, Some("us"), Some("us")]);
        let schema = Schema::new(vec![
            Field::new("host", host.data_type().clone(), true),
            Field::new("dc", DataType::Utf8, true),
        ]);
        let batch =
            RecordBatch::try_new(Arc::new(schema), vec![Arc::new(host), Arc::new(dc)]).unwrap();
        let eq = |t: &str, v: &str| TagPredicate::Eq(t.into(), v.into());
        let mask = |p: TagPredicate| -> Vec<bool> {
            tag_mask(&batch, &p)
                .unwrap()
                .iter()
                .map(|b| b == Some(true))
                .collect()
        };
        assert_eq!(mask(eq("host", "a")), [true, false, false, true]);
        // `!=` is NULL where the tag is unset: not kept.
        assert_eq!(
            mask(TagPredicate::Not(Box::new(eq("host", "a")))),
            [false, true, false, false]
        );
        assert_eq!(
            mask(TagPredicate::And(vec![eq("host", "a"), eq("dc", "us")])),
            [false, false, false, true]
        );
        assert_eq!(
            mask(TagPredicate::IsNull("dc".into())),
            [false, true, false, false]
        );
        // A tag the file lacks is unset.
        assert_eq!(mask(TagPredicate::IsNull("rack".into())), [true; 4]);
    }
}
