//! SQL helpers for the InfluxQL planner: quoting, running a query through the server's
//! [`crate::QueryBackend`] and collecting its batches, and Arrow cells as JSON values.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use futures::StreamExt;
use serde_json::Value;

use super::Ctx;
use crate::backend::QueryErrorKind;

/// `"name"` with `"` doubled.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with `'` doubled.
pub(crate) fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"db"."table"`.
pub(crate) fn table(db: &str, name: &str) -> String {
    format!("{}.{}", ident(db), ident(name))
}

/// Percent-decoding of one `application/x-www-form-urlencoded` component (`+` is a
/// space; an invalid escape is kept as is).
pub(crate) fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Run `sql` with `db` as the default database and collect every batch. Errors are
/// InfluxDB-style messages (the statement's `error`).
pub(crate) async fn collect(ctx: &Ctx, db: &str, sql: &str) -> Result<Vec<RecordBatch>, String> {
    tracing::debug!(%db, %sql, "influxql");
    let out = ctx.state.queries.sql(db, sql).await.map_err(|e| {
        if e.kind == QueryErrorKind::Plan {
            format!("{e} (InfluxQL translated to SQL: {sql})")
        } else {
            e.message
        }
    })?;
    let mut batches = Vec::new();
    let mut stream = out.batches;
    while let Some(b) = stream.next().await {
        batches.push(b.map_err(|e| e.to_string())?);
    }
    Ok(batches)
}

/// Row `row` of `col` as JSON (NaN and infinities as null, like InfluxDB's encoder).
pub(crate) fn cell(col: &dyn Array, row: usize) -> Value {
    if col.is_null(row) {
        return Value::Null;
    }
    match col.data_type() {
        DataType::Float64 => {
            let v = col.as_primitive::<Float64Type>().value(row);
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
        }
        DataType::Int64 => Value::from(col.as_primitive::<Int64Type>().value(row)),
        DataType::UInt64 => Value::from(col.as_primitive::<UInt64Type>().value(row)),
        DataType::Boolean => Value::Bool(col.as_boolean().value(row)),
        DataType::Utf8 => Value::String(col.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(col.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::String(col.as_string_view().value(row).to_string()),
        _ => match arrow::compute::cast(&col.slice(row, 1), &DataType::Utf8) {
            Ok(s) => cell(s.as_ref(), 0),
            Err(_) => Value::Null,
        },
    }
}

/// The `i`-th column of every row of `batches` as strings (null → `None`).
pub(crate) fn strings(batches: &[RecordBatch], i: usize) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let col = b.column(i);
        for row in 0..b.num_rows() {
            out.push(match cell(col.as_ref(), row) {
                Value::String(s) => Some(s),
                Value::Null => None,
                other => Some(other.to_string()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_decoding() {
        assert_eq!(ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(string_literal("it's"), "'it''s'");
        assert_eq!(
            url_decode("SELECT+%2A+FROM+%22cpu%22"),
            "SELECT * FROM \"cpu\""
        );
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz%4"), "%zz%4");
        assert_eq!(url_decode("%C2%B5"), "µ");
    }
}
