//! Aggregations (`sum by (…)`, `topk`, `quantile`, `count_values`, …): series are put
//! in groups once (labels do not change between steps), then each step is aggregated
//! with Prometheus 2.42's arithmetic (plain sums, incremental mean, Welford variance).

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::range::quantile;
use super::{Evaluator, non_empty};
use crate::error::{Error, Result};
use crate::types::{Labels, NAME, StepSeries, Value, format_value};

pub(super) fn eval(ev: &Evaluator<'_>, a: &AggregateExpr) -> Result<Value> {
    let op = a.op.id();
    let input = ev.vector_arg(&a.expr)?;
    let n = ev.steps();
    ev.check(input.len().saturating_mul(n))?;
    let group_labels = |l: &Labels| -> Labels {
        match &a.modifier {
            Some(LabelModifier::Include(by)) => l.keep(&by.labels),
            Some(LabelModifier::Exclude(without)) => {
                let mut names = without.labels.clone();
                names.push(NAME.to_string());
                l.drop(&names)
            }
            None => Labels::empty(),
        }
    };
    let mut groups: Vec<Labels> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let member: Vec<usize> = input
        .iter()
        .map(|s| {
            let g = group_labels(&s.labels);
            *index.entry(g.clone()).or_insert_with(|| {
                groups.push(g);
                groups.len() - 1
            })
        })
        .collect();

    match op {
        T_TOPK | T_BOTTOMK => {
            let k = ev.scalar_arg(param(a)?)?;
            let mut out: Vec<StepSeries> = input
                .iter()
                .map(|s| StepSeries {
                    labels: s.labels.clone(),
                    values: vec![None; n],
                })
                .collect();
            for i in 0..n {
                let k = k[i];
                if k.is_nan() || k < 1.0 {
                    continue;
                }
                let k = if k >= usize::MAX as f64 {
                    usize::MAX
                } else {
                    k as usize
                };
                let mut per_group: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
                for (si, s) in input.iter().enumerate() {
                    if s.values[i].is_some() {
                        per_group[member[si]].push(si);
                    }
                }
                for members in per_group {
                    let mut members = members;
                    let val = |si: &usize| input[*si].values[i].unwrap_or(f64::NAN);
                    // Largest first for topk, smallest first for bottomk; NaN last.
                    members.sort_by(|x, y| {
                        let (a, b) = (val(x), val(y));
                        match (a.is_nan(), b.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if op == T_TOPK => {
                                b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal)
                            }
                            _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
                        }
                    });
                    for si in members.into_iter().take(k) {
                        out[si].values[i] = input[si].values[i];
                    }
                }
            }
            Ok(Value::Vector(non_empty(out)))
        }
        T_COUNT_VALUES => {
            let label = match ev.eval(param(a)?)? {
                Value::String(s) => s,
                other => {
                    return Err(Error::BadData(format!(
                        "count_values: expected a string parameter, got a {}",
                        other.type_name()
                    )));
                }
            };
            let mut out: Vec<StepSeries> = Vec::new();
            let mut at: HashMap<Labels, usize> = HashMap::new();
            for (si, s) in input.iter().enumerate() {
                for (i, v) in s.values.iter().enumerate() {
                    let Some(v) = v else { continue };
                    let mut labels = groups[member[si]].clone();
                    labels.set(&label, &format_value(*v));
                    let oi = *at.entry(labels.clone()).or_insert_with(|| {
                        out.push(StepSeries {
                            labels,
                            values: vec![None; n],
                        });
                        out.len() - 1
                    });
                    *out[oi].values[i].get_or_insert(0.0) += 1.0;
                }
            }
            Ok(Value::Vector(out))
        }
        T_QUANTILE => {
            let q = ev.scalar_arg(param(a)?)?;
            let mut out: Vec<StepSeries> = groups
                .iter()
                .map(|g| StepSeries {
                    labels: g.clone(),
                    values: vec![None; n],
                })
                .collect();
            for (i, q) in q.iter().enumerate() {
                let mut per_group: Vec<Vec<f64>> = vec![Vec::new(); groups.len()];
                for (si, s) in input.iter().enumerate() {
                    if let Some(v) = s.values[i] {
                        per_group[member[si]].push(v);
                    }
                }
                for (g, values) in per_group.into_iter().enumerate() {
                    if !values.is_empty() {
                        out[g].values[i] = Some(quantile(*q, values));
                    }
                }
            }
            Ok(Value::Vector(non_empty(out)))
        }
        T_SUM | T_AVG | T_COUNT | T_GROUP | T_MIN | T_MAX | T_STDDEV | T_STDVAR => {
            #[derive(Clone, Copy, Default)]
            struct Acc {
                count: f64,
                value: f64,
                mean: f64,
            }
            let mut acc: Vec<Vec<Option<Acc>>> = vec![vec![None; n]; groups.len()];
            for (si, s) in input.iter().enumerate() {
                let row = &mut acc[member[si]];
                for (i, v) in s.values.iter().enumerate() {
                    let Some(v) = *v else { continue };
                    let slot = &mut row[i];
                    match slot {
                        None => {
                            *slot = Some(match op {
                                T_STDDEV | T_STDVAR => Acc {
                                    count: 1.0,
                                    value: 0.0,
                                    mean: v,
                                },
                                _ => Acc {
                                    count: 1.0,
                                    value: v,
                                    mean: v,
                                },
                            })
                        }
                        Some(g) => {
                            g.count += 1.0;
                            match op {
                                T_SUM => g.value += v,
                                T_AVG => {
                                    if g.mean.is_infinite()
                                        && ((v.is_infinite() && (g.mean > 0.0) == (v > 0.0))
                                            || (!v.is_infinite() && !v.is_nan()))
                                    {
                                        continue;
                                    }
                                    g.mean += v / g.count - g.mean / g.count;
                                }
                                T_MIN if g.value > v || g.value.is_nan() => g.value = v,
                                T_MAX if g.value < v || g.value.is_nan() => g.value = v,
                                T_STDDEV | T_STDVAR => {
                                    let delta = v - g.mean;
                                    g.mean += delta / g.count;
                                    g.value += delta * (v - g.mean);
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            let out = groups
                .into_iter()
                .zip(acc)
                .map(|(labels, row)| StepSeries {
                    labels,
                    values: row
                        .into_iter()
                        .map(|g| {
                            g.map(|g| match op {
                                T_AVG => g.mean,
                                T_COUNT => g.count,
                                T_GROUP => 1.0,
                                T_STDVAR => g.value / g.count,
                                T_STDDEV => (g.value / g.count).sqrt(),
                                _ => g.value,
                            })
                        })
                        .collect(),
                })
                .collect();
            Ok(Value::Vector(non_empty(out)))
        }
        _ => Err(Error::BadData(format!(
            "aggregation {} is not supported by Bulkhead (see docs/promql.md)",
            a.op
        ))),
    }
}

fn param(a: &AggregateExpr) -> Result<&promql_parser::parser::Expr> {
    a.param
        .as_deref()
        .ok_or_else(|| Error::BadData(format!("aggregation {} needs a parameter", a.op)))
}
