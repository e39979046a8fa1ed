//! [`RollupConfig`]: how the rollup maintainer (in `bulkhead-query`) runs, declared here
//! so the server's config file can embed it, since the server never depends on the query
//! layer.

use std::time::Duration;

use bulkhead_runtime::units;
use serde::{Deserialize, Serialize};

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
