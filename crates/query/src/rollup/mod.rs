//! Downsampling rollups: tables kept as per-bucket aggregates of another table,
//! maintained on the `compact` bulkhead (see `docs/rollups.md`).
//!
//! A rollup `db.name` of `db.source` with bucket width `every` and grace period `grace`
//! materializes the bucket `[b, b + every)` once `now >= b + every + grace`: rows that
//! arrive late, but within the grace period, are in the bucket by construction. One
//! aggregate query (DataFusion, on `compact`, in the rollups' own memory pool) computes
//! a range of ready buckets; its rows go through the engine's normal write path, so
//! they are in the WAL like any write. A row's key is (tags, bucket start), so running a
//! bucket again overwrites it with the same values: after a restart the maintainer
//! re-runs the newest bucket in the rollup table and goes on from there.
//!
//! Rollups are declared in the config file (`[[rollup]]`, handed to
//! [`Rollups::start`]) or by `CREATE ROLLUP` (`sql.rs`, `ddl.rs`), which keeps them in
//! the engine's manifest; both kinds are on the [`RollupBoard`], the maintainer's list.

mod board;
pub(crate) mod ddl;
mod run;
pub mod sql;

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use board::{Origin, RollupBoard, RollupStatus};
pub use bulkhead_frontend::RollupConfig;

use crate::QueryEngine;
use crate::error::Result;

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

    /// The SQL computing it over the (quoted) column `col`.
    pub(crate) fn sql(self, col: &str) -> String {
        match self {
            Aggregate::First => format!("first_value({col} ORDER BY \"time\")"),
            Aggregate::Last => format!("last_value({col} ORDER BY \"time\")"),
            other => format!("{}({col})", other.name()),
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

/// One rollup: `CREATE ROLLUP name FROM source AGGREGATE ... EVERY every` in `database`.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupSpec {
    /// The rollup table's name (in `database`).
    pub name: String,
    pub database: String,
    /// The table aggregated (in `database`).
    pub source: String,
    pub aggregates: Vec<Aggregate>,
    /// Numeric fields to aggregate; empty = every numeric field of the source.
    pub fields: Vec<String>,
    /// Bucket width; buckets are aligned to the Unix epoch.
    pub every: Duration,
    /// How long after a bucket ends it is materialized (late rows within it count).
    pub grace_period: Duration,
    /// TTL of the rollup table; `None` keeps it forever.
    pub retention: Option<Duration>,
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

/// The running maintainer; dropping it (or [`Rollups::stop`]) stops it.
#[derive(Debug)]
pub struct Rollups {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Rollups {
    /// Start maintaining the config file's rollups `specs` and those declared by SQL
    /// (read back from the engine's manifest) on the `compact` runtime, and any
    /// declared from now on. A name declared both ways is an error, as is a stored
    /// rollup that cannot be read back: startup stops and says which.
    pub fn start(
        query: Arc<QueryEngine>,
        specs: Vec<RollupSpec>,
        config: RollupConfig,
    ) -> Result<Self> {
        validate_all(&specs).map_err(crate::QueryError::Plan)?;
        let stored = ddl::stored(query.engine())?;
        let mut all = specs.clone();
        for s in &stored {
            if specs
                .iter()
                .any(|c| c.qualified_name() == s.qualified_name())
            {
                return Err(crate::QueryError::Plan(format!(
                    "rollup `{}` is declared both in the config file ([[rollup]]) and by \
                     CREATE ROLLUP (kept in the manifest): remove the [[rollup]] entry, or \
                     start without it and DROP ROLLUP the other",
                    s.qualified_name()
                )));
            }
            ddl::check_with(&all, s).map_err(|e| {
                crate::QueryError::Plan(format!(
                    "rollup `{}` (declared by CREATE ROLLUP): {e}",
                    s.qualified_name()
                ))
            })?;
            all.push(s.clone());
        }
        let board = query.rollup_board();
        for s in &specs {
            board.register(s, Origin::Config);
        }
        for s in &stored {
            board.register(s, Origin::Sql);
        }
        let task = run::spawn(query, config)?;
        Ok(Self { task: Some(task) })
    }

    /// Stop the maintainer (before the engine closes). A bucket half written is
    /// re-run at the next start.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Rollups {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
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
