//! Range-vector functions: each maps the samples of one series in one step's window
//! to a value (or none), with Prometheus 2.42's formulas (extrapolated rate, counter
//! resets, Kahan sums, linear regression).

/// One step's window of one series, and what the function needs to know about it.
pub(crate) struct Window<'s> {
    pub times: &'s [i64],
    pub values: &'s [f64],
    /// `[range_start, range_end]`: the window's bounds (ms).
    pub range_start: i64,
    pub range_end: i64,
    /// The evaluation step's time (ms), before offset.
    pub step_time: i64,
    /// The scalar argument, if any (quantile's φ, predict_linear's t, the smoothing
    /// factor of double_exponential_smoothing).
    pub param: f64,
    /// A second scalar argument (double_exponential_smoothing's trend factor).
    pub param2: f64,
}

/// Whether `name` is a range-vector function this module computes.
pub(crate) fn is_range_function(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "resets"
            | "changes"
            | "avg_over_time"
            | "min_over_time"
            | "max_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "last_over_time"
            | "quantile_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "present_over_time"
            | "mad_over_time"
            | "double_exponential_smoothing"
    )
}

/// Apply range function `name` to window `w` (non-empty).
pub(crate) fn apply(name: &str, w: &Window<'_>) -> Option<f64> {
    let v = w.values;
    let n = v.len();
    match name {
        "rate" => extrapolated_rate(w, true, true),
        "increase" => extrapolated_rate(w, true, false),
        "delta" => extrapolated_rate(w, false, false),
        "irate" | "idelta" => {
            if n < 2 {
                return None;
            }
            let (last, prev) = (v[n - 1], v[n - 2]);
            if name == "idelta" {
                return Some(last - prev);
            }
            let interval = w.times[n - 1] - w.times[n - 2];
            if interval == 0 {
                return None;
            }
            let delta = if last < prev { last } else { last - prev };
            Some(delta / (interval as f64 / 1000.0))
        }
        "deriv" => (n >= 2).then(|| linear_regression(w.times, v, w.times[0]).0),
        "predict_linear" => (n >= 2).then(|| {
            let (slope, intercept) = linear_regression(w.times, v, w.step_time);
            slope * w.param + intercept
        }),
        "resets" => Some(v.windows(2).filter(|p| p[1] < p[0]).count() as f64),
        "changes" => Some(
            v.windows(2)
                .filter(|p| p[1] != p[0] && !(p[1].is_nan() && p[0].is_nan()))
                .count() as f64,
        ),
        "avg_over_time" => Some(avg(v)),
        "min_over_time" => Some(
            v.iter()
                .fold(v[0], |m, &x| if x < m || m.is_nan() { x } else { m }),
        ),
        "max_over_time" => Some(
            v.iter()
                .fold(v[0], |m, &x| if x > m || m.is_nan() { x } else { m }),
        ),
        "sum_over_time" => Some(kahan_sum(v)),
        "count_over_time" => Some(n as f64),
        "last_over_time" => Some(v[n - 1]),
        "present_over_time" => Some(1.0),
        "quantile_over_time" => Some(quantile(w.param, v.to_vec())),
        "stddev_over_time" => Some(stdvar(v).sqrt()),
        "stdvar_over_time" => Some(stdvar(v)),
        "mad_over_time" => {
            let median = quantile(0.5, v.to_vec());
            Some(quantile(
                0.5,
                v.iter().map(|x| (x - median).abs()).collect(),
            ))
        }
        "double_exponential_smoothing" => (n >= 2).then(|| smooth(v, w.param, w.param2)),
        _ => None,
    }
}

/// `rate`, `increase` and `delta`: the change over the window, corrected for counter
/// resets, extrapolated towards the window's bounds (Prometheus 2.42
/// `extrapolatedRate`).
fn extrapolated_rate(w: &Window<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let (t, v) = (w.times, w.values);
    let n = v.len();
    if n < 2 {
        return None;
    }
    let mut result = v[n - 1] - v[0];
    if is_counter {
        let mut last = 0.0;
        for &x in v {
            if x < last {
                result += last;
            }
            last = x;
        }
    }
    let mut to_start = (t[0] - w.range_start) as f64 / 1000.0;
    let to_end = (w.range_end - t[n - 1]) as f64 / 1000.0;
    let sampled = (t[n - 1] - t[0]) as f64 / 1000.0;
    let avg_between = sampled / (n - 1) as f64;
    if is_counter && result > 0.0 && v[0] >= 0.0 {
        let to_zero = sampled * (v[0] / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_between / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_between / 2.0
    };
    result *= interval / sampled;
    if is_rate {
        result /= (w.range_end - w.range_start) as f64 / 1000.0;
    }
    Some(result)
}

/// Holt's double exponential smoothing (Prometheus' `holt_winters`, renamed in 3.0):
/// the smoothed value at the last sample, for smoothing factor `sf` and trend factor `tf`.
fn smooth(v: &[f64], sf: f64, tf: f64) -> f64 {
    let (mut s0, mut s1) = (0.0, v[0]);
    let mut b = v[1] - v[0];
    for (i, &x) in v.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * x + (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, next);
    }
    s1
}

/// Kahan-compensated sum.
pub(crate) fn kahan_sum(v: &[f64]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for &x in v {
        (sum, c) = kahan_inc(x, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

pub(crate) fn kahan_inc(x: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + x;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= x.abs() {
        c + ((sum - t) + x)
    } else {
        c + ((x - t) + sum)
    };
    (t, c)
}

fn avg(v: &[f64]) -> f64 {
    let (mut mean, mut c, mut count) = (0.0f64, 0.0, 0.0);
    for &x in v {
        count += 1.0;
        if mean.is_infinite() {
            if x.is_infinite() && (mean > 0.0) == (x > 0.0) {
                continue;
            }
            if !x.is_infinite() && !x.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(x / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

/// Population variance (Welford), as `stdvar_over_time`.
pub(crate) fn stdvar(v: &[f64]) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for &x in v {
        count += 1.0;
        let delta = x - mean;
        mean += delta / count;
        m2 += delta * (x - mean);
    }
    m2 / count
}

/// The φ-quantile of `values` (Prometheus' interpolation between closest ranks).
pub(crate) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Go sorts NaN first with `<` on floats in sort.Float64s-like order.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Least-squares slope and intercept of `values` over `times` (seconds relative to
/// `intercept_time`).
pub(crate) fn linear_regression(times: &[i64], values: &[f64], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let init = values[0];
    let mut const_y = true;
    for (i, (&t, &y)) in times.iter().zip(values).enumerate() {
        if const_y && i > 0 && y != init {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1000.0;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(y, sy, cy);
        (sxy, cxy) = kahan_inc(x * y, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w<'a>(times: &'a [i64], values: &'a [f64], start: i64, end: i64) -> Window<'a> {
        Window {
            times,
            values,
            range_start: start,
            range_end: end,
            step_time: end,
            param: 0.5,
            param2: 0.5,
        }
    }

    #[test]
    fn rate_of_a_regular_counter_is_its_slope() {
        let times: Vec<i64> = (0..=10).map(|i| i * 10_000).collect();
        let values: Vec<f64> = (0..=10).map(|i| 100.0 + i as f64 * 5.0).collect();
        // Window exactly covering the samples: no extrapolation needed.
        let r = apply("rate", &w(&times, &values, 0, 100_000)).unwrap();
        assert!((r - 0.5).abs() < 1e-12, "{r}");
        let inc = apply("increase", &w(&times, &values, 0, 100_000)).unwrap();
        assert!((inc - 50.0).abs() < 1e-9, "{inc}");
    }

    #[test]
    fn counter_resets_are_added_back() {
        let times = [0, 10_000, 20_000, 30_000];
        let values = [10.0, 20.0, 5.0, 15.0];
        // 10 + (20) + 15 - 10 ... raw increase 5, plus reset 20 = 25.
        let inc = apply("increase", &w(&times, &values, 0, 30_000)).unwrap();
        assert!((inc - 25.0).abs() < 1e-9, "{inc}");
        assert_eq!(apply("resets", &w(&times, &values, 0, 30_000)), Some(1.0));
        assert_eq!(apply("changes", &w(&times, &values, 0, 30_000)), Some(3.0));
        assert_eq!(apply("irate", &w(&times, &values, 0, 30_000)), Some(1.0));
    }

    #[test]
    fn quantile_and_regression() {
        assert_eq!(quantile(0.5, vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(quantile(0.25, vec![1.0, 2.0, 3.0, 4.0, 5.0]), 2.0);
        assert!(quantile(0.5, vec![]).is_nan());
        let (slope, intercept) = linear_regression(&[0, 1000, 2000], &[1.0, 3.0, 5.0], 0);
        assert!((slope - 2.0).abs() < 1e-12 && (intercept - 1.0).abs() < 1e-12);
        assert_eq!(stdvar(&[1.0, 3.0]), 1.0);
    }

    #[test]
    fn mad_and_smoothing() {
        let t = [0, 1, 2, 3, 4];
        let v = [1.0, 2.0, 3.0, 4.0, 100.0];
        // Median 3, absolute deviations 2 1 0 1 97: median 1.
        assert_eq!(apply("mad_over_time", &w(&t, &v, 0, 4)), Some(1.0));
        // A straight line is smoothed to itself.
        let line = [1.0, 2.0, 3.0, 4.0, 5.0];
        let s = apply("double_exponential_smoothing", &w(&t, &line, 0, 4)).unwrap();
        assert!((s - 5.0).abs() < 1e-12, "{s}");
        // sf = tf = 0.5 by hand: s1 = 0.5*3 + 0.5*(1+2) = 3 for [1, 3, 2] (b = 2).
        let s = apply(
            "double_exponential_smoothing",
            &w(&t[..3], &[1.0, 3.0, 2.0], 0, 2),
        );
        // i=1: s1 = 1.5 + 0.5*(1+2) = 3; i=2: b = 0.5*(3-1) + 0.5*2 = 2, s1 = 1 + 0.5*(3+2) = 3.5.
        assert_eq!(s, Some(3.5));
    }
}
