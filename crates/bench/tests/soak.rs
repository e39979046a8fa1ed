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
            "--hostile-duration",
            "2s",
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

    // The hostile phase ran its attackers and the well-behaved clients got through.
    let h = &r["hostile"];
    assert_eq!(h["server_alive"], true, "{h}");
    for half in ["quiet", "hostile"] {
        assert!(h[half]["writes"]["count"].as_u64().unwrap() > 0, "{h}");
        assert!(h[half]["queries"]["count"].as_u64().unwrap() > 0, "{h}");
    }
    let a = &h["attackers"];
    assert!(
        a["stalled_upload_connections"].as_u64().unwrap() >= 4,
        "{a}"
    );
    assert!(a["slowloris_connections"].as_u64().unwrap() >= 50, "{a}");
    // Every wrong token is refused, every heavy join ends by its timeout.
    let wrong = a["wrong_tokens"].as_object().unwrap();
    assert!(
        wrong.get("401").is_some_and(|n| n.as_u64() > Some(0)),
        "{a}"
    );
    assert!(wrong.keys().all(|k| k == "401"), "{a}");
    let heavy = a["heavy_queries"].as_object().unwrap();
    assert!(heavy.keys().all(|k| k == "504"), "{a}");
    assert!(stdout.contains("hostile clients"), "{stdout}");
}
