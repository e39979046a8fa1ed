//! `GROUP BY time(...)` buckets and `fill(...)`: every bucket of the query's range for a
//! series, with missing values filled per InfluxQL (`null`, `none`, a number,
//! `previous`, `linear`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::ast::Fill;

/// Most buckets one series may have (a `GROUP BY time` over a huge range errors out
/// instead of allocating them).
pub(crate) const MAX_BUCKETS: i64 = 1_000_000;

/// Start of the bucket holding `t`.
pub(crate) fn bucket_start(t: i64, interval: i64, offset: i64) -> i64 {
    t - (t - offset).rem_euclid(interval)
}

/// The rows of one series over buckets `first..=last` (bucket starts), from the buckets
/// that have data. Each row is `[time, values...]`. `counts[i]` marks count columns:
/// as in InfluxDB, a count of `0` (a bucket where other fields have points) is a missing
/// value that `fill` fills, `fill(null)` shows missing counts as `0`, and a fill number
/// is truncated to an integer for them.
pub(crate) fn fill_series(
    mut data: BTreeMap<i64, Vec<Value>>,
    first: i64,
    last: i64,
    interval: i64,
    width: usize,
    fill: Fill,
    counts: &[bool],
) -> Vec<Vec<Value>> {
    let is_count = |i: usize| counts.get(i).copied().unwrap_or(false);
    for row in data.values_mut() {
        for (i, cell) in row.iter_mut().enumerate() {
            if is_count(i) && cell.as_i64() == Some(0) {
                *cell = Value::Null;
            }
        }
    }
    if fill == Fill::None {
        return data
            .into_iter()
            .filter(|(t, _)| (first..=last).contains(t))
            .map(|(t, mut row)| {
                row.insert(0, Value::from(t));
                row
            })
            .collect();
    }
    let mut rows: Vec<Vec<Value>> = Vec::new();
    let mut t = first;
    while t <= last {
        let mut row = vec![Value::from(t)];
        match data.get(&t) {
            Some(values) => row.extend(values.iter().cloned()),
            None => row.extend((0..width).map(|_| Value::Null)),
        }
        rows.push(row);
        t += interval;
    }
    match fill {
        Fill::Value(v) => {
            let float = if v.fract() == 0.0 && v.abs() < 9e15 {
                Value::from(v as i64)
            } else {
                serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
            };
            for row in &mut rows {
                for (i, cell) in row.iter_mut().skip(1).enumerate() {
                    if cell.is_null() {
                        *cell = if is_count(i) {
                            Value::from(v as i64)
                        } else {
                            float.clone()
                        };
                    }
                }
            }
        }
        Fill::Previous => {
            for col in 1..=width {
                let mut prev = Value::Null;
                for row in &mut rows {
                    if row[col].is_null() {
                        row[col] = prev.clone();
                    } else {
                        prev = row[col].clone();
                    }
                }
            }
        }
        Fill::Linear => {
            for col in 1..=width {
                linear(&mut rows, col);
            }
        }
        Fill::Null => {
            for row in &mut rows {
                for (i, cell) in row.iter_mut().skip(1).enumerate() {
                    if is_count(i) && cell.is_null() {
                        *cell = Value::from(0);
                    }
                }
            }
        }
        Fill::None => {}
    }
    rows
}

/// Interpolate nulls of `col` between the known values around them.
fn linear(rows: &mut [Vec<Value>], col: usize) {
    let known: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i][col].is_number())
        .collect();
    for pair in known.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b - a < 2 {
            continue;
        }
        let (va, vb) = (rows[a][col].clone(), rows[b][col].clone());
        for (i, row) in rows.iter_mut().enumerate().take(b).skip(a + 1) {
            let frac = (i - a) as f64 / (b - a) as f64;
            row[col] = match (va.as_i64(), vb.as_i64()) {
                // InfluxDB's linearInteger: int64(slope * dx + previous).
                (Some(x), Some(y)) => Value::from(((y - x) as f64 * frac + x as f64) as i64),
                _ => {
                    let (x, y) = (va.as_f64().unwrap_or(0.0), vb.as_f64().unwrap_or(0.0));
                    serde_json::Number::from_f64(x + (y - x) * frac)
                        .map_or(Value::Null, Value::Number)
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> BTreeMap<i64, Vec<Value>> {
        [(10, vec![Value::from(1.0)]), (40, vec![Value::from(4.0)])]
            .into_iter()
            .collect()
    }

    fn col(rows: &[Vec<Value>]) -> Vec<Value> {
        rows.iter().map(|r| r[1].clone()).collect()
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket_start(65, 60, 0), 60);
        assert_eq!(bucket_start(65, 60, 10), 10);
        assert_eq!(bucket_start(75, 60, 10), 70);
        assert_eq!(bucket_start(-1, 60, 0), -60);
    }

    #[test]
    fn fills() {
        let nulls = fill_series(data(), 0, 50, 10, 1, Fill::Null, &[false]);
        assert_eq!(nulls.len(), 6);
        assert_eq!(nulls[0], vec![Value::from(0), Value::Null]);
        assert_eq!(
            col(&fill_series(data(), 0, 50, 10, 1, Fill::Null, &[true]))[0],
            Value::from(0)
        );
        let none = fill_series(data(), 0, 50, 10, 1, Fill::None, &[false]);
        assert_eq!(none.len(), 2);
        let prev = col(&fill_series(data(), 0, 50, 10, 1, Fill::Previous, &[false]));
        assert_eq!(prev[0], Value::Null);
        assert_eq!(prev[2], Value::from(1.0));
        assert_eq!(prev[5], Value::from(4.0));
        let lin = col(&fill_series(data(), 0, 50, 10, 1, Fill::Linear, &[false]));
        assert_eq!(lin[2], Value::from(2.0));
        assert_eq!(lin[3], Value::from(3.0));
        assert_eq!(lin[5], Value::Null);
        let num = col(&fill_series(
            data(),
            0,
            50,
            10,
            1,
            Fill::Value(-1.0),
            &[false],
        ));
        assert_eq!(num[0], Value::from(-1));
    }

    #[test]
    fn a_zero_count_is_missing() {
        // Two columns: a count (0 where only the other field had points) and a value.
        let data: BTreeMap<i64, Vec<Value>> = [
            (0, vec![Value::from(5), Value::from(1.0)]),
            (10, vec![Value::from(0), Value::from(2.0)]),
            (20, vec![Value::from(1), Value::from(3.0)]),
        ]
        .into_iter()
        .collect();
        let counts = [true, false];
        let fill = |f| col(&fill_series(data.clone(), 0, 30, 10, 2, f, &counts));
        assert_eq!(fill(Fill::None)[1], Value::Null);
        assert_eq!(fill(Fill::Null)[1], Value::from(0));
        assert_eq!(fill(Fill::Null)[3], Value::from(0));
        assert_eq!(fill(Fill::Previous)[1], Value::from(5));
        assert_eq!(fill(Fill::Linear)[1], Value::from(3));
        assert_eq!(fill(Fill::Value(-1.5))[1], Value::from(-1));
        assert_eq!(fill(Fill::Value(-1.5))[3], Value::from(-1));
        // Integers interpolate as InfluxDB truncates them: 2 -> 1 gives 1, not 2.
        let down: BTreeMap<i64, Vec<Value>> =
            [(0, vec![Value::from(2)]), (20, vec![Value::from(1)])]
                .into_iter()
                .collect();
        let lin = col(&fill_series(down, 0, 20, 10, 1, Fill::Linear, &[false]));
        assert_eq!(lin[1], Value::from(1));
    }
}
