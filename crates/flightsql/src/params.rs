//! Parameters of prepared statements: one Arrow row of bound values turned into SQL
//! literals and substituted for the statement's `?` / `$n` placeholders (the query
//! layer plans SQL text, as the PG wire's bound parameters do).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimeUnit, TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::array_value_to_string;
use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::FlightSqlError;

/// How many placeholders `sql` has: the highest `$n`, or the number of `?`.
pub(crate) fn placeholder_count(sql: &str) -> Result<usize, FlightSqlError> {
    let mut question = 0;
    let mut highest = 0;
    for token in tokens(sql)? {
        if let Token::Placeholder(p) = &token {
            match placeholder_number(p, &mut question)? {
                Some(n) => highest = highest.max(n),
                None => continue,
            }
        }
    }
    Ok(highest)
}

/// `sql` with its placeholders replaced by `values` (`?` in order, `$n` by number).
/// Text inside string literals, quoted identifiers and comments is kept as it was.
pub(crate) fn substitute(sql: &str, values: &[String]) -> Result<String, FlightSqlError> {
    let mut question = 0;
    let mut out = String::with_capacity(sql.len());
    for token in tokens(sql)? {
        match &token {
            Token::Placeholder(p) => match placeholder_number(p, &mut question)? {
                Some(n) => {
                    let value = values.get(n - 1).ok_or_else(|| {
                        FlightSqlError::Parameter(format!(
                            "the statement uses parameter {n} but {} were bound",
                            values.len()
                        ))
                    })?;
                    out.push_str(value);
                }
                None => out.push_str(p),
            },
            other => out.push_str(&other.to_string()),
        }
    }
    Ok(out)
}

fn tokens(sql: &str) -> Result<Vec<Token>, FlightSqlError> {
    Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| FlightSqlError::Parameter(format!("cannot read the statement: {e}")))
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
    match digits.parse::<usize>() {
        Ok(0) | Err(_) if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) => {
            Err(FlightSqlError::Parameter(format!(
                "invalid placeholder `{p}`: parameters are numbered from 1"
            )))
        }
        Ok(n) if n <= MAX_PARAMETERS => Ok(Some(n)),
        Ok(n) => Err(FlightSqlError::Parameter(format!(
            "placeholder ${n} is past the limit of {MAX_PARAMETERS} parameters"
        ))),
        Err(_) => Ok(None),
    }
}

/// Most parameters a statement may have (PostgreSQL's limit).
pub(crate) const MAX_PARAMETERS: usize = 65_535;

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

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
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
            row_literals(&[batch.clone()]).unwrap(),
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
