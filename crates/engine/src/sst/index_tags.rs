//! Tag columns of an SST read built from its series index instead of decoded: when
//! the index chose the rows, each run's tag values are known, so the tag columns'
//! pages are never fetched. The rows come from a [`RowFeed`]: every selected row, or,
//! when a field filter runs inside the decoder, only the rows it kept, in the order
//! the decoder returns them.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, BooleanArray};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::selection;
use super::series_index::SeriesIndex;
use crate::error::{Error, Result};

/// The file rows the decoder returns next, in order, as ranges.
#[derive(Clone, Default)]
pub(super) struct RowFeed(Arc<Mutex<VecDeque<Range<usize>>>>);

impl RowFeed {
    /// A feed of exactly `rows`.
    pub(super) fn of(rows: Vec<Range<usize>>) -> Self {
        Self(Arc::new(Mutex::new(rows.into())))
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Range<usize>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` rows (fewer if the feed runs out).
    fn take(&self, mut n: usize) -> Vec<Range<usize>> {
        let mut q = self.queue();
        let mut out = Vec::new();
        while n > 0 {
            let Some(r) = q.front_mut() else { break };
            let k = n.min(r.len());
            out.push(r.start..r.start + k);
            n -= k;
            r.start += k;
            if r.start == r.end {
                q.pop_front();
            }
        }
        out
    }
}

/// Turns a row filter's masks into the rows it kept: the filter sees the selected
/// rows in order, one mask per batch, and this walks the selection along with it.
pub(super) struct KeptRows {
    selected: Vec<Range<usize>>,
    /// How far the masks so far reached: range number, rows into it.
    at: (usize, usize),
    kept: RowFeed,
}

impl KeptRows {
    /// Over `selected` (sorted, disjoint file rows), feeding the kept rows to `kept`.
    pub(super) fn new(selected: Vec<Range<usize>>, kept: RowFeed) -> Self {
        Self {
            selected,
            at: (0, 0),
            kept,
        }
    }

    /// The next `mask.len()` selected rows were judged by `mask` (no nulls).
    pub(super) fn push(&mut self, mask: &BooleanArray) -> std::result::Result<(), ArrowError> {
        let mut runs: Vec<Range<usize>> = Vec::new();
        let mut i = 0usize;
        let n = mask.len();
        while i < n {
            let Some(r) = self.selected.get(self.at.0) else {
                return Err(ArrowError::ComputeError(
                    "the row filter judged more rows than were selected".into(),
                ));
            };
            let start = r.start + self.at.1;
            let k = (n - i).min(r.end - start);
            for j in 0..k {
                if mask.value(i + j) {
                    let row = start + j;
                    match runs.last_mut() {
                        Some(last) if last.end == row => last.end += 1,
                        _ => runs.push(row..row + 1),
                    }
                }
            }
            i += k;
            self.at.1 += k;
            if start + k == r.end {
                self.at = (self.at.0 + 1, 0);
            }
        }
        let mut q = self.kept.queue();
        for r in runs {
            match q.back_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => q.push_back(r),
            }
        }
        Ok(())
    }
}

/// The projected tag columns of an SST read whose rows the series index chose: they
/// are built from the index (each run's values) instead of decoded, batch by batch
/// as the other columns are decoded.
pub(super) struct IndexTags {
    index: Arc<SeriesIndex>,
    /// The projected columns, in file order.
    schema: arrow::datatypes::SchemaRef,
    /// The tags built from the index: file column number, name and dictionary values.
    built: Vec<(usize, String, ArrayRef)>,
    /// The file rows the decoder returns, in order.
    rows: RowFeed,
}

/// Which of `cols` to build from `index`: tag columns stored as `Dictionary(Int32,
/// Utf8)`, as long as some other column is still decoded (it gives the row count).
pub(super) fn index_tag_columns(
    file: &arrow::datatypes::SchemaRef,
    index: &Arc<SeriesIndex>,
    cols: &[String],
    rows: RowFeed,
) -> Option<IndexTags> {
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let projected: Vec<usize> = (0..file.fields().len())
        .filter(|&i| cols.iter().any(|c| c == file.field(i).name()))
        .collect();
    let built: Vec<(usize, String, ArrayRef)> = projected
        .iter()
        .copied()
        .filter_map(|i| {
            let f = file.field(i);
            if f.data_type() != &dict {
                return None;
            }
            let values = index.tag_values(f.name())?;
            Some((i, f.name().clone(), values))
        })
        .collect();
    if built.is_empty() || built.len() == projected.len() {
        return None;
    }
    Some(IndexTags {
        index: Arc::clone(index),
        schema: Arc::new(file.project(&projected).ok()?),
        built,
        rows,
    })
}

impl IndexTags {
    pub(super) fn builds(&self, column: usize) -> bool {
        self.built.iter().any(|(i, ..)| *i == column)
    }

    /// `batch` (the next decoded rows, without the built columns) with the built
    /// columns put back in their place.
    pub(super) fn add_to(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let rows = self.rows.take(n);
        if selection::count(&rows) != n {
            return Err(Error::Arrow(ArrowError::ComputeError(
                "the decoder returned more rows than the series index selected".into(),
            )));
        }
        let cols = self
            .schema
            .fields()
            .iter()
            .map(|f| match batch.column_by_name(f.name()) {
                Some(c) => Ok(Arc::clone(c)),
                None => self
                    .built
                    .iter()
                    .find(|(_, name, _)| name == f.name())
                    .and_then(|(_, name, values)| self.index.tag_column_with(name, &rows, values))
                    .map(|c| Arc::new(c) as ArrayRef)
                    .ok_or_else(|| {
                        Error::Arrow(ArrowError::ComputeError(format!(
                            "the series index could not build column {}",
                            f.name()
                        )))
                    }),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), cols)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept rows follow the masks across range and mask boundaries, and merge
    /// adjacent runs.
    #[test]
    fn masks_become_the_kept_file_rows() {
        let feed = RowFeed::default();
        let mut kept = KeptRows::new(vec![10..14, 20..22, 30..31], feed.clone());
        kept.push(&BooleanArray::from(vec![true, false, true]))
            .unwrap(); // 10, 12
        kept.push(&BooleanArray::from(vec![true, true, true]))
            .unwrap(); // 13, 20, 21
        kept.push(&BooleanArray::from(vec![false])).unwrap(); // 30 dropped
        assert!(kept.push(&BooleanArray::from(vec![true])).is_err());
        assert_eq!(feed.take(2), vec![10..11, 12..13]);
        assert_eq!(feed.take(10), vec![13..14, 20..22]);
        assert!(feed.take(1).is_empty());
        let all = RowFeed::of(vec![0..3, 5..6]);
        assert_eq!(all.take(2), vec![0..2]);
        assert_eq!(all.take(5), vec![2..3, 5..6]);
    }
}
