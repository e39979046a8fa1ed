//! Which tables to flush now: a pure function of each table's memory use, age and
//! flush state, so the policy is tested without an engine (`flush.rs` gathers the
//! usages and flushes what this picks).

use std::time::Duration;

/// What the flush policy knows of one table.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TableUsage {
    /// Memtable bytes (active and frozen).
    pub(crate) bytes: usize,
    /// Age of its oldest data in memory.
    pub(crate) age: Option<Duration>,
    /// Its last flush failed (retried now, with the scheduler's backoff).
    pub(crate) flush_failed: bool,
    /// It has deletes whose manifest commit failed (`write::apply_delete`).
    pub(crate) uncommitted_tombstones: bool,
}

/// The limits the policy applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    /// A table holding this much is flushed.
    pub(crate) table_bytes: usize,
    /// Data older than this is flushed.
    pub(crate) max_age: Duration,
    /// Memtable bytes of all tables, and the write buffer.
    pub(crate) memory_used: usize,
    pub(crate) memory_limit: usize,
}

/// Where the write buffer starts flushing: three quarters of it. Writers stall only
/// at the full buffer, so a flush started here has a quarter of the buffer's room to
/// finish in before any writer waits; started at the full buffer, every write behind
/// it waited for the whole flush (a 300-400 ms ack tail at a sixth of capacity).
pub(crate) fn flush_mark(memory_limit: usize) -> usize {
    memory_limit - memory_limit / 4
}

/// Indices of the tables in `usages` to flush now, most urgent first: every table
/// past its own threshold, age or failure; then, if the write buffer is past its
/// [`flush_mark`], the largest others until what remains is under half the buffer.
pub(crate) fn pick(usages: &[TableUsage], t: &Thresholds) -> Vec<usize> {
    let over_global = t.memory_used >= flush_mark(t.memory_limit);
    let mut picked = Vec::new();
    let mut candidates: Vec<(usize, usize)> = Vec::new();
    for (i, u) in usages.iter().enumerate() {
        if u.bytes == 0 {
            // Nothing in memory, but deletes to commit.
            if u.uncommitted_tombstones {
                picked.push(i);
            }
            continue;
        }
        let aged = u.age.is_some_and(|a| a >= t.max_age);
        if u.bytes >= t.table_bytes || aged || u.flush_failed || u.uncommitted_tombstones {
            picked.push(i);
        } else if over_global {
            candidates.push((u.bytes, i));
        }
    }
    if over_global {
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        let mut remaining = t.memory_used;
        for (bytes, i) in candidates {
            if remaining < t.memory_limit / 2 {
                break;
            }
            remaining = remaining.saturating_sub(bytes);
            picked.push(i);
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn thresholds(memory_used: usize) -> Thresholds {
        Thresholds {
            table_bytes: 8 * MIB,
            max_age: Duration::from_secs(300),
            memory_used,
            memory_limit: 64 * MIB,
        }
    }

    fn bytes(n: usize) -> TableUsage {
        TableUsage {
            bytes: n,
            ..TableUsage::default()
        }
    }

    #[test]
    fn a_table_past_its_threshold_age_or_failure_is_picked() {
        let usages = [
            bytes(8 * MIB),
            bytes(MIB),
            TableUsage {
                age: Some(Duration::from_secs(300)),
                ..bytes(1)
            },
            TableUsage {
                age: Some(Duration::from_secs(299)),
                ..bytes(1)
            },
            TableUsage {
                flush_failed: true,
                ..bytes(1)
            },
        ];
        assert_eq!(pick(&usages, &thresholds(10 * MIB)), vec![0, 2, 4]);
    }

    #[test]
    fn an_empty_table_is_picked_only_for_uncommitted_deletes() {
        let usages = [
            bytes(0),
            TableUsage {
                uncommitted_tombstones: true,
                ..bytes(0)
            },
            TableUsage {
                flush_failed: true,
                ..bytes(0)
            },
        ];
        assert_eq!(pick(&usages, &thresholds(0)), vec![1]);
    }

    #[test]
    fn a_full_buffer_flushes_the_largest_until_under_half() {
        // 70 MiB used of 64: 30 + 20 leaves 20 (< 32), so the 12 and 8 stay.
        let usages = [bytes(7 * MIB), bytes(7 * MIB), bytes(6 * MIB)];
        let t = Thresholds {
            table_bytes: 64 * MIB,
            ..thresholds(70 * MIB)
        };
        let big = [
            bytes(12 * MIB),
            bytes(30 * MIB),
            bytes(8 * MIB),
            bytes(20 * MIB),
        ];
        assert_eq!(pick(&big, &t), vec![1, 3]);
        // Under the buffer: nothing below the per-table threshold moves.
        assert!(pick(&usages, &thresholds(20 * MIB)).is_empty());
    }

    #[test]
    fn the_buffer_flushes_from_three_quarters_before_writers_stall() {
        // One table under its own threshold fills a 64 MiB buffer: flushed from 48 MiB.
        let t = Thresholds {
            table_bytes: 64 * MIB,
            ..thresholds(0)
        };
        let at = |used| Thresholds {
            memory_used: used,
            ..t
        };
        assert_eq!(flush_mark(64 * MIB), 48 * MIB);
        assert!(pick(&[bytes(48 * MIB - 1)], &at(48 * MIB - 1)).is_empty());
        assert_eq!(pick(&[bytes(48 * MIB)], &at(48 * MIB)), vec![0]);
        // Several tables: the largest go until the rest is under half (32 MiB).
        let usages = [bytes(10 * MIB), bytes(20 * MIB), bytes(18 * MIB)];
        assert_eq!(pick(&usages, &at(48 * MIB)), vec![1]);
        assert_eq!(pick(&usages, &at(54 * MIB)), vec![1, 2]);
    }

    #[test]
    fn picked_tables_come_first_then_the_largest_others() {
        let usages = [bytes(2 * MIB), bytes(9 * MIB), bytes(5 * MIB)];
        let t = Thresholds {
            memory_limit: 10 * MIB,
            ..thresholds(16 * MIB)
        };
        // 9 MiB is past 8. Then from 16 MiB used (what was just picked is not
        // subtracted): the 5 MiB one, leaving 11 >= 5, so the 2 MiB one too.
        assert_eq!(pick(&usages, &t), vec![1, 2, 0]);
    }
}
