//! The HTTP accept loop: at most `http.max_connections` served at once (the next ones
//! get 503 + Retry-After), per-connection deadlines (request head, keep-alive idle),
//! TCP keepalive, optional TLS, and graceful shutdown.
//!
//! Each connection is one hyper HTTP/1 connection on its own task, raced against its
//! [`Activity`] deadline. A request marks the connection busy from the moment hyper
//! hands it to the router until its response body is dropped (fully sent or
//! abandoned), so a long query or upload is bounded by its own limits
//! (`limits.query_timeout`, `limits.body_read_timeout`), never by these.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower_service::Service;

use crate::error::ServerError;
use crate::limits::{Limit, LimitTrips, Protocol};
use crate::net::{Activity, Admission, BusyGuard, ConnectionGate, Expired, Timeouts, Tracked};

/// What the accept loop needs besides the router.
pub(super) struct Settings {
    pub(super) gate: ConnectionGate,
    pub(super) timeouts: Timeouts,
    pub(super) keepalive: Duration,
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(super) trips: Arc<LimitTrips>,
}

/// Accept until `shutdown` resolves, then let open connections finish their requests.
pub(super) async fn run(
    listener: TcpListener,
    router: Router,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) {
    let settings = Arc::new(settings);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE, ECONNABORTED: keep serving the others after a short pause.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (slot, refuse) = match settings.gate.admit() {
            Admission::Serve(slot) => (slot, false),
            Admission::Refuse(slot) => (slot, true),
            Admission::Drop => {
                tracing::debug!(%peer, "HTTP connection dropped: too many being refused");
                continue;
            }
        };
        crate::net::prepare_socket(&stream, settings.keepalive);
        let activity = Activity::new(settings.timeouts);
        let stream = Tracked::new(stream, Arc::clone(&activity));
        let settings = Arc::clone(&settings);
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let served = serve_connection(stream, router, refuse, &settings, watcher, &activity);
            // Pinned out here so that a deadline's trip is counted before the socket
            // closes (when `served` is dropped at the end of the task).
            tokio::pin!(served);
            tokio::select! {
                () = &mut served => {}
                expired = activity.expired() => {
                    let limit = match expired {
                        Expired::Startup | Expired::Receiving => Limit::HeaderReadTimeout,
                        Expired::Idle => Limit::IdleTimeout,
                    };
                    if !refuse {
                        settings.trips.trip(limit, Protocol::Http);
                    }
                    tracing::debug!(%peer, ?expired, "HTTP connection closed by its deadline");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// TLS handshake (if configured), then HTTP/1 with the router, or the refusal.
async fn serve_connection<S>(
    stream: S,
    router: Router,
    refuse: bool,
    settings: &Settings,
    watcher: Watcher,
    activity: &Arc<Activity>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match &settings.tls {
        Some(tls) => match tls.accept(stream).await {
            Ok(tls_stream) => http1(tls_stream, router, refuse, settings, watcher, activity).await,
            Err(e) => tracing::debug!(error = %e, "HTTP TLS handshake failed"),
        },
        None => http1(stream, router, refuse, settings, watcher, activity).await,
    }
}

async fn http1<S>(
    stream: S,
    router: Router,
    refuse: bool,
    settings: &Settings,
    watcher: Watcher,
    activity: &Arc<Activity>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The deadlines are ours (`Activity`): hyper's own header timer would also run
    // while a kept-alive connection waits for its next request.
    builder.header_read_timeout(None).keep_alive(!refuse);
    let limit = settings.gate.max();
    let activity = Arc::clone(activity);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = activity.busy();
        let mut router = router.clone();
        async move {
            let response = if refuse {
                let mut r = ServerError::TooManyConnections { limit }.into_response();
                r.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                r
            } else {
                match router.call(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            };
            Ok::<_, Infallible>(response.map(|body| Body::new(BusyBody { body, _busy: busy })))
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// A response body that keeps its connection busy until it is dropped.
struct BusyBody {
    body: Body,
    _busy: BusyGuard,
}

impl http_body::Body for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
