//! A `bulkhead serve` child process on free loopback ports, for the benchmarks.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Read by `bulkhead serve` (crates/bulkhead/src/store.rs), not a config option:
/// `20ms..80ms` delays every object-store call by a random time in that range, so local
/// disk behaves like S3.
pub(crate) const INJECT_LATENCY_ENV: &str = "BULKHEAD_INJECT_LATENCY";

/// Names the `bulkhead` executable to benchmark, instead of the one next to this binary.
const BULKHEAD_BIN_ENV: &str = "BULKHEAD_BIN";

/// The `bulkhead` executable: `$BULKHEAD_BIN`, else the one beside this binary in the
/// same target directory (from a test binary under `deps/`, one level up).
pub(crate) fn bulkhead_exe() -> anyhow::Result<std::path::PathBuf> {
    if let Some(path) = std::env::var_os(BULKHEAD_BIN_ENV) {
        return Ok(path.into());
    }
    let me = std::env::current_exe().context("finding this executable")?;
    let dir = me.parent().context("this executable has no directory")?;
    let candidates = [dir.join("bulkhead"), dir.join("../bulkhead")];
    candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
        format!(
            "no `bulkhead` executable beside {} (build it with `cargo build --release -p bulkhead`, \
             or set {BULKHEAD_BIN_ENV})",
            me.display()
        )
    })
}

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
    /// Start `bulkhead serve` (see [`bulkhead_exe`]) with `args` and `envs`, data under
    /// `dir`, and wait until `/health` answers.
    pub(crate) fn start(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        let http = free_port()?;
        let pg = free_port()?;
        let exe = bulkhead_exe()?;
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

    /// "is still running", or how it exited (for an error message).
    pub(crate) fn exit_status(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!("exited with {status}"),
            Ok(None) => "is still running".into(),
            Err(e) => format!("could not be checked ({e})"),
        }
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
