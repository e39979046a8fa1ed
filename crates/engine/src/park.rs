//! Parking: keep one table whose flush keeps failing from pinning the WAL.
//!
//! The WAL can only delete a segment once every table's rows in it are in SSTs. A
//! table whose flush keeps failing (its object paths are refused, its store prefix is
//! broken) would pin every segment written since, and the WAL would grow until the disk
//! is full. So after [`PARK_AFTER_FAILURES`] consecutive failed flushes, the table's
//! in-memory rows (all of them, frozen first) are written, merged, as one WAL-format
//! record to `{wal_dir}/parked/{hash}.wal`, tmp file + fsync + rename + directory
//! fsync. The record's sequence number is the highest one in those rows (`upto`); from
//! then on the table's memtables up to `upto` no longer hold back WAL truncation
//! ([`crate::table::TableState::min_unflushed_seq`]). Nothing is dropped: the rows stay
//! in memory and readable, the flush keeps being retried, and a newer parking of the
//! same table replaces the file. Once a flush commits past `upto`, the file is deleted.
//!
//! Recovery reads parked records before the WAL: a table's parked record is applied
//! (as of `upto`) unless the manifest says the table is flushed past it, and the
//! table's WAL records at or below `upto` are skipped (the parked record holds their
//! merged rows); later records apply on top as usual.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};

use crate::error::{Error, Result};
use crate::memtable::{Memtable, TimeRange, merged_batch};
use crate::model::{FieldValue, Row, SmolStr, TableWrite, WriteBatch};
use crate::schema::ROLE_KEY;
use crate::table::FrozenMemtable;
use crate::wal::record::{MAGIC, decode_batch, encode_batch, frame};
use crate::wal::replay::parse_segment;

/// Consecutive failed flushes of one table before its rows are parked.
pub(crate) const PARK_AFTER_FAILURES: u32 = 3;

/// One parked record, as recovery finds it.
pub(crate) struct Parked {
    pub(crate) path: PathBuf,
    pub(crate) upto: u64,
    pub(crate) db: String,
    pub(crate) batch: WriteBatch,
}

fn dir(wal_dir: &Path) -> PathBuf {
    wal_dir.join("parked")
}

/// The parked file of `db.table`: named by a hash, as names may be long.
fn file_name(db: &str, table: &str) -> String {
    let hash = db
        .bytes()
        .chain([0])
        .chain(table.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{hash:016x}.wal")
}

/// The rows of `parts` (oldest first, later ones winning field by field), merged.
pub(crate) fn rows_of(parts: &[std::sync::Arc<FrozenMemtable>]) -> Result<Vec<Row>> {
    let schema = parts
        .iter()
        .map(|p| std::sync::Arc::clone(&p.schema))
        .max_by_key(|s| s.tags.len() + s.fields.len())
        .unwrap_or_default();
    let mems: Vec<&Memtable> = parts.iter().map(|p| &p.mem).collect();
    match merged_batch(&mems, &schema, TimeRange::ALL, None)? {
        Some(batch) => batch_rows(&batch),
        None => Ok(Vec::new()),
    }
}

/// Arrow rows back to engine rows: tags and fields by their role metadata; nulls are
/// absent columns.
fn batch_rows(batch: &RecordBatch) -> Result<Vec<Row>> {
    let bad = |what: String| Error::InvalidInput(format!("parking a table: {what}"));
    let mut rows: Vec<Row> = (0..batch.num_rows())
        .map(|_| Row {
            tags: Vec::new(),
            fields: Vec::new(),
            time: 0,
        })
        .collect();
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = SmolStr::new(field.name());
        let role = field.metadata().get(ROLE_KEY).map(String::as_str);
        match role {
            Some("time") => {
                let times = col
                    .as_primitive_opt::<TimestampNanosecondType>()
                    .ok_or_else(|| bad(format!("time column has type {}", col.data_type())))?;
                for (row, t) in rows.iter_mut().zip(times.values()) {
                    row.time = *t;
                }
            }
            Some("tag") => {
                let values = arrow::compute::cast(col, &DataType::Utf8)?;
                let values = values.as_string::<i32>();
                for (i, row) in rows.iter_mut().enumerate() {
                    if values.is_valid(i) {
                        row.tags.push((name.clone(), SmolStr::new(values.value(i))));
                    }
                }
            }
            Some("field") => {
                for (i, row) in rows.iter_mut().enumerate() {
                    if col.is_null(i) {
                        continue;
                    }
                    let value = match col.data_type() {
                        DataType::Float64 => {
                            FieldValue::F64(col.as_primitive::<Float64Type>().value(i))
                        }
                        DataType::Int64 => {
                            FieldValue::I64(col.as_primitive::<Int64Type>().value(i))
                        }
                        DataType::UInt64 => {
                            FieldValue::U64(col.as_primitive::<UInt64Type>().value(i))
                        }
                        DataType::Boolean => FieldValue::Bool(col.as_boolean().value(i)),
                        DataType::Utf8 => {
                            FieldValue::Str(col.as_string::<i32>().value(i).to_string())
                        }
                        other => return Err(bad(format!("field `{name}` has type {other}"))),
                    };
                    row.fields.push((name.clone(), value));
                }
            }
            _ => return Err(bad(format!("column `{name}` has no role"))),
        }
    }
    Ok(rows)
}

/// Write `rows` of `db.table`, as of sequence number `upto`, durably to the table's
/// parked file (replacing an older one). Blocking: call off the async workers.
pub(crate) fn write(
    wal_dir: &Path,
    db: &str,
    table: &str,
    upto: u64,
    rows: Vec<Row>,
) -> Result<()> {
    let io = |op| move |source| Error::Io { op, source };
    let batch = WriteBatch {
        tables: vec![TableWrite {
            table: table.to_string(),
            rows,
        }],
    };
    let mut bytes = MAGIC.to_vec();
    frame(&mut bytes, upto, &encode_batch(db, &batch));
    let dir = dir(wal_dir);
    std::fs::create_dir_all(&dir).map_err(io("create parked dir"))?;
    let path = dir.join(file_name(db, table));
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io("write parked rows"))?;
        f.write_all(&bytes).map_err(io("write parked rows"))?;
        f.sync_all().map_err(io("sync parked rows"))?;
    }
    std::fs::rename(&tmp, &path).map_err(io("rename parked rows"))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync parked dir"))?;
    Ok(())
}

/// Delete the parked file of `db.table` (its rows are committed in SSTs now).
pub(crate) fn remove(wal_dir: &Path, db: &str, table: &str) {
    let path = dir(wal_dir).join(file_name(db, table));
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!(db, table, "flushed a parked table; deleted its parked rows"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not delete parked rows")
        }
    }
}

/// Every parked record under `wal_dir` (blocking). Leftover `.tmp` files (a crash
/// while parking; the previous file, if any, is intact) are deleted.
pub(crate) fn read_all(wal_dir: &Path) -> Result<Vec<Parked>> {
    let io = |op| move |source| Error::Io { op, source };
    let dir = dir(wal_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("list parked rows")(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io("list parked rows"))?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("wal") => {}
            Some("tmp") => {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            _ => continue,
        }
        let bytes = std::fs::read(&path).map_err(io("read parked rows"))?;
        let name = path.display().to_string();
        let contents = parse_segment(&bytes, &name, false, 0)?;
        for (offset, seq, payload) in contents.records {
            let (db, batch) = decode_batch(&payload).map_err(|reason| Error::WalCorruption {
                file: name.clone(),
                offset,
                reason: format!("parked record does not decode: {reason}"),
            })?;
            out.push(Parked {
                path: path.clone(),
                upto: seq,
                db,
                batch,
            });
        }
    }
    out.sort_by_key(|p| p.upto);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: f64, time: i64) -> Row {
        Row {
            tags: vec![(SmolStr::new("h"), SmolStr::new("a"))],
            fields: vec![(SmolStr::new("v"), FieldValue::F64(v))],
            time,
        }
    }

    #[test]
    fn a_parking_replaces_the_previous_one_and_reads_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let long = "p".repeat(300);
        write(dir.path(), "b", &long, 7, vec![row(1.0, 1)]).expect("park");
        write(dir.path(), "b", &long, 9, vec![row(1.0, 1), row(2.0, 2)]).expect("park");
        write(dir.path(), "b", "other", 3, vec![row(3.0, 3)]).expect("park");
        // A crash while parking leaves a tmp file; it is ignored and removed.
        std::fs::write(dir.path().join("parked").join("x.tmp"), b"torn").expect("tmp");
        let parked = read_all(dir.path()).expect("read");
        let got: Vec<(u64, &str, &str, usize)> = parked
            .iter()
            .map(|p| {
                let t = &p.batch.tables[0];
                (p.upto, p.db.as_str(), t.table.as_str(), t.rows.len())
            })
            .collect();
        assert_eq!(got, vec![(3, "b", "other", 1), (9, "b", long.as_str(), 2)]);
        assert_eq!(parked[1].batch.tables[0].rows[1], row(2.0, 2));
        assert!(!dir.path().join("parked").join("x.tmp").exists());
        remove(dir.path(), "b", &long);
        assert_eq!(read_all(dir.path()).expect("read").len(), 1);
    }
}
