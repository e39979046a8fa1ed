//! Bulkhead's own session settings, `bulkhead.*` in DataFusion's configuration: the
//! server sets them from its config when it builds a session, and a session may change
//! them (`SET bulkhead.scan_tasks = 0`).

use datafusion::common::config::{ConfigExtension, ConfigOptions};
use datafusion::common::extensions_options;

/// [`BulkheadOptions::scan_tasks_min_rows`] unless configured.
pub const DEFAULT_SCAN_TASKS_MIN_ROWS: u64 = 65_536;

extensions_options! {
    /// Settings of Bulkhead's scans, per session.
    pub struct BulkheadOptions {
        /// Time groups one large scan decodes at once on tasks of its own
        /// (`bulkhead_engine::ScanRequest::decode_tasks`); 0 = none.
        pub scan_tasks: usize, default = 0
        /// Scans estimated to read fewer rows than this decode in the query's task:
        /// for them a hand-off to another thread costs more than it saves.
        pub scan_tasks_min_rows: u64, default = DEFAULT_SCAN_TASKS_MIN_ROWS
    }
}

impl ConfigExtension for BulkheadOptions {
    const PREFIX: &'static str = "bulkhead";
}

impl BulkheadOptions {
    pub(crate) fn new(scan_tasks: usize, scan_tasks_min_rows: u64) -> Self {
        Self {
            scan_tasks,
            scan_tasks_min_rows,
        }
    }

    /// A session's options (the defaults, `scan_tasks` 0, when it has none).
    pub(crate) fn of(options: &ConfigOptions) -> Self {
        options
            .extensions
            .get::<Self>()
            .cloned()
            .unwrap_or_default()
    }
}
