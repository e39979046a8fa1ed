//! The rollup maintainer's types (the maintainer itself is in `bulkhead-query`),
//! declared here so the server's config file can embed them, since the server never
//! depends on the query layer: [`RollupConfig`] (how the maintainer runs, keys of
//! `[compaction]`) and [`RollupSpec`] (one rollup: a `[[rollup]]` entry of the config
//! file, or what `CREATE ROLLUP` declares).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bulkhead_runtime::units;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How the rollup maintainer runs: the rollup keys of the server's `[compaction]`
/// section, flattened there (so this struct does not deny unknown keys; the section
/// does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RollupConfig {
    /// How often to look for buckets past their grace period.
    #[serde(rename = "rollup_interval", with = "units::duration")]
    pub check_interval: Duration,
    /// Memory one rollup query may hold (a range too big for it is halved, down to one
    /// bucket).
    #[serde(rename = "rollup_memory_budget", with = "units::bytes")]
    pub memory_budget: usize,
}

impl Default for RollupConfig {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(30),
            memory_budget: 256 * 1024 * 1024,
        }
    }
}

/// The grace period of a rollup that does not give one.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(600);

/// One aggregate a rollup computes for each numeric field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    First,
    Last,
}

impl Aggregate {
    pub const ALL: [Aggregate; 7] = [
        Aggregate::Avg,
        Aggregate::Min,
        Aggregate::Max,
        Aggregate::Sum,
        Aggregate::Count,
        Aggregate::First,
        Aggregate::Last,
    ];

    /// Its name, which is also the suffix of its output column (`usage_avg`).
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Sum => "sum",
            Aggregate::Count => "count",
            Aggregate::First => "first",
            Aggregate::Last => "last",
        }
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Aggregate {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let lower = if lower == "mean" { "avg".into() } else { lower };
        Aggregate::ALL
            .into_iter()
            .find(|a| a.name() == lower)
            .ok_or_else(|| {
                let names: Vec<_> = Aggregate::ALL.iter().map(|a| a.name()).collect();
                format!(
                    "unknown aggregate `{s}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// One rollup: `CREATE ROLLUP name FROM source AGGREGATE ... EVERY every` in `database`,
/// or a `[[rollup]]` entry of the config file (keys as in its serde names; durations in
/// human units, `retention = "0s"` keeps the table forever).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupSpec {
    /// The rollup table's name (in `database`).
    pub name: String,
    /// The database of both tables.
    pub database: String,
    /// The table aggregated (in `database`).
    #[serde(rename = "from")]
    pub source: String,
    /// Aggregates computed for each numeric field: avg, min, max, sum, count, first, last.
    #[serde(with = "aggregates")]
    pub aggregates: Vec<Aggregate>,
    /// Numeric fields to aggregate; empty = every numeric field of the source.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Bucket width; buckets are aligned to the Unix epoch.
    #[serde(with = "units::duration")]
    pub every: Duration,
    /// How long after a bucket ends it is materialized (late rows within it count).
    #[serde(default = "default_grace_period", with = "units::duration")]
    pub grace_period: Duration,
    /// TTL of the rollup table; `None` keeps it forever (`"0s"` in the config file).
    #[serde(default, with = "retention")]
    pub retention: Option<Duration>,
}

fn default_grace_period() -> Duration {
    DEFAULT_GRACE_PERIOD
}

/// Serde for the aggregates, by name; an unknown name's error names the key.
mod aggregates {
    use serde::de::Error as _;

    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &[Aggregate], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|a| a.name()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Aggregate>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|a| a.parse::<Aggregate>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| D::Error::custom(format!("aggregates: {e}")))
    }
}

/// Serde for the retention: a duration, zero for "forever" (`None`).
mod retention {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        units::duration::serialize(&v.unwrap_or_default(), s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Some(units::duration::deserialize(d)?).filter(|d| !d.is_zero()))
    }
}

impl RollupSpec {
    /// `database.name`, as `system.rollups` and errors show it.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }

    /// Checks of one rollup; the error names the key and the value.
    pub fn validate(&self) -> std::result::Result<(), String> {
        use bulkhead_engine::names;
        names::check_database(&self.database)
            .map_err(|e| format!("database: `{}` {e}", self.database))?;
        names::check_table(&self.name).map_err(|e| format!("name: `{}` {e}", self.name))?;
        names::check_table(&self.source).map_err(|e| format!("from: `{}` {e}", self.source))?;
        if self.name == self.source {
            return Err(format!(
                "name: `{}` is also the source table (from); a rollup needs a table of its own",
                self.name
            ));
        }
        if self.aggregates.is_empty() {
            return Err(
                "aggregates: at least one is needed (avg, min, max, sum, count, first, last)"
                    .into(),
            );
        }
        let mut seen = HashSet::new();
        for a in &self.aggregates {
            if !seen.insert(*a) {
                return Err(format!("aggregates: `{a}` is listed twice"));
            }
        }
        for f in &self.fields {
            names::check_column(f).map_err(|e| format!("fields: `{f}` {e}"))?;
        }
        let every = i64::try_from(self.every.as_nanos()).unwrap_or(i64::MAX);
        if every <= 0 {
            return Err("every: must be positive".into());
        }
        if self.every > Duration::from_secs(366 * 86_400) {
            return Err(format!("every: {:?} is longer than a year", self.every));
        }
        Ok(())
    }
}

/// Check a set of rollups: each alone, and no two with the same table.
pub fn validate_all(specs: &[RollupSpec]) -> std::result::Result<(), String> {
    let mut tables = HashSet::new();
    for (i, spec) in specs.iter().enumerate() {
        spec.validate()
            .map_err(|e| format!("rollup[{i}] ({}): {e}", spec.qualified_name()))?;
        if !tables.insert(spec.qualified_name()) {
            return Err(format!(
                "rollup[{i}] ({}): name: another rollup writes the same table",
                spec.qualified_name()
            ));
        }
    }
    for (i, spec) in specs.iter().enumerate() {
        let source = format!("{}.{}", spec.database, spec.source);
        if specs
            .iter()
            .any(|s| s.qualified_name() == source && s.source == spec.name)
        {
            return Err(format!(
                "rollup[{i}] ({}): from: `{}` is a rollup of this one (a cycle)",
                spec.qualified_name(),
                spec.source
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RollupSpec {
        RollupSpec {
            name: "cpu_1h".into(),
            database: "db".into(),
            source: "cpu".into(),
            aggregates: vec![Aggregate::Avg, Aggregate::Max],
            fields: vec![],
            every: Duration::from_secs(3600),
            grace_period: Duration::from_secs(600),
            retention: None,
        }
    }

    #[test]
    fn aggregates_parse_by_name() {
        assert_eq!("AVG".parse::<Aggregate>(), Ok(Aggregate::Avg));
        assert_eq!("mean".parse::<Aggregate>(), Ok(Aggregate::Avg));
        assert_eq!("last".parse::<Aggregate>(), Ok(Aggregate::Last));
        let err = "median".parse::<Aggregate>().unwrap_err();
        assert!(
            err.contains("`median`") && err.contains("avg, min"),
            "{err}"
        );
    }

    #[test]
    fn bad_specs_name_the_key_and_value() {
        assert_eq!(validate_all(&[spec()]), Ok(()));
        let mut s = spec();
        s.every = Duration::ZERO;
        let err = validate_all(&[s]).unwrap_err();
        assert!(err.starts_with("rollup[0] (db.cpu_1h): every:"), "{err}");
        let mut s = spec();
        s.source = "cpu_1h".into();
        assert!(validate_all(&[s]).unwrap_err().contains("name: `cpu_1h`"));
        let mut s = spec();
        s.aggregates = vec![Aggregate::Avg, Aggregate::Avg];
        assert!(
            validate_all(&[s])
                .unwrap_err()
                .contains("`avg` is listed twice")
        );
        let mut s = spec();
        s.database = "system".into();
        assert!(
            validate_all(&[s])
                .unwrap_err()
                .contains("database: `system`")
        );
        let err = validate_all(&[spec(), spec()]).unwrap_err();
        assert!(
            err.contains("rollup[1]") && err.contains("same table"),
            "{err}"
        );
        let mut back = spec();
        back.name = "cpu".into();
        back.source = "cpu_1h".into();
        assert!(validate_all(&[spec(), back]).unwrap_err().contains("cycle"));
    }
}
