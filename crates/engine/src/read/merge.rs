//! A streaming k-way merge of overlapping sources on the sort key (tags in name order,
//! nulls first; then time), with the same newer-wins-field-by-field result as a write
//! of the same key: the newest source that has a value for a field gives it.
//!
//! Every source (an SST or a memtable slice) is sorted on that key and holds each key
//! once. The [`Merger`] holds one batch per source at a time (its *head*) and emits the
//! rows of the source with the smallest key in runs, up to the next smallest key of the
//! other sources, found by binary search. Only a key held by several sources is merged
//! row by row. Memory is one batch per source plus the batch being built, whatever the
//! size of the sources.
//!
//! [`merged_stream`] drives it over async batch streams. Only rows whose time is covered
//! by two or more sources can share a key (`contested`), so the rest of each batch is
//! handed out as it arrives and only the contested rows are merged.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::compute::{SortOptions, interleave};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use futures::stream::{self, BoxStream, StreamExt};

use super::reader::BATCH_ROWS;
use crate::error::{Error, Result};
use crate::schema::{TIME_COLUMN, TableSchema};

/// One source's current batch.
struct Head {
    /// Index of the batch in [`Merger::arena`].
    batch: usize,
    keys: Rows,
    pos: usize,
}

impl Head {
    fn remaining(&self) -> usize {
        self.keys.num_rows() - self.pos
    }
}

/// A source of the merge: its head, whether it has ended, and its last key (to check
/// that it really is sorted).
#[derive(Default)]
struct Input {
    head: Option<Head>,
    ended: bool,
    last: Option<Box<[u8]>>,
}

/// The k-way merge of sorted, deduplicated batches from several sources. Sources are
/// numbered oldest first: on a key held by several, the highest-numbered source with a
/// value for a field gives that field.
pub(crate) struct Merger {
    schema: SchemaRef,
    converter: RowConverter,
    /// Positions of the sort-key columns in `schema`: tags in name order, then time.
    key_columns: Vec<usize>,
    /// Positions of the other columns (fields), merged field by field on a tie.
    field_columns: Vec<usize>,
    inputs: Vec<Input>,
    /// The batches the output being built refers to.
    arena: Vec<RecordBatch>,
    /// The output's rows: (arena batch, row) for every column ...
    rows: Vec<(usize, usize)>,
    /// ... except these: (output row, column, (arena batch, row)) for fields that an
    /// older source gave on a tie.
    overrides: Vec<(usize, usize, (usize, usize))>,
}

impl Merger {
    /// A merge of `sources` inputs whose batches have `schema` (which must hold every
    /// tag of `table` and `time`).
    pub(crate) fn new(table: &TableSchema, schema: SchemaRef, sources: usize) -> Result<Self> {
        let mut key_columns = Vec::new();
        for id in table.sorted_tag_ids() {
            let name = &table.tags[id as usize];
            key_columns.push(schema.index_of(name)?);
        }
        key_columns.push(schema.index_of(TIME_COLUMN)?);
        let field_columns = (0..schema.fields().len())
            .filter(|i| !key_columns.contains(i))
            .collect();
        let options = SortOptions {
            descending: false,
            nulls_first: true,
        };
        let converter = RowConverter::new(
            key_columns
                .iter()
                .map(|&i| SortField::new_with_options(schema.field(i).data_type().clone(), options))
                .collect(),
        )?;
        Ok(Self {
            schema,
            converter,
            key_columns,
            field_columns,
            inputs: (0..sources).map(|_| Input::default()).collect(),
            arena: Vec::new(),
            rows: Vec::new(),
            overrides: Vec::new(),
        })
    }

    /// A source that must be given its next batch ([`Self::push`]) or be ended
    /// ([`Self::end`]) before the merge can go on.
    pub(crate) fn wants(&self) -> Option<usize> {
        self.inputs
            .iter()
            .position(|i| i.head.is_none() && !i.ended)
    }

    /// Whether every source has ended and every row has been handed out.
    pub(crate) fn is_done(&self) -> bool {
        self.inputs.iter().all(|i| i.ended && i.head.is_none()) && self.rows.is_empty()
    }

    /// The next batch of source `input` (in `schema`, sorted, each key once, following
    /// its previous batch). An empty batch is ignored.
    pub(crate) fn push(&mut self, input: usize, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        let keys = self.converter.convert_columns(&columns)?;
        let src = &mut self.inputs[input];
        let mut prev = src.last.as_deref();
        for k in keys.iter() {
            if prev.is_some_and(|p| p >= k.data()) {
                return Err(Error::Arrow(ArrowError::ComputeError(format!(
                    "merge input {input} is not sorted by series and time, or repeats a key"
                ))));
            }
            prev = Some(k.data());
        }
        src.last = Some(keys.row(keys.num_rows() - 1).data().into());
        self.arena.push(batch);
        src.head = Some(Head {
            batch: self.arena.len() - 1,
            keys,
            pos: 0,
        });
        Ok(())
    }

    /// Source `input` has no more batches.
    pub(crate) fn end(&mut self, input: usize) {
        self.inputs[input].ended = true;
    }

    /// Merge until a batch of about [`BATCH_ROWS`] rows is complete (returned), a
    /// source needs its next batch (`None`, [`Self::wants`] says which), or every
    /// source has ended (the last rows, then `None`).
    pub(crate) fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.rows.len() >= BATCH_ROWS {
                return self.build().map(Some);
            }
            if self.wants().is_some() {
                return Ok(None);
            }
            let live: Vec<usize> = (0..self.inputs.len())
                .filter(|&i| self.inputs[i].head.is_some())
                .collect();
            let Some(&first) = live.first() else {
                return if self.rows.is_empty() {
                    Ok(None)
                } else {
                    self.build().map(Some)
                };
            };
            // The source with the smallest head key, and the smallest key of the others.
            let mut min = first;
            for &i in &live[1..] {
                if self.key(i) < self.key(min) {
                    min = i;
                }
            }
            let next = live
                .iter()
                .filter(|&&i| i != min)
                .map(|&i| self.key(i))
                .min()
                .map(<[u8]>::to_vec);
            let room = BATCH_ROWS - self.rows.len();
            match next {
                Some(next) if next.as_slice() == self.key(min) => self.merge_tie(&live)?,
                next => {
                    let head = self.inputs[min].head.as_ref().expect("live");
                    // Rows of `min` below every other source's key go out as they are.
                    let end = match &next {
                        None => head.keys.num_rows(),
                        Some(next) => {
                            let (mut lo, mut hi) = (head.pos, head.keys.num_rows());
                            while lo < hi {
                                let mid = (lo + hi) / 2;
                                if head.keys.row(mid).data() < next.as_slice() {
                                    lo = mid + 1;
                                } else {
                                    hi = mid;
                                }
                            }
                            lo
                        }
                    };
                    let (batch, pos) = (head.batch, head.pos);
                    let end = end.min(pos + room);
                    self.rows.extend((pos..end).map(|r| (batch, r)));
                    self.advance(min, end - pos);
                }
            }
        }
    }

    /// The head key of live source `i`.
    fn key(&self, i: usize) -> &[u8] {
        let h = self.inputs[i].head.as_ref().expect("live source");
        h.keys.row(h.pos).data()
    }

    /// One output row for the key that several of `live` hold at their heads: key
    /// columns from the newest, each field from the newest source with a value.
    fn merge_tie(&mut self, live: &[usize]) -> Result<()> {
        let key = {
            let mut k = self.key(live[0]);
            for &i in &live[1..] {
                k = k.min(self.key(i));
            }
            k.to_vec()
        };
        // Newest first.
        let tied: Vec<(usize, usize)> = live
            .iter()
            .rev()
            .filter(|&&i| self.key(i) == key.as_slice())
            .map(|&i| {
                let h = self.inputs[i].head.as_ref().expect("live");
                (h.batch, h.pos)
            })
            .collect();
        let out = self.rows.len();
        self.rows.push(tied[0]);
        for &c in &self.field_columns {
            if self.arena[tied[0].0].column(c).is_valid(tied[0].1) {
                continue;
            }
            if let Some(&older) = tied[1..]
                .iter()
                .find(|(b, r)| self.arena[*b].column(c).is_valid(*r))
            {
                self.overrides.push((out, c, older));
            }
        }
        let holders: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| self.key(i) == key.as_slice())
            .collect();
        for i in holders {
            self.advance(i, 1);
        }
        Ok(())
    }

    /// Move source `i`'s head on by `n` rows, dropping it when it is used up.
    fn advance(&mut self, i: usize, n: usize) {
        let head = self.inputs[i].head.as_mut().expect("live");
        head.pos += n;
        if head.remaining() == 0 {
            self.inputs[i].head = None;
        }
    }

    /// The output built so far, as a batch; the arena keeps only the heads' batches.
    fn build(&mut self) -> Result<RecordBatch> {
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        let mut indices = Vec::new();
        for c in 0..self.schema.fields().len() {
            let arrays: Vec<&dyn Array> = self.arena.iter().map(|b| b.column(c).as_ref()).collect();
            indices.clear();
            indices.extend_from_slice(&self.rows);
            for &(row, col, at) in &self.overrides {
                if col == c {
                    indices[row] = at;
                }
            }
            columns.push(interleave(&arrays, &indices)?);
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        self.rows.clear();
        self.overrides.clear();
        let old = std::mem::take(&mut self.arena);
        for input in &mut self.inputs {
            if let Some(h) = &mut input.head {
                self.arena.push(old[h.batch].clone());
                h.batch = self.arena.len() - 1;
            }
        }
        Ok(batch)
    }
}

/// The merged rows of `sources` (oldest first; each a stream of sorted batches in
/// `schema`, every key once per source). Rows whose time is outside `contested` (sorted,
/// disjoint inclusive ranges covered by two or more sources) cannot share a key with
/// another source's, so they are handed out as they arrive; the rest go through a
/// [`Merger`]. `finish` turns each batch into the scan's output (`None` drops it).
pub(crate) fn merged_stream(
    table: &TableSchema,
    schema: SchemaRef,
    sources: Vec<BoxStream<'static, Result<RecordBatch>>>,
    contested: Vec<(i64, i64)>,
    finish: impl Fn(&RecordBatch) -> Option<Result<RecordBatch>> + Send + Sync + 'static,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let merger = Merger::new(table, schema, sources.len())?;
    let state = Drive {
        merger,
        sources,
        contested,
        ready: VecDeque::new(),
        failed: false,
    };
    Ok(
        stream::unfold((state, finish), |(mut s, finish)| async move {
            let out = s.next(&finish).await;
            out.map(|b| (b, (s, finish)))
        })
        .boxed(),
    )
}

struct Drive {
    merger: Merger,
    sources: Vec<BoxStream<'static, Result<RecordBatch>>>,
    contested: Vec<(i64, i64)>,
    /// Finished batches not yet handed out (uncontested rows).
    ready: VecDeque<RecordBatch>,
    failed: bool,
}

impl Drive {
    async fn next(
        &mut self,
        finish: &impl Fn(&RecordBatch) -> Option<Result<RecordBatch>>,
    ) -> Option<Result<RecordBatch>> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(b) = self.ready.pop_front() {
                return Some(Ok(b));
            }
            if let Some(i) = self.merger.wants() {
                match self.sources[i].next().await {
                    None => self.merger.end(i),
                    Some(Err(e)) => return self.fail(e),
                    Some(Ok(b)) => {
                        let (inside, outside) = match super::split_by_ranges(&b, &self.contested) {
                            Ok(parts) => parts,
                            Err(e) => return self.fail(e),
                        };
                        match finish(&outside) {
                            Some(Ok(b)) => self.ready.push_back(b),
                            Some(Err(e)) => return self.fail(e),
                            None => {}
                        }
                        if let Err(e) = self.merger.push(i, inside) {
                            return self.fail(e);
                        }
                    }
                }
                continue;
            }
            match self.merger.next_batch() {
                Err(e) => return self.fail(e),
                Ok(Some(b)) => match finish(&b) {
                    Some(r) => return Some(r),
                    None => continue,
                },
                Ok(None) if self.merger.is_done() => return None,
                Ok(None) => continue,
            }
        }
    }

    fn fail(&mut self, e: Error) -> Option<Result<RecordBatch>> {
        self.failed = true;
        Some(Err(e))
    }
}

#[cfg(test)]
mod tests {
    //! The merge against a `BTreeMap` model: random sources with shared keys, null tags
    //! and null fields, cut into batches of random sizes, large enough to cross
    //! several output batches.

    use std::collections::BTreeMap;

    use arrow::array::{DictionaryArray, Int64Array, TimestampNanosecondArray};
    use arrow::datatypes::Int32Type;
    use futures::TryStreamExt;
    use proptest::prelude::*;

    use super::*;
    use crate::model::FieldType;

    type Key = (Option<String>, Option<String>, i64);
    type Fields = [Option<i64>; 2];

    fn table() -> TableSchema {
        let mut t = TableSchema::default();
        // Added out of name order: the key sorts tags by name.
        t.add_tag("b");
        t.add_tag("a");
        t.add_field("y", FieldType::I64);
        t.add_field("x", FieldType::I64);
        t
    }

    fn batch(schema: &SchemaRef, rows: &[(Key, Fields)]) -> RecordBatch {
        let tag = |f: fn(&Key) -> Option<&str>| -> ArrayRef {
            let a: DictionaryArray<Int32Type> = rows.iter().map(|(k, _)| f(k)).collect();
            Arc::new(a)
        };
        let mut columns: Vec<ArrayRef> = Vec::new();
        for f in schema.fields() {
            columns.push(match f.name().as_str() {
                "a" => tag(|k| k.0.as_deref()),
                "b" => tag(|k| k.1.as_deref()),
                "x" => Arc::new(rows.iter().map(|(_, v)| v[0]).collect::<Int64Array>()),
                "y" => Arc::new(rows.iter().map(|(_, v)| v[1]).collect::<Int64Array>()),
                _ => Arc::new(
                    TimestampNanosecondArray::from(
                        rows.iter().map(|(k, _)| k.2).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
            });
        }
        RecordBatch::try_new(Arc::clone(schema), columns).unwrap()
    }

    fn rows_of(batches: &[RecordBatch]) -> Vec<(Key, Fields)> {
        let mut out = Vec::new();
        for b in batches {
            let s = |name: &str, i: usize| -> Option<String> {
                let c = b.column_by_name(name).unwrap();
                let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap();
                let c = c
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>()
                    .unwrap();
                c.is_valid(i).then(|| c.value(i).to_string())
            };
            let n = |name: &str, i: usize| -> Option<i64> {
                let c = b.column_by_name(name).unwrap();
                let c = c.as_any().downcast_ref::<Int64Array>().unwrap();
                c.is_valid(i).then(|| c.value(i))
            };
            let t = b
                .column_by_name(TIME_COLUMN)
                .unwrap()
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .unwrap();
            for i in 0..b.num_rows() {
                out.push(((s("a", i), s("b", i), t.value(i)), [n("x", i), n("y", i)]));
            }
        }
        out
    }

    fn source_strategy() -> impl Strategy<Value = (BTreeMap<Key, Fields>, Vec<usize>)> {
        let key = (
            proptest::option::weighted(0.8, 0u8..4),
            proptest::option::weighted(0.8, 0u8..3),
            0i64..600,
        )
            .prop_map(|(a, b, t)| (a.map(|a| format!("a{a}")), b.map(|b| format!("b{b}")), t));
        let fields = (
            proptest::option::weighted(0.6, -50i64..50),
            proptest::option::weighted(0.6, -50i64..50),
        )
            .prop_map(|(x, y)| [x, y]);
        (
            proptest::collection::btree_map(key, fields, 0..6000),
            proptest::collection::vec(1usize..3000, 1..8),
        )
    }

    fn merge(
        sources: &[(BTreeMap<Key, Fields>, Vec<usize>)],
        contested: Vec<(i64, i64)>,
    ) -> Vec<RecordBatch> {
        let t = table();
        let schema = t.arrow_schema();
        let streams = sources
            .iter()
            .map(|(rows, cuts)| {
                let rows: Vec<(Key, Fields)> = rows.iter().map(|(k, v)| (k.clone(), *v)).collect();
                let mut batches = Vec::new();
                let mut at = 0;
                for &n in cuts.iter().cycle() {
                    if at >= rows.len() {
                        break;
                    }
                    let end = (at + n).min(rows.len());
                    batches.push(Ok(batch(&schema, &rows[at..end])));
                    at = end;
                }
                stream::iter(batches).boxed()
            })
            .collect();
        let merged = merged_stream(&t, Arc::clone(&schema), streams, contested, |b| {
            (b.num_rows() > 0).then(|| Ok(b.clone()))
        })
        .unwrap();
        futures::executor::block_on(merged.try_collect()).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn merge_equals_the_newest_value_of_each_field(
            sources in proptest::collection::vec(source_strategy(), 1..4),
            cut in 0i64..600,
        ) {
            let mut model: BTreeMap<Key, Fields> = BTreeMap::new();
            for (rows, _) in &sources {
                for (k, v) in rows {
                    let e = model.entry(k.clone()).or_insert([None, None]);
                    for (old, new) in e.iter_mut().zip(v) {
                        if new.is_some() {
                            *old = *new;
                        }
                    }
                }
            }
            // Every time contested (a full merge, whose output is sorted), and only
            // the times from `cut` on (the rest is handed out as it is).
            let all = merge(&sources, vec![(i64::MIN, i64::MAX)]);
            prop_assert!(all.iter().all(|b| b.num_rows() <= BATCH_ROWS));
            let got = rows_of(&all);
            let want: Vec<(Key, Fields)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
            prop_assert_eq!(&got, &want);
            let mut got = rows_of(&merge(&sources, vec![(cut, i64::MAX)]));
            got.sort();
            let model_older_first: Vec<(Key, Fields)> = want
                .iter()
                .filter(|(k, _)| k.2 >= cut)
                .cloned()
                .collect();
            let mut want_split = model_older_first;
            // Below `cut` nothing is merged: each source's rows come out as they are.
            for (rows, _) in &sources {
                want_split.extend(rows.iter().filter(|(k, _)| k.2 < cut).map(|(k, v)| (k.clone(), *v)));
            }
            want_split.sort();
            prop_assert_eq!(got, want_split);
        }
    }

    #[test]
    fn an_unsorted_source_is_an_error_not_a_wrong_answer() {
        let t = table();
        let schema = t.arrow_schema();
        let rows = |times: &[i64]| -> Vec<(Key, Fields)> {
            times
                .iter()
                .map(|&t| ((Some("a0".into()), None, t), [Some(1), None]))
                .collect()
        };
        let mut m = Merger::new(&t, Arc::clone(&schema), 2).unwrap();
        m.push(0, batch(&schema, &rows(&[1, 2]))).unwrap();
        assert!(m.push(1, batch(&schema, &rows(&[3, 3]))).is_err());
        let mut m = Merger::new(&t, Arc::clone(&schema), 1).unwrap();
        m.push(0, batch(&schema, &rows(&[5, 7]))).unwrap();
        assert_eq!(m.next_batch().unwrap(), None);
        assert!(m.push(0, batch(&schema, &rows(&[6]))).is_err());
    }
}
