//! Binary operators: arithmetic and comparisons (with `bool`) between scalars and
//! vectors, vector matching (`on`/`ignoring`, `group_left`/`group_right`) and the set
//! operators `and`/`or`/`unless`, per step as Prometheus does.

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::Evaluator;
use crate::error::{Error, Result};
use crate::types::{Labels, NAME, StepSeries, Value};

pub(super) fn eval(ev: &Evaluator<'_>, b: &BinaryExpr) -> Result<Value> {
    let op = b.op.id();
    let modifier = b.modifier.as_ref();
    let return_bool = modifier.is_some_and(|m| m.return_bool);
    if let Some(m) = modifier
        && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
    {
        return Err(Error::BadData("fill modifiers are not supported".into()));
    }
    let lhs = ev.eval(&b.lhs)?;
    let rhs = ev.eval(&b.rhs)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(
            l.iter()
                .zip(&r)
                .map(|(&a, &b)| {
                    let (v, keep) = elem(op, a, b);
                    if is_comparison(op) {
                        if keep { 1.0 } else { 0.0 }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Value::Vector(v), Value::Scalar(s)) => {
            Ok(Value::Vector(vector_scalar(op, v, &s, false, return_bool)))
        }
        (Value::Scalar(s), Value::Vector(v)) => {
            Ok(Value::Vector(vector_scalar(op, v, &s, true, return_bool)))
        }
        (Value::Vector(l), Value::Vector(r)) => {
            let (card, matching) = match modifier {
                Some(m) => (m.card.clone(), m.matching.clone()),
                None => (VectorMatchCardinality::OneToOne, None),
            };
            let sig = |labels: &Labels| -> Labels {
                match &matching {
                    Some(LabelModifier::Include(on)) => labels.keep(&on.labels),
                    Some(LabelModifier::Exclude(ign)) => {
                        let mut names = ign.labels.clone();
                        names.push(NAME.to_string());
                        labels.drop(&names)
                    }
                    None => labels.without_name(),
                }
            };
            let n = ev.steps();
            ev.check((l.len() + r.len()).saturating_mul(n))?;
            match op {
                T_LAND | T_LOR | T_LUNLESS => Ok(Value::Vector(set_op(op, l, r, &sig, n))),
                _ => Ok(Value::Vector(vector_vector(
                    op,
                    l,
                    r,
                    &card,
                    &matching,
                    return_bool,
                    &sig,
                    n,
                )?)),
            }
        }
        (l, r) => Err(Error::BadData(format!(
            "binary operator {} between a {} and a {}",
            b.op,
            l.type_name(),
            r.type_name()
        ))),
    }
}

/// Arithmetic drops the metric name (in Prometheus 2, `atan2` does not).
fn drops_name(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW)
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// `(value, keep)`: arithmetic always keeps; a comparison keeps the left value if true.
fn elem(op: TokenId, l: f64, r: f64) -> (f64, bool) {
    match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

fn vector_scalar(
    op: TokenId,
    v: Vec<StepSeries>,
    s: &[f64],
    scalar_left: bool,
    return_bool: bool,
) -> Vec<StepSeries> {
    let drop_name = drops_name(op) || return_bool;
    let out = v.into_iter().map(|series| StepSeries {
        labels: if drop_name {
            series.labels.without_name()
        } else {
            series.labels
        },
        values: series
            .values
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let x = (*x)?;
                let (l, r) = if scalar_left { (s[i], x) } else { (x, s[i]) };
                let (mut value, keep) = elem(op, l, r);
                if is_comparison(op) && scalar_left {
                    value = x;
                }
                if return_bool {
                    Some(if keep { 1.0 } else { 0.0 })
                } else {
                    keep.then_some(value)
                }
            })
            .collect(),
    });
    super::non_empty(out.collect())
}

fn set_op(
    op: TokenId,
    l: Vec<StepSeries>,
    r: Vec<StepSeries>,
    sig: &dyn Fn(&Labels) -> Labels,
    n: usize,
) -> Vec<StepSeries> {
    let lsig: Vec<Labels> = l.iter().map(|s| sig(&s.labels)).collect();
    let rsig: Vec<Labels> = r.iter().map(|s| sig(&s.labels)).collect();
    // For each step, the signatures present on the other side.
    let present = |series: &[StepSeries], sigs: &[Labels], i: usize| -> HashMap<Labels, ()> {
        series
            .iter()
            .zip(sigs)
            .filter(|(s, _)| s.values[i].is_some())
            .map(|(_, g)| (g.clone(), ()))
            .collect()
    };
    let mut left = l;
    let mut right = r;
    for i in 0..n {
        match op {
            T_LAND | T_LUNLESS => {
                let on_right = present(&right, &rsig, i);
                for (s, g) in left.iter_mut().zip(&lsig) {
                    if (on_right.contains_key(g)) != (op == T_LAND) {
                        s.values[i] = None;
                    }
                }
            }
            _ => {
                let on_left = present(&left, &lsig, i);
                for (s, g) in right.iter_mut().zip(&rsig) {
                    if on_left.contains_key(g) {
                        s.values[i] = None;
                    }
                }
            }
        }
    }
    let mut out = left;
    if op == T_LOR {
        out.extend(right);
    }
    merge_same_labels(super::non_empty(out))
}

/// Series with equal labels (from both sides of `or`) become one.
fn merge_same_labels(v: Vec<StepSeries>) -> Vec<StepSeries> {
    let mut out: Vec<StepSeries> = Vec::with_capacity(v.len());
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in v {
        match index.get(&s.labels) {
            Some(&i) => {
                for (a, b) in out[i].values.iter_mut().zip(s.values) {
                    if a.is_none() {
                        *a = b;
                    }
                }
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    op: TokenId,
    l: Vec<StepSeries>,
    r: Vec<StepSeries>,
    card: &VectorMatchCardinality,
    matching: &Option<LabelModifier>,
    return_bool: bool,
    sig: &dyn Fn(&Labels) -> Labels,
    n: usize,
) -> Result<Vec<StepSeries>> {
    // The "many" side is iterated; the "one" side is looked up by signature.
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if one_to_many { (&r, &l) } else { (&l, &r) };
    let include: &[String] = match card {
        VectorMatchCardinality::ManyToOne(ls) | VectorMatchCardinality::OneToMany(ls) => &ls.labels,
        _ => &[],
    };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let many_sig: Vec<Labels> = many.iter().map(|s| sig(&s.labels)).collect();
    let one_sig: Vec<Labels> = one.iter().map(|s| sig(&s.labels)).collect();
    let drop_name = drops_name(op) || return_bool;
    let result_labels = |m: &Labels, o: &Labels| -> Labels {
        let mut out = if drop_name {
            m.without_name()
        } else {
            m.clone()
        };
        if one_to_one {
            out = match matching {
                Some(LabelModifier::Include(on)) => out.keep(&on.labels),
                Some(LabelModifier::Exclude(ign)) => out.drop(&ign.labels),
                None => out,
            };
        }
        for name in include {
            out.set(name, o.get(name));
        }
        out
    };
    let mut out: Vec<StepSeries> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    // Result labels per (many, one) pair, computed once.
    let mut labels_cache: HashMap<(usize, usize), Labels> = HashMap::new();
    for i in 0..n {
        let mut one_by_sig: HashMap<&Labels, usize> = HashMap::new();
        for (oi, s) in one.iter().enumerate() {
            if s.values[i].is_none() {
                continue;
            }
            if one_by_sig.insert(&one_sig[oi], oi).is_some() {
                let side = if one_to_many { "left" } else { "right" };
                return Err(Error::Execution(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of \
                     the operation: many-to-many matching not allowed: matching labels must \
                     be unique on one side",
                    one_sig[oi]
                )));
            }
        }
        let mut matched_sigs: HashMap<&Labels, ()> = HashMap::new();
        for (mi, s) in many.iter().enumerate() {
            let Some(mv) = s.values[i] else { continue };
            let Some(&oi) = one_by_sig.get(&many_sig[mi]) else {
                continue;
            };
            if one_to_one && matched_sigs.insert(&many_sig[mi], ()).is_some() {
                return Err(Error::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit \
                     (group_left/group_right)"
                        .into(),
                ));
            }
            let ov = one[oi].values[i].unwrap_or(f64::NAN);
            let (lv, rv) = if one_to_many { (ov, mv) } else { (mv, ov) };
            let (value, keep) = elem(op, lv, rv);
            let value = if return_bool {
                if keep { 1.0 } else { 0.0 }
            } else if keep {
                value
            } else {
                continue;
            };
            let labels = labels_cache
                .entry((mi, oi))
                .or_insert_with(|| result_labels(&s.labels, &one[oi].labels))
                .clone();
            let oi_out = *index.entry(labels.clone()).or_insert_with(|| {
                out.push(StepSeries {
                    labels,
                    values: vec![None; n],
                });
                out.len() - 1
            });
            if out[oi_out].values[i].is_some() {
                return Err(Error::Execution(format!(
                    "vector cannot contain metrics with the same labelset {}",
                    out[oi_out].labels
                )));
            }
            out[oi_out].values[i] = Some(value);
        }
    }
    Ok(out)
}
