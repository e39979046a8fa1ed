//! Peer databases for side-by-side benchmarks, started on loopback from their Debian
//! packages (`victoria-metrics`, `influxdb`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

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
    child: Child,
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
    bail!("`{binary}` not found: install it with `apt-get install {package}`")
}

impl PeerServer {
    pub(crate) fn start(peer: Peer, dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("peer.log"))?;
        let (child, write_url) = match peer {
            Peer::Victoriametrics => {
                let bin = find("victoria-metrics", "victoria-metrics")?;
                let child = Command::new(bin)
                    .arg(format!("-storageDataPath={}", dir.join("vm").display()))
                    .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()?;
                (child, format!("http://127.0.0.1:{port}/write?db=bench"))
            }
            Peer::Influxdb => {
                let bin = find("influxd", "influxdb")?;
                let rpc = free_port()?;
                let conf = dir.join("influxdb.conf");
                let d = dir.display();
                std::fs::write(
                    &conf,
                    format!(
                        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
                         [meta]\n  dir = \"{d}/meta\"\n\
                         [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  wal-fsync-delay = \"0s\"\n  query-log-enabled = false\n\
                         [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n"
                    ),
                )?;
                let child = Command::new(bin)
                    .args(["-config"])
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()?;
                (child, format!("http://127.0.0.1:{port}/write?db=bench"))
            }
        };
        let server = Self { child, write_url };
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
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
