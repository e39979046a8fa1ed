//! InfluxDB 1.x's JSON result shape:
//! `{"results":[{"statement_id":0,"series":[{"name","tags","columns","values"}]}]}`,
//! a statement's failure as `{"statement_id":N,"error":"..."}`, and times as RFC 3339
//! strings or integers in the `epoch` unit.

use serde_json::{Map, Value, json};

use super::time::format_rfc3339;
use super::{Series, StatementResult};

/// The response body of a request whose statements gave `results`.
pub(crate) fn encode(results: &[StatementResult], epoch_unit: Option<i64>, pretty: bool) -> String {
    let results: Vec<Value> = results
        .iter()
        .enumerate()
        .map(|(id, r)| statement(id, r, epoch_unit))
        .collect();
    let body = json!({ "results": results });
    let text = if pretty {
        serde_json::to_string_pretty(&body)
    } else {
        serde_json::to_string(&body)
    };
    let mut text = text.unwrap_or_else(|e| format!("{{\"error\":\"encoding failed: {e}\"}}"));
    text.push('\n');
    text
}

fn statement(id: usize, result: &StatementResult, epoch_unit: Option<i64>) -> Value {
    let mut obj = Map::new();
    obj.insert("statement_id".into(), Value::from(id));
    match result {
        Err(message) => {
            obj.insert("error".into(), Value::String(message.clone()));
        }
        Ok(series) if series.is_empty() => {}
        Ok(series) => {
            let list = series.iter().map(|s| one_series(s, epoch_unit)).collect();
            obj.insert("series".into(), Value::Array(list));
        }
    }
    Value::Object(obj)
}

fn one_series(s: &Series, epoch_unit: Option<i64>) -> Value {
    let mut obj = Map::new();
    if let Some(name) = &s.name {
        obj.insert("name".into(), Value::String(name.clone()));
    }
    if let Some(tags) = &s.tags {
        let tags: Map<String, Value> = tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        obj.insert("tags".into(), Value::Object(tags));
    }
    obj.insert(
        "columns".into(),
        Value::Array(s.columns.iter().cloned().map(Value::String).collect()),
    );
    let values = s
        .values
        .iter()
        .map(|row| {
            let mut row = row.clone();
            if s.time_column
                && let Some(ns) = row.first().and_then(Value::as_i64)
            {
                row[0] = match epoch_unit {
                    Some(unit) => Value::from(ns.div_euclid(unit)),
                    None => Value::String(format_rfc3339(ns)),
                };
            }
            Value::Array(row)
        })
        .collect();
    obj.insert("values".into(), Value::Array(values));
    Value::Object(obj)
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
        let ms = encode(&results[..1], Some(1_000_000), false);
        assert!(ms.contains(r#"[[1500,1.5]]"#), "{ms}");
        assert!(encode(&results[..1], None, true).contains("\n  \"results\""));
    }
}
