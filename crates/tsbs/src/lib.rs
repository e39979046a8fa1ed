//! The TSBS "cpu-only" workload, generated in-process, seeded and deterministic: the one
//! generator behind `bulkhead-bench`, the criterion benches and the tests.
//!
//! One table `cpu`, one row per host every 10 s, 10 tags and 10 integer fields that are
//! clamped random walks in 0..=100 with steps uniform in -5..=5 (see
//! `../shared/guide/BENCHMARKS.md`). The same seed, scale and start always produce the
//! same bytes, so every system in a benchmark gets identical input.

use std::fmt::Write;

/// 2016-01-01T00:00:00Z, TSBS's default start, in ns.
pub const DEFAULT_START_NS: i64 = 1_451_606_400_000_000_000;
/// One row per host every 10 s.
pub const INTERVAL_NS: i64 = 10_000_000_000;

pub const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

const REGIONS: [&str; 9] = [
    "us-east-1",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "sa-east-1",
];
/// Tag keys, in the order every row carries them.
pub const TAG_KEYS: [&str; 10] = [
    "hostname",
    "region",
    "datacenter",
    "rack",
    "os",
    "arch",
    "team",
    "service",
    "service_version",
    "service_environment",
];

const OSES: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCHES: [&str; 2] = ["x64", "x86"];
const TEAMS: [&str; 4] = ["SF", "NYC", "LON", "CHI"];
const ENVIRONMENTS: [&str; 3] = ["production", "staging", "test"];

/// SplitMix64: tiny, fast, and stable across crate versions (the output must never
/// change for a given seed). Also the one seeded generator of the tests, so a failing
/// seed replays the same run.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Host {
    /// The tag set, already escaped and joined: `hostname=host_0,region=...`.
    joined: String,
    /// The same tags as (key, value) pairs, in [`TAG_KEYS`] order.
    tags: Vec<(&'static str, String)>,
    fields: [i64; 10],
}

/// One host's row of an interval, for callers that build rows rather than text.
#[derive(Debug, Clone, Copy)]
pub struct HostRow<'a> {
    pub time: i64,
    /// (key, value) pairs in [`TAG_KEYS`] order.
    pub tags: &'a [(&'static str, String)],
    /// Values of [`FIELDS`], in order.
    pub fields: &'a [i64; 10],
}

/// Generates rows interval by interval: every host at `t`, then every host at `t + 10s`.
pub struct Generator {
    rng: SplitMix64,
    hosts: Vec<Host>,
    next_time: i64,
}

impl Generator {
    pub fn new(scale: usize, start_ns: i64, seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let hosts = (0..scale)
            .map(|i| {
                let region = REGIONS[rng.below(REGIONS.len() as u64) as usize];
                let dc = (b'a' + rng.below(3) as u8) as char;
                let values = [
                    format!("host_{i}"),
                    region.to_string(),
                    format!("{region}{dc}"),
                    rng.below(100).to_string(),
                    OSES[rng.below(OSES.len() as u64) as usize].to_string(),
                    ARCHES[rng.below(ARCHES.len() as u64) as usize].to_string(),
                    TEAMS[rng.below(TEAMS.len() as u64) as usize].to_string(),
                    rng.below(20).to_string(),
                    rng.below(2).to_string(),
                    ENVIRONMENTS[rng.below(ENVIRONMENTS.len() as u64) as usize].to_string(),
                ];
                let tags: Vec<(&'static str, String)> = TAG_KEYS.into_iter().zip(values).collect();
                let joined = tags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let fields = std::array::from_fn(|_| rng.below(101) as i64);
                Host {
                    joined,
                    tags,
                    fields,
                }
            })
            .collect();
        Self {
            rng,
            hosts,
            next_time: start_ns,
        }
    }

    pub fn scale(&self) -> usize {
        self.hosts.len()
    }

    /// Advance every host's fields by one random-walk step; the interval's time.
    fn step(&mut self) -> i64 {
        let t = self.next_time;
        self.next_time += INTERVAL_NS;
        for host in &mut self.hosts {
            for v in host.fields.iter_mut() {
                let step = self.rng.below(11) as i64 - 5;
                *v = (*v + step).clamp(0, 100);
            }
        }
        t
    }

    /// Append one interval (one line per host) as line protocol to `out`.
    pub fn write_interval(&mut self, out: &mut String) {
        let t = self.step();
        for host in &self.hosts {
            out.push_str("cpu,");
            out.push_str(&host.joined);
            out.push(' ');
            for (i, (name, v)) in FIELDS.iter().zip(host.fields.iter()).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{name}={v}i");
            }
            let _ = writeln!(out, " {t}");
        }
    }

    /// Generate one interval and hand each host's row to `f` (the same values
    /// [`write_interval`](Self::write_interval) would have written).
    pub fn for_each_in_interval(&mut self, mut f: impl FnMut(HostRow<'_>)) {
        let time = self.step();
        for host in &self.hosts {
            f(HostRow {
                time,
                tags: &host.tags,
                fields: &host.fields,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_well_formed() {
        let gen_text = |seed| {
            let mut g = Generator::new(3, DEFAULT_START_NS, seed);
            let mut s = String::new();
            g.write_interval(&mut s);
            g.write_interval(&mut s);
            s
        };
        let a = gen_text(7);
        assert_eq!(a, gen_text(7));
        assert_ne!(a, gen_text(8));
        let lines: Vec<&str> = a.lines().collect();
        assert_eq!(lines.len(), 6);
        assert!(
            lines[0].starts_with("cpu,hostname=host_0,region="),
            "{}",
            lines[0]
        );
        assert!(lines[3].ends_with(&format!(" {}", DEFAULT_START_NS + INTERVAL_NS)));
        // The structured rows carry exactly what the text says.
        let mut g = Generator::new(3, DEFAULT_START_NS, 7);
        let mut rebuilt = String::new();
        for _ in 0..2 {
            g.for_each_in_interval(|r| {
                let tags: Vec<String> = r.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let fields: Vec<String> = FIELDS
                    .iter()
                    .zip(r.fields)
                    .map(|(k, v)| format!("{k}={v}i"))
                    .collect();
                rebuilt.push_str(&format!(
                    "cpu,{} {} {}\n",
                    tags.join(","),
                    fields.join(","),
                    r.time
                ));
            });
        }
        assert_eq!(rebuilt, a);
        for line in lines {
            let fields = line.split(' ').nth(1).unwrap();
            assert_eq!(fields.split(',').count(), 10);
            for kv in fields.split(',') {
                let v: i64 = kv
                    .split('=')
                    .nth(1)
                    .unwrap()
                    .trim_end_matches('i')
                    .parse()
                    .unwrap();
                assert!((0..=100).contains(&v), "{kv}");
            }
        }
    }
}
