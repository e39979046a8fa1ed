//! Function calls: range-vector functions (windows over each step, see [`super::range`]),
//! element-wise math, label manipulation, `absent`, `histogram_quantile`, time and date.

use promql_parser::parser::{Call, Expr};
use regex::Regex;

use super::range::{self, Window};
use super::{Evaluator, non_empty};
use crate::error::{Error, Result};
use crate::plan::{MatchKind, selector_matchers};
use crate::types::{Labels, NAME, StepSeries, Value};

pub(super) fn call(ev: &Evaluator<'_>, c: &Call) -> Result<Value> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    if range::is_range_function(name) {
        return range_call(ev, name, &args);
    }
    if name.starts_with("histogram_") && name != "histogram_quantile" {
        return Err(Error::BadData(format!(
            "{name}(): native histograms are not supported (Bulkhead stores classic \
             histograms only; use histogram_quantile over `le` buckets)"
        )));
    }
    let n = ev.steps();
    match name {
        "time" => Ok(Value::Scalar(
            (0..n).map(|i| ev.ts(i) as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Value::Scalar(vec![std::f64::consts::PI; n])),
        "vector" => {
            let v = ev.scalar_arg(args[0])?;
            Ok(Value::Vector(vec![StepSeries {
                labels: Labels::empty(),
                values: v.into_iter().map(Some).collect(),
            }]))
        }
        "scalar" => {
            let v = ev.vector_arg(args[0])?;
            Ok(Value::Scalar(
                (0..n)
                    .map(|i| {
                        let mut present = v.iter().filter_map(|s| s.values[i]);
                        match (present.next(), present.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "timestamp" => timestamp(ev, args[0]),
        "absent" => absent(ev, args[0]),
        "absent_over_time" => absent_over_time(ev, args[0]),
        "sort" | "sort_desc" => ev.eval(args[0]),
        "label_replace" => label_replace(ev, &args),
        "label_join" => label_join(ev, &args),
        "histogram_quantile" => histogram_quantile(ev, &args),
        "round" => {
            let v = ev.vector_arg(args[0])?;
            let to = match args.get(1) {
                Some(a) => ev.scalar_arg(a)?,
                None => vec![1.0; n],
            };
            Ok(Value::Vector(map_steps(v, true, |i, x| {
                let inv = 1.0 / to[i];
                Some((x * inv + 0.5).floor() / inv)
            })))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = ev.vector_arg(args[0])?;
            let a = ev.scalar_arg(args[1])?;
            let b = match args.get(2) {
                Some(e) => ev.scalar_arg(e)?,
                None => vec![f64::NAN; n],
            };
            Ok(Value::Vector(non_empty(map_steps(
                v,
                true,
                |i, x| match name {
                    "clamp_min" => Some(x.max(a[i])),
                    "clamp_max" => Some(x.min(a[i])),
                    _ if b[i] < a[i] => None,
                    _ => Some(x.max(a[i]).min(b[i])),
                },
            ))))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = match args.first() {
                Some(a) => ev.vector_arg(a)?,
                None => vec![StepSeries {
                    labels: Labels::empty(),
                    values: (0..n).map(|i| Some(ev.ts(i) as f64 / 1000.0)).collect(),
                }],
            };
            Ok(Value::Vector(map_steps(v, true, |_, x| {
                Some(date_part(name, x))
            })))
        }
        _ => match math(name) {
            Some(f) => {
                let v = ev.vector_arg(args[0])?;
                Ok(Value::Vector(map_steps(v, true, |_, x| Some(f(x)))))
            }
            None => Err(Error::BadData(format!(
                "function {name}() is not supported by Bulkhead (see docs/promql.md)"
            ))),
        },
    }
}

/// Element-wise math functions.
fn math(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "sqrt" => f64::sqrt,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |x: f64| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        _ => return None,
    })
}

/// Apply `f(step, value)` to every value; `drop_name` removes `__name__`.
fn map_steps(
    v: Vec<StepSeries>,
    drop_name: bool,
    f: impl Fn(usize, f64) -> Option<f64>,
) -> Vec<StepSeries> {
    v.into_iter()
        .map(|s| StepSeries {
            labels: if drop_name {
                s.labels.without_name()
            } else {
                s.labels
            },
            values: s
                .values
                .iter()
                .enumerate()
                .map(|(i, x)| x.and_then(|x| f(i, x)))
                .collect(),
        })
        .collect()
}

fn range_call(ev: &Evaluator<'_>, name: &str, args: &[&Expr]) -> Result<Value> {
    let n = ev.steps();
    let (matrix, param) = match name {
        "quantile_over_time" => (args[1], Some(ev.scalar_arg(args[0])?)),
        "predict_linear" | "double_exponential_smoothing" => {
            (args[0], Some(ev.scalar_arg(args[1])?))
        }
        _ => (args[0], None),
    };
    let param2 = match name {
        "double_exponential_smoothing" => Some(ev.scalar_arg(args[2])?),
        _ => None,
    };
    if name == "double_exponential_smoothing" {
        let factors = param.iter().flatten().chain(param2.iter().flatten());
        if let Some(f) = factors.into_iter().find(|f| !(**f > 0.0 && **f < 1.0)) {
            return Err(Error::BadData(format!(
                "invalid smoothing or trend factor: expected 0 < factor < 1, got {f}"
            )));
        }
    }
    let arg = ev.range_arg(matrix)?;
    ev.check(arg.series.len().saturating_mul(n))?;
    let keep_name = name == "last_over_time";
    let mut out = Vec::new();
    for s in arg.series.iter() {
        ev.check(0)?;
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            let step_time = arg.at.unwrap_or(ev.ts(i));
            let end = step_time - arg.offset;
            let start = end - arg.range;
            let (lo, hi) = s.window(start, end);
            values.push(if lo == hi {
                None
            } else {
                range::apply(
                    name,
                    &Window {
                        times: &s.times[lo..hi],
                        values: &s.values[lo..hi],
                        range_start: start,
                        range_end: end,
                        step_time,
                        param: param.as_ref().map_or(0.0, |p| p[i]),
                        param2: param2.as_ref().map_or(0.0, |p| p[i]),
                    },
                )
            });
        }
        if values.iter().any(Option::is_some) {
            out.push(StepSeries {
                labels: if keep_name {
                    s.labels.clone()
                } else {
                    s.labels.without_name()
                },
                values,
            });
        }
    }
    Ok(Value::Vector(out))
}

/// `timestamp(v)`: the time of each sample (of the selected sample for a selector).
fn timestamp(ev: &Evaluator<'_>, arg: &Expr) -> Result<Value> {
    let mut inner = arg;
    while let Expr::Paren(p) = inner {
        inner = &p.expr;
    }
    if let Expr::VectorSelector(vs) = inner {
        let samples = ev.vector_selector_samples(vs)?;
        return Ok(Value::Vector(
            samples
                .into_iter()
                .map(|(labels, points)| StepSeries {
                    labels: labels.without_name(),
                    values: points
                        .into_iter()
                        .map(|p| p.map(|(t, _)| t as f64 / 1000.0))
                        .collect(),
                })
                .collect(),
        ));
    }
    let v = ev.vector_arg(arg)?;
    Ok(Value::Vector(map_steps(v, true, |i, _| {
        Some(ev.ts(i) as f64 / 1000.0)
    })))
}

/// The labels `absent` gives its one series: the selector's equality matchers.
fn absent_labels(arg: &Expr) -> Labels {
    let mut inner = arg;
    loop {
        match inner {
            Expr::Paren(p) => inner = &p.expr,
            Expr::MatrixSelector(ms) => return selector_labels(&ms.vs),
            Expr::VectorSelector(vs) => return selector_labels(vs),
            _ => return Labels::empty(),
        }
    }
}

fn selector_labels(vs: &promql_parser::parser::VectorSelector) -> Labels {
    let Ok(matchers) = selector_matchers(vs) else {
        return Labels::empty();
    };
    let mut pairs = Vec::new();
    let mut seen_twice = Vec::new();
    for m in matchers.iter().filter(|m| m.name != NAME) {
        if m.kind == MatchKind::Equal {
            if pairs.iter().any(|(n, _): &(String, String)| *n == m.name) {
                seen_twice.push(m.name.clone());
            }
            pairs.push((m.name.clone(), m.value.clone()));
        }
    }
    pairs.retain(|(n, _)| !seen_twice.contains(n));
    Labels::new(pairs)
}

fn absent(ev: &Evaluator<'_>, arg: &Expr) -> Result<Value> {
    let v = ev.vector_arg(arg)?;
    let values = (0..ev.steps())
        .map(|i| (!v.iter().any(|s| s.values[i].is_some())).then_some(1.0))
        .collect();
    Ok(Value::Vector(non_empty(vec![StepSeries {
        labels: absent_labels(arg),
        values,
    }])))
}

fn absent_over_time(ev: &Evaluator<'_>, arg: &Expr) -> Result<Value> {
    let Value::Vector(present) = range_call(ev, "present_over_time", &[arg])? else {
        return Err(Error::Execution(
            "absent_over_time: unexpected value".into(),
        ));
    };
    let values = (0..ev.steps())
        .map(|i| (!present.iter().any(|s| s.values[i].is_some())).then_some(1.0))
        .collect();
    Ok(Value::Vector(non_empty(vec![StepSeries {
        labels: absent_labels(arg),
        values,
    }])))
}

fn string_arg(ev: &Evaluator<'_>, e: &Expr) -> Result<String> {
    match ev.eval(e)? {
        Value::String(s) => Ok(s),
        other => Err(Error::BadData(format!(
            "expected a string argument, got a {}",
            other.type_name()
        ))),
    }
}

fn check_label_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(Error::BadData(format!("invalid label name {name:?}")))
    }
}

/// Merge series that got the same labels (an error when two have a value at one step).
fn dedup_labels(v: Vec<StepSeries>) -> Result<Vec<StepSeries>> {
    let mut out: Vec<StepSeries> = Vec::with_capacity(v.len());
    let mut index = std::collections::HashMap::new();
    for s in v {
        match index.get(&s.labels) {
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
            Some(&i) => {
                let target: &mut StepSeries = &mut out[i];
                for (a, b) in target.values.iter_mut().zip(s.values) {
                    if a.is_some() && b.is_some() {
                        return Err(Error::Execution(
                            "vector cannot contain metrics with the same labelset".into(),
                        ));
                    }
                    if b.is_some() {
                        *a = b;
                    }
                }
            }
        }
    }
    Ok(out)
}

fn label_replace(ev: &Evaluator<'_>, args: &[&Expr]) -> Result<Value> {
    let v = ev.vector_arg(args[0])?;
    let dst = string_arg(ev, args[1])?;
    let replacement = string_arg(ev, args[2])?;
    let src = string_arg(ev, args[3])?;
    let regex_text = string_arg(ev, args[4])?;
    let re = Regex::new(&format!("^(?:{regex_text})$")).map_err(|e| {
        Error::BadData(format!(
            "invalid regular expression in label_replace(): {e}"
        ))
    })?;
    check_label_name(&dst)?;
    let out = v
        .into_iter()
        .map(|mut s| {
            if let Some(caps) = re.captures(s.labels.get(&src)) {
                let mut value = String::new();
                caps.expand(&replacement, &mut value);
                s.labels.set(&dst, &value);
            }
            s
        })
        .collect();
    Ok(Value::Vector(dedup_labels(out)?))
}

fn label_join(ev: &Evaluator<'_>, args: &[&Expr]) -> Result<Value> {
    let v = ev.vector_arg(args[0])?;
    let dst = string_arg(ev, args[1])?;
    let sep = string_arg(ev, args[2])?;
    let mut srcs = Vec::new();
    for a in &args[3..] {
        srcs.push(string_arg(ev, a)?);
    }
    check_label_name(&dst)?;
    let out = v
        .into_iter()
        .map(|mut s| {
            let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n)).collect();
            let value = joined.join(&sep);
            s.labels.set(&dst, &value);
            s
        })
        .collect();
    Ok(Value::Vector(dedup_labels(out)?))
}

/// `histogram_quantile(φ, buckets)` over classic buckets (`le` labels).
fn histogram_quantile(ev: &Evaluator<'_>, args: &[&Expr]) -> Result<Value> {
    let q = ev.scalar_arg(args[0])?;
    let v = ev.vector_arg(args[1])?;
    let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for (si, s) in v.iter().enumerate() {
        let Ok(upper) = parse_go_float(s.labels.get("le")) else {
            continue;
        };
        let mut key = s.labels.without_name();
        key.remove("le");
        let gi = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[gi].1.push((upper, si));
    }
    let n = ev.steps();
    let mut out = Vec::new();
    for (labels, buckets) in groups {
        let values = (0..n)
            .map(|i| {
                let b: Vec<(f64, f64)> = buckets
                    .iter()
                    .filter_map(|&(up, si)| v[si].values[i].map(|c| (up, c)))
                    .collect();
                (!b.is_empty()).then(|| bucket_quantile(q[i], b))
            })
            .collect();
        out.push(StepSeries { labels, values });
    }
    Ok(Value::Vector(non_empty(out)))
}

/// Go's `strconv.ParseFloat` for bucket bounds (`+Inf`, `Inf`, `NaN` included).
fn parse_go_float(s: &str) -> std::result::Result<f64, ()> {
    match s.to_ascii_lowercase().as_str() {
        "+inf" | "inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| ()),
    }
}

fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce equal bounds.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (up, c) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == up => last.1 += c,
            _ => merged.push((up, c)),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1].partition_point(|x| x.1 < rank);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn date_part(name: &str, seconds: f64) -> f64 {
    let secs = seconds.floor() as i64;
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    match name {
        "day_of_month" => f64::from(d),
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => {
            let before: u32 = month_days[..(m - 1) as usize].iter().sum();
            f64::from(before + d + u32::from(m > 2 && is_leap(y)))
        }
        "days_in_month" => {
            f64::from(month_days[(m - 1) as usize] + u32::from(m == 2 && is_leap(y)))
        }
        "hour" => (in_day / 3600) as f64,
        "minute" => (in_day % 3600 / 60) as f64,
        "month" => f64::from(m),
        _ => y as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        // 2024-02-29T13:45:00Z, a Thursday.
        let t = 1_709_214_300.0;
        assert_eq!(date_part("year", t), 2024.0);
        assert_eq!(date_part("month", t), 2.0);
        assert_eq!(date_part("day_of_month", t), 29.0);
        assert_eq!(date_part("day_of_week", t), 4.0);
        assert_eq!(date_part("day_of_year", t), 60.0);
        assert_eq!(date_part("days_in_month", t), 29.0);
        assert_eq!(date_part("hour", t), 13.0);
        assert_eq!(date_part("minute", t), 45.0);
    }

    #[test]
    fn bucket_quantiles() {
        let b = vec![(0.1, 10.0), (0.5, 30.0), (f64::INFINITY, 40.0)];
        assert_eq!(bucket_quantile(0.25, b.clone()), 0.1);
        assert!((bucket_quantile(0.5, b.clone()) - 0.3).abs() < 1e-12);
        assert_eq!(bucket_quantile(0.9, b.clone()), 0.5);
        assert!(bucket_quantile(0.5, vec![(0.1, 1.0)]).is_nan());
    }
}
