//! Loading TSBS data into a system over HTTP, and the Bulkhead admin/SQL/metrics calls
//! the storage and query benchmarks share.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};

use super::tsbs;

/// Generates TSBS cpu-only request bodies chunk by chunk (a chunk is a number of
/// 10-second intervals), so a day of 1,000 hosts never sits in memory at once.
pub(crate) struct Chunks {
    generator: tsbs::Generator,
    intervals_left: usize,
    intervals_per_chunk: usize,
    batch: usize,
}

impl Chunks {
    /// `span` of data for `scale` hosts (seed 1, TSBS's start time), cut into chunks of
    /// `chunk` of data time each, bodies of up to `batch` lines.
    pub(crate) fn new(
        scale: usize,
        span: std::time::Duration,
        chunk: std::time::Duration,
        batch: usize,
    ) -> Self {
        let per = |d: std::time::Duration| (d.as_nanos() / tsbs::INTERVAL_NS as u128) as usize;
        Self {
            generator: tsbs::Generator::new(scale, tsbs::DEFAULT_START_NS, 1),
            intervals_left: per(span),
            intervals_per_chunk: per(chunk).max(1),
            batch: batch.max(1),
        }
    }
}

impl Iterator for Chunks {
    /// (request bodies, rows in them)
    type Item = (Vec<Bytes>, usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.intervals_left == 0 {
            return None;
        }
        let n = self.intervals_per_chunk.min(self.intervals_left);
        self.intervals_left -= n;
        let mut text = String::new();
        for _ in 0..n {
            self.generator.write_interval(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        let rows = lines.len();
        let bodies = lines
            .chunks(self.batch)
            .map(|c| {
                let mut body = c.join("\n");
                body.push('\n');
                Bytes::from(body)
            })
            .collect();
        Some((bodies, rows))
    }
}

/// A progress bar for loading `total` rows into `system`.
pub(crate) fn rows_bar(system: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{prefix:>16} [{bar:40}] {human_pos}/{human_len} rows {per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(system.to_string());
    bar
}

/// POST every body to `url` from `clients` concurrent tasks; fails on the first error.
pub(crate) async fn post_all(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<Bytes>,
    clients: usize,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (client, url, bodies, next, bar) = (
            client.clone(),
            url.to_string(),
            Arc::clone(&bodies),
            Arc::clone(&next),
            bar.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while let Some(body) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
                let lines = body.iter().filter(|&&b| b == b'\n').count();
                let resp = client.post(&url).body(body.clone()).send().await?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    bail!("{url}: {status}: {}", resp.text().await.unwrap_or_default());
                }
                resp.bytes().await?;
                bar.inc(lines as u64);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// `POST {base}/api/v1/{action}?db=..&table=..` (`flush` or `compact`).
pub(crate) async fn admin(
    client: &reqwest::Client,
    base: &str,
    action: &str,
    db: &str,
    table: &str,
) -> anyhow::Result<()> {
    let resp = client
        .post(format!("{base}/api/v1/{action}"))
        .query(&[("db", db), ("table", table)])
        .send()
        .await
        .with_context(|| format!("{action} request"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!(
            "{action}: {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    resp.bytes().await?;
    Ok(())
}

/// Run `q` against Bulkhead's HTTP SQL endpoint and return the rows (JSON objects).
pub(crate) async fn sql(
    client: &reqwest::Client,
    base: &str,
    db: &str,
    q: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let body = sql_body(client, base, db, q).await?;
    sql_rows(q, &body)
}

/// The raw JSON answer to a SQL query: what a benchmark times (the server's work and
/// the transfer, not the client's parse).
pub(crate) async fn sql_body(
    client: &reqwest::Client,
    base: &str,
    db: &str,
    q: &str,
) -> anyhow::Result<bytes::Bytes> {
    Ok(sql_response(client, base, db, q, "json")
        .await?
        .bytes()
        .await?)
}

/// The response to SQL `q` on `/api/v1/sql` in `format`, its body not yet read; an
/// error status becomes an error naming the query and the server's message.
pub(crate) async fn sql_response(
    client: &reqwest::Client,
    base: &str,
    db: &str,
    q: &str,
    format: &str,
) -> anyhow::Result<reqwest::Response> {
    let resp = client
        .get(format!("{base}/api/v1/sql"))
        .query(&[("db", db), ("q", q), ("format", format)])
        .send()
        .await?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!(
            "SQL {q:?}: {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(resp)
}

/// The rows of a JSON answer from [`sql_body`].
pub(crate) fn sql_rows(q: &str, body: &[u8]) -> anyhow::Result<Vec<serde_json::Value>> {
    let rows: serde_json::Value =
        serde_json::from_slice(body).with_context(|| format!("SQL {q:?}: result is not JSON"))?;
    match rows {
        serde_json::Value::Array(rows) => Ok(rows),
        other => bail!("SQL {q:?}: expected a JSON array, got {other}"),
    }
}

/// The live SSTs of `db.table` (from `system.sst_files`): (path, rows, bytes).
pub(crate) async fn sst_files(
    client: &reqwest::Client,
    base: &str,
    db: &str,
    table: &str,
) -> anyhow::Result<Vec<(String, u64, u64)>> {
    let rows = sql(client, base, db, "select * from system.sst_files").await?;
    Ok(rows
        .iter()
        .filter(|r| r["database"] == db && r["table"] == table)
        .map(|r| {
            (
                r["path"].as_str().unwrap_or_default().to_string(),
                r["rows"].as_u64().unwrap_or(0),
                r["bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect())
}

/// Samples of Bulkhead's `/metrics` without labels, by name.
pub(crate) async fn metrics(
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<HashMap<String, f64>> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('{'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect())
}
