//! Delete by predicate: tombstones, their WAL record and manifest entries, and the
//! row filter every read, flush and compaction applies.
//!
//! A delete is a WAL record (so it is ordered with the writes around it) naming the
//! tables it applies to and a [`Tombstone`]: an inclusive time range and a predicate on
//! tag values. When the applier reaches it, the tombstone joins the tables' state and
//! is committed to the manifest (`AddTombstone`) before any later record is applied
//! and before the delete is acknowledged.
//!
//! A tombstone of sequence `s` deletes exactly the rows written before it: every data
//! source (memtable, SST) knows the highest sequence number of its rows, and the
//! tombstone applies to a source whose rows are all older (`max_seq < s`). Sources
//! never straddle a tombstone: [`crate::write::apply`] freezes an active memtable
//! before inserting a row newer than a tombstone its rows predate. A flush or a
//! compaction that merges sources removes the deleted rows of each source first, and
//! its output records, in [`crate::SstMeta::tombstones_applied`], the newest tombstone
//! it applied. A later write of a deleted key is newer than the tombstone, so it is
//! visible again.
//!
//! Compaction rewrites the SSTs a tombstone still applies to; once no SST and no
//! memtable does, the tombstone leaves the manifest (`RemoveTombstones`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, StringArray, TimestampNanosecondArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::memtable::{Memtable, TimeRange, merged_batch};
use crate::read::predicate::{TagPredicate, Tri};
use crate::schema::{TIME_COLUMN, TableSchema};
use crate::table::FrozenMemtable;

/// Which rows of a table a delete removes, by tag values. Evaluated with SQL's
/// three-valued logic: a row goes only if the predicate is TRUE for it (`host = 'a'`
/// keeps rows without a `host` tag; `host IS NULL` selects them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletePredicate {
    /// Every row in the time range.
    All,
    Eq(String, String),
    In(String, Vec<String>),
    IsNull(String),
    Not(Box<DeletePredicate>),
    And(Vec<DeletePredicate>),
    Or(Vec<DeletePredicate>),
}

impl DeletePredicate {
    /// The equivalent scan predicate (for evaluation).
    pub fn to_tag_predicate(&self) -> TagPredicate {
        match self {
            DeletePredicate::All => TagPredicate::And(Vec::new()),
            DeletePredicate::Eq(t, v) => TagPredicate::Eq(t.clone(), v.clone()),
            DeletePredicate::In(t, vs) => TagPredicate::In(t.clone(), vs.iter().cloned().collect()),
            DeletePredicate::IsNull(t) => TagPredicate::IsNull(t.clone()),
            DeletePredicate::Not(p) => TagPredicate::Not(Box::new(p.to_tag_predicate())),
            DeletePredicate::And(ps) => {
                TagPredicate::And(ps.iter().map(DeletePredicate::to_tag_predicate).collect())
            }
            DeletePredicate::Or(ps) => {
                TagPredicate::Or(ps.iter().map(DeletePredicate::to_tag_predicate).collect())
            }
        }
    }

    /// Tag names the predicate reads.
    fn tags<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            DeletePredicate::All => {}
            DeletePredicate::Eq(t, _) | DeletePredicate::In(t, _) | DeletePredicate::IsNull(t) => {
                out.push(t)
            }
            DeletePredicate::Not(p) => p.tags(out),
            DeletePredicate::And(ps) | DeletePredicate::Or(ps) => {
                ps.iter().for_each(|p| p.tags(out))
            }
        }
    }
}

/// A delete as it is logged and kept until compaction has applied it everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The delete's WAL sequence number: it removes rows of older records only.
    pub seq: u64,
    /// Inclusive time bounds (ns) of the rows it removes.
    pub min_time: i64,
    pub max_time: i64,
    pub predicate: DeletePredicate,
}

impl Tombstone {
    pub(crate) fn overlaps(&self, lo: i64, hi: i64) -> bool {
        self.min_time <= hi && lo <= self.max_time
    }

    /// Whether it removes rows of a source whose rows are from sequence numbers up to
    /// `source_seq` and times in `lo..=hi`.
    pub(crate) fn applies(&self, source_seq: u64, lo: i64, hi: i64) -> bool {
        self.seq > source_seq && self.overlaps(lo, hi)
    }
}

/// What [`crate::Engine::delete`] is asked to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    /// One table, or every table of the database (`None`).
    pub table: Option<String>,
    /// Inclusive time bounds (ns).
    pub min_time: i64,
    pub max_time: i64,
    pub predicate: DeletePredicate,
}

/// What a delete applied to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteSummary {
    /// The tables that got the tombstone.
    pub tables: Vec<String>,
}

/// The WAL record of a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeleteOp {
    pub(crate) db: String,
    pub(crate) tables: Vec<String>,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) predicate: DeletePredicate,
}

impl DeleteOp {
    pub(crate) fn tombstone(&self, seq: u64) -> Tombstone {
        Tombstone {
            seq,
            min_time: self.min_time,
            max_time: self.max_time,
            predicate: self.predicate.clone(),
        }
    }
}

/// The tombstones of `tombs` that apply to a source (see [`Tombstone::applies`]).
pub(crate) fn applicable(
    tombs: &[Arc<Tombstone>],
    source_seq: u64,
    lo: i64,
    hi: i64,
) -> Vec<Arc<Tombstone>> {
    tombs
        .iter()
        .filter(|t| t.applies(source_seq, lo, hi))
        .cloned()
        .collect()
}

/// Whether a tombstone lies between sequence numbers `after` (exclusive) and `upto`
/// (inclusive): rows of both sides must not share a memtable.
pub(crate) fn separates(tombs: &[Arc<Tombstone>], after: u64, upto: u64) -> bool {
    tombs.iter().any(|t| t.seq > after && t.seq <= upto)
}

/// The rows of `batch` that none of `tombs` removes. The batch must hold the tag
/// columns the predicates read (a missing tag column reads as unset) and `time`.
pub(crate) fn filter_batch(batch: &RecordBatch, tombs: &[Arc<Tombstone>]) -> Result<RecordBatch> {
    if tombs.is_empty() || batch.num_rows() == 0 {
        return Ok(batch.clone());
    }
    let times = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| Error::InvalidInput("batch without a time column".into()))?;
    let mut names: Vec<&str> = Vec::new();
    for t in tombs {
        t.predicate.tags(&mut names);
    }
    names.sort_unstable();
    names.dedup();
    let mut tags: HashMap<&str, StringArray> = HashMap::new();
    for name in names {
        if let Some(col) = batch.column_by_name(name) {
            let utf8 = cast(col, &DataType::Utf8)?;
            tags.insert(name, utf8.as_string::<i32>().clone());
        }
    }
    let preds: Vec<(&Tombstone, TagPredicate)> = tombs
        .iter()
        .map(|t| (t.as_ref(), t.predicate.to_tag_predicate()))
        .collect();
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|row| {
            let time = times.value(row);
            let value = |tag: &str| {
                tags.get(tag)
                    .and_then(|a| a.is_valid(row).then(|| a.value(row)))
            };
            let deleted = preds.iter().any(|(t, p)| {
                time >= t.min_time && time <= t.max_time && p.eval(&value) == Tri::TRUE
            });
            Some(!deleted)
        })
        .collect();
    if keep.true_count() == batch.num_rows() {
        return Ok(batch.clone());
    }
    Ok(arrow::compute::filter_record_batch(batch, &keep)?)
}

/// `parts` without the rows the tombstones remove: an affected part is replaced by a
/// filtered copy (same sequence bounds), the others are kept as they are. For flushes
/// and parking, which merge parts and must not let a deleted row through.
pub(crate) fn without_deleted(
    parts: &[Arc<FrozenMemtable>],
    tombs: &[Arc<Tombstone>],
    segment_nanos: i64,
) -> Result<Vec<Arc<FrozenMemtable>>> {
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let Some((lo, hi)) = p.mem.time_range() else {
            continue;
        };
        let tombs = applicable(tombs, p.mem.max_seq(), lo, hi);
        if tombs.is_empty() {
            out.push(Arc::clone(p));
            continue;
        }
        let mut mem = Memtable::default();
        if let Some(batch) = merged_batch(&[&p.mem], &p.schema, TimeRange::ALL, None)? {
            let kept = filter_batch(&batch, &tombs)?;
            if kept.num_rows() > 0 {
                mem.insert_batch(&p.schema, &kept, p.mem.max_seq(), segment_nanos)?;
            }
        }
        if !mem.is_empty() {
            out.push(Arc::new(FrozenMemtable::new(mem, Arc::clone(&p.schema))));
        }
    }
    Ok(out)
}

/// The newest tombstone's sequence number (0 if none).
pub(crate) fn newest(tombs: &[Arc<Tombstone>]) -> u64 {
    tombs.iter().map(|t| t.seq).max().unwrap_or(0)
}

/// Whether `schema` could hold rows that `pred` selects: a predicate on tags the table
/// does not have still deletes by time when it is satisfied by unset tags.
pub(crate) fn check(schema: &TableSchema, pred: &DeletePredicate) -> Result<()> {
    let mut names = Vec::new();
    pred.tags(&mut names);
    for n in names {
        if schema.field(n).is_some() {
            return Err(Error::InvalidInput(format!(
                "a delete predicate may only test tags; `{n}` is a field"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Float64Array};
    use arrow::datatypes::{Field, Int32Type, Schema, TimeUnit};

    fn batch() -> RecordBatch {
        let host: DictionaryArray<Int32Type> = vec![Some("a"), Some("b"), None, Some("a")]
            .into_iter()
            .collect();
        let schema = Schema::new(vec![
            Field::new(
                "host",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("v", DataType::Float64, true),
            Field::new(
                TIME_COLUMN,
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(host),
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0])),
                Arc::new(TimestampNanosecondArray::from(vec![10, 20, 30, 40]).with_timezone("UTC")),
            ],
        )
        .unwrap()
    }

    fn tomb(lo: i64, hi: i64, p: DeletePredicate) -> Arc<Tombstone> {
        Arc::new(Tombstone {
            seq: 9,
            min_time: lo,
            max_time: hi,
            predicate: p,
        })
    }

    fn kept(tombs: &[Arc<Tombstone>]) -> Vec<f64> {
        let b = filter_batch(&batch(), tombs).unwrap();
        b.column_by_name("v")
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    #[test]
    fn rows_go_only_where_the_predicate_is_true_and_in_range() {
        let eq = |v: &str| DeletePredicate::Eq("host".into(), v.into());
        assert_eq!(kept(&[tomb(0, 100, eq("a"))]), vec![2.0, 3.0]);
        assert_eq!(kept(&[tomb(0, 35, eq("a"))]), vec![2.0, 3.0, 4.0]);
        // NOT (host = 'a') is NULL for the row without a host: it stays.
        assert_eq!(
            kept(&[tomb(0, 100, DeletePredicate::Not(Box::new(eq("a"))))]),
            vec![1.0, 3.0, 4.0]
        );
        assert_eq!(
            kept(&[tomb(0, 100, DeletePredicate::IsNull("host".into()))]),
            vec![1.0, 2.0, 4.0]
        );
        assert_eq!(kept(&[tomb(15, 35, DeletePredicate::All)]), vec![1.0, 4.0]);
        // A tag the batch does not have is unset.
        assert_eq!(
            kept(&[tomb(0, 100, DeletePredicate::Eq("dc".into(), "x".into()))]),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        let or = DeletePredicate::Or(vec![eq("b"), DeletePredicate::IsNull("host".into())]);
        assert_eq!(kept(&[tomb(0, 100, or)]), vec![1.0, 4.0]);
        let in_ = DeletePredicate::In("host".into(), vec!["a".into(), "b".into()]);
        assert_eq!(kept(&[tomb(0, 100, in_)]), vec![3.0]);
        assert_eq!(
            kept(&[tomb(0, 15, eq("a")), tomb(25, 100, DeletePredicate::All)]),
            vec![2.0]
        );
    }

    #[test]
    fn applies_only_to_older_overlapping_sources() {
        let t = tomb(10, 20, DeletePredicate::All);
        assert!(t.applies(8, 0, 10));
        assert!(!t.applies(9, 0, 10));
        assert!(!t.applies(8, 21, 30));
        assert!(separates(&[t], 8, 9));
    }
}
