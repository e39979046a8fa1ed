//! `bulkhead lab --json` runs and reports the documented shape.

use std::process::Command;

fn lab(experiment: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(["lab", experiment, "--json"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run bulkhead lab");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn variant<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("variant {name} in {report}"))
}

#[test]
fn lab_pool_reports_every_variant_and_where_connections_were_opened() {
    let report = lab("pool");
    assert_eq!(report["experiment"], "pool");
    for name in ["naive", "no-pool", "bulkhead"] {
        let v = variant(&report, name);
        assert_eq!(v["io_requests"], 10, "{v}");
        assert!(
            v["io_p50_ms"].as_f64().unwrap() >= 50.0,
            "the server answers after 50 ms: {v}"
        );
        assert!(v["io_max_ms"].as_f64().unwrap() >= v["io_p50_ms"].as_f64().unwrap());
    }
    // Which runtime opened a connection is structural, not timing: the naive client
    // hands cpu-opened connections to io requests; the bulkhead variant never does.
    assert!(
        variant(&report, "naive")["io_requests_on_cpu_connections"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(
        variant(&report, "no-pool")["io_requests_on_cpu_connections"],
        0
    );
    assert_eq!(
        variant(&report, "bulkhead")["io_requests_on_cpu_connections"],
        0
    );
}

#[test]
fn lab_mixed_reports_both_layouts() {
    let report = lab("mixed");
    assert_eq!(report["experiment"], "mixed");
    for name in ["mixed", "split"] {
        let v = variant(&report, name);
        // A hybrid task waits 10 ms on IO and computes 5 ms: nothing can be faster.
        assert!(v["hybrid_p50_ms"].as_f64().unwrap() >= 15.0, "{v}");
        assert_eq!(v["hybrid_tasks"], 4);
    }
}
