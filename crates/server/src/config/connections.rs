//! Flags of the connection limits, timeouts and TLS of the HTTP and PG listeners, and
//! the TLS of the Flight SQL listener.

use super::{HumanDuration, ServerConfig};

/// `[http]`/`[pg]` connection keys, `flight_sql.tls_*`, `auth.failure_delay` and `limits.tcp_keepalive`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectionArgs {
    /// [http] max_connections: open connections before new ones get 503 [default: 1024].
    #[arg(long, env = "BULKHEAD_HTTP_MAX_CONNECTIONS", value_name = "N")]
    pub http_max_connections: Option<usize>,
    /// [http] header_read_timeout: longest a request head may take [default: 10s].
    #[arg(
        long,
        env = "BULKHEAD_HTTP_HEADER_READ_TIMEOUT",
        value_name = "DURATION"
    )]
    pub http_header_read_timeout: Option<HumanDuration>,
    /// [http] idle_timeout: close a kept-alive connection idle this long, 0 = never [default: 2m].
    #[arg(long, env = "BULKHEAD_HTTP_IDLE_TIMEOUT", value_name = "DURATION")]
    pub http_idle_timeout: Option<HumanDuration>,
    /// [http] tls_cert: PEM certificate chain; with --http-tls-key, serve HTTPS only.
    #[arg(long, env = "BULKHEAD_HTTP_TLS_CERT", value_name = "PATH")]
    pub http_tls_cert: Option<String>,
    /// [http] tls_key: PEM private key of --http-tls-cert.
    #[arg(long, env = "BULKHEAD_HTTP_TLS_KEY", value_name = "PATH")]
    pub http_tls_key: Option<String>,
    /// [pg] max_connections: open connections before new ones get 53300 [default: 256].
    #[arg(long, env = "BULKHEAD_PG_MAX_CONNECTIONS", value_name = "N")]
    pub pg_max_connections: Option<usize>,
    /// [pg] startup_timeout: longest from connecting to authenticated [default: 10s].
    #[arg(long, env = "BULKHEAD_PG_STARTUP_TIMEOUT", value_name = "DURATION")]
    pub pg_startup_timeout: Option<HumanDuration>,
    /// [pg] idle_timeout: close a session idle this long, 0 = never [default: 1h].
    #[arg(long, env = "BULKHEAD_PG_IDLE_TIMEOUT", value_name = "DURATION")]
    pub pg_idle_timeout: Option<HumanDuration>,
    /// [pg] tls_cert: PEM certificate chain; with --pg-tls-key, SSLRequest gets `S`.
    #[arg(long, env = "BULKHEAD_PG_TLS_CERT", value_name = "PATH")]
    pub pg_tls_cert: Option<String>,
    /// [pg] tls_key: PEM private key of --pg-tls-cert.
    #[arg(long, env = "BULKHEAD_PG_TLS_KEY", value_name = "PATH")]
    pub pg_tls_key: Option<String>,
    /// [flight_sql] tls_cert: PEM certificate chain; with --flight-sql-tls-key, serve gRPC over TLS only.
    #[arg(long, env = "BULKHEAD_FLIGHT_SQL_TLS_CERT", value_name = "PATH")]
    pub flight_sql_tls_cert: Option<String>,
    /// [flight_sql] tls_key: PEM private key of --flight-sql-tls-cert.
    #[arg(long, env = "BULKHEAD_FLIGHT_SQL_TLS_KEY", value_name = "PATH")]
    pub flight_sql_tls_key: Option<String>,
    /// [auth] failure_delay: answer a wrong token only after this long [default: 500ms].
    #[arg(long, env = "BULKHEAD_AUTH_FAILURE_DELAY", value_name = "DURATION")]
    pub auth_failure_delay: Option<HumanDuration>,
    /// [limits] tcp_keepalive: keepalive idle time of accepted sockets, 0 = off [default: 1m].
    #[arg(long, env = "BULKHEAD_TCP_KEEPALIVE", value_name = "DURATION")]
    pub tcp_keepalive: Option<HumanDuration>,
}

impl ConnectionArgs {
    pub(crate) fn apply(&self, cfg: &mut ServerConfig) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut cfg.http.max_connections, &self.http_max_connections);
        set(
            &mut cfg.http.header_read_timeout,
            &self.http_header_read_timeout,
        );
        set(&mut cfg.http.idle_timeout, &self.http_idle_timeout);
        set(&mut cfg.http.tls_cert, &self.http_tls_cert);
        set(&mut cfg.http.tls_key, &self.http_tls_key);
        set(&mut cfg.pg.max_connections, &self.pg_max_connections);
        set(&mut cfg.pg.startup_timeout, &self.pg_startup_timeout);
        set(&mut cfg.pg.idle_timeout, &self.pg_idle_timeout);
        set(&mut cfg.pg.tls_cert, &self.pg_tls_cert);
        set(&mut cfg.pg.tls_key, &self.pg_tls_key);
        set(&mut cfg.flight_sql.tls_cert, &self.flight_sql_tls_cert);
        set(&mut cfg.flight_sql.tls_key, &self.flight_sql_tls_key);
        set(&mut cfg.auth.failure_delay, &self.auth_failure_delay);
        set(&mut cfg.limits.tcp_keepalive, &self.tcp_keepalive);
    }
}
