//! The TSBS "cpu-only" workload, generated in-process, seeded and deterministic.
//!
//! One table `cpu`, one row per host every 10 s, 10 tags and 10 integer fields that are
//! clamped random walks in 0..=100 with steps uniform in -5..=5 (see
//! `../shared/guide/BENCHMARKS.md`). The same seed, scale and start always produce the
//! same bytes, so every system in a benchmark gets identical input.

use std::fmt::Write;

/// 2016-01-01T00:00:00Z, TSBS's default start, in ns.
pub(crate) const DEFAULT_START_NS: i64 = 1_451_606_400_000_000_000;
/// One row per host every 10 s.
pub(crate) const INTERVAL_NS: i64 = 10_000_000_000;

pub(crate) const FIELDS: [&str; 10] = [
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
const OSES: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCHES: [&str; 2] = ["x64", "x86"];
const TEAMS: [&str; 4] = ["SF", "NYC", "LON", "CHI"];
const ENVIRONMENTS: [&str; 3] = ["production", "staging", "test"];

/// SplitMix64: tiny, fast, and stable across crate versions (the output must never
/// change for a given seed).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Host {
    /// The tag set, already escaped and joined: `hostname=host_0,region=...`.
    tags: String,
    fields: [i64; 10],
}

/// Generates rows interval by interval: every host at `t`, then every host at `t + 10s`.
pub(crate) struct Generator {
    rng: SplitMix64,
    hosts: Vec<Host>,
    next_time: i64,
}

impl Generator {
    pub(crate) fn new(scale: usize, start_ns: i64, seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let hosts = (0..scale)
            .map(|i| {
                let region = REGIONS[rng.below(REGIONS.len() as u64) as usize];
                let dc = (b'a' + rng.below(3) as u8) as char;
                let tags = format!(
                    "hostname=host_{i},region={region},datacenter={region}{dc},rack={},os={},arch={},team={},service={},service_version={},service_environment={}",
                    rng.below(100),
                    OSES[rng.below(OSES.len() as u64) as usize],
                    ARCHES[rng.below(ARCHES.len() as u64) as usize],
                    TEAMS[rng.below(TEAMS.len() as u64) as usize],
                    rng.below(20),
                    rng.below(2),
                    ENVIRONMENTS[rng.below(ENVIRONMENTS.len() as u64) as usize],
                );
                let fields = std::array::from_fn(|_| rng.below(101) as i64);
                Host { tags, fields }
            })
            .collect();
        Self {
            rng,
            hosts,
            next_time: start_ns,
        }
    }

    pub(crate) fn scale(&self) -> usize {
        self.hosts.len()
    }

    /// Append one interval (one line per host) as line protocol to `out`.
    pub(crate) fn write_interval(&mut self, out: &mut String) {
        let t = self.next_time;
        self.next_time += INTERVAL_NS;
        for host in &mut self.hosts {
            out.push_str("cpu,");
            out.push_str(&host.tags);
            out.push(' ');
            for (i, (name, v)) in FIELDS.iter().zip(host.fields.iter_mut()).enumerate() {
                let step = self.rng.below(11) as i64 - 5;
                *v = (*v + step).clamp(0, 100);
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{name}={v}i");
            }
            let _ = writeln!(out, " {t}");
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
