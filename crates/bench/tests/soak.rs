//! `bench soak` at a tiny scale: it runs, samples, overloads, and writes its documented
//! results. Whether the curves are flat is the benchmark's verdict, not this test's
//! (timing on a shared CI machine); the test checks what holds regardless of speed.

use std::process::Command;

#[test]
fn bench_soak_samples_windows_and_overload_gets_only_503s() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead-bench"))
        .args([
            "soak",
            "--duration",
            "5s",
            "--window",
            "1s",
            "--overload-duration",
            "3s",
            "--hosts",
            "10",
            "--batch",
            "100",
            "--write-buffer",
            "8MiB",
            "--report-only",
        ])
        .arg("--out")
        .arg(out_dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run bulkhead-bench soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let text = std::fs::read_to_string(out_dir.path().join("results.json")).expect("results");
    let r: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert!(r["capacity_rows_per_s"].as_f64().unwrap() > 0.0, "{r}");
    let windows = r["windows"].as_array().expect("windows");
    assert!(windows.len() >= 3, "{r}");
    for w in windows {
        assert!(w["rss_bytes"].as_u64().unwrap() > 0, "{w}");
        assert!(w["stalls"].as_array().is_some_and(|s| s.len() == 5), "{w}");
    }
    let total: u64 = windows
        .iter()
        .map(|w| w["writes"]["count"].as_u64().unwrap())
        .sum();
    assert!(total > 0, "{r}");
    let o = &r["overload"];
    assert_eq!(o["server_alive"], true, "{o}");
    assert_eq!(
        o["other_errors"], 0,
        "anything but 204/503 under overload: {o}"
    );
    assert_eq!(o["rejected_without_retry_after"], 0, "{o}");
    assert!(o["accepted"].as_u64().unwrap() > 0, "{o}");
    assert!(stdout.contains("overload"), "{stdout}");
}
