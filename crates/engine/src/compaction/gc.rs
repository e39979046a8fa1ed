//! Startup garbage collection of SST objects the manifest does not reference.
//!
//! Such objects are left by a crash between uploading an SST and committing it (flush
//! or compaction), or between committing a replacement and deleting the replaced
//! files. It runs at startup before the flush scheduler and the compactor start, so
//! no upload of ours is in flight (an uploaded, not yet committed SST looks exactly
//! like garbage), and any other writer on the same prefix could not commit anyway
//! (manifest puts are create-only), so every unreferenced SST object is garbage.

use std::collections::HashSet;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::core::EngineCore;
use crate::manifest::ManifestState;
use crate::sst::base_path;

/// Delete unreferenced objects under the SST data prefix; returns how many. Errors are
/// logged, never fatal: garbage is only wasted space.
pub(crate) async fn delete_orphans(engine: &EngineCore, state: &ManifestState) -> usize {
    let live: HashSet<&str> = state
        .tables
        .values()
        .flat_map(|tables| tables.values())
        .flat_map(|t| t.ssts.values())
        .map(|m| m.path.as_str())
        .collect();
    let prefix = base_path(&engine.config.store_prefix).join("data");
    let listed: Vec<_> = match engine.store.list(Some(&prefix)).try_collect().await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(error = %e, "could not list SSTs for garbage collection");
            return 0;
        }
    };
    let mut deleted = 0;
    for meta in listed {
        if live.contains(meta.location.as_ref()) {
            continue;
        }
        match engine.store.delete(&meta.location).await {
            Ok(()) => {
                deleted += 1;
                tracing::info!(path = %meta.location, "deleted orphan SST");
            }
            Err(e) => {
                tracing::warn!(path = %meta.location, error = %e, "could not delete orphan SST")
            }
        }
    }
    deleted
}
