//! The compaction picker: a pure function from live SSTs to merge tasks.
//!
//! Policy: time-window compaction (TWCS). SSTs never span time segments, so each
//! (table, segment) is compacted on its own. Within one:
//! - a segment still "hot" (its end is less than `grace_period` before `now`) is left
//!   alone, unless the compaction is manual ([`PickMode::Forced`] or `Rewrite`);
//! - otherwise it is merged once it has `trigger` files or any two of its files overlap
//!   in time (forced: once it has 2 files; rewrite: always, even a lone file, so that
//!   new encoding settings reach old data);
//! - files are taken in `max_seq` order and cut into runs that fit both
//!   `max_output_bytes` and the memory budget; each run of two or more files is a
//!   task. Runs are contiguous in `max_seq` order, which keeps "newer file wins"
//!   correct after the merge (the output takes the run's highest `max_seq`).
//!
//! No IO, no clocks: `now` is an argument, so the picker is tested on hand-built inputs.

use std::collections::BTreeMap;

use crate::memtable::segment_of;
use crate::sst::SstMeta;

use super::CompactionConfig;

/// Bytes of memory a merge is estimated to need per input row (a decoded Arrow row and
/// its merged copy, with room to spare), on top of twice the input's compressed bytes.
pub const ROW_MEMORY_ESTIMATE: u64 = 256;

/// One merge: `inputs` (same table and segment, oldest `max_seq` first) become one SST.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionTask {
    pub db: String,
    pub table: String,
    pub segment_start: i64,
    pub inputs: Vec<SstMeta>,
    pub estimated_memory: u64,
}

impl CompactionTask {
    pub fn input_bytes(&self) -> u64 {
        self.inputs.iter().map(|m| m.bytes).sum()
    }
}

/// What the picker decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub tasks: Vec<CompactionTask>,
    /// Files that need merging but alone exceed the memory budget or output cap.
    pub oversized: Vec<SstMeta>,
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// Why the picker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickMode {
    /// The background compactor: cold segments past the trigger, or overlapping.
    Background,
    /// A manual compaction: every segment with two or more files.
    Forced,
    /// A manual rewrite: every file, merged with its segment's others or re-encoded
    /// alone.
    Rewrite,
}

/// Estimated memory to merge `m`.
pub fn estimate_memory(m: &SstMeta) -> u64 {
    m.bytes.saturating_mul(2) + m.rows.saturating_mul(ROW_MEMORY_ESTIMATE)
}

/// Decide what to merge among `ssts` (any tables, any segments).
pub fn pick(
    ssts: &[SstMeta],
    cfg: &CompactionConfig,
    segment_nanos: i64,
    now_ns: i64,
    mode: PickMode,
) -> Decision {
    let force = mode != PickMode::Background;
    let min_run = if mode == PickMode::Rewrite { 1 } else { 2 };
    let mut groups: BTreeMap<(&str, &str, i64), Vec<&SstMeta>> = BTreeMap::new();
    for m in ssts {
        groups
            .entry((m.db.as_str(), m.table.as_str(), m.segment_start))
            .or_default()
            .push(m);
    }
    let grace = i64::try_from(cfg.grace_period.as_nanos()).unwrap_or(i64::MAX);
    let mut decision = Decision::default();
    for ((db, table, segment_start), mut files) in groups {
        // Exclusive end, in i128: the last segment ends past i64::MAX.
        let segment_end = i128::from(segment_of(segment_start, segment_nanos).last) + 1;
        let hot = segment_end + i128::from(grace) > i128::from(now_ns);
        if hot && !force {
            continue;
        }
        let needed = if force {
            files.len() >= min_run
        } else {
            files.len() >= cfg.trigger.max(2) || any_overlap(&files)
        };
        if !needed {
            continue;
        }
        files.sort_by_key(|m| (m.max_seq, m.file_id.clone()));
        let mut run: Vec<&SstMeta> = Vec::new();
        let (mut run_bytes, mut run_mem) = (0u64, 0u64);
        let close = |run: &mut Vec<&SstMeta>, mem: u64, decision: &mut Decision| {
            if run.len() >= min_run {
                decision.tasks.push(CompactionTask {
                    db: db.to_string(),
                    table: table.to_string(),
                    segment_start,
                    inputs: run.iter().map(|m| (*m).clone()).collect(),
                    estimated_memory: mem,
                });
            }
            run.clear();
        };
        for m in files {
            let mem = estimate_memory(m);
            if m.bytes > cfg.max_output_bytes || mem > cfg.memory_budget {
                close(&mut run, run_mem, &mut decision);
                (run_bytes, run_mem) = (0, 0);
                decision.oversized.push(m.clone());
                continue;
            }
            if run_bytes + m.bytes > cfg.max_output_bytes || run_mem + mem > cfg.memory_budget {
                close(&mut run, run_mem, &mut decision);
                (run_bytes, run_mem) = (0, 0);
            }
            run.push(m);
            run_bytes += m.bytes;
            run_mem += mem;
        }
        close(&mut run, run_mem, &mut decision);
    }
    decision
}

fn any_overlap(files: &[&SstMeta]) -> bool {
    let mut by_min: Vec<(i64, i64)> = files.iter().map(|m| (m.min_time, m.max_time)).collect();
    by_min.sort();
    by_min.windows(2).any(|w| w[1].0 <= w[0].1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SEG: i64 = 7_200_000_000_000; // 2 h
    const NOW: i64 = 100 * SEG;

    fn sst(id: &str, segment: i64, min: i64, max: i64, bytes: u64, seq: u64) -> SstMeta {
        SstMeta {
            file_id: id.into(),
            db: "db".into(),
            table: "t".into(),
            path: format!("data/db/t/{segment}/{id}.parquet"),
            segment_start: segment * SEG,
            min_time: segment * SEG + min,
            max_time: segment * SEG + max,
            rows: 10,
            bytes,
            max_seq: seq,
            level: 0,
            tag_ranges: Default::default(),
            tombstones_applied: 0,
            pack_offset: None,
        }
    }

    fn cfg() -> CompactionConfig {
        CompactionConfig {
            trigger: 4,
            max_output_bytes: 1000,
            memory_budget: 1_000_000,
            grace_period: Duration::from_secs(600),
            ..CompactionConfig::default()
        }
    }

    fn ids(task: &CompactionTask) -> Vec<&str> {
        task.inputs.iter().map(|m| m.file_id.as_str()).collect()
    }

    #[test]
    fn merges_a_segment_at_the_trigger_and_not_before() {
        let three: Vec<_> = (0..3)
            .map(|i| sst(&format!("f{i}"), 1, i * 10, i * 10 + 5, 10, i as u64))
            .collect();
        assert!(pick(&three, &cfg(), SEG, NOW, PickMode::Background).is_empty());
        let mut four = three.clone();
        four.push(sst("f3", 1, 40, 45, 10, 3));
        let d = pick(&four, &cfg(), SEG, NOW, PickMode::Background);
        assert_eq!(d.tasks.len(), 1);
        assert_eq!(ids(&d.tasks[0]), ["f0", "f1", "f2", "f3"]);
        assert_eq!(d.tasks[0].segment_start, SEG);
    }

    #[test]
    fn overlapping_files_are_merged_below_the_trigger() {
        let files = [sst("a", 1, 0, 50, 10, 1), sst("b", 1, 40, 90, 10, 2)];
        let d = pick(&files, &cfg(), SEG, NOW, PickMode::Background);
        assert_eq!(d.tasks.len(), 1);
        assert_eq!(ids(&d.tasks[0]), ["a", "b"]);
    }

    #[test]
    fn segments_are_never_mixed_and_are_ordered_by_seq() {
        let mut files = Vec::new();
        for seg in [1, 2] {
            for i in (0..4).rev() {
                files.push(sst(
                    &format!("s{seg}-{i}"),
                    seg,
                    i * 10,
                    i * 10 + 5,
                    10,
                    (seg * 10 + i) as u64,
                ));
            }
        }
        let d = pick(&files, &cfg(), SEG, NOW, PickMode::Background);
        assert_eq!(d.tasks.len(), 2);
        assert_eq!(ids(&d.tasks[0]), ["s1-0", "s1-1", "s1-2", "s1-3"]);
        assert_eq!(ids(&d.tasks[1]), ["s2-0", "s2-1", "s2-2", "s2-3"]);
    }

    #[test]
    fn the_hot_segment_waits_for_its_grace_period_unless_forced() {
        let files: Vec<_> = (0..5)
            .map(|i| sst(&format!("f{i}"), 99, i, i, 10, i as u64))
            .collect();
        // Segment 99 ends at NOW; the grace period has not passed.
        assert!(pick(&files, &cfg(), SEG, NOW, PickMode::Background).is_empty());
        assert_eq!(
            pick(
                &files,
                &cfg(),
                SEG,
                NOW + 601_000_000_000,
                PickMode::Background
            )
            .tasks
            .len(),
            1
        );
        assert_eq!(
            pick(&files, &cfg(), SEG, NOW, PickMode::Forced).tasks.len(),
            1
        );
    }

    #[test]
    fn output_size_cap_splits_runs_and_skips_oversized_files() {
        // Cap 1000 bytes: [400, 400] | [400, 400] | 1500 alone (oversized) | [100] alone.
        let files = [
            sst("a", 1, 0, 1, 400, 1),
            sst("b", 1, 2, 3, 400, 2),
            sst("c", 1, 4, 5, 400, 3),
            sst("d", 1, 6, 7, 400, 4),
            sst("e", 1, 8, 9, 1500, 5),
            sst("f", 1, 10, 11, 100, 6),
        ];
        let d = pick(&files, &cfg(), SEG, NOW, PickMode::Background);
        assert_eq!(
            d.tasks.iter().map(ids).collect::<Vec<_>>(),
            [vec!["a", "b"], vec!["c", "d"]]
        );
        assert!(d.tasks.iter().all(|t| t.input_bytes() <= 1000));
        assert_eq!(
            d.oversized
                .iter()
                .map(|m| m.file_id.as_str())
                .collect::<Vec<_>>(),
            ["e"]
        );
    }

    #[test]
    fn memory_budget_splits_tasks() {
        let mut c = cfg();
        c.max_output_bytes = u64::MAX;
        let files: Vec<_> = (0..4)
            .map(|i| sst(&format!("f{i}"), 1, i, i, 100, i as u64))
            .collect();
        let per_file = estimate_memory(&files[0]);
        c.memory_budget = per_file * 2;
        let d = pick(&files, &c, SEG, NOW, PickMode::Background);
        assert_eq!(d.tasks.len(), 2);
        assert!(
            d.tasks
                .iter()
                .all(|t| t.estimated_memory <= c.memory_budget)
        );
        c.memory_budget = per_file - 1;
        let d = pick(&files, &c, SEG, NOW, PickMode::Background);
        assert!(d.tasks.is_empty());
        assert_eq!(d.oversized.len(), 4, "every file alone exceeds the budget");
    }

    #[test]
    fn one_file_is_nothing_to_do_even_when_forced() {
        let files = [sst("a", 1, 0, 1, 10, 1)];
        assert!(pick(&files, &cfg(), SEG, NOW, PickMode::Forced).is_empty());
    }

    #[test]
    fn rewrite_takes_a_lone_file_and_whole_segments() {
        let files = [
            sst("a", 1, 0, 1, 10, 1),
            sst("b", 2, 0, 1, 10, 2),
            sst("c", 2, 2, 3, 10, 3),
        ];
        let d = pick(&files, &cfg(), SEG, NOW, PickMode::Rewrite);
        let mut inputs: Vec<Vec<&str>> = d
            .tasks
            .iter()
            .map(|t| t.inputs.iter().map(|m| m.file_id.as_str()).collect())
            .collect();
        inputs.sort();
        assert_eq!(inputs, vec![vec!["a"], vec!["b", "c"]]);
    }
}
