//! Scenario tests of the bulkheads: IO placement, IO-less CPU runtimes, the watchdog.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bulkhead_runtime::store::IoObjectStore;
use bulkhead_runtime::sync::Mutex;
use bulkhead_runtime::{RuntimeConfig, RuntimeMode, RuntimeName, Runtimes};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// A store that records the name of the thread each operation (and each body chunk)
/// runs on, delegating to an in-memory store.
#[derive(Debug, Default)]
struct RecordingStore {
    inner: InMemory,
    threads: Arc<Mutex<Vec<String>>>,
}

fn record(threads: &Mutex<Vec<String>>, op: &str) {
    let name = std::thread::current().name().unwrap_or("?").to_string();
    threads.lock().push(format!("{op}@{name}"));
}

impl std::fmt::Display for RecordingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordingStore")
    }
}

#[async_trait]
impl ObjectStore for RecordingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        record(&self.threads, "put");
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        record(&self.threads, "get");
        let mut result = self.inner.get_opts(location, options).await?;
        // Record where the body is actually read, chunk by chunk.
        if let GetResultPayload::Stream(stream) = result.payload {
            let threads = Arc::clone(&self.threads);
            result.payload =
                GetResultPayload::Stream(stream.inspect(move |_| record(&threads, "body")).boxed());
        }
        Ok(result)
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        record(&self.threads, "list");
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn runtimes() -> Arc<Runtimes> {
    Runtimes::new(RuntimeConfig::for_parallelism(2)).expect("build runtimes")
}

#[test]
fn object_store_io_awaited_from_compact_runs_on_io() {
    let rt = runtimes();
    let recording = Arc::new(RecordingStore::default());
    let threads = Arc::clone(&recording.threads);
    let store = IoObjectStore::new(recording, rt.io().clone());
    let (awaited_on, body) = rt
        .block_on(RuntimeName::Compact, async move {
            let path = Path::from("a/b.parquet");
            store
                .put(&path, PutPayload::from_static(b"hello"))
                .await
                .unwrap();
            let body = store.get(&path).await.unwrap().bytes().await.unwrap();
            let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
            assert_eq!(listed.len(), 1);
            let name = std::thread::current().name().unwrap().to_string();
            (name, body)
        })
        .unwrap();
    assert_eq!(&body[..], b"hello");
    assert!(
        awaited_on.starts_with("bh-compact-"),
        "awaited on {awaited_on}"
    );
    let threads = threads.lock().clone();
    assert!(
        threads.iter().any(|t| t.starts_with("body@")),
        "{threads:?}"
    );
    for t in &threads {
        let thread = t.split('@').nth(1).unwrap();
        assert!(thread.starts_with("bh-io-"), "IO ran off io: {threads:?}");
    }
}

#[test]
fn io_on_a_cpu_runtime_fails_loudly() {
    let rt = runtimes();
    for name in [
        RuntimeName::Write,
        RuntimeName::Flush,
        RuntimeName::Query,
        RuntimeName::Compact,
    ] {
        let joined = futures::executor::block_on(rt.handle(name).spawn(async {
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map(|_| ())
        }));
        let err = joined.expect_err("IO on a CPU runtime must not succeed");
        assert!(err.is_panic(), "{name}: {err}");
        let payload = err.into_panic();
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(msg.contains("IO is disabled"), "{name}: {msg}");
    }
    // ... while the io runtime does IO fine.
    let bound = rt
        .block_on(RuntimeName::Io, async {
            tokio::net::TcpListener::bind("127.0.0.1:0").await.is_ok()
        })
        .unwrap();
    assert!(bound);
}

#[test]
fn threads_are_named_and_compact_and_query_are_idle() {
    let rt = runtimes();
    for name in RuntimeName::ALL {
        let thread = rt
            .block_on(name, async {
                std::thread::current().name().unwrap().to_string()
            })
            .unwrap();
        assert!(
            thread.starts_with(&format!("bh-{name}-")),
            "{name} ran on {thread}"
        );
    }
    // `io` and `flush` keep the process's nice value; `write` is 5 levels above it
    // (`write_nice = -5`) where the OS lets this process raise a priority.
    let (base, io_idle) = priority_on(&rt, RuntimeName::Io);
    assert!(!io_idle);
    assert_eq!(priority_on(&rt, RuntimeName::Flush), (base, false));
    let may_raise = std::thread::spawn(move || {
        bulkhead_runtime::set_current_thread_nice(base - 5);
        bulkhead_runtime::current_thread_nice() == base - 5
    })
    .join()
    .unwrap();
    let expected = if may_raise { base - 5 } else { base };
    assert_eq!(priority_on(&rt, RuntimeName::Write), (expected, false));
    let (_, compact_idle) = priority_on(&rt, RuntimeName::Compact);
    assert!(
        compact_idle,
        "compact threads run under SCHED_IDLE by default"
    );
    let (_, query_idle) = priority_on(&rt, RuntimeName::Query);
    assert!(query_idle, "query threads run under SCHED_IDLE by default");
    assert!(!bulkhead_runtime::current_thread_is_sched_idle());

    // With SCHED_IDLE off, each falls back to its nice value.
    let mut cfg = RuntimeConfig::for_parallelism(2);
    cfg.compact_sched_idle = false;
    cfg.query_sched_idle = false;
    let rt = Runtimes::new(cfg).unwrap();
    let (nice, idle) = priority_on(&rt, RuntimeName::Compact);
    assert!(!idle);
    assert_eq!(nice, base + 10, "compact threads run 10 nice levels lower");
    let (nice, idle) = priority_on(&rt, RuntimeName::Query);
    assert!(!idle);
    assert_eq!(nice, base + 5, "query threads run 5 levels lower");
}

#[test]
fn background_threads_yield_at_yield_points_and_latency_critical_ones_never() {
    let yield_interval = |rt: &Runtimes, name| {
        rt.block_on(name, async {
            bulkhead_runtime::current_thread_yield_interval()
        })
        .unwrap()
    };
    let rt = runtimes();
    let every = rt.config().background_yield;
    assert_eq!(every, Duration::from_micros(250), "the default");
    for name in [RuntimeName::Query, RuntimeName::Compact] {
        assert_eq!(yield_interval(&rt, name), Some(every), "{name}");
        // A thread past its interval does call sched_yield at a yield point, and its
        // runtime counts it.
        let before = cpu_yields(&rt, name);
        rt.block_on(name, async {
            std::thread::sleep(Duration::from_millis(1));
            bulkhead_runtime::yield_point();
        })
        .unwrap();
        assert!(cpu_yields(&rt, name) > before, "{name}");
    }
    // Flush is normal class: its yield would hand its CPU to idle-class threads.
    for name in [RuntimeName::Io, RuntimeName::Write, RuntimeName::Flush] {
        assert_eq!(yield_interval(&rt, name), None, "{name}");
        rt.block_on(name, async {
            std::thread::sleep(Duration::from_millis(1));
            bulkhead_runtime::yield_point();
        })
        .unwrap();
        assert_eq!(cpu_yields(&rt, name), 0, "{name}");
    }
    assert!(
        rt.snapshot()
            .to_prometheus()
            .contains("bulkhead_runtime_cpu_yields_total{runtime=\"query\"}")
    );

    let mut cfg = RuntimeConfig::for_parallelism(2);
    cfg.background_yield = Duration::ZERO;
    let off = Runtimes::new(cfg.clone()).unwrap();
    assert_eq!(yield_interval(&off, RuntimeName::Query), None);
    cfg.background_yield = Duration::from_millis(1);
    cfg.mode = RuntimeMode::Shared;
    let shared = Runtimes::new(cfg).unwrap();
    assert_eq!(
        yield_interval(&shared, RuntimeName::Query),
        None,
        "the shared runtime is the benchmark's baseline: it never yields"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn idle_runtimes_join_the_idle_cgroup_where_the_process_may_make_one() {
    // The thread's line for the v1 `cpu` hierarchy in /proc/thread-self/cgroup.
    let cpu_cgroup = |rt: &Runtimes, name| {
        rt.block_on(name, async {
            std::fs::read_to_string("/proc/thread-self/cgroup")
                .unwrap()
                .lines()
                .find(|l| {
                    l.split(':')
                        .nth(1)
                        .is_some_and(|c| c.split(',').any(|c| c == "cpu"))
                })
                .unwrap_or_default()
                .to_string()
        })
        .unwrap()
    };
    let rt = runtimes();
    let Some(dir) = bulkhead_runtime::idle_cgroup_dir() else {
        // Only where the process may not make one: not root, or no v1 `cpu` hierarchy.
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            !root || !std::path::Path::new("/sys/fs/cgroup/cpu/tasks").exists(),
            "root with a v1 cpu hierarchy, and no idle cgroup"
        );
        return;
    };
    let leaf = format!("/bulkhead-{}", std::process::id());
    assert!(dir.ends_with(&leaf[1..]), "{}", dir.display());
    assert_eq!(
        std::fs::read_to_string(dir.join("cpu.idle"))
            .unwrap()
            .trim(),
        "1"
    );
    for name in [RuntimeName::Query, RuntimeName::Compact] {
        let line = cpu_cgroup(&rt, name);
        assert!(line.ends_with(&leaf), "{name}: {line}");
    }
    for name in [RuntimeName::Io, RuntimeName::Write, RuntimeName::Flush] {
        let line = cpu_cgroup(&rt, name);
        assert!(!line.ends_with(&leaf), "{name}: {line}");
    }
    // Off, the query threads stay where the process is.
    let mut cfg = RuntimeConfig::for_parallelism(2);
    cfg.idle_cgroup = false;
    let off = Runtimes::new(cfg).unwrap();
    let line = cpu_cgroup(&off, RuntimeName::Query);
    assert!(!line.ends_with(&leaf), "{line}");
}

#[cfg(target_os = "linux")]
#[test]
fn flush_threads_get_the_last_cpu_and_nothing_else_is_pinned() {
    let allowed = bulkhead_runtime::current_thread_cpus();
    let cpus_of = |rt: &Runtimes, name| {
        rt.block_on(name, async { bulkhead_runtime::current_thread_cpus() })
            .unwrap()
    };
    let rt = runtimes();
    let flush = cpus_of(&rt, RuntimeName::Flush);
    if allowed.len() >= 2 {
        // One flush thread on 2 cores: the last CPU alone.
        assert_eq!(flush, vec![*allowed.last().unwrap()]);
    } else {
        assert_eq!(flush, allowed, "one CPU: nothing to choose");
    }
    for name in [
        RuntimeName::Io,
        RuntimeName::Write,
        RuntimeName::Query,
        RuntimeName::Compact,
    ] {
        assert_eq!(cpus_of(&rt, name), allowed, "{name}");
    }
    // Off, and in shared mode, the flush runs anywhere.
    let mut cfg = RuntimeConfig::for_parallelism(2);
    cfg.flush_affinity = false;
    assert_eq!(
        cpus_of(&Runtimes::new(cfg).unwrap(), RuntimeName::Flush),
        allowed
    );
    let mut cfg = RuntimeConfig::for_parallelism(2);
    cfg.mode = RuntimeMode::Shared;
    assert_eq!(
        cpus_of(&Runtimes::new(cfg).unwrap(), RuntimeName::Flush),
        allowed
    );
}

/// `sched_yield` calls counted for the runtime serving `name`.
fn cpu_yields(rt: &Runtimes, name: RuntimeName) -> u64 {
    let snap = rt.snapshot();
    snap.runtimes
        .iter()
        .find(|r| r.serves.contains(&name))
        .map(|r| r.cpu_yields)
        .unwrap()
}

/// (nice value, runs under SCHED_IDLE) of a thread of `name`.
fn priority_on(rt: &Runtimes, name: RuntimeName) -> (i32, bool) {
    rt.block_on(name, async {
        (
            bulkhead_runtime::current_thread_nice(),
            bulkhead_runtime::current_thread_is_sched_idle(),
        )
    })
    .unwrap()
}

#[test]
fn shared_mode_puts_every_name_on_one_runtime() {
    let mut cfg = RuntimeConfig::for_parallelism(2);
    cfg.mode = RuntimeMode::Shared;
    let rt = Runtimes::new(cfg).unwrap();
    for name in RuntimeName::ALL {
        let thread = rt
            .block_on(name, async {
                std::thread::current().name().unwrap().to_string()
            })
            .unwrap();
        assert!(thread.starts_with("bh-shared-"), "{name} ran on {thread}");
    }
    let snap = rt.snapshot();
    assert_eq!(snap.runtimes.len(), 1);
    assert_eq!(snap.runtimes[0].serves.len(), 5);
}

#[test]
fn watchdog_names_a_blocked_write_worker_while_io_keeps_answering() {
    let rt = runtimes();
    assert_eq!(rt.snapshot().stalls(RuntimeName::Write), 0);
    let threshold = rt.config().watchdog_threshold;
    let blocker = rt.spawn(RuntimeName::Write, async {
        std::thread::sleep(Duration::from_millis(300));
    });

    // While `write` is blocked, `io` answers pings promptly.
    let mut worst_ping = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_millis(250);
    while Instant::now() < deadline {
        let t = Instant::now();
        rt.block_on(RuntimeName::Io, async {}).unwrap();
        worst_ping = worst_ping.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    futures::executor::block_on(blocker).unwrap();

    let snap = rt.snapshot();
    assert!(
        worst_ping < Duration::from_millis(20),
        "io ping took {worst_ping:?}"
    );
    assert_eq!(snap.stalls(RuntimeName::Write), 1, "{snap:#?}");
    assert_eq!(snap.stalls(RuntimeName::Io), 0, "{snap:#?}");
    let event = snap
        .recent_stalls
        .iter()
        .find(|e| e.runtime == "write")
        .expect("a stall event naming write");
    assert!(
        event.detected_after_ms <= 2.0 * threshold.as_secs_f64() * 1e3,
        "detected after {} ms",
        event.detected_after_ms
    );
    assert!(
        event
            .thread
            .as_deref()
            .unwrap_or("")
            .starts_with("bh-write-"),
        "{event:?}"
    );
    let write = snap.runtimes.iter().find(|r| r.runtime == "write").unwrap();
    assert!(write.slow_polls >= 1);
    assert!(write.max_stall_ms >= threshold.as_secs_f64() * 1e3);
}

#[test]
fn dropping_a_run_handle_cancels_the_task() {
    let rt = runtimes();
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&finished);
    let handle = rt.run(RuntimeName::Query, async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    drop(handle);
    std::thread::sleep(Duration::from_millis(400));
    assert!(!finished.load(std::sync::atomic::Ordering::SeqCst));
}

#[test]
fn prometheus_text_has_every_runtime() {
    let rt = runtimes();
    let text = rt.snapshot().to_prometheus();
    for name in RuntimeName::ALL {
        assert!(
            text.contains(&format!(
                "bulkhead_runtime_stalls_total{{runtime=\"{name}\"}} 0"
            )),
            "{text}"
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn each_runtime_counts_its_cpu_time_and_its_wait_for_a_cpu() {
    fn pin_to(cpu: usize) {
        // SAFETY: an all-zero cpu_set_t is a valid empty set; `cpu` is below
        // CPU_SETSIZE (it came from sched_getaffinity).
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            assert_eq!(
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                0
            );
        }
    }
    fn spin(d: Duration) {
        let t = Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    }
    let of = |rt: &Runtimes| {
        let snap = rt.snapshot();
        let r = snap.runtimes.iter().find(|r| r.runtime == "io").unwrap();
        (r.cpu_seconds, r.cpu_wait_seconds)
    };
    let rt = runtimes();
    let cpu = bulkhead_runtime::current_thread_cpus()[0];
    let before = of(&rt);
    // An io thread and another thread spin on one CPU for 300 ms: each runs about
    // half of it and waits for the CPU the other half.
    let rival = std::thread::spawn(move || {
        pin_to(cpu);
        spin(Duration::from_millis(300));
    });
    rt.block_on(RuntimeName::Io, async move {
        pin_to(cpu);
        spin(Duration::from_millis(300));
    })
    .unwrap();
    rival.join().unwrap();
    let after = of(&rt);
    assert!(after.0 - before.0 >= 0.05, "ran {before:?} → {after:?}");
    assert!(after.1 - before.1 >= 0.05, "waited {before:?} → {after:?}");
    let text = rt.snapshot().to_prometheus();
    assert!(text.contains("bulkhead_runtime_cpu_wait_seconds_total{runtime=\"write\"}"));
    assert!(text.contains("bulkhead_runtime_cpu_seconds_total{runtime=\"io\"}"));
}
