//! `ServeArgs`: one clap flag (and `BULKHEAD_*` env var) per config option.

use std::net::SocketAddr;
use std::path::PathBuf;

use bulkhead_runtime::RuntimeMode;

use super::{ByteSize, HumanDuration, ServerConfig, WalSyncSetting};

/// Flags of `bulkhead serve`. Each overrides the same option of the config file; clap
/// resolves flag over env var, and unset flags leave the file's (or default) value.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (see bulkhead.example.toml).
    #[arg(long, env = "BULKHEAD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// [http] addr: address of the HTTP API [default: 127.0.0.1:5440].
    #[arg(long, env = "BULKHEAD_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// [http] shutdown_timeout: how long SIGTERM waits for in-flight requests [default: 30s].
    #[arg(long, env = "BULKHEAD_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    pub shutdown_timeout: Option<HumanDuration>,

    /// [pg] enabled: serve the PostgreSQL wire protocol [default: true].
    #[arg(long, env = "BULKHEAD_PG_ENABLED", value_name = "BOOL")]
    pub pg_enabled: Option<bool>,
    /// [pg] addr: address of the PostgreSQL wire protocol [default: 127.0.0.1:5433].
    #[arg(long, env = "BULKHEAD_PG_ADDR", value_name = "ADDR")]
    pub pg_addr: Option<SocketAddr>,

    /// [storage] data_dir: root of local state [default: ./bulkhead-data].
    #[arg(long, env = "BULKHEAD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// [storage] wal_dir: WAL directory [default: <data-dir>/wal].
    #[arg(long, env = "BULKHEAD_WAL_DIR", value_name = "DIR")]
    pub wal_dir: Option<String>,
    /// [storage] object_store: file://PATH or s3://BUCKET/PREFIX [default: file://<data-dir>/objects].
    #[arg(long, env = "BULKHEAD_OBJECT_STORE", value_name = "URL")]
    pub object_store: Option<String>,
    /// [storage] segment_duration: time width of SST segments [default: 2h].
    #[arg(long, env = "BULKHEAD_SEGMENT_DURATION", value_name = "DURATION")]
    pub segment_duration: Option<HumanDuration>,

    /// [wal] sync: always | none | an interval like 100ms [default: always].
    #[arg(long, env = "BULKHEAD_WAL_SYNC", value_name = "MODE")]
    pub wal_sync: Option<WalSyncSetting>,
    /// [wal] segment_size: WAL segment file size [default: 64MiB].
    #[arg(long, env = "BULKHEAD_WAL_SEGMENT_SIZE", value_name = "SIZE")]
    pub wal_segment_size: Option<ByteSize>,

    /// [memtable] write_buffer: memory for all memtables [default: 256MiB].
    #[arg(long, env = "BULKHEAD_WRITE_BUFFER", value_name = "SIZE")]
    pub write_buffer: Option<ByteSize>,
    /// [memtable] table_flush_size: flush one table's memtable at this size [default: 64MiB].
    #[arg(long, env = "BULKHEAD_TABLE_FLUSH_SIZE", value_name = "SIZE")]
    pub table_flush_size: Option<ByteSize>,
    /// [memtable] flush_interval: flush a memtable at the latest after this [default: 10m].
    #[arg(long, env = "BULKHEAD_FLUSH_INTERVAL", value_name = "DURATION")]
    pub flush_interval: Option<HumanDuration>,

    /// [runtime] mode: isolated | shared [default: isolated].
    #[arg(long, env = "BULKHEAD_RUNTIME_MODE", value_name = "MODE")]
    pub runtime_mode: Option<RuntimeMode>,
    /// [runtime] io_threads (0 = from core count).
    #[arg(long, env = "BULKHEAD_IO_THREADS", value_name = "N")]
    pub io_threads: Option<usize>,
    /// [runtime] write_threads (0 = from core count).
    #[arg(long, env = "BULKHEAD_WRITE_THREADS", value_name = "N")]
    pub write_threads: Option<usize>,
    /// [runtime] flush_threads (0 = from core count).
    #[arg(long, env = "BULKHEAD_FLUSH_THREADS", value_name = "N")]
    pub flush_threads: Option<usize>,
    /// [runtime] query_threads (0 = from core count).
    #[arg(long, env = "BULKHEAD_QUERY_THREADS", value_name = "N")]
    pub query_threads: Option<usize>,
    /// [runtime] compact_threads (0 = from core count).
    #[arg(long, env = "BULKHEAD_COMPACT_THREADS", value_name = "N")]
    pub compact_threads: Option<usize>,
    /// [runtime] shared_threads: threads of the one runtime in shared mode (0 = from core count).
    #[arg(long, env = "BULKHEAD_SHARED_THREADS", value_name = "N")]
    pub shared_threads: Option<usize>,
    /// [runtime] compact_nice: OS nice value of compaction threads [default: 10].
    #[arg(
        long,
        env = "BULKHEAD_COMPACT_NICE",
        value_name = "NICE",
        allow_negative_numbers = true
    )]
    pub compact_nice: Option<i32>,
    /// [runtime] slow_poll_threshold [default: 10ms].
    #[arg(long, env = "BULKHEAD_SLOW_POLL_THRESHOLD", value_name = "DURATION")]
    pub slow_poll_threshold: Option<HumanDuration>,
    /// [runtime] watchdog_threshold [default: 100ms].
    #[arg(long, env = "BULKHEAD_WATCHDOG_THRESHOLD", value_name = "DURATION")]
    pub watchdog_threshold: Option<HumanDuration>,
    /// [runtime] watchdog_interval [default: 20ms].
    #[arg(long, env = "BULKHEAD_WATCHDOG_INTERVAL", value_name = "DURATION")]
    pub watchdog_interval: Option<HumanDuration>,

    /// [auth] token: require `Authorization: Token <t>` on every endpoint but /health.
    #[arg(
        long,
        env = "BULKHEAD_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,

    /// [limits] max_body_size: largest request body, also after gunzip [default: 64MiB].
    #[arg(long, env = "BULKHEAD_MAX_BODY_SIZE", value_name = "SIZE")]
    pub max_body_size: Option<ByteSize>,
    /// [limits] max_line_length: longest line-protocol line [default: 64KiB].
    #[arg(long, env = "BULKHEAD_MAX_LINE_LENGTH", value_name = "SIZE")]
    pub max_line_length: Option<ByteSize>,
    /// [limits] max_tags_per_line [default: 256].
    #[arg(long, env = "BULKHEAD_MAX_TAGS_PER_LINE", value_name = "N")]
    pub max_tags_per_line: Option<usize>,
    /// [limits] max_fields_per_line [default: 1024].
    #[arg(long, env = "BULKHEAD_MAX_FIELDS_PER_LINE", value_name = "N")]
    pub max_fields_per_line: Option<usize>,
    /// [limits] query_memory: memory one SQL query may use [default: 1GiB].
    #[arg(long, env = "BULKHEAD_QUERY_MEMORY", value_name = "SIZE")]
    pub query_memory: Option<ByteSize>,
}

impl ServeArgs {
    /// Overwrite every option of `cfg` that was given as a flag or env var.
    pub(crate) fn apply(&self, cfg: &mut ServerConfig) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut cfg.http.addr, &self.http_addr);
        set(&mut cfg.http.shutdown_timeout, &self.shutdown_timeout);
        set(&mut cfg.pg.enabled, &self.pg_enabled);
        set(&mut cfg.pg.addr, &self.pg_addr);
        set(&mut cfg.storage.data_dir, &self.data_dir);
        set(&mut cfg.storage.wal_dir, &self.wal_dir);
        set(&mut cfg.storage.object_store, &self.object_store);
        set(&mut cfg.storage.segment_duration, &self.segment_duration);
        set(&mut cfg.wal.sync, &self.wal_sync);
        set(&mut cfg.wal.segment_size, &self.wal_segment_size);
        set(&mut cfg.memtable.write_buffer, &self.write_buffer);
        set(&mut cfg.memtable.table_flush_size, &self.table_flush_size);
        set(&mut cfg.memtable.flush_interval, &self.flush_interval);
        set(&mut cfg.runtime.mode, &self.runtime_mode);
        set(&mut cfg.runtime.io_threads, &self.io_threads);
        set(&mut cfg.runtime.write_threads, &self.write_threads);
        set(&mut cfg.runtime.flush_threads, &self.flush_threads);
        set(&mut cfg.runtime.query_threads, &self.query_threads);
        set(&mut cfg.runtime.compact_threads, &self.compact_threads);
        set(&mut cfg.runtime.shared_threads, &self.shared_threads);
        set(&mut cfg.runtime.compact_nice, &self.compact_nice);
        set(
            &mut cfg.runtime.slow_poll_threshold,
            &self.slow_poll_threshold,
        );
        set(
            &mut cfg.runtime.watchdog_threshold,
            &self.watchdog_threshold,
        );
        set(&mut cfg.runtime.watchdog_interval, &self.watchdog_interval);
        set(&mut cfg.auth.token, &self.auth_token);
        set(&mut cfg.limits.max_body_size, &self.max_body_size);
        set(&mut cfg.limits.max_line_length, &self.max_line_length);
        set(&mut cfg.limits.max_tags_per_line, &self.max_tags_per_line);
        set(
            &mut cfg.limits.max_fields_per_line,
            &self.max_fields_per_line,
        );
        set(&mut cfg.limits.query_memory, &self.query_memory);
    }
}
