//! TLS on the Flight SQL listener: each admitted connection ([`Conn`], which keeps its
//! slot and deadlines underneath) is handshaken with rustls in a task of its own, so a
//! slow or silent client never holds up the accept loop, and tonic is handed the
//! connections whose handshake finished. The handshake must finish within
//! `flight_sql.startup_timeout`; gRPC needs ALPN `h2`, which the acceptor offers.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bulkhead_frontend::limits::{Limit, LimitTrips, Protocol};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::conn::{Conn, ConnInfo};

/// Handshakes finished and waiting for tonic to take them.
const READY: usize = 64;

/// A connection as tonic serves it: plaintext, or TLS over the same [`Conn`].
pub(crate) enum Io {
    Plain(Conn),
    Tls(Box<TlsStream<Conn>>),
}

impl Io {
    fn conn(&self) -> &Conn {
        match self {
            Io::Plain(c) => c,
            Io::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connected for Io {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.conn().connect_info()
    }
}

/// The connections of `incoming` once their TLS handshake has finished. Each handshake
/// runs in its own task on the current runtime (`io`); one that fails or takes longer
/// than `timeout` closes its connection (a timeout is counted as
/// `limit="startup_timeout"`). Dropping the stream stops accepting.
pub(crate) fn handshakes(
    incoming: impl Stream<Item = io::Result<Conn>> + Send + 'static,
    acceptor: TlsAcceptor,
    timeout: Duration,
    trips: Arc<LimitTrips>,
) -> impl Stream<Item = io::Result<Io>> + Send + 'static {
    let (tx, rx) = mpsc::channel(READY);
    let accept = tokio::spawn(async move {
        let mut incoming = std::pin::pin!(incoming);
        while let Some(conn) = incoming.next().await {
            let conn = match conn {
                Ok(conn) => conn,
                Err(e) => {
                    // tonic decides whether an accept error is fatal, as without TLS.
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let (tx, acceptor, trips) = (tx.clone(), acceptor.clone(), Arc::clone(&trips));
            tokio::spawn(async move {
                let refused = conn.connect_info().refused;
                // Pinned out here, so a handshake that times out is counted before its
                // connection closes (at the end of this task, when `accept` drops): a
                // client that sees the close sees the count.
                let accept = acceptor.accept(conn);
                tokio::pin!(accept);
                match tokio::time::timeout(timeout, accept.as_mut()).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(Io::Tls(Box::new(stream)))).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "Flight SQL TLS handshake failed");
                    }
                    Err(_) => {
                        if !refused {
                            trips.trip(Limit::StartupTimeout, Protocol::FlightSql);
                        }
                        tracing::debug!(?timeout, "Flight SQL TLS handshake timed out");
                    }
                }
            });
        }
    });
    Accepted {
        rx,
        _accept: AbortOnDrop(accept),
    }
}

/// The handshaken connections, and the accept loop that stops when they are dropped.
struct Accepted {
    rx: mpsc::Receiver<io::Result<Io>>,
    _accept: AbortOnDrop,
}

impl Stream for Accepted {
    type Item = io::Result<Io>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
