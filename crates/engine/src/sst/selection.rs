//! Row ranges inside an SST: intersecting what the series index and the page index
//! select, and turning the result into a Parquet [`RowSelection`].
//!
//! Ranges are sorted, disjoint and non-empty; "relative" ranges count rows from the
//! start of one row group.

use std::ops::Range;

use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;

use crate::memtable::TimeRange;

/// Rows covered by `ranges`.
pub(crate) fn count(ranges: &[Range<usize>]) -> usize {
    ranges.iter().map(|r| r.len()).sum()
}

/// The parts of file-wide `ranges` inside `span`, relative to `span.start`.
pub(crate) fn relative(ranges: &[Range<usize>], span: Range<usize>) -> Vec<Range<usize>> {
    let first = ranges.partition_point(|r| r.end <= span.start);
    ranges[first..]
        .iter()
        .take_while(|r| r.start < span.end)
        .map(|r| r.start.max(span.start) - span.start..r.end.min(span.end) - span.start)
        .filter(|r| !r.is_empty())
        .collect()
}

/// The rows in both `a` and `b`.
pub(crate) fn intersect(a: &[Range<usize>], b: &[Range<usize>]) -> Vec<Range<usize>> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let lo = a[i].start.max(b[j].start);
        let hi = a[i].end.min(b[j].end);
        if lo < hi {
            out.push(lo..hi);
        }
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The rows of row group `rg` on pages of the time column (leaf `time_idx`) whose
/// min/max may overlap `range`, or `None` without a page index (or for an unbounded
/// range: nothing to skip).
pub(crate) fn time_pages(
    md: &ParquetMetaData,
    rg: usize,
    time_idx: usize,
    range: TimeRange,
) -> Option<Vec<Range<usize>>> {
    if range == TimeRange::ALL {
        return None;
    }
    let ColumnIndexMetaData::INT64(index) = md.column_index()?.get(rg)?.get(time_idx)? else {
        return None;
    };
    let pages = md.offset_index()?.get(rg)?.get(time_idx)?.page_locations();
    let rows = md.row_group(rg).num_rows().max(0) as usize;
    let mut out: Vec<Range<usize>> = Vec::new();
    for (p, loc) in pages.iter().enumerate() {
        let start = loc.first_row_index.max(0) as usize;
        let end = pages
            .get(p + 1)
            .map_or(rows, |n| n.first_row_index.max(0) as usize);
        let keep = match (index.min_value(p), index.max_value(p)) {
            (Some(&lo), Some(&hi)) => hi >= range.start && lo <= range.last,
            _ => true,
        };
        if keep && start < end {
            match out.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ => out.push(start..end),
            }
        }
    }
    Some(out)
}

/// Data pages of the `leaves` columns in the planned row groups, and how many of them
/// hold no planned row (the reader never fetches those). Without an offset index every
/// page counts as read.
pub(crate) fn count_pages(
    md: &ParquetMetaData,
    plan: &[(usize, Vec<Range<usize>>)],
    leaves: &[usize],
) -> (usize, usize) {
    let Some(offsets) = md.offset_index() else {
        return (0, 0);
    };
    let (mut pages, mut skipped) = (0, 0);
    for (rg, ranges) in plan {
        let rows = md.row_group(*rg).num_rows().max(0) as usize;
        for &leaf in leaves {
            let Some(locs) = offsets.get(*rg).and_then(|c| c.get(leaf)) else {
                continue;
            };
            let locs = locs.page_locations();
            for (p, loc) in locs.iter().enumerate() {
                let start = loc.first_row_index.max(0) as usize;
                let end = locs
                    .get(p + 1)
                    .map_or(rows, |n| n.first_row_index.max(0) as usize);
                pages += 1;
                if !ranges.iter().any(|r| r.start < end && start < r.end) {
                    skipped += 1;
                }
            }
        }
    }
    (pages, skipped)
}

/// A [`RowSelection`] over the planned row groups, read in order (row groups not in
/// the plan are not part of the selection at all).
pub(crate) fn to_selection(
    md: &ParquetMetaData,
    plan: &[(usize, Vec<Range<usize>>)],
) -> RowSelection {
    let mut selectors: Vec<RowSelector> = Vec::new();
    for (rg, ranges) in plan {
        let rows = md.row_group(*rg).num_rows().max(0) as usize;
        let mut pos = 0;
        for r in ranges {
            if r.start > pos {
                selectors.push(RowSelector::skip(r.start - pos));
            }
            selectors.push(RowSelector::select(r.len()));
            pos = r.end;
        }
        if rows > pos {
            selectors.push(RowSelector::skip(rows - pos));
        }
    }
    RowSelection::from(selectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one-range lists are the cases tested
    fn ranges_relative_and_intersected() {
        let file = vec![0..5, 8..12, 20..30];
        assert_eq!(relative(&file, 0..10), vec![0..5, 8..10]);
        assert_eq!(relative(&file, 10..20), vec![0..2]);
        assert_eq!(relative(&file, 12..20), Vec::<Range<usize>>::new());
        assert_eq!(relative(&file, 25..40), vec![0..5]);
        assert_eq!(intersect(&[0..10, 12..14], &[5..13]), vec![5..10, 12..13]);
        assert_eq!(intersect(&[0..3], &[3..5]), Vec::<Range<usize>>::new());
        assert_eq!(count(&[0..3, 5..6]), 4);
    }
}
