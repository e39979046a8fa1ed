//! A real InfluxDB 1.x (the Debian `influxdb` package's `influxd`) on free loopback
//! ports, the reference for InfluxQL tests, and the helpers to ask it and Bulkhead the
//! same queries.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port_pair, url_encode};

/// A real InfluxDB 1.x, killed (by PID) on drop.
pub struct Influx {
    child: Child,
    _dir: tempfile::TempDir,
    pub base: String,
}

impl Influx {
    pub fn start() -> Self {
        let bin = which("influxd").unwrap_or_else(|| {
            panic!("influxd not found: install the Debian package `influxdb` (scripts/test does)")
        });
        let dir = tempfile::tempdir().unwrap();
        let (http, rpc) = free_port_pair();
        let d = dir.path().display();
        let conf = dir.path().join("influxdb.conf");
        std::fs::write(
            &conf,
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
                 [meta]\n  dir = \"{d}/meta\"\n\
                 [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
                 [monitor]\n  store-enabled = false\n\
                 [http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("influxd.log")).unwrap();
        let child = Command::new(bin)
            .arg("-config")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting influxd");
        let influx = Self {
            child,
            _dir: dir,
            base: format!("http://127.0.0.1:{http}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while curl(&["-o", "/dev/null", &format!("{}/ping", influx.base)]).0 != 204 {
            assert!(
                Instant::now() < deadline,
                "influxd did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        influx
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn which(name: &str) -> Option<String> {
    std::env::var("PATH").ok()?.split(':').find_map(|dir| {
        let p = Path::new(dir).join(name);
        p.is_file().then(|| p.display().to_string())
    })
}

/// Run curl with `args`; (status, body). `-w` appends the status on its own line.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// `GET base/query` with `q`, `db` and `extra` parameters.
pub fn query(base: &str, db: &str, q: &str, extra: &str) -> (u16, Value) {
    let url = format!(
        "{base}/query?db={}&q={}{extra}",
        url_encode(db),
        url_encode(q)
    );
    let (status, body) = curl(&[&url]);
    let json =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: not JSON ({e}): {body}"));
    (status, json)
}

/// JSON equality with numbers compared as floats (InfluxDB prints `2.0` as `2`).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// `POST base/query` (write statements: InfluxDB warns about them over GET); status
/// and body.
pub fn post(base: &str, db: &str, q: &str) -> (u16, Value) {
    let url = format!("{base}/query?db={}&q={}", url_encode(db), url_encode(q));
    let (status, body) = curl(&["-XPOST", &url]);
    let json =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: not JSON ({e}): {body}"));
    (status, json)
}

/// [`post`] that must answer 200.
pub fn post_query(base: &str, db: &str, q: &str) -> Value {
    let (status, body) = post(base, db, q);
    assert_eq!(status, 200, "{q}: {body}");
    body
}
