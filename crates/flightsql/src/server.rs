//! The listener: binds on `io`, and serves the Flight SQL gRPC service there (tonic's
//! connection tasks are spawned on the runtime that polls the server, `io`), in
//! plaintext or, with a certificate, over TLS only ([`crate::tls`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use bulkhead_frontend::QueryBackend;
use bulkhead_frontend::limits::{LimitTrips, Protocol};
use bulkhead_frontend::net::{Admission, ConnectionCounts, ConnectionGate, prepare_socket};
use bulkhead_runtime::Runtimes;
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::conn::{Conn, ConnInfo, Deadlines};
use crate::error::FlightSqlError;
use crate::front::Front;
use crate::service::Service;
use crate::tls::Io;

/// How the listener behaves: from `[flight_sql]`, `auth` and `limits`.
#[derive(Debug, Clone, Default)]
pub struct FlightSqlOptions {
    /// With a token, every call must carry it (bearer, or basic auth's password).
    pub token: Option<String>,
    /// Database of calls without a `database` header.
    pub database: Option<String>,
    /// `limits.query_timeout`.
    pub query_timeout: Duration,
    /// `auth.failure_delay`: how long a call with a wrong or missing token waits before
    /// it is refused.
    pub auth_failure_delay: Duration,
    /// Where tripped limits are counted (`bulkhead_limit_trips_total{protocol="flight_sql"}`),
    /// shared with the other listeners.
    pub trips: Arc<LimitTrips>,
    /// `flight_sql.max_connections` (0 is taken as 1).
    pub max_connections: usize,
    /// `flight_sql.startup_timeout`: for a new connection's first bytes.
    pub startup_timeout: Duration,
    /// `flight_sql.idle_timeout`: `None` never closes a silent connection.
    pub idle_timeout: Option<Duration>,
    /// `limits.tcp_keepalive` (zero: off).
    pub tcp_keepalive: Duration,
    /// Open and accepted connections (`bulkhead_connections_open{protocol="flight_sql"}`),
    /// shared with the other listeners.
    pub connections: Arc<ConnectionCounts>,
}

/// A bound Flight SQL listener. Create and serve it on the `io` runtime.
pub struct FlightSqlServer {
    listener: TcpListener,
    service: Service,
    gate: ConnectionGate,
    deadlines: Deadlines,
    tcp_keepalive: Duration,
    trips: Arc<LimitTrips>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for FlightSqlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSqlServer")
            .field("addr", &self.listener.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl FlightSqlServer {
    /// Bind `addr`; queries go to `backend` on `runtimes`' `query` runtime.
    pub async fn bind(
        addr: SocketAddr,
        options: FlightSqlOptions,
        runtimes: Arc<Runtimes>,
        backend: Arc<dyn QueryBackend>,
    ) -> Result<Self, FlightSqlError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| FlightSqlError::Bind { addr, source })?;
        let gate = ConnectionGate::new(
            Protocol::FlightSql,
            options.max_connections.max(1),
            Arc::clone(&options.connections),
            Arc::clone(&options.trips),
        );
        let deadlines = Deadlines {
            startup: options.startup_timeout,
            idle: options.idle_timeout,
        };
        let (tcp_keepalive, trips) = (options.tcp_keepalive, Arc::clone(&options.trips));
        let service = Service::new(runtimes, backend, options);
        Ok(Self {
            listener,
            service,
            gate,
            deadlines,
            tcp_keepalive,
            trips,
            tls: None,
        })
    }

    /// Serve gRPC over TLS only, with the PEM certificate chain `cert` and key `key`
    /// (ALPN `h2`, as gRPC clients require); a plaintext client then fails.
    pub fn with_tls(mut self, cert: &str, key: &str) -> Result<Self, FlightSqlError> {
        let acceptor = bulkhead_frontend::net::tls::acceptor(cert, key, &[b"h2"])
            .map_err(FlightSqlError::Tls)?;
        self.tls = Some(acceptor);
        Ok(self)
    }

    /// Whether connections are served over TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, FlightSqlError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serve until `shutdown` resolves, then let open calls finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), FlightSqlError> {
        let Self {
            listener,
            service,
            gate,
            deadlines,
            tcp_keepalive,
            trips,
            tls,
        } = self;
        let startup = deadlines.startup;
        let conn_trips = Arc::clone(&trips);
        // Each accepted socket takes a slot of `flight_sql.max_connections` (held until
        // tonic drops the connection), or a refusal slot, or is closed at once.
        let incoming = TcpListenerStream::new(listener).filter_map(move |conn| {
            let admitted = match conn {
                Err(e) => Some(Err(e)),
                Ok(stream) => {
                    let (slot, refused) = match gate.admit() {
                        Admission::Serve(slot) => (Some(slot), false),
                        Admission::Refuse(slot) => (Some(slot), true),
                        Admission::Drop => (None, true),
                    };
                    slot.map(|slot| {
                        prepare_socket(&stream, tcp_keepalive);
                        Ok(Conn::new(
                            stream,
                            slot,
                            refused,
                            deadlines,
                            Arc::clone(&conn_trips),
                        ))
                    })
                }
            };
            std::future::ready(admitted)
        });
        let incoming: Pin<Box<dyn Stream<Item = std::io::Result<Io>> + Send>> = match tls {
            None => Box::pin(incoming.map(|conn| conn.map(Io::Plain))),
            Some(acceptor) => Box::pin(crate::tls::handshakes(incoming, acceptor, startup, trips)),
        };
        let service = FlightServiceServer::with_interceptor(Front(service), refuse_if_over_cap);
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}

/// Every call on a connection past `flight_sql.max_connections` is answered
/// UNAVAILABLE (gRPC's 503), so the client sees why; the connection closes after
/// [`crate::conn::REFUSAL_LINGER`].
#[allow(clippy::result_large_err)] // tonic's interceptor signature
fn refuse_if_over_cap(request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    match request.extensions().get::<ConnInfo>() {
        Some(info) if info.refused => Err(tonic::Status::unavailable(
            "sorry, too many Flight SQL connections already: retry later \
             (flight_sql.max_connections)",
        )),
        _ => Ok(request),
    }
}
