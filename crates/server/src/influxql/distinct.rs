//! `distinct(f)` (also `DISTINCT f`): one row per distinct value of a field, per series
//! and `GROUP BY time` bucket, in InfluxDB 1.x's order.
//!
//! InfluxDB 1.6 emits a bucket's distinct values ordered by the time the value was
//! first seen (with `ORDER BY time DESC`: last seen, buckets newest first), each row
//! carrying the bucket's start (or the query's lower time bound), and never fills empty
//! buckets. Translated to one SQL `GROUP BY tags, bucket, f` with `min(time)` (or
//! `max`) as the order key.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ast::{Expr, Select};
use super::cond::{Columns, Kind, TimeRange};
use super::fields::{OutField, arith_sql_boxed, var_sql};
use super::relation::{TIME_INT, bucket_sql};
use super::sql::{cell, collect};
use super::{Ctx, Series};

/// Whether `e` calls `distinct` other than as `count(distinct(f))`.
fn calls_distinct(e: &Expr) -> bool {
    match e {
        Expr::Call { name, .. } if name == "distinct" => true,
        Expr::Call { name, args } if name == "count" => {
            !matches!(args.first(), Some(Expr::Call { name, .. }) if name == "distinct")
                && args.iter().any(calls_distinct)
        }
        Expr::Call { args, .. } => args.iter().any(calls_distinct),
        Expr::Binary { lhs, rhs, .. } => calls_distinct(lhs) || calls_distinct(rhs),
        Expr::Paren(inner) => calls_distinct(inner),
        _ => false,
    }
}

/// Whether the statement is a `distinct` one; an error when `distinct` is mixed with
/// other fields or nested in another function (InfluxDB's message).
pub(super) fn is_distinct(fields: &[OutField]) -> Result<bool, String> {
    if !fields.iter().any(|f| calls_distinct(&f.expr)) {
        return Ok(false);
    }
    let combined = || {
        "aggregate function distinct() cannot be combined with other functions or fields"
            .to_string()
    };
    let [only] = fields else {
        return Err(combined());
    };
    if distinct_arg(&only.expr)?.is_none() {
        return Err(combined());
    }
    Ok(true)
}

/// The field of the one `distinct(field)` call of `e`, outside other functions.
fn distinct_arg(e: &Expr) -> Result<Option<String>, String> {
    Ok(match e {
        Expr::Call { name, args } if name == "distinct" => match args.as_slice() {
            [Expr::Var { name, .. }] => Some(name.clone()),
            [_] => return Err("expected field argument in distinct()".into()),
            _ => {
                return Err(format!(
                    "distinct function requires exactly one argument, got {}",
                    args.len()
                ));
            }
        },
        Expr::Binary { lhs, rhs, .. } => match (distinct_arg(lhs)?, distinct_arg(rhs)?) {
            (Some(_), Some(_)) => None,
            (one, None) | (None, one) => one,
        },
        Expr::Paren(inner) => distinct_arg(inner)?,
        _ => None,
    })
}

/// `e` with its `distinct(f)` call replaced by `f`.
fn strip(e: &Expr) -> Expr {
    match e {
        Expr::Call { name, args } if name == "distinct" => args[0].clone(),
        Expr::Binary { op, lhs, rhs } => Expr::binary(*op, strip(lhs), strip(rhs)),
        Expr::Paren(inner) => Expr::Paren(Box::new(strip(inner))),
        other => other.clone(),
    }
}

/// What [`series`] needs of the statement's plan for one measurement.
pub(super) struct Query<'a> {
    pub(super) db: &'a str,
    pub(super) m: &'a str,
    /// The SQL after `FROM`.
    pub(super) from: &'a str,
    pub(super) cols: &'a Columns,
    pub(super) group_tags: &'a [String],
    pub(super) time_dim: Option<(i64, i64)>,
    /// The WHERE terms (time range, condition, field set), SQL.
    pub(super) conds: Vec<String>,
    pub(super) range: TimeRange,
}

/// The series of a `distinct` statement over one measurement.
pub(super) async fn series(
    ctx: &Ctx,
    s: &Select,
    q: Query<'_>,
    field: &OutField,
) -> Result<Vec<Series>, String> {
    let Some(x) = distinct_arg(&field.expr)? else {
        return Ok(Vec::new());
    };
    if !matches!(q.cols.get(x.as_str()), Some(Kind::Field(_))) {
        return Ok(Vec::new()); // a tag or a missing field: no series, as InfluxDB 1.6
    }
    let x_sql = var_sql(&x, q.cols);
    let mut select = Vec::new();
    let mut group = Vec::new();
    for t in q.group_tags {
        let e = var_sql(t, q.cols);
        select.push(e.clone());
        if q.cols.contains_key(t) {
            group.push(e);
        }
    }
    let bucket = q.time_dim.map(|(iv, off)| bucket_sql(iv, off));
    if let Some(b) = &bucket {
        select.push(format!("{b} AS __bucket"));
        group.push(b.clone());
    }
    select.push(arith_sql_boxed(&strip(&field.expr), q.cols)?);
    // The order key: when the value was first (DESC: last) seen.
    let seen = if s.order_desc { "max" } else { "min" };
    select.push(format!("{seen}({TIME_INT}) AS __seen"));
    group.push(x_sql.clone());
    let mut conds = q.conds;
    conds.push(format!("{x_sql} IS NOT NULL"));
    let bucket_order = match (&bucket, s.order_desc) {
        (Some(_), false) => "__bucket ASC, ",
        (Some(_), true) => "__bucket DESC, ",
        (None, _) => "",
    };
    let sql = format!(
        "SELECT {} FROM {} WHERE {} GROUP BY {} ORDER BY {bucket_order}__seen ASC, {x_sql} ASC",
        select.join(", "),
        q.from,
        conds.join(" AND "),
        group.join(", "),
    );
    let batches = collect(ctx, q.db, &sql).await?;

    let n = q.group_tags.len();
    let value_col = n + usize::from(bucket.is_some());
    let mut by_tags: BTreeMap<Vec<String>, Vec<Vec<Value>>> = BTreeMap::new();
    for b in &batches {
        for row in 0..b.num_rows() {
            let tags: Vec<String> = (0..n)
                .map(|i| match cell(b.column(i).as_ref(), row) {
                    Value::String(s) => s,
                    _ => String::new(),
                })
                .collect();
            let time = match bucket {
                Some(_) => cell(b.column(n).as_ref(), row).as_i64().unwrap_or(0),
                None => q.range.lower.unwrap_or(0),
            };
            let value = cell(b.column(value_col).as_ref(), row);
            by_tags
                .entry(tags)
                .or_default()
                .push(vec![Value::from(time), value]);
        }
    }
    let skip = s.offset.unwrap_or(0) as usize;
    let take = s
        .limit
        .filter(|l| *l > 0)
        .map_or(usize::MAX, |l| l as usize);
    Ok(by_tags
        .into_iter()
        .filter_map(|(tags, rows)| {
            let values: Vec<Vec<Value>> = rows.into_iter().skip(skip).take(take).collect();
            (!values.is_empty()).then(|| Series {
                name: Some(q.m.to_string()),
                tags: (!q.group_tags.is_empty())
                    .then(|| q.group_tags.iter().cloned().zip(tags).collect()),
                columns: vec!["time".into(), field.name.clone()],
                values,
                time_column: true,
                arrow: None,
            })
        })
        .collect())
}
