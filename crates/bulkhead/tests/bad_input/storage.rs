//! Storage faults and edges: timestamps at the ends of i64, disk full, wide tables (issue 22).

use super::Case;

pub(crate) fn cases() -> Vec<Case> {
    Vec::new()
}
