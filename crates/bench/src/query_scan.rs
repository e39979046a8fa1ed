//! `bench query --full-scan`: `select * from cpu` over all of the data, streamed to the
//! end over HTTP (CSV), with the server's peak resident memory during it. A scan's
//! memory must be bounded by the query memory pool and the scan's own read-ahead,
//! never by the size of the data or of an SST (issue 16).

use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::load;
use super::server::{current_rss, peak_rss};

/// What the full scan read and what it cost the server.
#[derive(Debug, Serialize)]
pub(crate) struct FullScan {
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) seconds: f64,
    /// The server's resident memory just before the scan.
    pub(crate) rss_before_bytes: u64,
    /// The server's peak resident memory during the scan (Linux `VmHWM`, reset first).
    pub(crate) peak_rss_bytes: u64,
}

/// Run the scan against the server at `base` (process `pid`), in database `db`.
pub(crate) async fn run(
    client: &reqwest::Client,
    base: &str,
    pid: u32,
    db: &str,
) -> anyhow::Result<FullScan> {
    // Writing 5 to `clear_refs` resets the peak (VmHWM) to the current RSS.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting the peak RSS of process {pid}"))?;
    let rss_before_bytes = current_rss(pid).context("reading the server's RSS")?;
    let t = Instant::now();
    let mut resp = load::sql_response(client, base, db, "select * from cpu", "csv").await?;
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(chunk) = resp.chunk().await? {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let seconds = t.elapsed().as_secs_f64();
    Ok(FullScan {
        rows: lines.saturating_sub(1), // the header line
        bytes,
        seconds,
        rss_before_bytes,
        peak_rss_bytes: peak_rss(pid).context("reading the server's peak RSS")?,
    })
}

impl std::fmt::Display for FullScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "full scan (select * from cpu, CSV): {} rows, {:.0} MiB in {:.1} s; server RSS {:.0} MiB before, peak {:.0} MiB during (+{:.0} MiB)",
            self.rows,
            self.bytes as f64 / 1048576.0,
            self.seconds,
            self.rss_before_bytes as f64 / 1048576.0,
            self.peak_rss_bytes as f64 / 1048576.0,
            self.peak_rss_bytes.saturating_sub(self.rss_before_bytes) as f64 / 1048576.0,
        )
    }
}
