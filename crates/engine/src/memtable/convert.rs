//! Converting memtables to sorted Arrow record batches, and Arrow batches back into a
//! memtable (used by the read path to merge overlapping sources).
//!
//! Rows are sparse (see the module above) and so is the conversion: it builds only the
//! columns asked for, or without a projection only the columns some row holds, and
//! appends a row's values by field id, padding the columns it lacks with nulls in
//! bulk. Its cost is proportional to the values and the output columns, never to the
//! width of the table schema.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, BooleanArray, BooleanBuilder, Float64Array, Float64Builder,
    Int64Array, Int64Builder, StringArray, StringBuilder, StringDictionaryBuilder,
    TimestampNanosecondArray, TimestampNanosecondBuilder, UInt64Array, UInt64Builder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::{IdSet, Memtable, Series, SeriesKey, TimeRange};
use crate::error::{Error, Result};
use crate::model::{FieldType, FieldValue};
use crate::read::predicate::TagPredicate;
use crate::schema::{ColumnKind, TableSchema, field_field, tag_field, time_field};

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

    fn len(&self) -> usize {
        match self {
            Self::F64(b) => b.len(),
            Self::I64(b) => b.len(),
            Self::U64(b) => b.len(),
            Self::Bool(b) => b.len(),
            Self::Str(b) => b.len(),
        }
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            Self::F64(b) => b.append_nulls(n),
            Self::I64(b) => b.append_nulls(n),
            Self::U64(b) => b.append_nulls(n),
            Self::Bool(b) => b.append_nulls(n),
            Self::Str(b) => b.append_nulls(n),
        }
    }

    /// Append `v` as row `row` (0-based), padding the rows before it with nulls.
    fn append_at(&mut self, row: usize, v: &FieldValue) {
        let len = self.len();
        if len < row {
            self.append_nulls(row - len);
        }
        self.append(Some(v));
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
            if row % YIELD_ROWS == 0 {
                bulkhead_runtime::yield_point();
            }
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
/// Rows inserted between two yield points (see `bulkhead_runtime::yield_point`).
const YIELD_ROWS: usize = 1024;

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
/// The columns are `schema.projected_schema(projection)`; without a projection, only
/// the tags and fields that occur in some part, and `time` (an SST or a scan source
/// may lack columns: readers fill them with nulls).
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
    merged_batch_where(parts, schema, range, projection, None)
}

/// [`merged_batch`] of the series for which `series` may be TRUE only (all if `None`):
/// a scan's tag predicate, resolved per series before any row is copied.
pub(crate) fn merged_batch_where(
    parts: &[&Memtable],
    schema: &TableSchema,
    range: TimeRange,
    projection: Option<&[String]>,
    series: Option<&TagPredicate>,
) -> Result<Option<RecordBatch>> {
    let out_schema = output_schema(parts, schema, projection);
    let tag_order = schema.sorted_tag_ids();
    // Each series with its instances in `parts` (in part order), sorted by tag values
    // in tag-name order.
    let mut groups = series_groups(parts);
    for (vals, series) in &mut groups {
        let key = &series[0].key;
        *vals = tag_order
            .iter()
            .map(|id| key.iter().find(|(t, _)| t == id).map(|(_, v)| v.as_ref()))
            .collect();
    }
    if let Some(pred) = series.filter(|p| !p.is_unknown()) {
        // Tag name -> its position in `vals`.
        let slot: HashMap<&str, usize> = tag_order
            .iter()
            .enumerate()
            .map(|(pos, id)| (schema.tags[*id as usize].as_str(), pos))
            .collect();
        groups.retain(|(vals, _)| pred.may_match(|tag| vals[*slot.get(tag)?]));
    }
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));

    let mut tag_cols: Vec<(usize, StringDictionaryBuilder<Int32Type>)> = Vec::new();
    let mut field_cols: Vec<FieldBuilder> = Vec::new();
    // Field id -> its builder in `field_cols` (u32::MAX: not output).
    let mut field_pos: Vec<u32> = vec![u32::MAX; schema.fields.len()];
    let mut want_time = false;
    for f in out_schema.fields() {
        match schema.column(f.name()) {
            Some(ColumnKind::Tag(id)) => {
                let pos = tag_order.iter().position(|t| *t == id).unwrap_or(0);
                tag_cols.push((pos, StringDictionaryBuilder::new()));
            }
            Some(ColumnKind::Field(id, ty)) => {
                if let Some(p) = field_pos.get_mut(id as usize) {
                    *p = field_cols.len() as u32;
                }
                field_cols.push(FieldBuilder::new(ty));
            }
            Some(ColumnKind::Time) => want_time = true,
            None => {}
        }
    }
    let mut out = Builders {
        tags: tag_cols,
        fields: field_cols,
        field_pos,
        times: TimestampNanosecondBuilder::new(),
        rows: 0,
    };
    let mut merged: Vec<(u32, &FieldValue)> = Vec::new();
    if !range.is_empty() {
        for (vals, series) in &groups {
            bulkhead_runtime::yield_point();
            if let Some(chain) = disjoint_chain(series, range) {
                // No time in two parts (one part, or parts sealed one after another by
                // time-ordered writes): their rows, part after part, are already merged.
                for s in chain.iter() {
                    for (t, slots) in s.rows.range(range.bounds()) {
                        out.push(vals, *t, slots.iter().map(|(id, v)| (*id, v)));
                    }
                }
                continue;
            }
            // k-way merge by time; equal times merge field by field, later parts win.
            let mut iters: Vec<_> = series
                .iter()
                .map(|s| s.rows.range(range.bounds()).peekable())
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
                        merged.extend(slots.iter().map(|(id, v)| (*id, v)));
                    }
                }
                // Stable: of equal ids, the later part's value comes last and wins.
                merged.sort_by_key(|(id, _)| *id);
                let winners = merged
                    .iter()
                    .enumerate()
                    .filter(|(i, (id, _))| merged.get(i + 1).is_none_or(|(next, _)| next != id))
                    .map(|(_, e)| *e);
                out.push(vals, t, winners);
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
    for b in &mut out.fields {
        let len = b.len();
        if len < out.rows {
            b.append_nulls(out.rows - len);
        }
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

/// Each series of `parts` with its instances (in part order); tag values left empty.
fn series_groups<'m>(parts: &[&'m Memtable]) -> Vec<(Vec<Option<&'m str>>, Vec<&'m Series>)> {
    if let [only] = parts {
        return only.series().map(|s| (Vec::new(), vec![s])).collect();
    }
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
}

/// The instances of one series (one per part) that hold rows in `range`, ordered by
/// their first time, if no two of them share a time: each ends before the next begins.
/// Chaining their rows in this order is then their merge. `None` if some overlap, and
/// the rows need the k-way merge.
fn disjoint_chain<'a, 'm>(
    series: &'a [&'m Series],
    range: TimeRange,
) -> Option<std::borrow::Cow<'a, [&'m Series]>> {
    if series.len() == 1 {
        // One part (the usual flush and scan): no allocation.
        return Some(std::borrow::Cow::Borrowed(series));
    }
    let mut spans: Vec<(i64, i64, &Series)> = series
        .iter()
        .filter_map(|s| {
            let mut rows = s.rows.range(range.bounds());
            let first = *rows.next()?.0;
            let last = rows.next_back().map_or(first, |(t, _)| *t);
            Some((first, last, *s))
        })
        .collect();
    spans.sort_unstable_by_key(|(first, _, _)| *first);
    spans
        .windows(2)
        .all(|w| w[0].1 < w[1].0)
        .then(|| std::borrow::Cow::Owned(spans.into_iter().map(|(_, _, s)| s).collect()))
}

/// How many distinct (series, time) rows `parts` hold in `range`: the rows
/// [`merged_batch`] returns for it. The flush checks its SSTs against this.
pub(crate) fn merged_row_count(parts: &[&Memtable], range: TimeRange) -> usize {
    if range.is_empty() {
        return 0;
    }
    let mut count = 0;
    for (_, series) in series_groups(parts) {
        if let Some(chain) = disjoint_chain(&series, range) {
            count += chain
                .iter()
                .map(|s| s.rows.range(range.bounds()).count())
                .sum::<usize>();
            continue;
        }
        let mut times: Vec<i64> = series
            .iter()
            .flat_map(|s| s.rows.range(range.bounds()).map(|(t, _)| *t))
            .collect();
        times.sort_unstable();
        times.dedup();
        count += times.len();
    }
    count
}

/// The Arrow schema of a conversion: `schema.projected_schema(projection)`, or without
/// a projection the tags and fields some part holds, and `time`, in canonical order.
fn output_schema(
    parts: &[&Memtable],
    schema: &TableSchema,
    projection: Option<&[String]>,
) -> SchemaRef {
    let mut fields: Vec<Field> = Vec::new();
    match projection {
        Some(names) => {
            // A set: a wide table's projection is compared against every column.
            let names: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
            for id in schema.sorted_tag_ids() {
                let name = &schema.tags[id as usize];
                if names.contains(name.as_str()) {
                    fields.push(tag_field(name));
                }
            }
            for id in schema.sorted_field_ids() {
                let (name, ty) = &schema.fields[id as usize];
                if names.contains(name.as_str()) {
                    fields.push(field_field(name, *ty));
                }
            }
            if names.contains(crate::schema::TIME_COLUMN) {
                fields.push(time_field());
            }
        }
        None => {
            let (mut tags, mut values) = (IdSet::default(), IdSet::default());
            for p in parts {
                p.ids_present(&mut tags, &mut values);
            }
            for id in schema.sorted_tag_ids() {
                if tags.contains(id) {
                    fields.push(tag_field(&schema.tags[id as usize]));
                }
            }
            for id in schema.sorted_field_ids() {
                if values.contains(id) {
                    let (name, ty) = &schema.fields[id as usize];
                    fields.push(field_field(name, *ty));
                }
            }
            fields.push(time_field());
        }
    }
    Arc::new(Schema::new(fields))
}

/// The column builders of [`merged_batch`]: tag columns (with the position of their
/// tag in tag-name order), field columns (found by field id through `field_pos`), time.
struct Builders {
    tags: Vec<(usize, StringDictionaryBuilder<Int32Type>)>,
    fields: Vec<FieldBuilder>,
    field_pos: Vec<u32>,
    times: TimestampNanosecondBuilder,
    rows: usize,
}

impl Builders {
    /// Append one row: its series' tag values, its time, its `(field id, value)`s
    /// (ids distinct). Columns the row has no value for are padded later.
    fn push<'v>(
        &mut self,
        vals: &[Option<&str>],
        t: i64,
        fields: impl Iterator<Item = (u32, &'v FieldValue)>,
    ) {
        for (pos, b) in &mut self.tags {
            match vals[*pos] {
                Some(v) => b.append_value(v),
                None => b.append_null(),
            }
        }
        for (id, v) in fields {
            let Some(&pos) = self.field_pos.get(id as usize) else {
                continue;
            };
            if let Some(b) = self.fields.get_mut(pos as usize) {
                b.append_at(self.rows, v);
            }
        }
        self.times.append_value(t);
        self.rows += 1;
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
