//! Encoding a sorted, deduplicated record batch as a Parquet SST (CPU only; runs on
//! the `flush` or `compact` runtime).
//!
//! Encoding choices: zstd for floats and strings, lz4 (`LZ4_RAW`) for `time`, integer
//! fields and tags, whose encodings leave zstd little to find (no compression at all
//! in files of fewer than [`COMPRESS_FROM_ROWS`] rows); page-level statistics (min/max
//! per page and row group, used for pruning); dictionary encoding for tags and string fields;
//! `DELTA_BINARY_PACKED` without dictionary for `time` and integer fields (rows are
//! sorted by series then time, so deltas are small); `BYTE_STREAM_SPLIT` for floats.
//! The file records its sort order (tags, then time) as Parquet sorting columns, and
//! its series index (each series' row range and tag values, [`super::series_index`])
//! in the key-value metadata.

use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::config::IntegerCompression;
use crate::error::{Error, Result};

/// When an SST upload switches to multipart, and the size of its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UploadOptions {
    pub(crate) multipart_threshold: usize,
    pub(crate) part_size: usize,
}

/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Upload an encoded SST: one PUT up to the threshold, multipart above it (parts sent
/// a few at a time; a failed upload is aborted so the store drops its parts). The
/// store is io-bound, so the caller only waits.
pub(crate) async fn upload(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    bytes: Bytes,
    opts: UploadOptions,
    op: &'static str,
) -> Result<()> {
    let err = |source| Error::ObjectStore { op, source };
    if bytes.len() <= opts.multipart_threshold {
        store
            .put(path, PutPayload::from(bytes))
            .await
            .map_err(err)?;
        return Ok(());
    }
    let part_size = opts.part_size.max(1);
    let mut upload = store.put_multipart(path).await.map_err(err)?;
    // Parts are numbered in the order put_part is called; the futures run later.
    let parts: Vec<_> = (0..bytes.len())
        .step_by(part_size)
        .map(|start| {
            let end = (start + part_size).min(bytes.len());
            upload.put_part(PutPayload::from(bytes.slice(start..end)))
        })
        .collect();
    let sent: std::result::Result<Vec<()>, _> = futures::stream::iter(parts)
        .buffer_unordered(PARTS_IN_FLIGHT)
        .try_collect()
        .await;
    let done = match sent {
        Ok(_) => upload.complete().await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = done {
        if let Err(abort) = upload.abort().await {
            tracing::warn!(%path, error = %abort, "aborting a failed multipart upload failed");
        }
        return Err(err(e));
    }
    Ok(())
}

/// Files with fewer rows are written uncompressed: zstd cannot shrink a column chunk
/// of a few values, and setting up its context for every column of every file was a
/// third of the CPU of flushing 20,000 one-row tables (issue 23's profile).
pub(crate) const COMPRESS_FROM_ROWS: usize = 128;

/// zstd-compress `data` (small metadata: the series index, the last rows) with this
/// thread's reused context instead of a new one per call (a new one allocates and
/// zeroes its workspace, which costs more than compressing a small file's metadata).
pub(crate) fn zstd_compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    use std::cell::RefCell;
    thread_local! {
        static CONTEXT: RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { RefCell::new(None) };
    }
    CONTEXT.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match slot.as_mut() {
            Some(c) => {
                c.set_compression_level(level)?;
                c
            }
            None => slot.insert(zstd::bulk::Compressor::new(level)?),
        };
        compressor.compress(data)
    })
}

/// Most rows per data page (checked every 1024 rows, Parquet's write batch size).
pub(crate) const PAGE_ROWS: usize = 8 * 1024;

/// Parquet writer settings for SSTs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncodeOptions {
    pub(crate) row_group_size: usize,
    pub(crate) zstd_level: i32,
    pub(crate) integers: IntegerCompression,
    /// Most rows per data page (`storage.page_rows`).
    pub(crate) page_rows: usize,
}

impl EncodeOptions {
    /// The defaults of `[storage]`, with `row_group_size` rows per row group.
    #[cfg(test)]
    pub(crate) fn test(row_group_size: usize) -> Self {
        Self {
            row_group_size,
            zstd_level: 3,
            integers: IntegerCompression::Lz4,
            page_rows: PAGE_ROWS,
        }
    }
}

/// About this many rows are handed to the Parquet writer at a time: a multiple of its
/// write batches, so pages end where they would for the whole batch.
const WRITE_ROWS: usize = 8192;

/// The writer's write batch: it checks the page row limit once per batch, so a batch
/// must not be larger than a page.
fn write_batch_rows(page_rows: usize) -> usize {
    page_rows.clamp(1, 1024)
}

/// Encode `batches` (all with the same schema, already sorted) into one Parquet file.
pub(crate) fn encode(batches: &[RecordBatch], opts: EncodeOptions) -> Result<Bytes> {
    let batch = write_batch_rows(opts.page_rows);
    encode_in_slices(batches, opts, (WRITE_ROWS / batch).max(1) * batch)
}

/// [`encode`], handing the writer at most `slice_rows` rows at a time.
fn encode_in_slices(
    batches: &[RecordBatch],
    opts: EncodeOptions,
    slice_rows: usize,
) -> Result<Bytes> {
    let Some(first) = batches.first() else {
        return Ok(Bytes::new());
    };
    let schema = first.schema();
    let level = ZstdLevel::try_new(opts.zstd_level).unwrap_or_default();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let compression = if rows < COMPRESS_FROM_ROWS {
        Compression::UNCOMPRESSED
    } else {
        Compression::ZSTD(level)
    };
    // Delta-packed integers and dictionary keys are already near their entropy: zstd
    // saves about 6 % on them, lz4 as much on `time`, and a zstd column chunk costs its
    // reader a new context (four CPUID instructions, each a VM exit on a virtual
    // machine) per query. Floats and strings keep zstd, which saves 25-40 % on them.
    let light = match (compression, opts.integers) {
        (Compression::UNCOMPRESSED, _) | (_, IntegerCompression::Zstd) => compression,
        (_, IntegerCompression::Lz4) => Compression::LZ4_RAW,
    };
    let row_group_rows = opts.row_group_size.max(1024);
    let page_rows = opts.page_rows.max(1);
    let mut props = WriterProperties::builder()
        .set_compression(compression)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows))
        // Smaller pages than Parquet's 20 Ki rows, so a series' row range (selected
        // through the series index) decodes less of its neighbours' data; the cost is
        // a larger page index (measured in docs/benchmarks.md, "Page size").
        .set_data_page_row_count_limit(page_rows)
        .set_write_batch_size(write_batch_rows(page_rows));
    let mut sorting = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let col = ColumnPath::from(f.name().as_str());
        match f.data_type() {
            DataType::Dictionary(_, _) => {
                // Series without a tag sort before those with it (memtable::merged_batch).
                sorting.push(SortingColumn {
                    column_idx: i as i32,
                    descending: false,
                    nulls_first: true,
                });
                props = props.set_column_compression(col, light);
            }
            DataType::Int64 | DataType::UInt64 | DataType::Timestamp(_, _) => {
                props = props
                    .set_column_dictionary_enabled(col.clone(), false)
                    .set_column_compression(col.clone(), light)
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
    // In slices, so a compaction thread reaches a yield point every few
    // thousand rows (`bulkhead_runtime::yield_point`). A slice never crosses a row group
    // boundary, and within a row group slices start at multiples of `slice_rows` (a
    // multiple of the writer's batches): the file is byte for byte the one a single
    // `write` per batch gives (tested).
    let mut written = 0usize;
    for b in batches {
        let mut offset = 0;
        while offset < b.num_rows() {
            let to_boundary = row_group_rows - written % row_group_rows;
            let len = slice_rows.min(to_boundary).min(b.num_rows() - offset);
            writer.write(&b.slice(offset, len))?;
            offset += len;
            written += len;
            bulkhead_runtime::yield_point();
        }
    }
    if let Some(index) = super::series_index::SeriesIndex::build(batches) {
        writer.append_key_value_metadata(KeyValue::new(
            super::series_index::KEY.to_string(),
            index.encode(),
        ));
        let last = super::last_rows::build(batches, &index)?;
        writer.append_key_value_metadata(KeyValue::new(
            super::last_rows::KEY.to_string(),
            super::last_rows::encode(&last)?,
        ));
    }
    writer.close()?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{DictionaryArray, Float64Array, Int64Array, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Int32Type, Schema, TimeUnit};

    use super::*;

    /// `rows` sorted rows of 50 series with noisy values, from a seeded generator.
    fn batch(rows: usize, seed: u64) -> RecordBatch {
        let mut x = seed;
        let mut next = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let per_series = rows.div_ceil(50);
        let host: DictionaryArray<Int32Type> = (0..rows)
            .map(|i| format!("host_{:02}", i / per_series))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect();
        let time: Vec<i64> = (0..rows)
            .map(|i| (i % per_series) as i64 * 10_000_000_000)
            .collect();
        let usage: Vec<f64> = (0..rows).map(|_| next() as f64 / 1e6).collect();
        let count: Vec<i64> = (0..rows).map(|_| next() as i64 % 1000).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new_dictionary("host", DataType::Int32, DataType::Utf8, true),
            Field::new("usage", DataType::Float64, true),
            Field::new("count", DataType::Int64, true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(host),
                Arc::new(Float64Array::from(usage)),
                Arc::new(Int64Array::from(count)),
                Arc::new(TimestampNanosecondArray::from(time)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn writing_in_slices_gives_the_same_file_as_whole_batches() {
        // Row groups that are not a multiple of the slice, and batches that end inside
        // row groups, so slices meet both kinds of boundary.
        for (row_group_size, seeds) in [
            (10_000, vec![(25_000, 1), (13_333, 2)]),
            (262_144, vec![(70_001, 3)]),
        ] {
            let batches: Vec<RecordBatch> = seeds.iter().map(|&(n, s)| batch(n, s)).collect();
            let opts = EncodeOptions::test(row_group_size);
            let whole = encode_in_slices(&batches, opts, usize::MAX).unwrap();
            let sliced = encode(&batches, opts).unwrap();
            assert!(
                whole == sliced,
                "row groups of {row_group_size}: the files differ"
            );
            let reader =
                parquet::file::serialized_reader::SerializedFileReader::new(sliced).unwrap();
            let rows: usize = seeds.iter().map(|&(n, _)| n).sum();
            assert_eq!(
                parquet::file::reader::FileReader::metadata(&reader)
                    .file_metadata()
                    .num_rows() as usize,
                rows
            );
        }
    }

    #[test]
    fn zstd_only_where_it_pays_and_nothing_in_tiny_files() {
        use crate::config::IntegerCompression;
        use parquet::file::reader::FileReader;
        let codecs = |rows: usize, integers: IntegerCompression| {
            let opts = EncodeOptions {
                integers,
                ..EncodeOptions::test(262_144)
            };
            let bytes = encode(&[batch(rows, 7)], opts).unwrap();
            let reader =
                parquet::file::serialized_reader::SerializedFileReader::new(bytes).unwrap();
            let rg = reader.metadata().row_group(0).clone();
            let by_name: Vec<(String, Compression)> = rg
                .columns()
                .iter()
                .map(|c| (c.column_path().string(), c.compression()))
                .collect();
            // Every value reads back (lz4 and zstd chunks side by side).
            let read: usize =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    encode(&[batch(rows, 7)], opts).unwrap(),
                )
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .sum();
            assert_eq!(read, rows);
            by_name
        };
        // (The level is not stored in the file: it reads back as zstd's default.)
        let got = codecs(10_000, IntegerCompression::Lz4);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["host", "usage", "count", "time"]);
        assert!(matches!(
            got.iter().map(|(_, c)| *c).collect::<Vec<_>>()[..],
            [
                Compression::LZ4_RAW,
                Compression::ZSTD(_),
                Compression::LZ4_RAW,
                Compression::LZ4_RAW
            ]
        ));
        // `storage.integer_compression = "zstd"`: zstd everywhere.
        assert!(
            codecs(10_000, IntegerCompression::Zstd)
                .iter()
                .all(|(_, c)| matches!(c, Compression::ZSTD(_)))
        );
        assert!(
            codecs(COMPRESS_FROM_ROWS - 1, IntegerCompression::Lz4)
                .iter()
                .all(|(_, c)| *c == Compression::UNCOMPRESSED)
        );
    }

    #[test]
    fn pages_hold_at_most_page_rows() {
        use parquet::file::reader::FileReader;
        use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
        for page_rows in [300, 2048, PAGE_ROWS] {
            let opts = EncodeOptions {
                page_rows,
                ..EncodeOptions::test(262_144)
            };
            let bytes = encode(&[batch(20_000, 5)], opts).unwrap();
            let reader = SerializedFileReader::new_with_options(
                bytes,
                ReadOptionsBuilder::new().with_page_index().build(),
            )
            .unwrap();
            let index = reader.metadata().offset_index().expect("page index");
            for column in &index[0] {
                let starts: Vec<i64> = column
                    .page_locations()
                    .iter()
                    .map(|p| p.first_row_index)
                    .chain([20_000])
                    .collect();
                let largest = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
                assert!(
                    largest <= page_rows as i64,
                    "page_rows {page_rows}: a page of {largest} rows"
                );
                assert!(
                    starts.len() > 20_000 / page_rows,
                    "page_rows {page_rows}: only {} pages",
                    starts.len() - 1
                );
            }
        }
    }
}
