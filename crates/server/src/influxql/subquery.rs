//! Subqueries (`SELECT ... FROM (SELECT ...)`): the inner statement becomes a SQL
//! derived table that the outer statement is planned over like a measurement.
//!
//! InfluxDB 1.6's semantics (`newIteratorOptionsSubstatement`):
//!
//! - The outer time range applies to the subquery (intersected with its own); the
//!   outer statement does not filter the subquery's rows by time again, so a bucket
//!   that starts before the outer range still counts.
//! - The subquery is also grouped by the outer `GROUP BY` tags, and an aggregate
//!   subquery without `GROUP BY time` takes the outer interval.
//! - Its `fill(null)` is `fill(none)`: only buckets with points are rows.
//! - Its columns are fields named as its output columns (`mean`, an alias, `max_1`),
//!   its `GROUP BY` tags are tags, its time the bucket's start (or, for a lone selector
//!   without `GROUP BY time`, the selected point's; else the lower time bound).
//! - A raw outer select gives every row of the subquery, merged across its series by
//!   bucket time, then series key.
//! - A transformation inside (one per subquery) is a SQL window function per inner
//!   series; it reads one interval before the subquery's own start, not before a start
//!   that comes from the outer statement.
//!
//! Refused with an error naming it: what the derived table cannot express exactly
//! (several transformations, `top`/`bottom`/`sample`/`mode`/`integral`, `distinct`
//! inside a subquery) and what InfluxDB 1.6 answers inconsistently (an inner `fill()`
//! other than `null`/`none`, an inner `LIMIT`/`OFFSET`/`SLIMIT`/`SOFFSET`).

use super::ast::{Dimension, Expr, Fill, Select, Source};
use super::cond::{Columns, Kind, TimeRange, split_time};
use super::fields::{
    OutField, SELECTORS, arith_sql_boxed, dimensions, expand_fields, fields_of, has_aggregate,
    has_bare_var, selector_time_sql, var_sql,
};
use super::relation::{ORDER_KEY, Relation, SERIES_KEY, TAG_FIELD, TIME_INT, bucket_sql, tables};
use super::sql::{ident, string_literal};
use super::{Ctx, distinct, points, transform};

/// The relations of `inner` (one per measurement it reads) as `outer` reads them, over
/// the time range `range` of the outer statement.
pub(super) async fn relations(
    ctx: &Ctx,
    outer: &Select,
    inner: &Select,
    range: TimeRange,
) -> Result<Vec<Relation>, String> {
    check(inner)?;
    // (An inner statement without ORDER BY takes the outer order.)
    if inner.order_desc && !outer.order_desc {
        return Err("subqueries must be ordered in the same direction as the query itself".into());
    }
    let (own, rest) = split_time(inner.cond.as_ref(), ctx.now)?;
    let inner = effective(outer, inner);
    // A transformation reads one interval before the subquery's own start (not before
    // a start that comes from the outer statement, as InfluxDB 1.6).
    let plan = transform::plan(&inner)?;
    let range = intersect(plan.as_ref().map_or(own, |p| p.read_range(own)), range);
    // Under an outer `*`, a GROUP BY tag the subquery also selects would be two columns.
    let wildcard = outer
        .fields
        .iter()
        .any(|f| matches!(f.expr, Expr::Wildcard | Expr::Regex(_)));
    let mut out = Vec::new();
    for source in &inner.from {
        let sources = match source {
            Source::Subquery(deeper) => {
                if inner.from.len() > 1 {
                    return Err(
                        "a subquery beside other sources in FROM is not supported by Bulkhead yet"
                            .into(),
                    );
                }
                Box::pin(relations(ctx, &inner, deeper, range)).await?
            }
            other => tables(ctx, other).await?,
        };
        for src in sources {
            let read = Read {
                range,
                own,
                rest: rest.as_ref(),
                wildcard,
            };
            if let Some(rel) = derived(ctx, &inner, plan.as_ref(), &src, read).await? {
                out.push(rel);
            }
        }
    }
    Ok(out)
}

/// What Bulkhead does not plan inside a subquery.
fn check(inner: &Select) -> Result<(), String> {
    let unsupported = |what: &str| {
        Err(format!(
            "{what} inside a subquery is not supported by Bulkhead yet"
        ))
    };
    if inner.into.is_some() {
        return unsupported("SELECT ... INTO");
    }
    if let Some(tz) = &inner.tz
        && !matches!(tz.as_str(), "UTC" | "Etc/UTC")
    {
        return unsupported(&format!("tz('{tz}')"));
    }
    if inner.limit.is_some()
        || inner.offset.is_some()
        || inner.slimit.is_some()
        || inner.soffset.is_some()
    {
        return unsupported("LIMIT, OFFSET, SLIMIT or SOFFSET");
    }
    if points::applies(inner) {
        return unsupported("top(), bottom(), sample(), mode() or integral()");
    }
    if !matches!(inner.fill, Fill::Null | Fill::None) {
        return unsupported("fill() other than fill(null) and fill(none)");
    }
    Ok(())
}

/// The tighter of two time ranges.
fn intersect(a: TimeRange, b: TimeRange) -> TimeRange {
    let pick = |x: Option<i64>, y: Option<i64>, f: fn(i64, i64) -> i64| match (x, y) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, y) => x.or(y),
    };
    TimeRange {
        lower: pick(a.lower, b.lower, i64::max),
        upper: pick(a.upper, b.upper, i64::min),
    }
}

/// `inner` as InfluxDB 1.6 runs it under `outer`: also grouped by the outer `GROUP BY`
/// tags, the outer interval when it is an aggregate without its own, `fill(none)`.
fn effective(outer: &Select, inner: &Select) -> Select {
    let mut inner = inner.clone();
    let aggregate = inner.fields.iter().any(|f| aggregates(&f.expr));
    let has_time = |s: &Select| {
        s.group_by
            .iter()
            .any(|d| matches!(d, Dimension::Time { .. }))
    };
    for d in &outer.group_by {
        match d {
            Dimension::Tag(_) if !inner.group_by.contains(d) => inner.group_by.push(d.clone()),
            Dimension::Time { .. } if aggregate && !has_time(&inner) => {
                inner.group_by.push(d.clone())
            }
            _ => {}
        }
    }
    inner.fill = Fill::None;
    inner.order_desc = outer.order_desc;
    inner
}

/// Whether the field `e` aggregates (a transformation does when its argument does).
fn aggregates(e: &Expr) -> bool {
    match e.unparen() {
        Expr::Call { name, args } if transform::TRANSFORMS.contains(&name.as_str()) => {
            args.first().is_some_and(aggregates)
        }
        other => has_aggregate(other),
    }
}

/// A subquery's SQL before its series key is added.
struct Base {
    sql: String,
    group_tags: Vec<String>,
    /// Its fields (output names).
    fields: Vec<String>,
    cols: Columns,
}

/// What a subquery reads.
struct Read<'a> {
    /// The time range read (its own, intersected with the outer statement's).
    range: TimeRange,
    /// Its own time range.
    own: TimeRange,
    /// Its condition without time.
    rest: Option<&'a Expr>,
    /// Whether the outer statement selects `*` or a regex (lists every column).
    wildcard: bool,
}

/// The derived table of `s` (with its transformations `plan`) over `src`: `None` when
/// it selects no field `src` has.
async fn derived(
    ctx: &Ctx,
    s: &Select,
    plan: Option<&transform::Plan>,
    src: &Relation,
    read: Read<'_>,
) -> Result<Option<Relation>, String> {
    let Some(mut base) = (match plan {
        // The statement without its transformation.
        Some(p) => base(ctx, &p.inner, src, read.range, &read).await?,
        None => base(ctx, s, src, read.range, &read).await?,
    }) else {
        return Ok(None);
    };
    if let Some(p) = plan {
        base = windowed(p, base, read.own)?;
    }
    let from = format!(
        "(SELECT *, {} AS {} FROM ({}) AS \"__sq_in\") AS \"__sq\"",
        series_key_sql(&base.group_tags),
        ident(SERIES_KEY),
        base.sql
    );
    Ok(Some(Relation {
        name: src.name.clone(),
        db: src.db.clone(),
        from,
        cols: base.cols,
        derived: true,
    }))
}

/// `base` with its one column transformed per series, as SQL window functions.
fn windowed(p: &transform::Plan, base: Base, range: TimeRange) -> Result<Base, String> {
    let [x] = base.fields.as_slice() else {
        return Err(
            "several transformations in one subquery are not supported by Bulkhead yet".into(),
        );
    };
    let int = base.cols.get(x) == Some(&Kind::Field("integer"));
    let tags: Vec<String> = base.group_tags.iter().map(|t| ident(t)).collect();
    let w = match tags.is_empty() {
        true => "(ORDER BY \"time\")".to_string(),
        false => format!("(PARTITION BY {} ORDER BY \"time\")", tags.join(", ")),
    };
    let (sql, int) = p.window_sql(&ident(x), &w, int)?;
    let name = p.names()[0].clone();
    if base.group_tags.contains(&name) {
        return Err(format!(
            "a subquery selecting its GROUP BY tag {name:?} as a field is not supported by Bulkhead yet"
        ));
    }
    let mut select = tags;
    select.push("\"time\"".into());
    select.push(ident(ORDER_KEY));
    select.push(format!("{sql} AS {}", ident(&name)));
    let mut conds = vec![format!("{} IS NOT NULL", ident(&name))];
    conds.extend(p.range_sql(range));
    let sql = format!(
        "SELECT * FROM (SELECT {} FROM ({}) AS \"__sq_t\") AS \"__sq_w\" WHERE {}",
        select.join(", "),
        base.sql,
        conds.join(" AND ")
    );
    let mut cols: Columns = base
        .group_tags
        .iter()
        .map(|t| (t.clone(), Kind::Tag))
        .collect();
    cols.insert(
        name.clone(),
        Kind::Field(if int { "integer" } else { "float" }),
    );
    cols.insert("time".into(), Kind::Time);
    Ok(Base {
        sql,
        group_tags: base.group_tags,
        fields: vec![name],
        cols,
    })
}

/// The SQL of `s` (without transformations) over `src`: `None` when it selects no field
/// `src` has.
async fn base(
    ctx: &Ctx,
    s: &Select,
    src: &Relation,
    mut range: TimeRange,
    read: &Read<'_>,
) -> Result<Option<Base>, String> {
    let (rest, wildcard) = (read.rest, read.wildcard);
    let cols = &src.cols;
    let (time_dim, group_tags) = dimensions(ctx, s, &src.db, cols).await?;
    let fields = expand_fields(ctx, &src.db, s, cols, &group_tags).await?;
    if distinct::is_distinct(&fields)? {
        return Err("distinct() inside a subquery is not supported by Bulkhead yet".into());
    }
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
        return Ok(None);
    }
    // A tag selected by name is a column of type `tag` (InfluxDB 1.6 selects it, `*`
    // lists it, `f(*)` and `GROUP BY *` leave it out); as one of the GROUP BY tags, it is
    // that tag, but `*` would list it as a column too.
    let is_tag = |f: &OutField| {
        matches!(f.expr.unparen(), Expr::Var { name, .. }
            if *name == f.name && cols.get(name.as_str()) == Some(&Kind::Tag))
    };
    for f in fields.iter().filter(|f| group_tags.contains(&f.name)) {
        if !is_tag(f) || wildcard {
            return Err(format!(
                "a subquery selecting its GROUP BY tag {:?} as a field is not supported by \
                 Bulkhead yet",
                f.name
            ));
        }
    }
    if time_dim.is_some() && range.upper.is_none() {
        // InfluxDB's GROUP BY time ends at now() without an upper bound.
        range.upper = Some(ctx.now);
    }

    let mut conds = src.where_terms(range, rest, &referenced, aggregate)?;
    if conds.is_empty() {
        conds.push("true".into());
    }

    let mut select = Vec::new();
    let mut group = Vec::new();
    let mut out_cols = Columns::new();
    for t in &group_tags {
        let sql = match cols.get(t) {
            Some(_) => var_sql(t, cols),
            None => "CAST(NULL AS VARCHAR)".into(),
        };
        select.push(format!("{sql} AS {}", ident(t)));
        if cols.contains_key(t) {
            group.push(ident(t));
        }
        out_cols.insert(t.clone(), Kind::Tag);
    }
    let lower = range.lower.unwrap_or(0);
    let (time, order) = match (aggregate, time_dim) {
        (false, _) => (TIME_INT.to_string(), TIME_INT.to_string()),
        (true, Some((iv, off))) => {
            let b = bucket_sql(iv, off);
            group.push(b.clone());
            (b.clone(), b)
        }
        (true, None) => {
            let selector = match &fields[..] {
                [only] => match &only.expr {
                    Expr::Call { name, args } if SELECTORS.contains(&name.as_str()) => {
                        selector_time_sql(name, args, cols)
                    }
                    _ => None,
                },
                _ => None,
            };
            (
                selector.unwrap_or_else(|| lower.to_string()),
                lower.to_string(),
            )
        }
    };
    select.push(format!("{time} AS \"time\""));
    select.push(format!("{order} AS {}", ident(ORDER_KEY)));
    let mut names = Vec::new();
    for f in &fields {
        if is_tag(f) {
            if !group_tags.contains(&f.name) {
                select.push(format!("{} AS {}", var_sql(&f.name, cols), ident(&f.name)));
                out_cols.insert(f.name.clone(), Kind::Field(TAG_FIELD));
            }
            continue;
        }
        let mut sql = arith_sql_boxed(&f.expr, cols)?;
        if is_count(&f.expr) {
            // A bucket where only other fields have points has no count (InfluxDB).
            sql = format!("NULLIF({sql}, 0)");
        }
        select.push(format!("{sql} AS {}", ident(&f.name)));
        out_cols.insert(f.name.clone(), Kind::Field(field_type(&f.expr, cols)));
        names.push(f.name.clone());
    }
    out_cols.insert("time".into(), Kind::Time);
    let mut sql = format!(
        "SELECT {} FROM {} WHERE {}",
        select.join(", "),
        src.from,
        conds.join(" AND ")
    );
    if aggregate && !group.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
    } else if aggregate {
        sql.push_str(" HAVING count(*) > 0");
    }
    Ok(Some(Base {
        sql,
        group_tags,
        fields: names,
        cols: out_cols,
    }))
}

fn is_count(e: &Expr) -> bool {
    matches!(e.unparen(), Expr::Call { name, .. } if name == "count")
}

/// `k1=v1,k2=v2` of a row's tags (the derived table's tag columns), empty ones left out.
fn series_key_sql(tags: &[String]) -> String {
    if tags.is_empty() {
        return "''".into();
    }
    let parts: Vec<String> = tags
        .iter()
        .map(|t| {
            let col = ident(t);
            format!(
                "CASE WHEN {col} <> '' THEN {} || {col} END",
                string_literal(&format!("{t}="))
            )
        })
        .collect();
    format!("concat_ws(',', {})", parts.join(", "))
}

/// The InfluxDB type of a subquery column (what `f(*)` in the outer statement expands
/// over): aggregates keep their field's, `count` is an integer, means are floats.
fn field_type(e: &Expr, cols: &Columns) -> &'static str {
    match e.unparen() {
        Expr::Var { name, .. } => match cols.get(name.as_str()) {
            Some(Kind::Field(t)) => t,
            _ => "string",
        },
        Expr::Call { name, args } => match name.as_str() {
            "count" => "integer",
            "sum" | "min" | "max" | "first" | "last" | "spread" | "percentile" => {
                args.first().map_or("float", |a| field_type(a, cols))
            }
            _ => "float",
        },
        Expr::Integer(_) => "integer",
        _ => "float",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::ast::Statement;
    use crate::influxql::parser::parse;

    fn select(q: &str) -> Select {
        match parse(q).unwrap().remove(0) {
            Statement::Select(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    fn inner(s: &Select) -> &Select {
        match &s.from[0] {
            Source::Subquery(inner) => inner,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_subquery_takes_the_outer_grouping() {
        let outer = select(
            "SELECT sum(last) FROM (SELECT last(v) FROM m GROUP BY host fill(null)) \
             GROUP BY time(5m, 1m), dc",
        );
        let eff = effective(&outer, inner(&outer));
        assert_eq!(
            eff.group_by,
            vec![
                Dimension::Tag("host".into()),
                Dimension::Time {
                    interval: 300_000_000_000,
                    offset: 60_000_000_000
                },
                Dimension::Tag("dc".into()),
            ]
        );
        assert_eq!(eff.fill, Fill::None);
        // A raw subquery takes no interval; its own interval stays.
        let outer = select("SELECT max(v) FROM (SELECT v FROM m) GROUP BY time(1m)");
        assert!(effective(&outer, inner(&outer)).group_by.is_empty());
        let outer = select(
            "SELECT max(mean) FROM (SELECT mean(v) FROM m GROUP BY time(1m)) GROUP BY time(5m)",
        );
        assert_eq!(
            effective(&outer, inner(&outer)).group_by,
            vec![Dimension::Time {
                interval: 60_000_000_000,
                offset: 0
            }]
        );
    }

    #[test]
    fn time_ranges_intersect() {
        let r = |lower, upper| TimeRange { lower, upper };
        assert_eq!(
            intersect(r(Some(5), None), r(Some(3), Some(9))),
            r(Some(5), Some(9))
        );
        assert_eq!(intersect(r(None, None), r(None, Some(2))), r(None, Some(2)));
        assert_eq!(
            intersect(r(Some(1), Some(8)), r(Some(4), Some(6))),
            r(Some(4), Some(6))
        );
    }

    #[test]
    fn unsupported_shapes_name_the_feature() {
        for (q, want) in [
            ("SELECT max(top) FROM (SELECT top(v, 3) FROM m)", "top()"),
            ("SELECT v FROM (SELECT v FROM m LIMIT 3)", "LIMIT"),
            (
                "SELECT max(mean) FROM (SELECT mean(v) FROM m GROUP BY time(1m) fill(0))",
                "fill()",
            ),
            ("SELECT v FROM (SELECT v INTO x FROM m)", "INTO"),
        ] {
            let s = select(q);
            let err = check(inner(&s)).err().unwrap_or_default();
            assert!(err.contains(want), "{q}: {err}");
            assert!(err.contains("inside a subquery"), "{q}: {err}");
        }
        let s =
            select("SELECT max(mean) FROM (SELECT mean(v) FROM m GROUP BY time(1m) fill(none))");
        assert!(check(inner(&s)).is_ok());
    }

    #[test]
    fn column_types_and_series_keys() {
        let cols: Columns = [
            ("v".to_string(), Kind::Field("integer")),
            ("host".to_string(), Kind::Tag),
        ]
        .into_iter()
        .collect();
        let ty = |q: &str| field_type(&select(q).fields[0].expr, &cols);
        assert_eq!(ty("SELECT max(v) FROM m"), "integer");
        assert_eq!(ty("SELECT count(v) FROM m"), "integer");
        assert_eq!(ty("SELECT mean(v) FROM m"), "float");
        assert_eq!(ty("SELECT v / 2 FROM m"), "float");
        assert_eq!(ty("SELECT host FROM m"), "string");
        assert_eq!(series_key_sql(&[]), "''");
        assert_eq!(
            series_key_sql(&["dc".into(), "host".into()]),
            "concat_ws(',', CASE WHEN \"dc\" <> '' THEN 'dc=' || \"dc\" END, \
             CASE WHEN \"host\" <> '' THEN 'host=' || \"host\" END)"
        );
    }
}
