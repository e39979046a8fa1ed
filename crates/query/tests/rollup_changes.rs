//! Rollups after the source changed under buckets already computed: a delete whose
//! tombstone compaction applied and dropped before the maintainer ran, and rows that
//! arrived after the grace period. Each time the rollup table must equal a direct
//! `GROUP BY date_bin` over the raw data. In process (the kit's `TempDb` and the
//! maintainer on its `compact` runtime), so the test decides when the maintainer runs:
//! its interval is an hour, and it runs when woken.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulkhead_engine::{FieldValue, Scope};
use bulkhead_query::rollup::{Aggregate, RollupConfig, RollupSpec, RollupStatus, Rollups};
use bulkhead_runtime::RuntimeName;
use bulkhead_testkit::{TempDb, row};

const SEC: i64 = 1_000_000_000;

/// The rollup's rows and the direct query's, in the same columns and order.
fn direct_and_rollup(db: &TempDb) -> (String, String) {
    let direct = db.table(
        "db",
        "SELECT host, CAST(date_bin(INTERVAL '10 seconds', time) AS BIGINT) AS b, \
         avg(usage) AS avg, min(usage) AS min, max(usage) AS max, sum(usage) AS sum, \
         count(usage) AS n FROM cpu GROUP BY host, b ORDER BY host, b",
    );
    let rollup = db.table(
        "db",
        "SELECT host, CAST(time AS BIGINT) AS b, usage_avg AS avg, usage_min AS min, \
         usage_max AS max, usage_sum AS sum, usage_count AS n FROM cpu_10s ORDER BY host, b",
    );
    (direct, rollup)
}

fn status(db: &TempDb) -> RollupStatus {
    db.query.rollup_board().snapshot().remove(0)
}

/// Wait (at most a minute) until the maintainer has ended more than `runs` runs.
fn wait_runs(db: &TempDb, runs: u64) -> RollupStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(db);
        if s.runs > runs {
            assert_eq!(s.last_error, None, "{s:?}");
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the maintainer did not run: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write(db: &TempDb, host: &str, times: impl Iterator<Item = i64>) {
    let rows = times
        .map(|t| {
            let usage = FieldValue::I64((t / SEC).rem_euclid(17) + host.len() as i64);
            ("cpu", row(&[("host", host)], &[("usage", usage)], t))
        })
        .collect();
    db.write("db", rows);
}

#[test]
fn rollup_follows_deletes_compacted_before_it_ran_and_late_rows() {
    let db = TempDb::open();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    // Ten minutes of history, two hours ago: every bucket is past its grace period.
    let base = now - 2 * 3600 * SEC;
    let base = base - base.rem_euclid(10 * SEC);
    for host in ["a", "b"] {
        write(&db, host, (0..120).map(|i| base + i * 5 * SEC));
    }
    let spec = RollupSpec {
        name: "cpu_10s".into(),
        database: "db".into(),
        source: "cpu".into(),
        aggregates: vec![
            Aggregate::Avg,
            Aggregate::Min,
            Aggregate::Max,
            Aggregate::Sum,
            Aggregate::Count,
        ],
        fields: Vec::new(),
        every: Duration::from_secs(10),
        grace_period: Duration::from_secs(1),
        retention: None,
    };
    let config = RollupConfig {
        check_interval: Duration::from_secs(3600),
        ..RollupConfig::default()
    };
    let rollups = Rollups::start(Arc::clone(&db.query), vec![spec], config).expect("start rollups");
    // The first run, and the one its declaration's wake-up asks for; then it sleeps.
    let s = wait_runs(&db, 1);
    let done = s.done_until.expect("computed");
    assert!(done >= base + 600 * SEC, "{s:?}");
    let (direct, rollup) = direct_and_rollup(&db);
    assert_eq!(direct, rollup);

    // A delete, then compaction applies its tombstone to every file and drops it,
    // all before the maintainer runs again.
    let runs = s.runs;
    let (lo, hi) = (base + 100 * SEC, base + 200 * SEC);
    db.sql(
        "db",
        &format!("DELETE FROM cpu WHERE host = 'a' AND time >= {lo} AND time < {hi}"),
    )
    .expect("delete");
    db.flush();
    let engine = Arc::clone(&db.engine);
    db.runtimes
        .block_on(RuntimeName::Compact, async move {
            engine.rewrite(&Scope::All).await
        })
        .expect("runtime")
        .expect("compaction");
    assert!(
        db.engine.tombstones("db", "cpu").is_empty(),
        "not compacted"
    );
    assert_eq!(
        status(&db).runs,
        runs,
        "the maintainer ran before compaction"
    );
    let (direct, rollup) = direct_and_rollup(&db);
    assert_ne!(
        direct, rollup,
        "the rollup is stale until the maintainer runs"
    );
    db.query.rollup_board().wake();
    let s = wait_runs(&db, runs);
    let (direct, rollup) = direct_and_rollup(&db);
    assert_eq!(direct, rollup, "after the delete");
    assert!(
        db.engine.properties("rollup-dirty/").is_empty(),
        "the delete's mark stays after its buckets were computed again"
    );

    // Rows after the grace period: in computed buckets, for an existing series and a
    // new one, and into a gap the delete left.
    let runs = s.runs;
    write(&db, "a", (0..10).map(|i| base + 150 * SEC + i * 3 * SEC));
    write(&db, "c", (0..4).map(|i| base + 300 * SEC + i * SEC));
    write(&db, "b", [base + 7 * SEC + 1].into_iter());
    let (direct, rollup) = direct_and_rollup(&db);
    assert_ne!(
        direct, rollup,
        "the rollup lacks the late rows until it runs"
    );
    db.query.rollup_board().wake();
    wait_runs(&db, runs);
    let (direct, rollup) = direct_and_rollup(&db);
    assert_eq!(direct, rollup, "after the late rows");
    assert!(status(&db).done_until >= Some(done));
    db.runtimes
        .block_on(RuntimeName::Compact, rollups.stop())
        .expect("runtime");
}
