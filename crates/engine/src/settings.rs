//! Durable settings that the layers above keep in the manifest: opaque properties (the
//! query layer's rollups declared by SQL) and per-table TTLs, committed atomically.
//! A change is in the object store before [`crate::Engine::commit_settings`] returns,
//! so it survives any crash after that; it is not a WAL record (it orders with no
//! write).

use std::time::Duration;

use crate::core::EngineCore;
use crate::error::{Error, Result};
use crate::manifest::Action;

/// One change committed by [`crate::Engine::commit_settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingChange {
    /// Set (`Some`) or remove (`None`) an opaque property; the engine never reads it.
    Property { key: String, value: Option<String> },
    /// Set (`Some`) or remove (`None`) the TTL of one table. `Some(Duration::ZERO)`
    /// keeps its rows forever. A TTL set here takes precedence over the config's
    /// (`EngineConfig::ttl_overrides` and `ttl`); removed, they apply again. It belongs
    /// to the name: dropping the table does not remove it.
    TableTtl {
        db: String,
        table: String,
        ttl: Option<Duration>,
    },
}

pub(crate) async fn commit(core: &EngineCore, changes: Vec<SettingChange>) -> Result<()> {
    if core.is_closed() {
        return Err(Error::Closed);
    }
    let mut actions = Vec::with_capacity(changes.len());
    for change in changes {
        actions.push(match change {
            SettingChange::Property { key, value } => {
                if key.is_empty() {
                    return Err(Error::InvalidInput("a property key is empty".into()));
                }
                Action::SetProperty { key, value }
            }
            SettingChange::TableTtl { db, table, ttl } => Action::SetTableTtl {
                db,
                table,
                ttl_nanos: ttl.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            },
        });
    }
    if actions.is_empty() {
        return Ok(());
    }
    core.manifest.commit(actions).await.map(|_| ())
}
