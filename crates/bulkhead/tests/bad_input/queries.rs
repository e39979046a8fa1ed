//! Queries that must not crash the server: deep and wide expressions, huge parameter numbers (issue 22).

use super::Case;

pub(crate) fn cases() -> Vec<Case> {
    Vec::new()
}
