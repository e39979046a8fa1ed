//! `DELETE` and `DROP SERIES`: InfluxQL's deletes, run as one SQL `DELETE` per
//! measurement, i.e. the engine's delete by tag predicate and time range (durable and
//! invisible to every query once answered; `docs/storage.md`, "Deletes").
//!
//! The `WHERE` clause takes tags and time: `tag = 'v'`, `tag != 'v'`, `AND`, `OR`,
//! parentheses, and time bounds joined with `AND` at the top. As in InfluxDB, a tag a
//! measurement lacks reads as `''`, fields are refused, and `DROP SERIES` refuses time.

use super::ast::{BinOp, Expr, Source};
use super::cond::{self, Columns, Kind};
use super::sql::{self, ident, string_literal};
use super::{Ctx, StatementResult, database_exists, meta};

/// Which statement: they differ in whether time may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeleteKind {
    Delete,
    DropSeries,
}

/// Run a `DELETE` or `DROP SERIES`: empty result on success, as InfluxDB answers.
pub(crate) async fn run(
    ctx: &Ctx,
    kind: DeleteKind,
    from: &[Source],
    cond: Option<&Expr>,
) -> StatementResult {
    let explicit = from.iter().find_map(|s| match s {
        Source::Measurement { db, .. } | Source::Regex { db, .. } => db.as_deref(),
        Source::Subquery(_) => None,
    });
    let db = ctx.database(explicit)?;
    if !database_exists(ctx, &db).await? {
        return Err(format!("database not found: {db}"));
    }
    let (range, rest) = cond::split_time(cond, ctx.now)?;
    if kind == DeleteKind::DropSeries && (range.lower.is_some() || range.upper.is_some()) {
        return Err("DROP SERIES doesn't support time in WHERE clause".into());
    }
    let tables = meta::measurements(ctx, &db, from).await?;
    for (table, cols) in &tables {
        let mut conditions: Vec<String> = range.to_sql().into_iter().collect();
        match rest.as_ref().map(|e| predicate(e, cols)).transpose()? {
            Some(Pred::Const(false)) => continue, // no row of this measurement matches
            Some(Pred::Const(true)) | None => {}
            Some(Pred::Sql(s)) => conditions.push(s),
        }
        let mut statement = format!("DELETE FROM {}", sql::table(&db, table));
        if !conditions.is_empty() {
            statement.push_str(" WHERE ");
            statement.push_str(&conditions.join(" AND "));
        }
        sql::collect(ctx, &db, &statement).await?;
    }
    Ok(Vec::new())
}

/// A tag predicate, folded where a tag is missing from the measurement.
#[derive(Debug, Clone, PartialEq)]
enum Pred {
    Const(bool),
    Sql(String),
}

/// The SQL `DELETE` condition for `e` over a measurement with columns `cols`.
fn predicate(e: &Expr, cols: &Columns) -> Result<Pred, String> {
    match e.unparen() {
        Expr::Binary { op, lhs, rhs } if matches!(op, BinOp::And | BinOp::Or) => {
            let (l, r) = (predicate(lhs, cols)?, predicate(rhs, cols)?);
            let and = *op == BinOp::And;
            Ok(match (l, r) {
                (Pred::Const(a), Pred::Const(b)) => Pred::Const(if and { a && b } else { a || b }),
                (Pred::Const(c), other) | (other, Pred::Const(c)) => {
                    // AND true / OR false: the other side; AND false / OR true: decided.
                    if c == and { other } else { Pred::Const(c) }
                }
                (Pred::Sql(a), Pred::Sql(b)) => {
                    Pred::Sql(format!("({a} {} {b})", if and { "AND" } else { "OR" }))
                }
            })
        }
        Expr::Binary {
            op: BinOp::EqRegex | BinOp::NotEqRegex,
            ..
        } => Err(
            "regular expressions are not supported in the WHERE clause of a delete by \
             Bulkhead: name the tag values with = and OR"
                .into(),
        ),
        Expr::Binary { op, lhs, rhs } if matches!(op, BinOp::Eq | BinOp::NotEq) => {
            let (name, value) = match (lhs.unparen(), rhs.unparen()) {
                (Expr::Var { name, .. }, Expr::Str(v)) | (Expr::Str(v), Expr::Var { name, .. }) => {
                    (name, v)
                }
                _ => {
                    return Err(
                        "a delete's WHERE clause compares tags with strings: tag = 'value'".into(),
                    );
                }
            };
            let eq = *op == BinOp::Eq;
            match cols.get(name.as_str()) {
                Some(Kind::Tag) => Ok(Pred::Sql(tag_sql(name, value, eq))),
                Some(Kind::Field(_)) => {
                    Err("fields not supported in WHERE clause during deletion".into())
                }
                Some(Kind::Time) => Err("time can only be compared with <, <=, =, >=, >".into()),
                // A tag this measurement does not have reads as ''.
                None => Ok(Pred::Const(value.is_empty() == eq)),
            }
        }
        Expr::Bool(b) => Ok(Pred::Const(*b)),
        Expr::Binary { .. } => Err(
            "a delete's WHERE clause takes tag = 'value', tag != 'value', AND, OR and time \
             bounds"
                .into(),
        ),
        other => Err(format!("invalid condition in a delete: {other:?}")),
    }
}

/// `tag = 'v'` / `tag != 'v'` where a missing tag is `''` (InfluxDB's reading).
fn tag_sql(name: &str, value: &str, eq: bool) -> String {
    let col = ident(name);
    match (value.is_empty(), eq) {
        (true, true) => format!("({col} IS NULL OR {col} = '')"),
        (true, false) => format!("({col} IS NOT NULL AND {col} <> '')"),
        (false, true) => format!("{col} = {}", string_literal(value)),
        (false, false) => format!("({col} IS NULL OR {col} <> {})", string_literal(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Columns {
        let mut c = Columns::new();
        c.insert("host".into(), Kind::Tag);
        c.insert("v".into(), Kind::Field("float"));
        c.insert("time".into(), Kind::Time);
        c
    }

    fn eq(name: &str, v: &str) -> Expr {
        Expr::binary(BinOp::Eq, Expr::var(name), Expr::Str(v.into()))
    }

    fn ne(name: &str, v: &str) -> Expr {
        Expr::binary(BinOp::NotEq, Expr::var(name), Expr::Str(v.into()))
    }

    #[test]
    fn tags_become_sql_and_missing_tags_fold() {
        let c = cols();
        assert_eq!(
            predicate(&eq("host", "a"), &c),
            Ok(Pred::Sql("\"host\" = 'a'".into()))
        );
        assert_eq!(predicate(&eq("dc", "x"), &c), Ok(Pred::Const(false)));
        assert_eq!(predicate(&eq("dc", ""), &c), Ok(Pred::Const(true)));
        assert_eq!(predicate(&ne("dc", "x"), &c), Ok(Pred::Const(true)));
        // host = 'a' AND dc = 'x': nothing; host = 'a' OR dc = 'x': host = 'a'.
        let and = Expr::binary(BinOp::And, eq("host", "a"), eq("dc", "x"));
        assert_eq!(predicate(&and, &c), Ok(Pred::Const(false)));
        let or = Expr::binary(BinOp::Or, eq("host", "a"), eq("dc", "x"));
        assert_eq!(predicate(&or, &c), Ok(Pred::Sql("\"host\" = 'a'".into())));
        let both = Expr::binary(BinOp::Or, eq("host", "a"), ne("host", ""));
        assert_eq!(
            predicate(&both, &c),
            Ok(Pred::Sql(
                "(\"host\" = 'a' OR (\"host\" IS NOT NULL AND \"host\" <> ''))".into()
            ))
        );
    }

    #[test]
    fn fields_regexes_and_other_shapes_are_refused() {
        let c = cols();
        assert!(
            predicate(&eq("v", "1"), &c)
                .unwrap_err()
                .contains("fields not supported")
        );
        let re = Expr::binary(BinOp::EqRegex, Expr::var("host"), Expr::Regex("a.*".into()));
        assert!(
            predicate(&re, &c)
                .unwrap_err()
                .contains("regular expressions")
        );
        let gt = Expr::binary(BinOp::Gt, Expr::var("host"), Expr::Str("a".into()));
        assert!(predicate(&gt, &c).is_err());
    }
}
