//! Engine micro-benchmarks (criterion):
//! * `wal_append_fsync/{1,8,64}`: durable writes (`WalSync::Always`) of 10-row batches
//!   through `Engine::write` from N concurrent writers; group commit shares fsyncs.
//! * `memtable_insert/tsbs_cpu`: memtable inserts of TSBS cpu-only rows.
//! * `flush_encode/tsbs_cpu`: sort + Parquet encode of a memtable holding one 2 h
//!   segment of 100 hosts; prints bytes per field value.
//! * `flush_many_tables/{1,32}`: `Engine::flush` of 10,000 one-row tables to a local
//!   disk store, one table at a time against `flush_concurrency` 32.
//!
//! Run: `cargo bench -p bulkhead-engine --bench engine`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_engine::bench_support::{memtable_insert, tsbs_cpu_rows};
use bulkhead_engine::{EngineConfig, IntegerCompression, WalSync, WriteBatch};
use bulkhead_runtime::RuntimeName;
use bulkhead_testkit::{io_bound, local_store, new_runtimes, open_engine_blocking};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use object_store::memory::InMemory;

const ROWS_PER_WRITE: usize = 10;

fn wal_append(c: &mut Criterion) {
    let runtimes = new_runtimes();
    // On the real disk (not a tmpfs /tmp), so fsync costs what it costs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = io_bound(Arc::new(InMemory::new()), &runtimes);
    let mut cfg = EngineConfig {
        flush_check_interval: Duration::from_secs(3600),
        ..EngineConfig::with_dir(dir.path())
    };
    cfg.wal.sync = WalSync::Always;
    cfg.memtable.table_flush_size = 1 << 30;
    cfg.memtable.write_buffer = 1 << 30;
    let engine = open_engine_blocking(cfg, &store, &runtimes);
    // Shared, so the timed loop does not clone thousands of rows per writer.
    let rows = Arc::new(tsbs_cpu_rows(100, 40, 7));
    let mut group = c.benchmark_group("wal_append_fsync");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(ROWS_PER_WRITE as u64));
    for writers in [1usize, 8, 64] {
        group.bench_with_input(
            BenchmarkId::from_parameter(writers),
            &writers,
            |b, &writers| {
                b.iter_custom(|iters| {
                    let per_writer = (iters as usize).div_ceil(writers).max(1);
                    let engine = Arc::clone(&engine);
                    let rows = Arc::clone(&rows);
                    let started = Instant::now();
                    runtimes
                        .block_on(RuntimeName::Io, async move {
                            let tasks: Vec<_> = (0..writers)
                                .map(|w| {
                                    let engine = Arc::clone(&engine);
                                    let rows = Arc::clone(&rows);
                                    tokio::spawn(async move {
                                        for i in 0..per_writer {
                                            let mut batch = WriteBatch::default();
                                            let start = ((w * per_writer + i) * ROWS_PER_WRITE)
                                                % (rows.len() - ROWS_PER_WRITE);
                                            for r in &rows[start..start + ROWS_PER_WRITE] {
                                                batch.push("cpu", r.clone());
                                            }
                                            engine.write("db", batch).await.expect("write");
                                        }
                                    })
                                })
                                .collect();
                            for t in tasks {
                                t.await.expect("writer");
                            }
                        })
                        .expect("runtime");
                    // Scale to exactly `iters` writes.
                    started
                        .elapsed()
                        .mul_f64(iters as f64 / (per_writer * writers) as f64)
                })
            },
        );
    }
    group.finish();
    let stats = engine.stats();
    println!(
        "wal_append_fsync: {} appends, {} fsyncs ({:.1} appends per fsync)",
        stats.wal_appends,
        stats.wal_syncs,
        stats.wal_appends as f64 / stats.wal_syncs.max(1) as f64
    );
}

fn memtable(c: &mut Criterion) {
    let rows = tsbs_cpu_rows(100, 100, 7);
    let mut group = c.benchmark_group("memtable_insert");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("tsbs_cpu", |b| {
        b.iter(|| memtable_insert(&rows).expect("insert").rows())
    });
    group.finish();
}

fn flush_encode(c: &mut Criterion) {
    // One full 2 h segment of 100 hosts: 72,000 rows, 720,000 field values.
    let rows = tsbs_cpu_rows(100, 720, 7);
    let values = rows.len() as u64 * 10;
    let mem = memtable_insert(&rows).expect("insert");
    let bytes = mem.encode_sst().expect("encode");
    println!(
        "flush_encode: {} rows, {} values -> {} bytes = {:.3} bytes/value (memtable {} bytes)",
        rows.len(),
        values,
        bytes,
        bytes as f64 / values as f64,
        mem.bytes()
    );
    for level in [1, 9, 19] {
        let b = mem
            .encode_sst_with(level, IntegerCompression::Zstd)
            .expect("encode");
        println!(
            "flush_encode: zstd level {level} on every column: {:.3} bytes/value",
            b as f64 / values as f64
        );
    }
    let mut group = c.benchmark_group("flush_encode");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(values));
    group.bench_function("tsbs_cpu", |b| b.iter(|| mem.encode_sst().expect("encode")));
    group.bench_function("tsbs_cpu_integers_zstd", |b| {
        b.iter(|| {
            mem.encode_sst_with(3, IntegerCompression::Zstd)
                .expect("encode")
        })
    });
    group.finish();
}

/// End-to-end ingest: 8 writers sending 5,000-row TSBS batches through `Engine::write`
/// with fsync'd acks (the shape of the HTTP ingest benchmark, without HTTP and parsing).
fn engine_write(c: &mut Criterion) {
    const BATCH: usize = 5_000;
    const WRITERS: usize = 8;
    let runtimes = new_runtimes();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = io_bound(Arc::new(InMemory::new()), &runtimes);
    // Default-like thresholds, so flushes (to an in-memory store) happen during the run.
    let mut cfg = EngineConfig::with_dir(dir.path());
    cfg.wal.sync = WalSync::Always;
    cfg.memtable.table_flush_size = 64 << 20;
    cfg.memtable.write_buffer = 256 << 20;
    let engine = open_engine_blocking(cfg, &store, &runtimes);
    // 1000 hosts; consecutive batches move forward in time.
    let rows = tsbs_cpu_rows(1000, 40, 11);
    let batches: Arc<Vec<WriteBatch>> = Arc::new(
        rows.chunks(BATCH)
            .map(|chunk| {
                let mut b = WriteBatch::default();
                for r in chunk {
                    b.push("cpu", r.clone());
                }
                b
            })
            .collect(),
    );
    let mut group = c.benchmark_group("engine_write");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements((BATCH * WRITERS) as u64));
    group.bench_function("tsbs_cpu_8x5000_fsync", |b| {
        // Cloning the batches is setup, not timed (the server would parse them instead).
        let setup = || {
            (0..WRITERS)
                .map(|w| batches[w % batches.len()].clone())
                .collect::<Vec<_>>()
        };
        b.iter_batched(
            setup,
            |owned| {
                let engine = Arc::clone(&engine);
                runtimes
                    .block_on(RuntimeName::Io, async move {
                        let tasks: Vec<_> = owned
                            .into_iter()
                            .map(|batch| {
                                let engine = Arc::clone(&engine);
                                tokio::spawn(async move {
                                    engine.write("db", batch).await.expect("write")
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("writer");
                        }
                    })
                    .expect("runtime")
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    let stats = engine.stats();
    println!(
        "engine_write: {} rows written, {} flushes, memtable {} bytes",
        stats.rows_written, stats.flush_count, stats.memtable_bytes
    );
}

fn flush_many_tables(c: &mut Criterion) {
    const TABLES: usize = 10_000;
    let runtimes = new_runtimes();
    let mut group = c.benchmark_group("flush_many_tables");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(TABLES as u64));
    for concurrency in [1usize, 32] {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let store = local_store(&dir.path().join("store"), &runtimes);
        let mut cfg = EngineConfig::with_dir(dir.path());
        cfg.memtable.flush_concurrency = concurrency;
        cfg.compaction.enabled = false;
        let engine = open_engine_blocking(cfg, &store, &runtimes);
        let mut round = 0i64;
        group.bench_function(BenchmarkId::from_parameter(concurrency), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let mut batch = WriteBatch::default();
                    for t in 0..TABLES {
                        batch.push(&format!("t{t}"), one_row(round));
                    }
                    let engine = Arc::clone(&engine);
                    total += runtimes
                        .block_on(RuntimeName::Io, async move {
                            engine.write("db", batch).await.expect("write");
                            let started = Instant::now();
                            engine
                                .flush(&bulkhead_engine::Scope::All)
                                .await
                                .expect("flush");
                            started.elapsed()
                        })
                        .expect("runtime");
                }
                total
            })
        });
        let state = runtimes
            .block_on(RuntimeName::Io, {
                let engine = Arc::clone(&engine);
                async move { engine.manifest_state().await }
            })
            .expect("runtime");
        println!(
            "flush_many_tables/{concurrency}: {round} rounds of {TABLES} tables in {} manifest edits",
            state.version
        );
    }
    group.finish();
}

fn one_row(time: i64) -> bulkhead_engine::Row {
    use bulkhead_engine::{FieldValue, SmolStr};
    bulkhead_engine::Row {
        tags: vec![(SmolStr::new("host"), SmolStr::new("h"))],
        fields: vec![(SmolStr::new("v"), FieldValue::F64(time as f64))],
        time,
    }
}

criterion_group!(
    benches,
    wal_append,
    memtable,
    flush_encode,
    engine_write,
    flush_many_tables
);
criterion_main!(benches);
