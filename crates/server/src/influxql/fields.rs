//! The SELECT list and GROUP BY of a statement over one relation: `*`, regexes and
//! `f(*)` expanded into fields with InfluxDB's column names, the SQL of field
//! references, math functions, aggregates and selectors, and the `GROUP BY` dimensions.

use std::collections::BTreeMap;

use super::ast::{Dimension, Expr, NameMatch, Select};
use super::cond::{Columns, Kind, arith_sql};
use super::relation::TAG_FIELD;
use super::sql::ident;
use super::{Ctx, meta};

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
/// The functions [`super::points`] answers (not aggregates in the SQL sense).
pub(super) const POINT_FUNCTIONS: &[&str] = &["top", "bottom", "sample", "mode", "integral"];
pub(super) const SELECTORS: &[&str] = &["min", "max", "first", "last", "percentile"];
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
pub(super) const MATH: &[&str] = &[
    "abs", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "exp", "ln", "log", "log2",
    "log10", "sqrt", "pow", "floor", "ceil", "round",
];

/// One output column: its expression and its InfluxDB name.
pub(super) struct OutField {
    pub(super) expr: Expr,
    pub(super) name: String,
}

/// InfluxDB's column name of a field without alias.
pub(super) fn expr_name(e: &Expr, parts: &mut Vec<String>) {
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

pub(super) fn has_aggregate(e: &Expr) -> bool {
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
pub(super) fn has_bare_var(e: &Expr) -> bool {
    match e {
        Expr::Var { name, .. } => !name.eq_ignore_ascii_case("time"),
        Expr::Call { name, args } => MATH.contains(&name.as_str()) && args.iter().any(has_bare_var),
        Expr::Binary { lhs, rhs, .. } => has_bare_var(lhs) || has_bare_var(rhs),
        Expr::Paren(inner) => has_bare_var(inner),
        _ => false,
    }
}

pub(super) fn fields_of(e: &Expr, cols: &Columns, out: &mut Vec<String>) {
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
                        // Not a tag a subquery selects.
                        Kind::Field(t) => {
                            (any_type && *t != TAG_FIELD)
                                || matches!(*t, "float" | "integer" | "unsigned")
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
    if POINT_FUNCTIONS.contains(&name) {
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
pub(super) fn selector_time_sql(name: &str, args: &[Expr], cols: &Columns) -> Option<String> {
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
