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
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::delete::Tombstone;
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
    /// The table was dropped by the WAL record `seq`: its SSTs and schema are gone, and
    /// its WAL records up to `seq` are never replayed. The entry stays, empty, to keep
    /// that sequence number; a later write of the name starts a new table.
    DropTable {
        db: String,
        table: String,
        seq: u64,
    },
    /// A delete (`delete.rs`): rows of records before `tombstone.seq` matching it are
    /// gone, in every SST it still applies to.
    AddTombstone {
        db: String,
        table: String,
        tombstone: Tombstone,
    },
    /// Compaction applied these tombstones everywhere; they are no longer needed.
    RemoveTombstones {
        db: String,
        table: String,
        seqs: Vec<u64>,
    },
    /// Set (`Some`) or remove (`None`) an opaque property of the layers above (SQL
    /// rollups, `crate::settings`); the engine stores it and never reads it.
    SetProperty {
        key: String,
        value: Option<String>,
    },
    /// Set (`Some`, in nanoseconds; 0 = forever) or remove (`None`) the TTL of one
    /// table, which takes precedence over the config's TTLs (`EngineCore::ttl`).
    SetTableTtl {
        db: String,
        table: String,
        ttl_nanos: Option<u64>,
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
    /// WAL records up to this sequence are in SSTs (or were dropped).
    pub flushed_seq: u64,
    /// Deletes not yet applied to every SST, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tombstones: Vec<Tombstone>,
}

impl TableManifest {
    /// A dropped table not written since: no schema and no SSTs.
    pub fn is_dropped(&self) -> bool {
        self.ssts.is_empty() && self.schema.tags.is_empty() && self.schema.fields.is_empty()
    }
}

/// The manifest's full state at `version`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManifestState {
    pub version: u64,
    /// db -> table -> manifest.
    pub tables: BTreeMap<String, BTreeMap<String, TableManifest>>,
    /// Opaque properties of the layers above ([`Action::SetProperty`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// db -> table -> TTL in nanoseconds (0 = forever), set at run time
    /// ([`Action::SetTableTtl`]). Not cleared by a drop: they belong to the name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub table_ttls: BTreeMap<String, BTreeMap<String, u64>>,
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
                Action::DropTable { db, table, seq } => {
                    let t = self.table_mut(db, table);
                    t.ssts.clear();
                    t.tombstones.clear();
                    t.schema = TableSchema::default();
                    t.flushed_seq = t.flushed_seq.max(*seq);
                }
                Action::AddTombstone {
                    db,
                    table,
                    tombstone,
                } => {
                    let t = self.table_mut(db, table);
                    if !t.tombstones.iter().any(|x| x.seq == tombstone.seq) {
                        t.tombstones.push(tombstone.clone());
                        t.tombstones.sort_by_key(|x| x.seq);
                    }
                }
                Action::RemoveTombstones { db, table, seqs } => {
                    self.table_mut(db, table)
                        .tombstones
                        .retain(|x| !seqs.contains(&x.seq));
                }
                Action::SetProperty { key, value } => match value {
                    Some(v) => {
                        self.properties.insert(key.clone(), v.clone());
                    }
                    None => {
                        self.properties.remove(key);
                    }
                },
                Action::SetTableTtl {
                    db,
                    table,
                    ttl_nanos,
                } => {
                    if let Some(n) = ttl_nanos {
                        self.table_ttls
                            .entry(db.clone())
                            .or_default()
                            .insert(table.clone(), *n);
                    } else if let Some(d) = self.table_ttls.get_mut(db) {
                        d.remove(table);
                        if d.is_empty() {
                            self.table_ttls.remove(db);
                        }
                    }
                }
            }
        }
    }

    /// The highest WAL sequence number anything here refers to: a flushed sequence
    /// (or a drop's), a tombstone, or what an SST holds or has applied
    /// ([`SstMeta::deletes_seen`]). A restarted engine numbers its records above it
    /// even when its WAL is empty (`recovery.rs`): a reused number would make a new
    /// delete look already applied, or make an old delete remove new rows.
    pub fn max_seq(&self) -> u64 {
        self.tables
            .values()
            .flat_map(|d| d.values())
            .flat_map(|t| {
                let ssts = t.ssts.values().map(SstMeta::deletes_seen);
                let tombs = t.tombstones.iter().map(|x| x.seq);
                std::iter::once(t.flushed_seq).chain(ssts).chain(tombs)
            })
            .max()
            .unwrap_or(0)
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

/// The manifest store: loads state at startup and commits edits.
///
/// Commits are group-committed: callers queue their actions, and whoever holds the
/// writer lock writes every queued edit as one log entry. So a flush never waits
/// behind a train of compaction commits, each paying an object-store round trip; it
/// waits for at most the one PUT in flight, then rides along with the next.
/// Checkpoints (a PUT, two LISTs and deletes) run in a background task, off the
/// commit path.
pub(crate) struct Manifest {
    inner: Arc<Inner>,
    /// Actions waiting for the next group commit.
    queue: crate::sync::Mutex<Vec<Waiter>>,
    /// Held by the one caller writing a log entry (the group's leader).
    writer: tokio::sync::Mutex<()>,
    /// Identifies each waiter, so a failed group's leader can find its own.
    next_waiter: AtomicU64,
    /// The checkpoint task in flight, if any (at most one at a time).
    checkpoint: crate::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    root: Path,
    checkpoint_interval: u64,
    /// The committed state. Only the leader changes it, after its PUT succeeded.
    state: crate::sync::Mutex<ManifestState>,
    /// The last edit whose PUT failed: it may have landed all the same.
    unanswered: crate::sync::Mutex<Option<ManifestEdit>>,
}

/// How a log entry's PUT ended.
enum Put {
    /// Our entry is in the store (now, or from an earlier attempt with the same body).
    Written,
    /// The version is taken by an earlier attempt of ours with other actions.
    Adopted(ManifestEdit),
}

/// One caller's actions, queued for a group commit.
struct Waiter {
    id: u64,
    actions: Vec<Action>,
    done: tokio::sync::oneshot::Sender<Outcome>,
}

enum Outcome {
    Committed(u64),
    /// The group's PUT failed; the caller commits its actions (handed back) alone,
    /// so it sees its own error (and a fenced engine is told so by its own attempt).
    Retry(Vec<Action>),
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
            inner: Arc::new(Inner {
                store,
                root,
                checkpoint_interval: checkpoint_interval.max(1),
                state: crate::sync::Mutex::new(state.clone()),
                unanswered: crate::sync::Mutex::new(None),
            }),
            queue: crate::sync::Mutex::new(Vec::new()),
            writer: tokio::sync::Mutex::new(()),
            next_waiter: AtomicU64::new(0),
            checkpoint: crate::sync::Mutex::new(None),
        };
        Ok((manifest, state))
    }

    /// Commit `actions` atomically, possibly in one log entry with other callers'
    /// actions. Returns the version that holds them. On success the edit is durable
    /// in the store; on error nothing of `actions` was committed (or, if the store
    /// failed ambiguously, the identical entry is recognised on retry).
    pub(crate) async fn commit(&self, actions: Vec<Action>) -> Result<u64> {
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let (done, mut outcome) = tokio::sync::oneshot::channel();
        self.queue.lock().push(Waiter { id, actions, done });
        let writer = self.writer.lock().await;
        // A leader that held the lock before us may have answered us already: it
        // answers before it releases the lock.
        let actions = match outcome.try_recv() {
            Ok(Outcome::Committed(version)) => return Ok(version),
            Ok(Outcome::Retry(actions)) => actions,
            Err(_) => {
                // We lead: write everything queued, ours included, as one entry.
                // Callers that gave up (their future was dropped) are not committed.
                let mut group = std::mem::take(&mut *self.queue.lock());
                group.retain(|w| w.id == id || !w.done.is_closed());
                let all: Vec<Action> = group
                    .iter()
                    .flat_map(|w| w.actions.iter().cloned())
                    .collect();
                match self.write_edit(all).await {
                    Ok(version) => {
                        for w in group {
                            let _ = w.done.send(Outcome::Committed(version));
                        }
                        return Ok(version);
                    }
                    Err(e) if group.len() == 1 => return Err(e),
                    Err(e) => {
                        tracing::debug!(error = %e, waiters = group.len(), "group commit failed; committing one by one");
                        let mut own = Vec::new();
                        for w in group {
                            if w.id == id {
                                own = w.actions;
                            } else {
                                let _ = w.done.send(Outcome::Retry(w.actions));
                            }
                        }
                        own
                    }
                }
            }
        };
        // The group failed: commit our actions alone, so that the answer (success, a
        // store error, or fencing) comes from an attempt with only our actions.
        let result = self.write_edit(actions).await;
        drop(writer);
        result
    }

    /// Write one log entry holding `actions` as the next version and apply it.
    /// The caller holds the writer lock.
    async fn write_edit(&self, actions: Vec<Action>) -> Result<u64> {
        loop {
            let version = self.inner.state.lock().version + 1;
            let edit = ManifestEdit {
                version,
                actions: actions.clone(),
            };
            match self.put_edit(&edit).await? {
                Put::Written => {
                    self.applied(&edit);
                    return Ok(version);
                }
                // An earlier attempt at this version (whose reply was lost) did land,
                // with other actions (a failed group): adopt it and try the next
                // version. Re-applying an action is harmless: each one sets state.
                Put::Adopted(earlier) => self.applied(&earlier),
            }
        }
    }

    /// Create the log entry of `edit` (create-only).
    async fn put_edit(&self, edit: &ManifestEdit) -> Result<Put> {
        let inner = &self.inner;
        let version = edit.version;
        let body = serde_json::to_vec(edit).map_err(|e| Error::Manifest(e.to_string()))?;
        let path = inner
            .root
            .clone()
            .join("log")
            .join(format!("{version:020}.json").as_str());
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match inner
            .store
            .put_opts(&path, PutPayload::from(body.clone()), opts)
            .await
        {
            Ok(_) => Ok(Put::Written),
            Err(object_store::Error::AlreadyExists { .. }) => {
                // Our own earlier attempt (whose reply was lost) or another writer.
                let existing = get_bytes(&inner.store, &path).await?;
                if existing.as_ref() == body.as_slice() {
                    return Ok(Put::Written);
                }
                let unanswered = inner.unanswered.lock().take();
                match unanswered {
                    Some(earlier)
                        if serde_json::to_vec(&earlier).ok().as_deref()
                            == Some(existing.as_ref()) =>
                    {
                        Ok(Put::Adopted(earlier))
                    }
                    _ => Err(Error::Manifest(format!(
                        "manifest version {version} was written by another writer; \
                         this engine no longer owns {}",
                        inner.root
                    ))),
                }
            }
            Err(source) => {
                // The PUT may still have landed: remember it, so that the next attempt
                // at this version recognises it instead of reporting another writer.
                *inner.unanswered.lock() = Some(edit.clone());
                Err(Error::ObjectStore {
                    op: "commit manifest edit",
                    source,
                })
            }
        }
    }

    /// `edit` is in the store: apply it, and checkpoint when one is due.
    fn applied(&self, edit: &ManifestEdit) {
        let inner = &self.inner;
        {
            let mut unanswered = inner.unanswered.lock();
            if unanswered
                .as_ref()
                .is_some_and(|u| u.version <= edit.version)
            {
                *unanswered = None;
            }
        }
        let snapshot = {
            let mut state = inner.state.lock();
            state.apply(&edit.actions);
            state.version = edit.version;
            edit.version
                .is_multiple_of(inner.checkpoint_interval)
                .then(|| state.clone())
        };
        if let Some(snapshot) = snapshot {
            self.start_checkpoint(snapshot);
        }
    }

    /// Checkpoint `state` in the background, unless a checkpoint is still running
    /// (the next interval catches up: a checkpoint only shortens loading).
    fn start_checkpoint(&self, state: ManifestState) {
        let mut slot = self.checkpoint.lock();
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let inner = Arc::clone(&self.inner);
        *slot = Some(tokio::spawn(async move {
            if let Err(e) = inner.checkpoint(&state).await {
                // The log alone is complete; a missing checkpoint only slows loading.
                tracing::warn!(version = state.version, error = %e, "manifest checkpoint failed");
            }
        }));
    }

    /// Wait up to `limit` for the background checkpoint, if one is running, then
    /// abandon it (a half-done checkpoint is harmless: the PUT is atomic and the
    /// deletes only drop what an older checkpoint covers).
    pub(crate) async fn settle(&self, limit: std::time::Duration) {
        let handle = self.checkpoint.lock().take();
        if let Some(mut h) = handle
            && tokio::time::timeout(limit, &mut h).await.is_err()
        {
            h.abort();
        }
    }

    /// A copy of the current state.
    pub(crate) fn state(&self) -> ManifestState {
        self.inner.state.lock().clone()
    }

    /// The committed TTL of `db.table` ([`Action::SetTableTtl`]), without copying the
    /// state (every snapshot asks).
    pub(crate) fn table_ttl(&self, db: &str, table: &str) -> Option<u64> {
        self.inner
            .state
            .lock()
            .table_ttls
            .get(db)
            .and_then(|d| d.get(table))
            .copied()
    }

    /// The committed properties whose key starts with `prefix`.
    pub(crate) fn properties(&self, prefix: &str) -> BTreeMap<String, String> {
        let state = self.inner.state.lock();
        state
            .properties
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Inner {
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
        let mut stale: Vec<Path> = checkpoints
            .into_iter()
            .filter(|(v, _)| *v < keep_from)
            .map(|(_, p)| p)
            .collect();
        stale.extend(
            list_versions(&self.store, &self.root.clone().join("log"))
                .await?
                .into_iter()
                .filter(|(v, _)| *v <= keep_from)
                .map(|(_, p)| p),
        );
        // Concurrently: each delete is a round trip.
        futures::stream::iter(stale.into_iter().map(|p| {
            let store = Arc::clone(&self.store);
            async move {
                let _ = store.delete(&p).await;
            }
        }))
        .buffer_unordered(8)
        .collect::<()>()
        .await;
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
mod tests;
