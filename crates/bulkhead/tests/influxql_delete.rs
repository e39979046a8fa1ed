//! InfluxQL `DELETE` and `DROP SERIES` against a real InfluxDB 1.6 (`common::influx`):
//! both are written the same seeded random data and run the same deletes, one at a
//! time; after each, every measurement must read back the same from both. Statements
//! both refuse must be refused by both.

mod common;

use bulkhead_tsbs::SplitMix64 as Rng;
use common::TestServer;
use common::influx::{Influx, curl, post, query, same};

/// Two measurements, five hosts, a region tag some series lack, over one hour from
/// 2016-01-01T00:00:00Z (seconds precision; one point per series and second at most).
fn random_data(seed: u64) -> String {
    let mut rng = Rng(seed | 1);
    let mut out = String::new();
    for m in ["cpu", "mem"] {
        for host in 0..5 {
            let region = match host % 3 {
                0 => ",region=east",
                1 => ",region=west",
                _ => "",
            };
            let mut t = 1_451_606_400 + rng.below(30);
            while t < 1_451_610_000 {
                let v = rng.below(10_000) as f64 / 100.0;
                let i = rng.below(100);
                out.push_str(&format!("{m},host=h{host}{region} v={v},i={i}i {t}\n"));
                t += 1 + rng.below(120);
            }
        }
    }
    out
}

fn write(base: &str, data: &str) {
    let (status, body) = curl(&[
        "-XPOST",
        &format!("{base}/write?db=test&precision=s"),
        "--data-binary",
        data,
    ]);
    assert_eq!(status, 204, "write to {base}: {body}");
}

/// Whether a `/query` answer holds a statement error.
fn is_error(v: &serde_json::Value) -> bool {
    v["results"][0]["error"].is_string() || v["error"].is_string()
}

#[test]
fn deletes_and_drop_series_like_influxdb_1_6() {
    let seed = std::env::var("BULKHEAD_DELETE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        });
    eprintln!("seed {seed} (replay: BULKHEAD_DELETE_SEED={seed})");
    let data = random_data(seed);
    let influx = Influx::start();
    let (status, _) = query(&influx.base, "", "CREATE DATABASE test", "");
    assert_eq!(status, 200);
    write(&influx.base, &data);
    let bulkhead = TestServer::start(&[]);
    let base = format!("http://{}", bulkhead.http_addr);
    write(&base, &data);

    // One series per tag set: rows of different series at the same time come in no
    // order the two must share.
    let reads = [
        "SELECT v, i FROM cpu GROUP BY *",
        "SELECT v, i FROM mem GROUP BY *",
        "SELECT count(v) FROM cpu, mem GROUP BY *",
    ];
    let compare = |after: &str| {
        for q in reads {
            let (ws, want) = query(&influx.base, "test", q, "");
            let (gs, got) = query(&base, "test", q, "");
            assert!(
                ws == gs && same(&want, &got),
                "after {after}: {q} differs (seed {seed})\n  influxdb: {want}\n  bulkhead: {got}"
            );
        }
    };
    compare("the writes");
    for statement in [
        "DELETE FROM cpu WHERE host = 'h1'",
        "DELETE FROM cpu WHERE host = 'h2' AND time < '2016-01-01T00:20:00Z'",
        "DELETE WHERE region = 'west' AND time >= '2016-01-01T00:40:00Z'",
        "DROP SERIES FROM mem WHERE host = 'h3'",
        "DELETE FROM /c.*/ WHERE (host = 'h4' OR host = 'h0') AND time > '2016-01-01T00:50:00Z'",
        "DELETE FROM mem WHERE time >= '2016-01-01T00:10:00Z' AND time <= '2016-01-01T00:15:00Z'",
        "DROP SERIES WHERE region = 'east' AND host != 'h0'",
        "DELETE FROM cpu WHERE nosuchtag = 'x'",
        "DROP SERIES FROM nosuch WHERE host = 'h0'",
    ] {
        let (ws, want) = post(&influx.base, "test", statement);
        let (gs, got) = post(&base, "test", statement);
        assert!(
            ws == gs && same(&want, &got),
            "{statement}: answers differ\n  influxdb: {want}\n  bulkhead: {got}"
        );
        compare(statement);
    }
    // Both refuse these (the wording may differ).
    for statement in [
        "DROP SERIES FROM cpu WHERE time > '2016-01-01T00:10:00Z'",
        "DELETE FROM cpu WHERE v > 1",
        "DELETE",
    ] {
        let (_, want) = post(&influx.base, "test", statement);
        let (_, got) = post(&base, "test", statement);
        assert!(
            is_error(&want) && is_error(&got),
            "{statement}: both must refuse\n  influxdb: {want}\n  bulkhead: {got}"
        );
    }
    compare("the refused statements");
}
