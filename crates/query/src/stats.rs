//! Query-layer counters exported at `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Files read and skipped by scans, and queries run.
#[derive(Debug, Default)]
pub struct QueryStats {
    pub(crate) queries: AtomicU64,
    pub(crate) query_errors: AtomicU64,
    pub(crate) ssts_read: AtomicU64,
    pub(crate) ssts_pruned: AtomicU64,
    pub(crate) plan_cache_hits: AtomicU64,
    pub(crate) plan_cache_misses: AtomicU64,
    pub(crate) plan_template_hits: AtomicU64,
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
            (
                "bulkhead_query_plan_cache_hits_total",
                "Queries whose optimized plan came from the plan cache.",
                &self.plan_cache_hits,
            ),
            (
                "bulkhead_query_plan_cache_misses_total",
                "Queries of a cacheable shape planned from scratch (first of the shape, or a table's schema changed).",
                &self.plan_cache_misses,
            ),
            (
                "bulkhead_query_plan_template_hits_total",
                "Cached queries whose physical plan was made from the shape's template, without physical planning.",
                &self.plan_template_hits,
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
