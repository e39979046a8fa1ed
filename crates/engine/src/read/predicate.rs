//! Predicates on tag values that a scan can resolve against an SST's series index
//! ([`crate::sst::series_index`]) to read only the rows of matching series.
//!
//! Evaluation follows SQL's three-valued logic exactly: a comparison with an unset
//! (null) tag is NULL, `NOT NULL` is NULL, and a row is kept only if the predicate is
//! TRUE. [`TagPredicate::Unknown`] stands for anything the caller could not translate
//! (a field comparison, a function call): it may be TRUE, FALSE or NULL, so it never
//! excludes a series. A series is skipped only when the predicate cannot be TRUE for
//! its tag values, so resolving never drops a row the full predicate would keep.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// A test on one tag value (e.g. a compiled regex or `LIKE` pattern).
pub type TagMatcher = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A predicate over the tag values of a row.
#[derive(Clone)]
pub enum TagPredicate {
    /// `tag = value` (NULL when the tag is unset).
    Eq(String, String),
    /// `tag IN (values)` (NULL when the tag is unset).
    In(String, BTreeSet<String>),
    /// `tag IS NULL` (never NULL itself).
    IsNull(String),
    /// `matcher(tag)`, e.g. `tag ~ 're'` or `tag LIKE 'p%'` (NULL when the tag is unset).
    /// The string describes the test for `EXPLAIN`.
    Matches(String, String, TagMatcher),
    Not(Box<TagPredicate>),
    And(Vec<TagPredicate>),
    Or(Vec<TagPredicate>),
    /// Anything else: may be TRUE, FALSE or NULL.
    Unknown,
}

impl fmt::Debug for TagPredicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for TagPredicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[TagPredicate], op: &str| {
            write!(f, "(")?;
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{p}")?;
            }
            write!(f, ")")
        };
        match self {
            TagPredicate::Eq(t, v) => write!(f, "{t} = {v:?}"),
            TagPredicate::In(t, vs) => write!(f, "{t} IN {vs:?}"),
            TagPredicate::IsNull(t) => write!(f, "{t} IS NULL"),
            TagPredicate::Matches(t, what, _) => write!(f, "{t} {what}"),
            TagPredicate::Not(p) => write!(f, "NOT {p}"),
            TagPredicate::And(ps) => join(f, ps, "AND"),
            TagPredicate::Or(ps) => join(f, ps, "OR"),
            TagPredicate::Unknown => write!(f, "?"),
        }
    }
}

/// The values an SQL boolean expression may take, as a set: bit 0 TRUE, bit 1 FALSE,
/// bit 2 NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tri(u8);

impl Tri {
    pub(crate) const TRUE: Tri = Tri(1);
    pub(crate) const FALSE: Tri = Tri(2);
    pub(crate) const NULL: Tri = Tri(4);
    pub(crate) const ANY: Tri = Tri(7);

    pub(crate) fn from_bool(b: bool) -> Tri {
        if b { Tri::TRUE } else { Tri::FALSE }
    }

    /// Whether TRUE is possible (the row may be kept).
    pub(crate) fn may_be_true(self) -> bool {
        self.0 & 1 != 0
    }

    fn has(self, other: Tri) -> bool {
        self.0 & other.0 != 0
    }

    pub(crate) fn not(self) -> Tri {
        let mut out = self.0 & 4;
        if self.has(Tri::TRUE) {
            out |= 2;
        }
        if self.has(Tri::FALSE) {
            out |= 1;
        }
        Tri(out)
    }

    /// Kleene AND over every combination of the two sets (a table lookup: this runs
    /// for every series of every SST a tag predicate is resolved against).
    pub(crate) fn and(self, other: Tri) -> Tri {
        Tri(AND[(self.0 & 7) as usize][(other.0 & 7) as usize])
    }

    /// Kleene OR over every combination of the two sets.
    pub(crate) fn or(self, other: Tri) -> Tri {
        self.not().and(other.not()).not()
    }
}

/// [`Tri::and`] for every pair of sets.
const AND: [[u8; 8]; 8] = {
    let mut table = [[0u8; 8]; 8];
    let mut x = 0;
    while x < 8 {
        let mut y = 0;
        while y < 8 {
            table[x][y] = kleene_and(x as u8, y as u8);
            y += 1;
        }
        x += 1;
    }
    table
};

/// Kleene AND of two sets of values (bit 0 TRUE, bit 1 FALSE, bit 2 NULL), over every
/// combination of their members.
const fn kleene_and(x: u8, y: u8) -> u8 {
    let mut out = 0;
    let mut a = 0;
    while a < 3 {
        let mut b = 0;
        while b < 3 {
            if x & (1 << a) != 0 && y & (1 << b) != 0 {
                // FALSE wins, then NULL, then TRUE.
                out |= if a == 1 || b == 1 {
                    2
                } else if a == 2 || b == 2 {
                    4
                } else {
                    1
                };
            }
            b += 1;
        }
        a += 1;
    }
    out
}

impl TagPredicate {
    /// Whether the predicate never excludes anything (nothing to resolve).
    pub fn is_unknown(&self) -> bool {
        match self {
            TagPredicate::Unknown => true,
            TagPredicate::And(ps) => ps.iter().all(TagPredicate::is_unknown),
            TagPredicate::Or(ps) => ps.iter().any(TagPredicate::is_unknown),
            TagPredicate::Not(p) => p.is_unknown(),
            _ => false,
        }
    }

    /// The possible values of the predicate for a series whose tags are given by
    /// `value(tag)` (`None` = unset).
    pub(crate) fn eval<'a>(&self, value: &impl Fn(&str) -> Option<&'a str>) -> Tri {
        match self {
            TagPredicate::Eq(t, v) => value(t).map_or(Tri::NULL, |x| Tri::from_bool(x == v)),
            TagPredicate::In(t, vs) => {
                value(t).map_or(Tri::NULL, |x| Tri::from_bool(vs.contains(x)))
            }
            TagPredicate::IsNull(t) => Tri::from_bool(value(t).is_none()),
            TagPredicate::Matches(t, _, m) => value(t).map_or(Tri::NULL, |x| Tri::from_bool(m(x))),
            TagPredicate::Not(p) => p.eval(value).not(),
            TagPredicate::And(ps) => ps.iter().fold(Tri::TRUE, |acc, p| acc.and(p.eval(value))),
            TagPredicate::Or(ps) => ps.iter().fold(Tri::FALSE, |acc, p| acc.or(p.eval(value))),
            TagPredicate::Unknown => Tri::ANY,
        }
    }

    /// The tags it names.
    pub fn tags(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_tags(&mut out);
        out
    }

    fn collect_tags(&self, out: &mut BTreeSet<String>) {
        match self {
            TagPredicate::Eq(t, _)
            | TagPredicate::In(t, _)
            | TagPredicate::IsNull(t)
            | TagPredicate::Matches(t, _, _) => {
                out.insert(t.clone());
            }
            TagPredicate::Not(p) => p.collect_tags(out),
            TagPredicate::And(ps) | TagPredicate::Or(ps) => {
                ps.iter().for_each(|p| p.collect_tags(out));
            }
            TagPredicate::Unknown => {}
        }
    }

    /// Whether no part of it is [`TagPredicate::Unknown`]: then its value for a row
    /// is known exactly from the row's tags.
    pub fn fully_known(&self) -> bool {
        match self {
            TagPredicate::Unknown => false,
            TagPredicate::Not(p) => p.fully_known(),
            TagPredicate::And(ps) | TagPredicate::Or(ps) => {
                ps.iter().all(TagPredicate::fully_known)
            }
            _ => true,
        }
    }

    /// The conjuncts that every row a scan returns satisfies: the predicate's
    /// top-level `AND` members (or the predicate itself) that are fully known. A scan
    /// keeps only rows for which the whole predicate may be TRUE, and that requires
    /// each of these to be TRUE. None when it [`is_unknown`](Self::is_unknown) (scans
    /// do not resolve such a predicate).
    pub fn exact_conjuncts(&self) -> Vec<&TagPredicate> {
        if self.is_unknown() {
            return Vec::new(); // scans do not resolve it
        }
        self.conjuncts_known()
    }

    fn conjuncts_known(&self) -> Vec<&TagPredicate> {
        match self {
            TagPredicate::And(ps) => ps.iter().flat_map(TagPredicate::conjuncts_known).collect(),
            p if p.fully_known() => vec![p],
            _ => Vec::new(),
        }
    }

    /// Whether a row with these tag values may satisfy the predicate.
    pub fn may_match<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.eval(&value).may_be_true()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |t| pairs.iter().find(|(k, _)| *k == t).map(|(_, v)| *v)
    }

    fn eq(t: &str, v: &str) -> TagPredicate {
        TagPredicate::Eq(t.into(), v.into())
    }

    #[test]
    fn three_valued_logic() {
        let row = [("host", "a")];
        let v = tags(&row);
        assert!(eq("host", "a").may_match(&v));
        assert!(!eq("host", "b").may_match(&v));
        // `region = 'x'` is NULL for an unset region, and so is its negation.
        assert!(!eq("region", "x").may_match(&v));
        assert!(!TagPredicate::Not(Box::new(eq("region", "x"))).may_match(&v));
        assert!(TagPredicate::Not(Box::new(eq("host", "b"))).may_match(&v));
        assert!(TagPredicate::IsNull("region".into()).may_match(&v));
        assert!(!TagPredicate::Not(Box::new(TagPredicate::IsNull("region".into()))).may_match(&v));
        // NULL OR TRUE is TRUE; NULL AND TRUE is NULL.
        let or = TagPredicate::Or(vec![eq("region", "x"), eq("host", "a")]);
        assert!(or.may_match(&v));
        let and = TagPredicate::And(vec![eq("region", "x"), eq("host", "a")]);
        assert!(!and.may_match(&v));
        // Unknown never excludes, except under an AND with something FALSE.
        assert!(TagPredicate::Unknown.may_match(&v));
        assert!(TagPredicate::Not(Box::new(TagPredicate::Unknown)).may_match(&v));
        assert!(!TagPredicate::And(vec![TagPredicate::Unknown, eq("host", "b")]).may_match(&v));
        assert!(TagPredicate::Or(vec![TagPredicate::Unknown, eq("host", "b")]).may_match(&v));
        let is_in = TagPredicate::In("host".into(), ["a".to_string(), "c".into()].into());
        assert!(is_in.may_match(&v));
        assert!(!TagPredicate::Not(Box::new(is_in)).may_match(&v));
        let m = TagPredicate::Matches("host".into(), "~ 'a'".into(), Arc::new(|s| s.contains('a')));
        assert!(m.may_match(&v));
        assert!(
            !TagPredicate::Matches("region".into(), "~ ''".into(), Arc::new(|_| true))
                .may_match(&v)
        );
    }

    #[test]
    fn unknown_detection() {
        assert!(TagPredicate::Unknown.is_unknown());
        assert!(TagPredicate::And(vec![]).is_unknown());
        assert!(TagPredicate::Or(vec![eq("a", "b"), TagPredicate::Unknown]).is_unknown());
        assert!(!TagPredicate::And(vec![eq("a", "b"), TagPredicate::Unknown]).is_unknown());
    }
}
