//! The listener: accepts connections on `io`, authenticates them (cleartext password
//! equal to the API token, or trust when no token is configured) and hands each one to
//! its own task, so a misbehaving client only ever loses its own connection.
//!
//! Bounds: at most `pg.max_connections` sessions (the next ones get FATAL 53300 at
//! startup, while a CancelRequest on such a connection still works), a startup deadline
//! (`pg.startup_timeout`, TLS handshake and authentication included), an idle deadline
//! (`pg.idle_timeout`, as PostgreSQL's `idle_session_timeout`), TCP keepalive, and a
//! delay before a wrong password is answered. TLS is offered (SSLRequest answered `S`)
//! when a certificate is configured.

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bulkhead_frontend::QueryBackend;
use bulkhead_runtime::Runtimes;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, METADATA_USER, PgWireConnectionState, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;

use crate::error::PgError;
use crate::handler::Handler;
use bulkhead_frontend::limits::{Limit, Protocol};
use bulkhead_frontend::net::{Activity, Admission, ConnectionGate, Expired, Timeouts};

use crate::session::{self, CONNECTION, PgLimits, Session, Sessions};

/// A bound PostgreSQL wire-protocol listener. Create and serve it on the `io` runtime.
pub struct PgServer {
    listener: TcpListener,
    handlers: Arc<Handlers>,
    limits: Arc<PgLimits>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("addr", &self.listener.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl PgServer {
    /// Bind `addr`. With `token` set, clients must send it as their password
    /// (cleartext password authentication); without, every client is trusted.
    pub async fn bind(
        addr: SocketAddr,
        token: Option<String>,
        runtimes: Arc<Runtimes>,
        backend: Arc<dyn QueryBackend>,
    ) -> Result<Self, PgError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| PgError::Bind { addr, source })?;
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = format!("16.6 (Bulkhead {})", env!("CARGO_PKG_VERSION"));
        let sessions = Arc::new(Sessions::default());
        let handlers = Arc::new(Handlers {
            query: Arc::new(Handler::new(runtimes, backend)),
            startup: Arc::new(Startup {
                token,
                params,
                keys: RandomPidSecretKeyGenerator::default(),
                sessions: Arc::clone(&sessions),
            }),
            sessions,
        });
        Ok(Self {
            listener,
            handlers,
            limits: Arc::default(),
            tls: None,
        })
    }

    /// Offer TLS with the PEM certificate chain `cert` and key `key`: SSLRequest is
    /// then answered `S` (`sslmode=require` works); plaintext clients are still served.
    pub fn with_tls(mut self, cert: &str, key: &str) -> Result<Self, PgError> {
        let acceptor = bulkhead_frontend::net::tls::acceptor(cert, key, &[b"postgresql"])
            .map_err(PgError::Tls)?;
        self.tls = Some(acceptor);
        Ok(self)
    }

    /// Apply `limits` (query timeout, counters) to every connection.
    pub fn with_limits(mut self, limits: PgLimits) -> Self {
        self.limits = Arc::new(limits);
        self
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, PgError> {
        Ok(self.listener.local_addr()?)
    }

    /// Accept connections until `shutdown` resolves. Open connections are not waited
    /// for: they end when the runtime shuts down (a PG client reconnects).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), PgError> {
        let addr = self.local_addr()?;
        tracing::info!(%addr, tls = self.tls.is_some(), "PostgreSQL wire protocol listening");
        let limits = &self.limits;
        let gate = ConnectionGate::new(
            Protocol::Pg,
            limits.max_connections,
            Arc::clone(&limits.connections),
            Arc::clone(&limits.trips),
        );
        let timeouts = Timeouts {
            startup: limits.startup_timeout,
            receiving: None,
            idle: limits.idle_timeout,
        };
        tokio::pin!(shutdown);
        loop {
            let (socket, peer) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Per-connection accept errors (EMFILE, ECONNABORTED): keep
                        // serving the others after a short pause.
                        tracing::warn!(error = %e, "PG accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (slot, refused) = match gate.admit() {
                Admission::Serve(slot) => (slot, false),
                Admission::Refuse(slot) => (slot, true),
                Admission::Drop => {
                    tracing::debug!(%peer, "PG connection dropped: too many being refused");
                    continue;
                }
            };
            bulkhead_frontend::net::prepare_socket(&socket, limits.tcp_keepalive);
            let handlers = Arc::clone(&self.handlers);
            let activity = Activity::new(timeouts);
            let session = Session::new(
                Arc::clone(&self.limits),
                &socket,
                Arc::clone(&activity),
                refused,
            );
            let tls = self.tls.clone();
            let trips = Arc::clone(&limits.trips);
            // The connection task runs on the runtime serving this listener (`io`);
            // its queries are sent to `query` by the handler.
            tokio::spawn(async move {
                let _slot = slot;
                let sessions = Arc::clone(&handlers.sessions);
                let served = CONNECTION.scope(
                    Arc::clone(&session),
                    pgwire::tokio::process_socket(socket, tls, handlers),
                );
                // Pinned out here so that a deadline's trip is counted before the socket
                // closes (when `served` is dropped at the end of the task).
                tokio::pin!(served);
                tokio::select! {
                    served = &mut served => if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "PG connection ended with an error");
                    },
                    expired = activity.expired() => {
                        let limit = match expired {
                            Expired::Startup | Expired::Receiving => Limit::StartupTimeout,
                            Expired::Idle => Limit::IdleTimeout,
                        };
                        if !refused {
                            trips.trip(limit, Protocol::Pg);
                        }
                        tracing::debug!(%peer, ?expired, "PG connection closed by its deadline");
                    }
                }
                sessions.remove(&session);
            });
        }
    }
}

/// Bind `addr` and serve until `shutdown`: what `bulkhead serve` spawns on `io`.
pub async fn serve(
    addr: SocketAddr,
    token: Option<String>,
    runtimes: Arc<Runtimes>,
    backend: Arc<dyn QueryBackend>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PgError> {
    PgServer::bind(addr, token, runtimes, backend)
        .await?
        .serve(shutdown)
        .await
}

struct Handlers {
    query: Arc<Handler>,
    startup: Arc<Startup>,
    sessions: Arc<Sessions>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::clone(&self.query)
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::clone(&self.query)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.sessions)
    }
}

/// Trust, or cleartext password equal to the token.
struct Startup {
    token: Option<String>,
    params: DefaultServerParameterProvider,
    keys: RandomPidSecretKeyGenerator,
    sessions: Arc<Sessions>,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                let session = session::current();
                if let Some(s) = session.as_ref().filter(|s| s.refused) {
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "FATAL".to_owned(),
                        "53300".to_owned(), // too_many_connections
                        format!(
                            "sorry, too many clients already: {} connections are open \
                             (pg.max_connections)",
                            s.limits().max_connections
                        ),
                    ))));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let (pid, key) = self.keys.generate(client);
                // Cancel requests name the connection by this BackendKeyData.
                self.sessions.register(pid, key.to_bytes().to_vec());
                client.set_pid_and_secret_key(pid, key);
                if self.token.is_some() {
                    client.set_state(PgWireConnectionState::AuthenticationInProgress);
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::CleartextPassword,
                        ))
                        .await?;
                } else {
                    finish_authentication(client, &self.params).await?;
                    if let Some(s) = session {
                        s.activity.ready();
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let ok = self
                    .token
                    .as_deref()
                    .is_some_and(|t| constant_time_eq(t.as_bytes(), pwd.password.as_bytes()));
                let session = session::current();
                if !ok {
                    if let Some(s) = &session {
                        let limits = s.limits();
                        limits.trips.trip(Limit::AuthFailure, Protocol::Pg);
                        tokio::time::sleep(limits.auth_failure_delay).await;
                    }
                    let user = client.metadata().get(METADATA_USER).cloned();
                    return Err(PgWireError::InvalidPassword(user.unwrap_or_default()));
                }
                finish_authentication(client, &self.params).await?;
                if let Some(s) = session {
                    s.activity.ready();
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
