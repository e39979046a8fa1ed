//! HTTP-level metrics: request counts and latency histograms per route, ingest counters,
//! rendered as Prometheus text next to the backends' and the runtimes' metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bulkhead_runtime::latency::{HistogramSnapshot, LatencyHistogram};
use std::sync::Mutex;

use super::ServerState;

/// Upper bounds (seconds) of the request latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// Counters of the HTTP layer.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    pub(super) ingest_rows: AtomicU64,
    pub(super) ingest_lines_rejected: AtomicU64,
    pub(super) ingest_bytes: AtomicU64,
    pub(super) query_rows: AtomicU64,
    /// Prometheus staleness markers dropped by remote write.
    pub(super) prom_stale_dropped: AtomicU64,
    /// Native histograms and exemplars ignored by remote write.
    pub(super) prom_ignored: AtomicU64,
    /// (route, method, status) -> count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route -> latency.
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Write requests: from the body being read until parsing starts on `write`.
    pub(super) write_parse_queue: LatencyHistogram,
    /// Write requests: decompressing and parsing the line protocol.
    pub(super) write_parse: LatencyHistogram,
    /// Write requests: from the body being read until the answer (parse, engine, ack).
    pub(super) write_handler: LatencyHistogram,
}

impl HttpMetrics {
    /// The HTTP layer's write stages, by name, in pipeline order.
    pub(super) fn write_stages(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        vec![
            ("http_parse_queue", self.write_parse_queue.snapshot()),
            ("http_parse", self.write_parse.snapshot()),
            ("http_handler", self.write_handler.snapshot()),
        ]
    }

    pub(super) fn record(&self, route: &str, method: &str, status: u16, secs: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), method.to_string(), status))
                .or_default() += 1;
        }
        if let Ok(mut m) = self.latency.lock() {
            m.entry(route.to_string()).or_default().observe(secs);
        }
    }

    /// Rows written through the HTTP API so far.
    pub fn ingest_rows(&self) -> u64 {
        self.ingest_rows.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition of the HTTP metrics.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        counter(
            &mut out,
            "bulkhead_ingest_rows_total",
            "Rows written through the HTTP API.",
            &self.ingest_rows,
        );
        counter(
            &mut out,
            "bulkhead_ingest_lines_rejected_total",
            "Line-protocol lines rejected (parse errors and limits).",
            &self.ingest_lines_rejected,
        );
        counter(
            &mut out,
            "bulkhead_ingest_bytes_total",
            "Line-protocol and remote-write bytes received (after decompression).",
            &self.ingest_bytes,
        );
        counter(
            &mut out,
            "bulkhead_query_rows_total",
            "Rows returned by SQL over HTTP.",
            &self.query_rows,
        );
        counter(
            &mut out,
            "bulkhead_prom_stale_samples_dropped_total",
            "Prometheus staleness markers received by remote write and not stored.",
            &self.prom_stale_dropped,
        );
        counter(
            &mut out,
            "bulkhead_prom_ignored_total",
            "Native histograms and exemplars received by remote write and not stored.",
            &self.prom_ignored,
        );

        let _ = writeln!(
            out,
            "# HELP bulkhead_http_requests_total HTTP requests by route, method and status."
        );
        let _ = writeln!(out, "# TYPE bulkhead_http_requests_total counter");
        if let Ok(m) = self.requests.lock() {
            for ((route, method, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "bulkhead_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        let name = "bulkhead_http_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} HTTP request latency by route.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        if let Ok(m) = self.latency.lock() {
            for (route, h) in m.iter() {
                let route = escape(route);
                for (bound, n) in BUCKETS.iter().zip(h.counts) {
                    let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}");
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", h.sum);
                let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", h.count);
            }
        }
        out
    }
}

/// Escape a Prometheus label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: time every request and count it by route (the matched pattern, never the
/// raw path, so label cardinality stays bounded).
pub(super) async fn track(
    State(state): State<Arc<ServerState>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    let response = next.run(req).await;
    state.metrics.record(
        &route,
        &method,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = HttpMetrics::default();
        m.ingest_rows.fetch_add(3, Ordering::Relaxed);
        m.record("/write", "POST", 204, 0.003);
        m.record("/write", "POST", 204, 2.0);
        let text = m.render();
        assert!(text.contains("bulkhead_ingest_rows_total 3"), "{text}");
        assert!(text.contains(
            "bulkhead_http_requests_total{route=\"/write\",method=\"POST\",status=\"204\"} 2"
        ));
        assert!(text.contains(
            "bulkhead_http_request_duration_seconds_bucket{route=\"/write\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "bulkhead_http_request_duration_seconds_bucket{route=\"/write\",le=\"2.5\"} 2"
        ));
        assert!(text.contains("bulkhead_http_request_duration_seconds_count{route=\"/write\"} 2"));
    }
}
