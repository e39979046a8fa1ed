//! `SELECT`: translated to one SQL query per measurement (raw rows, or aggregates grouped
//! by tags and time bucket), run through the query backend, then cut into InfluxDB
//! series per tag set, gap-filled, ordered and limited per series.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ast::{Expr, Select, Source};
use super::cond::{Kind, TimeRange, split_time};
use super::fields::{
    SELECTORS, arith_sql_boxed, dimensions, expand_fields, fields_of, has_aggregate, has_bare_var,
    selector_time_sql, var_sql,
};
use super::fill::{MAX_BUCKETS, bucket_start, fill_series};
use super::relation::{Relation, TIME_INT, bucket_bin_sql, bucket_sql, tables};
use super::sql::{cell, collect, ident};
use super::transform::Plan;
use super::{Ctx, Series, StatementResult, distinct, points, rows, subquery, transform};

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
        let Source::Subquery(inner) = source else {
            for rel in tables(ctx, source).await? {
                let rest = rest.as_ref();
                out.extend(over(ctx, s, transforms.as_ref(), selecting, &rel, range, rest).await?);
            }
            continue;
        };
        if s.from.len() > 1 {
            return Err(
                "a subquery beside other sources in FROM is not supported by Bulkhead yet".into(),
            );
        }
        // SLIMIT and SOFFSET count the outer series, below (InfluxDB 1.6 also limits the
        // subquery's series, grouped by the outer tags: the same ones).

        // The subquery reads the time range the statement reads.
        let (outer, read) = match &transforms {
            Some(t) => (&t.inner, t.read_range(range)),
            None => (s, range),
        };
        for rel in subquery::relations(ctx, outer, inner, read).await? {
            let rest = rest.as_ref();
            out.extend(over(ctx, s, transforms.as_ref(), selecting, &rel, range, rest).await?);
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

/// The series of `s` over one relation.
async fn over(
    ctx: &Ctx,
    s: &Select,
    transforms: Option<&Plan>,
    selecting: bool,
    rel: &Relation,
    range: TimeRange,
    rest: Option<&Expr>,
) -> Result<Vec<Series>, String> {
    Ok(match transforms {
        None if selecting => points::series(ctx, s, rel, range, rest).await?,
        None => measurement(ctx, s, rel, range, rest).await?,
        Some(t) => {
            let read = measurement(ctx, &t.inner, rel, t.read_range(range), rest);
            t.apply(read.await?, range)
        }
    })
}

async fn measurement(
    ctx: &Ctx,
    s: &Select,
    rel: &Relation,
    range: TimeRange,
    rest: Option<&Expr>,
) -> Result<Vec<Series>, String> {
    let (db, m, cols) = (rel.db.as_str(), rel.name.as_str(), &rel.cols);
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
    let mut conds = rel.where_terms(range, rest, &referenced, aggregate)?;
    if distinct::is_distinct(&fields)? {
        let q = distinct::Query {
            db,
            m,
            from: &rel.from,
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
        if rel.derived {
            let b = bucket_sql(iv, off);
            select.push(b.clone());
            group.push(b);
        } else {
            let b = bucket_bin_sql(iv, off);
            select.push(format!("CAST({b} AS BIGINT)"));
            group.push(b);
        }
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
        && !rel.derived
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
        rel.from,
        conds.join(" AND ")
    );
    if lastpoint || aggregate && !group.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
    }
    if !aggregate && !lastpoint {
        let dir = if s.order_desc { "DESC" } else { "ASC" };
        sql.push_str(&format!(" ORDER BY {}", rel.raw_order(dir)));
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
