//! Hooks for the criterion benches (`benches/engine.rs`, feature `bench-support`): TSBS
//! cpu-only rows from the shared generator and direct access to memtable insert and SST encoding. Not a stable API.

use crate::error::Result;
use crate::memtable::{Memtable, RowResolver, TimeRange};
use crate::model::{FieldType, FieldValue, Row, SmolStr};
use crate::schema::TableSchema;
use crate::sst::writer::{EncodeOptions, encode};

/// TSBS cpu-only rows from the shared generator (`bulkhead-tsbs`): `hosts` hosts, one
/// row per host every 10 s for `steps` steps, 10 tags, 10 integer fields. Rows are in
/// time order (all hosts at t0, then t1, ...), like the TSBS generator.
pub fn tsbs_cpu_rows(hosts: usize, steps: usize, seed: u64) -> Vec<Row> {
    let mut generator = bulkhead_tsbs::Generator::new(hosts, bulkhead_tsbs::DEFAULT_START_NS, seed);
    let mut rows = Vec::with_capacity(hosts * steps);
    for _ in 0..steps {
        generator.for_each_in_interval(|r| {
            rows.push(Row {
                tags: r
                    .tags
                    .iter()
                    .map(|(k, v)| (SmolStr::new_static(k), SmolStr::new(v)))
                    .collect(),
                fields: bulkhead_tsbs::FIELDS
                    .iter()
                    .zip(r.fields)
                    .map(|(n, v)| (SmolStr::new_static(n), FieldValue::I64(*v)))
                    .collect(),
                time: r.time,
            });
        });
    }
    rows
}

/// A memtable and its schema, built from rows.
#[derive(Debug)]
pub struct BenchMemtable {
    mem: Memtable,
    schema: TableSchema,
}

/// The schema of `rows` (all tags and fields they use).
fn schema_of(rows: &[Row]) -> TableSchema {
    let mut schema = TableSchema::default();
    for r in rows {
        for (k, _) in &r.tags {
            schema.add_tag(k);
        }
        for (k, v) in &r.fields {
            let ty: FieldType = v.field_type();
            schema.add_field(k, ty);
        }
    }
    schema
}

/// Insert `rows` into a fresh memtable (2 h segments), as the write path does.
pub fn memtable_insert(rows: &[Row]) -> Result<BenchMemtable> {
    let schema = schema_of(rows);
    let mut mem = Memtable::default();
    let mut resolver = RowResolver::new(&schema);
    for (seq, r) in rows.iter().enumerate() {
        mem.insert_resolved(&mut resolver, r, seq as u64 + 1, 7_200_000_000_000)?;
    }
    Ok(BenchMemtable { mem, schema })
}

impl BenchMemtable {
    pub fn bytes(&self) -> usize {
        self.mem.bytes()
    }

    pub fn rows(&self) -> usize {
        self.mem.rows()
    }

    /// Sort + encode everything as one Parquet SST, as a flush does; returns its size.
    pub fn encode_sst(&self) -> Result<usize> {
        self.encode_sst_with(3, crate::config::IntegerCompression::Lz4)
    }

    /// [`Self::encode_sst`] with another zstd level and integer codec.
    pub fn encode_sst_with(
        &self,
        zstd_level: i32,
        integers: crate::config::IntegerCompression,
    ) -> Result<usize> {
        let Some(batch) = self.mem.to_batch(&self.schema, TimeRange::ALL, None)? else {
            return Ok(0);
        };
        let bytes = encode(
            &[batch],
            EncodeOptions {
                row_group_size: 256 * 1024,
                zstd_level,
                integers,
                page_rows: crate::sst::writer::PAGE_ROWS,
            },
        )?;
        Ok(bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the encoding choices on deterministic TSBS data: integer fields must stay
    /// delta-encoded (~0.53 B/value; plain or dictionary encoding is > 0.8) and tags
    /// nearly free. Prints every column's size (run with `--nocapture`).
    #[test]
    fn tsbs_segment_encodes_compactly() {
        let rows = tsbs_cpu_rows(20, 720, 7);
        let mem = memtable_insert(&rows).expect("insert");
        let batch = mem
            .mem
            .to_batch(&mem.schema, TimeRange::ALL, None)
            .expect("batch")
            .expect("rows");
        let bytes = encode(&[batch], EncodeOptions::test(256 * 1024)).expect("encode");
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(bytes.clone())
            .expect("reader");
        use parquet::file::reader::FileReader;
        let md = reader.metadata();
        let mut total = 0i64;
        let (mut fields, mut tags) = (0i64, 0i64);
        for rg in md.row_groups() {
            for c in rg.columns() {
                let name = c.column_path().string();
                if name.starts_with("usage_") {
                    fields += c.compressed_size();
                } else if name != "time" {
                    tags += c.compressed_size();
                }
                let enc: Vec<_> = c.encodings().collect();
                println!(
                    "{:>24} {:>8} {:?}",
                    c.column_path().string(),
                    c.compressed_size(),
                    enc
                );
                total += c.compressed_size();
            }
        }
        let values = rows.len() as f64 * 10.0;
        println!(
            "columns {total} B, file {} B, {:.3} B/value",
            bytes.len(),
            bytes.len() as f64 / values
        );
        let field_bpv = fields as f64 / values;
        assert!(
            field_bpv < 0.6,
            "integer fields take {field_bpv:.3} B/value"
        );
        assert!(
            (tags as f64) < 0.05 * total as f64,
            "tags take {tags} of {total} bytes"
        );
    }
}
