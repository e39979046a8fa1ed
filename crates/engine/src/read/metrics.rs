//! What one scan read and skipped, counted while it runs, for `EXPLAIN ANALYZE` and
//! for tests that check the read path decodes what the query needs and little else.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one scan, shared by its SST reads (pass one in [`crate::ScanRequest`]).
#[derive(Debug, Default)]
pub struct ScanMetrics {
    pub(crate) ssts: AtomicU64,
    pub(crate) ssts_with_index: AtomicU64,
    pub(crate) metadata_cache_hits: AtomicU64,
    pub(crate) row_groups: AtomicU64,
    pub(crate) row_groups_skipped_time: AtomicU64,
    pub(crate) row_groups_skipped_stats: AtomicU64,
    pub(crate) row_groups_skipped_index: AtomicU64,
    pub(crate) series: AtomicU64,
    pub(crate) series_matched: AtomicU64,
    pub(crate) pages: AtomicU64,
    pub(crate) pages_skipped: AtomicU64,
    pub(crate) rows: AtomicU64,
    pub(crate) rows_skipped_index: AtomicU64,
    pub(crate) rows_skipped_time_pages: AtomicU64,
    pub(crate) rows_selected: AtomicU64,
    pub(crate) rows_filtered_time: AtomicU64,
    pub(crate) rows_filtered_field: AtomicU64,
    pub(crate) rows_output: AtomicU64,
    pub(crate) last_rows: AtomicU64,
    pub(crate) groups_on_tasks: AtomicU64,
}

/// A copy of [`ScanMetrics`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanMetricsSnapshot {
    /// SSTs opened.
    pub ssts: u64,
    /// Of those, SSTs whose series index was used to select rows.
    pub ssts_with_index: u64,
    /// SSTs whose metadata (footer, page index, series index) came from the cache.
    pub metadata_cache_hits: u64,
    /// Row groups in the SSTs opened, and those skipped by time statistics, by tag
    /// statistics (SSTs without a series index) and by the series index.
    pub row_groups: u64,
    pub row_groups_skipped_time: u64,
    pub row_groups_skipped_stats: u64,
    pub row_groups_skipped_index: u64,
    /// Series in the indexed SSTs, and those the tag predicate may match.
    pub series: u64,
    pub series_matched: u64,
    /// Data pages of the projected columns in the row groups read, and those holding no
    /// selected row (never fetched or decoded).
    pub pages: u64,
    pub pages_skipped: u64,
    /// Rows in the SSTs opened.
    pub rows: u64,
    /// Rows skipped by the series index, and by the time column's page statistics.
    pub rows_skipped_index: u64,
    pub rows_skipped_time_pages: u64,
    /// Rows handed to the Parquet decoder (their `time` is decoded).
    pub rows_selected: u64,
    /// Selected rows dropped by the exact time filter inside the decoder (their other
    /// columns are not materialized).
    pub rows_filtered_time: u64,
    /// Rows dropped by the scan's field filter (inside the decoder for SSTs: the
    /// columns it does not compare are not materialized for them; after decoding for
    /// memtables and merged sources).
    pub rows_filtered_field: u64,
    /// Rows the SST reads returned.
    pub rows_output: u64,
    /// Latest rows of series taken from SSTs' last-row metadata (lastpoint fast path),
    /// without reading a data page.
    pub last_rows: u64,
    /// Time groups (sources whose time ranges overlap) decoded by tasks of their own,
    /// beside the query's task ([`crate::ScanRequest::decode_tasks`]).
    pub groups_on_tasks: u64,
}

impl ScanMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> ScanMetricsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ScanMetricsSnapshot {
            ssts: g(&self.ssts),
            ssts_with_index: g(&self.ssts_with_index),
            metadata_cache_hits: g(&self.metadata_cache_hits),
            row_groups: g(&self.row_groups),
            row_groups_skipped_time: g(&self.row_groups_skipped_time),
            row_groups_skipped_stats: g(&self.row_groups_skipped_stats),
            row_groups_skipped_index: g(&self.row_groups_skipped_index),
            series: g(&self.series),
            series_matched: g(&self.series_matched),
            pages: g(&self.pages),
            pages_skipped: g(&self.pages_skipped),
            rows: g(&self.rows),
            rows_skipped_index: g(&self.rows_skipped_index),
            rows_skipped_time_pages: g(&self.rows_skipped_time_pages),
            rows_selected: g(&self.rows_selected),
            rows_filtered_time: g(&self.rows_filtered_time),
            rows_filtered_field: g(&self.rows_filtered_field),
            rows_output: g(&self.rows_output),
            last_rows: g(&self.last_rows),
            groups_on_tasks: g(&self.groups_on_tasks),
        }
    }
}

impl ScanMetricsSnapshot {
    /// `(name, value)` of every counter, for `EXPLAIN ANALYZE`.
    pub fn named(&self) -> [(&'static str, u64); 20] {
        [
            ("ssts_opened", self.ssts),
            ("ssts_with_series_index", self.ssts_with_index),
            ("metadata_cache_hits", self.metadata_cache_hits),
            ("row_groups", self.row_groups),
            ("row_groups_skipped_by_time", self.row_groups_skipped_time),
            ("row_groups_skipped_by_stats", self.row_groups_skipped_stats),
            (
                "row_groups_skipped_by_series_index",
                self.row_groups_skipped_index,
            ),
            ("series", self.series),
            ("series_matched", self.series_matched),
            ("pages", self.pages),
            ("pages_skipped", self.pages_skipped),
            ("sst_rows", self.rows),
            ("rows_skipped_by_series_index", self.rows_skipped_index),
            ("rows_skipped_by_time_pages", self.rows_skipped_time_pages),
            ("rows_decoded", self.rows_selected),
            ("rows_filtered_by_time", self.rows_filtered_time),
            ("rows_filtered_by_field", self.rows_filtered_field),
            ("rows_read", self.rows_output),
            ("rows_from_last_row_metadata", self.last_rows),
            ("groups_decoded_on_tasks", self.groups_on_tasks),
        ]
    }
}
