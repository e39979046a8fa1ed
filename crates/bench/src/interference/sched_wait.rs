//! How long each group of threads waited for a CPU in a phase: the kernel's run-queue
//! wait per thread (`/proc/<pid>/task/<tid>/schedstat`, Linux), summed by thread name
//! (`bh-write-3` and `bh-write-0` are `bh-write`), for the server and the benchmark's
//! own load generator. A write ack that is late because its thread sat runnable behind
//! another shows here as the `bh-write` (or `bh-wal`, `bh-io`) group's wait growing
//! from phase A to phase B; a late ack with no such growth waited for something else
//! (the disk, a lock, the host).

use std::collections::BTreeMap;

use serde::Serialize;

/// CPU time and run-queue wait of one thread group over an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(super) struct GroupTimes {
    /// Nanoseconds on a CPU.
    pub(super) run_ns: u64,
    /// Nanoseconds runnable but waiting for a CPU.
    pub(super) wait_ns: u64,
    /// Times a thread of the group was put on a CPU.
    pub(super) runs: u64,
}

impl GroupTimes {
    fn add(&mut self, o: GroupTimes) {
        self.run_ns += o.run_ns;
        self.wait_ns += o.wait_ns;
        self.runs += o.runs;
    }

    /// Mean wait per time on a CPU, in microseconds.
    pub(super) fn mean_wait_us(self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.wait_ns as f64 / self.runs as f64 / 1e3
        }
    }
}

/// Every thread's counters at one instant, by (pid, tid), with its group.
#[derive(Debug, Clone, Default)]
pub(super) struct ThreadTimes {
    threads: BTreeMap<(u32, u32), (String, GroupTimes)>,
}

impl ThreadTimes {
    /// The threads of `pids` now; empty where `/proc` has no schedstat (not Linux).
    pub(super) fn now(pids: &[u32]) -> Self {
        let mut threads = BTreeMap::new();
        for &pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let read = |f: &str| std::fs::read_to_string(task.path().join(f)).ok();
                let (Some(comm), Some(stat)) = (read("comm"), read("schedstat")) else {
                    continue;
                };
                if let Some(times) = parse_schedstat(&stat) {
                    threads.insert((pid, tid), (group_of(comm.trim()).to_string(), times));
                }
            }
        }
        Self { threads }
    }

    /// Per group, what its threads did between `earlier` and `self`. A thread that
    /// started in between counts from zero; one that ended in between is lost.
    pub(super) fn since(&self, earlier: &Self) -> GroupWaits {
        let mut groups: BTreeMap<String, GroupTimes> = BTreeMap::new();
        for (key, (group, now)) in &self.threads {
            let before = earlier
                .threads
                .get(key)
                .map(|(_, t)| *t)
                .unwrap_or_default();
            groups.entry(group.clone()).or_default().add(GroupTimes {
                run_ns: now.run_ns.saturating_sub(before.run_ns),
                wait_ns: now.wait_ns.saturating_sub(before.wait_ns),
                runs: now.runs.saturating_sub(before.runs),
            });
        }
        GroupWaits { groups }
    }
}

/// Thread groups' CPU time and run-queue wait over an interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(super) struct GroupWaits {
    pub(super) groups: BTreeMap<String, GroupTimes>,
}

impl GroupWaits {
    pub(super) fn add(&mut self, o: &GroupWaits) {
        for (group, t) in &o.groups {
            self.groups.entry(group.clone()).or_default().add(*t);
        }
    }

    /// The server's `write` and WAL threads' wait for a CPU, ms (in shared mode the
    /// writes run on `bh-shared` threads, not counted here).
    pub(super) fn write_wait_ms(&self) -> f64 {
        ["bh-write", "bh-wal"]
            .iter()
            .filter_map(|g| self.groups.get(*g))
            .map(|t| t.wait_ns as f64 / 1e6)
            .sum()
    }

    /// "group wait A→B ms (mean per run A→B µs)" for the `top` groups that waited
    /// longest in `b`.
    pub(super) fn describe(a: &GroupWaits, b: &GroupWaits, top: usize) -> String {
        let mut names: Vec<&String> = a.groups.keys().chain(b.groups.keys()).collect();
        names.sort();
        names.dedup();
        let get = |w: &GroupWaits, n: &str| w.groups.get(n).copied().unwrap_or_default();
        names.sort_by_key(|n| std::cmp::Reverse(get(b, n).wait_ns));
        names
            .into_iter()
            .take(top)
            .map(|n| {
                let (ta, tb) = (get(a, n), get(b, n));
                format!(
                    "{n} {:.0}→{:.0} ({:.0}→{:.0} µs)",
                    ta.wait_ns as f64 / 1e6,
                    tb.wait_ns as f64 / 1e6,
                    ta.mean_wait_us(),
                    tb.mean_wait_us()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `bh-write-3` → `bh-write`: a thread's name without its trailing worker number.
fn group_of(comm: &str) -> &str {
    match comm.rsplit_once('-') {
        Some((head, tail)) if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => comm,
    }
}

/// `run_ns wait_ns runs` (the three fields of `/proc/.../schedstat`).
fn parse_schedstat(s: &str) -> Option<GroupTimes> {
    let (run_ns, wait_ns, runs) = bulkhead_runtime::parse_schedstat(s)?;
    Some(GroupTimes {
        run_ns,
        wait_ns,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names_lose_their_worker_number_only() {
        assert_eq!(group_of("bh-write-3"), "bh-write");
        assert_eq!(group_of("bh-wal"), "bh-wal");
        assert_eq!(group_of("bench-client"), "bench-client");
        assert_eq!(group_of("tokio-runtime-w"), "tokio-runtime-w");
        assert_eq!(group_of("x-"), "x-");
    }

    #[test]
    fn schedstat_has_three_numbers() {
        assert_eq!(
            parse_schedstat("208565570 21976608 990\n"),
            Some(GroupTimes {
                run_ns: 208565570,
                wait_ns: 21976608,
                runs: 990
            })
        );
        assert_eq!(parse_schedstat("1 2"), None);
    }

    #[test]
    fn an_interval_counts_per_thread_and_new_threads_from_zero() {
        let t = |run, wait, runs| GroupTimes {
            run_ns: run,
            wait_ns: wait,
            runs,
        };
        let before = ThreadTimes {
            threads: BTreeMap::from([
                ((1, 10), ("bh-write".to_string(), t(100, 10, 5))),
                ((1, 11), ("bh-write".to_string(), t(50, 5, 2))),
            ]),
        };
        let after = ThreadTimes {
            threads: BTreeMap::from([
                ((1, 10), ("bh-write".to_string(), t(300, 40, 15))),
                ((1, 11), ("bh-write".to_string(), t(60, 6, 3))),
                ((1, 12), ("bh-io".to_string(), t(7, 3, 1))),
            ]),
        };
        let w = after.since(&before);
        assert_eq!(w.groups["bh-write"], t(210, 31, 11));
        assert_eq!(w.groups["bh-io"], t(7, 3, 1));
        let d = GroupWaits::describe(&GroupWaits::default(), &w, 1);
        assert!(d.starts_with("bh-write 0→0"), "{d}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_threads_that_ran() {
        let now = ThreadTimes::now(&[std::process::id()]);
        let w = now.since(&ThreadTimes::default());
        assert!(
            w.groups.values().any(|g| g.run_ns > 0 && g.runs > 0),
            "{w:?}"
        );
    }
}
