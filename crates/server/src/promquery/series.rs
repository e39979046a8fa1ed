//! Turning a selector scan's rows (tag columns, `time` as ms-able integers, `value`) into
//! series: rows of one series arrive together, so a row whose tag dictionary keys equal
//! the previous row's joins the same series without building or hashing its label key.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use bulkhead_promql::{Error, Labels, NAME, RawSeries};

/// One tag column of a batch, as the scan returned it.
enum TagColumn<'a> {
    /// `Dictionary(Int32, Utf8)`, the engine's tag type: equal keys, equal values.
    Dict {
        keys: &'a arrow::array::Int32Array,
        values: &'a StringArray,
    },
    /// Anything else, cast to strings.
    Plain(StringArray),
}

impl TagColumn<'_> {
    fn value(&self, row: usize) -> Option<&str> {
        match self {
            TagColumn::Dict { keys, values } => {
                let k = keys.is_valid(row).then(|| keys.value(row) as usize)?;
                values.is_valid(k).then(|| values.value(k))
            }
            TagColumn::Plain(s) => s.is_valid(row).then(|| s.value(row)),
        }
    }

    /// Whether rows `a` and `b` certainly have the same value (false may still be equal).
    fn same(&self, a: usize, b: usize) -> bool {
        match self {
            TagColumn::Dict { keys, .. } => match (keys.is_null(a), keys.is_null(b)) {
                (true, true) => true,
                (false, false) => keys.value(a) == keys.value(b),
                _ => false,
            },
            TagColumn::Plain(s) => match (s.is_null(a), s.is_null(b)) {
                (true, true) => true,
                (false, false) => s.value(a) == s.value(b),
                _ => false,
            },
        }
    }
}

fn tag_column(col: &ArrayRef) -> Result<TagColumn<'_>, Error> {
    if let Some(d) = col.as_dictionary_opt::<Int32Type>()
        && let Some(values) = d.values().as_string_opt::<i32>()
    {
        return Ok(TagColumn::Dict {
            keys: d.keys(),
            values,
        });
    }
    let c = cast(col, &DataType::Utf8).map_err(|e| Error::Execution(e.to_string()))?;
    Ok(TagColumn::Plain(c.as_string::<i32>().clone()))
}

/// Series built from scan batches: `tags` name the first columns, then `time` (ns, as
/// integers) and `value`. Rows with a null time or value are skipped; samples keep the
/// order they were read in (the caller sorts them).
pub(crate) struct SeriesBuilder<'a> {
    metric: &'a str,
    tags: &'a [String],
    index: HashMap<Vec<Option<String>>, usize>,
    pub(crate) series: Vec<RawSeries>,
}

impl<'a> SeriesBuilder<'a> {
    pub(crate) fn new(metric: &'a str, tags: &'a [String]) -> Self {
        Self {
            metric,
            tags,
            index: HashMap::new(),
            series: Vec::new(),
        }
    }

    /// Add the rows of `b`.
    pub(crate) fn add(&mut self, b: &RecordBatch) -> Result<(), Error> {
        let n = self.tags.len();
        let cols: Vec<TagColumn<'_>> = (0..n)
            .map(|i| tag_column(b.column(i)))
            .collect::<Result<_, _>>()?;
        let times = b.column(n).as_primitive::<Int64Type>();
        let values = cast(b.column(n + 1), &DataType::Float64)
            .map_err(|e| Error::Execution(e.to_string()))?;
        let values = values.as_primitive::<Float64Type>();
        // The series of the last row looked up, and that row.
        let mut current: Option<(usize, usize)> = None;
        for row in 0..b.num_rows() {
            if values.is_null(row) || times.is_null(row) {
                continue;
            }
            let s = match current {
                Some((prev, s)) if cols.iter().all(|c| c.same(prev, row)) => s,
                _ => self.lookup(&cols, row),
            };
            current = Some((row, s));
            let series = &mut self.series[s];
            series.times.push(times.value(row).div_euclid(1_000_000));
            series.values.push(values.value(row));
        }
        Ok(())
    }

    fn lookup(&mut self, cols: &[TagColumn<'_>], row: usize) -> usize {
        let key: Vec<Option<String>> = cols
            .iter()
            .map(|c| c.value(row).map(str::to_string))
            .collect();
        if let Some(&s) = self.index.get(&key) {
            return s;
        }
        let mut pairs = vec![(NAME.to_string(), self.metric.to_string())];
        for (name, v) in self.tags.iter().zip(&key) {
            if let Some(v) = v {
                pairs.push((name.clone(), v.clone()));
            }
        }
        self.series.push(RawSeries {
            labels: Labels::new(pairs),
            times: Vec::new(),
            values: Vec::new(),
        });
        self.index.insert(key, self.series.len() - 1);
        self.series.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{DictionaryArray, Float64Array, Int64Array};
    use arrow::datatypes::{Field, Schema};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The plain path: one string key per row, hashed for every row (what the reader
    /// did before the builder).
    fn per_row(batches: &[RecordBatch], metric: &str, tags: &[String]) -> Vec<RawSeries> {
        let mut series: HashMap<Vec<Option<String>>, RawSeries> = HashMap::new();
        for b in batches {
            let cols: Vec<StringArray> = (0..tags.len())
                .map(|i| {
                    cast(b.column(i), &DataType::Utf8)
                        .unwrap()
                        .as_string::<i32>()
                        .clone()
                })
                .collect();
            let times = b.column(tags.len()).as_primitive::<Int64Type>();
            let values = cast(b.column(tags.len() + 1), &DataType::Float64).unwrap();
            let values = values.as_primitive::<Float64Type>();
            for row in 0..b.num_rows() {
                if values.is_null(row) || times.is_null(row) {
                    continue;
                }
                let key: Vec<Option<String>> = cols
                    .iter()
                    .map(|c| (!c.is_null(row)).then(|| c.value(row).to_string()))
                    .collect();
                let s = series.entry(key).or_insert_with_key(|key| {
                    let mut pairs = vec![(NAME.to_string(), metric.to_string())];
                    for (name, v) in tags.iter().zip(key) {
                        if let Some(v) = v {
                            pairs.push((name.clone(), v.clone()));
                        }
                    }
                    RawSeries {
                        labels: Labels::new(pairs),
                        times: Vec::new(),
                        values: Vec::new(),
                    }
                });
                s.times.push(times.value(row).div_euclid(1_000_000));
                s.values.push(values.value(row));
            }
        }
        let mut out: Vec<RawSeries> = series.into_values().collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    fn random_batch(rng: &mut StdRng, tags: &[String]) -> RecordBatch {
        let rows = rng.random_range(0..60);
        // Runs of one series, as the engine returns them, with some shuffling.
        let mut keys: Vec<Vec<Option<i32>>> = Vec::new();
        while keys.len() < rows {
            let series: Vec<Option<i32>> = tags
                .iter()
                .map(|_| (rng.random_range(0..5) > 0).then(|| rng.random_range(0..6)))
                .collect();
            for _ in 0..rng.random_range(1..8) {
                keys.push(series.clone());
            }
        }
        keys.truncate(rows);
        if rng.random_bool(0.3) {
            for i in (1..keys.len()).rev() {
                keys.swap(i, rng.random_range(0..=i));
            }
        }
        let mut fields = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        for (t, name) in tags.iter().enumerate() {
            // Dictionaries with duplicate values (two keys, one value) and, in one
            // column in three, plain strings.
            let dict = StringArray::from(vec!["a", "b", "a", "c", "d", "b"]);
            let k: arrow::array::Int32Array = keys.iter().map(|s| s[t]).collect();
            let col: ArrayRef =
                Arc::new(DictionaryArray::<Int32Type>::try_new(k, Arc::new(dict)).unwrap());
            let col = if rng.random_range(0..3) == 0 {
                cast(&col, &DataType::Utf8).unwrap()
            } else {
                col
            };
            fields.push(Field::new(name, col.data_type().clone(), true));
            cols.push(col);
        }
        let times: Int64Array = (0..rows)
            .map(|_| (rng.random_range(0..10) > 0).then(|| rng.random_range(0..1_000_000_000)))
            .collect();
        let values: Float64Array = (0..rows)
            .map(|_| (rng.random_range(0..10) > 0).then(|| rng.random_range(0..100) as f64))
            .collect();
        fields.push(Field::new("time", DataType::Int64, true));
        fields.push(Field::new("value", DataType::Float64, true));
        cols.push(Arc::new(times));
        cols.push(Arc::new(values));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    }

    #[test]
    fn runs_of_keys_give_the_same_series_as_a_key_per_row() {
        let mut rng = StdRng::seed_from_u64(16);
        for case in 0..300 {
            let tags: Vec<String> = (0..rng.random_range(0..4))
                .map(|i| format!("t{i}"))
                .collect();
            let batches: Vec<RecordBatch> = (0..rng.random_range(1..5))
                .map(|_| random_batch(&mut rng, &tags))
                .collect();
            let mut builder = SeriesBuilder::new("m", &tags);
            for b in &batches {
                builder.add(b).unwrap();
            }
            let mut got = builder.series;
            got.sort_by(|a, b| a.labels.cmp(&b.labels));
            let want = per_row(&batches, "m", &tags);
            assert_eq!(got.len(), want.len(), "case {case}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.labels, w.labels, "case {case}");
                assert_eq!(g.times, w.times, "case {case}");
                assert_eq!(g.values, w.values, "case {case}");
            }
        }
    }
}
