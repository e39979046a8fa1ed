//! InfluxDB 1.x's JSON result shape:
//! `{"results":[{"statement_id":0,"series":[{"name","tags","columns","values"}]}]}`,
//! a statement's failure as `{"statement_id":N,"error":"..."}`, and times as RFC 3339
//! strings or integers in the `epoch` unit.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::rows::{write_str, write_time, write_value};
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

/// The response body of a request whose statements gave `results`. Compact JSON is
/// written by hand (rows kept in Arrow straight from their arrays); `pretty` goes
/// through `serde_json`.
pub(crate) fn encode(
    results: &[StatementResult],
    epoch_unit: Option<i64>,
    pretty: bool,
) -> Vec<u8> {
    if pretty {
        return serde_encode(results, epoch_unit, true);
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"results\":[");
    for (statement_id, r) in results.iter().enumerate() {
        if statement_id > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"statement_id\":");
        out.extend_from_slice(itoa::Buffer::new().format(statement_id).as_bytes());
        match r {
            Err(message) => {
                out.extend_from_slice(b",\"error\":");
                write_str(&mut out, message);
            }
            Ok(series) if series.is_empty() => {}
            Ok(series) => {
                out.extend_from_slice(b",\"series\":[");
                for (i, s) in series.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_series(&mut out, s, epoch_unit);
                }
                out.push(b']');
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}\n");
    out
}

/// One series object, keys in InfluxDB's order.
fn write_series(out: &mut Vec<u8>, s: &Series, epoch_unit: Option<i64>) {
    out.push(b'{');
    let mut comma = false;
    if let Some(name) = &s.name {
        out.extend_from_slice(b"\"name\":");
        write_str(out, name);
        comma = true;
    }
    if let Some(tags) = &s.tags {
        if comma {
            out.push(b',');
        }
        out.extend_from_slice(b"\"tags\":{");
        let sorted: BTreeMap<&str, &str> =
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for (i, (k, v)) in sorted.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, k);
            out.push(b':');
            write_str(out, v);
        }
        out.push(b'}');
        comma = true;
    }
    if comma {
        out.push(b',');
    }
    out.extend_from_slice(b"\"columns\":[");
    for (i, c) in s.columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, c);
    }
    out.extend_from_slice(b"],\"values\":[");
    if let Some(rows) = &s.arrow {
        rows.write_rows(out, epoch_unit);
    }
    for (n, row) in s.values.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match (i, s.time_column, v.as_i64()) {
                (0, true, Some(ns)) => write_time(out, ns, epoch_unit),
                _ => write_value(out, v),
            }
        }
        out.push(b']');
    }
    out.extend_from_slice(b"]}");
}

/// The body through `serde_json` (Arrow rows materialized as values first).
pub(super) fn serde_encode(
    results: &[StatementResult],
    epoch_unit: Option<i64>,
    pretty: bool,
) -> Vec<u8> {
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
        serde_json::to_vec_pretty(&body)
    } else {
        serde_json::to_vec(&body)
    };
    let mut text =
        text.unwrap_or_else(|e| format!("{{\"error\":\"encoding failed: {e}\"}}").into_bytes());
    text.push(b'\n');
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
    let materialized = s.arrow.as_ref().map(|a| a.materialize());
    let values = materialized
        .as_ref()
        .unwrap_or(&s.values)
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
            arrow: None,
        };
        let results = vec![Ok(vec![series]), Ok(vec![]), Err("boom".to_string())];
        let got: Value = serde_json::from_slice(&encode(&results, None, false)).unwrap();
        let want: Value = serde_json::from_str(
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","mean"],"values":[["1970-01-01T00:00:01.5Z",1.5]]}]},{"statement_id":1},{"statement_id":2,"error":"boom"}]}"#,
        )
        .unwrap();
        assert_eq!(got, want);
        // InfluxDB's key order, and whole floats as Go prints them.
        let text = String::from_utf8(encode(&results[..1], None, false)).unwrap();
        assert!(
            text.starts_with(r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags""#),
            "{text}"
        );
        let whole = Series {
            values: vec![vec![Value::from(0i64), Value::from(2.0)]],
            ..results[0].as_ref().unwrap()[0].clone()
        };
        let whole = String::from_utf8(encode(&[Ok(vec![whole])], Some(1), false)).unwrap();
        assert!(whole.contains("[[0,2]]"), "{whole}");
        let ms = String::from_utf8(encode(&results[..1], Some(1_000_000), false)).unwrap();
        assert!(ms.contains(r#"[[1500,1.5]]"#), "{ms}");
        let pretty = String::from_utf8(encode(&results[..1], None, true)).unwrap();
        assert!(pretty.contains("\n  \"results\""), "{pretty}");
        // The hand-written compact body is serde_json's.
        for unit in [None, Some(1), Some(1_000)] {
            assert_eq!(
                encode(&results, unit, false),
                serde_encode(&results, unit, false)
            );
        }
    }
}
