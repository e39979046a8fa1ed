//! The cache's counters, and [`CacheStats`], the snapshot `/metrics` and
//! `system.cache`-style views render.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one tier.
#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) filled_bytes: AtomicU64,
}

impl TierCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self, bytes: u64, capacity: u64, entries: u64) -> TierStats {
        TierStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            filled_bytes: self.filled_bytes.load(Ordering::Relaxed),
            bytes,
            capacity,
            entries,
        }
    }
}

/// Counters of the whole cache.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) memory: TierCounters,
    pub(crate) disk: TierCounters,
    /// GETs sent to the object store for missing blocks, and their bytes.
    pub(crate) fetches: AtomicU64,
    pub(crate) fetched_bytes: AtomicU64,
    /// Block reads that joined a fetch already in flight instead of starting one.
    pub(crate) coalesced: AtomicU64,
    /// Disk-tier files dropped because their checksum, size or header was wrong.
    pub(crate) corrupt: AtomicU64,
    /// Bytes of uploaded SSTs written into the disk tier.
    pub(crate) write_through_bytes: AtomicU64,
    /// Objects whose blocks were dropped because the object was deleted.
    pub(crate) invalidations: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(
        &self,
        memory: (u64, u64, u64),
        disk: Option<(u64, u64, u64)>,
    ) -> CacheStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            memory: self.memory.snapshot(memory.0, memory.1, memory.2),
            disk: disk.map(|(b, c, e)| self.disk.snapshot(b, c, e)),
            fetches: load(&self.fetches),
            fetched_bytes: load(&self.fetched_bytes),
            coalesced: load(&self.coalesced),
            corrupt: load(&self.corrupt),
            write_through_bytes: load(&self.write_through_bytes),
            invalidations: load(&self.invalidations),
        }
    }
}

/// One tier's state: block lookups that hit or missed, evictions, bytes put in over
/// time (`filled_bytes`), and what it holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub filled_bytes: u64,
    /// Bytes held now (never above `capacity`).
    pub bytes: u64,
    pub capacity: u64,
    /// Blocks held now.
    pub entries: u64,
}

/// A snapshot of the object-store cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub memory: TierStats,
    /// `None` when the disk tier is off.
    pub disk: Option<TierStats>,
    pub fetches: u64,
    pub fetched_bytes: u64,
    pub coalesced: u64,
    pub corrupt: u64,
    pub write_through_bytes: u64,
    pub invalidations: u64,
}

impl CacheStats {
    /// Prometheus text exposition of the snapshot (`bulkhead_cache_*`).
    pub fn prometheus(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (tier, v) in rows {
                if tier.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{tier=\"{tier}\"}} {v}");
                }
            }
        };
        let mut tiers: Vec<(&str, &TierStats)> = vec![("memory", &self.memory)];
        if let Some(d) = &self.disk {
            tiers.push(("disk", d));
        }
        let per = |f: fn(&TierStats) -> u64| -> Vec<(&str, u64)> {
            tiers.iter().map(|(n, t)| (*n, f(t))).collect()
        };
        family(
            "bulkhead_cache_hits_total",
            "counter",
            "Object-store cache block lookups served by the tier.",
            &per(|t| t.hits),
        );
        family(
            "bulkhead_cache_misses_total",
            "counter",
            "Object-store cache block lookups the tier could not serve.",
            &per(|t| t.misses),
        );
        family(
            "bulkhead_cache_evictions_total",
            "counter",
            "Blocks evicted from the tier to stay within its size.",
            &per(|t| t.evictions),
        );
        family(
            "bulkhead_cache_fill_bytes_total",
            "counter",
            "Bytes put into the tier.",
            &per(|t| t.filled_bytes),
        );
        family(
            "bulkhead_cache_bytes",
            "gauge",
            "Bytes the tier holds now.",
            &per(|t| t.bytes),
        );
        family(
            "bulkhead_cache_capacity_bytes",
            "gauge",
            "The tier's configured size.",
            &per(|t| t.capacity),
        );
        family(
            "bulkhead_cache_entries",
            "gauge",
            "Blocks the tier holds now.",
            &per(|t| t.entries),
        );
        for (name, help, v) in [
            (
                "bulkhead_cache_fetches_total",
                "GETs the cache sent to the object store for missing blocks.",
                self.fetches,
            ),
            (
                "bulkhead_cache_fetched_bytes_total",
                "Bytes those GETs returned.",
                self.fetched_bytes,
            ),
            (
                "bulkhead_cache_coalesced_total",
                "Block reads that joined a fetch already in flight.",
                self.coalesced,
            ),
            (
                "bulkhead_cache_corrupt_total",
                "Disk-tier files dropped for a bad checksum, size or header.",
                self.corrupt,
            ),
            (
                "bulkhead_cache_write_through_bytes_total",
                "Bytes of uploaded SSTs written into the disk tier.",
                self.write_through_bytes,
            ),
            (
                "bulkhead_cache_invalidations_total",
                "Deleted objects whose cached blocks were dropped.",
                self.invalidations,
            ),
        ] {
            family(name, "counter", help, &[("", v)]);
        }
        out
    }
}
