//! `[cache]`: the object-store cache of SST blocks (memory and local disk), which makes
//! warm queries on S3 as fast as on local disk (docs/object-storage.md).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ByteSize;

/// `[cache]`: a bounded memory tier and, for remote object stores, a disk tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSection {
    /// Cache SST blocks at all.
    pub enabled: bool,
    /// Memory tier size (0 = no memory tier).
    pub memory_size: ByteSize,
    /// Disk tier size (0 = no disk tier). Used only with a remote object store
    /// (`s3://`); a `file://` store is local disk already.
    pub disk_size: ByteSize,
    /// Disk tier directory; empty means `<data_dir>/cache`.
    pub disk_path: String,
}

impl Default for CacheSection {
    fn default() -> Self {
        Self {
            enabled: true,
            memory_size: ByteSize::mib(256),
            disk_size: ByteSize::gib(10),
            disk_path: String::new(),
        }
    }
}

impl CacheSection {
    /// The disk tier's directory, defaulted from `data_dir`.
    pub fn disk_dir(&self, data_dir: &Path) -> PathBuf {
        if self.disk_path.is_empty() {
            data_dir.join("cache")
        } else {
            PathBuf::from(&self.disk_path)
        }
    }
}
