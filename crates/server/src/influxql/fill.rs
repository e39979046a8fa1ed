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
/// that have data. Each row is `[time, values...]`. `zero_when_empty[i]` marks columns
/// (counts) that read `0` rather than null in a bucket without data under `fill(null)`.
pub(crate) fn fill_series(
    data: BTreeMap<i64, Vec<Value>>,
    first: i64,
    last: i64,
    interval: i64,
    width: usize,
    fill: Fill,
    zero_when_empty: &[bool],
) -> Vec<Vec<Value>> {
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
            None => row.extend((0..width).map(|i| {
                if fill == Fill::Null && zero_when_empty.get(i).copied().unwrap_or(false) {
                    Value::from(0)
                } else {
                    Value::Null
                }
            })),
        }
        rows.push(row);
        t += interval;
    }
    match fill {
        Fill::Value(v) => {
            let v = if v.fract() == 0.0 && v.abs() < 9e15 {
                Value::from(v as i64)
            } else {
                serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
            };
            for row in &mut rows {
                for cell in row.iter_mut().skip(1) {
                    if cell.is_null() {
                        *cell = v.clone();
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
        Fill::Null | Fill::None => {}
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
                (Some(x), Some(y)) => Value::from(x + ((y - x) as f64 * frac) as i64),
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
}
