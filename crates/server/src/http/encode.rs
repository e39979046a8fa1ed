//! Result encoders for `/api/v1/sql`: JSON (array of row objects), CSV (RFC 4180 with a
//! header) and Arrow IPC stream. Each yields chunks as batches arrive, so large results
//! stream instead of being built in memory. CPU work: run on `query`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamWriter;
use arrow::json::writer::JsonArray;
use bytes::Bytes;

/// Output format of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
    Arrow,
}

impl Format {
    pub(crate) fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.unwrap_or("json") {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "arrow" | "arrow-ipc" => Ok(Format::Arrow),
            other => Err(format!(
                "unknown format `{other}` (expected json, csv or arrow)"
            )),
        }
    }

    pub(super) fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// A `Write` whose bytes are taken out between batches.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn take(&self) -> Bytes {
        match self.0.lock() {
            Ok(mut v) => Bytes::from(std::mem::take(&mut *v)),
            Err(_) => Bytes::new(),
        }
    }
}

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned buffer"))?
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Writer {
    Json(arrow::json::Writer<SharedBuf, JsonArray>),
    Csv(Box<arrow::csv::Writer<SharedBuf>>),
    Arrow(StreamWriter<SharedBuf>),
}

/// Streams one result set in one format.
pub(super) struct Encoder {
    buf: SharedBuf,
    writer: Writer,
}

impl Encoder {
    /// Start a result; the first chunk (CSV header, IPC schema) is available at once.
    pub(super) fn new(format: Format, schema: &SchemaRef) -> Result<Self, ArrowError> {
        let buf = SharedBuf::default();
        let writer = match format {
            Format::Json => Writer::Json(
                arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, JsonArray>(buf.clone()),
            ),
            Format::Csv => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(buf.clone());
                // The header is written with the first batch: write an empty one so that
                // empty results still have it.
                w.write(&RecordBatch::new_empty(Arc::clone(schema)))?;
                Writer::Csv(Box::new(w))
            }
            Format::Arrow => Writer::Arrow(StreamWriter::try_new(buf.clone(), schema)?),
        };
        Ok(Self { buf, writer })
    }

    /// Bytes produced so far and not yet taken.
    pub(super) fn take(&self) -> Bytes {
        self.buf.take()
    }

    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<Bytes, ArrowError> {
        match &mut self.writer {
            Writer::Json(w) => w.write(batch)?,
            Writer::Csv(w) => w.write(batch)?,
            Writer::Arrow(w) => w.write(batch)?,
        }
        Ok(self.take())
    }

    pub(super) fn finish(&mut self) -> Result<Bytes, ArrowError> {
        match &mut self.writer {
            Writer::Json(w) => w.finish()?,
            Writer::Csv(_) => {}
            Writer::Arrow(w) => w.finish()?,
        }
        Ok(self.take())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a,\"b\""), None])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(2.0)])),
                Arc::new(Int64Array::from(vec![Some(7), None])),
            ],
        )
        .unwrap()
    }

    fn encode(format: Format, batches: &[RecordBatch]) -> Vec<u8> {
        let schema = batch().schema();
        let mut e = Encoder::new(format, &schema).unwrap();
        let mut out = e.take().to_vec();
        for b in batches {
            out.extend_from_slice(&e.write(b).unwrap());
        }
        out.extend_from_slice(&e.finish().unwrap());
        out
    }

    #[test]
    fn json_is_an_array_of_row_objects() {
        let out = encode(Format::Json, &[batch(), batch()]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let rows = v.as_array().unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0]["host"], "a,\"b\"");
        assert_eq!(rows[0]["v"], 1.5);
        assert_eq!(rows[1]["n"], serde_json::Value::Null);
        assert_eq!(encode(Format::Json, &[]), b"[]");
    }

    #[test]
    fn csv_has_a_header_and_quotes_per_rfc4180() {
        let out = String::from_utf8(encode(Format::Csv, &[batch()])).unwrap();
        assert_eq!(out, "host,v,n\n\"a,\"\"b\"\"\",1.5,7\n,2.0,\n");
        let empty = String::from_utf8(encode(Format::Csv, &[])).unwrap();
        assert_eq!(empty, "host,v,n\n");
    }

    #[test]
    fn arrow_ipc_round_trips() {
        let out = encode(Format::Arrow, &[batch(), batch()]);
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(out), None).unwrap();
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0], batch());
    }

    #[test]
    fn formats_parse() {
        assert_eq!(Format::parse(None).unwrap(), Format::Json);
        assert_eq!(Format::parse(Some("csv")).unwrap(), Format::Csv);
        assert!(Format::parse(Some("xml")).unwrap_err().contains("`xml`"));
    }
}
