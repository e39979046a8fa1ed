//! Per-connection query control: `statement_timeout`, CancelRequest (keyed by the
//! BackendKeyData sent at startup) and noticing a closed connection while a query runs.
//!
//! Each connection task runs inside a [`CONNECTION`] scope holding its [`Session`], so
//! the startup and query handlers (called inline by pgwire on that task) find it
//! without any lookup. [`Sessions`] maps `(pid, secret key)` to the session for cancel
//! requests, which arrive on a connection of their own.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bulkhead_frontend::limits::{Deadline, Limit, LimitTrips, Protocol, effective_timeout};
use bulkhead_frontend::net::{Activity, BusyGuard, ConnectionCounts};
use futures::{Stream, StreamExt};
use pgwire::api::cancel::CancelHandler;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::data::DataRow;
use tokio::sync::watch;

use crate::error::PgError;

/// The limits the PG server applies to every connection.
#[derive(Debug, Clone)]
pub struct PgLimits {
    /// `limits.query_timeout`: `SET statement_timeout` may only lower it.
    pub query_timeout: Duration,
    /// Shared with the HTTP server's `/metrics`.
    pub trips: Arc<LimitTrips>,
    /// `pg.max_connections`: past it, a new connection gets 53300.
    pub max_connections: usize,
    /// `pg.startup_timeout`: from accept to authenticated.
    pub startup_timeout: Duration,
    /// `pg.idle_timeout`: no query and no message for this long closes the session.
    pub idle_timeout: Option<Duration>,
    /// `limits.tcp_keepalive` (zero: off).
    pub tcp_keepalive: Duration,
    /// `auth.failure_delay`: a wrong password waits this long for its error.
    pub auth_failure_delay: Duration,
    /// Open connections, shared with the HTTP server's `/metrics`.
    pub connections: Arc<ConnectionCounts>,
}

impl Default for PgLimits {
    fn default() -> Self {
        Self {
            query_timeout: Duration::from_secs(300),
            trips: Arc::default(),
            max_connections: 256,
            startup_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(3600)),
            tcp_keepalive: Duration::from_secs(60),
            auth_failure_delay: Duration::from_millis(500),
            connections: Arc::default(),
        }
    }
}

tokio::task_local! {
    /// The session of the connection this task serves.
    pub(crate) static CONNECTION: Arc<Session>;
}

/// The session of the current connection task, if any.
pub(crate) fn current() -> Option<Arc<Session>> {
    CONNECTION.try_with(Arc::clone).ok()
}

/// A connection's BackendKeyData: process id and secret key bytes.
type BackendKey = (i32, Vec<u8>);

/// One connection's query controls.
#[derive(Debug)]
pub(crate) struct Session {
    limits: Arc<PgLimits>,
    /// Incremented by every cancel request; a query watches for a change.
    cancels: watch::Sender<u64>,
    /// `cancels` when the current query cycle started (its first statement was
    /// planned); `None` between cycles. A cancel request that arrives while a query is
    /// planned (before its rows stream), also while a Describe plans it, cancels it:
    /// see [`cancellable`]. A cycle is one simple Query message, or the extended
    /// protocol's messages up to Sync.
    query_cancels: Mutex<Option<u64>>,
    /// `SET statement_timeout`, `None` when unset or 0.
    statement_timeout: Mutex<Option<Duration>>,
    /// The BackendKeyData, once startup assigned it.
    key: OnceLock<BackendKey>,
    /// Startup, idle and busy phases, for the startup and idle timeouts.
    pub(crate) activity: Arc<Activity>,
    /// Set when the connection is over `pg.max_connections`: its startup is answered
    /// 53300 (a CancelRequest on it still works).
    pub(crate) refused: bool,
    /// The socket, to see the peer close it while a query runs (Linux).
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
}

impl Session {
    pub(crate) fn new(
        limits: Arc<PgLimits>,
        socket: &tokio::net::TcpStream,
        activity: Arc<Activity>,
        refused: bool,
    ) -> Arc<Self> {
        #[cfg(not(target_os = "linux"))]
        let _ = socket;
        Arc::new(Self {
            limits,
            cancels: watch::Sender::new(0),
            query_cancels: Mutex::new(None),
            statement_timeout: Mutex::new(None),
            key: OnceLock::new(),
            activity,
            refused,
            #[cfg(target_os = "linux")]
            fd: std::os::fd::AsRawFd::as_raw_fd(socket),
        })
    }

    pub(crate) fn limits(&self) -> &PgLimits {
        &self.limits
    }

    fn set_statement_timeout(&self, timeout: Option<Duration>) {
        if let Ok(mut t) = self.statement_timeout.lock() {
            *t = timeout.filter(|d| !d.is_zero());
        }
    }

    /// The deadline of a query starting now.
    pub(crate) fn deadline(&self) -> Deadline {
        let requested = self.statement_timeout.lock().ok().and_then(|t| *t);
        let limit = self.limits.query_timeout;
        let timeout = effective_timeout(limit, requested);
        if requested.is_some_and(|r| r < limit) {
            Deadline::after(timeout, "statement_timeout")
        } else {
            Deadline::after(timeout, "limits.query_timeout")
        }
    }

    /// Whether the peer has closed its end (FIN or RST received). The socket is owned
    /// by the connection task this is called from, so the descriptor is still open.
    #[cfg(target_os = "linux")]
    fn peer_closed(&self) -> bool {
        // SAFETY: `tcp_info` is plain data; getsockopt writes at most `len` bytes into it.
        unsafe {
            let mut info: libc::tcp_info = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            let rc = libc::getsockopt(
                self.fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&raw mut info).cast(),
                &mut len,
            );
            rc == 0 && info.tcpi_state != TCP_ESTABLISHED
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn peer_closed(&self) -> bool {
        false
    }
}

/// `TCP_ESTABLISHED` of `linux/tcp_states.h` (not exported by `libc`).
#[cfg(target_os = "linux")]
const TCP_ESTABLISHED: u8 = 1;

/// Open sessions by BackendKeyData, for cancel requests.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_key: Mutex<HashMap<BackendKey, Arc<Session>>>,
}

impl Sessions {
    /// Record the current connection's key (called at startup).
    pub(crate) fn register(&self, pid: i32, secret: Vec<u8>) {
        let Some(session) = current() else { return };
        if session.key.set((pid, secret.clone())).is_ok()
            && let Ok(mut map) = self.by_key.lock()
        {
            map.insert((pid, secret), session);
        }
    }

    /// Forget `session` (its connection ended).
    pub(crate) fn remove(&self, session: &Session) {
        if let Some(key) = session.key.get()
            && let Ok(mut map) = self.by_key.lock()
        {
            map.remove(key);
        }
    }
}

#[async_trait]
impl CancelHandler for Sessions {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes().to_vec());
        let session = self.by_key.lock().ok().and_then(|m| m.get(&key).cloned());
        match session {
            Some(s) => {
                tracing::debug!(pid = request.pid, "PG cancel request");
                s.cancels.send_modify(|n| *n += 1);
            }
            // As PostgreSQL: an unknown key is ignored, and nothing is said to the client.
            None => tracing::debug!(pid = request.pid, "PG cancel request for no session"),
        }
    }
}

/// `SET statement_timeout ...` / `RESET statement_timeout`: applied to the session and
/// answered with its tag. `SET datafusion.*` is refused: the query engine's settings
/// are not per session. Anything else is not handled here.
pub(crate) fn set_command(sql: &str) -> Result<Option<&'static str>, PgError> {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let Some(first) = words.first() else {
        return Ok(None);
    };
    let first = first.to_ascii_uppercase();
    let mut rest = &words[1..];
    if first == "SET"
        && rest
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("session") || w.eq_ignore_ascii_case("local"))
    {
        rest = &rest[1..];
    }
    let Some(name) = rest.first() else {
        return Ok(None);
    };
    let name_lower = name.to_ascii_lowercase();
    let (name_only, inline_value) = match name_lower.split_once('=') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (name_lower.clone(), None),
    };
    if first == "SET" && name_only.starts_with("datafusion.") {
        return Err(PgError::Parameter(format!(
            "cannot set `{name_only}`: DataFusion settings are fixed by the server, not per session"
        )));
    }
    if name_only != "statement_timeout" {
        return Ok(None);
    }
    let session = current();
    match first.as_str() {
        "RESET" => {
            if let Some(s) = session {
                s.set_statement_timeout(None);
            }
            Ok(Some("RESET"))
        }
        "SET" => {
            let mut value: Vec<&str> = inline_value.iter().map(String::as_str).collect();
            let tail = &rest[1..];
            let tail = match tail.first() {
                Some(w) if *w == "=" || w.eq_ignore_ascii_case("to") => &tail[1..],
                _ => tail,
            };
            value.extend(tail.iter().copied());
            let value = value.join(" ");
            let value = value.trim_start_matches('=').trim();
            let timeout = parse_timeout(value)?;
            if let Some(s) = session {
                s.set_statement_timeout(timeout);
            }
            Ok(Some("SET"))
        }
        _ => Ok(None),
    }
}

/// A `statement_timeout` value as PostgreSQL reads it: a number of milliseconds, or a
/// quoted number with a unit (`'5s'`, `'2min'`, `'100ms'`); `0` or `DEFAULT` unsets it.
fn parse_timeout(value: &str) -> Result<Option<Duration>, PgError> {
    let v = value.trim_end_matches(';').trim();
    let v = v.trim_matches(|c| c == '\'' || c == '"').trim();
    if v.eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    let bad = || {
        PgError::Parameter(format!(
            "invalid value for parameter \"statement_timeout\": \"{value}\" (expected milliseconds or a duration such as '5s', '2min')"
        ))
    };
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => n,
        "s" => n.checked_mul(1_000).ok_or_else(bad)?,
        "min" => n.checked_mul(60_000).ok_or_else(bad)?,
        "h" => n.checked_mul(3_600_000).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400_000).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}

/// The deadline of a query the current connection starts now (the server's default
/// limits outside a connection task).
pub(crate) fn deadline() -> Deadline {
    match current() {
        Some(s) => {
            // A query starts: the session is not idle (its rows keep it busy, see
            // `cancellable`), and a cancel request from now on is meant for it.
            s.activity.touch();
            if let Ok(mut started) = s.query_cancels.lock() {
                started.get_or_insert(*s.cancels.borrow());
            }
            s.deadline()
        }
        None => {
            let limits = PgLimits::default();
            Deadline::after(limits.query_timeout, "limits.query_timeout")
        }
    }
}

/// The current connection's query cycle ended (its Query message was answered, or
/// Sync came): a cancel request from now until the next query is ignored, as in
/// PostgreSQL.
pub(crate) fn end_query_cycle() {
    if let Some(s) = current()
        && let Ok(mut started) = s.query_cancels.lock()
    {
        *started = None;
    }
}

/// Count a query stopped by its timeout (seen as an error of kind `Timeout`).
pub(crate) fn trip_timeout() {
    if let Some(s) = current() {
        s.limits.trips.trip(Limit::QueryTimeout, Protocol::Pg);
    }
}

/// How often a running query checks that its connection is still open.
const LIVENESS_INTERVAL: Duration = Duration::from_millis(100);

/// `rows`, ended with SQLSTATE 57014 when a cancel request arrives or the connection
/// closes while it runs, or a cancel request arrived since the query started (while it
/// was planned: see [`deadline`]). Dropping `rows` aborts the query.
pub(crate) fn cancellable<S>(rows: S) -> Pin<Box<dyn Stream<Item = PgWireResult<DataRow>> + Send>>
where
    S: Stream<Item = PgWireResult<DataRow>> + Send + 'static,
{
    let Some(session) = current() else {
        return rows.boxed();
    };
    let mut cancels = session.cancels.subscribe();
    let now = *cancels.borrow_and_update();
    let started = session.query_cancels.lock().ok().and_then(|s| *s);
    let cancelled_while_planned = started.is_some_and(|started| started != now);
    let cancels: Pin<Box<dyn std::future::Future<Output = ()> + Send>> = if cancelled_while_planned
    {
        Box::pin(std::future::ready(()))
    } else {
        Box::pin(async move {
            let _ = cancels.changed().await;
        })
    };
    let busy = session.activity.busy();
    Box::pin(Cancellable {
        rows: Some(rows.boxed()),
        _busy: busy,
        session,
        cancels,
        tick: tokio::time::interval(LIVENESS_INTERVAL),
    })
}

struct Cancellable {
    rows: Option<Pin<Box<dyn Stream<Item = PgWireResult<DataRow>> + Send>>>,
    /// The session is busy (never idle-timed-out) while its rows stream.
    _busy: BusyGuard,
    session: Arc<Session>,
    cancels: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    tick: tokio::time::Interval,
}

impl Cancellable {
    fn stop(&mut self, limit: Limit, message: &str) -> Poll<Option<PgWireResult<DataRow>>> {
        self.rows = None; // aborts the query
        self.session.limits.trips.trip(limit, Protocol::Pg);
        Poll::Ready(Some(Err(PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_owned(),
            "57014".to_owned(), // query_canceled
            message.to_owned(),
        ))))))
    }
}

impl Stream for Cancellable {
    type Item = PgWireResult<DataRow>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.rows.is_none() {
            return Poll::Ready(None);
        }
        if self.cancels.as_mut().poll(cx).is_ready() {
            return self.stop(
                Limit::CancelRequest,
                "canceling statement due to user request",
            );
        }
        if let Some(rows) = self.rows.as_mut()
            && let Poll::Ready(item) = rows.poll_next_unpin(cx)
        {
            match &item {
                None => self.rows = None,
                Some(Err(PgWireError::UserError(info))) if info.code == "57014" => {
                    // The query's own deadline (see `Deadline::bound`).
                    self.session
                        .limits
                        .trips
                        .trip(Limit::QueryTimeout, Protocol::Pg);
                }
                Some(_) => {}
            }
            return Poll::Ready(item);
        }
        while self.tick.poll_tick(cx).is_ready() {
            if self.session.peer_closed() {
                tracing::debug!("PG client closed its connection; cancelling its query");
                return self.stop(
                    Limit::ClientGone,
                    "canceling statement: the client closed the connection",
                );
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_timeout_values_parse_as_postgres_reads_them() {
        assert_eq!(
            parse_timeout("1500").unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_timeout("'5s'").unwrap(), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_timeout("'2min'").unwrap(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_timeout("0").unwrap(), None);
        assert_eq!(parse_timeout("DEFAULT").unwrap(), None);
        let err = parse_timeout("'soon'").unwrap_err();
        assert_eq!(err.sqlstate(), "22023", "{err}");
    }

    /// A session on a real loopback socket, as the server makes one.
    async fn loopback_session() -> (Arc<Session>, tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        let activity = bulkhead_frontend::net::Activity::new(bulkhead_frontend::net::Timeouts {
            startup: Duration::from_secs(10),
            receiving: None,
            idle: None,
        });
        let session = Session::new(Arc::new(PgLimits::default()), &socket, activity, false);
        (session, socket, client)
    }

    /// Whether `rows` ends with the cancel error (the rows never end by themselves).
    async fn cancelled<S>(rows: &mut S) -> bool
    where
        S: Stream<Item = PgWireResult<DataRow>> + Unpin,
    {
        let item = tokio::time::timeout(Duration::from_secs(10), rows.next())
            .await
            .expect("the cancel request was lost");
        matches!(item, Some(Err(PgWireError::UserError(info)))
            if info.code == "57014" && info.message.contains("user request"))
    }

    /// The race CI hit: the cancel request arrived while the query was still planned
    /// (before its rows streamed), and was lost, so the query ran to its timeout.
    #[tokio::test]
    async fn a_cancel_request_while_the_query_is_planned_cancels_it() {
        let (session, _socket, _client) = loopback_session().await;
        let s = Arc::clone(&session);
        CONNECTION
            .scope(Arc::clone(&session), async move {
                // A cancel, then a whole query cycle that must not see it.
                let idle_cancel_then_query = |why: &'static str| {
                    let s = Arc::clone(&s);
                    async move {
                        s.cancels.send_modify(|n| *n += 1);
                        let _deadline = deadline();
                        let mut rows = cancellable(futures::stream::iter(Vec::new()));
                        assert!(rows.next().await.is_none(), "{why}");
                        end_query_cycle();
                    }
                };
                // Between queries a cancel request is ignored, as in PostgreSQL.
                idle_cancel_then_query("an idle-time cancel was kept").await;

                // Planned for a Describe, cancelled, planned again for the Execute of
                // the same cycle and streamed: cancelled at once.
                let _deadline = deadline();
                drop(cancellable(futures::stream::pending()));
                s.cancels.send_modify(|n| *n += 1);
                let _deadline = deadline();
                let mut rows = cancellable(futures::stream::pending());
                assert!(cancelled(&mut rows).await);
                assert!(rows.next().await.is_none());
                end_query_cycle();

                // A cancel after the cycle ended does not reach the next query.
                idle_cancel_then_query("a cancel crossed a Sync").await;

                // Streaming, then cancelled.
                let _deadline = deadline();
                let mut rows = cancellable(futures::stream::pending());
                let cancel = Arc::clone(&s);
                tokio::spawn(async move { cancel.cancels.send_modify(|n| *n += 1) });
                assert!(cancelled(&mut rows).await);
            })
            .await;
        assert_eq!(
            session.limits.trips.get(Limit::CancelRequest, Protocol::Pg),
            2
        );
    }

    #[test]
    fn set_commands_are_recognised() {
        assert_eq!(
            set_command("SET statement_timeout = 100").unwrap(),
            Some("SET")
        );
        assert_eq!(
            set_command("set statement_timeout to '1s'").unwrap(),
            Some("SET")
        );
        assert_eq!(
            set_command("SET SESSION statement_timeout=100").unwrap(),
            Some("SET")
        );
        assert_eq!(
            set_command("reset statement_timeout").unwrap(),
            Some("RESET")
        );
        assert_eq!(set_command("SET extra_float_digits = 3").unwrap(), None);
        assert_eq!(set_command("select 1").unwrap(), None);
        let err = set_command("SET datafusion.execution.batch_size = 1").unwrap_err();
        assert!(
            err.to_string().contains("datafusion.execution.batch_size"),
            "{err}"
        );
    }
}
