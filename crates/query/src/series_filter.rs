//! Translating pushed-down filters into a [`TagPredicate`] the engine resolves against
//! each SST's series index, so a scan reads only the rows of the series that can match.
//!
//! Tag comparisons (`=`, `!=`, `IN`, `NOT IN`, `IS [NOT] NULL`, `~`, `~*`, `!~`, `!~*`,
//! `LIKE`, `ILIKE`, `NOT LIKE`) combined with `AND`, `OR` and `NOT` are translated;
//! anything else (a field, a function, a cast to a non-string type) becomes
//! [`TagPredicate::Unknown`], which never excludes a series. The engine evaluates with
//! SQL's three-valued logic, so the result is exact for the tag part: the series read
//! are exactly those for which the filters may be TRUE. Filters stay `Inexact` for
//! DataFusion, which still applies them to every row.

use std::collections::BTreeSet;
use std::sync::Arc;

use bulkhead_engine::TagPredicate;
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::expr::{InList, Like};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

use crate::pruning::as_string;

/// Deeper expressions are not translated (they become `Unknown`): a bound on the
/// recursion, so a pathological filter cannot overflow the stack here.
const MAX_DEPTH: usize = 64;

/// The tag predicate of the conjunction of `filters`, or `None` if it restricts
/// nothing. `is_tag` says which columns are tags.
pub(crate) fn tag_predicate(
    filters: &[Expr],
    is_tag: impl Fn(&str) -> bool,
) -> Option<TagPredicate> {
    let parts: Vec<TagPredicate> = filters.iter().map(|f| convert(f, &is_tag, 0)).collect();
    let p = TagPredicate::And(parts);
    (!p.is_unknown()).then_some(p)
}

fn convert(e: &Expr, is_tag: &impl Fn(&str) -> bool, depth: usize) -> TagPredicate {
    if depth > MAX_DEPTH {
        return TagPredicate::Unknown;
    }
    let sub = |e: &Expr| convert(e, is_tag, depth + 1);
    let tag = |e: &Expr| tag_column(e).filter(|c| is_tag(c));
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => TagPredicate::And(vec![sub(left), sub(right)]),
            Operator::Or => TagPredicate::Or(vec![sub(left), sub(right)]),
            _ => {
                let (col, value, op) = match (tag(left), string_literal(right)) {
                    (Some(c), Some(v)) => (c, v, *op),
                    _ => match (string_literal(left), tag(right), op.swap()) {
                        (Some(v), Some(c), Some(op)) => (c, v, op),
                        _ => return TagPredicate::Unknown,
                    },
                };
                compare(col, op, value)
            }
        },
        Expr::Not(inner) => TagPredicate::Not(Box::new(sub(inner))),
        Expr::IsNull(inner) => match tag(inner) {
            Some(c) => TagPredicate::IsNull(c),
            None => TagPredicate::Unknown,
        },
        Expr::IsNotNull(inner) => match tag(inner) {
            Some(c) => TagPredicate::Not(Box::new(TagPredicate::IsNull(c))),
            None => TagPredicate::Unknown,
        },
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => {
            let Some(c) = tag(expr) else {
                return TagPredicate::Unknown;
            };
            let values: Option<BTreeSet<String>> = list.iter().map(string_literal).collect();
            match values {
                Some(vs) if *negated => TagPredicate::Not(Box::new(TagPredicate::In(c, vs))),
                Some(vs) => TagPredicate::In(c, vs),
                None => TagPredicate::Unknown,
            }
        }
        Expr::Like(Like {
            negated,
            expr,
            pattern,
            escape_char,
            case_insensitive,
        }) => {
            let (Some(c), Some(p)) = (tag(expr), string_literal(pattern)) else {
                return TagPredicate::Unknown;
            };
            let re = like_to_regex(&p, *escape_char, *case_insensitive);
            let what = format!(
                "{}{} {p:?}",
                if *negated { "NOT " } else { "" },
                if *case_insensitive { "ILIKE" } else { "LIKE" }
            );
            matches(c, what, &re, *negated)
        }
        _ => TagPredicate::Unknown,
    }
}

fn compare(col: String, op: Operator, value: String) -> TagPredicate {
    let regex = |ci: bool, negated: bool, sym: &str| {
        let re = if ci {
            format!("(?i){value}")
        } else {
            value.clone()
        };
        matches(col.clone(), format!("{sym} {value:?}"), &re, negated)
    };
    match op {
        Operator::Eq => TagPredicate::Eq(col, value),
        Operator::NotEq => TagPredicate::Not(Box::new(TagPredicate::Eq(col, value))),
        Operator::RegexMatch => regex(false, false, "~"),
        Operator::RegexIMatch => regex(true, false, "~*"),
        Operator::RegexNotMatch => regex(false, true, "!~"),
        Operator::RegexNotIMatch => regex(true, true, "!~*"),
        _ => TagPredicate::Unknown,
    }
}

/// `tag` matches (or, `negated`, does not match) the regex `re`; an invalid regex
/// translates to `Unknown` (DataFusion reports the error when it filters).
fn matches(col: String, what: String, re: &str, negated: bool) -> TagPredicate {
    match regex::Regex::new(re) {
        Ok(re) => {
            let p = TagPredicate::Matches(col, what, Arc::new(move |s: &str| re.is_match(s)));
            if negated {
                TagPredicate::Not(Box::new(p))
            } else {
                p
            }
        }
        Err(_) => TagPredicate::Unknown,
    }
}

/// The anchored regex equivalent to a SQL `LIKE` pattern (`%` any run, `_` any one
/// character, `escape` makes the next character literal; `\` when none is given).
fn like_to_regex(pattern: &str, escape: Option<char>, case_insensitive: bool) -> String {
    let escape = escape.unwrap_or('\\');
    let mut re = String::from(if case_insensitive { "(?is)^" } else { "(?s)^" });
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c == escape => {
                if let Some(next) = chars.next() {
                    re.push_str(&regex::escape(&next.to_string()));
                }
            }
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    re
}

/// The column `e` names, looking through casts to string types (tags are
/// dictionary-encoded strings; DataFusion casts them for comparisons).
fn tag_column(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(c) if is_string(c.field.data_type()) => tag_column(&c.expr),
        Expr::TryCast(c) if is_string(c.field.data_type()) => tag_column(&c.expr),
        _ => None,
    }
}

fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_string(v),
        _ => false,
    }
}

/// A non-null string literal (possibly cast to a string type or dictionary-wrapped).
fn string_literal(e: &Expr) -> Option<String> {
    let v = match e {
        Expr::Literal(v, _) => v.clone(),
        Expr::Cast(c) if is_string(c.field.data_type()) => {
            return string_literal(&c.expr);
        }
        _ => return None,
    };
    as_string(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn pred(filters: &[Expr]) -> Option<String> {
        tag_predicate(filters, |c| c == "host" || c == "dc").map(|p| p.to_string())
    }

    fn host<'a>(h: &'a str) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |t| (t == "host").then_some(h)
    }

    #[test]
    fn operators_translate() {
        assert_eq!(
            pred(&[col("host").eq(lit("a"))]).unwrap(),
            r#"(host = "a")"#
        );
        assert_eq!(
            pred(&[lit("a").not_eq(col("host"))]).unwrap(),
            r#"(NOT host = "a")"#
        );
        assert_eq!(
            pred(&[col("host").in_list(vec![lit("a"), lit("b")], true)]).unwrap(),
            r#"(NOT host IN {"a", "b"})"#
        );
        assert_eq!(
            pred(&[col("host").is_null().or(col("dc").is_not_null())]).unwrap(),
            "((host IS NULL OR NOT dc IS NULL))"
        );
        assert_eq!(
            pred(&[col("usage").gt(lit(5))]),
            None,
            "fields restrict nothing"
        );
        assert_eq!(
            pred(&[col("host").eq(lit("a")).or(col("usage").gt(lit(5)))]),
            None
        );
        assert_eq!(
            pred(&[col("host").eq(lit("a")).and(col("usage").gt(lit(5)))]).unwrap(),
            r#"((host = "a" AND ?))"#
        );
    }

    #[test]
    fn regex_and_like_match_like_sql() {
        let p = tag_predicate(&[col("host").like(lit("h_st%"))], |c| c == "host").unwrap();
        assert!(p.may_match(host("host_1")));
        assert!(!p.may_match(host("ahost")));
        let p = tag_predicate(&[col("host").ilike(lit("HOST\\_%"))], |c| c == "host").unwrap();
        assert!(p.may_match(host("host_9")));
        assert!(!p.may_match(host("hostx9")));
        let re = Expr::BinaryExpr(BinaryExpr::new(
            Box::new(col("host")),
            Operator::RegexMatch,
            Box::new(lit("^h[0-3]$")),
        ));
        let p = tag_predicate(&[re], |c| c == "host").unwrap();
        assert!(p.may_match(host("h2")));
        assert!(!p.may_match(host("h5")));
        let bad = Expr::BinaryExpr(BinaryExpr::new(
            Box::new(col("host")),
            Operator::RegexMatch,
            Box::new(lit("(")),
        ));
        assert!(tag_predicate(&[bad], |c| c == "host").is_none());
    }

    #[test]
    fn deep_expressions_stop_translating() {
        let mut e = col("host").eq(lit("a"));
        for _ in 0..200 {
            e = Expr::Not(Box::new(Expr::Not(Box::new(e))));
        }
        // Past the depth bound the leaf is Unknown: nothing restricted, no overflow.
        assert!(tag_predicate(&[e], |c| c == "host").is_none());
    }
}
