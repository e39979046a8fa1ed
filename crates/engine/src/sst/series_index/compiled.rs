//! A tag predicate compiled against one SST's series index, to judge its runs fast.

use std::collections::HashMap;

use super::SeriesIndex;
use crate::read::predicate::{TagPredicate, Tri};

/// A tag predicate resolved against one index's dictionaries: each leaf is judged once
/// per distinct value of its tag (`=` and `IN` look their values up in the index's
/// value → id map; `IS NULL` and matches test every value), so judging a run takes
/// integer lookups instead of string comparisons. Same values as
/// [`TagPredicate::eval`] on the run's tags (a test compares them).
pub(super) enum Compiled {
    /// The leaf's value per value id of the tag in `slot` (0 = unset).
    Leaf {
        slot: usize,
        by_id: Vec<Tri>,
    },
    Not(Box<Compiled>),
    And(Vec<Compiled>),
    Or(Vec<Compiled>),
    /// The same for every run (a tag the file lacks is unset everywhere; `Unknown`).
    Const(Tri),
}

impl Compiled {
    pub(super) fn new(index: &SeriesIndex, pred: &TagPredicate) -> Self {
        let slots = index.slots();
        Self::compile(index, &slots, pred)
    }

    fn compile(index: &SeriesIndex, slots: &HashMap<&str, usize>, pred: &TagPredicate) -> Self {
        let leaf = |tag: &str| match slots.get(tag) {
            None => Compiled::Const(pred.eval(&|_| None)),
            Some(&slot) => {
                let mut by_id = vec![pred.eval(&|_| None)];
                by_id.extend(
                    index.values[slot]
                        .iter()
                        .map(|v| pred.eval(&|_| Some(v.as_str()))),
                );
                Compiled::Leaf { slot, by_id }
            }
        };
        // `=` and `IN` look their values up instead of testing every value: TRUE for
        // theirs, FALSE for the others, NULL for unset (as `TagPredicate::eval`).
        let lookup = |tag: &str, wanted: &mut dyn Iterator<Item = &String>| match slots.get(tag) {
            None => Compiled::Const(Tri::NULL),
            Some(&slot) => {
                let mut by_id = vec![Tri::FALSE; index.values[slot].len() + 1];
                by_id[0] = Tri::NULL;
                for v in wanted {
                    if let Some(id) = index.id_of(slot, v) {
                        by_id[id as usize] = Tri::TRUE;
                    }
                }
                Compiled::Leaf { slot, by_id }
            }
        };
        match pred {
            TagPredicate::Eq(t, v) => lookup(t, &mut std::iter::once(v)),
            TagPredicate::In(t, vs) => lookup(t, &mut vs.iter()),
            TagPredicate::IsNull(t) | TagPredicate::Matches(t, _, _) => leaf(t),
            TagPredicate::Not(p) => Compiled::Not(Box::new(Self::compile(index, slots, p))),
            TagPredicate::And(ps) => {
                Compiled::And(ps.iter().map(|p| Self::compile(index, slots, p)).collect())
            }
            TagPredicate::Or(ps) => {
                Compiled::Or(ps.iter().map(|p| Self::compile(index, slots, p)).collect())
            }
            TagPredicate::Unknown => Compiled::Const(Tri::ANY),
        }
    }

    /// The predicate's possible values for run `s`.
    pub(super) fn eval(&self, ids: &[Vec<u32>], s: usize) -> Tri {
        match self {
            Compiled::Leaf { slot, by_id } => by_id[ids[*slot][s] as usize],
            Compiled::Not(p) => p.eval(ids, s).not(),
            Compiled::And(ps) => ps.iter().fold(Tri::TRUE, |acc, p| acc.and(p.eval(ids, s))),
            Compiled::Or(ps) => ps.iter().fold(Tri::FALSE, |acc, p| acc.or(p.eval(ids, s))),
            Compiled::Const(t) => *t,
        }
    }
}
