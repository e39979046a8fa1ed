//! Before evaluation: which scans a query needs. Every vector or matrix selector becomes
//! one [`Fetch`] (metric, label matchers, time range), merged when two selectors read
//! the same series, so the caller can push each down to the storage as one scan.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use regex::Regex;

use crate::error::{Error, Result};
use crate::types::NAME;

/// How a query is evaluated: the steps and the lookback. Times in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalParams {
    pub start: i64,
    pub end: i64,
    /// > 0 (any value for an instant query, where `start == end`).
    pub step: i64,
    /// How far back an instant selector looks for a sample (Prometheus: 5 m).
    pub lookback: i64,
    /// Step of subqueries that do not give one (Prometheus: the evaluation interval, 1 m).
    pub subquery_step: i64,
}

impl EvalParams {
    /// Prometheus' defaults for an instant query at `time`.
    pub fn instant(time: i64) -> Self {
        Self::range(time, time, 1)
    }

    /// Prometheus' defaults for a range query.
    pub fn range(start: i64, end: i64, step: i64) -> Self {
        Self {
            start,
            end,
            step: step.max(1),
            lookback: 5 * 60 * 1000,
            subquery_step: 60 * 1000,
        }
    }
}

/// How a label matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// One label matcher of a selector. An absent label has the value `""`.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    pub name: String,
    pub kind: MatchKind,
    /// The literal value or the (unanchored) regex text as written.
    pub value: String,
    /// For regex kinds: the fully anchored regex.
    regex: Option<Regex>,
}

impl LabelMatcher {
    pub fn new(name: &str, kind: MatchKind, value: &str) -> Result<Self> {
        let regex = match kind {
            MatchKind::Regex | MatchKind::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| Error::BadData(format!("invalid regex {value:?}: {e}")))?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.to_string(),
            kind,
            value: value.to_string(),
            regex,
        })
    }

    pub fn matches(&self, v: &str) -> bool {
        match self.kind {
            MatchKind::Equal => v == self.value,
            MatchKind::NotEqual => v != self.value,
            MatchKind::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchKind::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// The anchored regex (`^(?:…)$`) of a regex matcher.
    pub fn anchored_regex(&self) -> Option<&str> {
        self.regex.as_ref().map(Regex::as_str)
    }
}

/// One scan: the series matching `matchers` (the `__name__` matcher included), with
/// their samples in `[min_ms, max_ms]`.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Identifies the selector's series set in [`crate::Data`].
    pub key: String,
    pub matchers: Vec<LabelMatcher>,
    pub min_ms: i64,
    pub max_ms: i64,
}

impl Fetch {
    /// The metric name when a matcher fixes it (`foo{…}` or `{__name__="foo"}`).
    pub fn metric(&self) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.name == NAME && m.kind == MatchKind::Equal)
            .map(|m| m.value.as_str())
    }

    /// Whether a series with `labels` (including `__name__`) is selected.
    pub fn selects(&self, get: impl Fn(&str) -> String) -> bool {
        self.matchers.iter().all(|m| m.matches(&get(&m.name)))
    }
}

/// A selector's matchers, `__name__` included, in our own form.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<LabelMatcher>> {
    let Matchers {
        matchers,
        or_matchers,
    } = &vs.matchers;
    if !or_matchers.is_empty() {
        return Err(Error::BadData(
            "`or` inside a label selector is not supported".into(),
        ));
    }
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(LabelMatcher::new(NAME, MatchKind::Equal, name)?);
    }
    for m in matchers {
        let kind = match m.op {
            MatchOp::Equal => MatchKind::Equal,
            MatchOp::NotEqual => MatchKind::NotEqual,
            MatchOp::Re(_) => MatchKind::Regex,
            MatchOp::NotRe(_) => MatchKind::NotRegex,
        };
        if vs.name.is_some() && m.name == NAME && kind == MatchKind::Equal {
            continue;
        }
        out.push(LabelMatcher::new(&m.name, kind, &m.value)?);
    }
    if !out.iter().any(|m| !m.matches("")) {
        return Err(Error::BadData(
            "vector selector must contain at least one non-empty matcher".into(),
        ));
    }
    Ok(out)
}

/// The key of a selector's series set: its matchers, sorted.
pub(crate) fn selector_key(matchers: &[LabelMatcher]) -> String {
    let mut parts: Vec<String> = matchers
        .iter()
        .map(|m| format!("{}{:?}{:?}", m.name, m.kind, m.value))
        .collect();
    parts.sort();
    parts.join(",")
}

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

pub(crate) fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The time an `@` modifier fixes (`start()`/`end()` are the query's).
pub(crate) fn at_ms(at: &Option<AtModifier>, query: &EvalParams) -> Option<i64> {
    at.as_ref().map(|a| match a {
        AtModifier::Start => query.start,
        AtModifier::End => query.end,
        AtModifier::At(t) => system_time_ms(t),
    })
}

/// The steps a subquery evaluates its expression at, for outer steps `start..=end`:
/// aligned to multiples of its step, from just after `start - offset - range`.
pub(crate) fn subquery_steps(
    start: i64,
    end: i64,
    offset: i64,
    range: i64,
    step: i64,
) -> (i64, i64) {
    let first = start - offset - range;
    // Go's integer division truncates toward zero.
    let mut s = step * (first / step);
    if s < first {
        s += step;
    }
    (s, end - offset)
}

/// Every scan `expr` needs when evaluated at steps `params.start..=params.end`.
pub fn fetches(expr: &Expr, params: &EvalParams) -> Result<Vec<Fetch>> {
    let mut out: BTreeMap<String, Fetch> = BTreeMap::new();
    walk(expr, params.start, params.end, params, &mut out)?;
    Ok(out.into_values().collect())
}

fn add(
    out: &mut BTreeMap<String, Fetch>,
    vs: &VectorSelector,
    min_ms: i64,
    max_ms: i64,
) -> Result<()> {
    let matchers = selector_matchers(vs)?;
    let key = selector_key(&matchers);
    let f = out.entry(key.clone()).or_insert(Fetch {
        key,
        matchers,
        min_ms,
        max_ms,
    });
    f.min_ms = f.min_ms.min(min_ms);
    f.max_ms = f.max_ms.max(max_ms);
    Ok(())
}

fn walk(
    expr: &Expr,
    start: i64,
    end: i64,
    q: &EvalParams,
    out: &mut BTreeMap<String, Fetch>,
) -> Result<()> {
    match expr {
        Expr::VectorSelector(vs) => {
            let off = offset_ms(&vs.offset);
            let (s, e) = at_ms(&vs.at, q).map_or((start, end), |t| (t, t));
            add(out, vs, s - off - q.lookback, e - off)
        }
        Expr::MatrixSelector(ms) => {
            let off = offset_ms(&ms.vs.offset);
            let (s, e) = at_ms(&ms.vs.at, q).map_or((start, end), |t| (t, t));
            add(out, &ms.vs, s - off - duration_ms(&ms.range), e - off)
        }
        Expr::Subquery(sq) => {
            let (s, e) = at_ms(&sq.at, q).map_or((start, end), |t| (t, t));
            let step = sq.step.as_ref().map_or(q.subquery_step, duration_ms).max(1);
            let (is, ie) =
                subquery_steps(s, e, offset_ms(&sq.offset), duration_ms(&sq.range), step);
            walk(&sq.expr, is, ie, q, out)
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, start, end, q, out)?;
            }
            walk(&a.expr, start, end, q, out)
        }
        Expr::Unary(u) => walk(&u.expr, start, end, q, out),
        Expr::Binary(b) => {
            walk(&b.lhs, start, end, q, out)?;
            walk(&b.rhs, start, end, q, out)
        }
        Expr::Paren(p) => walk(&p.expr, start, end, q, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, start, end, q, out)?;
            }
            Ok(())
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::Extension(_) => Err(Error::BadData(
            "extension expressions are not supported".into(),
        )),
    }
}
