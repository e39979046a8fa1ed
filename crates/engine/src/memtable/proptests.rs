//! Sparse memtable rows against the old dense layout (a slot per field id), on random
//! writes: the same rows and values come out of every conversion (flush, scans with and
//! without a projection, time ranges, several memtables merged, overlapping or sealed
//! in time order), and a row's memory does not depend on the ids of the fields it holds.

use std::collections::BTreeMap;

use arrow::array::{
    Array, AsArray, Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use super::{Memtable, TimeRange, merged_batch, merged_row_count};
use crate::model::{FieldType, FieldValue, Row};
use crate::schema::TableSchema;

const FIELDS: u32 = 24;
const SEG: i64 = 100;

fn schema() -> TableSchema {
    let mut s = TableSchema::default();
    s.add_tag("b");
    s.add_tag("a");
    for id in 0..FIELDS {
        // Names out of id order, so sorting columns by name matters.
        let ty = if id % 3 == 0 {
            FieldType::Str
        } else {
            FieldType::F64
        };
        s.add_field(&format!("f{}", (id * 7) % FIELDS), ty);
    }
    s
}

/// One write: series (tag values of `a`, `b`; `None` = absent), time, `(field id, n)`.
type Write = (Option<u8>, Option<u8>, i64, Vec<(u32, u8)>);

fn value(schema: &TableSchema, id: u32, n: u8) -> FieldValue {
    match schema.fields[id as usize].1 {
        FieldType::Str => FieldValue::Str(format!("s{n}")),
        _ => FieldValue::F64(f64::from(n)),
    }
}

fn to_row(schema: &TableSchema, (a, b, time, fields): &Write) -> Row {
    let mut tags = Vec::new();
    if let Some(b) = b {
        tags.push(("b".into(), format!("b{b}").into()));
    }
    if let Some(a) = a {
        tags.push(("a".into(), format!("a{a}").into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    let fields = fields
        .iter()
        .filter(|(id, _)| seen.insert(*id))
        .map(|(id, n)| {
            (
                schema.fields[*id as usize].0.as_str().into(),
                value(schema, *id, *n),
            )
        })
        .collect();
    Row {
        tags,
        fields,
        time: *time,
    }
}

/// A row's key: (tag values in tag-name order, time).
type Key = (Vec<Option<String>>, i64);

/// The old layout: per (series, time), a dense slot per field id, merged field by field.
type Dense = BTreeMap<Key, Vec<Option<FieldValue>>>;

fn dense_insert(dense: &mut Dense, schema: &TableSchema, w: &Write) {
    let row = to_row(schema, w);
    let tag = |name: &str| {
        row.tags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
    };
    let slots = dense
        .entry((vec![tag("a"), tag("b")], row.time))
        .or_default();
    for (name, v) in &row.fields {
        let (id, _) = schema.field(name).expect("field");
        if slots.len() <= id as usize {
            slots.resize(id as usize + 1, None);
        }
        slots[id as usize] = Some(v.clone());
    }
}

/// A batch as `(tag values, time) -> column name -> value` (non-null cells only).
type Cells = BTreeMap<Key, BTreeMap<String, String>>;

fn cells(batch: Option<RecordBatch>, schema: &TableSchema) -> (Cells, Vec<Key>) {
    let mut out = Cells::new();
    let mut order = Vec::new();
    let Some(batch) = batch else {
        return (out, order);
    };
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .map(|c| cast(c, &DataType::Utf8).expect("cast"))
    };
    let (a, b) = (col("a"), col("b"));
    let times = batch.column_by_name("time").map(|c| {
        c.as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .expect("time")
            .clone()
    });
    for row in 0..batch.num_rows() {
        let tag = |c: &Option<arrow::array::ArrayRef>| {
            c.as_ref()
                .filter(|c| c.is_valid(row))
                .map(|c| c.as_string::<i32>().value(row).to_string())
        };
        let key = (
            vec![tag(&a), tag(&b)],
            times.as_ref().map_or(0, |t| t.value(row)),
        );
        let mut values = BTreeMap::new();
        for (i, f) in batch.schema().fields().iter().enumerate() {
            if schema.field(f.name()).is_none() || batch.column(i).is_null(row) {
                continue;
            }
            let c = batch.column(i);
            let text = if let Some(x) = c.as_any().downcast_ref::<Float64Array>() {
                x.value(row).to_string()
            } else if let Some(x) = c.as_any().downcast_ref::<StringArray>() {
                x.value(row).to_string()
            } else if let Some(x) = c.as_any().downcast_ref::<Int64Array>() {
                x.value(row).to_string()
            } else {
                panic!("unexpected column type {:?}", c.data_type())
            };
            values.insert(f.name().clone(), text);
        }
        order.push(key.clone());
        out.insert(key, values);
    }
    (out, order)
}

fn dense_cells(
    dense: &Dense,
    schema: &TableSchema,
    range: TimeRange,
    projection: Option<&[String]>,
) -> Cells {
    let wanted = |name: &str| projection.is_none_or(|p| p.iter().any(|c| c == name));
    let mut out = Cells::new();
    for ((tags, time), slots) in dense {
        if !range.contains(*time) {
            continue;
        }
        let mut values = BTreeMap::new();
        for (id, v) in slots.iter().enumerate() {
            let name = &schema.fields[id].0;
            if let Some(v) = v.as_ref().filter(|_| wanted(name)) {
                let text = match v {
                    FieldValue::F64(x) => x.to_string(),
                    FieldValue::Str(s) => s.clone(),
                    other => panic!("unexpected {other:?}"),
                };
                values.insert(name.clone(), text);
            }
        }
        out.insert((tags.clone(), *time), values);
    }
    out
}

fn write_strategy() -> impl Strategy<Value = Write> {
    (
        prop::option::of(0u8..3),
        prop::option::of(0u8..3),
        -300i64..300,
        prop::collection::vec((0..FIELDS, any::<u8>()), 0..6),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn sparse_rows_answer_like_dense_rows(
        parts in prop::collection::vec(prop::collection::vec(write_strategy(), 1..25), 1..4),
        lo in -350i64..1550,
        len in 0i64..1900,
        projection in prop::option::of(prop::collection::vec(0..FIELDS, 0..5)),
        sealed_in_time_order in any::<bool>(),
    ) {
        let schema = schema();
        let mut dense = Dense::new();
        let mut mems = Vec::new();
        for (seq, writes) in parts.iter().enumerate() {
            let mut m = Memtable::default();
            for w in writes {
                // Parts sealed one after another under time-ordered writes: each part's
                // times after the previous part's (the merge's chaining fast path).
                let mut w = w.clone();
                if sealed_in_time_order {
                    w.2 += 600 * seq as i64;
                }
                let w = &w;
                dense_insert(&mut dense, &schema, w);
                m.insert_row(&schema, &to_row(&schema, w), seq as u64 + 1, SEG).expect("insert");
            }
            mems.push(m);
        }
        let refs: Vec<&Memtable> = mems.iter().collect();
        let names: Option<Vec<String>> = projection.map(|ids| {
            let mut n: Vec<String> = ids.iter().map(|id| schema.fields[*id as usize].0.clone()).collect();
            n.extend(["a".to_string(), "b".to_string(), "time".to_string()]);
            n
        });
        for range in [TimeRange::ALL, TimeRange::new(lo, lo + len)] {
            let batch = merged_batch(&refs, &schema, range, names.as_deref()).expect("convert");
            if let (Some(b), Some(n)) = (&batch, &names) {
                // A projection gets exactly its columns, present or not.
                let wanted = schema.projected_schema(Some(n));
                prop_assert_eq!(b.schema().fields().len(), wanted.fields().len());
            }
            let rows = batch.as_ref().map_or(0, |b| b.num_rows());
            let (got, order) = cells(batch, &schema);
            prop_assert_eq!(rows, got.len(), "one row per (series, time)");
            prop_assert_eq!(rows, merged_row_count(&refs, range));
            let mut sorted = order.clone();
            sorted.sort();
            prop_assert_eq!(order, sorted, "sorted by tags in name order, then time");
            prop_assert_eq!(got, dense_cells(&dense, &schema, range, names.as_deref()));
        }
        // The flush's view: one SST per segment, together every row exactly once.
        let segments: std::collections::BTreeSet<i64> = refs.iter().flat_map(|m| m.segments()).collect();
        let per_segment: usize = segments
            .iter()
            .map(|s| merged_row_count(&refs, super::segment_of(*s, SEG)))
            .sum();
        prop_assert_eq!(per_segment, merged_row_count(&refs, TimeRange::ALL));
        prop_assert_eq!(per_segment, dense.len());
    }
}

/// Memory follows the values written: a row holding one field costs the same whether
/// that field's id is 0 or 49,999 (it used to cost a 32-byte slot per lower id).
#[test]
fn a_rows_memory_does_not_depend_on_its_field_ids() {
    let mut schema = TableSchema::default();
    schema.add_tag("h");
    for i in 0..50_000 {
        schema.add_field(&format!("f{i}"), FieldType::F64);
    }
    let cost = |field: &str| {
        let mut m = Memtable::default();
        let row = |h: &str, t: i64| Row {
            tags: vec![("h".into(), h.into())],
            fields: vec![(field.into(), FieldValue::F64(1.0))],
            time: t,
        };
        m.insert_row(&schema, &row("x", 1), 1, SEG).expect("insert");
        let first = m.bytes();
        for t in 2..100 {
            m.insert_row(&schema, &row("x", t), 1, SEG).expect("insert");
        }
        (first, m.bytes() - first)
    };
    let (low_first, low_rows) = cost("f0");
    let (high_first, high_rows) = cost("f49999");
    assert_eq!(low_rows, high_rows);
    assert_eq!(low_first, high_first);
    assert!(
        high_rows < 99 * 200,
        "{high_rows} bytes for 99 one-field rows"
    );
    // A count-like scan builds no field column at all.
    let mut m = Memtable::default();
    m.insert_row(
        &schema,
        &Row {
            tags: vec![("h".into(), "x".into())],
            fields: vec![("f49999".into(), FieldValue::F64(1.0))],
            time: 1,
        },
        1,
        SEG,
    )
    .expect("insert");
    let b = merged_batch(&[&m], &schema, TimeRange::ALL, Some(&["time".to_string()]))
        .expect("convert")
        .expect("rows");
    assert_eq!(b.num_columns(), 1);
    // Without a projection (the flush), only the columns that hold values.
    let b = merged_batch(&[&m], &schema, TimeRange::ALL, None)
        .expect("convert")
        .expect("rows");
    let schema = b.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["h", "f49999", "time"]);
}
