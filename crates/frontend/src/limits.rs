//! Limits shared by the front ends (HTTP, PG and Flight SQL): a query's deadline, and the
//! counters of every limit that tripped (`bulkhead_limit_trips_total` on `/metrics`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::backend::{QueryError, QueryErrorKind, QueryOutput};

/// The default of `limits.query_memory`, the query layer's memory pool: declared once,
/// here, for the server's config and `bulkhead_query::QueryConfig::default()`.
pub const DEFAULT_QUERY_MEMORY: u64 = 1024 * 1024 * 1024;

/// The timeout of one query: `limit` (`limits.query_timeout`), or the request's own when
/// it is lower. A requested zero means "no request limit", as PG's `statement_timeout`.
pub fn effective_timeout(limit: Duration, requested: Option<Duration>) -> Duration {
    match requested {
        Some(r) if !r.is_zero() => r.min(limit),
        _ => limit,
    }
}

/// The error of a query stopped at its deadline; `source` names where the limit came
/// from (`limits.query_timeout`, the HTTP `timeout` parameter, `statement_timeout`).
pub fn timeout_error(timeout: Duration, source: &str) -> QueryError {
    QueryError::new(
        QueryErrorKind::Timeout,
        format!(
            "canceling statement due to statement timeout: the query ran longer than {} ({source})",
            crate::units::HumanDuration(timeout)
        ),
    )
}

/// A query under a deadline: how the front ends plan (`plan`) and then stream
/// (`bound`) within it.
#[derive(Debug, Clone)]
pub struct Deadline {
    pub at: Instant,
    pub error: QueryError,
}

impl Deadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration, source: &str) -> Self {
        Self {
            at: Instant::now() + timeout,
            error: timeout_error(timeout, source),
        }
    }

    /// Run `planning` (which plans and starts the query) until the deadline.
    pub async fn plan<F>(&self, planning: F) -> Result<F::Output, QueryError>
    where
        F: Future,
    {
        tokio::time::timeout_at(self.at, planning)
            .await
            .map_err(|_| self.error.clone())
    }

    /// `output`, ending with the timeout error if it is still running at the deadline.
    /// The inner stream is dropped then, which aborts the query task (see
    /// `bulkhead_query::yielding` for how soon that stops its CPU work).
    pub fn bound(&self, output: QueryOutput) -> QueryOutput {
        let QueryOutput { schema, batches } = output;
        let sleep = Box::pin(tokio::time::sleep_until(self.at));
        let error = self.error.clone();
        let state = (Some(batches), sleep, error);
        let batches = futures::stream::unfold(state, |(inner, mut sleep, error)| async move {
            let mut inner = inner?;
            tokio::select! {
                biased;
                next = inner.next() => next.map(|b| (b, (Some(inner), sleep, error))),
                () = &mut sleep => {
                    drop(inner);
                    Some((Err(error.clone().into()), (None, sleep, error)))
                }
            }
        })
        .boxed();
        QueryOutput { schema, batches }
    }
}

/// Which front end a limit tripped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Pg,
    FlightSql,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Http, Protocol::Pg, Protocol::FlightSql];

    /// The `protocol` label on `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Pg => "pg",
            Protocol::FlightSql => "flight_sql",
        }
    }
}

/// A limit that can trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A query ran past its timeout.
    QueryTimeout,
    /// A query was stopped because its client went away.
    ClientGone,
    /// A query was stopped by a PG CancelRequest.
    CancelRequest,
    /// A request body stalled past `limits.body_read_timeout`.
    BodyReadTimeout,
    /// A connection was refused: `max_connections` were open.
    MaxConnections,
    /// A connection was closed: no complete request head in `http.header_read_timeout`.
    HeaderReadTimeout,
    /// A connection was closed: not authenticated within `pg.startup_timeout`.
    StartupTimeout,
    /// An idle connection was closed (`http.idle_timeout`, `pg.idle_timeout`).
    IdleTimeout,
    /// A wrong or missing token or password (answered after `auth.failure_delay`).
    AuthFailure,
}

impl Limit {
    const ALL: [Limit; 9] = [
        Limit::QueryTimeout,
        Limit::ClientGone,
        Limit::CancelRequest,
        Limit::BodyReadTimeout,
        Limit::MaxConnections,
        Limit::HeaderReadTimeout,
        Limit::StartupTimeout,
        Limit::IdleTimeout,
        Limit::AuthFailure,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Limit::QueryTimeout => "query_timeout",
            Limit::ClientGone => "query_client_gone",
            Limit::CancelRequest => "query_cancel_request",
            Limit::BodyReadTimeout => "body_read_timeout",
            Limit::MaxConnections => "max_connections",
            Limit::HeaderReadTimeout => "header_read_timeout",
            Limit::StartupTimeout => "startup_timeout",
            Limit::IdleTimeout => "idle_timeout",
            Limit::AuthFailure => "auth_failure",
        }
    }
}

/// How often each limit tripped, by protocol.
#[derive(Debug, Default)]
pub struct LimitTrips {
    counts: [[AtomicU64; Protocol::ALL.len()]; Limit::ALL.len()],
}

impl LimitTrips {
    pub fn trip(&self, limit: Limit, protocol: Protocol) {
        self.counts[limit as usize][protocol as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, limit: Limit, protocol: Protocol) -> u64 {
        self.counts[limit as usize][protocol as usize].load(Ordering::Relaxed)
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP bulkhead_limit_trips_total Requests, queries or connections stopped by a limit.\n\
             # TYPE bulkhead_limit_trips_total counter\n",
        );
        for limit in Limit::ALL {
            for protocol in Protocol::ALL {
                out.push_str(&format!(
                    "bulkhead_limit_trips_total{{limit=\"{}\",protocol=\"{}\"}} {}\n",
                    limit.as_str(),
                    protocol.as_str(),
                    self.get(limit, protocol)
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Schema;
    use std::sync::Arc;

    #[test]
    fn a_request_can_only_lower_the_timeout() {
        let limit = Duration::from_secs(300);
        assert_eq!(effective_timeout(limit, None), limit);
        assert_eq!(effective_timeout(limit, Some(Duration::ZERO)), limit);
        assert_eq!(
            effective_timeout(limit, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            effective_timeout(limit, Some(Duration::from_secs(900))),
            limit
        );
    }

    #[tokio::test]
    async fn a_stream_past_its_deadline_ends_with_the_timeout() {
        let output = QueryOutput {
            schema: Arc::new(Schema::empty()),
            batches: futures::stream::pending().boxed(),
        };
        let deadline = Deadline::after(Duration::from_millis(20), "limits.query_timeout");
        let mut bounded = deadline.bound(output).batches;
        let err = bounded.next().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("statement timeout"), "{err}");
        assert!(bounded.next().await.is_none());
    }

    #[test]
    fn trips_are_rendered_by_limit_and_protocol() {
        let trips = LimitTrips::default();
        trips.trip(Limit::CancelRequest, Protocol::Pg);
        let text = trips.render();
        assert!(
            text.contains(
                "bulkhead_limit_trips_total{limit=\"query_cancel_request\",protocol=\"pg\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "bulkhead_limit_trips_total{limit=\"query_timeout\",protocol=\"http\"} 0"
            ),
            "{text}"
        );
    }
}
