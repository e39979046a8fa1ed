//! The series-index read path through SQL: every tag operator gives the same answer
//! from memtables (no index: series are matched one by one, and DataFusion filters
//! whatever the scan could not resolve) as from SSTs (rows selected by the series
//! index), and `EXPLAIN ANALYZE` shows a one-host query reading only that host's rows.

mod common;

use bulkhead_engine::FieldValue;
use common::*;

const SEC: i64 = 1_000_000_000;

/// 24 hosts in 3 datacenters (host 5's unset), racks on even hosts only; 10 s points.
fn load(db: &Db, points: i64) {
    let mut rows = Vec::new();
    for h in 0..24 {
        let host = format!("host_{h}");
        let dc = format!("dc{}", h % 3);
        let rack = format!("r{}", h % 4);
        let mut tags = vec![("host", host.as_str())];
        if h != 5 {
            tags.push(("dc", dc.as_str()));
        }
        if h % 2 == 0 {
            tags.push(("rack", rack.as_str()));
        }
        for t in 0..points {
            rows.push((
                "cpu",
                row(
                    &tags,
                    &[("usage", FieldValue::F64((h * 100 + t) as f64))],
                    t * 10 * SEC,
                ),
            ));
        }
    }
    db.write("demo", rows);
}

const PREDICATES: &[&str] = &[
    "host = 'host_3'",
    "host != 'host_3'",
    "host <> 'host_3' and dc = 'dc1'",
    "host in ('host_1', 'host_2', 'nope')",
    "host not in ('host_1', 'host_2')",
    "host = 'host_1' or dc = 'dc2'",
    "host = 'host_1' or usage > 1000",
    "dc is null",
    "dc is not null and rack = 'r2'",
    "rack is null or rack != 'r0'",
    "not (dc = 'dc0')",
    "dc != 'dc0'",
    "host like 'host_1%'",
    "host not like '%7'",
    "host ilike 'HOST\\_2_'",
    "host ~ '^host_(4|14)$'",
    "host !~ '1'",
    "host ~* 'HOST_2'",
    "rack = 'r1' and time >= '1970-01-01T00:01:00Z' and time < '1970-01-01T00:02:00Z'",
    "upper(host) = 'HOST_3'",
];

fn answer(db: &Db, filter: &str) -> String {
    db.table(
        "demo",
        &format!("select host, dc, rack, usage, time from cpu where {filter} order by host, time"),
    )
}

#[test]
fn every_tag_operator_answers_the_same_from_the_series_index() {
    let db = Db::open();
    load(&db, 30);
    let from_memtables: Vec<String> = PREDICATES.iter().map(|p| answer(&db, p)).collect();
    db.flush();
    for (p, before) in PREDICATES.iter().zip(&from_memtables) {
        let plan = db.table("demo", &format!("explain select usage from cpu where {p}"));
        assert!(
            plan.contains("ssts=1/1"),
            "{p}: data is in one SST now: {plan}"
        );
        assert_eq!(&answer(&db, p), before, "{p}");
    }
    // The answers are not all empty or all equal (the comparison means something).
    assert!(from_memtables[0].contains("host_3") && !from_memtables[0].contains("host_4"));
    assert!(from_memtables[7].contains("host_5") && !from_memtables[7].contains("host_6"));
}

/// The counter `name=N` of the `EngineScanExec` line of an `EXPLAIN ANALYZE`.
fn metric(plan: &str, name: &str) -> u64 {
    let line = plan
        .lines()
        .find(|l| l.contains("EngineScanExec"))
        .unwrap_or_else(|| panic!("no scan in {plan}"));
    let metrics = &line[line
        .find("metrics=[")
        .unwrap_or_else(|| panic!("no metrics: {line}"))..];
    let at = metrics
        .find(&format!(" {name}="))
        .or_else(|| metrics.find(&format!("[{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    let rest = &metrics[at + name.len() + 2..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{name} in {line}"))
}

#[test]
fn explain_analyze_shows_a_one_host_hour_reads_that_hosts_rows() {
    let db = Db::open();
    // Two hours of 10 s points per host, in one SST.
    load(&db, 720);
    db.flush();
    let sql = "explain analyze select max(usage) from cpu where host = 'host_7' \
               and time >= '1970-01-01T00:30:00Z' and time < '1970-01-01T01:30:00Z'";
    let plan = db.table("demo", sql);
    assert_eq!(metric(&plan, "ssts_with_series_index"), 1, "{plan}");
    assert_eq!(metric(&plan, "series"), 24, "{plan}");
    assert_eq!(metric(&plan, "series_matched"), 1, "{plan}");
    assert!(
        plan.contains("sst_rows=17.28 K"),
        "24 x 720 rows in the SST: {plan}"
    );
    // The hour: 360 rows returned by the scan, and the decoder only saw that host's
    // rows: exactly what the query returns, under 2x what it filters to.
    assert_eq!(metric(&plan, "rows_read"), 360, "{plan}");
    let decoded = metric(&plan, "rows_decoded");
    assert!((360..=720).contains(&decoded), "{plan}");
    assert!(metric(&plan, "pages_skipped") > 0, "{plan}");
    let out = db.table(
        "demo",
        "select count(*) from cpu where host = 'host_7' \
         and time >= '1970-01-01T00:30:00Z' and time < '1970-01-01T01:30:00Z'",
    );
    assert!(out.contains("360"), "{out}");
}
