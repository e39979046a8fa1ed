//! Catalog limits that protect the server from unbounded cardinality: databases,
//! tables per database, columns per table and series per table. A write that would
//! pass one is refused whole with [`Error::LimitExceeded`], which names the limit and
//! its value; nothing of it is applied. Limits apply to new writes only: a WAL replay
//! never fails on them, and data already stored beyond a lowered limit stays.
//!
//! Series are counted per table as a set of 64-bit hashes of the sorted tag set
//! (collisions can only undercount). The set of a table that exists when the engine
//! opens is filled on its first write from a `last_per_series` scan (one row per
//! series, from the SSTs' last-row metadata), before the write takes `schema_lock`.
//! Checked writes add their series under `schema_lock`, so every series is in the set
//! or in the scan's snapshot.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::core::EngineCore;
use crate::error::{Error, Result};
use crate::memtable::TimeRange;
use crate::model::{Row, WriteBatch};
use crate::read::ScanRequest;

/// The limits (0 = no limit): the catalog keys of the server's `[limits]` section, where
/// they are flattened next to the server's own limits (so this struct does not deny
/// unknown keys; the server's section does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CatalogLimits {
    pub max_databases: usize,
    pub max_tables_per_database: usize,
    /// Tags plus fields.
    pub max_columns_per_table: usize,
    pub max_series_per_table: usize,
}

impl Default for CatalogLimits {
    fn default() -> Self {
        Self {
            max_databases: 1_000,
            max_tables_per_database: 100_000,
            max_columns_per_table: 2_000,
            max_series_per_table: 1_000_000,
        }
    }
}

/// One table's known series.
#[derive(Debug, Default)]
pub(crate) struct SeriesSet {
    hashes: HashSet<u64>,
    /// Holds every stored series (not just those written since the engine opened).
    complete: bool,
}

/// Series sets by (db, table).
pub(crate) type SeriesSets = crate::sync::Mutex<HashMap<(String, String), SeriesSet>>;

fn series_hash(row: &Row) -> u64 {
    let mut tags: Vec<(&str, &str)> = row
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    tags.sort_unstable();
    let mut h = foldhash::quality::FixedState::with_seed(0x6c69_6d69_7473).build_hasher();
    for (k, v) in tags {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xfe);
    }
    h.finish()
}

/// Before `schema_lock`: fill the series sets of the batch's existing tables that the
/// engine has not counted yet.
pub(crate) async fn load_series(engine: &EngineCore, db: &str, batch: &WriteBatch) -> Result<()> {
    if engine.config.limits.max_series_per_table == 0 {
        return Ok(());
    }
    for t in &batch.tables {
        ensure_series(engine, db, &t.table).await?;
    }
    Ok(())
}

/// Fill the series set of `db.table` if it is not complete yet (a missing table has
/// nothing to count: its set starts complete when a checked write creates it).
async fn ensure_series(engine: &EngineCore, db: &str, table: &str) -> Result<()> {
    let key = (db.to_string(), table.to_string());
    if engine.series.lock().get(&key).is_some_and(|s| s.complete) {
        return Ok(());
    }
    let found = scan_series(engine, db, table).await?;
    let mut sets = engine.series.lock();
    let set = sets.entry(key).or_default();
    set.hashes.extend(found);
    set.complete = true;
    Ok(())
}

/// Distinct series (tag sets) of `db.table` (0 if it does not exist). Counted from
/// the series set the limit keeps, or by a scan of each series' latest row when
/// `max_series_per_table` is off.
pub(crate) async fn series_count(engine: &EngineCore, db: &str, table: &str) -> Result<usize> {
    if engine.config.limits.max_series_per_table == 0 {
        return Ok(scan_series(engine, db, table).await?.len());
    }
    ensure_series(engine, db, table).await?;
    Ok(engine
        .series
        .lock()
        .get(&(db.to_string(), table.to_string()))
        .map_or(0, |s| s.hashes.len()))
}

/// The series of `db.table`, by a `last_per_series` scan (SSTs' last-row metadata).
async fn scan_series(engine: &EngineCore, db: &str, table: &str) -> Result<HashSet<u64>> {
    let mut found = HashSet::new();
    {
        let Some(schema) = engine.table_schema(db, table) else {
            return Ok(found);
        };
        let tags: Vec<String> = schema
            .fields()
            .iter()
            .filter(|f| {
                f.metadata()
                    .get(crate::schema::ROLE_KEY)
                    .map(String::as_str)
                    == Some("tag")
            })
            .map(|f| f.name().clone())
            .collect();
        let snap = engine.snapshot(db, table, TimeRange::ALL)?;
        let batches: Vec<_> = snap
            .scan(ScanRequest {
                last_per_series: true,
                projection: Some(tags.clone()),
                ..Default::default()
            })
            .try_collect()
            .await?;
        for b in &batches {
            let cols: Vec<(String, arrow::array::ArrayRef)> = tags
                .iter()
                .filter_map(|n| {
                    let c = b.column_by_name(n)?;
                    Some((
                        n.clone(),
                        arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).ok()?,
                    ))
                })
                .collect();
            for i in 0..b.num_rows() {
                let mut row = Row {
                    tags: Vec::new(),
                    fields: Vec::new(),
                    time: 0,
                };
                for (name, col) in &cols {
                    use arrow::array::{Array, AsArray};
                    let s = col.as_string::<i32>();
                    if s.is_valid(i) {
                        row.tags.push((name.as_str().into(), s.value(i).into()));
                    }
                }
                found.insert(series_hash(&row));
            }
        }
    }
    Ok(found)
}

/// The catalog limits, as named in config and errors.
pub(crate) const NAMES: [&str; 4] = [
    "max_databases",
    "max_tables_per_database",
    "max_columns_per_table",
    "max_series_per_table",
];

/// Count a write refused by `err`'s catalog limit, if it is one.
pub(crate) fn count(engine: &EngineCore, err: &Error) {
    if let Error::LimitExceeded { limit, .. } = err
        && let Some(i) = NAMES.iter().position(|n| n == limit)
    {
        engine.counters.limit_rejections[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(crate) fn exceeded(limit: &'static str, value: usize, what: String) -> Error {
    Error::LimitExceeded { limit, value, what }
}

/// The series hashes of each table of `batch` (distinct, in no order), computed before
/// `schema_lock` so the lock only looks them up. Empty when the series limit is off.
pub(crate) fn batch_series(engine: &EngineCore, batch: &WriteBatch) -> Vec<Vec<u64>> {
    if engine.config.limits.max_series_per_table == 0 {
        return Vec::new();
    }
    batch
        .tables
        .iter()
        .map(|t| {
            let mut hashes: Vec<u64> = t.rows.iter().map(series_hash).collect();
            hashes.sort_unstable();
            hashes.dedup();
            hashes
        })
        .collect()
}

/// Under `schema_lock`, before the batch's schemas evolve: refuse the batch if it
/// would pass a limit (columns are checked by `write::evolve_schemas`, which already
/// knows which are new); otherwise count its series (`series`: from [`batch_series`]).
pub(crate) fn check(
    engine: &EngineCore,
    db: &str,
    batch: &WriteBatch,
    series: &[Vec<u64>],
) -> Result<()> {
    let l = &engine.config.limits;
    let (db_exists, n_dbs, mut n_tables) = {
        let cat = engine.catalog.read();
        (
            cat.contains_key(db),
            cat.len(),
            cat.get(db).map_or(0, |d| d.len()),
        )
    };
    if !db_exists && l.max_databases > 0 && n_dbs >= l.max_databases {
        return Err(exceeded(
            "max_databases",
            l.max_databases,
            format!("{n_dbs} databases exist; `{db}` would be a new one"),
        ));
    }
    let mut new_series: HashMap<&str, HashSet<u64>> = HashMap::new();
    let mut seen_new_tables: Vec<&str> = Vec::new();
    for (i, t) in batch.tables.iter().enumerate() {
        if t.rows.is_empty() {
            continue;
        }
        let schema = engine
            .table(db, &t.table)
            .map(|tb| std::sync::Arc::clone(&tb.state.lock().schema));
        if schema.is_none() && !seen_new_tables.contains(&t.table.as_str()) {
            if l.max_tables_per_database > 0 && n_tables >= l.max_tables_per_database {
                return Err(exceeded(
                    "max_tables_per_database",
                    l.max_tables_per_database,
                    format!(
                        "`{db}` has {n_tables} tables; `{}` would be a new one",
                        t.table
                    ),
                ));
            }
            n_tables += 1;
            seen_new_tables.push(&t.table);
        }
        if l.max_series_per_table > 0 {
            let sets = engine.series.lock();
            let known = sets.get(&(db.to_string(), t.table.clone()));
            let fresh = new_series.entry(t.table.as_str()).or_default();
            for h in series.get(i).into_iter().flatten() {
                if !known.is_some_and(|k| k.hashes.contains(h)) {
                    fresh.insert(*h);
                }
            }
            let counted = known.map_or(0, |k| k.hashes.len());
            // Only a complete set can prove the table full.
            let complete = known.is_some_and(|k| k.complete) || schema.is_none();
            if complete && !fresh.is_empty() && counted + fresh.len() > l.max_series_per_table {
                return Err(exceeded(
                    "max_series_per_table",
                    l.max_series_per_table,
                    format!(
                        "`{db}.{}` has {counted} series; this write adds {} new ones",
                        t.table,
                        fresh.len()
                    ),
                ));
            }
        }
    }
    if !new_series.is_empty() {
        let mut sets = engine.series.lock();
        for (table, fresh) in new_series {
            let set = sets.entry((db.to_string(), table.to_string())).or_default();
            if set.hashes.is_empty() && !set.complete && engine.table(db, table).is_none() {
                set.complete = true;
            }
            set.hashes.extend(fresh);
        }
    }
    Ok(())
}

/// A dropped table's series no longer count.
pub(crate) fn forget(engine: &EngineCore, db: &str, tables: &[String]) {
    let mut sets = engine.series.lock();
    for t in tables {
        sets.remove(&(db.to_string(), t.clone()));
    }
}
