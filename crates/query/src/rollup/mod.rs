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

use std::sync::Arc;

pub use board::{Origin, RollupBoard, RollupStatus};
pub use bulkhead_frontend::rollup::{
    Aggregate, DEFAULT_GRACE_PERIOD, RollupConfig, RollupSpec, validate_all,
};

use crate::QueryEngine;
use crate::error::Result;

/// The SQL computing `aggregate` over the (quoted) column `col`.
pub(crate) fn aggregate_sql(aggregate: Aggregate, col: &str) -> String {
    match aggregate {
        Aggregate::First => format!("first_value({col} ORDER BY \"time\")"),
        Aggregate::Last => format!("last_value({col} ORDER BY \"time\")"),
        other => format!("{}({col})", other.name()),
    }
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
