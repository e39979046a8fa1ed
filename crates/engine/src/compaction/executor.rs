//! Running one compaction task.
//!
//! Order matters for crash safety, and each step says what a crash there leaves:
//! 1. fetch every input through the io-bound store (nothing written yet);
//! 2. merge (a k-way merge of the sorted inputs), dedup and encode on `compact`
//!    (nothing written yet);
//! 3. upload the output (a crash leaves an unreferenced object: [`super::gc`] deletes
//!    it at the next start);
//! 4. commit one manifest edit removing the inputs and adding the output (atomic: the
//!    old set or the new set is visible, never both, never neither);
//! 5. inputs are deleted once no snapshot holds them (a crash before that leaves
//!    unreferenced objects, again collected at start).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use object_store::ObjectStore;

use crate::core::EngineCore;
use crate::delete::Tombstone;
use crate::error::{Error, Result};
use crate::flush::batch_time_bounds;
use crate::memtable::{TimeRange, segment_of};
use crate::read::merge::Merger;
use crate::schema::TableSchema;
use crate::sst::writer::{EncodeOptions, UploadOptions, encode};
use crate::sst::{SstMeta, new_file_id, reader, sst_path, tag_ranges};

use super::picker::CompactionTask;

/// Where a test makes a compaction fail, to check what a crash there leaves behind.
/// Only the `test-util` feature exports it (and [`FailPoints::set`]); in other builds
/// no fail point is ever set.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]
pub struct FailPoints(AtomicU8);

/// A point in [`run`] where a failure can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]
pub enum FailPoint {
    /// After the output is uploaded, before the manifest commit.
    AfterUpload = 1,
}

impl FailPoints {
    /// Fail at `point` from now on (`None`: nowhere).
    #[cfg(feature = "test-util")]
    pub fn set(&self, point: Option<FailPoint>) {
        self.0.store(point.map_or(0, |p| p as u8), Ordering::SeqCst);
    }

    fn hit(&self, point: FailPoint) -> bool {
        self.0.load(Ordering::SeqCst) == point as u8
    }
}

/// What running a compaction needs besides its task, the table schema and the
/// tombstones: no engine. A remote compaction worker would need exactly this.
pub(crate) struct CompactionContext<'a> {
    pub(crate) store: &'a Arc<dyn ObjectStore>,
    pub(crate) store_prefix: &'a str,
    pub(crate) segment_nanos: i64,
    pub(crate) encode: EncodeOptions,
    pub(crate) upload: UploadOptions,
    pub(crate) fail_points: &'a FailPoints,
}

impl<'a> CompactionContext<'a> {
    /// The context of compactions run by `engine`.
    pub(crate) fn of(engine: &'a EngineCore) -> Self {
        Self {
            store: &engine.store,
            store_prefix: &engine.config.store_prefix,
            segment_nanos: engine.config.segment_nanos(),
            encode: engine.config.encode_options(),
            upload: engine.config.upload_options(),
            fail_points: &engine.compactor.fail_points,
        }
    }
}

/// Merge `task`'s inputs into one SST and commit the swap. Runs on `compact`. Rows
/// that tombstones delete are left out (`delete.rs`); `None` if none remain (the
/// inputs are removed and nothing is added).
pub(crate) async fn run(engine: &EngineCore, task: &CompactionTask) -> Result<Option<SstMeta>> {
    let table = engine
        .table(&task.db, &task.table)
        .ok_or_else(|| Error::TableNotFound {
            db: task.db.clone(),
            table: task.table.clone(),
        })?;
    let (schema, tombs) = {
        let st = table.state.lock();
        (Arc::clone(&st.schema), st.tombstones.clone())
    };
    let output = execute(&CompactionContext::of(engine), task, &schema, &tombs).await?;
    // 4. One manifest edit swaps inputs for output; 5. inputs go when unreferenced.
    let remove: Vec<String> = task.inputs.iter().map(|m| m.file_id.clone()).collect();
    let add: Vec<SstMeta> = output.iter().cloned().collect();
    engine
        .replace_ssts(&task.db, &task.table, &remove, add)
        .await?;
    Ok(output)
}

/// The rows of `inputs` (oldest first) merged into batches sorted by (series, time),
/// each input without its deleted rows; `None` if no row is left. Every row must fall in
/// `range` (the task's segment): the inputs are dropped once the output commits.
fn merge(
    task: &CompactionTask,
    schema: &TableSchema,
    tombs: &[Arc<Tombstone>],
    inputs: Vec<(&SstMeta, Bytes)>,
    range: TimeRange,
) -> Result<Option<Vec<RecordBatch>>> {
    let full = schema.arrow_schema();
    let mut decoded: Vec<VecDeque<RecordBatch>> = Vec::with_capacity(inputs.len());
    for (m, bytes) in inputs {
        let deletes = crate::delete::applicable(tombs, m.deletes_seen(), m.min_time, m.max_time);
        let mut batches = VecDeque::new();
        for batch in reader::decode(bytes, None, TimeRange::ALL)? {
            bulkhead_runtime::yield_point();
            let batch = crate::delete::filter_batch(&batch, &deletes)?;
            if batch.num_rows() > 0 {
                batches.push_back(crate::read::align(&batch, &full)?);
            }
        }
        decoded.push(batches);
    }
    let mut merger = Merger::new(schema, Arc::clone(&full), decoded.len())?;
    let mut out = Vec::new();
    loop {
        while let Some(i) = merger.wants() {
            match decoded[i].pop_front() {
                Some(b) => merger.push(i, b)?,
                None => merger.end(i),
            }
        }
        bulkhead_runtime::yield_point();
        match merger.next_batch()? {
            Some(b) => out.push(b),
            None if merger.is_done() => break,
            None => {}
        }
    }
    out.retain(|b| b.num_rows() > 0);
    if out.is_empty() {
        return Ok(None);
    }
    if let Some((lo, hi)) = time_bounds(&out)
        && !(range.contains(lo) && range.contains(hi))
    {
        return Err(Error::Manifest(format!(
            "compaction of {}.{} segment {}: rows from {lo} to {hi} do not all fall in the segment",
            task.db, task.table, task.segment_start
        )));
    }
    Ok(Some(out))
}

/// The least and greatest time of `batches`.
fn time_bounds(batches: &[RecordBatch]) -> Option<(i64, i64)> {
    batches
        .iter()
        .filter_map(batch_time_bounds)
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
}

/// The range of every tag's values over `batches` (see [`SstMeta::tag_ranges`]).
fn tag_ranges_of(batches: &[RecordBatch]) -> BTreeMap<String, (String, String)> {
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    for b in batches {
        for (tag, (lo, hi)) in tag_ranges(b) {
            match out.get_mut(&tag) {
                Some(r) => {
                    if lo < r.0 {
                        r.0 = lo;
                    }
                    if hi > r.1 {
                        r.1 = hi;
                    }
                }
                None => {
                    out.insert(tag, (lo, hi));
                }
            }
        }
    }
    out
}

/// Steps 1 to 3: fetch, merge and encode `task`'s inputs and upload the output;
/// `None` if every row was deleted.
async fn execute(
    ctx: &CompactionContext<'_>,
    task: &CompactionTask,
    schema: &TableSchema,
    tombs: &[Arc<Tombstone>],
) -> Result<Option<SstMeta>> {
    // 1. IO first, all of it: the CPU work below never waits on the network.
    let mut inputs: Vec<(&SstMeta, Bytes)> = Vec::with_capacity(task.inputs.len());
    for m in &task.inputs {
        let bytes = reader::fetch(ctx.store, m).await?;
        inputs.push((m, bytes));
    }

    // 2. CPU: a k-way merge of the inputs (each sorted by series and time), oldest
    // first, so newer rows overwrite older ones field by field.
    let range = segment_of(task.segment_start, ctx.segment_nanos);
    let Some(batches) = merge(task, schema, tombs, inputs, range)? else {
        return Ok(None); // every row was deleted
    };
    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    let (min_time, max_time) =
        time_bounds(&batches).unwrap_or((task.segment_start, task.segment_start));
    let tags = tag_ranges_of(&batches);
    let encoded = encode(&batches, ctx.encode)?;
    drop(batches);

    // 3. Upload through the io-bound store.
    let file_id = new_file_id();
    let path = sst_path(
        ctx.store_prefix,
        &task.db,
        &task.table,
        task.segment_start,
        &file_id,
    );
    let meta = SstMeta {
        file_id,
        db: task.db.clone(),
        table: task.table.clone(),
        path: path.to_string(),
        segment_start: task.segment_start,
        min_time,
        max_time,
        rows,
        bytes: encoded.len() as u64,
        max_seq: task.inputs.iter().map(|m| m.max_seq).max().unwrap_or(0),
        level: task.inputs.iter().map(|m| m.level).max().unwrap_or(0) + 1,
        tag_ranges: tags,
        tombstones_applied: crate::delete::newest(tombs).max(
            task.inputs
                .iter()
                .map(|m| m.tombstones_applied)
                .max()
                .unwrap_or(0),
        ),
        pack_offset: None,
    };
    crate::sst::writer::upload(
        ctx.store,
        &path,
        encoded,
        ctx.upload,
        "upload compacted SST",
    )
    .await?;
    if ctx.fail_points.hit(FailPoint::AfterUpload) {
        return Err(Error::Manifest(
            "injected failure after upload, before commit".into(),
        ));
    }
    Ok(Some(meta))
}
