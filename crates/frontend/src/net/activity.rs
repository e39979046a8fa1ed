//! Per-connection deadlines: the phase a connection is in (starting up, idle, receiving
//! a request, busy with one) and when that phase must end.
//!
//! The connection task races its protocol future against [`Activity::expired`]; when
//! that resolves, the task drops the connection. A busy connection (a request or query
//! in flight, counted by [`BusyGuard`]s) never expires here: queries have their own
//! timeout (`limits.query_timeout`), request bodies theirs (`limits.body_read_timeout`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The deadlines of one protocol's connections.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From accept to the first request (HTTP: its complete head; PG: authenticated).
    pub startup: Duration,
    /// From the first byte of a request after an idle spell to its complete head
    /// (HTTP); `None`: bytes only refresh the idle deadline (PG).
    pub receiving: Option<Duration>,
    /// Idle (nothing in flight) for this long; `None`: never.
    pub idle: Option<Duration>,
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Startup,
    Receiving,
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Startup,
    Idle,
    Receiving,
    Busy,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    since: Instant,
    busy: usize,
}

/// One connection's phase.
#[derive(Debug)]
pub struct Activity {
    timeouts: Timeouts,
    state: Mutex<State>,
}

impl Activity {
    pub fn new(timeouts: Timeouts) -> Arc<Self> {
        Arc::new(Self {
            timeouts,
            state: Mutex::new(State {
                phase: Phase::Startup,
                since: Instant::now(),
                busy: 0,
            }),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    /// Bytes arrived: an idle connection starts receiving a request.
    pub fn on_read(&self) {
        let receiving = self.timeouts.receiving.is_some();
        self.with(|s| {
            if s.phase == Phase::Idle {
                s.since = Instant::now();
                if receiving {
                    s.phase = Phase::Receiving;
                }
            }
        });
    }

    /// The client did something: an idle connection's idle time restarts.
    pub fn touch(&self) {
        self.with(|s| {
            if s.phase == Phase::Idle {
                s.since = Instant::now();
            }
        });
    }

    /// Startup finished (PG: authenticated): the connection is idle from now.
    pub fn ready(&self) {
        self.with(|s| {
            if s.phase == Phase::Startup {
                s.phase = Phase::Idle;
                s.since = Instant::now();
            }
        });
    }

    /// A request or query is in flight until the guard drops.
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.with(|s| {
            s.busy += 1;
            s.phase = Phase::Busy;
        });
        BusyGuard(Arc::clone(self))
    }

    /// When the current phase ends; `None` while busy or idle without an idle timeout.
    fn deadline(&self) -> Option<(Instant, Expired)> {
        let t = self.timeouts;
        self.with(|s| match s.phase {
            Phase::Startup => Some((s.since + t.startup, Expired::Startup)),
            Phase::Receiving => t.receiving.map(|d| (s.since + d, Expired::Receiving)),
            Phase::Idle => t.idle.map(|d| (s.since + d, Expired::Idle)),
            Phase::Busy => None,
        })
    }

    /// Resolves once the connection overstayed its current phase.
    pub async fn expired(&self) -> Expired {
        let t = self.timeouts;
        // While no deadline runs, look again this often (a phase change does not wake
        // this future): a deadline is seen at most this late.
        let recheck = [Some(t.startup), t.receiving, t.idle]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(t.startup);
        loop {
            match self.deadline() {
                Some((at, what)) if at <= Instant::now() => return what,
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => tokio::time::sleep(recheck).await,
            }
        }
    }
}

/// Marks its connection busy while alive.
#[derive(Debug)]
pub struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.with(|s| {
            s.busy = s.busy.saturating_sub(1);
            if s.busy == 0 {
                s.phase = Phase::Idle;
                s.since = Instant::now();
            }
        });
    }
}

/// A stream that reports arriving bytes to its connection's [`Activity`].
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn timeouts() -> Timeouts {
        Timeouts {
            startup: 40 * MS,
            receiving: Some(20 * MS),
            idle: Some(60 * MS),
        }
    }

    // Only lower bounds on time are asserted: a deadline never fires early.
    #[tokio::test]
    async fn each_phase_has_its_deadline_and_busy_has_none() {
        let a = Activity::new(timeouts());
        let start = Instant::now();
        assert_eq!(a.expired().await, Expired::Startup);
        assert!(start.elapsed() >= 40 * MS);

        let guard = a.busy();
        // Busy: nothing expires, however long (here: 5 idle timeouts).
        let waited = tokio::time::timeout(300 * MS, a.expired()).await;
        assert!(waited.is_err());
        drop(guard);
        let idle_from = Instant::now();
        assert_eq!(a.expired().await, Expired::Idle);
        assert!(idle_from.elapsed() >= 60 * MS);

        let a = Activity::new(timeouts());
        drop(a.busy());
        a.on_read();
        let from = Instant::now();
        assert_eq!(a.expired().await, Expired::Receiving);
        assert!(from.elapsed() >= 20 * MS);
    }

    #[tokio::test]
    async fn without_a_receiving_deadline_bytes_restart_the_idle_time() {
        let a = Activity::new(Timeouts {
            receiving: None,
            ..timeouts()
        });
        a.on_read();
        // Still starting up: bytes do not end the startup phase.
        assert_eq!(a.expired().await, Expired::Startup);
        let a = Activity::new(Timeouts {
            receiving: None,
            ..timeouts()
        });
        a.ready();
        tokio::time::sleep(40 * MS).await;
        a.on_read();
        let from = Instant::now();
        assert_eq!(a.expired().await, Expired::Idle);
        assert!(from.elapsed() >= 60 * MS);
    }
}
