//! Reading an SST back as Arrow batches.
//!
//! Queries use [`read`]: ranged GETs through the io-bound store, the Parquet footer
//! first, then only the column chunks of the projected columns in the row groups whose
//! time statistics overlap the range. Decoding runs on the caller's runtime (`query`).
//! Compaction needs every column of every row, so it [`fetch`]es the whole object on
//! `io` first and [`decode`]s it on `compact` afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, TimestampNanosecondArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::FutureExt;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData};
use parquet::file::statistics::Statistics;

use super::SstMeta;
use crate::error::{Error, Result};
use crate::memtable::TimeRange;
use crate::schema::TIME_COLUMN;

/// Fetch the whole object (compaction inputs; bounded by the compaction budget).
pub(crate) async fn fetch(store: &Arc<dyn ObjectStore>, meta: &SstMeta) -> Result<Bytes> {
    let result = store
        .get(&meta.object_path())
        .await
        .map_err(|source| Error::ObjectStore {
            op: "read SST",
            source,
        })?;
    result.bytes().await.map_err(|source| Error::ObjectStore {
        op: "read SST",
        source,
    })
}

/// Bytes fetched with the first ranged GET: enough for the footer and metadata of
/// typical SSTs, so opening a file costs one request.
const FOOTER_HINT: usize = 64 * 1024;

/// What [`read`] keeps of an SST.
pub(crate) struct Want<'a> {
    /// The columns named here that the file has (all if `None`).
    pub(crate) columns: Option<&'a [String]>,
    /// Rows in this range (exactly).
    pub(crate) range: TimeRange,
    /// Row groups whose tag statistics admit one of these values per tag (pruning only:
    /// rows of other values in a kept row group are returned).
    pub(crate) tag_values: &'a BTreeMap<String, BTreeSet<String>>,
}

/// Read the rows `want`s of `meta`, with ranged GETs: footer first, then only the
/// column chunks of the row groups that time and tag statistics do not rule out.
pub(crate) async fn read(
    store: &Arc<dyn ObjectStore>,
    meta: &SstMeta,
    want: Want<'_>,
) -> Result<Vec<RecordBatch>> {
    let Want {
        columns,
        range,
        tag_values,
    } = want;
    let reader = RangedReader {
        store: Arc::clone(store),
        path: meta.object_path(),
        size: meta.bytes,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let time_idx = builder
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.name() == TIME_COLUMN);
    let tag_columns: Vec<(usize, &BTreeSet<String>)> = tag_values
        .iter()
        .filter_map(|(tag, values)| {
            let columns = builder.parquet_schema().columns();
            let i = columns.iter().position(|c| c.name() == tag)?;
            Some((i, values))
        })
        .collect();
    let row_groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| time_idx.is_none_or(|i| may_overlap(rg, i, range)))
        .filter(|(_, rg)| {
            tag_columns
                .iter()
                .all(|(i, values)| may_hold_any(rg, *i, values))
        })
        .map(|(i, _)| i)
        .collect();
    if row_groups.is_empty() {
        return Ok(Vec::new());
    }
    let mask = match columns {
        Some(cols) => {
            let indices: Vec<usize> = builder
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| cols.iter().any(|c| c == f.name()))
                .map(|(i, _)| i)
                .collect();
            ProjectionMask::roots(builder.parquet_schema(), indices)
        }
        None => ProjectionMask::all(),
    };
    let stream = builder
        .with_row_groups(row_groups)
        .with_projection(mask)
        .with_batch_size(8192)
        .build()?;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let batch = filter_time(&batch, range)?;
        if batch.num_rows() > 0 {
            out.push(batch);
        }
    }
    Ok(out)
}

/// Parquet's async reader over our store: every read is a ranged GET (the store is
/// io-bound, so the requests run on `io` while the caller just awaits).
struct RangedReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
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
            self.store
                .get_range(&self.path, range)
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
                .with_metadata_options(options.map(|o| o.metadata_options().clone()))
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
    let reader = builder.with_batch_size(8192).build()?;
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
