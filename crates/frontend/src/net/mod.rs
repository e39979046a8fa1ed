//! What the HTTP and PG listeners share to bound their connections: a cap on open
//! connections ([`ConnectionGate`]), per-connection deadlines ([`Activity`]), TCP
//! keepalive, and TLS from PEM files ([`tls`]).
//!
//! A connection past the cap is not dropped at once: it is served by a refusal (HTTP
//! 503 + Retry-After, PG 53300) so the client sees why. Those refusals are capped too
//! ([`REFUSALS`] at once); past that, new connections are closed unanswered.

mod activity;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

pub use activity::{Activity, BusyGuard, Expired, Timeouts, Tracked};

use crate::limits::{Limit, LimitTrips, Protocol};

/// Connections being refused (answered 503 / 53300) at once, per listener.
pub const REFUSALS: usize = 64;

/// Open and accepted connections by protocol (`/metrics`).
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    open: [AtomicUsize; Protocol::ALL.len()],
    accepted: [AtomicU64; Protocol::ALL.len()],
}

impl ConnectionCounts {
    pub fn open(&self, protocol: Protocol) -> usize {
        self.open[protocol as usize].load(Ordering::Relaxed)
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP bulkhead_connections_open Connections being served (refusals not included).\n\
             # TYPE bulkhead_connections_open gauge\n",
        );
        for p in Protocol::ALL {
            let name = p.as_str();
            out.push_str(&format!(
                "bulkhead_connections_open{{protocol=\"{name}\"}} {}\n",
                self.open(p)
            ));
        }
        out.push_str(
            "# HELP bulkhead_connections_accepted_total Connections accepted and served.\n\
             # TYPE bulkhead_connections_accepted_total counter\n",
        );
        for p in Protocol::ALL {
            let name = p.as_str();
            out.push_str(&format!(
                "bulkhead_connections_accepted_total{{protocol=\"{name}\"}} {}\n",
                self.accepted[p as usize].load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// What to do with a connection just accepted.
#[derive(Debug)]
pub enum Admission {
    /// Serve it; the slot is held until the guard drops.
    Serve(SlotGuard),
    /// Answer it with a refusal (503 / 53300); the refusal slot is held until the guard drops.
    Refuse(SlotGuard),
    /// Close it unanswered: too many refusals in progress.
    Drop,
}

/// The cap on one listener's open connections.
#[derive(Debug)]
pub struct ConnectionGate {
    protocol: Protocol,
    max: usize,
    refusing: Arc<AtomicUsize>,
    counts: Arc<ConnectionCounts>,
    trips: Arc<LimitTrips>,
}

impl ConnectionGate {
    pub fn new(
        protocol: Protocol,
        max: usize,
        counts: Arc<ConnectionCounts>,
        trips: Arc<LimitTrips>,
    ) -> Self {
        Self {
            protocol,
            max,
            refusing: Arc::default(),
            counts,
            trips,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Take a slot for a new connection, or a refusal slot (counted as a trip).
    pub fn admit(&self) -> Admission {
        let p = self.protocol as usize;
        let open = &self.counts.open[p];
        let taken = open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.max).then_some(n + 1)
        });
        if taken.is_ok() {
            self.counts.accepted[p].fetch_add(1, Ordering::Relaxed);
            return Admission::Serve(SlotGuard {
                slot: Slot::Open(Arc::clone(&self.counts), p),
            });
        }
        self.trips.trip(Limit::MaxConnections, self.protocol);
        let refusing = self
            .refusing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < REFUSALS).then_some(n + 1)
            });
        match refusing {
            Ok(_) => Admission::Refuse(SlotGuard {
                slot: Slot::Refusing(Arc::clone(&self.refusing)),
            }),
            Err(_) => Admission::Drop,
        }
    }
}

#[derive(Debug)]
enum Slot {
    Open(Arc<ConnectionCounts>, usize),
    Refusing(Arc<AtomicUsize>),
}

/// A connection slot, given back on drop.
#[derive(Debug)]
pub struct SlotGuard {
    slot: Slot,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        match &self.slot {
            Slot::Open(counts, p) => counts.open[*p].fetch_sub(1, Ordering::AcqRel),
            Slot::Refusing(n) => n.fetch_sub(1, Ordering::AcqRel),
        };
    }
}

/// Prepare an accepted socket: no Nagle delay (a reply written in parts would wait
/// ~40 ms for the client's delayed ACK), and TCP keepalive probes after `keepalive` of
/// silence (zero: off), so a peer that vanished without a FIN is eventually noticed.
pub fn prepare_socket(stream: &tokio::net::TcpStream, keepalive: Duration) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    if keepalive.is_zero() {
        return;
    }
    let ka = socket2::TcpKeepalive::new()
        .with_time(keepalive)
        .with_interval(Duration::from_secs(10).min(keepalive));
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    let ka = ka.with_retries(6);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_serves_up_to_max_then_refuses_then_drops() {
        let counts = Arc::new(ConnectionCounts::default());
        let trips = Arc::new(LimitTrips::default());
        let gate = ConnectionGate::new(Protocol::Pg, 2, Arc::clone(&counts), Arc::clone(&trips));
        let a = gate.admit();
        let b = gate.admit();
        assert!(matches!(a, Admission::Serve(_)));
        assert!(matches!(b, Admission::Serve(_)));
        assert_eq!(counts.open(Protocol::Pg), 2);
        let refused: Vec<_> = (0..REFUSALS).map(|_| gate.admit()).collect();
        assert!(refused.iter().all(|r| matches!(r, Admission::Refuse(_))));
        assert!(matches!(gate.admit(), Admission::Drop));
        assert_eq!(
            trips.get(Limit::MaxConnections, Protocol::Pg),
            REFUSALS as u64 + 1
        );
        drop(refused);
        drop(a);
        assert_eq!(counts.open(Protocol::Pg), 1);
        let c = gate.admit();
        assert!(matches!(c, Admission::Serve(_)));
        assert!(
            counts
                .render()
                .contains("bulkhead_connections_open{protocol=\"pg\"} 2")
        );
    }
}
