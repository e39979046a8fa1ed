//! Fuzz-target bodies for the server's input parsers (not a public API).
//!
//! The `fuzz/` crate (cargo-fuzz) and the corpus regression tests
//! (`tests/fuzz_corpus.rs`) call these same functions, so a corpus file means the same
//! thing to both. Each function panics when an invariant breaks; bad input itself must
//! only ever produce an error value.

use std::collections::HashSet;

use axum::http::{StatusCode, Uri};
use bulkhead_engine::{FieldType, FieldValue, WriteBatch};

use crate::backend::TableColumns;
use crate::http::encode::Format;
use crate::http::sql::parse_request;
use crate::lineproto::serialize::to_line;
use crate::lineproto::{
    ERROR_LINE_BYTES, ParseOptions, Parsed, Precision, parse, reject_conflicting_rows,
};
use crate::promwrite::{
    self, DecodeOptions, Decoded, Label, NAME_LABEL, STALE_NAN_BITS, Sample, TimeSeries,
    VALUE_FIELD, WriteRequest,
};

/// Line protocol: parse `data` as a write body with small limits. Invariants: every
/// physical line is accounted for at most once (a row or an error, never both); every
/// error carries a 1-based line number inside the body and a short excerpt; rows and
/// their origins line up; every parsed row, serialized again, parses back to itself;
/// other precisions and the per-line schema-conflict pass never panic and lose no line.
pub fn line_protocol(data: &[u8]) {
    let opts = ParseOptions {
        precision: Precision::Nanoseconds,
        default_time: 1_700_000_000_000_000_000,
        max_line_length: 512,
        max_tags: 8,
        max_fields: 16,
    };
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut parsed = parse(data, &opts);
    check_shape(data, lines, &parsed, true);

    // parse(serialize(row)) == row, with limits that cannot reject it.
    let roomy = ParseOptions {
        max_line_length: usize::MAX,
        max_tags: usize::MAX,
        max_fields: usize::MAX,
        ..ParseOptions::default()
    };
    for table in &parsed.batch.tables {
        assert!(!table.table.is_empty(), "empty measurement accepted");
        assert_eq!(
            bulkhead_engine::names::check_table(&table.table),
            Ok(()),
            "a measurement against the name rules accepted"
        );
        for row in &table.rows {
            assert!(!row.fields.is_empty(), "row without fields accepted");
            assert!(row.tags.len() <= opts.max_tags && row.fields.len() <= opts.max_fields);
            let line = to_line(&table.table, row);
            let again = parse(line.as_bytes(), &roomy);
            assert!(
                again.errors.is_empty(),
                "re-serialized line rejected: {line:?}: {:?}",
                again.errors
            );
            assert_eq!(again.batch.tables.len(), 1, "{line:?}");
            assert_eq!(again.batch.tables[0].table, table.table, "{line:?}");
            assert_eq!(again.batch.tables[0].rows, vec![row.clone()], "{line:?}");
        }
    }

    // Timestamps that overflow at coarser precisions are errors, not panics.
    for precision in [Precision::Microseconds, Precision::Seconds] {
        let other = parse(
            data,
            &ParseOptions {
                precision,
                ..opts.clone()
            },
        );
        check_shape(data, lines, &other, true);
        assert_eq!(
            other.batch.row_count() + other.errors.len(),
            parsed.batch.row_count() + parsed.errors.len(),
            "precision changes which lines fail, not how many lines there are"
        );
    }

    // The per-line schema check against an existing table `cpu`.
    let before = parsed.batch.row_count() + parsed.errors.len();
    reject_conflicting_rows(&mut parsed, data, |table| {
        (table == "cpu").then(|| TableColumns {
            tags: ["host".to_string()].into_iter().collect(),
            fields: [
                ("usage".to_string(), FieldType::F64),
                ("n".to_string(), FieldType::I64),
            ]
            .into_iter()
            .collect(),
        })
    });
    check_shape(data, lines, &parsed, false);
    assert_eq!(parsed.batch.row_count() + parsed.errors.len(), before);
    assert!(
        parsed
            .errors
            .windows(2)
            .all(|w| w[0].line_number <= w[1].line_number),
        "errors sorted by line"
    );
}

fn check_shape(data: &[u8], lines: usize, parsed: &Parsed, with_origins: bool) {
    let mut used = HashSet::new();
    for e in &parsed.errors {
        assert!(
            (1..=lines).contains(&e.line_number),
            "line number {} outside 1..={lines}",
            e.line_number
        );
        assert!(!e.error_message.is_empty());
        assert!(e.original_line.chars().count() <= ERROR_LINE_BYTES, "{e:?}");
        assert!(
            used.insert(e.line_number),
            "two errors for line {}",
            e.line_number
        );
    }
    if with_origins {
        assert_eq!(parsed.origins.len(), parsed.batch.tables.len());
        for (table, origins) in parsed.batch.tables.iter().zip(&parsed.origins) {
            assert_eq!(table.rows.len(), origins.len());
            for o in origins {
                assert!(o.start <= o.end && o.end <= data.len(), "{o:?}");
                assert!((1..=lines).contains(&o.line_number), "{o:?}");
                assert!(
                    used.insert(o.line_number),
                    "line {} used twice",
                    o.line_number
                );
            }
        }
    }
    assert!(parsed.batch.row_count() + parsed.errors.len() <= lines);
}

/// HTTP query parameters → SQL request. `data` is `query string \0 content type \0
/// body` (missing parts are empty). Invariants: a query string hyper would accept
/// never panics the parser; a failure is a 400 with a message; an accepted request has
/// a non-blank `db` and `q` and survives being sent again as a JSON body and as a
/// percent-encoded query string.
pub fn sql_params(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == 0);
    let query = parts.next().unwrap_or_default();
    let content_type = parts.next().and_then(|c| std::str::from_utf8(c).ok());
    let body = parts.next().unwrap_or_default();
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    // What the server sees has been through hyper's URI parser.
    let Ok(uri) = Uri::try_from(format!("/api/v1/sql?{query}")) else {
        return;
    };
    let req = match parse_request(&uri, content_type, body) {
        Ok(req) => req,
        Err(e) => {
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e}");
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(!req.db.trim().is_empty() && !req.q.trim().is_empty());
    let format = match req.format {
        Format::Json => "json",
        Format::Csv => "csv",
        Format::Arrow => "arrow",
    };
    let timeout = req
        .timeout
        .map(|t| crate::config::HumanDuration(t).to_string());
    let json =
        serde_json::json!({ "db": req.db, "q": req.q, "format": format, "timeout": timeout });
    let plain = Uri::from_static("/api/v1/sql");
    let again = parse_request(
        &plain,
        Some("application/json"),
        json.to_string().as_bytes(),
    )
    .expect("a request re-sent as JSON parses");
    assert_eq!(again, req);
    let mut uri = format!(
        "/api/v1/sql?db={}&q={}&format={format}",
        percent_encode(&req.db),
        percent_encode(&req.q)
    );
    if let Some(t) = &timeout {
        uri.push_str(&format!("&timeout={t}"));
    }
    let uri = Uri::try_from(uri).expect("a percent-encoded query string is a valid URI");
    let again = parse_request(&uri, None, b"").expect("a request re-sent as GET parses");
    assert_eq!(again, req);
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Prometheus remote write: `data` is decoded twice, as the (snappy-compressed) request
/// body, and snappy-compressed first so that the fuzzer reaches the protobuf decoder and
/// the mapping. Invariants: no panic; a rejection has a message; an accepted request's
/// rows have a non-empty table, only the `value` field, sorted unique tags within the
/// label limit and none named `time` or `value`, no staleness marker; and
/// the rows, encoded again as a request, decode to the same rows (NaNs bit for bit).
pub fn remote_write(data: &[u8]) {
    let opts = DecodeOptions {
        max_decompressed: 1 << 20,
        max_labels: 8,
    };
    check_remote_write(promwrite::decode_with(data, &opts), &opts);
    // Compressing a slice cannot fail for inputs this small.
    if let Ok(body) = snap::raw::Encoder::new().compress_vec(data) {
        check_remote_write(promwrite::decode_with(&body, &opts), &opts);
    }
}

fn check_remote_write(result: Result<Decoded, promwrite::PromWriteError>, opts: &DecodeOptions) {
    let decoded = match result {
        Ok(d) => d,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let mut request = WriteRequest::default();
    for table in &decoded.batch.tables {
        assert!(!table.table.is_empty(), "empty metric name accepted");
        assert_eq!(
            bulkhead_engine::names::check_table(&table.table),
            Ok(()),
            "a metric name against the name rules accepted"
        );
        assert!(!table.rows.is_empty());
        for row in &table.rows {
            assert!(row.tags.len() <= opts.max_labels);
            assert!(
                row.tags.windows(2).all(|w| w[0].0 < w[1].0),
                "tags sorted and unique"
            );
            assert!(row.tags.iter().all(|(k, v)| !k.is_empty()
                && !v.is_empty()
                && k != "time"
                && k != VALUE_FIELD
                && k != NAME_LABEL));
            let [(name, FieldValue::F64(value))] = row.fields.as_slice() else {
                panic!("a row must have exactly the float field `value`: {row:?}");
            };
            assert_eq!(name, VALUE_FIELD);
            assert_ne!(value.to_bits(), STALE_NAN_BITS, "staleness marker stored");
            assert_eq!(row.time % 1_000_000, 0, "times are whole milliseconds");
            let mut labels = vec![Label::new(NAME_LABEL, table.table.clone())];
            labels.extend(
                row.tags
                    .iter()
                    .map(|(k, v)| Label::new(k.clone(), v.clone())),
            );
            request.timeseries.push(TimeSeries {
                labels,
                samples: vec![Sample {
                    value: *value,
                    timestamp: row.time / 1_000_000,
                }],
                exemplars: Vec::new(),
                histograms: Vec::new(),
            });
        }
    }
    let again = promwrite::decode_with(&promwrite::encode(&request), opts)
        .expect("accepted rows, encoded again, decode");
    assert_eq!(fingerprint(&again.batch), fingerprint(&decoded.batch));
}

/// A batch as comparable text, floats by their bits (NaN != NaN under `==`), except
/// that -0.0 counts as 0.0: prost's proto3 encoding omits a double equal to 0.0, so
/// `promwrite::encode` sends -0.0 as an absent value (found by fuzzing; the decoder
/// itself keeps the sign, see `crash-d6d86e4…` in the corpus).
fn fingerprint(batch: &WriteBatch) -> Vec<String> {
    let mut out = Vec::new();
    for t in &batch.tables {
        for r in &t.rows {
            let fields: Vec<String> = r
                .fields
                .iter()
                .map(|(k, v)| match v {
                    FieldValue::F64(x) if *x == 0.0 => format!("{k}=0"),
                    FieldValue::F64(x) => format!("{k}={:#x}", x.to_bits()),
                    other => format!("{k}={other:?}"),
                })
                .collect();
            out.push(format!("{}|{:?}|{fields:?}|{}", t.table, r.tags, r.time));
        }
    }
    out
}
