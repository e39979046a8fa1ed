//! PromQL for Bulkhead: parsing (the `promql-parser` crate), planning and evaluation.
//!
//! Data flow: [`parse`] a query; [`fetches`] lists the scans it needs (one per selector:
//! matchers and time range, for the caller to push down to storage); the caller reads
//! them into a [`Data`]; [`evaluate`] computes the result over the evaluation steps with
//! Prometheus 2's semantics; [`result_json`] renders it as Prometheus' HTTP API does.
//! Nothing here does IO: the server runs the scans through the SQL layer and calls
//! [`evaluate`] on the `query` runtime.

mod error;
mod eval;
mod plan;
mod types;

pub use error::{Error, Result};
pub use eval::{Data, Limits, evaluate};
pub use plan::{EvalParams, Fetch, LabelMatcher, MatchKind, fetches};
pub use promql_parser::parser::Expr;
pub use promql_parser::parser::value::ValueType;
pub use types::{Labels, NAME, RawSeries, StepSeries, Value, format_value, json_time};

use serde_json::{Value as Json, json};

/// Parse a PromQL expression (`bad_data` with the parser's message when invalid).
pub fn parse(query: &str) -> Result<Expr> {
    promql_parser::parser::parse(query).map_err(|e| Error::BadData(format!("parse error: {e}")))
}

/// Parse the selectors of `match[]` (series, labels and label values endpoints).
pub fn parse_selector(text: &str) -> Result<Vec<LabelMatcher>> {
    match parse(text)? {
        Expr::VectorSelector(vs) => plan::selector_matchers(&vs),
        other => Err(Error::BadData(format!(
            "invalid match[] {text:?}: expected a vector selector, got {other}"
        ))),
    }
}

/// Whether the top of `expr` is `sort()` or `sort_desc()` (their order is kept).
fn sort_order(expr: &Expr) -> Option<bool> {
    match expr {
        Expr::Paren(p) => sort_order(&p.expr),
        Expr::Call(c) if c.func.name == "sort" => Some(false),
        Expr::Call(c) if c.func.name == "sort_desc" => Some(true),
        _ => None,
    }
}

fn point(t: i64, v: f64) -> Json {
    json!([json_time(t), format_value(v)])
}

/// The `data` object of a query answer: `resultType` and `result`. An instant query
/// (`params.start == params.end` and `instant`) gives a vector, scalar, string or
/// matrix; a range query a matrix (series sorted by labels, empty ones left out).
pub fn result_json(expr: &Expr, value: &Value, params: &EvalParams, instant: bool) -> Json {
    let t = params.start;
    let steps = |i: usize| params.start + i as i64 * params.step;
    match value {
        Value::Scalar(v) if instant => json!({"resultType": "scalar", "result": point(t, v[0])}),
        Value::String(s) => json!({"resultType": "string", "result": [json_time(t), s]}),
        Value::Matrix(series) => {
            let mut series: Vec<&RawSeries> = series.iter().collect();
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            let result: Vec<Json> = series
                .iter()
                .map(|s| {
                    json!({
                        "metric": s.labels.to_json(),
                        "values": s.times.iter().zip(&s.values).map(|(&t, &v)| point(t, v)).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({"resultType": "matrix", "result": result})
        }
        Value::Vector(series) if instant => {
            let mut present: Vec<(&Labels, f64)> = series
                .iter()
                .filter_map(|s| s.values[0].map(|v| (&s.labels, v)))
                .collect();
            match sort_order(expr) {
                Some(desc) => present.sort_by(|a, b| {
                    let o = a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal);
                    if desc { o.reverse() } else { o }
                }),
                None => present.sort_by(|a, b| a.0.cmp(b.0)),
            }
            let result: Vec<Json> = present
                .into_iter()
                .map(|(l, v)| json!({"metric": l.to_json(), "value": point(t, v)}))
                .collect();
            json!({"resultType": "vector", "result": result})
        }
        Value::Scalar(v) => {
            let values: Vec<Json> = v
                .iter()
                .enumerate()
                .map(|(i, &x)| point(steps(i), x))
                .collect();
            json!({"resultType": "matrix", "result": [{"metric": {}, "values": values}]})
        }
        Value::Vector(series) => {
            let mut series: Vec<&StepSeries> = series
                .iter()
                .filter(|s| s.values.iter().any(Option::is_some))
                .collect();
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            let result: Vec<Json> = series
                .iter()
                .map(|s| {
                    let values: Vec<Json> = s
                        .values
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.map(|v| point(steps(i), v)))
                        .collect();
                    json!({"metric": s.labels.to_json(), "values": values})
                })
                .collect();
            json!({"resultType": "matrix", "result": result})
        }
    }
}

#[cfg(test)]
mod tests;
