//! The manifest: which SSTs make up each table, each table's schema and flushed WAL
//! sequence, stored in the object store as a log of edits plus periodic checkpoints.
//!
//! Layout under `{prefix}/manifest/`:
//! * `log/{version:020}.json`: one [`ManifestEdit`] (a list of [`Action`]s applied
//!   atomically). Versions are consecutive from 1.
//! * `checkpoint/{version:020}.json`: the whole [`ManifestState`] as of `version`.
//!
//! Every log entry is written with `PutMode::Create`. Two engines sharing a prefix both
//! try to create the same next version; the store lets exactly one succeed, and the
//! other gets `AlreadyExists` and reports [`Error::Manifest`] (it is fenced) instead of
//! overwriting history. Loading reads the newest checkpoint, then every log entry after
//! it, which must be contiguous.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::TableSchema;
use crate::sst::{SstMeta, base_path};

/// One change to the manifest state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The table's schema is now `schema` (schemas only grow).
    SetSchema {
        db: String,
        table: String,
        schema: TableSchema,
    },
    AddSst(SstMeta),
    RemoveSst {
        db: String,
        table: String,
        file_id: String,
    },
    /// Every WAL record with sequence <= `seq` is persisted in SSTs for this table.
    Flushed {
        db: String,
        table: String,
        seq: u64,
    },
}

/// Actions committed together: either all of them are in the manifest, or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEdit {
    pub version: u64,
    pub actions: Vec<Action>,
}

/// What the manifest knows about one table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableManifest {
    pub schema: TableSchema,
    /// Live SSTs by file id.
    pub ssts: BTreeMap<String, SstMeta>,
    /// WAL records up to this sequence are in SSTs.
    pub flushed_seq: u64,
}

/// The manifest's full state at `version`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManifestState {
    pub version: u64,
    /// db -> table -> manifest.
    pub tables: BTreeMap<String, BTreeMap<String, TableManifest>>,
}

impl ManifestState {
    pub fn apply(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::SetSchema { db, table, schema } => {
                    let mut schema = schema.clone();
                    schema.reindex();
                    self.table_mut(db, table).schema = schema;
                }
                Action::AddSst(meta) => {
                    self.table_mut(&meta.db, &meta.table)
                        .ssts
                        .insert(meta.file_id.clone(), meta.clone());
                }
                Action::RemoveSst { db, table, file_id } => {
                    self.table_mut(db, table).ssts.remove(file_id);
                }
                Action::Flushed { db, table, seq } => {
                    let t = self.table_mut(db, table);
                    t.flushed_seq = t.flushed_seq.max(*seq);
                }
            }
        }
    }

    fn table_mut(&mut self, db: &str, table: &str) -> &mut TableManifest {
        self.tables
            .entry(db.to_string())
            .or_default()
            .entry(table.to_string())
            .or_default()
    }

    fn reindex(&mut self) {
        for t in self.tables.values_mut().flat_map(|d| d.values_mut()) {
            t.schema.reindex();
        }
    }
}

/// The manifest store: loads state at startup and commits edits one at a time.
pub(crate) struct Manifest {
    store: Arc<dyn ObjectStore>,
    root: Path,
    checkpoint_interval: u64,
    /// Serializes commits (each takes the next version) and holds the current state.
    state: tokio::sync::Mutex<ManifestState>,
}

fn store_err(op: &'static str) -> impl FnOnce(object_store::Error) -> Error {
    move |source| Error::ObjectStore { op, source }
}

fn version_of(path: &Path) -> Option<u64> {
    path.filename()?.strip_suffix(".json")?.parse().ok()
}

impl Manifest {
    /// Load the newest checkpoint and the log after it.
    pub(crate) async fn load(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        checkpoint_interval: u64,
    ) -> Result<(Self, ManifestState)> {
        let root = base_path(prefix).join("manifest");
        let checkpoints = list_versions(&store, &root.clone().join("checkpoint")).await?;
        let mut state = match checkpoints.last() {
            Some((_, path)) => {
                let bytes = get_bytes(&store, path).await?;
                serde_json::from_slice::<ManifestState>(&bytes)
                    .map_err(|e| Error::Manifest(format!("bad checkpoint {path}: {e}")))?
            }
            None => ManifestState::default(),
        };
        state.reindex();
        for (version, path) in list_versions(&store, &root.clone().join("log")).await? {
            if version <= state.version {
                continue;
            }
            if version != state.version + 1 {
                return Err(Error::Manifest(format!(
                    "manifest log has a gap: version {} follows {}",
                    version, state.version
                )));
            }
            let bytes = get_bytes(&store, &path).await?;
            let edit: ManifestEdit = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Manifest(format!("bad manifest entry {path}: {e}")))?;
            state.apply(&edit.actions);
            state.version = version;
        }
        let manifest = Self {
            store,
            root,
            checkpoint_interval: checkpoint_interval.max(1),
            state: tokio::sync::Mutex::new(state.clone()),
        };
        Ok((manifest, state))
    }

    /// Commit `actions` as the next version. On success the edit is durable in the
    /// store; on error nothing was committed (or, if the store failed ambiguously, the
    /// identical entry is recognised on retry).
    pub(crate) async fn commit(&self, actions: Vec<Action>) -> Result<u64> {
        let mut state = self.state.lock().await;
        let version = state.version + 1;
        let edit = ManifestEdit { version, actions };
        let body = serde_json::to_vec(&edit).map_err(|e| Error::Manifest(e.to_string()))?;
        let path = self
            .root
            .clone()
            .join("log")
            .join(format!("{version:020}.json").as_str());
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(body.clone()), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                // Our own earlier attempt (whose reply was lost) or another writer.
                let existing = get_bytes(&self.store, &path).await?;
                if existing.as_ref() != body.as_slice() {
                    return Err(Error::Manifest(format!(
                        "manifest version {version} was written by another writer; \
                         this engine no longer owns {}",
                        self.root
                    )));
                }
            }
            Err(source) => {
                return Err(Error::ObjectStore {
                    op: "commit manifest edit",
                    source,
                });
            }
        }
        state.apply(&edit.actions);
        state.version = version;
        if version.is_multiple_of(self.checkpoint_interval)
            && let Err(e) = self.checkpoint(&state).await
        {
            // The log alone is complete; a missing checkpoint only slows loading.
            tracing::warn!(version, error = %e, "manifest checkpoint failed");
        }
        Ok(version)
    }

    /// A copy of the current state.
    pub(crate) async fn state(&self) -> ManifestState {
        self.state.lock().await.clone()
    }

    /// Write a checkpoint of `state`, then delete the log entries and checkpoints it
    /// makes redundant (best effort).
    async fn checkpoint(&self, state: &ManifestState) -> Result<()> {
        let dir = self.root.clone().join("checkpoint");
        let path = dir
            .clone()
            .join(format!("{:020}.json", state.version).as_str());
        let body = serde_json::to_vec(state).map_err(|e| Error::Manifest(e.to_string()))?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(body), opts)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(store_err("write manifest checkpoint")(e)),
        }
        // Keep the previous checkpoint as a fallback; drop what is older.
        let checkpoints = list_versions(&self.store, &dir).await?;
        let keep_from = checkpoints
            .iter()
            .rev()
            .nth(1)
            .map(|(v, _)| *v)
            .unwrap_or(0);
        for (v, p) in &checkpoints {
            if *v < keep_from {
                let _ = self.store.delete(p).await;
            }
        }
        for (v, p) in list_versions(&self.store, &self.root.clone().join("log")).await? {
            if v <= keep_from {
                let _ = self.store.delete(&p).await;
            }
        }
        Ok(())
    }
}

async fn get_bytes(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<bytes::Bytes> {
    let r = store.get(path).await.map_err(store_err("read manifest"))?;
    r.bytes().await.map_err(store_err("read manifest"))
}

/// `(version, path)` of every `*.json` under `dir`, sorted by version.
async fn list_versions(store: &Arc<dyn ObjectStore>, dir: &Path) -> Result<Vec<(u64, Path)>> {
    let metas: Vec<_> = store
        .list(Some(dir))
        .try_collect()
        .await
        .map_err(store_err("list manifest"))?;
    let mut out: Vec<(u64, Path)> = metas
        .into_iter()
        .filter_map(|m| version_of(&m.location).map(|v| (v, m.location)))
        .collect();
    out.sort_by_key(|(v, _)| *v);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn flushed(seq: u64) -> Vec<Action> {
        vec![Action::Flushed {
            db: "db".into(),
            table: "t".into(),
            seq,
        }]
    }

    #[tokio::test]
    async fn log_and_checkpoints_reload_to_the_same_state() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let (m, _) = Manifest::load(Arc::clone(&store), "p", 3)
            .await
            .expect("load");
        for seq in 1..=7 {
            m.commit(flushed(seq * 10)).await.expect("commit");
        }
        let (_, state) = Manifest::load(Arc::clone(&store), "p", 3)
            .await
            .expect("reload");
        assert_eq!(state.version, 7);
        assert_eq!(state.tables["db"]["t"].flushed_seq, 70);
        // Old log entries were compacted away behind checkpoints.
        let logs = list_versions(&store, &Path::from("p/manifest/log"))
            .await
            .expect("list");
        assert!(logs.first().map(|(v, _)| *v).unwrap_or(0) > 1, "{logs:?}");
    }

    #[tokio::test]
    async fn second_writer_is_fenced() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let (a, _) = Manifest::load(Arc::clone(&store), "", 100)
            .await
            .expect("load");
        let (b, _) = Manifest::load(Arc::clone(&store), "", 100)
            .await
            .expect("load");
        a.commit(flushed(1)).await.expect("first writer commits");
        let err = b
            .commit(flushed(2))
            .await
            .expect_err("second writer must fail");
        assert!(matches!(err, Error::Manifest(_)), "{err}");
    }
}
