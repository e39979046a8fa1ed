//! `SELECT`: translated to one SQL query per measurement (raw rows, or aggregates grouped
//! by tags and time bucket), run through the query backend, then cut into InfluxDB
//! series per tag set, gap-filled, ordered and limited per series.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ast::{Dimension, Expr, NameMatch, Select, Source};
use super::cond::{Columns, Kind, TimeRange, arith_sql, split_time, where_sql};
use super::fill::{MAX_BUCKETS, bucket_start, fill_series};
use super::sql::{cell, collect, ident, table};
use super::{
    Ctx, Series, StatementResult, database_exists, distinct, meta, points, rows, transform,
};

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "mean",
    "median",
    "min",
    "max",
    "first",
    "last",
    "spread",
    "stddev",
    "percentile",
];
const SELECTORS: &[&str] = &["min", "max", "first", "last", "percentile"];
const NOT_YET: &[&str] = &[
    "holt_winters",
    "holt_winters_with_fit",
    "chande_momentum_oscillator",
    "exponential_moving_average",
    "double_exponential_moving_average",
    "kaufmans_efficiency_ratio",
    "kaufmans_adaptive_moving_average",
    "triple_exponential_moving_average",
    "triple_exponential_derivative",
    "relative_strength_index",
];
const MATH: &[&str] = &[
    "abs", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "exp", "ln", "log", "log2",
    "log10", "sqrt", "pow", "floor", "ceil", "round",
];

pub(crate) async fn run(ctx: &Ctx, s: &Select) -> StatementResult {
    if s.into.is_some() {
        return Err("SELECT ... INTO is not supported by Bulkhead yet".into());
    }
    if let Some(tz) = &s.tz
        && !matches!(tz.as_str(), "UTC" | "Etc/UTC")
    {
        return Err(format!("tz('{tz}') is not supported yet (only UTC)"));
    }
    let (range, rest) = split_time(s.cond.as_ref(), ctx.now)?;
    let transforms = transform::plan(s)?;
    let selecting = transforms.is_none() && points::applies(s);
    let mut out = Vec::new();
    for source in &s.from {
        let db = match source {
            Source::Measurement { db, .. } | Source::Regex { db, .. } => {
                ctx.database(db.as_deref())?
            }
            Source::Subquery(_) => {
                return Err("subqueries are not supported by Bulkhead yet".into());
            }
        };
        // A named measurement's columns come from the catalog, without a query.
        let known = match source {
            Source::Measurement { name, .. } => {
                meta::table_columns(ctx, &db, name).map(|cols| (name.clone(), cols))
            }
            _ => None,
        };
        let found = match known {
            Some(one) => std::iter::once(one).collect(),
            None => {
                if !database_exists(ctx, &db).await? {
                    return Err(format!("database not found: {db}"));
                }
                meta::measurements(ctx, &db, std::slice::from_ref(source)).await?
            }
        };
        for (m, cols) in found {
            let rest = rest.as_ref();
            out.extend(match &transforms {
                None if selecting => points::series(ctx, s, &db, &m, &cols, range, rest).await?,
                None => measurement(ctx, s, &db, &m, &cols, range, rest).await?,
                Some(t) => {
                    let read =
                        measurement(ctx, &t.inner, &db, &m, &cols, t.read_range(range), rest);
                    t.apply(read.await?, range)
                }
            });
        }
    }
    // SLIMIT and SOFFSET count series in InfluxDB 1.6's series-key order (tags with an
    // empty value left out, so `host=h3` comes after `dc=d1,host=h2`)...
    out.sort_by_cached_key(|series| (series.name.clone(), series_key(series)));
    let skip = s.soffset.unwrap_or(0) as usize;
    let take = s
        .slimit
        .filter(|l| *l > 0)
        .map_or(usize::MAX, |l| l as usize);
    let mut out: Vec<Series> = out.into_iter().skip(skip).take(take).collect();
    // ... and the answer lists them by measurement, then tag values (backwards with
    // ORDER BY time DESC, as InfluxDB 1.6 does).
    out.sort_by(|a, b| (&a.name, tag_values(a)).cmp(&(&b.name, tag_values(b))));
    if s.order_desc {
        out.reverse();
    }
    Ok(out)
}

/// `k1=v1,k2=v2` of a series' non-empty tags.
fn series_key(series: &Series) -> String {
    let tags = series.tags.iter().flatten();
    let pairs: Vec<String> = tags
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.join(",")
}

fn tag_values(series: &Series) -> Vec<&str> {
    let tags = series.tags.iter().flatten();
    tags.map(|(_, v)| v.as_str()).collect()
}

/// A row's time as epoch nanoseconds, in SQL.
pub(super) const TIME_INT: &str = "CAST(\"time\" AS BIGINT)";

/// SQL of the start of the `GROUP BY time(iv, off)` bucket of a row.
pub(super) fn bucket_sql(iv: i64, off: i64) -> String {
    let t = TIME_INT;
    format!("({t} - ((({t} - {off}) % {iv}) + {iv}) % {iv})")
}

/// One output column: its expression and its InfluxDB name.
pub(super) struct OutField {
    pub(super) expr: Expr,
    pub(super) name: String,
}

/// InfluxDB's column name of a field without alias.
fn expr_name(e: &Expr, parts: &mut Vec<String>) {
    match e {
        Expr::Var { name, .. } => parts.push(name.clone()),
        Expr::Call { name, .. } => parts.push(name.clone()),
        Expr::Binary { lhs, rhs, .. } => {
            expr_name(lhs, parts);
            expr_name(rhs, parts);
        }
        Expr::Paren(inner) => expr_name(inner, parts),
        _ => {}
    }
}

fn has_aggregate(e: &Expr) -> bool {
    match e {
        Expr::Call { name, args } => {
            !MATH.contains(&name.as_str()) || args.iter().any(has_aggregate)
        }
        Expr::Binary { lhs, rhs, .. } => has_aggregate(lhs) || has_aggregate(rhs),
        Expr::Paren(inner) => has_aggregate(inner),
        _ => false,
    }
}

/// Whether `e` reads a column outside any aggregate call.
fn has_bare_var(e: &Expr) -> bool {
    match e {
        Expr::Var { name, .. } => !name.eq_ignore_ascii_case("time"),
        Expr::Call { name, args } => MATH.contains(&name.as_str()) && args.iter().any(has_bare_var),
        Expr::Binary { lhs, rhs, .. } => has_bare_var(lhs) || has_bare_var(rhs),
        Expr::Paren(inner) => has_bare_var(inner),
        _ => false,
    }
}

fn fields_of(e: &Expr, cols: &Columns, out: &mut Vec<String>) {
    match e {
        Expr::Var { name, .. }
            if matches!(cols.get(name.as_str()), Some(Kind::Field(_))) && !out.contains(name) =>
        {
            out.push(name.clone());
        }
        Expr::Call { args, .. } => args.iter().for_each(|a| fields_of(a, cols, out)),
        Expr::Binary { lhs, rhs, .. } => {
            fields_of(lhs, cols, out);
            fields_of(rhs, cols, out);
        }
        Expr::Paren(inner) => fields_of(inner, cols, out),
        _ => {}
    }
}

/// Expand `*`, `/regex/` and `f(*)` into fields, name the columns (duplicates get
/// `_1`, `_2`... as in InfluxDB), and drop `time`.
pub(super) async fn expand_fields(
    ctx: &Ctx,
    db: &str,
    s: &Select,
    cols: &Columns,
    group_tags: &[String],
) -> Result<Vec<OutField>, String> {
    let mut out = Vec::new();
    let selectable = |kind: &Kind| matches!(kind, Kind::Field(_) | Kind::Tag);
    for f in &s.fields {
        match &f.expr {
            Expr::Wildcard | Expr::Regex(_) => {
                let names: Vec<String> = cols
                    .iter()
                    .filter(|(n, k)| selectable(k) && !group_tags.contains(n))
                    .map(|(n, _)| n.clone())
                    .collect();
                let names = match &f.expr {
                    Expr::Regex(re) => {
                        meta::matching(ctx, db, names, &NameMatch::Regex(re.clone())).await?
                    }
                    _ => names,
                };
                for n in names {
                    out.push(OutField {
                        expr: Expr::var(&n),
                        name: n,
                    });
                }
            }
            Expr::Call { name, args }
                if matches!(args.first(), Some(Expr::Wildcard | Expr::Regex(_))) =>
            {
                // count, first and last take every field; the others numeric ones.
                let any_type = matches!(name.as_str(), "count" | "first" | "last" | "mode");
                let fields: Vec<String> = cols
                    .iter()
                    .filter(|(_, k)| match k {
                        Kind::Field(t) => {
                            any_type || matches!(*t, "float" | "integer" | "unsigned")
                        }
                        _ => false,
                    })
                    .map(|(n, _)| n.clone())
                    .collect();
                let fields = match &args[0] {
                    Expr::Regex(re) => {
                        meta::matching(ctx, db, fields, &NameMatch::Regex(re.clone())).await?
                    }
                    _ => fields,
                };
                for field in fields {
                    let mut args = args.clone();
                    args[0] = Expr::var(&field);
                    out.push(OutField {
                        expr: Expr::Call {
                            name: name.clone(),
                            args,
                        },
                        name: format!("{}_{field}", f.alias.as_deref().unwrap_or(name)),
                    });
                }
            }
            Expr::Var { name, .. } if name.eq_ignore_ascii_case("time") => {}
            expr => {
                let name = match &f.alias {
                    Some(a) => a.clone(),
                    None => {
                        let mut parts = Vec::new();
                        expr_name(expr, &mut parts);
                        parts.join("_")
                    }
                };
                out.push(OutField {
                    expr: expr.clone(),
                    name,
                });
            }
        }
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for f in &mut out {
        let n = seen.entry(f.name.clone()).or_insert(0);
        if *n > 0 {
            f.name = format!("{}_{}", f.name, n);
        }
        *n += 1;
    }
    Ok(out)
}

/// The SQL of a field reference in a SELECT list.
pub(super) fn var_sql(name: &str, cols: &Columns) -> String {
    match cols.get(name) {
        Some(Kind::Tag) => format!("CAST({} AS VARCHAR)", ident(name)),
        Some(_) => ident(name),
        None => "NULL".into(),
    }
}

/// SQL for a math function call, InfluxQL argument order.
fn math_sql(name: &str, args: Vec<String>) -> Result<String, String> {
    let n = args.len();
    let want = match name {
        "atan2" | "pow" | "log" => 2,
        "round" => 1,
        _ => 1,
    };
    if n != want {
        return Err(format!(
            "invalid number of arguments for {name}, expected {want}, got {n}"
        ));
    }
    Ok(match name {
        "log" => format!("log({}, {})", args[1], args[0]),
        "pow" => format!("power({}, {})", args[0], args[1]),
        _ => format!("{name}({})", args.join(", ")),
    })
}

/// SQL of an aggregate call over field `x` (already SQL).
fn aggregate_sql(name: &str, args: &[Expr], cols: &Columns) -> Result<String, String> {
    if points::FUNCTIONS.contains(&name) {
        return Err(format!(
            "{name}() combined with other functions, inside an expression or a \
             transformation is not supported by Bulkhead yet"
        ));
    }
    if NOT_YET.contains(&name) {
        return Err(format!(
            "function {name}() is not supported by Bulkhead yet"
        ));
    }
    if !AGGREGATES.contains(&name) {
        return Err(format!("undefined function {name}()"));
    }
    let arity = if name == "percentile" { 2 } else { 1 };
    if args.len() != arity {
        return Err(format!(
            "invalid number of arguments for {name}, expected {arity}, got {}",
            args.len()
        ));
    }
    if let Expr::Call {
        name: inner,
        args: inner_args,
    } = &args[0]
    {
        if name == "count"
            && inner == "distinct"
            && let [Expr::Var { name: f, .. }] = inner_args.as_slice()
        {
            return Ok(format!("count(DISTINCT {})", var_sql(f, cols)));
        }
        return Err(format!("expected field argument in {name}()"));
    }
    let Expr::Var { name: field, .. } = &args[0] else {
        return Err(format!("expected field argument in {name}()"));
    };
    if matches!(cols.get(field.as_str()), Some(Kind::Tag)) {
        return Err(format!(
            "expected field argument in {name}(), found tag {field}"
        ));
    }
    let x = var_sql(field, cols);
    let nonnull = format!("FILTER (WHERE {x} IS NOT NULL)");
    Ok(match name {
        "count" => format!("count({x})"),
        "sum" => format!("sum({x})"),
        "mean" => format!("avg({x})"),
        "median" => format!("median(CAST({x} AS DOUBLE))"),
        "min" | "max" => format!("{name}({x})"),
        "first" => format!("first_value({x} ORDER BY \"time\") {nonnull}"),
        "last" => format!("last_value({x} ORDER BY \"time\") {nonnull}"),
        "spread" => format!("(max({x}) - min({x}))"),
        "stddev" => format!("stddev(CAST({x} AS DOUBLE))"),
        _ => {
            let p = percentile_arg(&args[1])?;
            format!(
                "array_element(array_agg({x} ORDER BY {x}) {nonnull}, {})",
                percentile_index(&x, p)
            )
        }
    })
}

fn percentile_arg(e: &Expr) -> Result<f64, String> {
    match e {
        Expr::Integer(i) => Ok(*i as f64),
        Expr::Number(n) => Ok(*n),
        _ => Err("expected float argument in percentile()".into()),
    }
}

/// 1-based index of InfluxDB's nearest-rank percentile.
fn percentile_index(x: &str, p: f64) -> String {
    format!("CAST(floor(count({x}) * {p:?} / 100.0 + 0.5) AS BIGINT)")
}

/// For a lone selector without `GROUP BY time`: the time of the selected point.
fn selector_time_sql(name: &str, args: &[Expr], cols: &Columns) -> Option<String> {
    let Some(Expr::Var { name: field, .. }) = args.first() else {
        return None;
    };
    let x = var_sql(field, cols);
    let nonnull = format!("FILTER (WHERE {x} IS NOT NULL)");
    let t = "\"time\"";
    let sql = match name {
        "first" => format!("min({t}) {nonnull}"),
        "last" => format!("max({t}) {nonnull}"),
        "min" => format!("first_value({t} ORDER BY {x} ASC, {t} ASC) {nonnull}"),
        "max" => format!("first_value({t} ORDER BY {x} DESC, {t} ASC) {nonnull}"),
        "percentile" => {
            let p = percentile_arg(args.get(1)?).ok()?;
            format!(
                "array_element(array_agg({t} ORDER BY {x}, {t}) {nonnull}, {})",
                percentile_index(&x, p)
            )
        }
        _ => return None,
    };
    Some(format!("CAST({sql} AS BIGINT)"))
}

/// The statement's `GROUP BY time` (interval, offset) and tags (sorted, `*` and regexes
/// expanded over this measurement's tags).
pub(super) async fn dimensions(
    ctx: &Ctx,
    s: &Select,
    db: &str,
    cols: &Columns,
) -> Result<(Option<(i64, i64)>, Vec<String>), String> {
    let mut time_dim = None;
    let mut group_tags: Vec<String> = Vec::new();
    let tag_names: Vec<String> = cols
        .iter()
        .filter(|(_, k)| **k == Kind::Tag)
        .map(|(n, _)| n.clone())
        .collect();
    for d in &s.group_by {
        match d {
            Dimension::Time { interval, offset } => {
                if time_dim
                    .replace((*interval, offset.rem_euclid(*interval)))
                    .is_some()
                {
                    return Err("multiple time dimensions".into());
                }
            }
            Dimension::Tag(t) => group_tags.push(t.clone()),
            Dimension::Wildcard => group_tags.extend(tag_names.iter().cloned()),
            Dimension::Regex(re) => group_tags.extend(
                meta::matching(ctx, db, tag_names.clone(), &NameMatch::Regex(re.clone())).await?,
            ),
        }
    }
    group_tags.sort();
    group_tags.dedup();

    Ok((time_dim, group_tags))
}

async fn measurement(
    ctx: &Ctx,
    s: &Select,
    db: &str,
    m: &str,
    cols: &Columns,
    range: TimeRange,
    rest: Option<&Expr>,
) -> Result<Vec<Series>, String> {
    let (time_dim, group_tags) = dimensions(ctx, s, db, cols).await?;
    let fields = expand_fields(ctx, db, s, cols, &group_tags).await?;
    let aggregate = fields.iter().any(|f| has_aggregate(&f.expr));
    if aggregate && fields.iter().any(|f| has_bare_var(&f.expr)) {
        return Err("mixing aggregate and non-aggregate queries is not supported".into());
    }
    if !aggregate && time_dim.is_some() {
        return Err("GROUP BY requires at least one aggregate function".into());
    }
    let mut referenced = Vec::new();
    for f in &fields {
        fields_of(&f.expr, cols, &mut referenced);
    }
    if referenced.is_empty() {
        // Only tags, or fields this measurement does not have: no series (InfluxDB 1.6).
        return Ok(Vec::new());
    }

    // WHERE: time range, condition, and "some selected field is set".
    let mut conds = Vec::new();
    if let Some(t) = range.to_sql() {
        conds.push(t);
    }
    if let Some(e) = rest {
        conds.push(where_sql(e, cols)?);
    }
    // Rows where some selected field is set; every row is when all fields are selected
    // (a point has at least one field).
    let all_fields = cols
        .iter()
        .filter(|(_, k)| matches!(k, Kind::Field(_)))
        .all(|(n, _)| referenced.contains(n));
    if !all_fields {
        let any_field: Vec<String> = referenced
            .iter()
            .map(|f| format!("{} IS NOT NULL", ident(f)))
            .collect();
        conds.push(format!("({})", any_field.join(" OR ")));
    }
    if distinct::is_distinct(&fields)? {
        let q = distinct::Query {
            db,
            m,
            cols,
            group_tags: &group_tags,
            time_dim,
            conds,
            range,
        };
        return distinct::series(ctx, s, q, &fields[0]).await;
    }

    let mut select = Vec::new();
    let mut group = Vec::new();
    for t in &group_tags {
        select.push(var_sql(t, cols));
        if cols.contains_key(t) {
            // Grouped by the column itself (not its text cast: no string per row).
            group.push(ident(t));
        }
    }
    let time_int = TIME_INT;
    if let Some((iv, off)) = time_dim {
        let b = bucket_sql(iv, off);
        select.push(b.clone());
        group.push(b);
    } else if !aggregate {
        select.push(time_int.to_string());
    }
    let first_value = select.len();
    for (i, f) in fields.iter().enumerate() {
        // Aliased: the same field may be selected twice (`difference(i), elapsed(i)`).
        let sql = arith_sql_boxed(&f.expr, cols)?;
        select.push(format!("{sql} AS \"__f{i}\""));
    }
    // A lone selector without GROUP BY time reports the time of its point.
    let selector_time = match (&fields[..], time_dim) {
        ([only], None) => match &only.expr {
            Expr::Call { name, args } if SELECTORS.contains(&name.as_str()) => {
                selector_time_sql(name, args, cols)
            }
            _ => None,
        },
        _ => None,
    };
    if aggregate {
        if let Some(t) = &selector_time {
            select.push(t.clone());
        }
        select.push("count(*)".into());
    }
    // The latest row of each series (`GROUP BY tags ORDER BY time DESC LIMIT 1`): as
    // aggregates the engine's lastpoint path answers from each series' last row.
    let lastpoint = !aggregate
        && time_dim.is_none()
        && !group.is_empty()
        && s.order_desc
        && s.limit == Some(1)
        && s.offset.unwrap_or(0) == 0;
    if lastpoint {
        select.truncate(group_tags.len());
        group = group_tags
            .iter()
            .filter(|t| cols.contains_key(*t))
            .map(|t| ident(t))
            .collect();
        select.push("CAST(max(\"time\") AS BIGINT)".into());
        for (i, f) in fields.iter().enumerate() {
            let last = |x: String| format!("last_value({x} ORDER BY \"time\")");
            let sql = match &f.expr {
                Expr::Var { name, .. } => match cols.get(name.as_str()) {
                    Some(Kind::Tag) => format!("CAST({} AS VARCHAR)", last(ident(name))),
                    Some(_) => last(ident(name)),
                    None => "NULL".into(),
                },
                other => last(arith_sql_boxed(other, cols)?),
            };
            select.push(format!("{sql} AS \"__f{i}\""));
        }
    }
    if conds.is_empty() {
        conds.push("true".into());
    }
    let mut sql = format!(
        "SELECT {} FROM {} WHERE {}",
        select.join(", "),
        table(db, m),
        conds.join(" AND ")
    );
    if lastpoint || aggregate && !group.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
    }
    if !aggregate && !lastpoint {
        let dir = if s.order_desc { "DESC" } else { "ASC" };
        sql.push_str(&format!(" ORDER BY {time_int} {dir}"));
        if group_tags.is_empty()
            && let Some(limit) = s.limit.filter(|l| *l > 0)
        {
            sql.push_str(&format!(" LIMIT {}", limit + s.offset.unwrap_or(0)));
        }
    }
    let batches = collect(ctx, db, &sql).await?;
    if !aggregate && !lastpoint {
        // Raw rows: kept in Arrow and encoded straight from the arrays.
        let mut columns = vec!["time".to_string()];
        columns.extend(fields.iter().map(|f| f.name.clone()));
        let skip = s.offset.unwrap_or(0) as usize;
        let take = s
            .limit
            .filter(|l| *l > 0)
            .map_or(usize::MAX, |l| l as usize);
        let (time, values) = (first_value - 1, (first_value..first_value + fields.len()));
        if let Some(out) = rows::raw_series(
            &batches,
            m,
            &group_tags,
            time,
            values.collect(),
            columns,
            skip,
            take,
        ) {
            return Ok(out);
        }
    }

    // Cut the rows into series by tag set.
    let width = fields.len();
    let mut by_tags: BTreeMap<Vec<String>, Vec<(i64, Vec<Value>)>> = BTreeMap::new();
    let mut min_bucket = i64::MAX;
    for b in &batches {
        for row in 0..b.num_rows() {
            let tags: Vec<String> = (0..group_tags.len())
                .map(|i| match cell(b.column(i).as_ref(), row) {
                    Value::String(s) => s,
                    _ => String::new(),
                })
                .collect();
            let values: Vec<Value> = (first_value..first_value + width)
                .map(|i| cell(b.column(i).as_ref(), row))
                .collect();
            let time = if time_dim.is_some() || !aggregate {
                cell(b.column(first_value - 1).as_ref(), row)
                    .as_i64()
                    .unwrap_or(0)
            } else if selector_time.is_some() {
                cell(b.column(first_value + width).as_ref(), row)
                    .as_i64()
                    .unwrap_or(0)
            } else {
                range.lower.unwrap_or(0)
            };
            if aggregate {
                let n = cell(b.column(b.num_columns() - 1).as_ref(), row);
                if n.as_i64() == Some(0) {
                    continue; // no rows at all (an aggregate without GROUP BY)
                }
            }
            min_bucket = min_bucket.min(time);
            by_tags.entry(tags).or_default().push((time, values));
        }
    }

    let mut out = Vec::new();
    let counts: Vec<bool> = fields
        .iter()
        .map(|f| matches!(&f.expr, Expr::Call { name, .. } if name == "count"))
        .collect();
    for (tags, rows) in by_tags {
        let mut rows: Vec<Vec<Value>> = match time_dim {
            Some((iv, off)) => {
                let first = range.lower.map_or(min_bucket, |l| bucket_start(l, iv, off));
                let last = bucket_start(range.upper.unwrap_or(ctx.now), iv, off);
                if (last - first) / iv > MAX_BUCKETS {
                    return Err(format!(
                        "GROUP BY time({iv}ns) over this time range would make more than {MAX_BUCKETS} buckets"
                    ));
                }
                let data: BTreeMap<i64, Vec<Value>> = rows.into_iter().collect();
                let mut filled = fill_series(data, first, last, iv, width, s.fill, &counts);
                if s.order_desc {
                    filled.reverse();
                }
                filled
            }
            None => {
                let mut rows: Vec<Vec<Value>> = rows
                    .into_iter()
                    .map(|(t, mut v)| {
                        v.insert(0, Value::from(t));
                        v
                    })
                    .collect();
                if aggregate && s.order_desc {
                    rows.reverse();
                }
                rows
            }
        };
        let skip = s.offset.unwrap_or(0) as usize;
        let take = s
            .limit
            .filter(|l| *l > 0)
            .map_or(usize::MAX, |l| l as usize);
        rows = rows.into_iter().skip(skip).take(take).collect();
        if rows.is_empty() {
            continue;
        }
        let mut columns = vec!["time".to_string()];
        columns.extend(fields.iter().map(|f| f.name.clone()));
        out.push(Series {
            name: Some(m.to_string()),
            tags: (!group_tags.is_empty()).then(|| group_tags.iter().cloned().zip(tags).collect()),
            columns,
            values: rows,
            time_column: true,
            arrow: None,
        });
    }
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    Ok(out)
}

pub(super) fn arith_sql_boxed(e: &Expr, cols: &Columns) -> Result<String, String> {
    arith_sql(e, &mut |e| match e {
        Expr::Var { name, .. } => Some(Ok(var_sql(name, cols))),
        Expr::Call { name, args } if !MATH.contains(&name.as_str()) => {
            Some(aggregate_sql(name, args, cols))
        }
        Expr::Call { name, args } => {
            let args: Result<Vec<String>, String> =
                args.iter().map(|a| arith_sql_boxed(a, cols)).collect();
            Some(args.and_then(|a| math_sql(name, a)))
        }
        _ => None,
    })
}
