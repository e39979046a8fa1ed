//! The storage engine's counters as Prometheus text (the server adds the runtime and
//! HTTP metrics itself).

use bulkhead_engine::EngineStats;

/// Reads one per-table gauge from the engine's table stats.
type TableGauge = fn(&bulkhead_engine::TableStats) -> f64;

/// Prometheus text for the engine's counters.
pub(crate) fn render(s: &EngineStats) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut one = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    one(
        "bulkhead_memtable_bytes",
        "gauge",
        "Estimated bytes in all memtables.",
        s.memtable_bytes as f64,
    );
    one(
        "bulkhead_write_buffer_bytes",
        "gauge",
        "The global write buffer (stall at 1x, reject at 2x).",
        s.write_buffer_size as f64,
    );
    one(
        "bulkhead_wal_bytes",
        "gauge",
        "Bytes in live WAL segments.",
        s.wal_bytes as f64,
    );
    one(
        "bulkhead_wal_segments",
        "gauge",
        "Live WAL segment files.",
        s.wal_segments as f64,
    );
    one(
        "bulkhead_wal_syncs_total",
        "counter",
        "WAL fsyncs (group commits).",
        s.wal_syncs as f64,
    );
    one(
        "bulkhead_wal_appends_total",
        "counter",
        "WAL records appended.",
        s.wal_appends as f64,
    );
    one(
        "bulkhead_engine_writes_total",
        "counter",
        "Write batches applied.",
        s.writes as f64,
    );
    one(
        "bulkhead_engine_rows_written_total",
        "counter",
        "Rows applied by the engine.",
        s.rows_written as f64,
    );
    one(
        "bulkhead_write_stalls_total",
        "counter",
        "Writes that waited for memtable memory.",
        s.stalled_writes as f64,
    );
    one(
        "bulkhead_write_rejections_total",
        "counter",
        "Writes rejected as overloaded (503).",
        s.rejected_writes as f64,
    );
    one(
        "bulkhead_flushes_total",
        "counter",
        "Memtable flushes committed.",
        s.flush_count as f64,
    );
    one(
        "bulkhead_flush_failures_total",
        "counter",
        "Flushes that failed (and are retried).",
        s.flush_failures as f64,
    );
    one(
        "bulkhead_flush_duration_seconds_total",
        "counter",
        "Time spent in flushes.",
        s.flush_duration_total.as_secs_f64(),
    );
    one(
        "bulkhead_last_flush_duration_seconds",
        "gauge",
        "Duration of the last flush.",
        s.last_flush_duration.as_secs_f64(),
    );
    one(
        "bulkhead_sst_files",
        "gauge",
        "SST files across all tables.",
        s.tables.iter().map(|t| t.sst_count).sum::<usize>() as f64,
    );
    one(
        "bulkhead_sst_bytes",
        "gauge",
        "SST bytes across all tables.",
        s.tables.iter().map(|t| t.sst_bytes).sum::<u64>() as f64,
    );
    let c = &s.compaction;
    one(
        "bulkhead_compactions_total",
        "counter",
        "Compaction tasks committed.",
        c.completed as f64,
    );
    one(
        "bulkhead_compaction_failures_total",
        "counter",
        "Compaction tasks that failed (inputs stay live; retried later).",
        c.failures as f64,
    );
    one(
        "bulkhead_compaction_input_bytes_total",
        "counter",
        "Bytes of SSTs merged away by compactions.",
        c.input_bytes as f64,
    );
    one(
        "bulkhead_compaction_output_bytes_total",
        "counter",
        "Bytes of SSTs written by compactions.",
        c.output_bytes as f64,
    );
    one(
        "bulkhead_compaction_duration_seconds_total",
        "counter",
        "Time spent in committed compactions.",
        c.duration.as_secs_f64(),
    );
    one(
        "bulkhead_retention_expired_ssts_total",
        "counter",
        "SSTs dropped whole by retention (TTL).",
        c.expired_ssts as f64,
    );
    let m = &s.sst_metadata_cache;
    one(
        "bulkhead_sst_metadata_cache_hits_total",
        "counter",
        "SST opens served from the metadata cache (no GET).",
        m.hits as f64,
    );
    one(
        "bulkhead_sst_metadata_cache_misses_total",
        "counter",
        "SST opens that read the footer, page index and series index from the store.",
        m.misses as f64,
    );
    one(
        "bulkhead_sst_metadata_cache_bytes",
        "gauge",
        "Bytes held by the SST metadata cache (bounded by storage.metadata_cache_size).",
        m.bytes as f64,
    );
    one(
        "bulkhead_sst_metadata_cache_entries",
        "gauge",
        "SSTs whose metadata is cached.",
        m.entries as f64,
    );
    let name = "bulkhead_catalog_limit_rejections_total";
    let _ = writeln!(
        out,
        "# HELP {name} Writes refused (400 limit_exceeded) by each catalog limit.\n# TYPE {name} counter"
    );
    for (limit, n) in &s.limit_rejections {
        let _ = writeln!(out, "{name}{{limit=\"{limit}\"}} {n}");
    }
    let per_table: [(&str, &str, TableGauge); 5] = [
        (
            "bulkhead_table_flush_failures",
            "Flush attempts of a table that failed in a row (0 once one succeeds).",
            |t| f64::from(t.consecutive_flush_failures),
        ),
        (
            "bulkhead_table_parked",
            "1 while a table whose flush keeps failing has its rows parked (they do not hold back WAL truncation).",
            |t| f64::from(u8::from(t.parked)),
        ),
        (
            "bulkhead_table_memtable_rows",
            "Rows in a table's memtables.",
            |t| t.memtable_rows as f64,
        ),
        ("bulkhead_table_sst_rows", "Rows in a table's SSTs.", |t| {
            t.sst_rows as f64
        }),
        ("bulkhead_table_sst_files", "SST files of a table.", |t| {
            t.sst_count as f64
        }),
    ];
    for (name, help, get) in per_table {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for t in &s.tables {
            let _ = writeln!(
                out,
                "{name}{{db=\"{}\",table=\"{}\"}} {}",
                label(&t.db),
                label(&t.table),
                get(t)
            );
        }
    }
    out
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
