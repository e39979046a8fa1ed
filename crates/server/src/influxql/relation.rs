//! What a `SELECT` reads from: a measurement's table, or the rows of a subquery as a SQL
//! derived table ([`super::subquery`]), with the SQL helpers for its `time` column.

use super::ast::{Expr, Source};
use super::cond::{Columns, Kind, TimeRange, where_sql};
use super::sql::{ident, table};
use super::{Ctx, database_exists, meta};

/// A row's time as epoch nanoseconds, in SQL.
pub(super) const TIME_INT: &str = "CAST(\"time\" AS BIGINT)";

/// SQL of the start of the `GROUP BY time(iv, off)` bucket of a row.
pub(super) fn bucket_sql(iv: i64, off: i64) -> String {
    let t = TIME_INT;
    format!("({t} - ((({t} - {off}) % {iv}) + {iv}) % {iv})")
}

/// The `GROUP BY time(iv, off)` bucket of a measurement's row as a timestamp, with
/// `date_bin` (the same bucket as [`bucket_sql`]; a derived relation's BIGINT `time`
/// needs that one). DataFusion groups by it faster than by the integer arithmetic
/// (TSBS single-groupby: ~5 %). Select it as `CAST(.. AS BIGINT)`.
pub(super) fn bucket_bin_sql(iv: i64, off: i64) -> String {
    format!("date_bin(INTERVAL '{iv} nanoseconds', \"time\", to_timestamp_nanos({off}))")
}

/// The rows a statement runs over, named as the series it gives.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Relation {
    /// The measurement: the series' name.
    pub(super) name: String,
    /// The database (the default one of the SQL run over it).
    pub(super) db: String,
    /// The SQL after `FROM`: `"db"."m"`, or `(SELECT ...) AS "__sq"`.
    pub(super) from: String,
    /// Its tags, fields and `time`.
    pub(super) cols: Columns,
    /// A subquery's rows: `time` is a BIGINT (nanoseconds); [`ORDER_KEY`] and
    /// [`SERIES_KEY`] order its rows as InfluxDB emits them; the statement's time range
    /// was pushed into it and is not applied again.
    pub(super) derived: bool,
}

/// The type of a derived relation's column holding a tag the subquery selects by name:
/// `f(*)` leaves it out (InfluxDB 1.6 counts it as a tag there, not a field).
pub(super) const TAG_FIELD: &str = "tag";

/// A derived relation's column ordering its rows: the time of the bucket (raw rows:
/// the point's time) InfluxDB merges subquery rows by.
pub(super) const ORDER_KEY: &str = "__sq_order";
/// A derived relation's column with the series key (`k1=v1,k2=v2`, empty tags left
/// out) of the subquery series a row comes from: the order of rows of equal time.
pub(super) const SERIES_KEY: &str = "__sq_series";

impl Relation {
    /// A measurement's table.
    pub(super) fn table(db: &str, name: &str, cols: Columns) -> Self {
        Self {
            name: name.to_string(),
            db: db.to_string(),
            from: table(db, name),
            cols,
            derived: false,
        }
    }

    /// The SQL condition for the statement's time range: none for a derived relation
    /// (the range was pushed into the subquery, whose bucket times may start before it).
    pub(super) fn time_sql(&self, range: TimeRange) -> Option<String> {
        if self.derived {
            return None;
        }
        range.to_sql()
    }

    /// The WHERE terms of a SELECT over this relation: the time range, the condition
    /// `rest`, and "some selected field is set" (`referenced`: the selected fields).
    /// Every row qualifies when all fields are selected (a point has at least one
    /// field); InfluxDB 1.6 keeps every row of a subquery in a raw select, also those
    /// whose selected fields are all null.
    pub(super) fn where_terms(
        &self,
        range: TimeRange,
        rest: Option<&Expr>,
        referenced: &[String],
        aggregate: bool,
    ) -> Result<Vec<String>, String> {
        let mut conds = Vec::new();
        if let Some(t) = self.time_sql(range) {
            conds.push(t);
        }
        if let Some(e) = rest {
            conds.push(where_sql(e, &self.cols)?);
        }
        let all_fields = (self.derived && !aggregate)
            || self
                .cols
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
        Ok(conds)
    }

    /// `ORDER BY` terms of raw rows in time order (`dir`: `ASC` or `DESC`); rows of equal
    /// time from a subquery's series in series-key order also under `DESC`.
    pub(super) fn raw_order(&self, dir: &str) -> String {
        if self.derived {
            format!(
                "{} {dir}, {} ASC, {TIME_INT} {dir}",
                ident(ORDER_KEY),
                ident(SERIES_KEY)
            )
        } else {
            format!("{TIME_INT} {dir}")
        }
    }
}

/// The tables a measurement or regex source names (none for a subquery).
pub(super) async fn tables(ctx: &Ctx, source: &Source) -> Result<Vec<Relation>, String> {
    let db = match source {
        Source::Measurement { db, .. } | Source::Regex { db, .. } => ctx.database(db.as_deref())?,
        Source::Subquery(_) => return Ok(Vec::new()),
    };
    // A named measurement's columns come from the catalog, without a query.
    if let Source::Measurement { name, .. } = source
        && let Some(cols) = meta::table_columns(ctx, &db, name)
    {
        return Ok(vec![Relation::table(&db, name, cols)]);
    }
    if !database_exists(ctx, &db).await? {
        return Err(format!("database not found: {db}"));
    }
    let found = meta::measurements(ctx, &db, std::slice::from_ref(source)).await?;
    Ok(found
        .into_iter()
        .map(|(m, cols)| Relation::table(&db, &m, cols))
        .collect())
}
