//! One accepted Flight SQL connection as tonic sees it: the TCP stream, the connection
//! slot it holds (given back when tonic drops it), whether it was admitted or is only
//! being refused, and its deadlines. A connection that sends nothing within
//! `startup_timeout`, or moves no byte either way for `idle_timeout`, fails its next
//! read, and tonic closes it; the trip is counted once.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bulkhead_frontend::limits::{Limit, LimitTrips, Protocol};
use bulkhead_frontend::net::SlotGuard;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

/// How long a refused connection stays open, so its first call can be answered
/// UNAVAILABLE before it is closed.
pub(crate) const REFUSAL_LINGER: Duration = Duration::from_secs(5);

/// What the service learns of a call's connection (tonic puts it in the request's
/// extensions).
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// Past `flight_sql.max_connections`: every call is answered UNAVAILABLE.
    pub(crate) refused: bool,
}

/// The deadlines of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// For the first bytes.
    pub(crate) startup: Duration,
    /// For any byte once started; `None`: never.
    pub(crate) idle: Option<Duration>,
}

pub(crate) struct Conn {
    stream: TcpStream,
    _slot: SlotGuard,
    refused: bool,
    deadlines: Deadlines,
    started: bool,
    deadline: Option<Pin<Box<Sleep>>>,
    trips: Arc<LimitTrips>,
}

impl Conn {
    pub(crate) fn new(
        stream: TcpStream,
        slot: SlotGuard,
        refused: bool,
        deadlines: Deadlines,
        trips: Arc<LimitTrips>,
    ) -> Self {
        let first = if refused {
            REFUSAL_LINGER
        } else {
            deadlines.startup
        };
        Self {
            stream,
            _slot: slot,
            refused,
            deadlines,
            started: false,
            deadline: Some(Box::pin(tokio::time::sleep(first))),
            trips,
        }
    }

    /// Bytes moved: the startup phase is over, and the idle deadline starts again.
    fn on_activity(&mut self) {
        if self.refused {
            return; // a refused connection closes at its linger deadline regardless
        }
        self.started = true;
        match (self.deadlines.idle, self.deadline.as_mut()) {
            (Some(idle), Some(d)) => d.as_mut().reset(Instant::now() + idle),
            (Some(idle), None) => self.deadline = Some(Box::pin(tokio::time::sleep(idle))),
            (None, _) => self.deadline = None,
        }
    }

    /// Whether the current deadline has passed (registering for its wakeup if not).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(d) = self.deadline.as_mut() else {
            return false;
        };
        if d.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.deadline = None;
        if !self.refused {
            let limit = if self.started {
                Limit::IdleTimeout
            } else {
                Limit::StartupTimeout
            };
            self.trips.trip(limit, Protocol::FlightSql);
            tracing::debug!(?limit, "Flight SQL connection closed by its deadline");
        }
        true
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "Flight SQL connection deadline")
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.on_activity();
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) && self.started {
            self.on_activity();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo {
            refused: self.refused,
        }
    }
}
