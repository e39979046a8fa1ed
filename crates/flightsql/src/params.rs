//! Parameters of prepared statements: one Arrow row of bound values turned into SQL
//! literals and substituted for the statement's `?` / `$n` placeholders (the query
//! layer plans SQL text, as the PG wire's bound parameters do).

use std::ops::Range;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimeUnit, TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::array_value_to_string;
use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use bulkhead_frontend::sql_text::{self, MAX_PARAMETERS, quote_literal as quote};

use crate::error::FlightSqlError;

/// How many placeholders `sql` has: the highest `$n`, or the number of `?`.
pub(crate) fn placeholder_count(sql: &str) -> Result<usize, FlightSqlError> {
    Ok(placeholders(sql)?
        .into_iter()
        .map(|(_, n)| n)
        .max()
        .unwrap_or(0))
}

/// `sql` with its placeholders replaced by `values` (`?` in order, `$n` by number).
/// Only the placeholders' bytes change: string literals, quoted identifiers and
/// comments are copied from `sql` as written.
pub(crate) fn substitute(sql: &str, values: &[String]) -> Result<String, FlightSqlError> {
    sql_text::substitute(sql, placeholders(sql)?, values).map_err(|n| {
        FlightSqlError::Parameter(format!(
            "the statement uses parameter {n} but {} were bound",
            values.len()
        ))
    })
}

/// `sql` with its `$name` placeholders replaced by the JSON values of `params` (the
/// query parameters of InfluxDB 3's clients).
pub(crate) fn substitute_named(
    sql: &str,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, FlightSqlError> {
    let mut out = String::with_capacity(sql.len());
    let mut last = 0;
    for (range, p) in placeholder_tokens(sql)? {
        let Some(name) = p.strip_prefix('$').filter(|n| !is_number(n)) else {
            continue;
        };
        let value = params.get(name).ok_or_else(|| {
            FlightSqlError::Parameter(format!("no value was sent for parameter `${name}`"))
        })?;
        out.push_str(&sql[last..range.start]);
        out.push_str(&json_literal(name, value)?);
        last = range.end;
    }
    out.push_str(&sql[last..]);
    Ok(out)
}

fn json_literal(name: &str, value: &serde_json::Value) -> Result<String, FlightSqlError> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => "NULL".to_owned(),
        Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => float(f),
            _ => n.to_string(),
        },
        Value::String(s) => quote(s),
        Value::Array(_) | Value::Object(_) => {
            return Err(FlightSqlError::Parameter(format!(
                "parameter `${name}`: lists and objects are not supported as parameters"
            )));
        }
    })
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The numbered placeholders of `sql` as `(byte range, 1-based parameter)`.
fn placeholders(sql: &str) -> Result<Vec<(Range<usize>, usize)>, FlightSqlError> {
    let mut question = 0;
    let mut out = Vec::new();
    for (range, p) in placeholder_tokens(sql)? {
        if let Some(n) = placeholder_number(&p, &mut question)? {
            out.push((range, n));
        }
    }
    Ok(out)
}

/// Every placeholder token of `sql` (`?`, `$1`, `$name`) with its byte range, found by
/// sqlparser's tokenizer (so none inside literals, quoted identifiers or comments).
fn placeholder_tokens(sql: &str) -> Result<Vec<(Range<usize>, String)>, FlightSqlError> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| FlightSqlError::Parameter(format!("cannot read the statement: {e}")))?;
    let offsets = ByteOffsets::new(sql);
    let mut out = Vec::new();
    for TokenWithSpan { token, span } in tokens {
        let Token::Placeholder(p) = token else {
            continue;
        };
        let range = offsets
            .of(span.start)
            .zip(offsets.of(span.end))
            .map(|(start, end)| start..end)
            .filter(|r| sql.get(r.clone()) == Some(p.as_str()))
            .ok_or_else(|| FlightSqlError::Parameter(format!("cannot locate placeholder `{p}`")))?;
        out.push((range, p));
    }
    Ok(out)
}

/// Byte offsets of the tokenizer's (line, column) locations, counted as it counts them
/// (1-based, one column per `char`, a new line after each `\n`).
struct ByteOffsets(Vec<(u64, u64, usize)>);

impl ByteOffsets {
    fn new(sql: &str) -> Self {
        let (mut line, mut col) = (1, 1);
        let mut at = Vec::with_capacity(sql.len() + 1);
        for (i, c) in sql.char_indices() {
            at.push((line, col, i));
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        at.push((line, col, sql.len()));
        Self(at)
    }

    fn of(&self, location: Location) -> Option<usize> {
        let key = (location.line, location.column);
        let i = self
            .0
            .binary_search_by(|&(l, c, _)| (l, c).cmp(&key))
            .ok()?;
        Some(self.0[i].2)
    }
}

/// The 1-based parameter a placeholder names; `None` for placeholders that are not
/// parameters (`$$` quoting is tokenized as a string, so this is rare).
fn placeholder_number(p: &str, question: &mut usize) -> Result<Option<usize>, FlightSqlError> {
    if p == "?" {
        *question += 1;
        return Ok(Some(*question));
    }
    let Some(digits) = p.strip_prefix('$').or_else(|| p.strip_prefix('?')) else {
        return Ok(None);
    };
    if !is_number(digits) {
        return Ok(None); // `$name`: not a parameter of ours; planning reports it
    }
    match digits.parse::<usize>() {
        Ok(0) => Err(FlightSqlError::Parameter(format!(
            "invalid placeholder `{p}`: parameters are numbered from 1"
        ))),
        Ok(n) if n <= MAX_PARAMETERS => Ok(Some(n)),
        _ => Err(FlightSqlError::Parameter(format!(
            "placeholder `{p}` is past the limit of {MAX_PARAMETERS} parameters"
        ))),
    }
}

/// The bound row as SQL literals, one per column. The client sends one row per
/// execution; more rows are refused (a statement is run once per `DoGet`).
pub(crate) fn row_literals(batches: &[RecordBatch]) -> Result<Vec<String>, FlightSqlError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != 1 {
        return Err(FlightSqlError::Parameter(format!(
            "bind exactly one row of parameters per execution (got {rows})"
        )));
    }
    let batch = batches
        .iter()
        .find(|b| b.num_rows() == 1)
        .expect("one batch holds the row");
    batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| literal(i + 1, column.as_ref()))
        .collect()
}

/// Row 0 of `array` as a SQL literal of the same type.
fn literal(n: usize, array: &dyn Array) -> Result<String, FlightSqlError> {
    if array.is_null(0) {
        return Ok("NULL".to_owned());
    }
    let text = || {
        array_value_to_string(array, 0)
            .map_err(|e| FlightSqlError::Parameter(format!("parameter {n}: {e}")))
    };
    Ok(match array.data_type() {
        DataType::Null => "NULL".to_owned(),
        DataType::Boolean => {
            if array.as_boolean().value(0) {
                "TRUE".to_owned()
            } else {
                "FALSE".to_owned()
            }
        }
        DataType::Int8 => array.as_primitive::<Int8Type>().value(0).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(0).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(0).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(0).to_string(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(0).to_string(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(0).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(0).to_string(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(0).to_string(),
        DataType::Float16 => float(array.as_primitive::<Float16Type>().value(0).to_f64()),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(0))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(0)),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => text()?,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => quote(&text()?),
        DataType::Date32 | DataType::Date64 => format!("DATE {}", quote(&text()?)),
        DataType::Timestamp(..) => {
            // The instant, exactly: nanoseconds from the epoch (a zone only changes
            // how it is displayed).
            let cast =
                arrow::compute::cast(array, &DataType::Timestamp(TimeUnit::Nanosecond, None))
                    .map_err(|e| FlightSqlError::Parameter(format!("parameter {n}: {e}")))?;
            let nanos = cast.as_primitive::<TimestampNanosecondType>().value(0);
            format!("to_timestamp_nanos({nanos})")
        }
        other => {
            return Err(FlightSqlError::Parameter(format!(
                "parameter {n}: values of type {other} are not supported as parameters \
                 (bind integers, floats, decimals, booleans, strings, dates or timestamps)"
            )));
        }
    })
}

fn float(v: f64) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else {
        // `NaN`, `inf`, `-inf`: DataFusion casts these spellings.
        format!("CAST('{v}' AS DOUBLE)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
    use arrow::array::{TimestampMillisecondArray, TimestampNanosecondArray};
    use std::sync::Arc;

    #[test]
    fn placeholders_are_counted_and_replaced_outside_literals() {
        let sql = "select '?', \"a?\", ? from t where b = ? -- ?";
        assert_eq!(placeholder_count(sql).unwrap(), 2);
        let out = substitute(sql, &["10".into(), quote("o'k")]).unwrap();
        assert_eq!(out, "select '?', \"a?\", 10 from t where b = 'o''k' -- ?");
        let numbered = "select $2, $1, '$1'";
        assert_eq!(placeholder_count(numbered).unwrap(), 2);
        assert_eq!(
            substitute(numbered, &["1".into(), "2".into()]).unwrap(),
            "select 2, 1, '$1'"
        );
        let missing = substitute("select $3", &["1".into()]).unwrap_err();
        assert!(missing.to_string().contains("parameter 3"), "{missing}");
        assert!(placeholder_count("select $0").is_err());
        // Literals and identifiers are kept exactly as written, escapes included.
        let escaped = "select 'it''s ?', \"a\"\"b\" from t\nwhere é = ? and x = $$?$$";
        assert_eq!(placeholder_count(escaped).unwrap(), 1);
        assert_eq!(
            substitute(escaped, &["'v'".into()]).unwrap(),
            "select 'it''s ?', \"a\"\"b\" from t\nwhere é = 'v' and x = $$?$$"
        );
    }

    #[test]
    fn named_parameters_take_json_values() {
        let params: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"host": "d'x", "min": -2.5, "n": 3, "up": true, "none": null}"#,
        )
        .unwrap();
        let sql = "select '$host', $host, $min, $n, $up, $none, $1 from t";
        assert_eq!(
            substitute_named(sql, &params).unwrap(),
            "select '$host', 'd''x', -2.5, 3, TRUE, NULL, $1 from t"
        );
        let missing = substitute_named("select $nope", &params).unwrap_err();
        assert!(missing.to_string().contains("$nope"), "{missing}");
    }

    #[test]
    fn a_row_becomes_typed_literals() {
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("i", Arc::new(Int64Array::from(vec![-7]))),
            ("f", Arc::new(Float64Array::from(vec![0.1]))),
            ("nan", Arc::new(Float64Array::from(vec![f64::NAN]))),
            ("b", Arc::new(BooleanArray::from(vec![true]))),
            ("s", Arc::new(StringArray::from(vec!["it's"]))),
            ("n", Arc::new(StringArray::from(vec![None::<&str>]))),
            (
                "t",
                Arc::new(TimestampMillisecondArray::from(vec![1_500]).with_timezone("+02:00")),
            ),
            ("tn", Arc::new(TimestampNanosecondArray::from(vec![7]))),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        assert_eq!(
            row_literals(std::slice::from_ref(&batch)).unwrap(),
            vec![
                "-7",
                "0.1",
                "CAST('NaN' AS DOUBLE)",
                "TRUE",
                "'it''s'",
                "NULL",
                "to_timestamp_nanos(1500000000)",
                "to_timestamp_nanos(7)"
            ]
        );
        let two = arrow::compute::concat_batches(&batch.schema(), [&batch, &batch]).unwrap();
        let err = row_literals(&[two]).unwrap_err();
        assert!(err.to_string().contains("exactly one row"), "{err}");
    }
}
