//! Watches on one table's changes, for a layer above that keeps data derived from it
//! (the rollup maintainer of `bulkhead-query`):
//!
//! - **late writes**: the time range of rows written below the watch's threshold (the
//!   derived data is complete up to there), recorded on the write path before the write
//!   is acknowledged, in memory. The cost on ingest is one map lookup per table write
//!   while any watch exists, and one comparison per batch of a watched table.
//! - **deletes**: each delete of the table sets the manifest property
//!   `{prefix}{seq}` = `{min_time}:{max_time}` in the same manifest edit that commits
//!   its tombstone, so a watcher learns of it durably, even after compaction has
//!   applied the tombstone and dropped it. The watcher removes the property when done.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};

use crate::sync::{Mutex, RwLock};

use crate::manifest::Action;

/// One watch on `db.table`, from [`crate::Engine::watch`]; dropping it ends it.
#[derive(Debug)]
pub struct TableWatch {
    /// Rows with a time below this are recorded as late.
    threshold: AtomicI64,
    /// (min, max) time of the late rows written since the last [`Self::take_late`].
    late: Mutex<Option<(i64, i64)>>,
    /// Prefix of the property each delete of the table sets.
    delete_prefix: String,
}

impl TableWatch {
    /// Record rows written from now on whose time is below `t` (raised only: a lower
    /// `t` than the current threshold is ignored).
    pub fn raise_threshold(&self, t: i64) {
        self.threshold.fetch_max(t, Ordering::SeqCst);
    }

    /// The (min, max) time of the late rows written since the last call, and forget
    /// them; `None` if there were none. Those rows are visible to reads by then.
    pub fn take_late(&self) -> Option<(i64, i64)> {
        self.late.lock().take()
    }

    /// Record late rows in `[min, max]` (also: give back what [`Self::take_late`] took
    /// when handling it failed).
    pub fn record_late(&self, min: i64, max: i64) {
        let mut late = self.late.lock();
        *late = Some(match *late {
            Some((a, b)) => (a.min(min), b.max(max)),
            None => (min, max),
        });
    }

    /// The prefix of the manifest properties the table's deletes set.
    pub fn delete_prefix(&self) -> &str {
        &self.delete_prefix
    }

    /// A batch with rows in `[min, max]` was applied: record its rows below the
    /// threshold (their range is clamped to it).
    fn written(&self, min: i64, max: i64) {
        let threshold = self.threshold.load(Ordering::SeqCst);
        if min < threshold {
            self.record_late(min, max.min(threshold - 1));
        }
    }
}

/// `(seq, min_time, max_time)` of a delete property's key (after the prefix) and value.
pub fn parse_delete_mark(key_suffix: &str, value: &str) -> Option<(u64, i64, i64)> {
    let (min, max) = value.split_once(':')?;
    Some((
        key_suffix.parse().ok()?,
        min.parse().ok()?,
        max.parse().ok()?,
    ))
}

/// Watches by table name, within one database.
type TableWatches = HashMap<String, Vec<Weak<TableWatch>>>;

/// The engine's watches by database and table.
#[derive(Debug, Default)]
pub(crate) struct Watches {
    /// Whether any watch was ever made: the write path skips the lookup until then.
    any: AtomicBool,
    map: RwLock<HashMap<String, TableWatches>>,
}

impl Watches {
    pub(crate) fn watch(&self, db: &str, table: &str, delete_prefix: String) -> Arc<TableWatch> {
        let watch = Arc::new(TableWatch {
            threshold: AtomicI64::new(i64::MIN),
            late: Mutex::new(None),
            delete_prefix,
        });
        let mut map = self.map.write();
        let list = map
            .entry(db.to_string())
            .or_default()
            .entry(table.to_string())
            .or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&watch));
        self.any.store(true, Ordering::SeqCst);
        watch
    }

    fn each(&self, db: &str, table: &str, mut f: impl FnMut(&TableWatch)) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        let map = self.map.read();
        if let Some(list) = map.get(db).and_then(|d| d.get(table)) {
            for w in list.iter().filter_map(Weak::upgrade) {
                f(&w);
            }
        }
    }

    /// Rows of `rows` (times) were applied to `db.table`: tell its watches.
    pub(crate) fn written(&self, db: &str, table: &str, rows: &[crate::model::Row]) {
        let mut range = None;
        self.each(db, table, |w| {
            let (min, max) = *range.get_or_insert_with(|| {
                rows.iter().fold((i64::MAX, i64::MIN), |(a, b), r| {
                    (a.min(r.time), b.max(r.time))
                })
            });
            if min <= max {
                w.written(min, max);
            }
        });
    }

    /// The properties the delete `tomb` of `db.table` sets for the table's watches, to
    /// commit with the tombstone.
    pub(crate) fn delete_actions(
        &self,
        db: &str,
        table: &str,
        tomb: &crate::delete::Tombstone,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        self.each(db, table, |w| {
            out.push(Action::SetProperty {
                key: format!("{}{}", w.delete_prefix, tomb.seq),
                value: Some(format!("{}:{}", tomb.min_time, tomb.max_time)),
            });
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_rows_below_the_threshold_are_recorded_and_taken_once() {
        let watches = Watches::default();
        let w = watches.watch("db", "cpu", "p/".into());
        let row = |time| crate::model::Row {
            tags: Vec::new(),
            fields: Vec::new(),
            time,
        };
        watches.written("db", "cpu", &[row(5)]);
        assert_eq!(w.take_late(), None, "no threshold yet");
        w.raise_threshold(100);
        w.raise_threshold(50); // never lowered
        watches.written("db", "cpu", &[row(150), row(120)]);
        watches.written("db", "other", &[row(1)]);
        assert_eq!(w.take_late(), None);
        watches.written("db", "cpu", &[row(150), row(70)]);
        watches.written("db", "cpu", &[row(30)]);
        assert_eq!(w.take_late(), Some((30, 99)));
        assert_eq!(w.take_late(), None);
        drop(w);
        watches.written("db", "cpu", &[row(1)]); // a dropped watch is skipped
        assert_eq!(parse_delete_mark("7", "-5:10"), Some((7, -5, 10)));
        assert_eq!(parse_delete_mark("x", "1:2"), None);
    }
}
