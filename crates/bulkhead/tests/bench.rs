//! Every `bulkhead bench` command runs at a tiny scale and writes its documented
//! results, so the commands in docs/benchmarks.md never rot. (Timing claims live in
//! the benchmark output, not here.)

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .arg("bench")
        .args(args)
        .arg("--out")
        .arg(out_dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run bulkhead bench");
    assert!(
        out.status.success(),
        "bench {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(out_dir.path().join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn bench_interference_reports_both_modes() {
    let r = bench(&[
        "interference",
        "--phase",
        "2s",
        "--rate",
        "2000",
        "--batch",
        "100",
        "--hosts",
        "10",
        "--store-latency",
        "1ms..5ms",
        "--flush-every",
        "500ms",
    ]);
    let modes = r["modes"].as_array().expect("modes");
    assert_eq!(modes.len(), 2);
    for (m, name) in modes.iter().zip(["isolated", "shared"]) {
        assert_eq!(m["mode"], name);
        for phase in ["phase_a", "phase_b"] {
            assert!(m[phase]["writes"]["count"].as_u64().unwrap() > 0, "{m}");
            assert!(m[phase]["flushes"]["count"].as_u64().unwrap() > 0, "{m}");
            assert_eq!(m[phase]["write_errors"], 0, "{m}");
        }
        assert!(m["phase_b"]["queries"].as_u64().unwrap() > 0, "{m}");
        assert!(m["phase_b"]["compactions"].as_u64().unwrap() > 0, "{m}");
        assert!(m["write_p99_ratio"].as_f64().is_some(), "{m}");
        assert!(
            m["stalls"].as_object().is_some_and(|s| !s.is_empty()),
            "{m}"
        );
    }
}

#[test]
fn bench_ingest_reports_throughput() {
    let r = bench(&[
        "ingest",
        "--scale",
        "10",
        "--span",
        "10min",
        "--clients",
        "2",
        "--batch",
        "100",
    ]);
    let res = &r["results"][0];
    assert_eq!(res["system"], "bulkhead");
    assert_eq!(res["rows"], 600);
    assert!(res["rows_per_s"].as_f64().unwrap() > 0.0);
    assert!(res["requests"]["count"].as_u64().unwrap() == 6);
}

#[test]
fn bench_gen_is_deterministic() {
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_bulkhead"))
            .args([
                "bench",
                "gen",
                "--scale",
                "3",
                "--duration",
                "1min",
                "--seed",
                "9",
            ])
            .output()
            .expect("bench gen")
            .stdout
    };
    let a = run();
    assert_eq!(a, run());
    assert_eq!(String::from_utf8(a).unwrap().lines().count(), 18);
}
