//! InfluxDB 1.x's JSON result shape:
//! `{"results":[{"statement_id":0,"series":[{"name","tags","columns","values"}]}]}`,
//! a statement's failure as `{"statement_id":N,"error":"..."}`, and times as RFC 3339
//! strings or integers in the `epoch` unit.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::time::format_rfc3339;
use super::{Series, StatementResult};

/// The body, keys in InfluxDB's order (`serde_json::Map` would sort them).
#[derive(Serialize)]
struct Body<'a> {
    results: Vec<StatementOut<'a>>,
}

#[derive(Serialize)]
struct StatementOut<'a> {
    statement_id: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    series: Option<Vec<SeriesOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct SeriesOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<BTreeMap<&'a str, &'a str>>,
    columns: &'a [String],
    values: Vec<Vec<Value>>,
}

/// The response body of a request whose statements gave `results`.
pub(crate) fn encode(results: &[StatementResult], epoch_unit: Option<i64>, pretty: bool) -> String {
    let body = Body {
        results: results
            .iter()
            .enumerate()
            .map(|(statement_id, r)| match r {
                Err(message) => StatementOut {
                    statement_id,
                    series: None,
                    error: Some(message),
                },
                Ok(series) => StatementOut {
                    statement_id,
                    series: (!series.is_empty())
                        .then(|| series.iter().map(|s| one_series(s, epoch_unit)).collect()),
                    error: None,
                },
            })
            .collect(),
    };
    let text = if pretty {
        serde_json::to_string_pretty(&body)
    } else {
        serde_json::to_string(&body)
    };
    let mut text = text.unwrap_or_else(|e| format!("{{\"error\":\"encoding failed: {e}\"}}"));
    text.push('\n');
    text
}

/// A float with no fraction as an integer, as Go's encoder prints `float64(2)` (`2`).
fn go_number(v: Value) -> Value {
    match v.as_f64() {
        Some(f) if v.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => Value::from(f as i64),
        _ => v,
    }
}

fn one_series(s: &Series, epoch_unit: Option<i64>) -> SeriesOut<'_> {
    let values = s
        .values
        .iter()
        .map(|row| {
            let mut row: Vec<Value> = row.iter().cloned().map(go_number).collect();
            if s.time_column
                && let Some(ns) = row.first().and_then(Value::as_i64)
            {
                row[0] = match epoch_unit {
                    Some(unit) => Value::from(ns.div_euclid(unit)),
                    None => Value::String(format_rfc3339(ns)),
                };
            }
            row
        })
        .collect();
    SeriesOut {
        name: s.name.as_deref(),
        tags: s
            .tags
            .as_ref()
            .map(|t| t.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()),
        columns: &s.columns,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let series = Series {
            name: Some("cpu".into()),
            tags: Some(vec![("host".into(), "a".into())]),
            columns: vec!["time".into(), "mean".into()],
            values: vec![vec![Value::from(1_500_000_000i64), Value::from(1.5)]],
            time_column: true,
        };
        let results = vec![Ok(vec![series]), Ok(vec![]), Err("boom".to_string())];
        let got: Value = serde_json::from_str(&encode(&results, None, false)).unwrap();
        let want: Value = serde_json::from_str(
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","mean"],"values":[["1970-01-01T00:00:01.5Z",1.5]]}]},{"statement_id":1},{"statement_id":2,"error":"boom"}]}"#,
        )
        .unwrap();
        assert_eq!(got, want);
        // InfluxDB's key order, and whole floats as Go prints them.
        let text = encode(&results[..1], None, false);
        assert!(
            text.starts_with(r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags""#),
            "{text}"
        );
        let whole = Series {
            values: vec![vec![Value::from(0i64), Value::from(2.0)]],
            ..results[0].as_ref().unwrap()[0].clone()
        };
        assert!(encode(&[Ok(vec![whole])], Some(1), false).contains("[[0,2]]"));
        let ms = encode(&results[..1], Some(1_000_000), false);
        assert!(ms.contains(r#"[[1500,1.5]]"#), "{ms}");
        assert!(encode(&results[..1], None, true).contains("\n  \"results\""));
    }
}
