//! Query-layer counters exported at `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Files read and skipped by scans, and queries run.
#[derive(Debug, Default)]
pub struct QueryStats {
    pub(crate) queries: AtomicU64,
    pub(crate) query_errors: AtomicU64,
    pub(crate) ssts_read: AtomicU64,
    pub(crate) ssts_pruned: AtomicU64,
}

impl QueryStats {
    /// Prometheus text exposition of these counters.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        for (name, help, v) in [
            (
                "bulkhead_queries_total",
                "SQL queries planned.",
                &self.queries,
            ),
            (
                "bulkhead_query_errors_total",
                "SQL queries that failed to plan.",
                &self.query_errors,
            ),
            (
                "bulkhead_query_ssts_read_total",
                "SST files a scan read.",
                &self.ssts_read,
            ),
            (
                "bulkhead_query_ssts_pruned_total",
                "SST files a scan skipped by time or tag pruning.",
                &self.ssts_pruned,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        out
    }
}
