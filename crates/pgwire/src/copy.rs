//! `COPY (query) TO STDOUT` and `COPY table TO STDOUT`, in PostgreSQL's text, CSV and
//! binary formats: what psql's `\copy ... to` and the ADBC PostgreSQL driver (which
//! reads every result with `COPY (...) TO STDOUT (FORMAT binary)`) send.
//!
//! The statement is recognised here ([`parse`]); its query is planned and run like any
//! other, and its Arrow batches are encoded into `CopyData` messages on the `query`
//! runtime (`arrow-pg` values, pgwire's `CopyEncoder` for the framing). `COPY ... FROM`
//! and `COPY ... TO 'file'` are refused with 0A000, naming what to use instead.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use bulkhead_frontend::{QueryError, QueryErrorKind};
use bulkhead_runtime::{RuntimeName, Runtimes};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;

use crate::error::PgError;
use crate::handler::pg_fields;
use crate::sql::{matching_paren, quote_ident};

/// The formats of `COPY ... TO STDOUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CopyFormat {
    Text {
        delimiter: String,
        null: String,
    },
    Csv {
        delimiter: String,
        null: String,
        header: bool,
    },
    Binary,
}

/// A parsed `COPY ... TO STDOUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyTo {
    /// The query whose rows are copied.
    pub(crate) query: String,
    pub(crate) format: CopyFormat,
}

fn unsupported(message: impl Into<String>) -> PgError {
    PgError::Query(QueryError::new(QueryErrorKind::Unsupported, message))
}

/// `Some` if `stmt` is a `COPY` statement: its query and format, or the reason it is
/// not supported.
pub(crate) fn parse(stmt: &str) -> Option<Result<CopyTo, PgError>> {
    let rest = strip_keyword(stmt.trim_start(), "copy")?;
    Some(parse_rest(rest))
}

fn parse_rest(rest: &str) -> Result<CopyTo, PgError> {
    let rest = rest.trim_start();
    let (query, after) = if rest.starts_with('(') {
        let end = matching_paren(rest).ok_or_else(|| {
            PgError::Parameter("COPY: the query in parentheses is not closed".into())
        })?;
        (rest[1..end].trim().to_owned(), &rest[end + 1..])
    } else {
        // `COPY table [(columns)] TO ...`
        let lower = rest.to_ascii_lowercase();
        let to = lower.find(" to ").ok_or_else(|| {
            unsupported(
                "only COPY ... TO STDOUT is supported (write with the HTTP API: /api/v2/write \
                 or /write)",
            )
        })?;
        let target = rest[..to].trim();
        let (table, columns) = match target.find('(') {
            Some(p) => (
                target[..p].trim(),
                target[p + 1..].trim_end_matches(')').trim(),
            ),
            None => (target, "*"),
        };
        (format!("SELECT {columns} FROM {table}"), &rest[to..])
    };
    let after = after.trim_start();
    let Some(after) = strip_keyword(after, "to") else {
        return Err(unsupported(
            "COPY ... FROM is not supported: write with the HTTP API (/api/v2/write, /write, \
             /api/v1/prom/write)",
        ));
    };
    let Some(options) = strip_keyword(after.trim_start(), "stdout") else {
        return Err(unsupported(
            "COPY ... TO a file or program is not supported: use COPY ... TO STDOUT (psql: \\copy)",
        ));
    };
    Ok(CopyTo {
        query,
        format: parse_options(options)?,
    })
}

/// `s` without its leading keyword `kw` (case-insensitive, followed by a non-word
/// character), or `None`.
fn strip_keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let head = s.get(..kw.len())?;
    if !head.eq_ignore_ascii_case(kw) {
        return None;
    }
    let rest = &s[kw.len()..];
    match rest.chars().next() {
        Some(c) if c.is_alphanumeric() || c == '_' => None,
        _ => Some(rest),
    }
}

/// The options after `TO STDOUT`: the modern `[WITH] (FORMAT csv, HEADER, ...)` list
/// and the old `[WITH] [BINARY | CSV [HEADER]] [DELIMITER 'x'] [NULL 'x']` words.
fn parse_options(options: &str) -> Result<CopyFormat, PgError> {
    let text = options.trim().trim_end_matches(';').trim();
    let text = strip_keyword(text, "with").unwrap_or(text).trim();
    let text = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(text);
    let words = words(text)?;
    let mut format = "text".to_owned();
    let mut header = false;
    let mut delimiter = None;
    let mut null = None;
    let mut i = 0;
    while i < words.len() {
        let word = words[i].to_ascii_lowercase();
        let value = words.get(i + 1).cloned();
        let is_value = |v: &Option<String>| {
            v.as_deref().is_some_and(|v| {
                matches!(
                    v.to_ascii_lowercase().as_str(),
                    "true" | "false" | "on" | "off" | "1" | "0" | "match"
                ) || v.starts_with('\'')
            })
        };
        match word.as_str() {
            "format" => {
                format = value
                    .ok_or_else(|| PgError::Parameter("COPY: FORMAT needs a value".into()))?
                    .to_ascii_lowercase();
                i += 2;
                continue;
            }
            "csv" | "binary" | "text" => format = word,
            "header" => {
                header = match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    Some("false" | "off" | "0") => false,
                    Some("match") => {
                        return Err(unsupported("COPY TO does not support HEADER MATCH"));
                    }
                    _ => true,
                };
                if is_value(&value) {
                    i += 1;
                }
            }
            "delimiter" | "null" => {
                let v = value.filter(|v| v.starts_with('\'')).ok_or_else(|| {
                    PgError::Parameter(format!("COPY: {word} needs a quoted value"))
                })?;
                let v = v[1..v.len() - 1].replace("''", "'");
                if word == "delimiter" {
                    if v.len() != 1 {
                        return Err(PgError::Parameter(
                            "COPY delimiter must be a single one-byte character".into(),
                        ));
                    }
                    delimiter = Some(v);
                } else {
                    null = Some(v);
                }
                i += 1;
            }
            "encoding" => {
                let v = value.unwrap_or_default().to_ascii_lowercase();
                if !matches!(v.as_str(), "'utf8'" | "'utf-8'" | "'unicode'") {
                    return Err(unsupported("COPY: only ENCODING 'UTF8' is supported"));
                }
                i += 1;
            }
            other => {
                return Err(unsupported(format!(
                    "COPY option {other} is not supported (supported: FORMAT text|csv|binary, \
                     HEADER, DELIMITER, NULL)"
                )));
            }
        }
        i += 1;
    }
    Ok(match format.as_str() {
        "text" => CopyFormat::Text {
            delimiter: delimiter.unwrap_or_else(|| "\t".into()),
            null: null.unwrap_or_else(|| "\\N".into()),
        },
        "csv" => CopyFormat::Csv {
            delimiter: delimiter.unwrap_or_else(|| ",".into()),
            null: null.unwrap_or_default(),
            header,
        },
        "binary" => CopyFormat::Binary,
        other => {
            return Err(PgError::Parameter(format!(
                "COPY format \"{other}\" not recognized"
            )));
        }
    })
}

/// Option words: bare words, and `'quoted'` values kept with their quotes; commas
/// separate like spaces.
fn words(text: &str) -> Result<Vec<String>, PgError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c.is_whitespace() || c == ',' {
            continue;
        }
        if c == '\'' {
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().map(|(_, c)| *c) == Some('\'') {
                        chars.next();
                        continue;
                    }
                    end = Some(i);
                    break;
                }
            }
            let end = end.ok_or_else(|| PgError::Parameter("COPY: unterminated string".into()))?;
            out.push(text[start..=end].to_owned());
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || c == ',' || c == '\'' {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        out.push(text[start..end].trim_matches('"').to_owned());
    }
    Ok(out)
}

/// The COPY response: the rows of `schema`/`batches` in `format`, encoded on `query`.
pub(crate) fn respond(
    runtimes: &Runtimes,
    format: &CopyFormat,
    schema: arrow::datatypes::SchemaRef,
    batches: BoxStream<'static, Result<RecordBatch, ArrowError>>,
) -> Result<CopyResponse, PgError> {
    let binary = *format == CopyFormat::Binary;
    let wire = if binary {
        Format::UnifiedBinary
    } else {
        Format::UnifiedText
    };
    let fields = Arc::new(pg_fields(&schema, &wire)?);
    let columns = fields.len();
    let (mut tx, rx) = futures::channel::mpsc::channel::<Option<Vec<PgWireResult<CopyData>>>>(2);
    let format = format.clone();
    let task = runtimes.spawn(RuntimeName::Query, async move {
        let mut encoder = encoder(&format, Arc::clone(&fields));
        let mut first: Vec<PgWireResult<CopyData>> = Vec::new();
        if let CopyFormat::Csv {
            header: true,
            delimiter,
            ..
        } = &format
        {
            first.push(Ok(header_line(&schema, delimiter)));
        }
        let mut rows_sent = false;
        let mut batches = batches;
        while let Some(batch) = batches.next().await {
            let mut out = std::mem::take(&mut first);
            match batch {
                Ok(batch) => {
                    for row in 0..batch.num_rows() {
                        match encode_row(&mut encoder, &batch, row, &fields) {
                            Ok(data) => out.push(Ok(data)),
                            Err(e) => {
                                out.push(Err(e));
                                break;
                            }
                        }
                    }
                    rows_sent |= batch.num_rows() > 0;
                }
                Err(e) => out.push(Err(PgError::Stream(e.to_string()).into_pgwire())),
            }
            let failed = out.iter().any(Result::is_err);
            if tx.send(Some(out)).await.is_err() || failed {
                return;
            }
        }
        // pgwire's encoder writes the binary header with the first row: a result
        // without rows still needs it before the trailer.
        if binary && !rows_sent {
            first.push(Ok(CopyData::new(binary_header())));
        }
        if !first.is_empty() && tx.send(Some(first)).await.is_err() {
            return;
        }
        let _ = tx.send(None).await;
    });
    let data = crate::handler::relay(rx, task);
    Ok(CopyResponse::new(i8::from(binary), columns, data))
}

fn encoder(format: &CopyFormat, fields: Arc<Vec<FieldInfo>>) -> CopyEncoder {
    match format {
        CopyFormat::Binary => CopyEncoder::new_binary(fields),
        CopyFormat::Text { delimiter, null } => CopyEncoder::new_text(
            fields,
            CopyTextOptions {
                delimiter: delimiter.as_str().into(),
                null_string: null.as_str().into(),
            },
        ),
        CopyFormat::Csv {
            delimiter, null, ..
        } => CopyEncoder::new_csv(
            fields,
            CopyCsvOptions {
                delimiter: delimiter.as_str().into(),
                null_string: null.as_str().into(),
                ..CopyCsvOptions::default()
            },
        ),
    }
}

fn encode_row(
    encoder: &mut CopyEncoder,
    batch: &RecordBatch,
    row: usize,
    fields: &[FieldInfo],
) -> PgWireResult<CopyData> {
    let schema = batch.schema_ref();
    for (col, pg_field) in fields.iter().enumerate() {
        arrow_pg::encoder::encode_value(
            encoder,
            batch.column(col),
            row,
            schema.field(col),
            pg_field,
        )?;
    }
    Ok(encoder.take_copy())
}

/// The CSV header: the column names, quoted where CSV needs it.
fn header_line(schema: &arrow::datatypes::Schema, delimiter: &str) -> CopyData {
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let name = f.name();
            if name.contains(delimiter) || name.contains(['"', '\n', '\r']) {
                quote_ident(name)
            } else {
                name.clone()
            }
        })
        .collect();
    CopyData::new(Bytes::from(format!("{}\n", names.join(delimiter))))
}

/// PGCOPY's binary header: signature, flags, header extension length.
fn binary_header() -> Bytes {
    let mut header = b"PGCOPY\n\xff\r\n\0".to_vec();
    header.extend_from_slice(&0i32.to_be_bytes());
    header.extend_from_slice(&0i32.to_be_bytes());
    Bytes::from(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> CopyTo {
        parse(sql).expect("a COPY").expect("supported")
    }

    #[test]
    fn psql_and_adbc_forms() {
        let c = parsed("COPY ( select a, 'x)' from t ) TO STDOUT csv header");
        assert_eq!(c.query, "select a, 'x)' from t");
        assert_eq!(
            c.format,
            CopyFormat::Csv {
                delimiter: ",".into(),
                null: String::new(),
                header: true
            }
        );
        let c = parsed("COPY (SELECT 1) TO STDOUT (FORMAT binary)");
        assert_eq!(c.format, CopyFormat::Binary);
        let c =
            parsed("copy cpu (host, usage) to stdout with (format csv, delimiter ';', null 'NA')");
        assert_eq!(c.query, "SELECT host, usage FROM cpu");
        assert_eq!(
            c.format,
            CopyFormat::Csv {
                delimiter: ";".into(),
                null: "NA".into(),
                header: false
            }
        );
        let c = parsed("COPY cpu TO STDOUT");
        assert_eq!(c.query, "SELECT * FROM cpu");
        assert!(matches!(c.format, CopyFormat::Text { .. }));
        assert!(parse("copyright").is_none());
        assert!(parse("select 1").is_none());
    }

    #[test]
    fn unsupported_forms_name_the_alternative() {
        for (sql, state, words) in [
            ("COPY cpu FROM STDIN", "0A000", "HTTP API"),
            ("COPY (select 1) TO '/tmp/x'", "0A000", "TO STDOUT"),
            ("COPY (select 1) TO STDOUT (FORMAT xml)", "22023", "xml"),
            ("COPY (select 1) TO STDOUT (FREEZE)", "0A000", "freeze"),
        ] {
            let e = parse(sql).unwrap().unwrap_err();
            assert_eq!(e.sqlstate(), state, "{sql}: {e}");
            assert!(e.to_string().contains(words), "{sql}: {e}");
        }
    }

    #[test]
    fn binary_header_is_pgcopy() {
        assert_eq!(binary_header().len(), 19);
        assert!(binary_header().starts_with(b"PGCOPY\n\xff\r\n\0"));
    }
}
