//! `ServerConfig`: the one TOML config of `bulkhead serve`, overlaid by env vars and flags.
//!
//! Precedence is flag, then `BULKHEAD_*` env var, then the file given by `--config`, then
//! the defaults. Every option has all four; `bulkhead.example.toml` at the repo root
//! lists them with their defaults and is parsed by a test so it cannot rot.
//!
//! Each crate's own config type is embedded as it is (the model is HoraeDB's
//! `server/src/config.rs`): `[wal]`, `[memtable]` and `[retention]` are the engine's
//! [`WalConfig`], [`MemtableConfig`] and [`RetentionConfig`], `[runtime]` is
//! [`RuntimeConfig`]; a section shared by two owners flattens the other crate's part
//! (the engine's [`SstConfig`] in `[storage]`, [`CatalogLimits`] in `[limits]`, the
//! engine's compaction and the query layer's rollup settings in `[compaction]`), and each
//! `[[rollup]]` entry is the front-end contract's `RollupSpec`, as `CREATE ROLLUP` makes. So
//! every key is declared once, with one default, in the crate that uses it, and sizes
//! and durations are parsed by `bulkhead_runtime::units` everywhere.

mod background;
mod cache;
mod cli;
mod connections;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bulkhead_engine::{CatalogLimits, MemtableConfig, RetentionConfig, SstConfig, WalConfig};
use bulkhead_runtime::RuntimeConfig;
use serde::{Deserialize, Serialize};

pub use background::{CompactionSection, S3Config};
pub use bulkhead_frontend::rollup::RollupSpec;
pub use bulkhead_frontend::units::{ByteSize, HumanDuration};
pub use cache::CacheSection;
pub use cli::ServeArgs;
pub use connections::ConnectionArgs;

use crate::error::ServerError;

/// Everything `bulkhead serve` can be configured with.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub http: HttpConfig,
    pub pg: PgConfig,
    pub flight_sql: FlightSqlConfig,
    pub storage: StorageConfig,
    pub s3: S3Config,
    pub wal: WalConfig,
    pub memtable: MemtableConfig,
    pub runtime: RuntimeConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub compaction: CompactionSection,
    pub retention: RetentionConfig,
    pub cache: CacheSection,
    /// `[[rollup]]` entries: downsampling rollups declared in the file (SQL `CREATE ROLLUP` declares them at run time, stored in the manifest).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "background::rollup_list::deserialize"
    )]
    pub rollup: Vec<RollupSpec>,
}

/// `[http]`: the HTTP API listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the HTTP API (ingest, SQL, admin, metrics).
    pub addr: SocketAddr,
    /// On SIGINT/SIGTERM, wait at most this long for in-flight requests before closing
    /// the engine anyway (their clients then see the connection close, never an ack).
    pub shutdown_timeout: HumanDuration,
    /// Most open connections; past it a new one is answered 503 + Retry-After and closed.
    pub max_connections: usize,
    /// Longest a request head may take: from the connection's opening (TLS handshake
    /// included) or its first byte after a response, to its last header line.
    pub header_read_timeout: HumanDuration,
    /// A kept-alive connection with no request for this long is closed (0 = never).
    pub idle_timeout: HumanDuration,
    /// PEM certificate chain: with `tls_key`, the listener speaks HTTPS only.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 5440)),
            shutdown_timeout: HumanDuration::secs(30),
            max_connections: 1024,
            header_read_timeout: HumanDuration::secs(10),
            idle_timeout: HumanDuration::secs(120),
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

/// `[pg]`: the PostgreSQL wire-protocol listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgConfig {
    /// Whether to serve the PostgreSQL wire protocol.
    pub enabled: bool,
    /// Address of the PostgreSQL wire-protocol listener.
    pub addr: SocketAddr,
    /// Most open connections; past it a new one gets SQLSTATE 53300 and is closed.
    pub max_connections: usize,
    /// Longest from connecting to authenticated (TLS handshake included).
    pub startup_timeout: HumanDuration,
    /// A session with no query running and no message for this long is closed, as
    /// PostgreSQL's `idle_session_timeout` (0 = never).
    pub idle_timeout: HumanDuration,
    /// PEM certificate chain: with `tls_key`, SSLRequest is answered `S`.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: SocketAddr::from(([127, 0, 0, 1], 5433)),
            max_connections: 256,
            startup_timeout: HumanDuration::secs(10),
            idle_timeout: HumanDuration::secs(3600),
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

/// `[flight_sql]`: the Arrow Flight SQL listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlightSqlConfig {
    /// Whether to serve Arrow Flight SQL.
    pub enabled: bool,
    /// Address of the Flight SQL (gRPC) listener.
    pub addr: SocketAddr,
    /// Database of calls that send no `database` header; empty: they resolve only
    /// qualified names (`demo.cpu`).
    pub database: String,
    /// Most open connections; past it every call on a new one is answered UNAVAILABLE
    /// and the connection is closed.
    pub max_connections: usize,
    /// A new connection must send its first bytes within this.
    pub startup_timeout: HumanDuration,
    /// A connection with no bytes in either direction for this long is closed (0 =
    /// never).
    pub idle_timeout: HumanDuration,
    /// PEM certificate chain: with `tls_key`, the listener speaks gRPC over TLS only.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
}

impl Default for FlightSqlConfig {
    fn default() -> Self {
        // Off by default: every process that starts a server (tests, benchmarks, a
        // second instance) would otherwise need a free port for it too.
        Self {
            enabled: false,
            addr: SocketAddr::from(([127, 0, 0, 1], 5441)),
            database: String::new(),
            max_connections: 256,
            startup_timeout: HumanDuration::secs(10),
            idle_timeout: HumanDuration::secs(3600),
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

/// `[storage]`: where data lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Root directory for local state.
    pub data_dir: PathBuf,
    /// WAL directory; empty means `<data_dir>/wal`.
    pub wal_dir: String,
    /// Object store URL for SSTs and manifests; empty means `file://<data_dir>/objects`.
    pub object_store: String,
    /// Start even if the store ignores create-only puts (`If-None-Match: *`). Only
    /// safe when a single Bulkhead process ever writes to this prefix.
    pub unsafe_no_conditional_put: bool,
    /// The engine's keys: `segment_duration`, `multipart_threshold`,
    /// `multipart_part_size`, `metadata_cache_size`, `integer_compression`, `page_rows`.
    #[serde(flatten)]
    pub sst: SstConfig,
}

/// Fewest rows per data page `storage.page_rows` accepts.
const MIN_PAGE_ROWS: usize = 64;

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./bulkhead-data"),
            wal_dir: String::new(),
            object_store: String::new(),
            unsafe_no_conditional_put: false,
            sst: SstConfig::default(),
        }
    }
}

impl StorageConfig {
    /// The WAL directory, defaulted from `data_dir`.
    pub fn wal_dir(&self) -> PathBuf {
        if self.wal_dir.is_empty() {
            self.data_dir.join("wal")
        } else {
            PathBuf::from(&self.wal_dir)
        }
    }

    /// The object store URL, defaulted to `file://<data_dir>/objects`.
    pub fn object_store_url(&self) -> String {
        if self.object_store.is_empty() {
            format!("file://{}", self.data_dir.join("objects").display())
        } else {
            self.object_store.clone()
        }
    }
}

/// `[auth]`: the API token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// When non-empty, every endpoint except `/health` and `/ping` (and the PG wire) requires it.
    pub token: String,
    /// A wrong or missing token is answered only after this long (HTTP 401, PG 28P01).
    pub failure_delay: HumanDuration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token: String::new(),
            failure_delay: HumanDuration::millis(500),
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.token.is_empty() {
            "<none>"
        } else {
            "<redacted>"
        };
        f.debug_struct("AuthConfig")
            .field("token", &shown)
            .field("failure_delay", &self.failure_delay)
            .finish()
    }
}

impl AuthConfig {
    pub fn token(&self) -> Option<&str> {
        (!self.token.is_empty()).then_some(self.token.as_str())
    }
}

/// `[limits]`: what a single request may ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body, before and after gzip decompression (413 past it).
    pub max_body_size: ByteSize,
    /// Estimated memory of writes in flight (request bytes while read, then the parsed
    /// rows); past it new writes get 503 + Retry-After at once.
    pub max_inflight_write_bytes: ByteSize,
    /// Longest line-protocol line (that line is rejected with 400).
    pub max_line_length: ByteSize,
    /// Most tags on one line-protocol line (that line is rejected with 400).
    pub max_tags_per_line: usize,
    /// Most fields on one line-protocol line (that line is rejected with 400).
    pub max_fields_per_line: usize,
    /// Memory one SQL query may use before it fails with "resources exhausted".
    pub query_memory: ByteSize,
    /// Longest a SQL query may run, planning included; a request may only lower it
    /// (HTTP `timeout=`, PG `SET statement_timeout`).
    pub query_timeout: HumanDuration,
    /// Partitions of one query's plan (DataFusion's `target_partitions`): 1 runs each
    /// query as one stream on one `query` thread, so a heavy query never holds every
    /// query thread; more lets one big query use several threads.
    pub query_partitions: usize,
    /// Time groups one large scan decodes at once, each on a task of its own on the
    /// `query` runtime beside the query's own task (0 = none: every scan decodes in
    /// its query's task). Worth up to the `query` runtime's threads.
    pub scan_tasks: usize,
    /// Optimized SQL plans kept by statement shape, so a query that differs from an
    /// earlier one only in the literals of its `WHERE` comparisons skips SQL planning
    /// and the optimizer (0 = off).
    pub query_plan_cache: usize,
    /// Longest wait for the next bytes of a request body; a stalled upload then gets
    /// 408 and stops holding write admission.
    pub body_read_timeout: HumanDuration,
    /// The engine's catalog limits: `max_databases`, `max_tables_per_database`,
    /// `max_columns_per_table`, `max_series_per_table` (0 = no limit).
    #[serde(flatten)]
    pub catalog: CatalogLimits,
    /// TCP keepalive probes on accepted HTTP and PG sockets start after this much
    /// silence, so a peer that vanished (NAT, power loss) is noticed (0 = off).
    pub tcp_keepalive: HumanDuration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_size: ByteSize::mib(64),
            max_inflight_write_bytes: ByteSize::mib(256),
            max_line_length: ByteSize::kib(64),
            max_tags_per_line: 256,
            max_fields_per_line: 1024,
            query_memory: ByteSize(bulkhead_frontend::limits::DEFAULT_QUERY_MEMORY),
            query_timeout: HumanDuration::secs(300),
            query_partitions: 1,
            scan_tasks: 2,
            query_plan_cache: 256,
            body_read_timeout: HumanDuration::secs(10),
            catalog: CatalogLimits::default(),
            tcp_keepalive: HumanDuration::secs(60),
        }
    }
}

impl ServerConfig {
    /// Parse a TOML document. Unknown keys and bad values are errors naming the key.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let cfg: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read `path` (see [`Self::from_toml`]).
    pub fn from_file(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::Config {
            message: format!("cannot read config file {}: {e}", path.display()),
        })?;
        Self::from_toml(&text).map_err(|e| ServerError::Config {
            message: format!("invalid config file {}: {e}", path.display()),
        })
    }

    /// Load the effective config: defaults, then `--config`, then env vars and flags
    /// (clap has already resolved flag over env in `args`).
    pub fn load(args: &ServeArgs) -> Result<Self, ServerError> {
        let mut cfg = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        args.apply(&mut cfg);
        cfg.validate()
            .map_err(|message| ServerError::Config { message })?;
        Ok(cfg)
    }

    /// Checks that span keys or that serde cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err("storage.data_dir must not be empty".into());
        }
        let url = self.storage.object_store_url();
        if !(url.starts_with("file://") || url.starts_with("s3://")) {
            return Err(format!(
                "storage.object_store: unsupported URL `{url}` (expected file://PATH or s3://BUCKET/PREFIX)"
            ));
        }
        if self.storage.sst.page_rows < MIN_PAGE_ROWS {
            return Err(format!(
                "storage.page_rows: {} is below {MIN_PAGE_ROWS} (every page costs a header \
                 and page-index entries; the default is 8192)",
                self.storage.sst.page_rows
            ));
        }
        for (key, nice) in [
            ("runtime.compact_nice", self.runtime.compact_nice),
            ("runtime.query_nice", self.runtime.query_nice),
            ("runtime.write_nice", self.runtime.write_nice),
        ] {
            if !(-20..=19).contains(&nice) {
                return Err(format!("{key}: {nice} is outside -20..=19"));
            }
        }
        if self.memtable.flush_concurrency == 0 {
            return Err("memtable.flush_concurrency must be positive".into());
        }
        if self.limits.max_body_size.0 == 0 {
            return Err("limits.max_body_size must be positive".into());
        }
        if self.limits.max_inflight_write_bytes.0 == 0 {
            return Err("limits.max_inflight_write_bytes must be positive".into());
        }
        if self.limits.max_line_length.0 == 0 {
            return Err("limits.max_line_length must be positive".into());
        }
        if self.storage.sst.multipart_part_size < 5 * 1024 * 1024 {
            return Err(format!(
                "storage.multipart_part_size: {} is below S3's minimum part size of 5MiB",
                ByteSize(self.storage.sst.multipart_part_size as u64)
            ));
        }
        if self.compaction.engine.trigger < 2 {
            return Err(format!(
                "compaction.trigger: {} must be at least 2",
                self.compaction.engine.trigger
            ));
        }
        if self.compaction.engine.check_interval.is_zero() {
            return Err("compaction.check_interval must be positive".into());
        }
        if self.compaction.rollups.check_interval.is_zero() {
            return Err("compaction.rollup_interval must be positive".into());
        }
        if self.compaction.rollups.memory_budget == 0 {
            return Err("compaction.rollup_memory_budget must be positive".into());
        }
        bulkhead_frontend::rollup::validate_all(&self.rollup)?;
        for (i, r) in self.rollup.iter().enumerate() {
            let key = r.qualified_name();
            if self.retention.overrides.contains_key(&key) {
                return Err(format!(
                    "rollup[{i}] ({key}): retention.overrides.\"{key}\" is also set; give a rollup's TTL as its `retention` only"
                ));
            }
        }
        for (key, n) in [
            ("limits.query_partitions", self.limits.query_partitions),
            ("http.max_connections", self.http.max_connections),
            ("pg.max_connections", self.pg.max_connections),
            (
                "flight_sql.max_connections",
                self.flight_sql.max_connections,
            ),
        ] {
            if n == 0 {
                return Err(format!("{key} must be positive"));
            }
        }
        for (key, d) in [
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("pg.startup_timeout", self.pg.startup_timeout),
            (
                "flight_sql.startup_timeout",
                self.flight_sql.startup_timeout,
            ),
        ] {
            if d.0.is_zero() {
                return Err(format!("{key} must be positive"));
            }
        }
        for (section, cert, key) in [
            ("http", &self.http.tls_cert, &self.http.tls_key),
            ("pg", &self.pg.tls_cert, &self.pg.tls_key),
            (
                "flight_sql",
                &self.flight_sql.tls_cert,
                &self.flight_sql.tls_key,
            ),
        ] {
            if cert.is_empty() != key.is_empty() {
                return Err(format!(
                    "{section}.tls_cert and {section}.tls_key must be set together"
                ));
            }
        }
        if self.runtime.watchdog_interval.is_zero() {
            return Err("runtime.watchdog_interval must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
