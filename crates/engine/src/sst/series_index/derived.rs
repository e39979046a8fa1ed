//! What a [`SeriesIndex`](super::SeriesIndex) derives from its contents on first use
//! and keeps with the file's cached metadata, so the next query does not build it
//! again: the runs' series keys (lastpoint), each tag's value ids by value (`=` and
//! `IN`), and each tag's values as an Arrow array (tag columns built from the index).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::ArrayRef;

use super::HashedKey;

/// Tag order, and the keys of every run over it.
pub(super) type CachedKeys = (Vec<String>, Arc<Vec<HashedKey>>);

/// The caches (see the module docs). Never part of what two indexes are: equal
/// indexes are equal whatever either has built.
#[derive(Default)]
pub(super) struct Derived {
    /// The runs' series keys over the last tag order asked for.
    pub(super) keys: crate::sync::Mutex<Option<CachedKeys>>,
    /// Per tag, value → its id (`i + 1` for `values[tag][i]`).
    pub(super) ids: OnceLock<Vec<HashMap<String, u32>>>,
    /// Per tag, its values in id order.
    pub(super) arrays: OnceLock<Vec<ArrayRef>>,
}

impl Clone for Derived {
    fn clone(&self) -> Self {
        Derived {
            keys: crate::sync::Mutex::new(self.keys.lock().clone()),
            ids: self.ids.clone(),
            arrays: self.arrays.clone(),
        }
    }
}

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Derived {}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Derived")
    }
}
