//! Transformations: `derivative`, `non_negative_derivative`, `difference`,
//! `non_negative_difference`, `cumulative_sum`, `moving_average` and `elapsed`, over raw
//! points or over `GROUP BY time` aggregates, with InfluxDB 1.6's semantics.
//!
//! The statement is planned without them (each field replaced by its argument: a field,
//! or an aggregate after `fill`), then every column of every series is transformed over
//! its non-null values. As in InfluxDB, aggregates are read from one extra interval
//! before the query's start (so the first bucket has a predecessor; not for
//! `cumulative_sum`), `LIMIT` and `OFFSET` apply to each column's output, and rows are
//! the union of the columns' output times.

use serde_json::Value;

use super::Series;
use super::ast::{Dimension, Expr, Field, Select};
use super::cond::TimeRange;

/// The transformation functions handled here.
pub(super) const TRANSFORMS: &[&str] = &[
    "derivative",
    "non_negative_derivative",
    "difference",
    "non_negative_difference",
    "cumulative_sum",
    "moving_average",
    "elapsed",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Per `unit` nanoseconds.
    Derivative {
        unit: i64,
        non_negative: bool,
    },
    Difference {
        non_negative: bool,
    },
    CumulativeSum,
    MovingAverage(usize),
    /// In `unit` nanoseconds.
    Elapsed(i64),
}

/// A statement with transformations, split into the plain statement it reads from and
/// what to apply to each of its columns.
pub(super) struct Plan {
    /// The statement without the transformations (no `LIMIT`/`OFFSET` either).
    pub(super) inner: Select,
    kinds: Vec<Kind>,
    names: Vec<String>,
    /// The `GROUP BY time` interval, when there is one.
    interval: Option<i64>,
    limit: Option<u64>,
    offset: Option<u64>,
    desc: bool,
}

fn is_transform(e: &Expr) -> bool {
    matches!(e.unparen(), Expr::Call { name, .. } if TRANSFORMS.contains(&name.as_str()))
}

fn mentions_transform(e: &Expr) -> bool {
    match e {
        Expr::Call { name, args } => {
            TRANSFORMS.contains(&name.as_str()) || args.iter().any(mentions_transform)
        }
        Expr::Binary { lhs, rhs, .. } => mentions_transform(lhs) || mentions_transform(rhs),
        Expr::Paren(inner) => mentions_transform(inner),
        _ => false,
    }
}

/// `None` when `s` has no transformation; an error for what Bulkhead does not do with
/// them (other fields beside them, arithmetic on them) or InfluxDB rejects.
pub(super) fn plan(s: &Select) -> Result<Option<Plan>, String> {
    if !s.fields.iter().any(|f| mentions_transform(&f.expr)) {
        return Ok(None);
    }
    if !s.fields.iter().all(|f| is_transform(&f.expr)) {
        return Err(
            "transformations (derivative, difference, ...) combined with other \
                    fields or inside expressions are not supported by Bulkhead yet"
                .into(),
        );
    }
    let interval = s.group_by.iter().find_map(|d| match d {
        Dimension::Time { interval, .. } => Some(*interval),
        _ => None,
    });
    let mut kinds = Vec::new();
    let mut names = Vec::new();
    let mut fields = Vec::new();
    for f in &s.fields {
        let Expr::Call { name, args } = f.expr.unparen() else {
            unreachable!("checked by is_transform");
        };
        let Some(arg) = args.first() else {
            return Err(format!(
                "invalid number of arguments for {name}, expected at least 1, got 0"
            ));
        };
        let aggregate = matches!(arg, Expr::Call { .. });
        match (interval, aggregate) {
            (Some(_), false) => {
                return Err(format!(
                    "aggregate function required inside the call to {name}"
                ));
            }
            (None, true) => return Err(format!("{name} aggregate requires a GROUP BY interval")),
            _ => {}
        }
        if !matches!(arg, Expr::Var { .. } | Expr::Call { .. }) {
            return Err(format!("expected field argument in {name}()"));
        }
        let duration = |default: i64| match args.get(1) {
            None => Ok(default),
            Some(Expr::Duration(d)) if *d > 0 => Ok(*d),
            Some(_) => Err(format!("second argument to {name} must be a duration")),
        };
        let max_args = |n: usize| {
            if args.len() > n {
                Err(format!(
                    "invalid number of arguments for {name}, expected at most {n}, got {}",
                    args.len()
                ))
            } else {
                Ok(())
            }
        };
        let kind = match name.as_str() {
            "derivative" | "non_negative_derivative" => {
                max_args(2)?;
                Kind::Derivative {
                    unit: duration(interval.unwrap_or(1_000_000_000))?,
                    non_negative: name.starts_with("non_negative"),
                }
            }
            "difference" | "non_negative_difference" => {
                max_args(1)?;
                Kind::Difference {
                    non_negative: name.starts_with("non_negative"),
                }
            }
            "cumulative_sum" => {
                max_args(1)?;
                Kind::CumulativeSum
            }
            "moving_average" => match args.get(1) {
                Some(Expr::Integer(n)) if *n > 1 && args.len() == 2 => {
                    Kind::MovingAverage(*n as usize)
                }
                Some(Expr::Integer(_)) if args.len() == 2 => {
                    return Err("moving_average window must be greater than 1".into());
                }
                _ => {
                    return Err("moving_average takes a field and an integer window".into());
                }
            },
            _ => {
                max_args(2)?;
                Kind::Elapsed(duration(1)?)
            }
        };
        kinds.push(kind);
        names.push(f.alias.clone().unwrap_or_else(|| name.clone()));
        fields.push(Field {
            expr: arg.clone(),
            alias: None,
        });
    }
    dedup_names(&mut names);
    let mut inner = s.clone();
    inner.fields = fields;
    inner.limit = None;
    inner.offset = None;
    Ok(Some(Plan {
        inner,
        kinds,
        names,
        interval,
        limit: s.limit,
        offset: s.offset,
        desc: s.order_desc,
    }))
}

/// Duplicate column names get `_1`, `_2`... as InfluxDB names them.
fn dedup_names(names: &mut [String]) {
    let mut seen = std::collections::BTreeMap::new();
    for n in names.iter_mut() {
        let count = seen.entry(n.clone()).or_insert(0);
        if *count > 0 {
            *n = format!("{n}_{count}");
        }
        *count += 1;
    }
}

impl Plan {
    /// The `GROUP BY time` interval read beyond the query's range: for everything but
    /// `cumulative_sum`.
    fn extension(&self) -> Option<i64> {
        self.interval
            .filter(|_| self.kinds.iter().any(|k| !matches!(k, Kind::CumulativeSum)))
    }

    /// The time range to read: one more interval before the start (with `ORDER BY time
    /// DESC`, after the end, where the transformation starts), as InfluxDB does.
    pub(super) fn read_range(&self, range: TimeRange) -> TimeRange {
        let Some(iv) = self.extension() else {
            return range;
        };
        match (self.desc, range) {
            (false, TimeRange { lower: Some(l), .. }) => TimeRange {
                lower: Some(l.saturating_sub(iv)),
                ..range
            },
            (true, TimeRange { upper: Some(u), .. }) => TimeRange {
                upper: Some(u.saturating_add(iv)),
                ..range
            },
            _ => range,
        }
    }

    /// Whether a row at `t` belongs to the query's own range (not to the extension).
    fn in_range(&self, range: TimeRange, t: i64) -> bool {
        let Some(iv) = self.extension() else {
            return true;
        };
        // The first (last) bucket of the range starts after lower - iv (at most upper).
        match (self.desc, range) {
            (false, TimeRange { lower: Some(l), .. }) => t > l.saturating_sub(iv),
            (true, TimeRange { upper: Some(u), .. }) => t <= u,
            _ => true,
        }
    }

    /// Transform the series read with [`Plan::read_range`]; `range` is the query's own.
    pub(super) fn apply(&self, series: Vec<Series>, range: TimeRange) -> Vec<Series> {
        let mut out = Vec::new();
        for mut s in series {
            s.materialize();
            let times: Vec<i64> = s
                .values
                .iter()
                .map(|r| r[0].as_i64().unwrap_or(0))
                .collect();
            let mut cells: Vec<Vec<Value>> = vec![vec![Value::Null; self.kinds.len()]; times.len()];
            for (c, kind) in self.kinds.iter().enumerate() {
                let points: Vec<(usize, &Value)> = s
                    .values
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.get(c + 1).is_some_and(Value::is_number))
                    .map(|(i, r)| (i, &r[c + 1]))
                    .collect();
                let outputs = transform(*kind, &points, &times, self.desc);
                let kept = outputs
                    .into_iter()
                    .filter(|(i, _)| self.in_range(range, times[*i]))
                    .skip(self.offset.unwrap_or(0) as usize)
                    .take(
                        self.limit
                            .filter(|l| *l > 0)
                            .map_or(usize::MAX, |l| l as usize),
                    );
                for (i, v) in kept {
                    cells[i][c] = v;
                }
            }
            let values: Vec<Vec<Value>> = times
                .iter()
                .zip(cells)
                .filter(|(_, row)| row.iter().any(|v| !v.is_null()))
                .map(|(t, row)| {
                    let mut r = vec![Value::from(*t)];
                    r.extend(row);
                    r
                })
                .collect();
            if values.is_empty() {
                continue;
            }
            s.columns = std::iter::once("time".to_string())
                .chain(self.names.iter().cloned())
                .collect();
            s.values = values;
            out.push(s);
        }
        out
    }
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Apply `kind` to the non-null `points` (row index, value) of one column; the outputs
/// by row index. `times` are the rows' times, `desc` whether they run backwards.
fn transform(
    kind: Kind,
    points: &[(usize, &Value)],
    times: &[i64],
    desc: bool,
) -> Vec<(usize, Value)> {
    let mut out = Vec::new();
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    match kind {
        Kind::Derivative { unit, non_negative } => {
            for pair in points.windows(2) {
                let ((p, pv), (c, cv)) = (pair[0], pair[1]);
                let mut elapsed = times[c] - times[p];
                if desc {
                    elapsed = -elapsed;
                }
                if elapsed == 0 {
                    continue;
                }
                let d = (f(cv) - f(pv)) / (elapsed as f64 / unit as f64);
                if !(non_negative && d < 0.0) {
                    out.push((c, float(d)));
                }
            }
        }
        Kind::Difference { non_negative } => {
            for pair in points.windows(2) {
                let ((_, pv), (c, cv)) = (pair[0], pair[1]);
                let d = match (pv.as_i64(), cv.as_i64()) {
                    (Some(a), Some(b)) => Value::from(b.wrapping_sub(a)),
                    _ => float(f(cv) - f(pv)),
                };
                if !(non_negative && d.as_f64().is_some_and(|x| x < 0.0)) {
                    out.push((c, d));
                }
            }
        }
        Kind::CumulativeSum => {
            let (mut int, mut sum, mut all_int) = (0i64, 0.0, true);
            for (i, v) in points {
                match v.as_i64() {
                    Some(x) if all_int => int = int.wrapping_add(x),
                    _ => all_int = false,
                }
                sum += f(v);
                out.push((
                    *i,
                    if all_int {
                        Value::from(int)
                    } else {
                        float(sum)
                    },
                ));
            }
        }
        Kind::MovingAverage(n) => {
            for window in points.windows(n) {
                let mean = window.iter().map(|(_, v)| f(v)).sum::<f64>() / n as f64;
                out.push((window[n - 1].0, float(mean)));
            }
        }
        Kind::Elapsed(unit) => {
            for pair in points.windows(2) {
                // Not turned around for DESC (negative), unlike derivative.
                let ((p, _), (c, _)) = (pair[0], pair[1]);
                out.push((c, Value::from((times[c] - times[p]) / unit)));
            }
        }
    }
    out
}

#[path = "transform_window.rs"]
mod window;

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: Kind, values: &[Value]) -> Vec<(usize, Value)> {
        let times: Vec<i64> = (0..values.len() as i64).map(|i| i * 10).collect();
        let points: Vec<(usize, &Value)> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_null())
            .collect();
        transform(kind, &points, &times, false)
    }

    #[test]
    fn each_transformation() {
        let v = [Value::from(1), Value::from(4), Value::Null, Value::from(2)];
        let d = run(
            Kind::Derivative {
                unit: 10,
                non_negative: false,
            },
            &v,
        );
        assert_eq!(d, vec![(1, float(3.0)), (3, float(-1.0))]);
        let nn = run(
            Kind::Derivative {
                unit: 10,
                non_negative: true,
            },
            &v,
        );
        assert_eq!(nn, vec![(1, float(3.0))]);
        let diff = run(
            Kind::Difference {
                non_negative: false,
            },
            &v,
        );
        assert_eq!(diff, vec![(1, Value::from(3)), (3, Value::from(-2))]);
        let sum = run(Kind::CumulativeSum, &v);
        assert_eq!(
            sum,
            vec![
                (0, Value::from(1)),
                (1, Value::from(5)),
                (3, Value::from(7))
            ]
        );
        let avg = run(Kind::MovingAverage(2), &v);
        assert_eq!(avg, vec![(1, float(2.5)), (3, float(3.0))]);
        let el = run(Kind::Elapsed(1), &v);
        assert_eq!(el, vec![(1, Value::from(10)), (3, Value::from(20))]);
        let mixed = run(Kind::CumulativeSum, &[Value::from(1), float(0.5)]);
        assert_eq!(mixed[1], (1, float(1.5)));
    }

    #[test]
    fn plans_and_errors() {
        let parse = |q: &str| match super::super::parser::parse(q).unwrap().remove(0) {
            super::super::ast::Statement::Select(s) => plan(&s),
            other => panic!("{other:?}"),
        };
        assert!(parse("SELECT mean(v) FROM m").unwrap().is_none());
        let p = parse("SELECT derivative(mean(v)) FROM m GROUP BY time(1m)")
            .unwrap()
            .unwrap();
        assert_eq!(
            p.kinds,
            vec![Kind::Derivative {
                unit: 60_000_000_000,
                non_negative: false
            }]
        );
        let p = parse("SELECT difference(v), difference(w) AS d FROM m")
            .unwrap()
            .unwrap();
        assert_eq!(p.names, vec!["difference", "d"]);
        for (q, want) in [
            (
                "SELECT derivative(v) FROM m GROUP BY time(1m)",
                "aggregate function required",
            ),
            (
                "SELECT derivative(max(v)) FROM m",
                "requires a GROUP BY interval",
            ),
            ("SELECT derivative(v), v FROM m", "not supported"),
            ("SELECT moving_average(v, 1) FROM m", "greater than 1"),
            ("SELECT derivative(v, 5) FROM m", "must be a duration"),
        ] {
            let err = parse(q).err().unwrap_or_default();
            assert!(err.contains(want), "{q}: {err}");
        }
    }
}
