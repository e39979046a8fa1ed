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
        let out_schema = schema.projected_schema(projection);
        let tag_order = schema.sorted_tag_ids();
        // Sort series by their tag values in tag-name order.
        let mut series: Vec<(Vec<Option<&str>>, &Series)> = self
            .series()
            .map(|s| {
                let vals = tag_order
                    .iter()
                    .map(|id| s.key.iter().find(|(t, _)| t == id).map(|(_, v)| v.as_ref()))
                    .collect();
                (vals, s)
            })
            .collect();
        series.sort_unstable_by(|a, b| a.0.cmp(&b.0));

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
        let mut times = TimestampNanosecondBuilder::new();
        let mut n = 0usize;
        for (vals, s) in &series {
            if range.start >= range.end {
                break;
            }
            for (t, slots) in s.rows.range(range.start..range.end) {
                n += 1;
                for (pos, b) in &mut tag_cols {
                    match vals[*pos] {
                        Some(v) => b.append_value(v),
                        None => b.append_null(),
                    }
                }
                for (id, b) in &mut field_cols {
                    b.append(slots.get(*id as usize).and_then(|v| v.as_ref()));
                }
                times.append_value(*t);
            }
        }
        if n == 0 {
            return Ok(None);
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(out_schema.fields().len());
        for (_, b) in &mut tag_cols {
            columns.push(Arc::new(b.finish()));
        }
        for (_, b) in &mut field_cols {
            columns.push(b.finish());
        }
        if want_time {
            columns.push(Arc::new(times.finish().with_timezone("UTC")));
        }
        let batch = RecordBatch::try_new_with_options(
            out_schema,
            columns,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?;
        Ok(Some(batch))
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
}
