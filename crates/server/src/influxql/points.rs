//! `top`, `bottom` and `sample`: points selected per series and `GROUP BY time` bucket,
//! translated to SQL `row_number()` window functions; `mode` and `integral` are reduced
//! in Rust over the raw points ([`super::reduce`]). InfluxDB 1.6's semantics:
//!
//! - `top(f[, tag...], N)` / `bottom(...)`: the `N` largest (smallest) values, ties to the
//!   earliest point; with tag arguments, first the best point of each distinct tag
//!   combination. Rows carry the points' own times, in time order (with `GROUP BY time`,
//!   bucket by bucket, buckets newest first under `ORDER BY time DESC`, never filled);
//!   the tag arguments are columns after the function's, then the other selected fields
//!   and tags of each point.
//! - `sample(f, N)`: `N` random points per series and bucket, shaped as `top`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ast::{Expr, Select};
use super::cond::{Columns, Kind, TimeRange, where_sql};
use super::fields::{OutField, dimensions, expand_fields, var_sql};
use super::relation::{Relation, TIME_INT, bucket_sql};
use super::sql::{cell, collect};
use super::{Ctx, Series, reduce};

/// The functions handled here.
pub(super) const FUNCTIONS: &[&str] = super::fields::POINT_FUNCTIONS;

fn calls_one(e: &Expr) -> bool {
    match e {
        Expr::Call { name, args } => {
            FUNCTIONS.contains(&name.as_str()) || args.iter().any(calls_one)
        }
        Expr::Binary { lhs, rhs, .. } => calls_one(lhs) || calls_one(rhs),
        Expr::Paren(inner) => calls_one(inner),
        _ => false,
    }
}

/// Whether `s` calls one of [`FUNCTIONS`] (then [`series`] answers it).
pub(super) fn applies(s: &Select) -> bool {
    s.fields.iter().any(|f| calls_one(&f.expr))
}

/// The name of `e`'s call when it is a direct call of one of [`FUNCTIONS`].
pub(super) fn direct_call(e: &Expr) -> Option<(&str, &[Expr])> {
    match e.unparen() {
        Expr::Call { name, args } if FUNCTIONS.contains(&name.as_str()) => {
            Some((name.as_str(), args.as_slice()))
        }
        _ => None,
    }
}

/// Duplicate column names get `_1`, `_2`... as InfluxDB names them.
pub(super) fn dedup(names: &mut [String]) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for n in names.iter_mut() {
        let count = seen.entry(n.clone()).or_insert(0);
        if *count > 0 {
            *n = format!("{n}_{count}");
        }
        *count += 1;
    }
}

/// The tag values of `row` (columns `0..n`), a missing tag as `""`.
pub(super) fn tag_key(b: &arrow::array::RecordBatch, row: usize, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match cell(b.column(i).as_ref(), row) {
            Value::String(s) => s,
            _ => String::new(),
        })
        .collect()
}

/// `rows` with `OFFSET` and `LIMIT` applied.
pub(super) fn limit_rows<T>(s: &Select, rows: Vec<T>) -> Vec<T> {
    let skip = s.offset.unwrap_or(0) as usize;
    let take = s
        .limit
        .filter(|l| *l > 0)
        .map_or(usize::MAX, |l| l as usize);
    rows.into_iter().skip(skip).take(take).collect()
}

/// The series of a statement calling one of [`FUNCTIONS`], over one measurement.
pub(super) async fn series(
    ctx: &Ctx,
    s: &Select,
    rel: &Relation,
    range: TimeRange,
    rest: Option<&Expr>,
) -> Result<Vec<Series>, String> {
    let (db, m, cols) = (rel.db.as_str(), rel.name.as_str(), &rel.cols);
    for f in &s.fields {
        if let Some((name @ ("top" | "bottom" | "sample"), [Expr::Wildcard | Expr::Regex(_), ..])) =
            direct_call(&f.expr)
        {
            return Err(format!(
                "expected first argument to be a field in {name}(), found *"
            ));
        }
    }
    let (time_dim, group_tags) = dimensions(ctx, s, db, cols).await?;
    let fields = expand_fields(ctx, db, s, cols, &group_tags).await?;
    for f in &fields {
        if direct_call(&f.expr).is_none() && calls_one(&f.expr) {
            let name = first_call(&f.expr).unwrap_or_default();
            return Err(format!(
                "{name}() inside an expression is not supported by Bulkhead yet"
            ));
        }
    }
    let calls: Vec<(usize, &str, &[Expr])> = fields
        .iter()
        .enumerate()
        .filter_map(|(i, f)| direct_call(&f.expr).map(|(n, a)| (i, n, a)))
        .collect();
    let Some(&(_, first, _)) = calls.first() else {
        return Ok(Vec::new()); // `mode(*)` over a measurement without fields
    };
    let q = Query {
        db,
        m,
        rel,
        cols,
        group_tags: &group_tags,
        time_dim,
        range,
        rest,
    };
    match first {
        "top" | "bottom" | "sample" => {
            if calls.len() > 1 || fields.iter().any(|f| has_other_call(&f.expr)) {
                return Err(format!(
                    "selector function {first}() cannot be combined with other functions"
                ));
            }
            select_points(ctx, s, &q, &fields, calls[0].0).await
        }
        _ => reduce::series(ctx, s, &q, &fields).await,
    }
}

fn first_call(e: &Expr) -> Option<String> {
    match e {
        Expr::Call { name, .. } if FUNCTIONS.contains(&name.as_str()) => Some(name.clone()),
        Expr::Call { args, .. } => args.iter().find_map(first_call),
        Expr::Binary { lhs, rhs, .. } => first_call(lhs).or_else(|| first_call(rhs)),
        Expr::Paren(inner) => first_call(inner),
        _ => None,
    }
}

/// Whether `e` calls a function other than one of [`FUNCTIONS`] (math included).
fn has_other_call(e: &Expr) -> bool {
    match e {
        Expr::Call { name, args } => {
            !FUNCTIONS.contains(&name.as_str()) || args.iter().any(has_other_call)
        }
        Expr::Binary { lhs, rhs, .. } => has_other_call(lhs) || has_other_call(rhs),
        Expr::Paren(inner) => has_other_call(inner),
        _ => false,
    }
}

/// What the queries here need of the statement's plan for one measurement.
pub(super) struct Query<'a> {
    pub(super) db: &'a str,
    pub(super) m: &'a str,
    /// What the rows are read from.
    pub(super) rel: &'a Relation,
    pub(super) cols: &'a Columns,
    pub(super) group_tags: &'a [String],
    pub(super) time_dim: Option<(i64, i64)>,
    pub(super) range: TimeRange,
    pub(super) rest: Option<&'a Expr>,
}

impl Query<'_> {
    /// The WHERE terms shared by every query here: the time range and the condition.
    pub(super) fn base_conds(&self) -> Result<Vec<String>, String> {
        let mut conds = Vec::new();
        conds.extend(self.rel.time_sql(self.range));
        if let Some(e) = self.rest {
            conds.push(where_sql(e, self.cols)?);
        }
        Ok(conds)
    }

    /// SQL of the GROUP BY tags, each `AS __g<i>`.
    pub(super) fn tag_columns(&self) -> Vec<String> {
        self.group_tags
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{} AS __g{i}", var_sql(t, self.cols)))
            .collect()
    }

    pub(super) fn tag_names(&self) -> Vec<String> {
        (0..self.group_tags.len())
            .map(|i| format!("__g{i}"))
            .collect()
    }

    pub(super) fn series(
        &self,
        tags: Vec<String>,
        columns: Vec<String>,
        values: Vec<Vec<Value>>,
    ) -> Series {
        Series {
            name: Some(self.m.to_string()),
            tags: (!self.group_tags.is_empty())
                .then(|| self.group_tags.iter().cloned().zip(tags).collect()),
            columns,
            values,
            time_column: true,
            arrow: None,
        }
    }
}

/// The `N` argument of `top`/`bottom`/`sample`.
fn count_arg(name: &str, e: &Expr) -> Result<i64, String> {
    match e {
        Expr::Integer(n) => Ok(*n),
        Expr::Number(x) => Err(format!(
            "expected integer as last argument in {name}(), found {x:.3}"
        )),
        Expr::Var { name: v, .. } => Err(format!(
            "expected integer as last argument in {name}(), found {v}"
        )),
        _ => Err(format!("expected integer as last argument in {name}()")),
    }
}

/// `top`, `bottom` or `sample` (the field at `at`), with the other fields as the
/// selected points' values.
async fn select_points(
    ctx: &Ctx,
    s: &Select,
    q: &Query<'_>,
    fields: &[OutField],
    at: usize,
) -> Result<Vec<Series>, String> {
    let (name, args) = direct_call(&fields[at].expr).expect("a call of FUNCTIONS");
    if args.len() < 2 || (name == "sample" && args.len() != 2) {
        let expected = if name == "sample" {
            "2".to_string()
        } else {
            "at least 2".to_string()
        };
        return Err(format!(
            "invalid number of arguments for {name}, expected {expected}, got {}",
            args.len()
        ));
    }
    let field = match &args[0] {
        Expr::Var { name: f, .. } => f.clone(),
        Expr::Wildcard => {
            return Err(format!(
                "expected first argument to be a field in {name}(), found *"
            ));
        }
        _ => return Err(format!("expected first argument to be a field in {name}()")),
    };
    let n = count_arg(name, &args[args.len() - 1])?;
    if n < 1 {
        return Err(match name {
            "sample" => format!("sample window must be greater than 1, got {n}"),
            _ => format!("limit ({n}) in {name} function must be at least 1"),
        });
    }
    if name != "sample"
        && let Some(limit) = s.limit.filter(|l| *l > 0)
        && n as u64 > limit
    {
        return Err(format!(
            "limit ({n}) in {name} function can not be larger than the LIMIT ({limit}) in the select statement"
        ));
    }
    if s.limit.unwrap_or(0) > 0 || s.offset.unwrap_or(0) > 0 {
        // InfluxDB 1.6 applies them to the points before selecting (`top(v, 2) LIMIT 3`
        // answers the top 2 of the first 3 points).
        return Err(format!(
            "LIMIT and OFFSET with {name}() are not supported by Bulkhead yet"
        ));
    }
    let mut tag_args = Vec::new();
    for a in &args[1..args.len() - 1] {
        match a {
            Expr::Var { name: t, .. }
                if matches!(q.cols.get(t.as_str()), Some(Kind::Tag) | None) =>
            {
                tag_args.push(t.clone());
            }
            _ => {
                return Err(format!(
                    "only tags may be given to {name}() between the field and the count"
                ));
            }
        }
    }
    match q.cols.get(field.as_str()) {
        None => return Ok(Vec::new()), // no such field here: no series, as InfluxDB 1.6
        Some(Kind::Field(t))
            if name == "sample" || matches!(*t, "float" | "integer" | "unsigned") => {}
        Some(Kind::Field(t)) => {
            return Err(format!(
                "{name}() takes a numeric field, {field} is a {t} field"
            ));
        }
        Some(_) => {
            return Err(format!(
                "expected first argument to be a field in {name}(), found tag {field}"
            ));
        }
    }
    // Other fields: the selected points' own values (fields or tags).
    let mut aux = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        if i == at {
            continue;
        }
        match &f.expr {
            Expr::Var { name: v, .. } => aux.push(v.clone()),
            _ => {
                return Err(format!(
                    "only fields and tags may be selected beside {name}() in Bulkhead"
                ));
            }
        }
    }

    // inner: one row per point with the field set, tags, bucket, time, value, tag
    // arguments and the other fields.
    let x = var_sql(&field, q.cols);
    let mut select = q.tag_columns();
    let bucket = q
        .time_dim
        .map_or("0".to_string(), |(iv, off)| bucket_sql(iv, off));
    select.push(format!("{bucket} AS __b"));
    select.push(format!("{TIME_INT} AS __t"));
    select.push(format!("{x} AS __x"));
    for (i, t) in tag_args.iter().enumerate() {
        select.push(format!("{} AS __k{i}", var_sql(t, q.cols)));
    }
    for (i, a) in aux.iter().enumerate() {
        select.push(format!("{} AS __a{i}", var_sql(a, q.cols)));
    }
    let mut conds = q.base_conds()?;
    conds.push(format!("{x} IS NOT NULL"));
    let mut from = format!(
        "SELECT {} FROM {} WHERE {}",
        select.join(", "),
        q.rel.from,
        conds.join(" AND ")
    );
    let mut partition = q.tag_names();
    partition.push("__b".into());
    let order = match name {
        "top" => "__x DESC, __t ASC",
        "bottom" => "__x ASC, __t ASC",
        _ => "random()",
    };
    let mut out_cols: Vec<String> = partition.clone();
    out_cols.extend(["__t".to_string(), "__x".to_string()]);
    out_cols.extend((0..tag_args.len()).map(|i| format!("__k{i}")));
    out_cols.extend((0..aux.len()).map(|i| format!("__a{i}")));
    let list = out_cols.join(", ");
    if !tag_args.is_empty() {
        // The best point of each distinct combination of the tag arguments.
        let mut by = partition.clone();
        by.extend((0..tag_args.len()).map(|i| format!("__k{i}")));
        from = format!(
            "SELECT {list} FROM (SELECT *, row_number() OVER (PARTITION BY {} ORDER BY {order}) AS __r1 FROM ({from}) AS __p1) AS __p2 WHERE __r1 = 1",
            by.join(", ")
        );
    }
    let dir = if s.order_desc && q.time_dim.is_some() {
        "DESC"
    } else {
        "ASC"
    };
    let mut sort: Vec<String> = q.tag_names();
    sort.push(format!("__b {dir}"));
    sort.push("__t ASC".into());
    let sql = format!(
        "SELECT {list} FROM (SELECT *, row_number() OVER (PARTITION BY {} ORDER BY {order}) AS __r FROM ({from}) AS __p3) AS __p4 WHERE __r <= {n} ORDER BY {}",
        partition.join(", "),
        sort.join(", ")
    );
    let batches = collect(ctx, q.db, &sql).await?;

    // Columns: the function's (then its tag arguments) where it was selected.
    let mut columns = vec!["time".to_string()];
    let mut sources = Vec::new(); // batch column of each output column after time
    let g = q.group_tags.len();
    let (x_col, k_col, a_col) = (g + 2, g + 3, g + 3 + tag_args.len());
    let mut next_aux = 0;
    for (i, f) in fields.iter().enumerate() {
        if i == at {
            columns.push(f.name.clone());
            sources.push(x_col);
            for (j, t) in tag_args.iter().enumerate() {
                columns.push(t.clone());
                sources.push(k_col + j);
            }
        } else {
            columns.push(f.name.clone());
            sources.push(a_col + next_aux);
            next_aux += 1;
        }
    }
    dedup(&mut columns);
    let mut by_tags: BTreeMap<Vec<String>, Vec<Vec<Value>>> = BTreeMap::new();
    for b in &batches {
        for row in 0..b.num_rows() {
            let mut values = vec![cell(b.column(g + 1).as_ref(), row)];
            values.extend(sources.iter().map(|&c| cell(b.column(c).as_ref(), row)));
            by_tags.entry(tag_key(b, row, g)).or_default().push(values);
        }
    }
    Ok(by_tags
        .into_iter()
        .map(|(tags, rows)| q.series(tags, columns.clone(), rows))
        .collect())
}
