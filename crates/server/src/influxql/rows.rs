//! Raw rows kept as Arrow arrays until they are encoded: a raw `SELECT` (thousands of
//! rows) is cut into series by row references and written straight from the arrays into
//! the JSON body ([`ArrowRows::write_row`]), without a `serde_json::Value` per cell. The
//! output is byte for byte the plain path's ([`ArrowRows::materialize`] gives the same
//! rows as values; a test compares both encodings on random data).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    StringViewArray, UInt64Array,
};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use serde_json::Value;

use super::Series;
use super::sql::cell;
use super::time::format_rfc3339;

/// Rows of one series, by reference into batches shared by the statement's series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArrowRows {
    pub(crate) batches: Arc<Vec<RecordBatch>>,
    /// Column of the time (`Int64` nanoseconds) in every batch.
    pub(crate) time: usize,
    /// Columns of the values, in output order, after the time.
    pub(crate) fields: Vec<usize>,
    /// (batch, row) of each output row, in output order.
    pub(crate) rows: Vec<(u32, u32)>,
}

/// A column downcast once per batch.
enum Col<'a> {
    F64(&'a Float64Array),
    I64(&'a Int64Array),
    U64(&'a UInt64Array),
    Bool(&'a BooleanArray),
    Str(&'a StringArray),
    View(&'a StringViewArray),
    Other(&'a dyn Array),
}

impl<'a> Col<'a> {
    fn of(a: &'a dyn Array) -> Self {
        match a.data_type() {
            DataType::Float64 => Col::F64(a.as_primitive::<Float64Type>()),
            DataType::Int64 => Col::I64(a.as_primitive::<Int64Type>()),
            DataType::UInt64 => Col::U64(a.as_primitive::<UInt64Type>()),
            DataType::Boolean => Col::Bool(a.as_boolean()),
            DataType::Utf8 => Col::Str(a.as_string::<i32>()),
            DataType::Utf8View => Col::View(a.as_string_view()),
            _ => Col::Other(a),
        }
    }

    fn write(&self, out: &mut Vec<u8>, row: usize) {
        let is_null = match self {
            Col::Other(a) => a.is_null(row),
            Col::F64(a) => a.is_null(row),
            Col::I64(a) => a.is_null(row),
            Col::U64(a) => a.is_null(row),
            Col::Bool(a) => a.is_null(row),
            Col::Str(a) => a.is_null(row),
            Col::View(a) => a.is_null(row),
        };
        if is_null {
            out.extend_from_slice(b"null");
            return;
        }
        match self {
            Col::F64(a) => write_f64(out, a.value(row)),
            Col::I64(a) => {
                out.extend_from_slice(itoa::Buffer::new().format(a.value(row)).as_bytes())
            }
            Col::U64(a) => {
                out.extend_from_slice(itoa::Buffer::new().format(a.value(row)).as_bytes())
            }
            Col::Bool(a) => out.extend_from_slice(if a.value(row) { b"true" } else { b"false" }),
            Col::Str(a) => write_str(out, a.value(row)),
            Col::View(a) => write_str(out, a.value(row)),
            Col::Other(a) => write_value(out, &cell(*a, row)),
        }
    }
}

/// A float as the plain path prints it ([`go_number`]): NaN and infinities as `null`, a
/// whole number below 1e15 as an integer, else the shortest representation.
pub(crate) fn write_f64(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
    } else {
        // serde_json's float format (the plain path's), e.g. `1e+29`.
        let _ = serde_json::to_writer(&mut *out, &v);
    }
}

/// A JSON string, escaped as `serde_json` does.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A cell of the plain path, as Go's encoder prints it (whole floats as integers).
pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Number(n) if n.is_f64() => write_f64(out, n.as_f64().unwrap_or(f64::NAN)),
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// A time in nanoseconds: an integer in the `epoch` unit, else an RFC 3339 string.
pub(crate) fn write_time(out: &mut Vec<u8>, ns: i64, epoch_unit: Option<i64>) {
    match epoch_unit {
        Some(unit) => {
            out.extend_from_slice(itoa::Buffer::new().format(ns.div_euclid(unit)).as_bytes())
        }
        None => {
            out.push(b'"');
            let _ = out.write_all(format_rfc3339(ns).as_bytes());
            out.push(b'"');
        }
    }
}

impl ArrowRows {
    /// The rows as JSON arrays, separated by commas: `[t,v1,v2],[t,...]`.
    pub(crate) fn write_rows(&self, out: &mut Vec<u8>, epoch_unit: Option<i64>) {
        let cols: Vec<(Option<&Int64Array>, Vec<Col<'_>>)> = self
            .batches
            .iter()
            .map(|b| {
                let time = b.column(self.time).as_primitive_opt::<Int64Type>();
                let fields = self
                    .fields
                    .iter()
                    .map(|&i| Col::of(b.column(i).as_ref()))
                    .collect();
                (time, fields)
            })
            .collect();
        for (n, &(b, r)) in self.rows.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let (time, fields) = &cols[b as usize];
            let r = r as usize;
            out.push(b'[');
            let ns = time.filter(|t| t.is_valid(r)).map_or(0, |t| t.value(r));
            write_time(out, ns, epoch_unit);
            for f in fields {
                out.push(b',');
                f.write(out, r);
            }
            out.push(b']');
        }
    }

    /// The same rows as the plain path's values (time in nanoseconds first).
    pub(crate) fn materialize(&self) -> Vec<Vec<Value>> {
        self.rows
            .iter()
            .map(|&(b, r)| {
                let batch = &self.batches[b as usize];
                let r = r as usize;
                let time = cell(batch.column(self.time).as_ref(), r)
                    .as_i64()
                    .unwrap_or(0);
                let mut row = Vec::with_capacity(self.fields.len() + 1);
                row.push(Value::from(time));
                row.extend(
                    self.fields
                        .iter()
                        .map(|&i| cell(batch.column(i).as_ref(), r)),
                );
                row
            })
            .collect()
    }
}

/// Raw rows (in output order) cut into one series per tag set: the tags are columns
/// `0..group_tags.len()`, the time (`Int64`) column `time`, then `fields`. `skip` and
/// `take` apply per series. `None` when a batch's time is not `Int64` (the plain path
/// then reads the cells).
#[allow(clippy::too_many_arguments)]
pub(crate) fn raw_series(
    batches: &[RecordBatch],
    name: &str,
    group_tags: &[String],
    time: usize,
    fields: Vec<usize>,
    columns: Vec<String>,
    skip: usize,
    take: usize,
) -> Option<Vec<Series>> {
    if batches
        .iter()
        .any(|b| b.column(time).data_type() != &DataType::Int64)
    {
        return None;
    }
    let tag_cols: Vec<Vec<ArrayRef>> = batches
        .iter()
        .map(|b| {
            (0..group_tags.len())
                .map(|i| arrow::compute::cast(b.column(i), &DataType::Utf8))
                .collect::<Result<_, _>>()
        })
        .collect::<Result<_, _>>()
        .ok()?;
    let mut by_tags: BTreeMap<Vec<&str>, Vec<(u32, u32)>> = BTreeMap::new();
    let mut key: Vec<&str> = Vec::with_capacity(group_tags.len());
    for (b, batch) in batches.iter().enumerate() {
        let tags: Vec<&StringArray> = tag_cols[b].iter().map(|c| c.as_string::<i32>()).collect();
        for r in 0..batch.num_rows() {
            key.clear();
            key.extend(
                tags.iter()
                    .map(|t| if t.is_null(r) { "" } else { t.value(r) }),
            );
            let at = (b as u32, r as u32);
            match by_tags.get_mut(&key[..]) {
                Some(rows) => rows.push(at),
                None => {
                    by_tags.insert(key.clone(), vec![at]);
                }
            }
        }
    }
    let batches = Arc::new(batches.to_vec());
    let out = by_tags
        .into_iter()
        .filter_map(|(tags, rows)| {
            let rows: Vec<(u32, u32)> = rows.into_iter().skip(skip).take(take).collect();
            (!rows.is_empty()).then(|| Series {
                name: Some(name.to_string()),
                tags: (!group_tags.is_empty()).then(|| {
                    group_tags
                        .iter()
                        .cloned()
                        .zip(tags.iter().map(|t| t.to_string()))
                        .collect()
                }),
                columns: columns.clone(),
                values: Vec::new(),
                time_column: true,
                arrow: Some(ArrowRows {
                    batches: Arc::clone(&batches),
                    time,
                    fields: fields.clone(),
                    rows,
                }),
            })
        })
        .collect();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use bulkhead_tsbs::SplitMix64;

    use super::super::StatementResult;
    use super::super::response::{encode, serde_encode};

    fn float(rng: &mut SplitMix64) -> Option<f64> {
        Some(match rng.below(9) {
            0 => return None,
            1 => f64::NAN,
            2 => f64::INFINITY * if rng.chance(50) { 1.0 } else { -1.0 },
            3 => rng.below(2_000_000) as f64 - 1_000_000.0,
            4 => 1e15 + rng.below(1000) as f64,
            5 => (rng.next_u64() as f64) * 1e10,
            6 => -0.0,
            7 => 1.0 / (1 + rng.below(1_000_000)) as f64,
            _ => (rng.next_u64() as i64) as f64 / 1e6,
        })
    }

    fn text(rng: &mut SplitMix64) -> Option<String> {
        const PIECES: [&str; 8] = ["a", "\"", "\\", "\n", "é", "\u{1}", "host_1", " "];
        (!rng.chance(10)).then(|| {
            (0..rng.below(6))
                .map(|_| PIECES[rng.below(8) as usize])
                .collect()
        })
    }

    fn batch(rng: &mut SplitMix64, n: usize) -> RecordBatch {
        let time: Int64Array = (0..n)
            .map(|_| Some(rng.next_u64() as i64 >> rng.below(40)))
            .collect();
        let f: Float64Array = (0..n).map(|_| float(rng)).collect();
        let i: Int64Array = (0..n)
            .map(|_| (!rng.chance(20)).then(|| rng.next_u64() as i64 >> rng.below(63)))
            .collect();
        let u: UInt64Array = (0..n)
            .map(|_| (!rng.chance(20)).then(|| rng.next_u64() >> rng.below(64)))
            .collect();
        let b: BooleanArray = (0..n)
            .map(|_| (!rng.chance(20)).then(|| rng.chance(50)))
            .collect();
        let s: StringArray = (0..n).map(|_| text(rng)).collect();
        let v: StringViewArray = (0..n).map(|_| text(rng)).collect();
        // A type only the plain path's fallback (a cast to text) knows.
        let d = arrow::array::Date32Array::from_iter(
            (0..n).map(|_| (!rng.chance(20)).then(|| rng.below(40_000) as i32)),
        );
        let columns: Vec<ArrayRef> = vec![
            Arc::new(s.clone()),
            Arc::new(time),
            Arc::new(f),
            Arc::new(i),
            Arc::new(u),
            Arc::new(b),
            Arc::new(s),
            Arc::new(v),
            Arc::new(d),
        ];
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(k, c)| Field::new(format!("c{k}"), c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    #[test]
    fn arrow_rows_encode_as_plain_values() {
        for seed in 1..=20u64 {
            let mut rng = SplitMix64(seed);
            let batches: Vec<RecordBatch> = (0..1 + rng.below(3))
                .map(|_| {
                    let n = rng.below(40) as usize;
                    batch(&mut rng, n)
                })
                .collect();
            let batches = Arc::new(batches);
            let mut series = Vec::new();
            for k in 0..1 + rng.below(3) {
                let mut rows = Vec::new();
                for (b, batch) in batches.iter().enumerate() {
                    for r in 0..batch.num_rows() {
                        if rng.chance(60) {
                            rows.push((b as u32, r as u32));
                        }
                    }
                }
                let mut fields: Vec<usize> = (2..9).filter(|_| rng.chance(70)).collect();
                if rng.chance(50) {
                    fields.reverse();
                }
                series.push(Series {
                    name: Some(format!("m{seed}")),
                    tags: (k > 0).then(|| vec![("host".into(), format!("h\"{k}"))]),
                    columns: std::iter::once("time".to_string())
                        .chain(fields.iter().map(|f| format!("c{f}")))
                        .collect(),
                    values: Vec::new(),
                    time_column: true,
                    arrow: Some(ArrowRows {
                        batches: Arc::clone(&batches),
                        time: 1,
                        fields,
                        rows,
                    }),
                });
            }
            let plain: Vec<Series> = series
                .iter()
                .map(|s| Series {
                    values: s.arrow.as_ref().unwrap().materialize(),
                    arrow: None,
                    ..s.clone()
                })
                .collect();
            let fast: Vec<StatementResult> = vec![Ok(series), Err("x".into())];
            let plain: Vec<StatementResult> = vec![Ok(plain), Err("x".into())];
            for unit in [None, Some(1), Some(1_000_000), Some(3_600_000_000_000)] {
                let a = encode(&fast, unit, false);
                let b = encode(&plain, unit, false);
                assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
                let c = serde_encode(&plain, unit, false);
                assert_eq!(
                    String::from_utf8_lossy(&b),
                    String::from_utf8_lossy(&c),
                    "seed {seed}"
                );
                let a = encode(&fast, unit, true);
                let b = encode(&plain, unit, true);
                assert_eq!(
                    String::from_utf8_lossy(&a),
                    String::from_utf8_lossy(&b),
                    "pretty {seed}"
                );
                let parsed: Value = serde_json::from_slice(&a).expect("valid JSON");
                assert!(parsed["results"][0]["series"].is_array());
            }
        }
    }
}
