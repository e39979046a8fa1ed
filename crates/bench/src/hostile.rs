//! The soak's hostile-client phase: well-behaved writers and a query probe are measured
//! alone (quiet), then beside hostile clients (hostile), and their p99s compared. The
//! target (issue 23) is a write p99 and a query p99 within 1.5x of the quiet ones, with
//! the server's RSS bounded. The hostile clients:
//! - stalled uploads: 4 connections that declare a 64 MiB write body, send 100 bytes and
//!   stop (the server ends them with 408 after `limits.body_read_timeout`; they
//!   reconnect);
//! - slowloris: 50 connections that send a request head one byte per second (closed by
//!   `http.header_read_timeout`; they reconnect);
//! - a heavy-join loop: a nested-loop join that never ends, each run stopped by its
//!   `timeout=2s` parameter (504);
//! - a wrong-token loop: `select 1` with a bad token, serially (401 after
//!   `auth.failure_delay`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::interference::{Batches, write_url};
use super::server::{ChildServer, peak_rss};
use super::stats::Dist;

/// The token the soak's server is started with (`--auth-token`).
pub(crate) const TOKEN: &str = "soak-token";

/// Stays under the `max_connections` default with room for the well-behaved clients.
const SLOWLORIS: usize = 50;
const STALLED_UPLOADS: usize = 4;
const HEAVY_JOIN: &str = "select count(*) from generate_series(1, 20000) a, \
                          generate_series(1, 1000000000) b where a.value + b.value = 7";
const PROBE_QUERY: &str = "select hostname, max(usage_user) from cpu \
                           where time > now() - interval '1 minute' group by hostname";

/// What the well-behaved clients saw in one sub-phase.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Probe {
    writes: Dist,
    write_errors: usize,
    queries: Dist,
    query_errors: usize,
}

/// What the hostile clients did (and how the server answered them).
#[derive(Debug, Default, Serialize)]
pub(crate) struct Attackers {
    stalled_upload_connections: usize,
    slowloris_connections: usize,
    /// Heavy joins by the status they were answered with.
    heavy_queries: BTreeMap<u16, usize>,
    /// Wrong-token requests by the status they were answered with.
    wrong_tokens: BTreeMap<u16, usize>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Hostile {
    pub(crate) quiet: Probe,
    pub(crate) hostile: Probe,
    pub(crate) write_p99_ratio: f64,
    pub(crate) query_p99_ratio: f64,
    pub(crate) attackers: Attackers,
    pub(crate) peak_rss_bytes: u64,
    pub(crate) server_alive: bool,
}

impl Hostile {
    pub(crate) fn quiet_write_p99(&self) -> f64 {
        self.quiet.writes.p99_ms
    }

    pub(crate) fn hostile_write_p99(&self) -> f64 {
        self.hostile.writes.p99_ms
    }

    pub(crate) fn quiet_query_p99(&self) -> f64 {
        self.quiet.queries.p99_ms
    }

    pub(crate) fn hostile_query_p99(&self) -> f64 {
        self.hostile.queries.p99_ms
    }

    /// The verdicts that failed (the target: both ratios at most 1.5).
    pub(crate) fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, ratio) in [
            ("write", self.write_p99_ratio),
            ("query", self.query_p99_ratio),
        ] {
            if ratio > 1.5 {
                out.push(format!(
                    "hostile clients: the {what} p99 grew {ratio:.2}x (target 1.5x)"
                ));
            }
        }
        if !self.server_alive {
            out.push("hostile clients: the server died".into());
        }
        out
    }
}

/// Run the quiet then the hostile sub-phase, `duration` each, writes at `rate` rows/s.
pub(crate) async fn run(
    client: &reqwest::Client,
    server: &ChildServer,
    gen_: &Arc<Mutex<Batches>>,
    rate: f64,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<Hostile> {
    eprintln!("hostile phase: {duration:?} quiet, then {duration:?} beside hostile clients");
    let quiet = probe(client, server, gen_, rate, batch, duration).await;
    let stop = Arc::new(AtomicBool::new(false));
    let attackers = Arc::new(Mutex::new(Attackers::default()));
    let mut tasks = Vec::new();
    let addr = server.base.trim_start_matches("http://").to_string();
    for _ in 0..STALLED_UPLOADS {
        tasks.push(tokio::spawn(stalled_upload(
            addr.clone(),
            Arc::clone(&stop),
            Arc::clone(&attackers),
        )));
    }
    for _ in 0..SLOWLORIS {
        tasks.push(tokio::spawn(slowloris(
            addr.clone(),
            Arc::clone(&stop),
            Arc::clone(&attackers),
        )));
    }
    tasks.push(tokio::spawn(heavy_joins(
        client.clone(),
        server.base.clone(),
        Arc::clone(&stop),
        Arc::clone(&attackers),
    )));
    tasks.push(tokio::spawn(wrong_tokens(
        server.base.clone(),
        Arc::clone(&stop),
        Arc::clone(&attackers),
    )));
    // Let the attackers take hold before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hostile = probe(client, server, gen_, rate, batch, duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    let server_alive = client
        .get(format!("{}/health", server.base))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    let ratio = |a: f64, b: f64| if a > 0.0 { b / a } else { 0.0 };
    let attackers = std::mem::take(&mut *attackers.lock());
    Ok(Hostile {
        write_p99_ratio: ratio(quiet.writes.p99_ms, hostile.writes.p99_ms),
        query_p99_ratio: ratio(quiet.queries.p99_ms, hostile.queries.p99_ms),
        quiet,
        hostile,
        attackers,
        peak_rss_bytes: peak_rss(server.pid()).unwrap_or(0),
        server_alive,
    })
}

/// Open-loop writes at `rate` and a query every 200 ms, for `duration`.
async fn probe(
    client: &reqwest::Client,
    server: &ChildServer,
    gen_: &Arc<Mutex<Batches>>,
    rate: f64,
    batch: usize,
    duration: Duration,
) -> Probe {
    let url = write_url(&server.base);
    let every = Duration::from_secs_f64(batch as f64 / rate.max(1.0));
    let end = Instant::now() + duration;
    let writes: Arc<Mutex<Vec<f64>>> = Arc::default();
    let write_errors = Arc::new(AtomicUsize::new(0));
    let queries = {
        let (client, base) = (client.clone(), server.base.clone());
        tokio::spawn(async move {
            let (mut done, mut errors) = (Vec::new(), 0);
            while Instant::now() < end {
                let start = Instant::now();
                let ok = client
                    .get(format!("{base}/api/v1/sql"))
                    .query(&[("db", "bench"), ("q", PROBE_QUERY), ("format", "csv")])
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    done.push(start.elapsed().as_secs_f64() * 1e3);
                } else {
                    errors += 1;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (done, errors)
        })
    };
    let mut in_flight = Vec::new();
    let mut due = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep_until(due.into()).await;
        let body = gen_.lock().next();
        let (client, url) = (client.clone(), url.clone());
        let (writes, write_errors) = (Arc::clone(&writes), Arc::clone(&write_errors));
        let scheduled = due;
        in_flight.push(tokio::spawn(async move {
            let ok = client
                .post(&url)
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                writes.lock().push(scheduled.elapsed().as_secs_f64() * 1e3);
            } else {
                write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
        due += every;
    }
    for t in in_flight {
        let _ = t.await;
    }
    let (done, query_errors) = queries.await.unwrap_or_default();
    let writes = writes.lock();
    Probe {
        writes: Dist::of(&writes),
        write_errors: write_errors.load(Ordering::Relaxed),
        queries: Dist::of(&done),
        query_errors,
    }
}

/// Declare a 64 MiB body, send 100 bytes, wait for the server to end it; again.
async fn stalled_upload(addr: String, stop: Arc<AtomicBool>, seen: Arc<Mutex<Attackers>>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(&addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        seen.lock().stalled_upload_connections += 1;
        let head = format!(
            "POST /api/v2/write?bucket=bench HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Token {TOKEN}\r\nContent-Length: 67108864\r\n\r\n"
        );
        let body = "cpu,hostname=stalled usage_user=1 ".repeat(3);
        if s.write_all(head.as_bytes()).await.is_err()
            || s.write_all(body.as_bytes()).await.is_err()
        {
            continue;
        }
        // Until the server answers (408) and closes, or the phase ends (aborted).
        let mut buf = [0u8; 512];
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
    }
}

/// Send a request head one byte per second until the server closes; again.
async fn slowloris(addr: String, stop: Arc<AtomicBool>, seen: Arc<Mutex<Attackers>>) {
    let head = b"GET /api/v1/sql?db=bench&q=select+1 HTTP/1.1\r\nHost: slow\r\nX-Slow: ";
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(&addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        seen.lock().slowloris_connections += 1;
        for b in head.iter().chain(std::iter::repeat(&b'a')) {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// A join that never ends, stopped by its own 2 s timeout; again.
async fn heavy_joins(
    client: reqwest::Client,
    base: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Attackers>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let status = client
            .get(format!("{base}/api/v1/sql"))
            .query(&[("db", "bench"), ("q", HEAVY_JOIN), ("timeout", "2s")])
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        *seen.lock().heavy_queries.entry(status).or_default() += 1;
    }
}

/// `select 1` with a wrong token, one after the other.
async fn wrong_tokens(base: String, stop: Arc<AtomicBool>, seen: Arc<Mutex<Attackers>>) {
    let client = reqwest::Client::new();
    while !stop.load(Ordering::Relaxed) {
        let status = client
            .get(format!("{base}/api/v1/sql"))
            .query(&[("db", "bench"), ("q", "select 1")])
            .header("Authorization", "Token wrong")
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        *seen.lock().wrong_tokens.entry(status).or_default() += 1;
    }
}
