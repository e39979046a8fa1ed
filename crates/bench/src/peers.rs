//! Peer databases for side-by-side benchmarks, started on loopback from their Debian
//! packages (`victoria-metrics`, `influxdb`; `scripts/install-peers` installs them).
//!
//! Besides starting a peer, this knows how to make it write everything down and finish
//! its own compaction ([`PeerServer::settle`]), and how much disk its data takes
//! ([`disk_usage`]), for `bench storage`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Peer {
    /// VictoriaMetrics (acks before fsync).
    Victoriametrics,
    /// InfluxDB 1.x (WAL fsync before ack).
    Influxdb,
}

impl Peer {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Peer::Victoriametrics => "victoriametrics",
            Peer::Influxdb => "influxdb",
        }
    }
}

/// A running peer; killed by PID when dropped.
pub(crate) struct PeerServer {
    peer: Peer,
    child: Child,
    /// The peer's data directory (everything it stores lives below it).
    data_dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    pub(crate) write_url: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn find(binary: &str, package: &str) -> anyhow::Result<String> {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = format!("{dir}/{binary}");
        if Path::new(&p).exists() {
            return Ok(p);
        }
    }
    bail!("`{binary}` not found: run `scripts/install-peers` (or `apt-get install {package}`)")
}

impl PeerServer {
    /// Start `peer` with its data under `dir`, with default compaction behaviour.
    pub(crate) fn start(peer: Peer, dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(peer, dir, false)
    }

    /// Start `peer`; with `compact_when_idle`, InfluxDB snapshots its cache and fully
    /// compacts a shard one second after the last write (instead of 10 min / 4 h), so
    /// [`PeerServer::settle`] can wait for its final on-disk form.
    pub(crate) fn start_with(
        peer: Peer,
        dir: &Path,
        compact_when_idle: bool,
    ) -> anyhow::Result<Self> {
        Self::start_with_args(peer, dir, compact_when_idle, &[])
    }

    /// [`PeerServer::start_with`], passing `extra` flags to VictoriaMetrics (ignored for
    /// InfluxDB, which is configured by file).
    pub(crate) fn start_with_args(
        peer: Peer,
        dir: &Path,
        compact_when_idle: bool,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("peer.log"))?;
        let data_dir = dir.join("data");
        let child = match peer {
            Peer::Victoriametrics => {
                let bin = find("victoria-metrics", "victoria-metrics")?;
                Command::new(bin)
                    .arg(format!("-storageDataPath={}", data_dir.display()))
                    .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                    // TSBS data starts in 2016; the default retention (1 month) would
                    // silently drop every sample as "too old".
                    .arg("-retentionPeriod=20y")
                    .args(extra)
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()?
            }
            Peer::Influxdb => {
                let bin = find("influxd", "influxdb")?;
                let rpc = free_port()?;
                let conf = dir.join("influxdb.conf");
                let d = data_dir.display();
                let cold = if compact_when_idle {
                    "  cache-snapshot-write-cold-duration = \"1s\"\n  compact-full-write-cold-duration = \"1s\"\n"
                } else {
                    ""
                };
                std::fs::write(
                    &conf,
                    format!(
                        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
                         [meta]\n  dir = \"{d}/meta\"\n\
                         [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  wal-fsync-delay = \"0s\"\n  query-log-enabled = false\n{cold}\
                         [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n"
                    ),
                )?;
                Command::new(bin)
                    .args(["-config"])
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()?
            }
        };
        let base = format!("http://127.0.0.1:{port}");
        let server = Self {
            peer,
            child,
            data_dir,
            write_url: format!("{base}/write?db=bench"),
            base,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "{} did not start listening within 30 s (log in {})",
                    peer.name(),
                    dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if peer == Peer::Influxdb {
            let out = Command::new("curl")
                .args([
                    "-s",
                    "-XPOST",
                    &format!("http://127.0.0.1:{port}/query"),
                    "--data-urlencode",
                    "q=CREATE DATABASE bench",
                ])
                .output()
                .context("creating the InfluxDB database (curl)")?;
            if !out.status.success() {
                bail!(
                    "CREATE DATABASE failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        Ok(server)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Make the peer write everything down and finish its own compaction, then return.
    ///
    /// - VictoriaMetrics: `GET /internal/force_flush` (in-memory parts to disk), then
    ///   `GET /internal/force_merge?partition_prefix=` (merge every partition into as
    ///   few parts as possible; it runs in the background), and wait until its log
    ///   says the forced merge has finished (version 1.79 logs
    ///   `forced merge for partition_prefix="" has been successfully finished`).
    /// - InfluxDB 1.x (started with `compact_when_idle`): it snapshots the cache to
    ///   TSM and fully compacts each shard 1 s after the last write. Wait until the WAL
    ///   holds no data, every shard's TSM files belong to one generation, and no
    ///   compaction temp file exists.
    ///
    /// Then, for both, wait until the directory size stops changing for 3 s.
    pub(crate) async fn settle(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(1800);
        match self.peer {
            Peer::Victoriametrics => {
                for path in [
                    "/internal/force_flush",
                    "/internal/force_merge?partition_prefix=",
                ] {
                    client
                        .get(format!("{}{path}", self.base))
                        .send()
                        .await?
                        .error_for_status()
                        .with_context(|| format!("victoriametrics {path}"))?;
                }
                let log = self.data_dir.with_file_name("peer.log");
                loop {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if text.contains(
                        "forced merge for partition_prefix=\"\" has been successfully finished",
                    ) {
                        break;
                    }
                    if text.contains("error in forced merge") {
                        bail!(
                            "victoriametrics force merge failed (log: {})",
                            log.display()
                        );
                    }
                    if Instant::now() > deadline {
                        bail!("victoriametrics force merge did not finish within 30 min");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Peer::Influxdb => loop {
                if influx_compacted(&self.data_dir)? {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("influxdb did not finish compacting within 30 min");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            },
        }
        let mut last = disk_usage(&self.data_dir)?;
        let mut stable_since = Instant::now();
        while stable_since.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = disk_usage(&self.data_dir)?;
            if now != last {
                last = now;
                stable_since = Instant::now();
            }
            if Instant::now() > deadline {
                bail!("{} data directory never stopped changing", self.peer.name());
            }
        }
        Ok(())
    }

    /// The peer's write-ahead log directory, if it has one (InfluxDB; VictoriaMetrics
    /// keeps recent rows in memory and has no WAL).
    pub(crate) fn wal_dir(&self) -> Option<PathBuf> {
        match self.peer {
            Peer::Victoriametrics => None,
            Peer::Influxdb => Some(self.data_dir.join("wal")),
        }
    }

    /// The bytes of the peer's actual data files (no index, no WAL): VictoriaMetrics
    /// `data/`, InfluxDB `*.tsm`.
    pub(crate) fn data_file_bytes(&self) -> anyhow::Result<u64> {
        Ok(match self.peer {
            Peer::Victoriametrics => disk_usage(&self.data_dir.join("data"))?.apparent_bytes,
            Peer::Influxdb => files_under(&self.data_dir.join("data"))?
                .iter()
                .filter(|(p, _)| p.extension().is_some_and(|e| e == "tsm"))
                .map(|(_, m)| m.len())
                .sum(),
        })
    }
}

/// InfluxDB is done when its WAL holds no data, every shard's TSM files share one
/// generation (file names are `GENERATION-SEQUENCE.tsm`) and no `.tmp` file exists.
fn influx_compacted(data_dir: &Path) -> anyhow::Result<bool> {
    let wal: u64 = files_under(&data_dir.join("wal"))?
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "wal"))
        .map(|(_, m)| m.len())
        .sum();
    if wal > 0 {
        return Ok(false);
    }
    let mut generations: std::collections::BTreeMap<PathBuf, std::collections::BTreeSet<String>> =
        Default::default();
    for (path, _) in files_under(&data_dir.join("data"))? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".tmp") {
            return Ok(false);
        }
        if let Some(stem) = name.strip_suffix(".tsm") {
            let generation = stem.split('-').next().unwrap_or("").to_string();
            generations
                .entry(path.parent().map(Path::to_path_buf).unwrap_or_default())
                .or_default()
                .insert(generation);
        }
    }
    Ok(!generations.is_empty() && generations.values().all(|g| g.len() == 1))
}

/// Every regular file below `dir` (recursively) with its metadata; empty if `dir` does
/// not exist.
fn files_under(dir: &Path) -> anyhow::Result<Vec<(PathBuf, std::fs::Metadata)>> {
    files_under_except(dir, None)
}

/// [`files_under`], skipping the directory `except` (and everything below it).
fn files_under_except(
    dir: &Path,
    except: Option<&Path>,
) -> anyhow::Result<Vec<(PathBuf, std::fs::Metadata)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if except.is_some_and(|e| e == d) {
            continue;
        }
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", d.display())),
        };
        for entry in entries {
            let entry = entry?;
            // A file may vanish between listing and stat (compactions delete inputs).
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                out.push((entry.path(), meta));
            }
        }
    }
    Ok(out)
}

/// Size of everything below a directory, measured like `du`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct DiskUsage {
    pub(crate) files: usize,
    /// Sum of file lengths (`du -sb --apparent-size`).
    pub(crate) apparent_bytes: u64,
    /// Sum of allocated blocks (`du -sB1`): what the files take on disk, preallocated or
    /// sparse regions included as the filesystem reports them.
    pub(crate) allocated_bytes: u64,
}

pub(crate) fn disk_usage(dir: &Path) -> anyhow::Result<DiskUsage> {
    disk_usage_except(dir, None)
}

/// [`disk_usage`] of `dir` without the directory `except` (a WAL, say).
pub(crate) fn disk_usage_except(dir: &Path, except: Option<&Path>) -> anyhow::Result<DiskUsage> {
    use std::os::unix::fs::MetadataExt;
    let files = files_under_except(dir, except)?;
    Ok(DiskUsage {
        files: files.len(),
        apparent_bytes: files.iter().map(|(_, m)| m.len()).sum(),
        allocated_bytes: files.iter().map(|(_, m)| m.blocks() * 512).sum(),
    })
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
