//! Reading an SST back as Arrow batches: fetch the object through the io-bound store,
//! decode (on the caller's runtime, the `query` runtime for queries), project and filter
//! by time.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, TimestampNanosecondArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::SstMeta;
use crate::error::{Error, Result};
use crate::memtable::TimeRange;
use crate::schema::TIME_COLUMN;

/// Fetch the whole object (SSTs are bounded by the flush threshold).
pub(crate) async fn fetch(store: &Arc<dyn ObjectStore>, meta: &SstMeta) -> Result<Bytes> {
    let result = store
        .get(&meta.object_path())
        .await
        .map_err(|source| Error::ObjectStore {
            op: "get SST",
            source,
        })?;
    result.bytes().await.map_err(|source| Error::ObjectStore {
        op: "read SST",
        source,
    })
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
