//! Prometheus remote write 1.0: a snappy (block format) compressed protobuf
//! `prometheus.WriteRequest` in, a [`WriteBatch`] out.
//!
//! [`decode`] is a pure function over untrusted bytes: it never panics, and any input
//! either becomes a whole batch or a [`PromWriteError`] (all-or-nothing: a request with
//! one bad series writes nothing). The mapping, documented in `docs/protocols.md`:
//!
//! - the `__name__` label is the table (any non-empty string, `:` included);
//! - every other label is a tag, the series' labels sorted by name; a label with an
//!   empty value is dropped (in Prometheus an empty label is an absent label);
//! - every sample is one row with the float field `value`, its time in ns (ms × 10⁶);
//! - staleness markers (the NaN with bits [`STALE_NAN_BITS`]) are dropped and counted:
//!   they mark the end of a series, not a measurement; other NaNs and ±Inf are stored;
//! - rejected (400): a missing or empty `__name__`, a metric or label name against the
//!   name rules (`bulkhead_engine::names`: length, control characters), an empty label
//!   name, a label named
//!   `time` or `value` (the row's own columns), a label given twice, more labels than
//!   `limits.max_tags_per_line`, a timestamp whose ns does not fit in an i64;
//! - exemplars and native histograms are ignored (counted), metadata is skipped.

mod proto;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use bulkhead_engine::{FieldType, FieldValue, Row, SmolStr, TableWrite, WriteBatch, names};
use prost::Message as _;

pub use proto::{Label, Sample, TimeSeries, WriteRequest};

use crate::backend::TableColumns;

/// The bit pattern of Prometheus's staleness marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// The label that names the metric.
pub const NAME_LABEL: &str = "__name__";
/// The one field of every row.
pub const VALUE_FIELD: &str = "value";
/// Labels that cannot be tags: the row's own columns.
const RESERVED: [&str; 2] = ["time", VALUE_FIELD];
/// How much of a series' labels an error message shows.
const SERIES_TEXT_BYTES: usize = 200;

/// Why a remote-write body was rejected. Every variant is the client's fault (400),
/// except [`PromWriteError::TooLarge`] (413).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromWriteError {
    #[error("empty body: expected a snappy-compressed protobuf WriteRequest")]
    Empty,
    #[error("body is not valid snappy (block format): {0}")]
    Snappy(String),
    #[error("decompressed body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("body is not a valid protobuf prometheus.WriteRequest: {0}")]
    Protobuf(String),
    /// A well-formed request with a series that cannot be stored; names the series.
    #[error("{0}")]
    Invalid(String),
}

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// Largest decompressed body (`limits.max_body_size`).
    pub max_decompressed: u64,
    /// Most labels per series besides `__name__` (`limits.max_tags_per_line`).
    pub max_labels: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_decompressed: 64 * 1024 * 1024,
            max_labels: 256,
        }
    }
}

/// A decoded request: the rows to write and what was left out.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    pub batch: WriteBatch,
    /// Bytes of protobuf after decompression.
    pub decompressed_bytes: usize,
    pub series: usize,
    /// Staleness markers, dropped.
    pub stale_dropped: usize,
    /// Native histograms and exemplars, ignored.
    pub histograms_ignored: usize,
    pub exemplars_ignored: usize,
}

/// Decode a remote-write body with the default limits (see [`decode_with`]).
pub fn decode(body: &[u8]) -> Result<Decoded, PromWriteError> {
    decode_with(body, &DecodeOptions::default())
}

/// Decompress, decode and map a remote-write body. CPU work: call it on `write`.
pub fn decode_with(body: &[u8], opts: &DecodeOptions) -> Result<Decoded, PromWriteError> {
    let raw = decompress(body, opts.max_decompressed)?;
    let request = WriteRequest::decode(raw.as_slice())
        .map_err(|e| PromWriteError::Protobuf(e.to_string()))?;
    let mut decoded = to_batch(request, opts.max_labels)?;
    decoded.decompressed_bytes = raw.len();
    Ok(decoded)
}

/// Snappy-compress and encode `request`, as a Prometheus server sends it (for tests,
/// fuzz seeds and clients).
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    let raw = request.encode_to_vec();
    // Compressing a slice can only fail for inputs over ~4 GiB.
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// Snappy block decompression, refusing (before allocating) a declared size over `limit`.
fn decompress(body: &[u8], limit: u64) -> Result<Vec<u8>, PromWriteError> {
    if body.is_empty() {
        return Err(PromWriteError::Empty);
    }
    let size =
        snap::raw::decompress_len(body).map_err(|e| PromWriteError::Snappy(e.to_string()))?;
    if size as u64 > limit {
        return Err(PromWriteError::TooLarge {
            size: size as u64,
            limit,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| PromWriteError::Snappy(e.to_string()))
}

/// Map a decoded request to rows (see the module docs), validating every series first.
pub fn to_batch(request: WriteRequest, max_labels: usize) -> Result<Decoded, PromWriteError> {
    let mut out = Decoded {
        series: request.timeseries.len(),
        ..Decoded::default()
    };
    let mut table_index: HashMap<String, usize> = HashMap::new();
    for series in request.timeseries {
        out.histograms_ignored += series.histograms.len();
        out.exemplars_ignored += series.exemplars.len();
        let (metric, tags) = split_labels(&series.labels, max_labels)?;
        let mut rows = Vec::with_capacity(series.samples.len());
        for s in &series.samples {
            if s.value.to_bits() == STALE_NAN_BITS {
                out.stale_dropped += 1;
                continue;
            }
            let time = s.timestamp.checked_mul(1_000_000).ok_or_else(|| {
                PromWriteError::Invalid(format!(
                    "timestamp {} ms of series {} is out of range (must fit in i64 nanoseconds)",
                    s.timestamp,
                    series_text(&series.labels)
                ))
            })?;
            rows.push(Row {
                tags: tags.clone(),
                fields: vec![(SmolStr::new_static(VALUE_FIELD), FieldValue::F64(s.value))],
                time,
            });
        }
        if rows.is_empty() {
            continue;
        }
        let index = match table_index.get(metric) {
            Some(i) => *i,
            None => {
                out.batch.tables.push(TableWrite {
                    table: metric.to_string(),
                    rows: Vec::new(),
                });
                let i = out.batch.tables.len() - 1;
                table_index.insert(metric.to_string(), i);
                i
            }
        };
        if let Some(t) = out.batch.tables.get_mut(index) {
            t.rows.extend(rows);
        }
    }
    Ok(out)
}

/// A row's tags: (name, value) pairs.
type Tags = Vec<(SmolStr, SmolStr)>;

/// The metric name and the tags (sorted by name) of one series, or why it is invalid.
fn split_labels(labels: &[Label], max_labels: usize) -> Result<(&str, Tags), PromWriteError> {
    let invalid =
        |what: String| PromWriteError::Invalid(format!("series {}: {what}", series_text(labels)));
    let mut seen: HashSet<&str> = HashSet::with_capacity(labels.len());
    let mut metric: Option<&str> = None;
    let mut tags = Vec::with_capacity(labels.len().saturating_sub(1));
    for l in labels {
        if l.name.is_empty() {
            return Err(invalid("a label has an empty name".into()));
        }
        if l.name != NAME_LABEL
            && let Err(e) = names::check_column(&l.name)
        {
            return Err(invalid(format!("label name {e}")));
        }
        if !seen.insert(l.name.as_str()) {
            return Err(invalid(format!("label `{}` appears twice", l.name)));
        }
        if l.name == NAME_LABEL {
            metric = Some(l.value.as_str());
            continue;
        }
        if RESERVED.contains(&l.name.as_str()) {
            return Err(invalid(format!(
                "label `{}` collides with the column `{}` of every Prometheus table; \
                 rename it with write_relabel_configs",
                l.name, l.name
            )));
        }
        if !l.value.is_empty() {
            tags.push((SmolStr::new(&l.name), SmolStr::new(&l.value)));
        }
    }
    let metric = match metric {
        Some(m) if !m.is_empty() => m,
        Some(_) => return Err(invalid("the metric name (`__name__`) is empty".into())),
        None => return Err(invalid("no metric name (`__name__` label)".into())),
    };
    if let Err(e) = names::check_table(metric) {
        return Err(invalid(format!("the metric name (`__name__`) {e}")));
    }
    if tags.len() > max_labels {
        return Err(invalid(format!(
            "{} labels, more than the limit of {max_labels} (limits.max_tags_per_line)",
            tags.len()
        )));
    }
    tags.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok((metric, tags))
}

/// `{a="1", b="2"}`, cut to about [`SERIES_TEXT_BYTES`] bytes.
fn series_text(labels: &[Label]) -> String {
    let mut s = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if s.len() > SERIES_TEXT_BYTES {
            s.push_str(", ...");
            break;
        }
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}={:?}", l.name, l.value);
    }
    s.push('}');
    if s.len() > SERIES_TEXT_BYTES * 2 {
        let mut cut = SERIES_TEXT_BYTES * 2;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Check `batch` against the existing tables (`columns(table)`, `None` for a new one):
/// `value` must be a float field there, and no label may be one of its fields. The
/// engine would reject such a batch too, but this says which metric and label is at
/// fault. Called on `write`, before anything is written.
pub fn check_schema(
    batch: &WriteBatch,
    columns: impl Fn(&str) -> Option<TableColumns>,
) -> Result<(), PromWriteError> {
    for t in &batch.tables {
        let Some(existing) = columns(&t.table) else {
            continue;
        };
        if let Some(ty) = existing.fields.get(VALUE_FIELD)
            && *ty != FieldType::F64
        {
            return Err(PromWriteError::Invalid(format!(
                "schema conflict in table `{}`: column `value` has type {ty}, Prometheus \
                 samples are float; write this metric to another database",
                t.table
            )));
        }
        if existing.tags.contains(VALUE_FIELD) {
            return Err(PromWriteError::Invalid(format!(
                "schema conflict in table `{}`: `value` is a tag there, Prometheus samples \
                 need it as a float field; write this metric to another database",
                t.table
            )));
        }
        let mut checked: HashSet<&str> = HashSet::new();
        for row in &t.rows {
            for (name, _) in &row.tags {
                if checked.insert(name.as_str()) && existing.fields.contains_key(name.as_str()) {
                    return Err(PromWriteError::Invalid(format!(
                        "schema conflict in table `{}`: label `{name}` is a field there, \
                         not a tag",
                        t.table
                    )));
                }
            }
        }
    }
    Ok(())
}
