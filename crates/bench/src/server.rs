//! A `bulkhead serve` child process on free loopback ports, for the benchmarks.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The server process; killed (by PID) when dropped.
pub(crate) struct ChildServer {
    child: Child,
    pub(crate) base: String,
}

/// A port that was free a moment ago (the OS picks it; we release it for the child).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ChildServer {
    /// Start `bulkhead serve` (this same executable) with `args` and `envs`, data under
    /// `dir`, and wait until `/health` answers.
    pub(crate) fn start(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        let http = free_port()?;
        let pg = free_port()?;
        let exe = std::env::current_exe().context("finding the bulkhead executable")?;
        let log = std::fs::File::create(dir.join("server.log"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--pg-addr", &format!("127.0.0.1:{pg}")])
            .args(args)
            // BULKHEAD_BENCH_SERVER_LOG: the child's RUST_LOG, to diagnose a run.
            .env(
                "RUST_LOG",
                std::env::var("BULKHEAD_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting bulkhead serve")?;
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{http}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                bail!("bulkhead serve exited with {status} during startup:\n{log}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", http)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("bulkhead serve did not start listening within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) used so far by process `pid` (Linux `/proc`).
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Peak resident set size of process `pid` in bytes (Linux `VmHWM`).
pub(crate) fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Current resident set size of process `pid` in bytes (Linux `VmRSS`).
pub(crate) fn current_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
