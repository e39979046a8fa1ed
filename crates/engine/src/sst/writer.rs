//! Encoding a sorted, deduplicated record batch as a Parquet SST (CPU only; runs on
//! the `flush` or `compact` runtime).
//!
//! Encoding choices: zstd for every column; page-level statistics (min/max per page and
//! row group, used for pruning); dictionary encoding for tags and string fields;
//! `DELTA_BINARY_PACKED` without dictionary for `time` and integer fields (rows are
//! sorted by series then time, so deltas are small); `BYTE_STREAM_SPLIT` for floats.
//! The file records its sort order (tags, then time) as Parquet sorting columns.

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::Result;

/// Parquet writer settings for SSTs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncodeOptions {
    pub(crate) row_group_size: usize,
    pub(crate) zstd_level: i32,
}

/// Encode `batches` (all with the same schema, already sorted) into one Parquet file.
pub(crate) fn encode(batches: &[RecordBatch], opts: EncodeOptions) -> Result<Bytes> {
    let Some(first) = batches.first() else {
        return Ok(Bytes::new());
    };
    let schema = first.schema();
    let level = ZstdLevel::try_new(opts.zstd_level).unwrap_or_default();
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(opts.row_group_size.max(1024)));
    let mut sorting = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let col = ColumnPath::from(f.name().as_str());
        match f.data_type() {
            DataType::Dictionary(_, _) => {
                sorting.push(SortingColumn {
                    column_idx: i as i32,
                    descending: false,
                    nulls_first: true,
                });
            }
            DataType::Int64 | DataType::UInt64 | DataType::Timestamp(_, _) => {
                props = props
                    .set_column_dictionary_enabled(col.clone(), false)
                    .set_column_encoding(col, Encoding::DELTA_BINARY_PACKED);
            }
            DataType::Float64 => {
                props = props
                    .set_column_dictionary_enabled(col.clone(), false)
                    .set_column_encoding(col, Encoding::BYTE_STREAM_SPLIT);
            }
            _ => {}
        }
        if matches!(f.data_type(), DataType::Timestamp(_, _)) {
            sorting.push(SortingColumn {
                column_idx: i as i32,
                descending: false,
                nulls_first: false,
            });
        }
    }
    let props = props.set_sorting_columns(Some(sorting)).build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props))?;
    for b in batches {
        writer.write(b)?;
    }
    writer.close()?;
    Ok(Bytes::from(out))
}
