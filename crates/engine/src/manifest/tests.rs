//! Tests of the manifest: reloads, fencing, group commits under faults, settings.

use super::*;
use bulkhead_runtime::store::{FaultConfig, FaultInjectingStore};
use object_store::memory::InMemory;

fn flushed(seq: u64) -> Vec<Action> {
    vec![Action::Flushed {
        db: "db".into(),
        table: "t".into(),
        seq,
    }]
}

#[tokio::test]
async fn log_and_checkpoints_reload_to_the_same_state() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (m, _) = Manifest::load(Arc::clone(&store), "p", 3)
        .await
        .expect("load");
    for seq in 1..=7 {
        m.commit(flushed(seq * 10)).await.expect("commit");
        m.settle(std::time::Duration::from_secs(5)).await;
    }
    let (_, state) = Manifest::load(Arc::clone(&store), "p", 3)
        .await
        .expect("reload");
    assert_eq!(state.version, 7);
    assert_eq!(state.tables["db"]["t"].flushed_seq, 70);
    // Old log entries were compacted away behind checkpoints.
    let logs = list_versions(&store, &Path::from("p/manifest/log"))
        .await
        .expect("list");
    assert!(logs.first().map(|(v, _)| *v).unwrap_or(0) > 1, "{logs:?}");
}

#[tokio::test]
async fn second_writer_is_fenced() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (a, _) = Manifest::load(Arc::clone(&store), "", 100)
        .await
        .expect("load");
    let (b, _) = Manifest::load(Arc::clone(&store), "", 100)
        .await
        .expect("load");
    a.commit(flushed(1)).await.expect("first writer commits");
    let err = b
        .commit(flushed(2))
        .await
        .expect_err("second writer must fail");
    assert!(matches!(err, Error::Manifest(_)), "{err}");
}

fn flushed_table(table: usize, seq: u64) -> Vec<Action> {
    vec![Action::Flushed {
        db: "db".into(),
        table: format!("t{table}"),
        seq,
    }]
}

/// A store over `mem` whose every call takes `ms` milliseconds (no faults yet).
fn slow_store(mem: &Arc<dyn ObjectStore>, ms: u64) -> Arc<FaultInjectingStore> {
    let ms = std::time::Duration::from_millis(ms);
    Arc::new(FaultInjectingStore::new(
        Arc::clone(mem),
        FaultConfig {
            latency: Some(ms..ms + std::time::Duration::from_millis(1)),
            ..Default::default()
        },
    ))
}

async fn load_over(store: &Arc<FaultInjectingStore>) -> Arc<Manifest> {
    let (m, _) = Manifest::load(Arc::clone(store) as Arc<dyn ObjectStore>, "", 1000)
        .await
        .expect("load");
    Arc::new(m)
}

/// Waves of 8 concurrent `commit_table(m, table)` calls on fresh tables (so PUTs
/// are grouped), until `store` has injected a fault and at least `min_waves` ran.
async fn in_waves<T, F, Fut>(
    m: &Arc<Manifest>,
    store: &FaultInjectingStore,
    min_waves: usize,
    commit_table: F,
) -> Vec<T>
where
    F: Fn(Arc<Manifest>, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut out = Vec::new();
    for wave in 0..50 {
        if wave >= min_waves && store.injected_errors() > 0 {
            break;
        }
        let first = out.len();
        let tasks: Vec<_> = (first..first + 8)
            .map(|i| tokio::spawn(commit_table(Arc::clone(m), i)))
            .collect();
        for t in tasks {
            out.push(t.await.expect("join"));
        }
    }
    assert!(store.injected_errors() > 0, "no fault was injected");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_log_entries_and_all_land() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let m = load_over(&slow_store(&mem, 20)).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let m = Arc::clone(&m);
            tokio::spawn(async move { m.commit(flushed_table(i, i as u64 + 1)).await })
        })
        .collect();
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.expect("join").expect("commit"));
    }
    let (_, state) = Manifest::load(Arc::clone(&mem), "", 1000)
        .await
        .expect("reload");
    for i in 0..16 {
        assert_eq!(
            state.tables["db"][&format!("t{i}")].flushed_seq,
            i as u64 + 1
        );
    }
    // 16 callers queued behind one slow PUT: they were grouped into fewer entries.
    versions.sort_unstable();
    versions.dedup();
    assert!(versions.len() < 16, "no grouping: {versions:?}");
    assert_eq!(state.version, *versions.last().expect("a version"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_is_retried_one_by_one() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let flaky = slow_store(&mem, 5);
    let m = load_over(&flaky).await;
    // Loaded; from now on half of all calls fail.
    flaky.set_config(FaultConfig {
        latency: Some(std::time::Duration::from_millis(5)..std::time::Duration::from_millis(6)),
        error_probability: 0.5,
        ..FaultConfig::default()
    });
    let ok = in_waves(&m, &flaky, 4, |m, i| async move {
        m.commit(flushed_table(i, 7)).await.is_ok()
    })
    .await;
    let (_, state) = Manifest::load(Arc::clone(&mem), "", 1000)
        .await
        .expect("reload");
    // Exactly the callers told "ok" are in the manifest, and nobody else.
    for (i, committed) in ok.iter().enumerate() {
        let landed = state
            .tables
            .get("db")
            .and_then(|d| d.get(&format!("t{i}")))
            .is_some();
        assert_eq!(landed, *committed, "table t{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_replies_of_groups_are_adopted_not_taken_for_another_writer() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let lossy = slow_store(&mem, 5);
    lossy.set_config(FaultConfig {
        latency: Some(std::time::Duration::from_millis(5)..std::time::Duration::from_millis(6)),
        lost_reply_probability: 0.4,
        ..FaultConfig::default()
    });
    let m = load_over(&lossy).await;
    // Each caller retries until it is told "committed", like a flush does.
    let answers = in_waves(&m, &lossy, 5, |m, i| async move {
        loop {
            match m.commit(flushed_table(i, 3)).await {
                Ok(v) => return Ok(v),
                Err(Error::ObjectStore { .. }) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    for a in &answers {
        a.as_ref().expect("never mistaken for another writer");
    }
    let (_, state) = Manifest::load(Arc::clone(&mem), "", 1000)
        .await
        .expect("reload");
    for i in 0..answers.len() {
        assert_eq!(state.tables["db"][&format!("t{i}")].flushed_seq, 3, "t{i}");
    }
}

#[tokio::test]
async fn properties_and_table_ttls_survive_reloads_and_checkpoints() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (m, _) = Manifest::load(Arc::clone(&store), "p", 2)
        .await
        .expect("load");
    let prop = |key: &str, value: Option<&str>| Action::SetProperty {
        key: key.into(),
        value: value.map(str::to_string),
    };
    let ttl = |table: &str, ttl_nanos: Option<u64>| Action::SetTableTtl {
        db: "db".into(),
        table: table.into(),
        ttl_nanos,
    };
    m.commit(vec![prop("rollup/a", Some("1")), ttl("a", Some(0))])
        .await
        .expect("commit");
    m.commit(vec![prop("rollup/b", Some("2")), ttl("b", Some(7))])
        .await
        .expect("commit");
    m.settle(std::time::Duration::from_secs(5)).await; // a checkpoint at version 2
    m.commit(vec![
        prop("rollup/a", None),
        ttl("a", None),
        prop("other", Some("x")),
    ])
    .await
    .expect("commit");
    assert_eq!(m.table_ttl("db", "b"), Some(7));
    assert_eq!(m.table_ttl("db", "a"), None);
    let (_, state) = Manifest::load(Arc::clone(&store), "p", 2)
        .await
        .expect("reload");
    assert_eq!(state.version, 3);
    let rollups: Vec<_> = state
        .properties
        .iter()
        .filter(|(k, _)| k.starts_with("rollup/"))
        .collect();
    assert_eq!(rollups, [(&"rollup/b".to_string(), &"2".to_string())]);
    assert_eq!(state.table_ttls["db"].get("b"), Some(&7));
    assert!(!state.table_ttls["db"].contains_key("a"));
    let (m2, _) = Manifest::load(Arc::clone(&store), "p", 2)
        .await
        .expect("reload");
    assert_eq!(m2.properties("rollup/").len(), 1);
    assert_eq!(m2.properties("").len(), 2);
}
