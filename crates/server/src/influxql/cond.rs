//! `WHERE` clauses: the time range is taken out of the top-level `AND`s (RFC 3339
//! strings, epoch integers, duration literals, `now()` arithmetic) and the rest becomes a
//! SQL condition with InfluxQL's tag semantics (a missing tag equals `''`).

use std::collections::BTreeMap;

use super::ast::{BinOp, Expr};
use super::sql::{ident, string_literal};
use super::time::{format_rfc3339, parse_rfc3339};

/// What a name refers to in a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tag,
    /// A field, with its InfluxDB type name (`float`, `integer`, `unsigned`, `string`,
    /// `boolean`).
    Field(&'static str),
    Time,
}

pub(crate) type Columns = BTreeMap<String, Kind>;

/// Inclusive bounds in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimeRange {
    pub(crate) lower: Option<i64>,
    pub(crate) upper: Option<i64>,
}

impl TimeRange {
    /// The SQL condition for this range (`None` when unbounded).
    pub(crate) fn to_sql(self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(l) = self.lower {
            parts.push(format!(
                "\"time\" >= {}",
                string_literal(&format_rfc3339(l))
            ));
        }
        if let Some(u) = self.upper {
            parts.push(format!(
                "\"time\" <= {}",
                string_literal(&format_rfc3339(u))
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" AND "))
    }

    fn lower_to(&mut self, v: i64) {
        self.lower = Some(self.lower.map_or(v, |l| l.max(v)));
    }

    fn upper_to(&mut self, v: i64) {
        self.upper = Some(self.upper.map_or(v, |u| u.min(v)));
    }
}

fn is_time(e: &Expr) -> bool {
    matches!(e.unparen(), Expr::Var { name, .. } if name.eq_ignore_ascii_case("time"))
}

fn mentions_time(e: &Expr) -> bool {
    match e.unparen() {
        Expr::Binary { lhs, rhs, .. } => mentions_time(lhs) || mentions_time(rhs),
        other => is_time(other),
    }
}

/// Split `cond` into its time range and the remaining condition.
pub(crate) fn split_time(
    cond: Option<&Expr>,
    now: i64,
) -> Result<(TimeRange, Option<Expr>), String> {
    let mut range = TimeRange::default();
    let Some(cond) = cond else {
        return Ok((range, None));
    };
    let mut rest = Vec::new();
    let mut conjuncts = Vec::new();
    flatten_and(cond, &mut conjuncts);
    for c in conjuncts {
        let Expr::Binary { op, lhs, rhs } = c.unparen() else {
            rest.push(c.clone());
            continue;
        };
        let (op, value) = if is_time(lhs) && op.is_comparison() {
            (*op, rhs)
        } else if is_time(rhs) && op.is_comparison() {
            let flipped = match op {
                BinOp::Lt => BinOp::Gt,
                BinOp::LtEq => BinOp::GtEq,
                BinOp::Gt => BinOp::Lt,
                BinOp::GtEq => BinOp::LtEq,
                other => *other,
            };
            (flipped, lhs)
        } else {
            if mentions_time(c) {
                return Err(
                    "time conditions under OR (or inside other expressions) are not \
                     supported by Bulkhead: join them to the rest with AND at the top level, \
                     e.g. `time > now() - 1h AND (host = 'a' OR v > 1)`"
                        .into(),
                );
            }
            rest.push(c.clone());
            continue;
        };
        let t = time_value(value, now)?;
        match op {
            BinOp::Gt => range.lower_to(t.saturating_add(1)),
            BinOp::GtEq => range.lower_to(t),
            BinOp::Lt => range.upper_to(t.saturating_sub(1)),
            BinOp::LtEq => range.upper_to(t),
            BinOp::Eq => {
                range.lower_to(t);
                range.upper_to(t);
            }
            _ => return Err("invalid time comparison operator (use =, <, <=, >, >=)".into()),
        }
    }
    let rest = rest
        .into_iter()
        .reduce(|a, b| Expr::binary(BinOp::And, a, b));
    Ok((range, rest))
}

fn flatten_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e.unparen() {
        Expr::Binary {
            op: BinOp::And,
            lhs,
            rhs,
        } => {
            flatten_and(lhs, out);
            flatten_and(rhs, out);
        }
        _ => out.push(e),
    }
}

/// A time expression in nanoseconds.
fn time_value(e: &Expr, now: i64) -> Result<i64, String> {
    match e.unparen() {
        Expr::Str(s) => parse_rfc3339(s).ok_or_else(|| format!("invalid time string: {s:?}")),
        Expr::Integer(i) => Ok(*i),
        Expr::Number(n) => Ok(*n as i64),
        Expr::Duration(d) => Ok(*d),
        Expr::Call { name, args } if name == "now" && args.is_empty() => Ok(now),
        Expr::Binary { op, lhs, rhs } if matches!(op, BinOp::Add | BinOp::Sub) => {
            let (l, r) = (time_value(lhs, now)?, time_value(rhs, now)?);
            Ok(if *op == BinOp::Add {
                l.saturating_add(r)
            } else {
                l.saturating_sub(r)
            })
        }
        other => Err(format!("invalid time expression: {other:?}")),
    }
}

/// A SQL literal for a non-column expression, or `None`.
pub(crate) fn literal(e: &Expr) -> Option<String> {
    Some(match e {
        Expr::Integer(i) => i.to_string(),
        Expr::Number(n) => format!("{n:?}"),
        Expr::Str(s) => string_literal(s),
        Expr::Bool(b) => b.to_string(),
        _ => return None,
    })
}

/// The SQL condition for an InfluxQL condition without time terms.
pub(crate) fn where_sql(e: &Expr, cols: &Columns) -> Result<String, String> {
    if let Some(list) = tag_in_list(e, cols) {
        return Ok(list);
    }
    match e.unparen() {
        Expr::Binary { op, lhs, rhs } if matches!(op, BinOp::And | BinOp::Or) => {
            let word = if *op == BinOp::And { "AND" } else { "OR" };
            Ok(format!(
                "({} {word} {})",
                where_sql(lhs, cols)?,
                where_sql(rhs, cols)?
            ))
        }
        Expr::Binary { op, lhs, rhs } if matches!(op, BinOp::EqRegex | BinOp::NotEqRegex) => {
            let Expr::Regex(re) = rhs.unparen() else {
                return Err("=~ and !~ need a regular expression on the right".into());
            };
            let col = string_side(lhs, cols)?;
            let sql_op = if *op == BinOp::EqRegex { "~" } else { "!~" };
            Ok(format!("{col} {sql_op} {}", string_literal(re)))
        }
        Expr::Binary { op, lhs, rhs } if op.is_comparison() => {
            let (var, value, op) = match (lhs.unparen(), rhs.unparen()) {
                (Expr::Var { .. }, v @ Expr::Str(_)) => (lhs.unparen(), v, *op),
                (v @ Expr::Str(_), Expr::Var { .. }) => (rhs.unparen(), v, *op),
                _ => {
                    let sql_op = compare_op(*op);
                    return Ok(format!(
                        "({} {sql_op} {})",
                        value_sql(lhs, cols)?,
                        value_sql(rhs, cols)?
                    ));
                }
            };
            let Expr::Var { name, .. } = var else {
                unreachable!()
            };
            let Expr::Str(s) = value else { unreachable!() };
            match cols.get(name.as_str()) {
                Some(Kind::Tag) | None if matches!(op, BinOp::Eq | BinOp::NotEq) => Ok(
                    tag_equality(name, s, op == BinOp::Eq, cols.contains_key(name.as_str())),
                ),
                _ => Ok(format!(
                    "({} {} {})",
                    string_side(var, cols)?,
                    compare_op(op),
                    string_literal(s)
                )),
            }
        }
        Expr::Bool(b) => Ok(b.to_string()),
        other => Err(format!("invalid condition: {other:?}")),
    }
}

/// `tag = 'a' OR tag = 'b' OR ...` (one tag, two or more non-empty values) as
/// `tag IN ('a', 'b', ...)`: the same rows (a missing tag equals none of the values
/// either way), and DataFusion plans and evaluates one IN list faster than a chain of
/// ORs (TSBS's 8-host queries: ~3 % of their time). `None` for anything else.
fn tag_in_list(e: &Expr, cols: &Columns) -> Option<String> {
    if !matches!(e.unparen(), Expr::Binary { op: BinOp::Or, .. }) {
        return None;
    }
    // The OR tree's leaves, left to right, without recursion (a chain may be long);
    // the first leaf that is not `tag = 'value'` of the same tag ends it.
    let (mut tag, mut values, mut stack) = (None, Vec::new(), vec![e]);
    while let Some(e) = stack.pop() {
        let (lhs, rhs) = match e.unparen() {
            Expr::Binary {
                op: BinOp::Or,
                lhs,
                rhs,
            } => {
                stack.push(rhs);
                stack.push(lhs);
                continue;
            }
            Expr::Binary {
                op: BinOp::Eq,
                lhs,
                rhs,
            } => (lhs.unparen(), rhs.unparen()),
            _ => return None,
        };
        let ((Expr::Var { name, .. }, Expr::Str(v)) | (Expr::Str(v), Expr::Var { name, .. })) =
            (lhs, rhs)
        else {
            return None;
        };
        if v.is_empty() || cols.get(name.as_str()) != Some(&Kind::Tag) {
            return None;
        }
        match tag {
            None => tag = Some(name),
            Some(first) if first == name => {}
            Some(_) => return None,
        }
        values.push(string_literal(v));
    }
    Some(format!("({} IN ({}))", ident(tag?), values.join(", ")))
}

/// `tag = 'v'` / `tag != 'v'` where a missing tag (or a tag the measurement does not
/// have) is `''`.
fn tag_equality(name: &str, value: &str, eq: bool, exists: bool) -> String {
    if !exists {
        return ((value.is_empty()) == eq).to_string();
    }
    let col = ident(name);
    match (value.is_empty(), eq) {
        (true, true) => format!("({col} IS NULL OR {col} = '')"),
        (true, false) => format!("({col} IS NOT NULL AND {col} <> '')"),
        (false, true) => format!("({col} = {})", string_literal(value)),
        (false, false) => format!("({col} IS NULL OR {col} <> {})", string_literal(value)),
    }
}

/// A column as a string (a missing tag is `''`), for regexes and string comparisons.
fn string_side(e: &Expr, cols: &Columns) -> Result<String, String> {
    match e.unparen() {
        Expr::Var { name, .. } => Ok(match cols.get(name.as_str()) {
            Some(Kind::Tag) => format!("coalesce(CAST({} AS VARCHAR), '')", ident(name)),
            Some(_) => ident(name),
            None => "''".into(),
        }),
        other => value_sql(other, cols),
    }
}

fn compare_op(op: BinOp) -> &'static str {
    match op {
        BinOp::Eq => "=",
        BinOp::NotEq => "<>",
        BinOp::Lt => "<",
        BinOp::LtEq => "<=",
        BinOp::Gt => ">",
        BinOp::GtEq => ">=",
        _ => "=",
    }
}

/// A value expression in a condition: columns, literals, arithmetic.
fn value_sql(e: &Expr, cols: &Columns) -> Result<String, String> {
    arith_sql(e, &mut |e| match e {
        Expr::Var { name, .. } => Some(Ok(match cols.get(name.as_str()) {
            Some(_) => ident(name),
            None => "NULL".into(),
        })),
        _ => None,
    })
}

/// Literals, parentheses and arithmetic; `leaf` translates columns and calls.
pub(crate) fn arith_sql(
    e: &Expr,
    leaf: &mut dyn FnMut(&Expr) -> Option<Result<String, String>>,
) -> Result<String, String> {
    if let Some(done) = leaf(e) {
        return done;
    }
    if let Some(lit) = literal(e) {
        return Ok(lit);
    }
    match e {
        Expr::Paren(inner) => Ok(format!("({})", arith_sql(inner, leaf)?)),
        Expr::Binary { op, lhs, rhs } => {
            let (l, r) = (arith_sql(lhs, leaf)?, arith_sql(rhs, leaf)?);
            Ok(match op {
                BinOp::Add => format!("({l} + {r})"),
                BinOp::Sub => format!("({l} - {r})"),
                BinOp::Mul => format!("({l} * {r})"),
                // InfluxQL divides as floats, also integers.
                BinOp::Div => format!("(CAST({l} AS DOUBLE) / {r})"),
                BinOp::Mod => format!("({l} % {r})"),
                BinOp::BitAnd => format!("({l} & {r})"),
                BinOp::BitOr => format!("({l} | {r})"),
                BinOp::BitXor => format!("({l} # {r})"),
                other => return Err(format!("operator {other:?} is not allowed here")),
            })
        }
        Expr::Duration(_) => Err("a duration is only allowed in time conditions".into()),
        Expr::Regex(_) => Err("a regular expression is only allowed after =~ or !~".into()),
        Expr::Wildcard => Err("* is not allowed here".into()),
        other => Err(format!("unsupported expression: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influxql::parser::parse;

    fn cond(q: &str) -> Expr {
        let stmts = parse(&format!("SELECT v FROM m WHERE {q}")).unwrap();
        match stmts.into_iter().next().unwrap() {
            super::super::ast::Statement::Select(s) => s.cond.unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn time_ranges() {
        let now = 10_000_000_000_000;
        let (r, rest) = split_time(
            Some(&cond(
                "time >= '1970-01-01T00:00:01Z' AND host = 'a' AND time < now() - 1h",
            )),
            now,
        )
        .unwrap();
        assert_eq!(r.lower, Some(1_000_000_000));
        assert_eq!(r.upper, Some(now - 3_600_000_000_000 - 1));
        assert!(rest.is_some());
        let (r, rest) = split_time(Some(&cond("1000s > time AND time > 5")), now).unwrap();
        assert_eq!((r.lower, r.upper), (Some(6), Some(999_999_999_999)));
        assert!(rest.is_none());
        assert!(split_time(Some(&cond("time > 1 OR host = 'a'")), now).is_err());
        assert!(split_time(Some(&cond("time > 'yesterday'")), now).is_err());
    }

    #[test]
    fn tag_semantics() {
        let cols: Columns = [
            ("host".to_string(), Kind::Tag),
            ("v".to_string(), Kind::Field("float")),
        ]
        .into_iter()
        .collect();
        let sql = |q: &str| where_sql(&cond(q), &cols).unwrap();
        assert_eq!(sql("host = 'a'"), "(\"host\" = 'a')");
        assert_eq!(sql("host != 'a'"), "(\"host\" IS NULL OR \"host\" <> 'a')");
        assert_eq!(sql("host = ''"), "(\"host\" IS NULL OR \"host\" = '')");
        assert_eq!(sql("nope = 'x'"), "false");
        assert_eq!(sql("nope != 'x'"), "true");
        assert_eq!(
            sql("host =~ /^a/ OR v > 2"),
            "(coalesce(CAST(\"host\" AS VARCHAR), '') ~ '^a' OR (\"v\" > 2))"
        );
        assert_eq!(sql("v / 2 >= 1.5"), "((CAST(\"v\" AS DOUBLE) / 2) >= 1.5)");
    }

    #[test]
    fn or_chains_of_one_tag_become_an_in_list() {
        let cols: Columns = [
            ("host".to_string(), Kind::Tag),
            ("dc".to_string(), Kind::Tag),
            ("v".to_string(), Kind::Field("float")),
        ]
        .into_iter()
        .collect();
        let sql = |q: &str| where_sql(&cond(q), &cols).unwrap();
        assert_eq!(
            sql("host = 'a' OR (host = 'b' OR 'c' = host)"),
            "(\"host\" IN ('a', 'b', 'c'))"
        );
        assert_eq!(
            sql("v > 1 AND (host = 'a' OR host = 'it\\'s')"),
            "((\"v\" > 1) AND (\"host\" IN ('a', 'it''s')))"
        );
        // Not folded: two tags, an empty value (a missing tag), !=, a field, one term.
        for (q, want) in [
            (
                "host = 'a' OR dc = 'b'",
                "((\"host\" = 'a') OR (\"dc\" = 'b'))",
            ),
            (
                "host = 'a' OR host = ''",
                "((\"host\" = 'a') OR (\"host\" IS NULL OR \"host\" = ''))",
            ),
            (
                "host = 'a' OR host != 'b'",
                "((\"host\" = 'a') OR (\"host\" IS NULL OR \"host\" <> 'b'))",
            ),
            ("v = 'a' OR v = 'b'", "((\"v\" = 'a') OR (\"v\" = 'b'))"),
            ("host = 'a'", "(\"host\" = 'a')"),
        ] {
            assert_eq!(sql(q), want, "{q}");
        }
    }
}
