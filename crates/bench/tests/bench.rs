//! Every `bulkhead-bench` command runs at a tiny scale and writes its documented
//! results, so the commands in docs/benchmarks.md never rot. (Timing claims live in
//! the benchmark output, not here.)
//!
//! They start the `bulkhead` binary from the same target directory, which `cargo test
//! --workspace` builds; after `cargo test -p bulkhead-bench` alone, build it first.

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead-bench"))
        .args(args)
        .arg("--out")
        .arg(out_dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run bulkhead-bench");
    assert!(
        out.status.success(),
        "bench {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(out_dir.path().join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// The control: phase B adds nothing, so it runs no query and no compaction.
#[test]
fn bench_interference_control_adds_nothing_in_phase_b() {
    let r = bench(&[
        "interference",
        "--phase",
        "1s",
        "--rate",
        "2000",
        "--hosts",
        "10",
        "--store-latency",
        "1ms..5ms",
        "--warmup",
        "0s",
        "--rounds",
        "1",
        "--load",
        "none",
    ]);
    assert_eq!(r["phase_b_load"], serde_json::json!(["none"]));
    for m in r["rates"][0]["modes"].as_array().expect("modes") {
        assert!(m["phase_b"]["writes"]["count"].as_u64().unwrap() > 0, "{m}");
        assert_eq!(m["phase_b"]["queries"]["count"], 0, "{m}");
        assert_eq!(m["phase_b"]["compactions"], 0, "{m}");
    }
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
        "--rounds",
        "1",
    ]);
    let rates = r["rates"].as_array().expect("rates");
    assert_eq!(rates.len(), 1, "--rate runs one rate");
    assert_eq!(rates[0]["rate_rows_per_s"], 2000);
    let modes = rates[0]["modes"].as_array().expect("modes");
    assert_eq!(modes.len(), 2);
    for (m, name) in modes.iter().zip(["isolated", "shared"]) {
        assert_eq!(m["mode"], name);
        for phase in ["phase_a", "phase_b"] {
            assert!(m[phase]["writes"]["count"].as_u64().unwrap() > 0, "{m}");
            assert!(m[phase]["flushes"]["count"].as_u64().unwrap() > 0, "{m}");
            assert_eq!(m[phase]["write_errors"], 0, "{m}");
        }
        assert!(
            m["phase_b"]["queries"]["count"].as_u64().unwrap() > 0,
            "{m}"
        );
        assert!(
            m["phase_b"]["queries"]["p99_ms"].as_f64().unwrap() > 0.0,
            "{m}"
        );
        // One round: its own ratio is both the median and the worst.
        assert_eq!(
            m["write_rounds"]["median"], m["write_rounds"]["worst"],
            "{m}"
        );
        assert!(m["phase_b"]["compactions"].as_u64().unwrap() > 0, "{m}");
        assert!(m["write_p99_ratio"].as_f64().is_some(), "{m}");
        assert_eq!(m["rounds"].as_array().map(Vec::len), Some(1), "{m}");
        // The server's write stages, diffed per phase: every ack went through each.
        let stages = m["stages"].as_array().expect("stages");
        let names: Vec<&str> = stages
            .iter()
            .map(|s| s["stage"].as_str().unwrap())
            .collect();
        for want in ["http_handler", "wal", "wal_io", "lock_wait", "total"] {
            assert!(names.contains(&want), "{want} missing: {names:?}");
        }
        // (The server splits the phases when the bench asks, the bench by when each
        // request was due, so only the sums must agree.)
        let total = stages.iter().find(|s| s["stage"] == "total").unwrap();
        let server: u64 = (0..2).map(|p| total["count"][p].as_u64().unwrap()).sum();
        let client: u64 = ["phase_a", "phase_b"]
            .iter()
            .map(|p| m[p]["writes"]["count"].as_u64().unwrap())
            .sum();
        assert_eq!(server, client, "{m}");
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
fn bench_tables_flushes_every_table() {
    let r = bench(&[
        "tables",
        "--count",
        "300",
        "--per-request",
        "100",
        "--flush-concurrency",
        "1,8",
    ]);
    let runs = r["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for (run, c) in runs.iter().zip([1, 8]) {
        assert_eq!(run["flush_concurrency"], c);
        // The bench itself fails unless system.tables shows every table in an SST.
        assert_eq!(run["tables_with_sst"], 300);
        assert!(run["flush_s"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_gen_is_deterministic() {
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_bulkhead-bench"))
            .args(["gen", "--scale", "3", "--duration", "1min", "--seed", "9"])
            .output()
            .expect("bench gen")
            .stdout
    };
    let a = run();
    assert_eq!(a, run());
    assert_eq!(String::from_utf8(a).unwrap().lines().count(), 18);
}

#[test]
fn bench_storage_reports_bytes_per_value_before_and_after_compaction() {
    let r = bench(&[
        "storage",
        "--scales",
        "3,6",
        "--span",
        "4h",
        "--flush-every",
        "20min",
        "--batch",
        "500",
    ]);
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{r}");
    for (res, hosts) in results.iter().zip([3u64, 6]) {
        assert_eq!(res["system"], "bulkhead");
        assert_eq!(res["scale"], hosts);
        // 4 h of one row per host every 10 s, 10 fields per row.
        assert_eq!(res["rows"], hosts * 1440, "{res}");
        assert_eq!(res["values"], hosts * 14400, "{res}");
        let before = &res["before"];
        let after = &res["after"];
        // Two 2 h segments, one flush every 20 min of data: 6 SSTs each before, 1 after.
        assert_eq!(before["sst_files"], 12, "{res}");
        assert_eq!(after["sst_files"], 2, "{res}");
        let b = before["data_bytes_per_value"].as_f64().unwrap();
        let a = after["data_bytes_per_value"].as_f64().unwrap();
        assert!(
            a > 0.0 && a < b,
            "compaction must shrink the data: {b} -> {a}"
        );
        assert!(
            after["disk_bytes_per_value"].as_f64().unwrap() >= a,
            "{res}"
        );
        let c = &res["compaction"];
        assert_eq!(c["input_files"], 12, "{res}");
        assert_eq!(c["output_files"], 2, "{res}");
        assert_eq!(c["values_merged"], res["values"], "{res}");
        assert_eq!(c["tasks"], 2.0, "{res}");
        assert!(c["values_per_s"].as_f64().unwrap() > 0.0, "{res}");
        assert!(c["input_bytes"].as_f64().unwrap() > 0.0, "{res}");
    }
}

#[test]
fn bench_query_reports_every_tsbs_query_type() {
    let r = bench(&["query", "--scale", "10", "--span", "2h", "--runs", "2"]);
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{r}");
    assert_eq!(results[0]["system"], "bulkhead");
    let queries = results[0]["queries"].as_array().expect("queries");
    assert_eq!(queries.len(), 15, "{r}");
    for q in queries {
        assert_eq!(q["latency"]["count"], 2, "{q}");
        assert!(q["latency"]["p50_ms"].as_f64().unwrap() > 0.0, "{q}");
        let name = q["query"].as_str().unwrap();
        // 1 h at one row per minute per bucket; a 2 h span caps the 12 h windows.
        let expect = match name {
            "single-groupby-1-1-1"
            | "single-groupby-5-1-1"
            | "single-groupby-1-8-1"
            | "single-groupby-5-8-1" => Some(60),
            "single-groupby-1-1-12" | "single-groupby-5-1-12" => Some(120),
            "cpu-max-all-1" | "cpu-max-all-8" => Some(2),
            "double-groupby-1" | "double-groupby-5" | "double-groupby-all" => Some(20),
            "lastpoint" => Some(10),
            "groupby-orderby-limit" => Some(5),
            // How many readings pass the threshold depends on the random walk.
            _ => None,
        };
        if let Some(n) = expect {
            assert_eq!(q["rows"], n, "{name}: {q}");
        }
    }
}

/// DuckDB (PyPI `duckdb`, installed by scripts/test) answers every type over
/// Bulkhead's SSTs, and its rows equal Bulkhead's in every run.
#[test]
fn bench_query_with_duckdb_checks_every_answer() {
    let r = bench(&[
        "query", "--scale", "10", "--span", "2h", "--runs", "1", "--peers", "duckdb",
    ]);
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{r}");
    assert_eq!(results[1]["system"], "duckdb");
    let (ours, duck) = (
        results[0]["queries"].as_array().expect("queries"),
        results[1]["queries"].as_array().expect("queries"),
    );
    assert_eq!(duck.len(), 15, "{r}");
    for (a, b) in ours.iter().zip(duck) {
        assert_eq!(a["query"], b["query"]);
        assert_eq!(a["rows"], b["rows"], "{b}");
        assert_eq!(
            b["check"], "same rows as bulkhead in all 2 runs",
            "{}: {b}",
            b["query"]
        );
    }
}

/// VictoriaMetrics (Debian `victoria-metrics`, installed by scripts/test) answers TSBS's
/// MetricsQL for the 11 types it can express, one point per Bulkhead row and metric, with
/// Bulkhead's values, in every run; the other 4 are reported as n/a, not dropped.
#[test]
fn bench_query_with_victoriametrics_checks_every_answer() {
    let expressible = |name: &str| {
        ["single-groupby-", "cpu-max-all-", "double-groupby-"]
            .iter()
            .any(|p| name.starts_with(p))
    };
    // 2 h: the whole span in every window. 10 h of 2 hosts: cpu-max-all's 8 h windows
    // start on random minutes, so its first and last hours are clipped (9 buckets).
    for (scale, span, queries, runs) in [
        ("10", "2h", None, 1),
        ("2", "10h", Some("cpu-max-all-1,single-groupby-2-2-1"), 2),
    ] {
        let mut args = vec!["query", "--scale", scale, "--span", span];
        args.extend(["--peers", "victoriametrics", "--runs"]);
        let runs_arg = runs.to_string();
        args.push(&runs_arg);
        if let Some(q) = queries {
            args.extend(["--queries", q]);
        }
        let r = bench(&args);
        let results = r["results"].as_array().expect("results");
        assert_eq!(results.len(), 2, "{r}");
        assert_eq!(results[1]["system"], "victoriametrics");
        assert_eq!(results[1]["language"], "metricsql");
        let (ours, vm) = (
            results[0]["queries"].as_array().expect("queries"),
            results[1]["queries"].as_array().expect("queries"),
        );
        assert_eq!(vm.len(), queries.map_or(15, |_| 2), "{r}");
        for (a, b) in ours.iter().zip(vm) {
            let name = b["query"].as_str().unwrap();
            assert_eq!(a["query"], name);
            if !expressible(name) {
                assert!(
                    b["unsupported"].as_str().unwrap().starts_with("n/a: "),
                    "{b}"
                );
                assert!(b.get("latency").is_none() && b.get("rows").is_none(), "{b}");
                continue;
            }
            let metrics = match name.split('-').collect::<Vec<_>>()[..] {
                ["single", "groupby", m, _, _] => m.parse().unwrap(),
                ["double", "groupby", "all"] | ["cpu", "max", "all", _] => 10,
                ["double", "groupby", m] => m.parse().unwrap(),
                _ => unreachable!("{name}"),
            };
            assert_eq!(b["rows"], a["rows"].as_u64().unwrap() * metrics, "{b}");
            assert_eq!(b["latency"]["count"], runs, "{b}");
            let check = b["check"].as_str().unwrap();
            assert!(
                check.starts_with(&format!("same as bulkhead in all {} runs", runs + 1)),
                "{name}: {check}"
            );
            if name == "cpu-max-all-1" && span == "10h" {
                assert_eq!(a["rows"], 9, "{a}");
            }
        }
    }
}

#[test]
fn bench_query_rejects_unknown_query_types() {
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead-bench"))
        .args(["query", "--queries", "single-groupby-1-1-1,nope"])
        .output()
        .expect("run bulkhead-bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown query type \"nope\""), "{err}");
}

#[test]
fn bench_query_cache_mode_reports_every_configuration() {
    let r = bench(&[
        "query",
        "--scale",
        "5",
        "--span",
        "1h",
        "--runs",
        "2",
        "--cold-runs",
        "1",
        "--queries",
        "single-groupby-1-1-1,lastpoint",
        "--object-store-latency",
        "2ms..5ms",
    ]);
    assert_eq!(r["benchmark"], "query-object-store-cache");
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{r}");
    for q in results {
        for (config, count) in [
            ("local", 2),
            ("local-nocache", 2),
            ("cold", 1),
            ("warm", 2),
            ("remote-nocache", 2),
        ] {
            assert_eq!(q[config]["count"], count, "{config}: {q}");
            assert!(q[config]["p50_ms"].as_f64().unwrap() > 0.0, "{config}: {q}");
        }
        let expect = if q["query"] == "lastpoint" { 5 } else { 60 };
        assert_eq!(q["rows"], expect, "{q}");
    }
}

/// VictoriaMetrics (Debian `victoria-metrics`, installed by scripts/test) and Bulkhead
/// answer every PromQL query of `bench promql` alike, instant and range, in every run.
#[test]
fn bench_promql_cross_checks_every_answer_with_victoriametrics() {
    let r = bench(&[
        "promql", "--scale", "20", "--span", "40min", "--range", "10min", "--step", "20s",
        "--runs", "2",
    ]);
    assert_eq!(r["samples"], 20 * 240 * 2, "{r}");
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), 8, "{r}");
    for q in results {
        assert_eq!(q["answers"], "same in all 3 runs", "{q}");
        assert_eq!(q["bulkhead"]["count"], 2, "{q}");
        assert!(q["ratio_p50"].as_f64().unwrap() > 0.0, "{q}");
        let points_per_series = if q["mode"] == "range" { 31 } else { 1 };
        let series = match q["query"].as_str().unwrap() {
            "rate" => 20,
            "topk" => 5,
            // The regions the 20 hosts happen to be in.
            _ => q["series"].as_u64().unwrap(),
        };
        if q["query"] != "topk" || q["mode"] == "instant" {
            assert_eq!(q["series"], series, "{q}");
            assert_eq!(q["points"], series * points_per_series, "{q}");
        }
    }
}
