//! Turning pushed-down filters into what the engine can prune with: a time range, and
//! tag values that a row must have.
//!
//! Every filter stays `Inexact` for DataFusion (it still filters rows); pruning only
//! decides which segments, SSTs and memtable rows are read at all, so it must never
//! exclude a row that could match. Anything not understood here is simply ignored.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

/// The column that holds time.
pub(crate) const TIME: &str = "time";

/// An inclusive range of nanosecond timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeBounds {
    pub(crate) min: i64,
    pub(crate) max: i64,
}

impl Default for TimeBounds {
    fn default() -> Self {
        Self {
            min: i64::MIN,
            max: i64::MAX,
        }
    }
}

impl TimeBounds {
    pub(crate) fn is_unbounded(&self) -> bool {
        *self == Self::default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.min > self.max
    }
}

/// What the filters of one scan say about time and tags.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Pruning {
    pub(crate) time: TimeBounds,
    /// Tag column -> the values a matching row may have (equality or IN list).
    pub(crate) tags: BTreeMap<String, BTreeSet<String>>,
}

impl Pruning {
    /// Analyse the conjunction of `filters`; `is_tag` says which columns are tags.
    pub(crate) fn from_filters(filters: &[Expr], is_tag: impl Fn(&str) -> bool) -> Self {
        let mut p = Pruning::default();
        for f in filters {
            for conjunct in split_conjunction(f) {
                p.apply(conjunct, &is_tag);
            }
        }
        p
    }

    fn apply(&mut self, e: &Expr, is_tag: &impl Fn(&str) -> bool) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if let (Some(col), Some(v)) = (column_name(left), literal(right)) {
                    self.compare(&col, *op, &v, is_tag);
                } else if let (Some(v), Some(col)) = (literal(left), column_name(right))
                    && let Some(op) = op.swap()
                {
                    self.compare(&col, op, &v, is_tag);
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                if let (Some(col), Some(lo), Some(hi)) =
                    (column_name(expr), literal(low), literal(high))
                    && col == TIME
                    && let (Some(lo), Some(hi)) = (as_nanos(&lo), as_nanos(&hi))
                {
                    self.time.min = self.time.min.max(lo);
                    self.time.max = self.time.max.min(hi);
                }
            }
            Expr::InList(list) if !list.negated => {
                let Some(col) = column_name(&list.expr) else {
                    return;
                };
                if !is_tag(&col) {
                    return;
                }
                let values: Option<BTreeSet<String>> = list
                    .list
                    .iter()
                    .map(|v| literal(v).and_then(|v| as_string(&v)))
                    .collect();
                if let Some(values) = values {
                    self.restrict_tag(col, values);
                }
            }
            _ => {}
        }
    }

    fn compare(
        &mut self,
        col: &str,
        op: Operator,
        v: &ScalarValue,
        is_tag: &impl Fn(&str) -> bool,
    ) {
        if col == TIME {
            let Some(t) = as_nanos(v) else { return };
            match op {
                Operator::Eq => {
                    self.time.min = self.time.min.max(t);
                    self.time.max = self.time.max.min(t);
                }
                Operator::Gt => self.time.min = self.time.min.max(t.saturating_add(1)),
                Operator::GtEq => self.time.min = self.time.min.max(t),
                Operator::Lt => self.time.max = self.time.max.min(t.saturating_sub(1)),
                Operator::LtEq => self.time.max = self.time.max.min(t),
                _ => {}
            }
        } else if op == Operator::Eq
            && is_tag(col)
            && let Some(s) = as_string(v)
        {
            self.restrict_tag(col.to_string(), BTreeSet::from([s]));
        }
    }

    fn restrict_tag(&mut self, col: String, values: BTreeSet<String>) {
        let entry = self.tags.entry(col).or_insert_with(|| values.clone());
        *entry = entry.intersection(&values).cloned().collect();
    }
}

fn split_conjunction(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            let mut v = split_conjunction(left);
            v.extend(split_conjunction(right));
            v
        }
        other => vec![other],
    }
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
        // Tags may be dictionary-encoded; DataFusion casts them for comparisons.
        Expr::Cast(c) => column_name(&c.expr),
        Expr::TryCast(c) => column_name(&c.expr),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v.clone()),
        Expr::Cast(c) => literal(&c.expr).and_then(|v| v.cast_to(c.field.data_type()).ok()),
        _ => None,
    }
}

fn as_nanos(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampMicrosecond(Some(t), _) => t.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(t), _) => t.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000_000_000),
        _ => None,
    }
}

/// The text of a string literal (any string type, or a dictionary of one).
pub(crate) fn as_string(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        ScalarValue::Dictionary(_, inner) => as_string(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(ns: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(ns),
            Some("UTC".into()),
        ))
    }

    fn prune(filters: &[Expr]) -> Pruning {
        Pruning::from_filters(filters, |c| c == "host" || c == "region")
    }

    #[test]
    fn time_bounds_from_comparisons_and_between() {
        let p = prune(&[col("time").gt_eq(ts(100)).and(col("time").lt(ts(200)))]);
        assert_eq!(p.time, TimeBounds { min: 100, max: 199 });
        let p = prune(&[ts(150).lt(col("time")), col("time").between(ts(0), ts(180))]);
        assert_eq!(p.time, TimeBounds { min: 151, max: 180 });
        let p = prune(&[col("time").eq(ts(7))]);
        assert_eq!(p.time, TimeBounds { min: 7, max: 7 });
        assert!(
            prune(&[col("time").gt(ts(10)).and(col("time").lt(ts(5)))])
                .time
                .is_empty()
        );
    }

    #[test]
    fn other_units_are_converted() {
        let ms = lit(ScalarValue::TimestampMillisecond(Some(5), None));
        assert_eq!(prune(&[col("time").gt_eq(ms)]).time.min, 5_000_000);
    }

    #[test]
    fn tag_equality_and_in_lists_intersect() {
        let p = prune(&[
            col("host").in_list(vec![lit("a"), lit("b"), lit("c")], false),
            col("host").eq(lit("b")).or(col("host").eq(lit("z"))),
            col("region").eq(lit("eu")),
        ]);
        assert_eq!(
            p.tags["host"],
            BTreeSet::from(["a".to_string(), "b".into(), "c".into()])
        );
        assert_eq!(p.tags["region"], BTreeSet::from(["eu".to_string()]));
        let p = prune(&[col("host").eq(lit("a")), col("host").eq(lit("b"))]);
        assert!(
            p.tags["host"].is_empty(),
            "contradiction: nothing can match"
        );
    }

    #[test]
    fn what_is_not_understood_prunes_nothing() {
        let p = prune(&[
            col("usage").gt(lit(5)),
            col("host").not_eq(lit("a")),
            col("host").in_list(vec![lit("a")], true),
            col("time").gt(col("other")),
        ]);
        assert_eq!(p, Pruning::default());
        assert!(p.time.is_unbounded());
    }
}
