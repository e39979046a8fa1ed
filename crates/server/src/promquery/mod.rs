//! Prometheus reads over Bulkhead's tables, the inverse of [`crate::promwrite`]'s
//! mapping (table = metric, tags = labels, float field `value`): the metric catalog
//! from `information_schema`, and one SQL scan per (selector, table) with the time range
//! and the label matchers pushed into its `WHERE` (so the series index and the time
//! pruning of the read path apply). Everything here runs on the `query` runtime.

pub(crate) mod remote_read;
mod series;

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use bulkhead_promql::{Error, Fetch, LabelMatcher, Labels, MatchKind, NAME, RawSeries};
use futures::StreamExt;

use crate::backend::{QueryBackend, QueryErrorKind};
use crate::influxql::sql::{ident, string_literal, table};
use crate::influxql::time::format_rfc3339;
use crate::promwrite::VALUE_FIELD;

/// The metrics of a database: table → its tag columns (the labels it can have).
pub(crate) type Catalog = BTreeMap<String, Vec<String>>;

/// Reads for one request: the backend, the database and its catalog.
pub(crate) struct Reader<'a> {
    pub queries: &'a dyn QueryBackend,
    pub db: &'a str,
    pub catalog: Catalog,
    /// Samples read so far, and the most allowed (from `limits.query_memory`).
    pub samples: usize,
    pub max_samples: usize,
}

async fn collect(
    queries: &dyn QueryBackend,
    db: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>, Error> {
    tracing::debug!(%db, %sql, "promql scan");
    let out = match queries.sql(db, sql).await {
        Ok(out) => out,
        Err(e) if e.kind == QueryErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind == QueryErrorKind::ResourcesExhausted => {
            return Err(Error::TooManySamples(e.message));
        }
        Err(e) => return Err(Error::Execution(format!("{e} (scan: {sql})"))),
    };
    let mut batches = Vec::new();
    let mut stream = out.batches;
    while let Some(b) = stream.next().await {
        batches.push(b.map_err(|e| Error::Execution(e.to_string()))?);
    }
    Ok(batches)
}

/// The metric tables of `db` (those with a float `value` column) and their tag columns.
pub(crate) async fn catalog(queries: &dyn QueryBackend, db: &str) -> Result<Catalog, Error> {
    let sql = format!(
        "SELECT table_name, column_name, data_type FROM information_schema.columns \
         WHERE table_catalog = 'bulkhead' AND table_schema = {} ORDER BY table_name, column_name",
        string_literal(db)
    );
    let batches = collect(queries, db, &sql).await?;
    let mut tags: Catalog = BTreeMap::new();
    let mut metrics = BTreeSet::new();
    for b in &batches {
        let cols: Vec<_> = (0..3)
            .map(|i| utf8(b.column(i)))
            .collect::<Result<_, _>>()?;
        for row in 0..b.num_rows() {
            let (t, c, ty) = (cols[0].value(row), cols[1].value(row), cols[2].value(row));
            if ty.starts_with("Dictionary") {
                tags.entry(t.to_string()).or_default().push(c.to_string());
            } else if c == VALUE_FIELD && ty == "Float64" {
                metrics.insert(t.to_string());
            }
        }
    }
    Ok(metrics
        .into_iter()
        .map(|m| {
            let t = tags.remove(&m).unwrap_or_default();
            (m, t)
        })
        .collect())
}

fn utf8(col: &dyn Array) -> Result<arrow::array::StringArray, Error> {
    let c = cast(col, &DataType::Utf8).map_err(|e| Error::Execution(e.to_string()))?;
    Ok(c.as_string::<i32>().clone())
}

/// `WHERE` condition of one matcher on tag column `name` (absent tag = NULL = `""`).
fn matcher_sql(m: &LabelMatcher) -> String {
    let col = ident(&m.name);
    let cond = match m.kind {
        MatchKind::Equal if m.value.is_empty() => return format!("{col} IS NULL"),
        MatchKind::NotEqual if m.value.is_empty() => return format!("{col} IS NOT NULL"),
        MatchKind::Equal => format!("{col} = {}", string_literal(&m.value)),
        MatchKind::NotEqual => format!("{col} <> {}", string_literal(&m.value)),
        MatchKind::Regex => format!(
            "{col} ~ {}",
            string_literal(m.anchored_regex().unwrap_or_default())
        ),
        MatchKind::NotRegex => format!(
            "{col} !~ {}",
            string_literal(m.anchored_regex().unwrap_or_default())
        ),
    };
    if m.matches("") {
        format!("({col} IS NULL OR {cond})")
    } else {
        cond
    }
}

impl Reader<'_> {
    pub(crate) async fn new<'a>(
        queries: &'a dyn QueryBackend,
        db: &'a str,
        max_samples: usize,
    ) -> Result<Reader<'a>, Error> {
        Ok(Reader {
            queries,
            db,
            catalog: catalog(queries, db).await?,
            samples: 0,
            max_samples,
        })
    }

    /// The tables a fetch may read, with the `WHERE` of its label matchers on each
    /// (`None` when a matcher on a label the table does not have rules it out).
    fn plan(&self, f: &Fetch) -> Vec<(String, Vec<String>, String)> {
        let mut out = Vec::new();
        for (metric, tags) in &self.catalog {
            if let Some(name) = f.metric()
                && name != metric
            {
                continue;
            }
            let mut conds = Vec::new();
            let mut possible = true;
            for m in &f.matchers {
                if m.name == NAME {
                    possible &= m.matches(metric);
                } else if tags.contains(&m.name) {
                    conds.push(matcher_sql(m));
                } else {
                    possible &= m.matches("");
                }
            }
            if possible {
                out.push((metric.clone(), tags.clone(), conds.join(" AND ")));
            }
        }
        out
    }

    /// The series a fetch selects, with their samples in its time range.
    pub(crate) async fn scan(&mut self, f: &Fetch) -> Result<Vec<RawSeries>, Error> {
        let mut out = Vec::new();
        for (metric, tags, conds) in self.plan(f) {
            let mut select: Vec<String> = tags.iter().map(|t| ident(t)).collect();
            select.push(format!("CAST({} AS BIGINT)", ident("time")));
            select.push(ident(VALUE_FIELD));
            let mut sql = format!(
                "SELECT {} FROM {} WHERE {t} >= {} AND {t} <= {}",
                select.join(", "),
                table(self.db, &metric),
                string_literal(&format_rfc3339(f.min_ms.saturating_mul(1_000_000))),
                string_literal(&format_rfc3339(f.max_ms.saturating_mul(1_000_000))),
                t = ident("time"),
            );
            if !conds.is_empty() {
                sql.push_str(" AND ");
                sql.push_str(&conds);
            }
            let batches = collect(self.queries, self.db, &sql).await?;
            let mut series = series::SeriesBuilder::new(&metric, &tags);
            for b in &batches {
                self.samples += b.num_rows();
                if self.samples > self.max_samples {
                    return Err(Error::TooManySamples(format!(
                        "query processing would load too many samples into memory (more than \
                         {} allowed by limits.query_memory)",
                        self.max_samples
                    )));
                }
                series.add(b)?;
            }
            for mut s in series.series {
                if !f.selects(|n| s.labels.get(n).to_string()) {
                    continue;
                }
                sort_samples(&mut s);
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// The label sets of the series a fetch selects (no samples read).
    pub(crate) async fn series(&mut self, f: &Fetch) -> Result<Vec<Labels>, Error> {
        let mut out = Vec::new();
        for (metric, tags, conds) in self.plan(f) {
            let mut sql = if tags.is_empty() {
                format!("SELECT count(*) FROM {}", table(self.db, &metric))
            } else {
                let cols: Vec<String> = tags.iter().map(|t| ident(t)).collect();
                format!(
                    "SELECT DISTINCT {} FROM {}",
                    cols.join(", "),
                    table(self.db, &metric)
                )
            };
            sql.push_str(&format!(
                " WHERE {t} >= {} AND {t} <= {}",
                string_literal(&format_rfc3339(f.min_ms.saturating_mul(1_000_000))),
                string_literal(&format_rfc3339(f.max_ms.saturating_mul(1_000_000))),
                t = ident("time"),
            ));
            if !conds.is_empty() {
                sql.push_str(" AND ");
                sql.push_str(&conds);
            }
            for b in collect(self.queries, self.db, &sql).await? {
                if tags.is_empty() {
                    let n = cast(b.column(0), &DataType::Int64)
                        .map_err(|e| Error::Execution(e.to_string()))?;
                    if n.as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .any(|&n| n > 0)
                    {
                        out.push(Labels::new(vec![(NAME.to_string(), metric.clone())]));
                    }
                    continue;
                }
                let cols: Vec<_> = (0..tags.len())
                    .map(|i| utf8(b.column(i)))
                    .collect::<Result<_, _>>()?;
                for row in 0..b.num_rows() {
                    let mut pairs = vec![(NAME.to_string(), metric.clone())];
                    for (name, c) in tags.iter().zip(&cols) {
                        if !c.is_null(row) {
                            pairs.push((name.clone(), c.value(row).to_string()));
                        }
                    }
                    let labels = Labels::new(pairs);
                    if f.selects(|n| labels.get(n).to_string()) {
                        out.push(labels);
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Samples in time order, one per timestamp (the last one read wins).
fn sort_samples(s: &mut RawSeries) {
    if s.times.windows(2).all(|w| w[0] < w[1]) {
        return;
    }
    let mut pairs: Vec<(i64, f64)> = s
        .times
        .iter()
        .copied()
        .zip(s.values.iter().copied())
        .collect();
    pairs.sort_by_key(|p| p.0);
    pairs.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 = later.1;
            true
        } else {
            false
        }
    });
    s.times = pairs.iter().map(|p| p.0).collect();
    s.values = pairs.iter().map(|p| p.1).collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_become_null_aware_conditions() {
        let m = |name, kind, v| LabelMatcher::new(name, kind, v).unwrap();
        assert_eq!(
            matcher_sql(&m("job", MatchKind::Equal, "a")),
            r#""job" = 'a'"#
        );
        assert_eq!(
            matcher_sql(&m("job", MatchKind::Equal, "")),
            r#""job" IS NULL"#
        );
        assert_eq!(
            matcher_sql(&m("job", MatchKind::NotEqual, "a")),
            r#"("job" IS NULL OR "job" <> 'a')"#
        );
        assert_eq!(
            matcher_sql(&m("job", MatchKind::Regex, "a*")),
            r#"("job" IS NULL OR "job" ~ '^(?:a*)$')"#
        );
        assert_eq!(
            matcher_sql(&m("job", MatchKind::Regex, "a.+")),
            r#""job" ~ '^(?:a.+)$'"#
        );
        assert_eq!(
            matcher_sql(&m("job", MatchKind::NotRegex, "it's")),
            r#"("job" IS NULL OR "job" !~ '^(?:it''s)$')"#
        );
    }

    #[test]
    fn samples_are_sorted_and_deduplicated() {
        let mut s = RawSeries {
            labels: Labels::empty(),
            times: vec![3, 1, 2, 1],
            values: vec![3.0, 1.0, 2.0, 1.5],
        };
        sort_samples(&mut s);
        assert_eq!(s.times, vec![1, 2, 3]);
        assert_eq!(s.values, vec![1.5, 2.0, 3.0]);
    }
}
