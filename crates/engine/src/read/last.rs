//! The latest row of every series ("lastpoint"), without scanning history.
//!
//! A scan with [`super::ScanRequest::last_per_series`] returns, for every series with
//! rows in range, exactly the row a full scan would return at that series' greatest
//! time: the same key merged field by field across sources (newer wins). Sources are
//! visited newest time first. Each yields its candidates, its last row per series in
//! range: an SST whose time span the range covers reads only the last row of each
//! series' run: from the last rows kept in its metadata (`sst/last_rows.rs`, no data
//! page read), or by selecting those rows through its series index for files written
//! before; other sources are read in range and reduced.
//! An SST is skipped when every series its index lists (and the tag predicate admits)
//! already has a candidate newer than the SST's newest row, so a lastpoint over a day
//! of compacted segments opens one SST. The candidates of a series at its greatest
//! time include every version of that key (any source holding the key has it as its
//! last row in range), so merging the candidates gives the full scan's row.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampNanosecondArray, UInt32Array};
use arrow::compute::{cast, concat_batches, take_record_batch};
use arrow::datatypes::DataType;

use super::metrics::ScanMetrics;
use super::{ScanCtx, Source, align};
use crate::error::{Error, Result};
use crate::memtable::Memtable;
use crate::schema::TIME_COLUMN;
use crate::sst::reader;
use crate::sst::series_index::{HashedKey, series_key};

/// A series: [`series_key`] over the table's tags, in the table's tag order.
type Key = HashedKey;

/// Hash maps keyed by series (each key's hash is computed once, see [`HashedKey`]).
type Map<V> = foldhash::HashMap<Key, V>;

impl ScanCtx {
    /// The rows of `meta` in range (`rows`: exactly those file rows), with `columns`.
    async fn read_sst(
        &self,
        meta: &crate::sst::SstMeta,
        columns: &[String],
        rows: Option<Vec<std::ops::Range<usize>>>,
    ) -> Result<Vec<RecordBatch>> {
        let want = reader::Want {
            rows,
            ..self.sst_want(Some(columns))
        };
        reader::read(&self.store, meta, &self.cache, want).await
    }
}

/// The latest row of each series of some batches, and each series' key and time.
type Latest = (RecordBatch, Vec<(Key, i64)>);

impl ScanCtx {
    /// The latest row of every series in `sources` (oldest source first), projected to
    /// the scan's columns.
    pub(super) async fn last_rows(&self, sources: Vec<Source>) -> Result<Vec<RecordBatch>> {
        // The merge needs the primary key (every tag, time) and the wanted fields.
        let mut columns: Vec<String> = match &self.projection {
            Some(p) => p.clone(),
            None => self
                .schema
                .arrow_schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
        };
        for c in self
            .schema
            .tags
            .iter()
            .map(String::as_str)
            .chain([TIME_COLUMN])
        {
            if !columns.iter().any(|x| x == c) {
                columns.push(c.to_string());
            }
        }
        let merge_schema = self.schema.projected_schema(Some(&columns));

        let mut order: Vec<usize> = (0..sources.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(sources[i].bounds().1));
        // Greatest candidate time per series so far.
        let mut best: Map<i64> = Map::default();
        let mut candidates: Vec<(usize, RecordBatch)> = Vec::new();
        for i in order {
            let batches = match &sources[i] {
                // Deletes apply to this file: its last rows may be deleted ones, so it
                // is read in range without them.
                Source::Sst(_) if !self.tombstones_for(&sources[i]).is_empty() => {
                    self.load(&sources[i], Some(&columns)).await?
                }
                Source::Sst(f) => {
                    let meta = f.meta();
                    let opened =
                        reader::open(&self.store, meta, &self.cache, &self.metrics).await?;
                    match &opened.index {
                        Some(ix) => {
                            let keys = ix.keys(&self.schema.tags);
                            let series = ix.last_rows(self.tag_predicate.as_ref());
                            // Nothing here can be the latest row of its series.
                            if series.iter().all(|(s, _)| {
                                best.get(&keys[*s]).is_some_and(|t| *t > meta.max_time)
                            }) {
                                continue;
                            }
                            // The range keeps the whole file: each series' last row is
                            // its latest in range.
                            let whole = self.range.start <= meta.min_time
                                && self.range.last >= meta.max_time;
                            let kept = opened.last_rows.as_ref().filter(|_| self.use_last_rows);
                            if whole && let Some(last) = kept {
                                // Kept in the file's metadata: no page is read. One row
                                // per series, whose keys the index has.
                                let runs = UInt32Array::from_iter_values(
                                    series.iter().map(|(s, _)| *s as u32),
                                );
                                let rows = align(&take_record_batch(last, &runs)?, &merge_schema)?;
                                ScanMetrics::add(&self.metrics.last_rows, rows.num_rows());
                                let times = time_column(&rows)?;
                                for ((s, _), t) in series.iter().zip(times.values()) {
                                    let e = best.entry(keys[*s].clone()).or_insert(*t);
                                    *e = (*e).max(*t);
                                }
                                candidates.push((i, rows));
                                continue;
                            } else if whole {
                                let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
                                for (_, row) in &series {
                                    match ranges.last_mut() {
                                        Some(last) if last.end == *row => last.end = row + 1,
                                        _ => ranges.push(*row..row + 1),
                                    }
                                }
                                self.read_sst(meta, &columns, Some(ranges)).await?
                            } else {
                                self.read_sst(meta, &columns, None).await?
                            }
                        }
                        None => self.read_sst(meta, &columns, None).await?,
                    }
                }
                Source::Mem(..) => self.load(&sources[i], Some(&columns)).await?,
            };
            let batches: Vec<RecordBatch> = batches
                .iter()
                .map(|b| align(b, &merge_schema))
                .collect::<Result<_>>()?;
            let Some(latest) = latest_per_series(&batches, &self.schema.tags)? else {
                continue;
            };
            let (batch, keys) = latest;
            for (key, t) in keys {
                let e = best.entry(key).or_insert(t);
                *e = (*e).max(t);
            }
            candidates.push((i, batch));
        }
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        if let [(_, only)] = candidates.as_slice() {
            // One source: its rows are deduplicated already, nothing to merge.
            return self.per_group(only.clone());
        }
        // Merge the candidates like overlapping sources (newer source wins field by
        // field), then keep each series' latest row.
        candidates.sort_by_key(|(i, _)| *i);
        let mut merged = Memtable::default();
        for (i, batch) in &candidates {
            merged.insert_batch(&self.schema, batch, *i as u64 + 1, self.segment_nanos)?;
        }
        let Some(all) = merged.to_batch(&self.schema, self.range, Some(&columns))? else {
            return Ok(Vec::new());
        };
        let all = align(&all, &merge_schema)?;
        match latest_per_series(std::slice::from_ref(&all), &self.schema.tags)? {
            Some((batch, _)) => self.per_group(batch),
            None => Ok(Vec::new()),
        }
    }

    /// The latest row of each series (`batch`, with every tag and time) as the scan's
    /// output: reduced to each group's latest with [`super::ScanRequest::last_per_group`].
    fn per_group(&self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let batch = match &self.last_per_group {
            Some(group) => {
                if let Some(t) = group.iter().find(|t| !self.schema.tags.contains(t)) {
                    return Err(Error::InvalidInput(format!(
                        "last_per_group: {t} is not a tag of the table"
                    )));
                }
                if one_row_per_group(&batch, group)? {
                    batch // each series is a group of its own: nothing to reduce
                } else {
                    match latest_per_series(std::slice::from_ref(&batch), group)? {
                        Some((batch, _)) => batch,
                        None => return Ok(Vec::new()),
                    }
                }
            }
            None => batch,
        };
        Ok(vec![align(&batch, &self.out_schema)?])
    }
}

/// The columns `tags` of `batch` as plain strings (dictionary-encoded tags decoded).
fn tag_strings(batch: &RecordBatch, tags: &[String]) -> Result<Vec<ArrayRef>> {
    tags.iter()
        .map(|t| {
            let c = batch
                .column_by_name(t)
                .ok_or_else(|| Error::InvalidInput(format!("batch without tag column {t}")))?;
            Ok(cast(c, &DataType::Utf8)?)
        })
        .collect()
}

/// Whether no two rows of `batch` share their values of `group` (NULL equal to NULL),
/// so reducing it to each group's latest row would keep every row. A lastpoint grouped
/// by a tag that names the series (`GROUP BY hostname`) is, and then costs one hash set
/// instead of a series key per row.
fn one_row_per_group(batch: &RecordBatch, group: &[String]) -> Result<bool> {
    let columns = tag_strings(batch, group)?;
    let strings: Vec<_> = columns.iter().map(|c| c.as_string::<i32>()).collect();
    let rows = batch.num_rows();
    fn value(c: &arrow::array::StringArray, row: usize) -> Option<&str> {
        c.is_valid(row).then(|| c.value(row))
    }
    Ok(match strings.as_slice() {
        [one] => {
            let mut seen = foldhash::HashSet::with_capacity_and_hasher(rows, Default::default());
            (0..rows).all(|r| seen.insert(value(one, r)))
        }
        many => {
            let mut seen = foldhash::HashSet::with_capacity_and_hasher(rows, Default::default());
            (0..rows).all(|r| seen.insert(many.iter().map(|c| value(c, r)).collect::<Vec<_>>()))
        }
    })
}

/// The row with the greatest time of each series in `batches` (which share a schema
/// holding every tag of `tags` and `time`; a series is its values of `tags`), and each
/// series' key and time. On a tie the first such row is kept.
fn latest_per_series(batches: &[RecordBatch], tags: &[String]) -> Result<Option<Latest>> {
    let batches: Vec<&RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let batch = concat_batches(&first.schema(), batches.iter().copied())?;
    let times = time_column(&batch)?;
    let tag_cols = tag_strings(&batch, tags)?;
    let strings: Vec<_> = tag_cols.iter().map(|c| c.as_string::<i32>()).collect();
    let key_of = |row: usize| -> Key {
        HashedKey::new(series_key(
            strings
                .iter()
                .map(|c| c.is_valid(row).then(|| c.value(row))),
        ))
    };
    let same_series = |a: usize, b: usize| {
        strings
            .iter()
            .all(|c| c.is_valid(a) == c.is_valid(b) && (!c.is_valid(a) || c.value(a) == c.value(b)))
    };
    // Rows of a series are usually contiguous: a key is built once per run.
    let mut latest: Map<(i64, u32)> = Map::default();
    let mut row = 0;
    while row < batch.num_rows() {
        let mut end = row + 1;
        while end < batch.num_rows() && same_series(row, end) {
            end += 1;
        }
        let (mut t, mut at) = (times.value(row), row);
        for r in row + 1..end {
            if times.value(r) > t {
                (t, at) = (times.value(r), r);
            }
        }
        latest
            .entry(key_of(row))
            .and_modify(|e| {
                if t > e.0 {
                    *e = (t, at as u32);
                }
            })
            .or_insert((t, at as u32));
        row = end;
    }
    let mut picked: Vec<(Key, i64, u32)> =
        latest.into_iter().map(|(k, (t, r))| (k, t, r)).collect();
    picked.sort_by_key(|(_, _, r)| *r);
    let indices = UInt32Array::from_iter_values(picked.iter().map(|(_, _, r)| *r));
    let out = take_record_batch(&batch, &indices)?;
    Ok(Some((
        out,
        picked.into_iter().map(|(k, t, _)| (k, t)).collect(),
    )))
}

/// The time column of a batch of the table.
fn time_column(batch: &RecordBatch) -> Result<&TimestampNanosecondArray> {
    batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| Error::InvalidInput("batch without a time column".into()))
}
