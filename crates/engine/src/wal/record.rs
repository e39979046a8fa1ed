//! WAL framing and the binary encoding of a write batch.
//!
//! A segment file starts with the 8-byte magic [`MAGIC`], then holds records:
//!
//! ```text
//! +---------+---------+---------+-----------------+
//! | len u32 | crc u32 | seq u64 | payload (len B) |   little endian
//! +---------+---------+---------+-----------------+
//! crc = CRC-32 (IEEE, crc32fast) over seq bytes ++ payload
//! ```
//!
//! The payload is one database's [`WriteBatch`]. Version 2 (what [`encode_batch`]
//! writes) starts with [`V2_MARKER`]; integers are LEB128 varints (signed ones
//! zigzagged), strings a varint length + UTF-8 bytes. Each table carries a dictionary of
//! its tag and field names, built as the rows go: a name index equal to the dictionary's
//! length means "a new name follows", so each name is written once per table instead of
//! once per row, and a row's time is the delta from the previous row's. A TSBS row
//! (10 tags, 10 small integer fields) takes ~125 bytes instead of version 1's ~475:
//!
//! ```text
//! marker | db | n_tables | { table | n_rows | { n_tags | {name_ref value}* |
//!                                                n_fields | {name_ref type value}* | time_delta }* }*
//! ```
//!
//! Version 1 payloads (strings `u32` length + bytes, counts `u32`, names in every row,
//! fixed-width values) are still read, so a WAL written before the change replays.
//! The decoder sees bytes from disk, so it checks every length and never panics on bad
//! input.

use crate::model::{FieldValue, Row, SmolStr, TableWrite, WriteBatch};

/// First bytes of every WAL segment (format version 1).
pub(crate) const MAGIC: &[u8; 8] = b"BHWAL\0\0\x01";
/// Bytes before a record's payload.
pub(crate) const HEADER_LEN: usize = 16;
/// Largest payload the decoder accepts (a larger length field is damage, not data).
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

/// Append one framed record to `out`.
pub(crate) fn frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The CRC a record with this seq and payload must carry.
pub(crate) fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// First bytes of a version-2 payload. A version-1 payload starts with its database
/// name's `u32` length, which is never `u32::MAX` (payloads are under 1 GiB).
pub(crate) const V2_MARKER: &[u8; 5] = b"\xff\xff\xff\xff\x02";

/// Field value type bytes (both versions).
const F64: u8 = 0;
const I64: u8 = 1;
const U64: u8 = 2;
const BOOL: u8 = 3;
const STR: u8 = 4;

/// Encode `batch` for database `db` (version 2).
pub(crate) fn encode_batch(db: &str, batch: &WriteBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + batch.row_count() * 128);
    out.extend_from_slice(V2_MARKER);
    put_bytes(&mut out, db.as_bytes());
    put_varint(&mut out, batch.tables.len() as u64);
    for t in &batch.tables {
        put_bytes(&mut out, t.table.as_bytes());
        put_varint(&mut out, t.rows.len() as u64);
        let mut names = Names::default();
        let mut prev_time = 0i64;
        for row in &t.rows {
            put_varint(&mut out, row.tags.len() as u64);
            for (i, (k, v)) in row.tags.iter().enumerate() {
                names.put(&mut out, Slot::Tag(i), k);
                put_bytes(&mut out, v.as_bytes());
            }
            put_varint(&mut out, row.fields.len() as u64);
            for (i, (k, v)) in row.fields.iter().enumerate() {
                names.put(&mut out, Slot::Field(i), k);
                match v {
                    FieldValue::F64(x) => {
                        out.push(F64);
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                    FieldValue::I64(x) => {
                        out.push(I64);
                        put_varint(&mut out, zigzag(*x));
                    }
                    FieldValue::U64(x) => {
                        out.push(U64);
                        put_varint(&mut out, *x);
                    }
                    FieldValue::Bool(x) => {
                        out.push(BOOL);
                        out.push(u8::from(*x));
                    }
                    FieldValue::Str(s) => {
                        out.push(STR);
                        put_bytes(&mut out, s.as_bytes());
                    }
                }
            }
            put_varint(&mut out, zigzag(row.time.wrapping_sub(prev_time)));
            prev_time = row.time;
        }
    }
    out
}

/// Where a name sits in its row: rows of one source repeat their names in the same
/// order, so the index used at the same slot of the previous row is tried first.
#[derive(Clone, Copy)]
enum Slot {
    Tag(usize),
    Field(usize),
}

/// One table's name dictionary while encoding.
#[derive(Default)]
struct Names {
    ids: foldhash::HashMap<SmolStr, u32>,
    by_tag_slot: Vec<(SmolStr, u32)>,
    by_field_slot: Vec<(SmolStr, u32)>,
}

impl Names {
    /// Write the reference to `name`: its index, or the next index and the name.
    fn put(&mut self, out: &mut Vec<u8>, slot: Slot, name: &SmolStr) {
        let (cache, i) = match slot {
            Slot::Tag(i) => (&mut self.by_tag_slot, i),
            Slot::Field(i) => (&mut self.by_field_slot, i),
        };
        if let Some((cached, id)) = cache.get(i)
            && cached == name
        {
            put_varint(out, u64::from(*id));
            return;
        }
        let next = self.ids.len() as u32;
        let id = *self.ids.entry(name.clone()).or_insert(next);
        put_varint(out, u64::from(id));
        if id == next {
            put_bytes(out, name.as_bytes());
        }
        if i < cache.len() {
            cache[i] = (name.clone(), id);
        } else if i == cache.len() {
            cache.push((name.clone(), id));
        }
    }
}

/// First bytes of a drop payload (`DROP TABLE`/`DROP DATABASE`): then the database,
/// whether the database itself goes, and the tables dropped (varint count + names).
pub(crate) const DROP_MARKER: &[u8; 5] = b"\xff\xff\xff\xff\x10";

/// What one WAL record holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Write(String, WriteBatch),
    Drop(DropOp),
    Delete(crate::delete::DeleteOp),
}

/// First bytes of a delete payload: then the [`crate::delete::DeleteOp`] as JSON.
pub(crate) const DELETE_MARKER: &[u8; 5] = b"\xff\xff\xff\xff\x11";

/// Encode a delete.
pub(crate) fn encode_delete(op: &crate::delete::DeleteOp) -> Vec<u8> {
    let mut out = DELETE_MARKER.to_vec();
    // Serializing plain strings and integers cannot fail.
    out.extend(serde_json::to_vec(op).unwrap_or_default());
    out
}

/// Tables dropped at a record's sequence number: every row of theirs with a lower
/// sequence number is gone; later writes of the same names make new tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DropOp {
    pub(crate) db: String,
    pub(crate) tables: Vec<String>,
    /// `DROP DATABASE`: the database no longer exists once its tables are gone.
    pub(crate) database: bool,
}

/// Encode a drop.
pub(crate) fn encode_drop(op: &DropOp) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + op.tables.iter().map(|t| t.len() + 2).sum::<usize>());
    out.extend_from_slice(DROP_MARKER);
    put_bytes(&mut out, op.db.as_bytes());
    out.push(u8::from(op.database));
    put_varint(&mut out, op.tables.len() as u64);
    for t in &op.tables {
        put_bytes(&mut out, t.as_bytes());
    }
    out
}

/// Decode any record payload: a write batch (either version) or a drop.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<Record, String> {
    if let Some(rest) = bytes.strip_prefix(DELETE_MARKER.as_slice()) {
        return serde_json::from_slice(rest)
            .map(Record::Delete)
            .map_err(|e| format!("bad delete payload: {e}"));
    }
    let Some(rest) = bytes.strip_prefix(DROP_MARKER.as_slice()) else {
        return decode_batch(bytes).map(|(db, batch)| Record::Write(db, batch));
    };
    let mut c = Cursor {
        bytes: rest,
        pos: 0,
    };
    let db = c.v_str()?.to_string();
    let database = match c.u8()? {
        0 => false,
        1 => true,
        b => return Err(format!("bad drop-database flag {b}")),
    };
    let n = c.count()?;
    let mut tables = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        tables.push(c.v_str()?.to_string());
    }
    if c.pos != rest.len() {
        return Err(format!(
            "{} trailing bytes in drop payload",
            rest.len() - c.pos
        ));
    }
    Ok(Record::Drop(DropOp {
        db,
        tables,
        database,
    }))
}

/// Decode a payload written by [`encode_batch`] (either version).
pub(crate) fn decode_batch(bytes: &[u8]) -> Result<(String, WriteBatch), String> {
    match bytes.strip_prefix(V2_MARKER.as_slice()) {
        Some(rest) => decode_v2(rest),
        None => decode_v1(bytes),
    }
}

fn decode_v2(bytes: &[u8]) -> Result<(String, WriteBatch), String> {
    let mut c = Cursor { bytes, pos: 0 };
    let db = c.v_str()?.to_string();
    let n_tables = c.count()?;
    let mut tables = Vec::with_capacity(n_tables.min(1024));
    for _ in 0..n_tables {
        let table = c.v_str()?.to_string();
        let n_rows = c.count()?;
        let mut rows = Vec::with_capacity(n_rows.min(1 << 16));
        let mut names: Vec<SmolStr> = Vec::new();
        let mut time = 0i64;
        for _ in 0..n_rows {
            let n_tags = c.count()?;
            let mut tags = Vec::with_capacity(n_tags.min(256));
            for _ in 0..n_tags {
                let name = c.name(&mut names)?;
                tags.push((name, SmolStr::new(c.v_str()?)));
            }
            let n_fields = c.count()?;
            let mut fields = Vec::with_capacity(n_fields.min(256));
            for _ in 0..n_fields {
                let name = c.name(&mut names)?;
                let value = match c.u8()? {
                    F64 => FieldValue::F64(f64::from_le_bytes(c.array()?)),
                    I64 => FieldValue::I64(unzigzag(c.varint()?)),
                    U64 => FieldValue::U64(c.varint()?),
                    BOOL => FieldValue::Bool(c.u8()? != 0),
                    STR => FieldValue::Str(c.v_str()?.to_string()),
                    t => return Err(format!("unknown field type tag {t}")),
                };
                fields.push((name, value));
            }
            time = time.wrapping_add(unzigzag(c.varint()?));
            rows.push(Row { tags, fields, time });
        }
        tables.push(TableWrite { table, rows });
    }
    if c.pos != bytes.len() {
        return Err(format!("{} trailing bytes in payload", bytes.len() - c.pos));
    }
    Ok((db, WriteBatch { tables }))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// LEB128.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encode `batch` in version 1 (tests of reading old WALs).
#[cfg(test)]
pub(crate) fn encode_batch_v1(db: &str, batch: &WriteBatch) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + batch.row_count() * 128);
    put_str(&mut out, db);
    put_u32(&mut out, batch.tables.len() as u32);
    for t in &batch.tables {
        put_str(&mut out, &t.table);
        put_u32(&mut out, t.rows.len() as u32);
        for row in &t.rows {
            put_u32(&mut out, row.tags.len() as u32);
            for (k, v) in &row.tags {
                put_str(&mut out, k);
                put_str(&mut out, v);
            }
            put_u32(&mut out, row.fields.len() as u32);
            for (k, v) in &row.fields {
                put_str(&mut out, k);
                match v {
                    FieldValue::F64(x) => {
                        out.push(0);
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                    FieldValue::I64(x) => {
                        out.push(1);
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                    FieldValue::U64(x) => {
                        out.push(2);
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                    FieldValue::Bool(x) => {
                        out.push(3);
                        out.push(u8::from(*x));
                    }
                    FieldValue::Str(s) => {
                        out.push(4);
                        put_str(&mut out, s);
                    }
                }
            }
            out.extend_from_slice(&row.time.to_le_bytes());
        }
    }
    out
}

fn decode_v1(bytes: &[u8]) -> Result<(String, WriteBatch), String> {
    let mut c = Cursor { bytes, pos: 0 };
    let db = c.string()?;
    let n_tables = c.u32()? as usize;
    let mut tables = Vec::with_capacity(n_tables.min(1024));
    for _ in 0..n_tables {
        let table = c.string()?;
        let n_rows = c.u32()? as usize;
        let mut rows = Vec::with_capacity(n_rows.min(1 << 16));
        for _ in 0..n_rows {
            let n_tags = c.u32()? as usize;
            let mut tags = Vec::with_capacity(n_tags.min(256));
            for _ in 0..n_tags {
                tags.push((c.smol()?, c.smol()?));
            }
            let n_fields = c.u32()? as usize;
            let mut fields = Vec::with_capacity(n_fields.min(256));
            for _ in 0..n_fields {
                let name = c.smol()?;
                let value = match c.u8()? {
                    0 => FieldValue::F64(f64::from_le_bytes(c.array()?)),
                    1 => FieldValue::I64(i64::from_le_bytes(c.array()?)),
                    2 => FieldValue::U64(u64::from_le_bytes(c.array()?)),
                    3 => FieldValue::Bool(c.u8()? != 0),
                    4 => FieldValue::Str(c.string()?),
                    t => return Err(format!("unknown field type tag {t}")),
                };
                fields.push((name, value));
            }
            let time = i64::from_le_bytes(c.array()?);
            rows.push(Row { tags, fields, time });
        }
        tables.push(TableWrite { table, rows });
    }
    if c.pos != bytes.len() {
        return Err(format!("{} trailing bytes in payload", bytes.len() - c.pos));
    }
    Ok((db, WriteBatch { tables }))
}

#[cfg(test)]
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!("payload truncated at byte {}", self.pos)),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, String> {
        Ok(self.str()?.to_string())
    }

    /// A name or tag value: inline up to 23 bytes, so replay allocates nothing for them.
    fn smol(&mut self) -> Result<SmolStr, String> {
        self.str().map(SmolStr::new)
    }

    /// A LEB128 varint of at most 10 bytes that fits in a u64.
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                return Err(format!("varint overflows 64 bits at byte {}", self.pos));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    /// A count of items that each take at least one byte: never more than the bytes left.
    fn count(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return Err(format!(
                "count {n} exceeds the {left} bytes left at byte {}",
                self.pos
            ));
        }
        Ok(n as usize)
    }

    /// A varint-length string (version 2).
    fn v_str(&mut self) -> Result<&'a str, String> {
        let n = self.count()?;
        let s = self.take(n)?;
        std::str::from_utf8(s).map_err(|e| format!("invalid UTF-8: {e}"))
    }

    /// A name reference (version 2): an index into `names`, or `names.len()` followed
    /// by a new name, which joins them.
    fn name(&mut self, names: &mut Vec<SmolStr>) -> Result<SmolStr, String> {
        let id = self.varint()?;
        match usize::try_from(id) {
            Ok(i) if i < names.len() => Ok(names[i].clone()),
            Ok(i) if i == names.len() => {
                let name = SmolStr::new(self.v_str()?);
                names.push(name.clone());
                Ok(name)
            }
            _ => Err(format!(
                "name index {id} beyond the {} names defined, at byte {}",
                names.len(),
                self.pos
            )),
        }
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let n = self.u32()? as usize;
        let s = self.take(n)?;
        std::str::from_utf8(s).map_err(|e| format!("invalid UTF-8: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> WriteBatch {
        let mut b = WriteBatch::default();
        b.push(
            "cpu",
            Row {
                tags: vec![("host".into(), "a".into())],
                fields: vec![
                    ("f".into(), FieldValue::F64(1.5)),
                    ("i".into(), FieldValue::I64(-3)),
                    ("u".into(), FieldValue::U64(7)),
                    ("b".into(), FieldValue::Bool(true)),
                    ("s".into(), FieldValue::Str("x y".into())),
                ],
                time: 42,
            },
        );
        b
    }

    #[test]
    fn version_1_payloads_still_decode() {
        let bytes = encode_batch_v1("db", &sample());
        let (db, back) = decode_batch(&bytes).expect("decode");
        assert_eq!(db, "db");
        assert_eq!(back, sample());
    }

    #[test]
    fn names_are_written_once_per_table_and_rows_keep_theirs() {
        let mut b = WriteBatch::default();
        for i in 0..100i64 {
            // Changing tag order and field sets: the slot cache must not mix them up.
            let mut tags = vec![
                (SmolStr::new("host"), SmolStr::new(format!("h{}", i % 7))),
                (SmolStr::new("region"), SmolStr::new("eu")),
            ];
            if i % 3 == 0 {
                tags.reverse();
            }
            let mut fields = vec![(SmolStr::new("usage_user"), FieldValue::I64(i - 50))];
            if i % 5 == 0 {
                fields.insert(0, (SmolStr::new("usage_system"), FieldValue::U64(i as u64)));
            }
            b.push(
                "cpu",
                Row {
                    tags,
                    fields,
                    time: 1_700_000_000_000_000_000 + (i % 4) * 10_000_000_000 - i,
                },
            );
        }
        let v2 = encode_batch("db", &b);
        let (_, back) = decode_batch(&v2).expect("decode");
        assert_eq!(back, b);
        let v1 = encode_batch_v1("db", &b);
        assert!(
            v2.len() * 3 < v1.len(),
            "v2 {} bytes vs v1 {} bytes",
            v2.len(),
            v1.len()
        );
        assert_eq!(
            v2.windows(b"usage_user".len())
                .filter(|w| *w == b"usage_user")
                .count(),
            1
        );
    }

    #[test]
    fn extreme_values_roundtrip() {
        let mut b = WriteBatch::default();
        for (i, t) in [i64::MIN, i64::MAX, 0, -1, i64::MIN]
            .into_iter()
            .enumerate()
        {
            b.push(
                "t",
                Row {
                    tags: vec![],
                    fields: vec![
                        (
                            "i".into(),
                            FieldValue::I64(if i % 2 == 0 { i64::MIN } else { i64::MAX }),
                        ),
                        ("u".into(), FieldValue::U64(u64::MAX)),
                        ("f".into(), FieldValue::F64(f64::NAN)),
                    ],
                    time: t,
                },
            );
        }
        let bytes = encode_batch("", &b);
        let (_, back) = decode_batch(&bytes).expect("decode");
        assert_eq!(
            bytes,
            encode_batch("", &back),
            "NaN and extremes survive bit for bit"
        );
        assert_eq!(
            back.tables[0]
                .rows
                .iter()
                .map(|r| r.time)
                .collect::<Vec<_>>(),
            vec![i64::MIN, i64::MAX, 0, -1, i64::MIN]
        );
    }

    #[test]
    fn bad_name_index_and_huge_counts_are_errors() {
        let mut bytes = V2_MARKER.to_vec();
        bytes.extend_from_slice(&[2, b'd', b'b', 1, 1, b't', 1, 1, 5]); // name index 5 of 0
        assert!(decode_batch(&bytes).unwrap_err().contains("name index 5"));
        let mut bytes = V2_MARKER.to_vec();
        bytes.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff, 0x0f]); // 4G tables
        assert!(decode_batch(&bytes).unwrap_err().contains("exceeds"));
    }

    #[test]
    fn batch_roundtrips() {
        let bytes = encode_batch("db", &sample());
        let (db, back) = decode_batch(&bytes).expect("decode");
        assert_eq!(db, "db");
        assert_eq!(back, sample());
    }

    #[test]
    fn truncated_payload_is_an_error_not_a_panic() {
        let bytes = encode_batch("db", &sample());
        for n in 0..bytes.len() {
            assert!(decode_batch(&bytes[..n]).is_err(), "prefix {n} decoded");
        }
    }

    #[test]
    fn frame_carries_checksum() {
        let mut out = Vec::new();
        frame(&mut out, 9, b"abc");
        assert_eq!(out.len(), HEADER_LEN + 3);
        let crc = u32::from_le_bytes([out[4], out[5], out[6], out[7]]);
        assert_eq!(crc, checksum(9, b"abc"));
    }

    #[test]
    fn drops_round_trip_and_are_told_apart_from_writes() {
        let op = DropOp {
            db: "db".into(),
            tables: vec!["cpu".into(), "mem ü".into()],
            database: true,
        };
        let bytes = encode_drop(&op);
        assert_eq!(decode_record(&bytes), Ok(Record::Drop(op.clone())));
        let batch = sample();
        assert_eq!(
            decode_record(&encode_batch("db", &batch)),
            Ok(Record::Write("db".into(), batch))
        );
        // Damage is an error, never a panic or a different drop.
        for cut in 0..bytes.len() {
            assert!(decode_record(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode_record(&long).is_err());
    }
}
