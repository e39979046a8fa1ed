//! The values PromQL computes with: label sets, raw series (what a selector reads),
//! step series (one optional value per evaluation step) and expression results.

use std::fmt;

/// The label that names the metric.
pub const NAME: &str = "__name__";

/// A label set, sorted by name, without empty values (an empty label is an absent one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Build from pairs in any order; empty values are dropped, a later duplicate wins.
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
        Self(pairs)
    }

    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// The value of `name`, `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map(|i| self.0[i].1.as_str())
            .unwrap_or("")
    }

    /// Set `name` to `value` (removing it when `value` is empty).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name.to_string(), value.to_string())),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.set(name, "");
    }

    pub fn without_name(&self) -> Self {
        let mut l = self.clone();
        l.remove(NAME);
        l
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Only the labels named in `names`.
    pub fn keep(&self, names: &[String]) -> Self {
        Self(
            self.0
                .iter()
                .filter(|(n, _)| names.iter().any(|k| k == n))
                .cloned()
                .collect(),
        )
    }

    /// Without the labels named in `names`.
    pub fn drop(&self, names: &[String]) -> Self {
        Self(
            self.0
                .iter()
                .filter(|(n, _)| !names.iter().any(|k| k == n))
                .cloned()
                .collect(),
        )
    }

    /// The labels as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.0
                .iter()
                .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// One series as stored: samples sorted by time (ms), no duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSeries {
    pub labels: Labels,
    pub times: Vec<i64>,
    pub values: Vec<f64>,
}

impl RawSeries {
    /// Indices `lo..hi` of the samples with `from <= t <= to`.
    pub fn window(&self, from: i64, to: i64) -> (usize, usize) {
        let lo = self.times.partition_point(|&t| t < from);
        let hi = self.times.partition_point(|&t| t <= to);
        (lo, hi.max(lo))
    }
}

/// One series of an expression's result: a value (or none) per evaluation step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSeries {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
}

/// What an expression evaluates to, over the evaluation steps.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// One value per step.
    Scalar(Vec<f64>),
    /// Instant vector: series with a value at some steps.
    Vector(Vec<StepSeries>),
    /// Range vector (only as the result of an instant query): the samples of each series
    /// in the selected window.
    Matrix(Vec<RawSeries>),
    String(String),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
            Value::String(_) => "string",
        }
    }
}

/// A float as Prometheus prints it: shortest round-trip decimal, `NaN`, `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// A timestamp in ms as Prometheus' JSON number of seconds.
pub fn json_time(ms: i64) -> serde_json::Value {
    if ms % 1000 == 0 {
        return serde_json::Value::from(ms / 1000);
    }
    serde_json::Number::from_f64(ms as f64 / 1000.0)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(p: &[(&str, &str)]) -> Labels {
        Labels::new(
            p.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn labels_sorted_without_empty_values() {
        let x = l(&[("b", "2"), ("a", "1"), ("c", "")]);
        assert_eq!(x.iter().collect::<Vec<_>>(), vec![("a", "1"), ("b", "2")]);
        assert_eq!(x.get("c"), "");
        let mut y = x.clone();
        y.set("c", "3");
        y.set("a", "");
        assert_eq!(y.to_string(), r#"{b="2", c="3"}"#);
    }

    #[test]
    fn floats_print_like_go() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(json_time(1_500), serde_json::json!(1.5));
        assert_eq!(json_time(2_000).to_string(), "2");
    }

    #[test]
    fn window_is_closed() {
        let s = RawSeries {
            labels: Labels::empty(),
            times: vec![10, 20, 30],
            values: vec![1.0, 2.0, 3.0],
        };
        assert_eq!(s.window(10, 30), (0, 3));
        assert_eq!(s.window(11, 29), (1, 2));
        assert_eq!(s.window(31, 40), (3, 3));
    }
}
