//! Converting memtables to sorted Arrow record batches, and Arrow batches back into a
//! memtable (used by the read path to merge overlapping sources).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float64Array, Float64Builder, Int64Array,
    Int64Builder, StringArray, StringBuilder, StringDictionaryBuilder, TimestampNanosecondArray,
    TimestampNanosecondBuilder, UInt64Array, UInt64Builder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use serde::{Deserialize, Serialize};

use super::{Memtable, Series, SeriesKey};
use crate::error::{Error, Result};
use crate::model::{FieldType, FieldValue};
use crate::schema::{ColumnKind, TableSchema};

/// A half-open time range `[start, end)` in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub start: i64,
    pub end: i64,
}

impl TimeRange {
    /// Every representable time (`i64::MAX` itself is excluded).
    pub const ALL: TimeRange = TimeRange {
        start: i64::MIN,
        end: i64::MAX,
    };

    pub fn new(start: i64, end: i64) -> Self {
        Self { start, end }
    }

    pub fn contains(&self, t: i64) -> bool {
        t >= self.start && t < self.end
    }

    /// Whether the inclusive range `[min, max]` overlaps this one.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        min < self.end && max >= self.start
    }

    pub fn intersect(&self, other: &TimeRange) -> TimeRange {
        TimeRange {
            start: self.start.max(other.start),
            end: self.end.min(other.end),
        }
    }
}

impl Default for TimeRange {
    fn default() -> Self {
        Self::ALL
    }
}

enum FieldBuilder {
    F64(Float64Builder),
    I64(Int64Builder),
    U64(UInt64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
}

impl FieldBuilder {
    fn new(ty: FieldType) -> Self {
        match ty {
            FieldType::F64 => Self::F64(Float64Builder::new()),
            FieldType::I64 => Self::I64(Int64Builder::new()),
            FieldType::U64 => Self::U64(UInt64Builder::new()),
            FieldType::Bool => Self::Bool(BooleanBuilder::new()),
            FieldType::Str => Self::Str(StringBuilder::new()),
        }
    }

    fn append(&mut self, v: Option<&FieldValue>) {
        match (self, v) {
            (Self::F64(b), Some(FieldValue::F64(x))) => b.append_value(*x),
            (Self::I64(b), Some(FieldValue::I64(x))) => b.append_value(*x),
            (Self::U64(b), Some(FieldValue::U64(x))) => b.append_value(*x),
            (Self::Bool(b), Some(FieldValue::Bool(x))) => b.append_value(*x),
            (Self::Str(b), Some(FieldValue::Str(x))) => b.append_value(x),
            // Absent (or, impossibly, mistyped: types are checked before insert).
            (Self::F64(b), _) => b.append_null(),
            (Self::I64(b), _) => b.append_null(),
            (Self::U64(b), _) => b.append_null(),
            (Self::Bool(b), _) => b.append_null(),
            (Self::Str(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::F64(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::U64(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Str(b) => Arc::new(b.finish()),
        }
    }
}

impl Memtable {
    /// The rows in `range`, sorted by (tags in name order, nulls first; time), as one
    /// batch of `schema.projected_schema(projection)`. `None` if no row matches.
    pub(crate) fn to_batch(
        &self,
        schema: &TableSchema,
        range: TimeRange,
        projection: Option<&[String]>,
    ) -> Result<Option<RecordBatch>> {
        merged_batch(&[self], schema, range, projection)
    }

    /// Insert every row of `batch` (columns matched by name against `schema`, which
    /// must know them all), merging field by field like a write with sequence `seq`.
    pub(crate) fn insert_batch(
        &mut self,
        schema: &TableSchema,
        batch: &RecordBatch,
        seq: u64,
        segment_nanos: i64,
    ) -> Result<()> {
        let mut tags: Vec<(u32, StringArray)> = Vec::new();
        let mut fields: Vec<(u32, ArrayRef)> = Vec::new();
        let mut time: Option<TimestampNanosecondArray> = None;
        for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
            match schema.column(f.name()) {
                Some(ColumnKind::Tag(id)) => {
                    let utf8 = cast(col, &DataType::Utf8)?;
                    let arr = utf8
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| Error::InvalidInput("tag column is not text".into()))?
                        .clone();
                    tags.push((id, arr));
                }
                Some(ColumnKind::Field(id, _)) => fields.push((id, Arc::clone(col))),
                Some(ColumnKind::Time) => {
                    let arr = cast(
                        col,
                        &DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
                    )?;
                    time = arr
                        .as_any()
                        .downcast_ref::<TimestampNanosecondArray>()
                        .cloned();
                }
                None => {
                    return Err(Error::InvalidInput(format!(
                        "column `{}` is not in the table schema",
                        f.name()
                    )));
                }
            }
        }
        let time = time.ok_or_else(|| Error::InvalidInput("batch has no time column".into()))?;
        tags.sort_by_key(|(id, _)| *id);
        for row in 0..batch.num_rows() {
            let key: SeriesKey = tags
                .iter()
                .filter(|(_, a)| a.is_valid(row))
                .map(|(id, a)| (*id, Arc::from(a.value(row))))
                .collect();
            let mut values = Vec::with_capacity(fields.len());
            for (id, col) in &fields {
                if let Some(v) = field_value(col, row) {
                    values.push((*id, v));
                }
            }
            self.insert(key, time.value(row), values, seq, segment_nanos);
        }
        Ok(())
    }
}

/// The value at `row` of a field column, `None` if null or of an unknown type.
fn field_value(col: &ArrayRef, row: usize) -> Option<FieldValue> {
    if col.is_null(row) {
        return None;
    }
    let any = col.as_any();
    if let Some(a) = any.downcast_ref::<Float64Array>() {
        return Some(FieldValue::F64(a.value(row)));
    }
    if let Some(a) = any.downcast_ref::<Int64Array>() {
        return Some(FieldValue::I64(a.value(row)));
    }
    if let Some(a) = any.downcast_ref::<UInt64Array>() {
        return Some(FieldValue::U64(a.value(row)));
    }
    if let Some(a) = any.downcast_ref::<BooleanArray>() {
        return Some(FieldValue::Bool(a.value(row)));
    }
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return Some(FieldValue::Str(a.value(row).to_string()));
    }
    None
}

/// Rows of `range` of several memtables (oldest first) as one batch, sorted like
/// [`Memtable::to_batch`]: a series in several of them is merged by time, and rows of
/// the same (series, time) field by field, later memtables winning, as if they had been
/// inserted into one. `schema` must cover every memtable's columns (ids only grow).
///
/// The flush uses it to write the memtables that readers sealed (each query that finds
/// a large active memtable seals it) as one SST per segment, without first re-inserting
/// their rows into a merged memtable.
pub(crate) fn merged_batch(
    parts: &[&Memtable],
    schema: &TableSchema,
    range: TimeRange,
    projection: Option<&[String]>,
) -> Result<Option<RecordBatch>> {
    let out_schema = schema.projected_schema(projection);
    let tag_order = schema.sorted_tag_ids();
    // Each series with its instances in `parts` (in part order), sorted by tag values
    // in tag-name order.
    let mut groups: Vec<(Vec<Option<&str>>, Vec<&Series>)> = if let [only] = parts {
        only.series().map(|s| (Vec::new(), vec![s])).collect()
    } else {
        let mut by_key: foldhash::HashMap<&[u8], usize> = foldhash::HashMap::default();
        let mut groups: Vec<(Vec<Option<&str>>, Vec<&Series>)> = Vec::new();
        for part in parts {
            for (key, s) in part.series_by_key() {
                match by_key.get(key) {
                    Some(&i) => groups[i].1.push(s),
                    None => {
                        by_key.insert(key, groups.len());
                        groups.push((Vec::new(), vec![s]));
                    }
                }
            }
        }
        groups
    };
    for (vals, series) in &mut groups {
        let key = &series[0].key;
        *vals = tag_order
            .iter()
            .map(|id| key.iter().find(|(t, _)| t == id).map(|(_, v)| v.as_ref()))
            .collect();
    }
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));

    let mut tag_cols: Vec<(usize, StringDictionaryBuilder<Int32Type>)> = Vec::new();
    let mut field_cols: Vec<(u32, FieldBuilder)> = Vec::new();
    let mut want_time = false;
    for f in out_schema.fields() {
        match schema.column(f.name()) {
            Some(ColumnKind::Tag(id)) => {
                let pos = tag_order.iter().position(|t| *t == id).unwrap_or(0);
                tag_cols.push((pos, StringDictionaryBuilder::new()));
            }
            Some(ColumnKind::Field(id, ty)) => field_cols.push((id, FieldBuilder::new(ty))),
            Some(ColumnKind::Time) => want_time = true,
            None => {}
        }
    }
    let mut out = Builders {
        tags: tag_cols,
        fields: field_cols,
        times: TimestampNanosecondBuilder::new(),
        rows: 0,
    };
    let mut merged: Vec<Option<&FieldValue>> = Vec::new();
    if range.start < range.end {
        for (vals, series) in &groups {
            if let [s] = series.as_slice() {
                for (t, slots) in s.rows.range(range.start..range.end) {
                    out.push(vals, *t, |id| {
                        slots.get(id as usize).and_then(|v| v.as_ref())
                    });
                }
                continue;
            }
            // k-way merge by time; equal times merge field by field, later parts win.
            let mut iters: Vec<_> = series
                .iter()
                .map(|s| s.rows.range(range.start..range.end).peekable())
                .collect();
            loop {
                let next = iters
                    .iter_mut()
                    .filter_map(|it| it.peek().map(|(t, _)| **t))
                    .min();
                let Some(t) = next else { break };
                merged.clear();
                for it in &mut iters {
                    if let Some((_, slots)) = it.next_if(|(tt, _)| **tt == t) {
                        if merged.len() < slots.len() {
                            merged.resize(slots.len(), None);
                        }
                        for (m, v) in merged.iter_mut().zip(slots) {
                            if v.is_some() {
                                *m = v.as_ref();
                            }
                        }
                    }
                }
                out.push(vals, t, |id| merged.get(id as usize).copied().flatten());
            }
        }
    }
    if out.rows == 0 {
        return Ok(None);
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(out_schema.fields().len());
    for (_, b) in &mut out.tags {
        columns.push(Arc::new(b.finish()));
    }
    for (_, b) in &mut out.fields {
        columns.push(b.finish());
    }
    if want_time {
        columns.push(Arc::new(out.times.finish().with_timezone("UTC")));
    }
    let batch = RecordBatch::try_new_with_options(
        out_schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(out.rows)),
    )?;
    Ok(Some(batch))
}

/// The column builders of [`merged_batch`]: tag columns (with the position of their
/// tag in tag-name order), field columns (with their field id), time.
struct Builders {
    tags: Vec<(usize, StringDictionaryBuilder<Int32Type>)>,
    fields: Vec<(u32, FieldBuilder)>,
    times: TimestampNanosecondBuilder,
    rows: usize,
}

impl Builders {
    /// Append one row: its series' tag values, its time, its fields by id.
    fn push<'v>(
        &mut self,
        vals: &[Option<&str>],
        t: i64,
        field: impl Fn(u32) -> Option<&'v FieldValue>,
    ) {
        self.rows += 1;
        for (pos, b) in &mut self.tags {
            match vals[*pos] {
                Some(v) => b.append_value(v),
                None => b.append_null(),
            }
        }
        for (id, b) in &mut self.fields {
            b.append(field(*id));
        }
        self.times.append_value(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Row;

    #[test]
    fn batch_roundtrip_sorted_and_projected() {
        let mut s = TableSchema::default();
        s.add_tag("host");
        s.add_field("v", FieldType::F64);
        let mut m = Memtable::default();
        for (h, t) in [("b", 2), ("a", 3), ("a", 1)] {
            let row = Row {
                tags: vec![("host".into(), h.into())],
                fields: vec![("v".into(), FieldValue::F64(t as f64))],
                time: t,
            };
            m.insert_row(&s, &row, 1, 1000).expect("insert");
        }
        let b = m
            .to_batch(&s, TimeRange::ALL, None)
            .expect("batch")
            .expect("rows");
        let times = b
            .column(2)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .expect("time");
        assert_eq!(times.values().to_vec(), vec![1, 3, 2]);
        let only_v = m
            .to_batch(&s, TimeRange::new(2, 3), Some(&["v".to_string()]))
            .expect("batch")
            .expect("rows");
        assert_eq!(only_v.num_columns(), 1);
        assert_eq!(only_v.num_rows(), 1);

        let mut back = Memtable::default();
        back.insert_batch(&s, &b, 1, 1000).expect("insert batch");
        let again = back
            .to_batch(&s, TimeRange::ALL, None)
            .expect("batch")
            .expect("rows");
        assert_eq!(again, b);
    }

    #[test]
    fn merged_batch_equals_inserting_every_part_into_one_memtable() {
        let mut narrow = TableSchema::default();
        narrow.add_tag("host");
        narrow.add_field("a", FieldType::I64);
        let mut wide = narrow.clone();
        wide.add_field("b", FieldType::I64);
        let row = |h: &str, t: i64, a: Option<i64>, b: Option<i64>| Row {
            tags: vec![("host".into(), h.into())],
            fields: [("a", a), ("b", b)]
                .into_iter()
                .filter_map(|(n, v)| v.map(|v| (n.into(), FieldValue::I64(v))))
                .collect(),
            time: t,
        };
        // Oldest first: part 1 knows only `a`; part 2 overwrites some (host, time)s,
        // partly (only `b`) or fully, and adds new series and times.
        let parts = [
            vec![
                row("x", 1, Some(1), None),
                row("x", 3, Some(3), None),
                row("y", 2, Some(2), None),
            ],
            vec![
                row("x", 3, None, Some(30)),
                row("x", 2, Some(20), Some(20)),
                row("z", 1, Some(9), None),
            ],
            vec![row("x", 3, Some(300), None), row("y", 5, None, Some(5))],
        ];
        let mut mems = Vec::new();
        let mut all = Memtable::default();
        for (i, rows) in parts.iter().enumerate() {
            let schema = if i == 0 { &narrow } else { &wide };
            let mut m = Memtable::default();
            for r in rows {
                m.insert_row(schema, r, i as u64 + 1, 1000).expect("insert");
                all.insert_row(&wide, r, i as u64 + 1, 1000)
                    .expect("insert");
            }
            mems.push(m);
        }
        let refs: Vec<&Memtable> = mems.iter().collect();
        for range in [TimeRange::ALL, TimeRange::new(2, 4)] {
            let merged = merged_batch(&refs, &wide, range, None).expect("merge");
            let expected = all.to_batch(&wide, range, None).expect("batch");
            assert_eq!(merged, expected);
        }
        let rows = merged_batch(&refs, &wide, TimeRange::ALL, None)
            .expect("merge")
            .expect("rows")
            .num_rows();
        assert_eq!(rows, 6, "x@1 x@2 x@3 y@2 y@5 z@1");
        assert!(
            merged_batch(&refs, &wide, TimeRange::new(10, 20), None)
                .expect("merge")
                .is_none()
        );
    }
}
