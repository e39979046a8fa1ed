//! `ServeArgs`: one clap flag (and `BULKHEAD_*` env var) per config option.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bulkhead_engine::WalSync;
use bulkhead_runtime::RuntimeMode;

use super::{ByteSize, HumanDuration, ServerConfig};

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

    /// [flight_sql] enabled: serve Arrow Flight SQL [default: false].
    #[arg(long, env = "BULKHEAD_FLIGHT_SQL_ENABLED", value_name = "BOOL")]
    pub flight_sql_enabled: Option<bool>,
    /// [flight_sql] addr: address of the Flight SQL listener [default: 127.0.0.1:5441].
    #[arg(long, env = "BULKHEAD_FLIGHT_SQL_ADDR", value_name = "ADDR")]
    pub flight_sql_addr: Option<SocketAddr>,
    /// [flight_sql] database: database of calls without a `database` header [default: none].
    #[arg(long, env = "BULKHEAD_FLIGHT_SQL_DATABASE", value_name = "NAME")]
    pub flight_sql_database: Option<String>,
    /// [flight_sql] max_connections: most open Flight SQL connections [default: 256].
    #[arg(long, env = "BULKHEAD_FLIGHT_SQL_MAX_CONNECTIONS", value_name = "N")]
    pub flight_sql_max_connections: Option<usize>,
    /// [flight_sql] startup_timeout: first bytes of a new connection within [default: 10s].
    #[arg(
        long,
        env = "BULKHEAD_FLIGHT_SQL_STARTUP_TIMEOUT",
        value_name = "DURATION"
    )]
    pub flight_sql_startup_timeout: Option<HumanDuration>,
    /// [flight_sql] idle_timeout: close a connection silent this long, 0 = never [default: 1h].
    #[arg(
        long,
        env = "BULKHEAD_FLIGHT_SQL_IDLE_TIMEOUT",
        value_name = "DURATION"
    )]
    pub flight_sql_idle_timeout: Option<HumanDuration>,

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
    /// [storage] multipart_threshold: SSTs above this use multipart upload [default: 32MiB].
    #[arg(long, env = "BULKHEAD_MULTIPART_THRESHOLD", value_name = "SIZE")]
    pub multipart_threshold: Option<ByteSize>,
    /// [storage] multipart_part_size: part size of multipart uploads [default: 8MiB].
    #[arg(long, env = "BULKHEAD_MULTIPART_PART_SIZE", value_name = "SIZE")]
    pub multipart_part_size: Option<ByteSize>,
    /// [storage] metadata_cache_size: memory for parsed SST metadata, 0 = off [default: 64MiB].
    #[arg(long, env = "BULKHEAD_METADATA_CACHE_SIZE", value_name = "SIZE")]
    pub metadata_cache_size: Option<ByteSize>,
    /// [storage] integer_compression: codec of time, integer fields and tags in new SSTs,
    /// `lz4` or `zstd` (about 6 % smaller, slower to read) [default: lz4].
    #[arg(long, env = "BULKHEAD_INTEGER_COMPRESSION", value_name = "CODEC")]
    pub integer_compression: Option<bulkhead_engine::IntegerCompression>,
    /// [storage] page_rows: most rows per Parquet data page in new SSTs [default: 8192].
    #[arg(long, env = "BULKHEAD_PAGE_ROWS", value_name = "ROWS")]
    pub page_rows: Option<usize>,
    /// [storage] unsafe_no_conditional_put: start even if the store ignores create-only
    /// puts; only safe with a single writer per prefix [default: false].
    #[arg(
        long,
        env = "BULKHEAD_UNSAFE_NO_CONDITIONAL_PUT",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub unsafe_no_conditional_put: Option<bool>,

    /// [s3] endpoint: S3-compatible endpoint URL [default: $AWS_ENDPOINT, else AWS].
    #[arg(long, env = "BULKHEAD_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// [s3] region [default: $AWS_REGION, else us-east-1].
    #[arg(long, env = "BULKHEAD_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// [s3] access_key_id [default: $AWS_ACCESS_KEY_ID].
    #[arg(long, env = "BULKHEAD_S3_ACCESS_KEY_ID", value_name = "ID")]
    pub s3_access_key_id: Option<String>,
    /// [s3] secret_access_key [default: $AWS_SECRET_ACCESS_KEY].
    #[arg(
        long,
        env = "BULKHEAD_S3_SECRET_ACCESS_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub s3_secret_access_key: Option<String>,
    /// [s3] allow_http: allow http:// endpoints [default: $AWS_ALLOW_HTTP, else false].
    #[arg(long, env = "BULKHEAD_S3_ALLOW_HTTP", value_name = "BOOL")]
    pub s3_allow_http: Option<bool>,
    /// [s3] virtual_hosted_style: bucket in the host name, not the path [default: false].
    #[arg(long, env = "BULKHEAD_S3_VIRTUAL_HOSTED_STYLE", value_name = "BOOL")]
    pub s3_virtual_hosted_style: Option<bool>,
    /// [s3] max_retries: retries of a failed request [default: 5].
    #[arg(long, env = "BULKHEAD_S3_MAX_RETRIES", value_name = "N")]
    pub s3_max_retries: Option<usize>,
    /// [s3] retry_timeout: give up retrying a request after this long [default: 30s].
    #[arg(long, env = "BULKHEAD_S3_RETRY_TIMEOUT", value_name = "DURATION")]
    pub s3_retry_timeout: Option<HumanDuration>,
    /// [s3] request_timeout: timeout of one HTTP request [default: 30s].
    #[arg(long, env = "BULKHEAD_S3_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub s3_request_timeout: Option<HumanDuration>,
    /// [s3] connect_timeout: timeout of opening a connection [default: 5s].
    #[arg(long, env = "BULKHEAD_S3_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub s3_connect_timeout: Option<HumanDuration>,

    /// [wal] sync: always | none | an interval like 100ms [default: always].
    #[arg(long, env = "BULKHEAD_WAL_SYNC", value_name = "MODE")]
    pub wal_sync: Option<WalSync>,
    /// [wal] segment_size: WAL segment file size [default: 64MiB].
    #[arg(long, env = "BULKHEAD_WAL_SEGMENT_SIZE", value_name = "SIZE")]
    pub wal_segment_size: Option<ByteSize>,
    /// [wal] preallocate: zero-fill the next segment ahead of time [default: true].
    #[arg(long, env = "BULKHEAD_WAL_PREALLOCATE", value_name = "BOOL")]
    pub wal_preallocate: Option<bool>,

    /// [memtable] write_buffer: memory for all memtables [default: 256MiB].
    #[arg(long, env = "BULKHEAD_WRITE_BUFFER", value_name = "SIZE")]
    pub write_buffer: Option<ByteSize>,
    /// [memtable] table_flush_size: flush one table's memtable at this size [default: 64MiB].
    #[arg(long, env = "BULKHEAD_TABLE_FLUSH_SIZE", value_name = "SIZE")]
    pub table_flush_size: Option<ByteSize>,
    /// [memtable] flush_interval: flush a memtable at the latest after this [default: 10m].
    #[arg(long, env = "BULKHEAD_FLUSH_INTERVAL", value_name = "DURATION")]
    pub flush_interval: Option<HumanDuration>,
    /// [memtable] flush_concurrency: tables flushed at once [default: 32].
    #[arg(long, env = "BULKHEAD_FLUSH_CONCURRENCY", value_name = "N")]
    pub flush_concurrency: Option<usize>,
    /// [memtable] pack_table_bytes: tables this small flush into shared SSTs; 0: never [default: 64KiB].
    #[arg(long, env = "BULKHEAD_PACK_TABLE_BYTES", value_name = "SIZE")]
    pub pack_table_bytes: Option<ByteSize>,

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
    /// [runtime] query_nice: OS nice value of query threads without SCHED_IDLE [default: 5].
    #[arg(
        long,
        env = "BULKHEAD_QUERY_NICE",
        value_name = "NICE",
        allow_negative_numbers = true
    )]
    pub query_nice: Option<i32>,
    /// [runtime] write_nice: OS nice value of write and WAL threads; raising needs CAP_SYS_NICE [default: -5].
    #[arg(
        long,
        env = "BULKHEAD_WRITE_NICE",
        value_name = "NICE",
        allow_negative_numbers = true
    )]
    pub write_nice: Option<i32>,
    /// [runtime] compact_sched_idle: run compaction threads under SCHED_IDLE [default: true].
    #[arg(long, env = "BULKHEAD_COMPACT_SCHED_IDLE", value_name = "BOOL")]
    pub compact_sched_idle: Option<bool>,
    /// [runtime] query_sched_idle: run query threads under SCHED_IDLE [default: true].
    #[arg(long, env = "BULKHEAD_QUERY_SCHED_IDLE", value_name = "BOOL")]
    pub query_sched_idle: Option<bool>,
    /// [runtime] latency_slice: OS time slice of io/write/flush/WAL threads, 0 = kernel default [default: 0s].
    #[arg(long, env = "BULKHEAD_LATENCY_SLICE", value_name = "DURATION")]
    pub latency_slice: Option<HumanDuration>,
    /// [runtime] background_yield: query/compact threads offer their CPU this often, 0 = never [default: 250us].
    #[arg(long, env = "BULKHEAD_BACKGROUND_YIELD", value_name = "DURATION")]
    pub background_yield: Option<HumanDuration>,
    /// [runtime] idle_cgroup: move query/compaction threads into a cgroup with cpu.idle = 1 [default: true].
    #[arg(long, env = "BULKHEAD_IDLE_CGROUP", value_name = "BOOL")]
    pub idle_cgroup: Option<bool>,
    /// [runtime] flush_affinity: pin the flush threads to the last CPUs [default: true].
    #[arg(long, env = "BULKHEAD_FLUSH_AFFINITY", value_name = "BOOL")]
    pub flush_affinity: Option<bool>,
    /// [runtime] slow_poll_threshold [default: 10ms].
    #[arg(long, env = "BULKHEAD_SLOW_POLL_THRESHOLD", value_name = "DURATION")]
    pub slow_poll_threshold: Option<HumanDuration>,
    /// [runtime] watchdog_threshold [default: 100ms].
    #[arg(long, env = "BULKHEAD_WATCHDOG_THRESHOLD", value_name = "DURATION")]
    pub watchdog_threshold: Option<HumanDuration>,
    /// [runtime] memory_purge_delay: freed memory goes back to the OS after this [default: 1s].
    #[arg(long, env = "BULKHEAD_MEMORY_PURGE_DELAY", value_name = "DURATION")]
    pub memory_purge_delay: Option<HumanDuration>,
    /// [runtime] huge_pages: let the kernel back memory with transparent huge pages [default: false].
    #[arg(long, env = "BULKHEAD_HUGE_PAGES", value_name = "BOOL")]
    pub huge_pages: Option<bool>,
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
    /// [limits] max_inflight_write_bytes: memory of writes in flight (parsed rows)
    /// before new writes get 503 [default: 256MiB].
    #[arg(long, env = "BULKHEAD_MAX_INFLIGHT_WRITE_BYTES", value_name = "SIZE")]
    pub max_inflight_write_bytes: Option<ByteSize>,
    /// [limits] max_line_length: longest line-protocol line [default: 64KiB].
    #[arg(long, env = "BULKHEAD_MAX_LINE_LENGTH", value_name = "SIZE")]
    pub max_line_length: Option<ByteSize>,
    /// [limits] max_tags_per_line [default: 256].
    #[arg(long, env = "BULKHEAD_MAX_TAGS_PER_LINE", value_name = "N")]
    pub max_tags_per_line: Option<usize>,
    /// [limits] max_fields_per_line [default: 1024].
    #[arg(long, env = "BULKHEAD_MAX_FIELDS_PER_LINE", value_name = "N")]
    pub max_fields_per_line: Option<usize>,
    /// [limits] max_databases (0 = no limit) [default: 1000].
    #[arg(long, env = "BULKHEAD_MAX_DATABASES", value_name = "N")]
    pub max_databases: Option<usize>,
    /// [limits] max_tables_per_database (0 = no limit) [default: 100000].
    #[arg(long, env = "BULKHEAD_MAX_TABLES_PER_DATABASE", value_name = "N")]
    pub max_tables_per_database: Option<usize>,
    /// [limits] max_columns_per_table: tags plus fields (0 = no limit) [default: 2000].
    #[arg(long, env = "BULKHEAD_MAX_COLUMNS_PER_TABLE", value_name = "N")]
    pub max_columns_per_table: Option<usize>,
    /// [limits] max_series_per_table (0 = no limit) [default: 1000000].
    #[arg(long, env = "BULKHEAD_MAX_SERIES_PER_TABLE", value_name = "N")]
    pub max_series_per_table: Option<usize>,
    /// [limits] query_memory: memory one SQL query may use [default: 1GiB].
    #[arg(long, env = "BULKHEAD_QUERY_MEMORY", value_name = "SIZE")]
    pub query_memory: Option<ByteSize>,
    /// [limits] query_timeout: longest a SQL query may run [default: 5m].
    #[arg(long, env = "BULKHEAD_QUERY_TIMEOUT", value_name = "DURATION")]
    pub query_timeout: Option<HumanDuration>,
    /// [limits] query_partitions: partitions of one query's plan, at least 1 [default: 1].
    #[arg(long, env = "BULKHEAD_QUERY_PARTITIONS", value_name = "N")]
    pub query_partitions: Option<usize>,
    /// [limits] scan_tasks: time groups one large scan decodes at once on tasks of its own, 0 = none [default: 2].
    #[arg(long, env = "BULKHEAD_SCAN_TASKS", value_name = "N")]
    pub scan_tasks: Option<usize>,
    /// [limits] query_plan_cache: optimized SQL plans kept by statement shape, 0 = off [default: 256].
    #[arg(long, env = "BULKHEAD_QUERY_PLAN_CACHE", value_name = "N")]
    pub query_plan_cache: Option<usize>,
    /// [limits] body_read_timeout: longest wait for a request body's next bytes [default: 10s].
    #[arg(long, env = "BULKHEAD_BODY_READ_TIMEOUT", value_name = "DURATION")]
    pub body_read_timeout: Option<HumanDuration>,

    /// [compaction] enabled: compact in the background [default: true].
    #[arg(long, env = "BULKHEAD_COMPACTION_ENABLED", value_name = "BOOL")]
    pub compaction_enabled: Option<bool>,
    /// [compaction] trigger: merge a segment once it has this many files [default: 4].
    #[arg(long, env = "BULKHEAD_COMPACTION_TRIGGER", value_name = "N")]
    pub compaction_trigger: Option<usize>,
    /// [compaction] max_output_size: cap on one compaction's bytes [default: 512MiB].
    #[arg(long, env = "BULKHEAD_COMPACTION_MAX_OUTPUT_SIZE", value_name = "SIZE")]
    pub compaction_max_output_size: Option<ByteSize>,
    /// [compaction] memory_budget: memory of all running compactions [default: 256MiB].
    #[arg(long, env = "BULKHEAD_COMPACTION_MEMORY_BUDGET", value_name = "SIZE")]
    pub compaction_memory_budget: Option<ByteSize>,
    /// [compaction] max_concurrent: compactions at once, 0 = by core count [default: 0].
    #[arg(long, env = "BULKHEAD_COMPACTION_MAX_CONCURRENT", value_name = "N")]
    pub compaction_max_concurrent: Option<usize>,
    /// [compaction] grace_period: leave segments alone until they ended this long ago [default: 10m].
    #[arg(
        long,
        env = "BULKHEAD_COMPACTION_GRACE_PERIOD",
        value_name = "DURATION"
    )]
    pub compaction_grace_period: Option<HumanDuration>,
    /// [compaction] check_interval: how often to look for work [default: 30s].
    #[arg(
        long,
        env = "BULKHEAD_COMPACTION_CHECK_INTERVAL",
        value_name = "DURATION"
    )]
    pub compaction_check_interval: Option<HumanDuration>,
    /// [compaction] rollup_interval: how often rollups look for buckets past their grace period [default: 30s].
    #[arg(
        long,
        env = "BULKHEAD_COMPACTION_ROLLUP_INTERVAL",
        value_name = "DURATION"
    )]
    pub compaction_rollup_interval: Option<HumanDuration>,
    /// [compaction] rollup_memory_budget: memory of one rollup query [default: 256MiB].
    #[arg(
        long,
        env = "BULKHEAD_COMPACTION_ROLLUP_MEMORY_BUDGET",
        value_name = "SIZE"
    )]
    pub compaction_rollup_memory_budget: Option<ByteSize>,

    /// [retention] ttl: drop data older than this, 0s = keep forever [default: 0s].
    #[arg(long, env = "BULKHEAD_RETENTION_TTL", value_name = "DURATION")]
    pub retention_ttl: Option<HumanDuration>,

    /// [cache] enabled: cache SST blocks in memory (and on disk for s3://) [default: true].
    #[arg(long, env = "BULKHEAD_CACHE_ENABLED", value_name = "BOOL")]
    pub cache_enabled: Option<bool>,
    /// [cache] memory_size: memory tier of the SST block cache, 0 = off [default: 256MiB].
    #[arg(long, env = "BULKHEAD_CACHE_MEMORY_SIZE", value_name = "SIZE")]
    pub cache_memory_size: Option<ByteSize>,
    /// [cache] disk_size: disk tier of the SST block cache (remote stores only), 0 = off [default: 10GiB].
    #[arg(long, env = "BULKHEAD_CACHE_DISK_SIZE", value_name = "SIZE")]
    pub cache_disk_size: Option<ByteSize>,
    /// [cache] disk_path: directory of the disk tier [default: <data-dir>/cache].
    #[arg(long, env = "BULKHEAD_CACHE_DISK_PATH", value_name = "DIR")]
    pub cache_disk_path: Option<String>,

    #[command(flatten)]
    pub connections: super::ConnectionArgs,
}

impl ServeArgs {
    /// Overwrite every option of `cfg` that was given as a flag or env var.
    pub(crate) fn apply(&self, cfg: &mut ServerConfig) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        fn set_duration(dst: &mut Duration, src: &Option<HumanDuration>) {
            if let Some(v) = src {
                *dst = v.get();
            }
        }
        fn set_u64(dst: &mut u64, src: &Option<ByteSize>) {
            if let Some(v) = src {
                *dst = v.as_u64();
            }
        }
        fn set_usize(dst: &mut usize, src: &Option<ByteSize>) {
            if let Some(v) = src {
                *dst = v.as_usize();
            }
        }
        self.connections.apply(cfg);
        set(&mut cfg.http.addr, &self.http_addr);
        set(&mut cfg.http.shutdown_timeout, &self.shutdown_timeout);
        set(&mut cfg.pg.enabled, &self.pg_enabled);
        set(&mut cfg.pg.addr, &self.pg_addr);
        set(&mut cfg.flight_sql.enabled, &self.flight_sql_enabled);
        set(&mut cfg.flight_sql.addr, &self.flight_sql_addr);
        set(&mut cfg.flight_sql.database, &self.flight_sql_database);
        set(
            &mut cfg.flight_sql.max_connections,
            &self.flight_sql_max_connections,
        );
        set(
            &mut cfg.flight_sql.startup_timeout,
            &self.flight_sql_startup_timeout,
        );
        set(
            &mut cfg.flight_sql.idle_timeout,
            &self.flight_sql_idle_timeout,
        );
        set(&mut cfg.storage.data_dir, &self.data_dir);
        set(&mut cfg.storage.wal_dir, &self.wal_dir);
        set(&mut cfg.storage.object_store, &self.object_store);
        set_duration(
            &mut cfg.storage.sst.segment_duration,
            &self.segment_duration,
        );
        set_usize(
            &mut cfg.storage.sst.multipart_threshold,
            &self.multipart_threshold,
        );
        set_usize(
            &mut cfg.storage.sst.multipart_part_size,
            &self.multipart_part_size,
        );
        set_usize(
            &mut cfg.storage.sst.metadata_cache_size,
            &self.metadata_cache_size,
        );
        set(
            &mut cfg.storage.sst.integer_compression,
            &self.integer_compression,
        );
        set(&mut cfg.storage.sst.page_rows, &self.page_rows);
        set(
            &mut cfg.storage.unsafe_no_conditional_put,
            &self.unsafe_no_conditional_put,
        );
        set(&mut cfg.s3.endpoint, &self.s3_endpoint);
        set(&mut cfg.s3.region, &self.s3_region);
        set(&mut cfg.s3.access_key_id, &self.s3_access_key_id);
        set(&mut cfg.s3.secret_access_key, &self.s3_secret_access_key);
        set(&mut cfg.s3.allow_http, &self.s3_allow_http);
        set(
            &mut cfg.s3.virtual_hosted_style,
            &self.s3_virtual_hosted_style,
        );
        set(&mut cfg.s3.max_retries, &self.s3_max_retries);
        set(&mut cfg.s3.retry_timeout, &self.s3_retry_timeout);
        set(&mut cfg.s3.request_timeout, &self.s3_request_timeout);
        set(&mut cfg.s3.connect_timeout, &self.s3_connect_timeout);
        set(&mut cfg.wal.sync, &self.wal_sync);
        set_u64(&mut cfg.wal.segment_size, &self.wal_segment_size);
        set(&mut cfg.wal.preallocate, &self.wal_preallocate);
        set_usize(&mut cfg.memtable.write_buffer, &self.write_buffer);
        set_usize(&mut cfg.memtable.table_flush_size, &self.table_flush_size);
        set_duration(&mut cfg.memtable.flush_interval, &self.flush_interval);
        set(&mut cfg.memtable.flush_concurrency, &self.flush_concurrency);
        set_usize(&mut cfg.memtable.pack_table_bytes, &self.pack_table_bytes);
        set(&mut cfg.runtime.mode, &self.runtime_mode);
        set(&mut cfg.runtime.io_threads, &self.io_threads);
        set(&mut cfg.runtime.write_threads, &self.write_threads);
        set(&mut cfg.runtime.flush_threads, &self.flush_threads);
        set(&mut cfg.runtime.query_threads, &self.query_threads);
        set(&mut cfg.runtime.compact_threads, &self.compact_threads);
        set(&mut cfg.runtime.shared_threads, &self.shared_threads);
        set(&mut cfg.runtime.compact_nice, &self.compact_nice);
        set(&mut cfg.runtime.query_nice, &self.query_nice);
        set(&mut cfg.runtime.write_nice, &self.write_nice);
        set(
            &mut cfg.runtime.compact_sched_idle,
            &self.compact_sched_idle,
        );
        set(&mut cfg.runtime.query_sched_idle, &self.query_sched_idle);
        set_duration(&mut cfg.runtime.latency_slice, &self.latency_slice);
        set_duration(&mut cfg.runtime.background_yield, &self.background_yield);
        set(&mut cfg.runtime.idle_cgroup, &self.idle_cgroup);
        set(&mut cfg.runtime.flush_affinity, &self.flush_affinity);
        set_duration(
            &mut cfg.runtime.slow_poll_threshold,
            &self.slow_poll_threshold,
        );
        set_duration(
            &mut cfg.runtime.watchdog_threshold,
            &self.watchdog_threshold,
        );
        set_duration(&mut cfg.runtime.watchdog_interval, &self.watchdog_interval);
        set_duration(
            &mut cfg.runtime.memory_purge_delay,
            &self.memory_purge_delay,
        );
        set(&mut cfg.runtime.huge_pages, &self.huge_pages);
        set(&mut cfg.auth.token, &self.auth_token);
        set(&mut cfg.limits.max_body_size, &self.max_body_size);
        set(
            &mut cfg.limits.max_inflight_write_bytes,
            &self.max_inflight_write_bytes,
        );
        set(&mut cfg.limits.max_line_length, &self.max_line_length);
        set(&mut cfg.limits.max_tags_per_line, &self.max_tags_per_line);
        set(
            &mut cfg.limits.max_fields_per_line,
            &self.max_fields_per_line,
        );
        set(&mut cfg.limits.catalog.max_databases, &self.max_databases);
        set(
            &mut cfg.limits.catalog.max_tables_per_database,
            &self.max_tables_per_database,
        );
        set(
            &mut cfg.limits.catalog.max_columns_per_table,
            &self.max_columns_per_table,
        );
        set(
            &mut cfg.limits.catalog.max_series_per_table,
            &self.max_series_per_table,
        );
        set(&mut cfg.limits.query_memory, &self.query_memory);
        set(&mut cfg.limits.query_partitions, &self.query_partitions);
        set(&mut cfg.limits.scan_tasks, &self.scan_tasks);
        set(&mut cfg.limits.query_plan_cache, &self.query_plan_cache);
        set(&mut cfg.limits.query_timeout, &self.query_timeout);
        set(&mut cfg.limits.body_read_timeout, &self.body_read_timeout);
        let c = &mut cfg.compaction.engine;
        set(&mut c.enabled, &self.compaction_enabled);
        set(&mut c.trigger, &self.compaction_trigger);
        set_u64(&mut c.max_output_bytes, &self.compaction_max_output_size);
        set_u64(&mut c.memory_budget, &self.compaction_memory_budget);
        set(&mut c.max_concurrent, &self.compaction_max_concurrent);
        set_duration(&mut c.grace_period, &self.compaction_grace_period);
        set_duration(&mut c.check_interval, &self.compaction_check_interval);
        let r = &mut cfg.compaction.rollups;
        set_duration(&mut r.check_interval, &self.compaction_rollup_interval);
        set_usize(&mut r.memory_budget, &self.compaction_rollup_memory_budget);
        set_duration(&mut cfg.retention.ttl, &self.retention_ttl);
        set(&mut cfg.cache.enabled, &self.cache_enabled);
        set(&mut cfg.cache.memory_size, &self.cache_memory_size);
        set(&mut cfg.cache.disk_size, &self.cache_disk_size);
        set(&mut cfg.cache.disk_path, &self.cache_disk_path);
    }
}
