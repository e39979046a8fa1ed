//! Table, database, tag and field names at the edges: length, reserved names, control characters (issue 22).

use super::Case;

pub(crate) fn cases() -> Vec<Case> {
    Vec::new()
}
