//! Metadata statements (`SHOW ...`), answered from `information_schema` and
//! `SELECT DISTINCT` over the measurements' tag columns.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ast::{NameMatch, Source, Statement};
use super::cond::{Columns, Kind, split_time, where_sql};
use super::sql::{collect, ident, string_literal, strings, table};
use super::{Ctx, Series, StatementResult, database_exists};

/// Databases with data (the `system` and `information_schema` schemas are not ones).
pub(crate) async fn databases(ctx: &Ctx) -> Result<Vec<String>, String> {
    let session_db = if ctx.db.is_empty() {
        "default"
    } else {
        &ctx.db
    };
    let batches = collect(
        ctx,
        session_db,
        "SELECT schema_name FROM information_schema.schemata \
         WHERE catalog_name = 'bulkhead' ORDER BY schema_name",
    )
    .await?;
    Ok(strings(&batches, 0)
        .into_iter()
        .flatten()
        .filter(|s| s != "system" && s != "information_schema")
        .collect())
}

/// InfluxDB's name for a column's Arrow type (`None`: the time column or unknown).
fn kind_of(data_type: &str) -> Option<Kind> {
    Some(if data_type.starts_with("Dictionary") {
        Kind::Tag
    } else if data_type.starts_with("Timestamp") {
        Kind::Time
    } else {
        Kind::Field(match data_type {
            "Float64" => "float",
            "Int64" => "integer",
            "UInt64" => "unsigned",
            "Boolean" => "boolean",
            "Utf8" | "LargeUtf8" | "Utf8View" => "string",
            _ => return None,
        })
    })
}

/// The columns of measurement `m` of `db`, from the engine's catalog without a query
/// (`None`: no such measurement, or a backend that does not say).
pub(crate) fn table_columns(ctx: &Ctx, db: &str, m: &str) -> Option<Columns> {
    use bulkhead_engine::FieldType;
    let t = ctx.state.writes.table_columns(db, m)?;
    let mut cols: Columns = t.tags.into_iter().map(|n| (n, Kind::Tag)).collect();
    for (n, ty) in t.fields {
        let name = match ty {
            FieldType::F64 => "float",
            FieldType::I64 => "integer",
            FieldType::U64 => "unsigned",
            FieldType::Bool => "boolean",
            FieldType::Str => "string",
        };
        cols.insert(n, Kind::Field(name));
    }
    cols.insert("time".into(), Kind::Time);
    Some(cols)
}

/// The measurements of `db` named by `from` (all when empty), with their columns.
/// Sources that name no existing measurement are skipped, as InfluxDB does.
pub(crate) async fn measurements(
    ctx: &Ctx,
    db: &str,
    from: &[Source],
) -> Result<BTreeMap<String, Columns>, String> {
    let mut filter = Vec::new();
    for source in from {
        match source {
            Source::Measurement { name, .. } => {
                filter.push(format!("table_name = {}", string_literal(name)))
            }
            Source::Regex { regex, .. } => {
                filter.push(format!("table_name ~ {}", string_literal(regex)))
            }
            Source::Subquery(_) => return Err("subqueries are not supported yet".into()),
        }
    }
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!(" AND ({})", filter.join(" OR "))
    };
    let sql = format!(
        "SELECT table_name, column_name, data_type FROM information_schema.columns \
         WHERE table_catalog = 'bulkhead' AND table_schema = {}{filter} \
         ORDER BY table_name, column_name",
        string_literal(db)
    );
    let batches = collect(ctx, db, &sql).await?;
    let (tables, names, types) = (
        strings(&batches, 0),
        strings(&batches, 1),
        strings(&batches, 2),
    );
    let mut out: BTreeMap<String, Columns> = BTreeMap::new();
    for ((t, n), ty) in tables.into_iter().zip(names).zip(types) {
        let (Some(t), Some(n), Some(ty)) = (t, n, ty) else {
            continue;
        };
        if let Some(kind) = kind_of(&ty) {
            out.entry(t).or_default().insert(n, kind);
        }
    }
    Ok(out)
}

/// The database of a SHOW statement, which must exist.
async fn existing_db(ctx: &Ctx, on: Option<&str>) -> Result<String, String> {
    let db = ctx.database(on)?;
    if !database_exists(ctx, &db).await? {
        return Err(format!("database not found: {db}"));
    }
    Ok(db)
}

fn page<T>(items: Vec<T>, limit: Option<u64>, offset: Option<u64>) -> Vec<T> {
    let skip = offset.unwrap_or(0) as usize;
    let take = limit.filter(|l| *l > 0).map_or(usize::MAX, |l| l as usize);
    items.into_iter().skip(skip).take(take).collect()
}

fn series(name: Option<&str>, columns: &[&str], values: Vec<Vec<Value>>) -> Series {
    Series {
        name: name.map(str::to_string),
        tags: None,
        columns: columns.iter().map(|c| c.to_string()).collect(),
        values,
        time_column: false,
        arrow: None,
    }
}

fn strs(items: &[&str]) -> Vec<Value> {
    items.iter().map(|s| Value::String(s.to_string())).collect()
}

/// The SQL condition of a SHOW statement's `WHERE` (time terms are ignored, as
/// InfluxDB 1.x does for metadata).
fn show_cond(ctx: &Ctx, cond: Option<&super::ast::Expr>, cols: &Columns) -> Result<String, String> {
    let (_, rest) = split_time(cond, ctx.now)?;
    match rest {
        Some(e) => where_sql(&e, cols),
        None => Ok("true".into()),
    }
}

pub(crate) async fn run(ctx: &Ctx, statement: Statement) -> StatementResult {
    match statement {
        Statement::ShowRetentionPolicies(on) => {
            existing_db(ctx, on.as_deref()).await?;
            let row = vec![
                Value::from("autogen"),
                Value::from("0s"),
                Value::from(super::time::format_duration(7 * 24 * 3_600_000_000_000)),
                Value::from(1),
                Value::Bool(true),
            ];
            Ok(vec![series(
                None,
                &[
                    "name",
                    "duration",
                    "shardGroupDuration",
                    "replicaN",
                    "default",
                ],
                vec![row],
            )])
        }
        Statement::ShowMeasurements {
            on,
            with,
            cond,
            limit,
            offset,
        } => {
            let db = existing_db(ctx, on.as_deref()).await?;
            let from = match &with {
                None => Vec::new(),
                Some(NameMatch::Eq(n)) => vec![Source::Measurement {
                    db: None,
                    name: n.clone(),
                }],
                Some(NameMatch::Regex(r)) => vec![Source::Regex {
                    db: None,
                    regex: r.clone(),
                }],
                Some(_) => return Err("WITH MEASUREMENT supports = and =~".into()),
            };
            let mut names = Vec::new();
            for (m, cols) in measurements(ctx, &db, &from).await? {
                if cond.is_some() {
                    let sql = format!(
                        "SELECT 1 FROM {} WHERE {} LIMIT 1",
                        table(&db, &m),
                        show_cond(ctx, cond.as_ref(), &cols)?
                    );
                    if collect(ctx, &db, &sql)
                        .await?
                        .iter()
                        .all(|b| b.num_rows() == 0)
                    {
                        continue;
                    }
                }
                names.push(vec![Value::String(m)]);
            }
            let names = page(names, limit, offset);
            if names.is_empty() {
                return Ok(Vec::new());
            }
            Ok(vec![series(Some("measurements"), &["name"], names)])
        }
        Statement::ShowTagKeys {
            on,
            from,
            cond,
            limit,
            offset,
        } => {
            let db = existing_db(ctx, on.as_deref()).await?;
            let mut out = Vec::new();
            for (m, cols) in measurements(ctx, &db, &from).await? {
                let mut keys: Vec<&String> = cols
                    .iter()
                    .filter(|(_, k)| **k == Kind::Tag)
                    .map(|(n, _)| n)
                    .collect();
                if cond.is_some() && !keys.is_empty() {
                    let counts: Vec<String> = keys
                        .iter()
                        .map(|k| format!("count({})", ident(k)))
                        .collect();
                    let sql = format!(
                        "SELECT {} FROM {} WHERE {}",
                        counts.join(", "),
                        table(&db, &m),
                        show_cond(ctx, cond.as_ref(), &cols)?
                    );
                    let batches = collect(ctx, &db, &sql).await?;
                    let present: Vec<bool> = (0..keys.len())
                        .map(|i| {
                            strings(&batches, i)
                                .first()
                                .cloned()
                                .flatten()
                                .is_some_and(|n| n != "0")
                        })
                        .collect();
                    let mut i = 0;
                    keys.retain(|_| {
                        i += 1;
                        present[i - 1]
                    });
                }
                let values: Vec<Vec<Value>> = keys.into_iter().map(|k| strs(&[k])).collect();
                let values = page(values, limit, offset);
                if !values.is_empty() {
                    out.push(series(Some(&m), &["tagKey"], values));
                }
            }
            Ok(out)
        }
        Statement::ShowFieldKeys {
            on,
            from,
            limit,
            offset,
        } => {
            let db = existing_db(ctx, on.as_deref()).await?;
            let mut out = Vec::new();
            for (m, cols) in measurements(ctx, &db, &from).await? {
                let values: Vec<Vec<Value>> = cols
                    .iter()
                    .filter_map(|(n, k)| match k {
                        Kind::Field(t) => Some(strs(&[n, t])),
                        _ => None,
                    })
                    .collect();
                let values = page(values, limit, offset);
                if !values.is_empty() {
                    out.push(series(Some(&m), &["fieldKey", "fieldType"], values));
                }
            }
            Ok(out)
        }
        Statement::ShowTagValues {
            on,
            from,
            key,
            cond,
            limit,
            offset,
        } => {
            let db = existing_db(ctx, on.as_deref()).await?;
            let mut out = Vec::new();
            for (m, cols) in measurements(ctx, &db, &from).await? {
                let where_ = show_cond(ctx, cond.as_ref(), &cols)?;
                let mut values = Vec::new();
                let tag_keys: Vec<String> = cols
                    .iter()
                    .filter(|(_, k)| **k == Kind::Tag)
                    .map(|(n, _)| n.clone())
                    .collect();
                for k in &matching(ctx, &db, tag_keys, &key).await? {
                    let sql = format!(
                        "SELECT DISTINCT CAST({c} AS VARCHAR) AS v FROM {t} \
                         WHERE {c} IS NOT NULL AND {where_} ORDER BY v",
                        c = ident(k),
                        t = table(&db, &m),
                    );
                    for v in strings(&collect(ctx, &db, &sql).await?, 0)
                        .into_iter()
                        .flatten()
                    {
                        values.push(strs(&[k, &v]));
                    }
                }
                let values = page(values, limit, offset);
                if !values.is_empty() {
                    out.push(series(Some(&m), &["key", "value"], values));
                }
            }
            Ok(out)
        }
        Statement::ShowSeries {
            on,
            from,
            cond,
            limit,
            offset,
        } => {
            let db = existing_db(ctx, on.as_deref()).await?;
            let mut keys = Vec::new();
            for (m, cols) in measurements(ctx, &db, &from).await? {
                let tags: Vec<&String> = cols
                    .iter()
                    .filter(|(_, k)| **k == Kind::Tag)
                    .map(|(n, _)| n)
                    .collect();
                let where_ = show_cond(ctx, cond.as_ref(), &cols)?;
                if tags.is_empty() {
                    let sql = format!("SELECT 1 FROM {} WHERE {where_} LIMIT 1", table(&db, &m));
                    if collect(ctx, &db, &sql)
                        .await?
                        .iter()
                        .any(|b| b.num_rows() > 0)
                    {
                        keys.push(escape_key(&m, true));
                    }
                    continue;
                }
                let select: Vec<String> = tags
                    .iter()
                    .map(|t| format!("CAST({} AS VARCHAR)", ident(t)))
                    .collect();
                let sql = format!(
                    "SELECT DISTINCT {} FROM {} WHERE {where_}",
                    select.join(", "),
                    table(&db, &m)
                );
                let batches = collect(ctx, &db, &sql).await?;
                let columns: Vec<Vec<Option<String>>> =
                    (0..tags.len()).map(|i| strings(&batches, i)).collect();
                let rows = columns.first().map_or(0, Vec::len);
                #[allow(clippy::needless_range_loop)] // one row across the columns
                for row in 0..rows {
                    let mut key = escape_key(&m, true);
                    for (column, t) in columns.iter().zip(&tags) {
                        if let Some(v) = column[row].as_deref().filter(|v| !v.is_empty()) {
                            key.push(',');
                            key.push_str(&escape_key(t, false));
                            key.push('=');
                            key.push_str(&escape_key(v, false));
                        }
                    }
                    keys.push(key);
                }
            }
            keys.sort();
            let values: Vec<Vec<Value>> =
                keys.into_iter().map(|k| vec![Value::String(k)]).collect();
            let values = page(values, limit, offset);
            if values.is_empty() {
                return Ok(Vec::new());
            }
            Ok(vec![series(None, &["key"], values)])
        }
        other => Err(format!("statement {other:?} cannot be run here")),
    }
}

/// Line-protocol escaping of a series key part.
fn escape_key(s: &str, measurement: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == ',' || c == ' ' || (!measurement && c == '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The names of `names` that `m` selects (regexes are evaluated by the query engine,
/// the same dialect as in `WHERE`).
pub(crate) async fn matching(
    ctx: &Ctx,
    db: &str,
    names: Vec<String>,
    m: &NameMatch,
) -> Result<Vec<String>, String> {
    Ok(match m {
        NameMatch::Eq(k) => names.into_iter().filter(|n| n == k).collect(),
        NameMatch::NotEq(k) => names.into_iter().filter(|n| n != k).collect(),
        NameMatch::In(ks) => names.into_iter().filter(|n| ks.contains(n)).collect(),
        NameMatch::Regex(_) | NameMatch::NotRegex(_) if names.is_empty() => names,
        NameMatch::Regex(_) | NameMatch::NotRegex(_) => {
            let rows: Vec<String> = names
                .iter()
                .map(|n| format!("({})", string_literal(n)))
                .collect();
            let sql = format!(
                "SELECT column1 FROM (VALUES {}) AS t WHERE {} ORDER BY column1",
                rows.join(", "),
                m.to_sql("column1")
            );
            strings(&collect(ctx, db, &sql).await?, 0)
                .into_iter()
                .flatten()
                .collect()
        }
    })
}

/// `SHOW ... [EXACT] CARDINALITY`: the rows of the matching `SHOW` counted, in InfluxDB
/// 1.6's shapes: measurements and (estimated) series as one total, the rest (and exact
/// series) per measurement. Bulkhead's "estimation" is the exact count.
pub(crate) async fn cardinality(ctx: &Ctx, exact: bool, inner: Statement) -> StatementResult {
    let total = match &inner {
        Statement::ShowMeasurements { .. } => true,
        Statement::ShowSeries { .. } => !exact,
        _ => false,
    };
    let by_key = matches!(inner, Statement::ShowSeries { .. });
    let found = run(ctx, inner).await?;
    let count = |n: usize| vec![vec![Value::from(n as u64)]];
    if total {
        let n = found.iter().map(|s| s.values.len()).sum();
        return Ok(match (exact, n) {
            (false, n) => vec![series(None, &["cardinality estimation"], count(n))],
            (true, 0) => Vec::new(),
            (true, n) => vec![series(None, &["count"], count(n))],
        });
    }
    if by_key {
        // Series keys `m,tag=v`: counted by their measurement.
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for row in found.iter().flat_map(|s| &s.values) {
            if let Some(key) = row.first().and_then(Value::as_str) {
                *per.entry(key_measurement(key)).or_default() += 1;
            }
        }
        return Ok(per
            .into_iter()
            .map(|(m, n)| series(Some(&m), &["count"], count(n)))
            .collect());
    }
    Ok(found
        .iter()
        .map(|s| series(s.name.as_deref(), &["count"], count(s.values.len())))
        .collect())
}

/// The measurement of a series key (before its first unescaped comma), unescaped.
fn key_measurement(key: &str) -> String {
    let mut out = String::new();
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            ',' => break,
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(kind_of("Dictionary(Int32, Utf8)"), Some(Kind::Tag));
        assert_eq!(kind_of("UInt64"), Some(Kind::Field("unsigned")));
        assert_eq!(
            kind_of("Timestamp(Nanosecond, Some(\"UTC\"))"),
            Some(Kind::Time)
        );
        assert_eq!(escape_key("a b,c=d", false), "a\\ b\\,c\\=d");
        assert_eq!(escape_key("a=b", true), "a=b");
        assert_eq!(page(vec![1, 2, 3, 4], Some(2), Some(1)), vec![2, 3]);
        assert_eq!(page(vec![1, 2], None, None), vec![1, 2]);
    }
}
