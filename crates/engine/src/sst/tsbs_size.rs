//! Measures what the series index and the page size cost on a TSBS-like SST (one 2 h
//! segment: hosts × 720 rows, 10 tags, 10 integer fields), and guards the result.
//! `cargo test -p bulkhead-engine --lib tsbs_size -- --nocapture` prints the figures
//! recorded in `docs/benchmarks.md`.

use std::sync::Arc;

use arrow::array::{ArrayRef, DictionaryArray, Int64Array, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use arrow::record_batch::RecordBatch;

use super::series_index::SeriesIndex;
use super::writer::{EncodeOptions, encode};
use crate::schema::ROLE_KEY;

const TAGS: [(&str, usize); 10] = [
    ("arch", 2),
    ("datacenter", 27),
    ("hostname", 0),
    ("os", 3),
    ("rack", 100),
    ("region", 9),
    ("service", 20),
    ("service_environment", 3),
    ("service_version", 2),
    ("team", 4),
];

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// One segment of `hosts` hosts, sorted like an SST (tags in name order, then time).
fn segment(hosts: usize) -> RecordBatch {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut series: Vec<Vec<String>> = (0..hosts)
        .map(|h| {
            TAGS.iter()
                .map(|(name, card)| match *card {
                    0 => format!("host_{h}"),
                    c => format!("{name}_{}", next(&mut rng) % c as u64),
                })
                .collect()
        })
        .collect();
    series.sort();
    let rows = hosts * 720;
    let mut fields = Vec::new();
    let mut tag_cols: Vec<Vec<&str>> = vec![Vec::with_capacity(rows); TAGS.len()];
    let mut times = Vec::with_capacity(rows);
    for s in &series {
        for t in 0..720i64 {
            for (i, v) in s.iter().enumerate() {
                tag_cols[i].push(v);
            }
            times.push(t * 10_000_000_000);
        }
    }
    let mut schema_fields: Vec<Field> = TAGS
        .iter()
        .map(|(n, _)| {
            Field::new(
                *n,
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            )
            .with_metadata([(ROLE_KEY.to_string(), "tag".to_string())].into())
        })
        .collect();
    let mut columns: Vec<ArrayRef> = tag_cols
        .iter()
        .map(|c| Arc::new(c.iter().copied().collect::<DictionaryArray<Int32Type>>()) as ArrayRef)
        .collect();
    for f in 0..10 {
        let mut v = 50i64;
        let values: Vec<i64> = (0..rows)
            .map(|_| {
                v = (v + (next(&mut rng) % 11) as i64 - 5).clamp(0, 100);
                v
            })
            .collect();
        schema_fields.push(Field::new(format!("usage_{f}"), DataType::Int64, true));
        fields.push(Arc::new(Int64Array::from(values)) as ArrayRef);
    }
    columns.extend(fields);
    schema_fields.push(Field::new(
        "time",
        DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, Some("UTC".into())),
        false,
    ));
    columns.push(Arc::new(
        TimestampNanosecondArray::from(times).with_timezone("UTC"),
    ));
    RecordBatch::try_new(Arc::new(Schema::new(schema_fields)), columns).expect("batch")
}

fn report(hosts: usize) -> (usize, usize, usize) {
    let batch = segment(hosts);
    let index = SeriesIndex::build(std::slice::from_ref(&batch)).expect("index");
    assert_eq!(index.series(), hosts);
    let text = index.encode();
    let last = super::last_rows::build(std::slice::from_ref(&batch), &index).expect("last rows");
    let last = super::last_rows::encode(&last).expect("encode last rows");
    let opts = EncodeOptions::test(256 * 1024);
    let ours = encode(std::slice::from_ref(&batch), opts).expect("encode");
    let parquet_default = encode(
        std::slice::from_ref(&batch),
        EncodeOptions {
            page_rows: 20_000,
            ..opts
        },
    )
    .expect("encode");
    println!(
        "tsbs_size: {hosts} hosts: last rows {} B ({:.1} B/series, {:.2}% of the file)",
        last.len(),
        last.len() as f64 / hosts as f64,
        100.0 * last.len() as f64 / ours.len() as f64,
    );
    assert!(
        last.len() * 100 < ours.len() * 5,
        "last rows over 5% of the file"
    );
    println!(
        "tsbs_size: {hosts} hosts, {} rows: series index {} B ({:.2} B/series, {:.3}% of the file); \
         file {} B with {}-row pages, {} B with 20000-row pages (+{:.2}%)",
        batch.num_rows(),
        text.len(),
        text.len() as f64 / hosts as f64,
        100.0 * text.len() as f64 / ours.len() as f64,
        ours.len(),
        opts.page_rows,
        parquet_default.len(),
        100.0 * (ours.len() as f64 / parquet_default.len() as f64 - 1.0),
    );
    (text.len(), ours.len(), parquet_default.len())
}

#[test]
fn index_and_pages_cost_little_at_100_hosts() {
    let (index, ours, default) = report(100);
    assert!(
        index * 100 < ours,
        "index {index} B is over 1% of the {ours} B file"
    );
    assert!(
        ours * 100 < default * 110,
        "small pages cost over 10%: {ours} vs {default}"
    );
}

#[test]
fn index_and_pages_cost_little_at_1000_hosts() {
    let (index, ours, default) = report(1000);
    assert!(
        index * 100 < ours,
        "index {index} B is over 1% of the {ours} B file"
    );
    assert!(
        ours * 100 < default * 110,
        "small pages cost over 10%: {ours} vs {default}"
    );
}
