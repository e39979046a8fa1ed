//! Evaluation of a parsed expression over the fetched series, with Prometheus 2's
//! semantics: every node is evaluated for all steps at once (a scalar is one value per
//! step, an instant vector one optional value per series and step), selectors look back
//! `lookback` ms (closed interval) and range selectors select `[t - range, t]`.

mod aggregate;
mod binary;
mod functions;
mod range;

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use promql_parser::parser::{Expr, VectorSelector};

use crate::error::{Error, Result};
use crate::plan::{
    EvalParams, at_ms, duration_ms, offset_ms, selector_key, selector_matchers, subquery_steps,
};
use crate::types::{Labels, RawSeries, StepSeries, Value};

/// The series each selector read, by [`crate::Fetch::key`].
#[derive(Debug, Default)]
pub struct Data {
    series: HashMap<String, Vec<RawSeries>>,
}

impl Data {
    pub fn new() -> Self {
        Self::default()
    }

    /// The series read for fetch `key` (samples sorted by time).
    pub fn insert(&mut self, key: String, series: Vec<RawSeries>) {
        self.series.insert(key, series);
    }

    fn get(&self, key: &str) -> &[RawSeries] {
        self.series.get(key).map_or(&[], Vec::as_slice)
    }
}

/// Limits of one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Stop with [`Error::Timeout`] past this instant.
    pub deadline: Option<Instant>,
    /// Most values (points of all intermediate results) one node may hold.
    pub max_points: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: None,
            max_points: 50_000_000,
        }
    }
}

/// A series' selected sample `(time, value)` per step.
pub(crate) type SampledSeries = (Labels, Vec<Option<(i64, f64)>>);

/// A range-vector argument: raw series and how each step windows them.
pub(crate) struct RangeArg<'a> {
    pub series: Cow<'a, [RawSeries]>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

pub(crate) struct Evaluator<'a> {
    data: &'a Data,
    /// The query as asked (`@ start()`/`end()`, lookback).
    query: EvalParams,
    start: i64,
    end: i64,
    step: i64,
    limits: Limits,
}

/// Evaluate `expr` at the steps of `params` over `data`.
pub fn evaluate(expr: &Expr, params: &EvalParams, data: &Data, limits: Limits) -> Result<Value> {
    let ev = Evaluator {
        data,
        query: *params,
        start: params.start,
        end: params.end,
        step: params.step.max(1),
        limits,
    };
    ev.eval(expr)
}

impl<'a> Evaluator<'a> {
    pub(crate) fn steps(&self) -> usize {
        ((self.end - self.start) / self.step + 1).max(0) as usize
    }

    pub(crate) fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    pub(crate) fn check(&self, points: usize) -> Result<()> {
        if let Some(d) = self.limits.deadline
            && Instant::now() > d
        {
            return Err(Error::Timeout("expression evaluation"));
        }
        if points > self.limits.max_points {
            return Err(Error::TooManySamples(format!(
                "query processing would load too many samples into memory ({points} > {})",
                self.limits.max_points
            )));
        }
        Ok(())
    }

    pub(crate) fn eval(&self, expr: &Expr) -> Result<Value> {
        self.check(0)?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; self.steps()])),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => Ok(match self.eval(&u.expr)? {
                Value::Scalar(v) => Value::Scalar(v.into_iter().map(|x| -x).collect()),
                Value::Vector(v) => Value::Vector(
                    v.into_iter()
                        .map(|s| StepSeries {
                            labels: s.labels.without_name(),
                            values: s.values.into_iter().map(|x| x.map(|x| -x)).collect(),
                        })
                        .collect(),
                ),
                other => {
                    return Err(Error::BadData(format!(
                        "unary minus of a {}",
                        other.type_name()
                    )));
                }
            }),
            Expr::VectorSelector(vs) => self.vector_selector(vs).map(Value::Vector),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                if self.steps() != 1 {
                    return Err(Error::BadData(
                        "invalid expression type \"range vector\" for range query, must be \
                         Scalar or instant Vector"
                            .into(),
                    ));
                }
                let arg = self.range_arg(expr)?;
                let reference = arg.at.unwrap_or(self.start) - arg.offset;
                let mut out = Vec::new();
                for s in arg.series.iter() {
                    let (lo, hi) = s.window(reference - arg.range, reference);
                    if lo < hi {
                        out.push(RawSeries {
                            labels: s.labels.clone(),
                            times: s.times[lo..hi].to_vec(),
                            values: s.values[lo..hi].to_vec(),
                        });
                    }
                }
                Ok(Value::Matrix(out))
            }
            Expr::Aggregate(a) => aggregate::eval(self, a),
            Expr::Binary(b) => binary::eval(self, b),
            Expr::Call(c) => functions::call(self, c),
            Expr::Extension(_) => Err(Error::BadData(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// The fetched series of a selector.
    fn selected(&self, vs: &VectorSelector) -> Result<&'a [RawSeries]> {
        let matchers = selector_matchers(vs)?;
        Ok(self.data.get(&selector_key(&matchers)))
    }

    /// An instant selector: per step, the latest sample in `[t - lookback, t]`.
    pub(crate) fn vector_selector(&self, vs: &VectorSelector) -> Result<Vec<StepSeries>> {
        Ok(self
            .vector_selector_samples(vs)?
            .into_iter()
            .map(|(labels, points)| StepSeries {
                labels,
                values: points.into_iter().map(|p| p.map(|(_, v)| v)).collect(),
            })
            .collect())
    }

    /// Like [`Self::vector_selector`], with each value's sample time (for `timestamp()`).
    pub(crate) fn vector_selector_samples(
        &self,
        vs: &VectorSelector,
    ) -> Result<Vec<SampledSeries>> {
        let series = self.selected(vs)?;
        let off = offset_ms(&vs.offset);
        let at = at_ms(&vs.at, &self.query);
        let n = self.steps();
        self.check(series.len().saturating_mul(n))?;
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            self.check(0)?;
            let mut values = Vec::with_capacity(n);
            let mut any = false;
            for i in 0..n {
                let reference = at.unwrap_or(self.ts(i)) - off;
                let idx = s.times.partition_point(|&t| t <= reference);
                let v = (idx > 0 && s.times[idx - 1] >= reference - self.query.lookback)
                    .then(|| (s.times[idx - 1], s.values[idx - 1]));
                any |= v.is_some();
                values.push(v);
            }
            if any {
                out.push((s.labels.clone(), values));
            }
        }
        Ok(out)
    }

    /// A matrix selector or subquery as a range-vector argument.
    pub(crate) fn range_arg(&self, expr: &Expr) -> Result<RangeArg<'a>> {
        match expr {
            Expr::Paren(p) => self.range_arg(&p.expr),
            Expr::MatrixSelector(ms) => Ok(RangeArg {
                series: Cow::Borrowed(self.selected(&ms.vs)?),
                range: duration_ms(&ms.range),
                offset: offset_ms(&ms.vs.offset),
                at: at_ms(&ms.vs.at, &self.query),
            }),
            Expr::Subquery(sq) => {
                let offset = offset_ms(&sq.offset);
                let range = duration_ms(&sq.range);
                let at = at_ms(&sq.at, &self.query);
                let step = sq
                    .step
                    .as_ref()
                    .map_or(self.query.subquery_step, duration_ms)
                    .max(1);
                let (s, e) = at.map_or((self.start, self.end), |t| (t, t));
                let (start, end) = subquery_steps(s, e, offset, range, step);
                let inner = Evaluator {
                    data: self.data,
                    query: self.query,
                    start,
                    end,
                    step,
                    limits: self.limits,
                };
                let series = match inner.eval(&sq.expr)? {
                    Value::Scalar(v) => vec![StepSeries {
                        labels: Labels::empty(),
                        values: v.into_iter().map(Some).collect(),
                    }],
                    Value::Vector(v) => v,
                    other => {
                        return Err(Error::BadData(format!(
                            "subquery is only allowed on instant vector, got {} instead",
                            other.type_name()
                        )));
                    }
                };
                let raw = series
                    .into_iter()
                    .map(|s| {
                        let mut times = Vec::new();
                        let mut values = Vec::new();
                        for (i, v) in s.values.iter().enumerate() {
                            if let Some(v) = v {
                                times.push(inner.ts(i));
                                values.push(*v);
                            }
                        }
                        RawSeries {
                            labels: s.labels,
                            times,
                            values,
                        }
                    })
                    .filter(|s| !s.times.is_empty())
                    .collect();
                Ok(RangeArg {
                    series: Cow::Owned(raw),
                    range,
                    offset,
                    at,
                })
            }
            other => Err(Error::BadData(format!(
                "expected a range vector (a matrix selector or subquery), got {other}"
            ))),
        }
    }

    /// A scalar argument's value per step (a vector argument is an error).
    pub(crate) fn scalar_arg(&self, expr: &Expr) -> Result<Vec<f64>> {
        match self.eval(expr)? {
            Value::Scalar(v) => Ok(v),
            other => Err(Error::BadData(format!(
                "expected a scalar argument, got a {}",
                other.type_name()
            ))),
        }
    }

    /// An instant-vector argument.
    pub(crate) fn vector_arg(&self, expr: &Expr) -> Result<Vec<StepSeries>> {
        match self.eval(expr)? {
            Value::Vector(v) => Ok(v),
            other => Err(Error::BadData(format!(
                "expected an instant vector argument, got a {}",
                other.type_name()
            ))),
        }
    }
}

/// Drop series without any value.
pub(crate) fn non_empty(v: Vec<StepSeries>) -> Vec<StepSeries> {
    v.into_iter()
        .filter(|s| s.values.iter().any(Option::is_some))
        .collect()
}
