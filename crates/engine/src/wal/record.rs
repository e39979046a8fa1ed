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
//! The payload is one database's [`WriteBatch`]: strings are `u32` length + UTF-8 bytes,
//! counts are `u32`, a field value is a type byte then its bytes. The decoder sees bytes
//! from disk, so it checks every length and never panics on bad input.

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

/// Encode `batch` for database `db`.
pub(crate) fn encode_batch(db: &str, batch: &WriteBatch) -> Vec<u8> {
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

/// Decode a payload written by [`encode_batch`].
pub(crate) fn decode_batch(bytes: &[u8]) -> Result<(String, WriteBatch), String> {
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

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

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
}
