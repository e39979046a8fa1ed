//! The listener: binds on `io`, and serves the Flight SQL gRPC service there (tonic's
//! connection tasks are spawned on the runtime that polls the server, `io`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use bulkhead_frontend::QueryBackend;
use bulkhead_frontend::limits::LimitTrips;
use bulkhead_runtime::Runtimes;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::error::FlightSqlError;
use crate::front::Front;
use crate::service::Service;

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
}

/// A bound Flight SQL listener. Create and serve it on the `io` runtime.
pub struct FlightSqlServer {
    listener: TcpListener,
    service: Service,
}

impl std::fmt::Debug for FlightSqlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSqlServer")
            .field("addr", &self.listener.local_addr().ok())
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
        let service = Service::new(runtimes, backend, options);
        Ok(Self { listener, service })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, FlightSqlError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serve until `shutdown` resolves, then let open calls finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), FlightSqlError> {
        // Without TCP_NODELAY a reply written in parts waits for the client's delayed ACK.
        let incoming = TcpListenerStream::new(self.listener).map(|conn| {
            conn.inspect(|s| {
                if let Err(e) = s.set_nodelay(true) {
                    tracing::debug!(error = %e, "Flight SQL: cannot set TCP_NODELAY");
                }
            })
        });
        tonic::transport::Server::builder()
            .add_service(FlightServiceServer::new(Front(self.service)))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}
