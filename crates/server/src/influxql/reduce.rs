//! `mode(f)` and `integral(f[, unit])`, reduced in Rust over the raw points of each
//! series (read in time order with one SQL query), with InfluxDB 1.6's semantics:
//!
//! - `mode`: the most frequent value per series and `GROUP BY time` bucket, an aggregate
//!   (bucket start or the query's lower bound as time, `fill` applies). Ties follow
//!   InfluxDB's scan over the points sorted by value: a later value wins a tie unless all
//!   its points come after the last point of the value holding the mode; booleans: `true`
//!   unless `false` is strictly more frequent.
//! - `integral`: the trapezoidal area per `unit` (default `1s`) over the points of each
//!   tag set merged in time order. With `GROUP BY time` a segment crossing a bucket's end
//!   is split there by linear interpolation; after a gap the area from the end of the last
//!   bucket with points to the next point counts for the next bucket; a last bucket whose
//!   only point is at its start is left out; buckets without rows are not filled. Integer
//!   fields keep InfluxDB's accounting of the segment after a bucket's end (the
//!   interpolated value stands in for the point's own). Without `GROUP BY time` the time
//!   is `0` (integers: the query's lower bound).

use std::collections::BTreeMap;

use serde_json::Value;

use super::ast::{Expr, Select};
use super::cond::Kind;
use super::fields::{OutField, var_sql};
use super::fill::{MAX_BUCKETS, bucket_start, fill_series};
use super::points::{Query, direct_call, limit_rows, tag_key};
use super::relation::TIME_INT;
use super::sql::{cell, collect};
use super::{Ctx, Series};

enum Func {
    Mode,
    /// Per `unit` nanoseconds; whether the field is an integer.
    Integral {
        unit: i64,
        int: bool,
    },
}

/// The series of a `mode` or `integral` statement over one measurement.
pub(super) async fn series(
    ctx: &Ctx,
    s: &Select,
    q: &Query<'_>,
    fields: &[OutField],
) -> Result<Vec<Series>, String> {
    let mut funcs = Vec::new();
    let mut names = Vec::new();
    let mut first = None;
    for f in fields {
        let Some((name, args)) = direct_call(&f.expr) else {
            return Err(match &f.expr {
                Expr::Call { name, .. } => format!(
                    "{}() combined with {name}() is not supported by Bulkhead yet",
                    first.unwrap_or("mode")
                ),
                _ => "mixing aggregate and non-aggregate queries is not supported".into(),
            });
        };
        match first {
            None => first = Some(name),
            Some(other) if other != name => {
                return Err(format!(
                    "{other}() combined with {name}() is not supported by Bulkhead yet"
                ));
            }
            _ => {}
        }
        let field = match args.first() {
            Some(Expr::Var { name: f, .. }) => f.clone(),
            _ => return Err(format!("expected field argument in {name}()")),
        };
        let kind = q.cols.get(field.as_str()).copied();
        if kind == Some(Kind::Tag) {
            return Err(format!(
                "expected field argument in {name}(), found tag {field}"
            ));
        }
        let func = if name == "mode" {
            if args.len() != 1 {
                return Err(format!(
                    "invalid number of arguments for mode, expected 1, got {}",
                    args.len()
                ));
            }
            Func::Mode
        } else {
            if args.len() > 2 {
                return Err(format!(
                    "invalid number of arguments for integral, expected at most 2, got {}",
                    args.len()
                ));
            }
            let unit = match args.get(1) {
                None => 1_000_000_000,
                Some(Expr::Duration(d)) if *d > 0 => *d,
                Some(Expr::Duration(_)) => {
                    return Err("duration argument must be positive".into());
                }
                Some(_) => return Err("second argument must be a duration".into()),
            };
            if s.order_desc {
                return Err(
                    "integral() with ORDER BY time DESC is not supported by Bulkhead (InfluxDB 1.6 answers negative areas)"
                        .into(),
                );
            }
            if let Some(Kind::Field(t)) = kind
                && !matches!(t, "float" | "integer" | "unsigned")
            {
                return Err(format!(
                    "integral() takes a numeric field, {field} is a {t} field"
                ));
            }
            Func::Integral {
                unit,
                int: matches!(kind, Some(Kind::Field("integer" | "unsigned"))),
            }
        };
        funcs.push((func, field));
        names.push(f.name.clone());
    }
    if !funcs
        .iter()
        .any(|(_, f)| matches!(q.cols.get(f.as_str()), Some(Kind::Field(_))))
    {
        return Ok(Vec::new()); // no such fields here: no series, as InfluxDB 1.6
    }

    let mut select = q.tag_columns();
    select.push(format!("{TIME_INT} AS __t"));
    let mut any = Vec::new();
    for (i, (_, f)) in funcs.iter().enumerate() {
        let x = var_sql(f, q.cols);
        any.push(format!("{x} IS NOT NULL"));
        select.push(format!("{x} AS __v{i}"));
    }
    let mut conds = q.base_conds()?;
    conds.push(format!("({})", any.join(" OR ")));
    let mut order = q.tag_names();
    order.push("__t".into());
    let sql = format!(
        "SELECT {} FROM {} WHERE {} ORDER BY {}",
        select.join(", "),
        q.rel.from,
        conds.join(" AND "),
        order.join(", ")
    );
    let batches = collect(ctx, q.db, &sql).await?;
    let g = q.group_tags.len();
    // Per tag set, per column: the (time, value) of the points with the field set.
    let mut by_tags: BTreeMap<Vec<String>, Vec<Vec<(i64, Value)>>> = BTreeMap::new();
    for b in &batches {
        for row in 0..b.num_rows() {
            let t = cell(b.column(g).as_ref(), row).as_i64().unwrap_or(0);
            let columns = by_tags
                .entry(tag_key(b, row, g))
                .or_insert_with(|| vec![Vec::new(); funcs.len()]);
            for (i, col) in columns.iter_mut().enumerate() {
                let v = cell(b.column(g + 1 + i).as_ref(), row);
                if !v.is_null() {
                    col.push((t, v));
                }
            }
        }
    }
    let mut columns = vec!["time".to_string()];
    columns.extend(names);
    let width = funcs.len();

    if matches!(funcs[0].0, Func::Mode) {
        // Aggregated per bucket, then filled as every aggregate.
        let bucket = |t: i64| match q.time_dim {
            Some((iv, off)) => bucket_start(t, iv, off),
            None => q.range.lower.unwrap_or(0),
        };
        let mut min_bucket = i64::MAX;
        let mut per_tags = Vec::new();
        for (tags, cols) in by_tags {
            let mut data: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
            for (i, points) in cols.into_iter().enumerate() {
                let mut buckets: BTreeMap<i64, Vec<(i64, Value)>> = BTreeMap::new();
                for (t, v) in points {
                    buckets.entry(bucket(t)).or_default().push((t, v));
                }
                for (b, mut points) in buckets {
                    min_bucket = min_bucket.min(b);
                    data.entry(b).or_insert_with(|| vec![Value::Null; width])[i] =
                        mode(&mut points);
                }
            }
            per_tags.push((tags, data));
        }
        let mut out = Vec::new();
        for (tags, data) in per_tags {
            let mut rows: Vec<Vec<Value>> = match q.time_dim {
                Some((iv, off)) => {
                    let first = q
                        .range
                        .lower
                        .map_or(min_bucket, |l| bucket_start(l, iv, off));
                    let last = bucket_start(q.range.upper.unwrap_or(ctx.now), iv, off);
                    if (last - first) / iv > MAX_BUCKETS {
                        return Err(format!(
                            "GROUP BY time({iv}ns) over this time range would make more than {MAX_BUCKETS} buckets"
                        ));
                    }
                    let counts = vec![false; width];
                    fill_series(data, first, last, iv, width, s.fill, &counts)
                }
                None => data
                    .into_iter()
                    .map(|(t, mut v)| {
                        v.insert(0, Value::from(t));
                        v
                    })
                    .collect(),
            };
            if s.order_desc {
                rows.reverse();
            }
            let rows = limit_rows(s, rows);
            if !rows.is_empty() {
                out.push(q.series(tags, columns.clone(), rows));
            }
        }
        return Ok(out);
    }

    let mut out = Vec::new();
    for (tags, cols) in by_tags {
        let mut data: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
        for (i, points) in cols.into_iter().enumerate() {
            let Func::Integral { unit, int } = funcs[i].0 else {
                continue;
            };
            let points: Vec<(i64, f64)> = points
                .into_iter()
                .map(|(t, v)| (t, v.as_f64().unwrap_or(0.0)))
                .collect();
            let start = if int { q.range.lower.unwrap_or(0) } else { 0 };
            for (t, v) in integral(&points, unit, int, q.time_dim, start) {
                data.entry(t).or_insert_with(|| vec![Value::Null; width])[i] = float(v);
            }
        }
        let rows: Vec<Vec<Value>> = data
            .into_iter()
            .map(|(t, mut v)| {
                v.insert(0, Value::from(t));
                v
            })
            .collect();
        let rows = limit_rows(s, rows);
        if !rows.is_empty() {
            out.push(q.series(tags, columns.clone(), rows));
        }
    }
    Ok(out)
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Order of two values of one column (numbers, strings or booleans).
fn value_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&y.as_f64().unwrap_or(0.0)),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

/// InfluxDB 1.6's mode of `points` (time, value), which it sorts by value (here also
/// by time, which its sort keeps for small inputs).
fn mode(points: &mut [(i64, Value)]) -> Value {
    if points.len() == 1 {
        return points[0].1.clone();
    }
    if points.iter().all(|(_, v)| v.is_boolean()) {
        let trues = points
            .iter()
            .filter(|(_, v)| v == &Value::Bool(true))
            .count();
        return Value::Bool(trues >= points.len() - trues);
    }
    points.sort_by(|a, b| value_order(&a.1, &b.1).then(a.0.cmp(&b.0)));
    let (mut most_freq, mut curr_freq) = (0usize, 0usize);
    let mut curr_mode = points[0].1.clone();
    let mut most_mode = points[0].1.clone();
    let (mut most_time, mut curr_time) = (points[0].0, points[0].0);
    for (t, v) in points.iter() {
        if *v != curr_mode {
            curr_freq = 1;
            curr_mode = v.clone();
            curr_time = *t;
            continue;
        }
        curr_freq += 1;
        if most_freq > curr_freq || (most_freq == curr_freq && curr_time > most_time) {
            continue;
        }
        most_freq = curr_freq;
        most_mode = v.clone();
        most_time = *t;
    }
    most_mode
}

/// InfluxDB's linear interpolation at `t` between two points.
fn linear(t: i64, t0: i64, t1: i64, v0: f64, v1: f64) -> f64 {
    let m = (v1 - v0) / (t1 - t0) as f64;
    m * (t - t0) as f64 + v0
}

/// InfluxDB 1.6's integral of `points` (time order): (bucket start or `start`, area).
fn integral(
    points: &[(i64, f64)],
    unit: i64,
    int: bool,
    time_dim: Option<(i64, i64)>,
    start: i64,
) -> Vec<(i64, f64)> {
    let window = |t: i64| match time_dim {
        Some((iv, off)) => {
            let s = bucket_start(t, iv, off);
            (s, s + iv)
        }
        None => (start, i64::MAX),
    };
    let unit = unit as f64;
    let mut out = Vec::new();
    let mut prev: Option<(i64, f64)> = None;
    let (mut ws, mut we) = (start, i64::MAX);
    let mut sum = 0.0;
    for &(t, v) in points {
        let Some((mut pt, mut pv)) = prev else {
            prev = Some((t, v));
            (ws, we) = window(t);
            continue;
        };
        if pt == t {
            prev = Some((t, v));
            continue;
        }
        let mut value = v;
        if time_dim.is_some() && t >= we {
            if pt != we {
                let at_end = linear(we, pt, t, pv, v);
                sum += 0.5 * (at_end + pv) * ((we - pt) as f64 / unit);
                // InfluxDB's integer reducer keeps the previous value and uses the
                // interpolated one in place of the point's for the next segment.
                if int {
                    value = at_end;
                } else {
                    pv = at_end;
                }
                pt = we;
            }
            out.push((ws, sum));
            (ws, we) = window(t);
            sum = 0.0;
        }
        sum += 0.5 * (value + pv) * ((t - pt) as f64 / unit);
        prev = Some((t, v));
    }
    if let Some((pt, _)) = prev
        && pt != ws
    {
        out.push((ws, sum));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modes(values: &[f64]) -> Value {
        let mut points: Vec<(i64, Value)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 + 1, float(*v)))
            .collect();
        mode(&mut points)
    }

    #[test]
    fn mode_ties_as_influxdb() {
        // Checked against InfluxDB 1.6.
        assert_eq!(modes(&[1.0, 1.0, 2.0, 2.0]), float(1.0));
        assert_eq!(modes(&[1.0, 2.0, 2.0, 1.0]), float(2.0));
        assert_eq!(modes(&[2.0, 1.0, 2.0, 1.0]), float(2.0));
        assert_eq!(modes(&[3.0, 1.0, 1.0, 2.0, 3.0, 2.0]), float(3.0));
        assert_eq!(modes(&[5.0, 7.0, 2.0, 9.0]), float(2.0));
        let mut b = vec![(1, Value::Bool(false)), (2, Value::Bool(true))];
        assert_eq!(mode(&mut b), Value::Bool(true));
    }

    #[test]
    fn integral_as_influxdb() {
        let s = 1_000_000_000;
        let v: Vec<(i64, f64)> = [(10, 5.0), (20, 7.0), (30, 7.0), (40, 1.0), (50, 9.0)]
            .iter()
            .map(|(t, v)| (t * s, *v))
            .collect();
        assert_eq!(integral(&v, s, false, None, 0), vec![(0, 220.0)]);
        let w = integral(&v, s, false, Some((25 * s, 0)), 0);
        assert_eq!(w, vec![(0, 95.0), (25 * s, 125.0)]);
        // Integers: InfluxDB 1.6's numbers for w = 1, 2, 3 at 10, 20, 30 s.
        let i: Vec<(i64, f64)> = [(10, 1.0), (20, 2.0), (30, 3.0)]
            .iter()
            .map(|(t, v)| (t * s, *v))
            .collect();
        let w = integral(&i, s, true, Some((25 * s, 0)), 0);
        assert_eq!(w, vec![(0, 26.25), (25 * s, 11.25)]);
    }
}
