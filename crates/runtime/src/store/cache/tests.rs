//! Unit tests of the cache against a real local store: reads through the cache equal
//! the object's bytes on random data, concurrent misses are fetched once, the byte
//! bounds hold under concurrent load, puts write through and deletes invalidate.

use std::sync::Arc;
use std::time::Duration;

use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::Rng;

use super::*;
use crate::store::{FaultConfig, FaultInjectingStore};

struct Setup {
    _dir: tempfile::TempDir,
    plain: Arc<dyn ObjectStore>,
    counting: Arc<FaultInjectingStore>,
    cached: CachedStore,
    cache_dir: PathBuf,
}

fn setup(memory: u64, disk: u64, block: u64, latency: Option<Duration>) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("objects");
    std::fs::create_dir_all(&root).expect("mkdir");
    let plain: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(&root).expect("local store"));
    let counting = Arc::new(FaultInjectingStore::new(
        Arc::clone(&plain),
        FaultConfig {
            latency: latency.map(|l| l..l),
            ..FaultConfig::default()
        },
    ));
    let cache_dir = dir.path().join("cache");
    let config = CacheConfig {
        memory_bytes: memory,
        disk: (disk > 0).then(|| DiskCacheConfig {
            dir: cache_dir.clone(),
            bytes: disk,
        }),
        block_size: block,
        cacheable: is_sst_path,
    };
    let cached = CachedStore::new(
        Arc::clone(&counting) as Arc<dyn ObjectStore>,
        Handle::current(),
        &config,
    )
    .expect("cache");
    Setup {
        _dir: dir,
        plain,
        counting,
        cached,
        cache_dir,
    }
}

fn random_bytes(len: usize) -> Bytes {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| rng.random::<u8>())
        .collect::<Vec<u8>>()
        .into()
}

fn random_range(rng: &mut impl Rng, len: u64) -> Range<u64> {
    let a = rng.random_range(0..len);
    let b = rng.random_range(a..=len.min(a + 5000));
    a..b
}

/// Wait until the background disk writes are done (the tier stops changing).
async fn settle(store: &CachedStore) {
    let mut last = store.stats();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = store.stats();
        if now == last {
            return;
        }
        last = now;
    }
}

#[test]
fn sst_paths_are_cacheable_and_the_manifest_is_not() {
    assert!(is_sst_path(&Path::from("data/db/cpu/0/ab12.parquet")));
    assert!(is_sst_path(&Path::from(
        "prefix/data/db/cpu/0/ab12.parquet"
    )));
    assert!(!is_sst_path(&Path::from("manifest/log/00000001.json")));
    assert!(!is_sst_path(&Path::from("manifest/data.parquet")));
}

#[test]
fn runs_merge_across_small_gaps() {
    assert_eq!(runs(&[1, 2, 3, 5, 9], 1), vec![(1, 5), (9, 9)]);
    assert_eq!(runs(&[1, 2, 3, 5, 9], 0), vec![(1, 3), (5, 5), (9, 9)]);
    assert_eq!(runs(&[], 1), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_through_the_cache_equal_the_plain_reads_on_random_data() {
    let s = setup(64 * 1024, 256 * 1024, 4096, None);
    let mut rng = rand::rng();
    let mut objects = Vec::new();
    // Four objects of 20-50 KB: together always more than the 64 KB memory tier, so
    // the full scans below must evict from memory and read back from disk.
    for i in 0..4 {
        let len = rng.random_range(20_000..50_000);
        let path = Path::from(format!("data/db/t/0/{i}.parquet"));
        // Written behind the cache's back, so reads must fetch.
        s.plain
            .put(&path, PutPayload::from(random_bytes(len)))
            .await
            .expect("put");
        objects.push((path, len as u64));
    }
    for round in 0..3 {
        for _ in 0..200 {
            let (path, len) = &objects[rng.random_range(0..objects.len())];
            let ranges: Vec<Range<u64>> = (0..rng.random_range(1..4))
                .map(|_| random_range(&mut rng, *len))
                .collect();
            let want = s.plain.get_ranges(path, &ranges).await.expect("plain");
            let got = s.cached.get_ranges(path, &ranges).await.expect("cached");
            assert_eq!(got, want, "round {round}: {path} {ranges:?}");
            let r = &ranges[0];
            let one = s
                .cached
                .get_range(path, r.clone())
                .await
                .expect("get_range");
            assert_eq!(one, want[0]);
        }
        settle(&s.cached).await;
    }
    // Past the end: get_range clips like the store does, get_ranges refuses.
    let (path, len) = &objects[0];
    let clipped = s
        .cached
        .get_range(path, len - 1..len + 10)
        .await
        .expect("clip");
    assert_eq!(clipped.len(), 1);
    assert!(
        s.cached
            .get_ranges(path, std::slice::from_ref(&(0..len + 1)))
            .await
            .is_err()
    );
    // Whole-object reads equal too.
    for (path, _) in &objects {
        let want = s
            .plain
            .get(path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        let got = s
            .cached
            .get(path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(got, want);
    }
    // Two full scans of all objects: more bytes than the memory tier holds, so the
    // second scan finds evicted blocks on disk.
    for _ in 0..2 {
        for (path, len) in &objects {
            let want = s.plain.get_range(path, 0..*len).await.expect("plain");
            let got = s.cached.get_range(path, 0..*len).await.expect("scan");
            assert_eq!(got, want, "scan of {path}");
        }
        settle(&s.cached).await;
    }
    let st = s.cached.stats();
    assert!(st.memory.hits > 0, "{st:?}");
    assert!(st.disk.as_ref().is_some_and(|d| d.hits > 0), "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_range_are_fetched_once() {
    let s = setup(1 << 20, 0, 4096, Some(Duration::from_millis(50)));
    let path = Path::from("data/db/t/0/x.parquet");
    let data = random_bytes(20_000);
    s.plain
        .put(&path, PutPayload::from(data.clone()))
        .await
        .expect("put");
    let before = s.counting.calls();
    let reads = (0..16).map(|_| {
        let store = s.cached.clone();
        let path = path.clone();
        tokio::spawn(async move { store.get_range(&path, 100..9000).await })
    });
    for r in futures::future::join_all(reads).await {
        assert_eq!(r.expect("join").expect("read"), data.slice(100..9000));
    }
    assert_eq!(
        s.counting.calls() - before,
        1,
        "16 concurrent misses, one GET"
    );
    // Two small ranges one block apart: one GET for both (merged across the gap).
    let before = s.counting.calls();
    let got = s
        .cached
        .get_ranges(&path, &[12_300..12_400, 19_000..19_100])
        .await
        .expect("read");
    assert_eq!(got[1], data.slice(19_000..19_100));
    assert_eq!(s.counting.calls() - before, 1);
    assert!(s.cached.stats().coalesced >= 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bounds_hold_under_concurrent_reads() {
    let (memory, disk) = (40_000, 100_000);
    let s = setup(memory, disk, 4096, None);
    let mut objects = Vec::new();
    for i in 0..8 {
        let path = Path::from(format!("data/db/t/0/{i}.parquet"));
        let data = random_bytes(50_000);
        s.plain
            .put(&path, PutPayload::from(data.clone()))
            .await
            .expect("put");
        objects.push((path, data));
    }
    let objects = Arc::new(objects);
    let tasks = (0..8).map(|_| {
        let (store, objects) = (s.cached.clone(), Arc::clone(&objects));
        tokio::spawn(async move {
            for _ in 0..100 {
                let (i, r) = {
                    let mut rng = rand::rng();
                    (
                        rng.random_range(0..objects.len()),
                        random_range(&mut rng, 50_000),
                    )
                };
                let (path, data) = &objects[i];
                let got = store.get_range(path, r.clone()).await.expect("read");
                assert_eq!(got, data.slice(r.start as usize..r.end as usize));
                let st = store.stats();
                assert!(st.memory.bytes <= memory, "{st:?}");
                assert!(st.disk.as_ref().is_some_and(|d| d.bytes <= disk), "{st:?}");
            }
        })
    });
    for t in futures::future::join_all(tasks).await {
        t.expect("reader");
    }
    settle(&s.cached).await;
    let st = s.cached.stats();
    assert!(st.memory.evictions > 0 && st.disk.as_ref().is_some_and(|d| d.evictions > 0));
    let on_disk: u64 = std::fs::read_dir(&s.cache_dir)
        .expect("ls")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    assert!(
        on_disk <= disk,
        "{on_disk} bytes of cache files over {disk}"
    );
    assert_eq!(Some(on_disk), st.disk.map(|d| d.bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_write_through_and_deletes_invalidate() {
    let s = setup(1 << 20, 1 << 20, 4096, None);
    let path = Path::from("data/db/t/0/new.parquet");
    let data = random_bytes(10_000);
    s.cached
        .put(&path, PutPayload::from(data.clone()))
        .await
        .expect("put");
    settle(&s.cached).await;
    let st = s.cached.stats();
    assert_eq!(st.disk.as_ref().map(|d| d.entries), Some(3), "{st:?}");
    let before = s.counting.calls();
    let got = s.cached.get_range(&path, 0..10_000).await.expect("read");
    assert_eq!(got, data);
    let whole = s
        .cached
        .get(&path)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(whole, data);
    assert_eq!(
        s.counting.calls(),
        before,
        "served from the write-through copy"
    );

    // A multipart upload writes through as well.
    let big = Path::from("data/db/t/0/big.parquet");
    let mut up = s.cached.put_multipart(&big).await.expect("multipart");
    up.put_part(PutPayload::from(data.slice(..6000)))
        .await
        .expect("part");
    up.put_part(PutPayload::from(data.slice(6000..)))
        .await
        .expect("part");
    up.complete().await.expect("complete");
    settle(&s.cached).await;
    let before = s.counting.calls();
    assert_eq!(
        s.cached.get_range(&big, 5000..7000).await.expect("read"),
        data.slice(5000..7000)
    );
    assert_eq!(s.counting.calls(), before);

    s.cached.delete(&path).await.expect("delete");
    s.cached.delete(&big).await.expect("delete");
    settle(&s.cached).await;
    let st = s.cached.stats();
    assert_eq!(st.memory.bytes, 0, "{st:?}");
    assert_eq!(st.disk.as_ref().map(|d| d.bytes), Some(0), "{st:?}");
    assert_eq!(std::fs::read_dir(&s.cache_dir).expect("ls").count(), 0);
    assert!(
        s.cached.get_range(&path, 0..10).await.is_err(),
        "deleted means gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_paths_are_never_cached() {
    let s = setup(1 << 20, 1 << 20, 4096, None);
    let path = Path::from("manifest/CURRENT");
    s.cached
        .put(&path, PutPayload::from_static(b"v1"))
        .await
        .expect("put");
    assert_eq!(
        s.cached
            .get(&path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("b"),
        "v1"
    );
    s.plain
        .put(&path, PutPayload::from_static(b"v2"))
        .await
        .expect("overwrite");
    assert_eq!(
        s.cached
            .get(&path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("b"),
        "v2"
    );
    assert_eq!(s.cached.stats().memory.entries, 0);
}
