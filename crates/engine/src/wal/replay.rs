//! Reading WAL segments at startup: clean records, torn tails, and corruption.
//!
//! The rules (see `docs/storage.md`, "Recovery"):
//! * Segments are replayed in order of their first sequence number (the file name).
//! * Only the *last* segment may end in a torn record: a segment is fsynced before the
//!   next one is created, so damage in an earlier segment cannot be a crash artefact.
//! * In the last segment, a record that is incomplete, or whose CRC fails while nothing
//!   but zeros or nothing at all follows it, is a torn tail: the file is truncated at the
//!   record's start and a warning is logged. Such a record was never acknowledged (a
//!   write is acknowledged only after its whole group was written, and synced if the
//!   sync mode asks for it).
//! * A sealed segment may end in zeros: the preallocated tail that a rotation hands to
//!   a background thread to cut off (`deleter.rs`), which a crash can beat. Only zeros
//!   up to the end of the file qualify, and recovery then checks that the segment's
//!   last record is the one just before the next segment's first (the next file's
//!   name), so zeros over acknowledged records cannot pass as such a tail.
//! * Any other bad record (CRC mismatch with data after it, non-increasing sequence
//!   numbers, an undecodable payload behind a valid CRC) is corruption: startup stops
//!   with [`Error::WalCorruption`] naming the file and byte offset. Acknowledged data is
//!   never silently skipped.

use std::fs;
use std::path::{Path, PathBuf};

use super::record::{HEADER_LEN, MAGIC, MAX_PAYLOAD, checksum};
use crate::error::{Error, Result};

/// A segment file: `{first_seq:020}.wal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    pub(crate) first_seq: u64,
    pub(crate) path: PathBuf,
}

pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

/// Every segment in `dir`, sorted by first sequence number.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>> {
    let io = |source| Error::Io {
        op: "list WAL segments",
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".wal") else {
            continue;
        };
        if let Ok(first_seq) = stem.parse::<u64>() {
            out.push(SegmentFile {
                first_seq,
                path: entry.path(),
            });
        }
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// The records of one segment.
#[derive(Debug, Default)]
pub(crate) struct SegmentContents {
    /// `(byte offset, seq, payload)` in file order.
    pub(crate) records: Vec<(u64, u64, Vec<u8>)>,
    /// Set when a torn tail was found: the file must be truncated to this length.
    pub(crate) torn_at: Option<u64>,
    /// Set when a sealed segment ends in zeros from this offset (an untrimmed
    /// preallocated tail); its last record must then precede the next segment's first.
    pub(crate) zero_tail_at: Option<u64>,
}

/// Read and validate one segment. `is_last` enables torn-tail handling; `min_seq` is the
/// sequence number every record must exceed (the previous segment's last).
pub(crate) fn read_segment(path: &Path, is_last: bool, min_seq: u64) -> Result<SegmentContents> {
    let bytes = fs::read(path).map_err(|source| Error::Io {
        op: "read WAL segment",
        source,
    })?;
    parse_segment(&bytes, &path.display().to_string(), is_last, min_seq)
}

pub(crate) fn parse_segment(
    bytes: &[u8],
    file: &str,
    is_last: bool,
    min_seq: u64,
) -> Result<SegmentContents> {
    let corrupt = |offset: usize, reason: String| Error::WalCorruption {
        file: file.to_string(),
        offset: offset as u64,
        reason,
    };
    let mut out = SegmentContents::default();
    if bytes.len() < MAGIC.len() {
        if is_last && MAGIC.starts_with(bytes) {
            out.torn_at = Some(0);
            return Ok(out);
        }
        return Err(corrupt(0, "segment shorter than its header".into()));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(0, "bad segment magic".into()));
    }
    let mut off = MAGIC.len();
    let mut last_seq = min_seq;
    while off < bytes.len() {
        let rest = &bytes[off..];
        if !is_last && rest.iter().all(|&b| b == 0) {
            out.zero_tail_at = Some(off as u64);
            break;
        }
        let torn = |reason: &str| -> Result<()> {
            if is_last {
                Ok(())
            } else {
                Err(corrupt(off, format!("{reason} in a sealed segment")))
            }
        };
        if rest.len() < HEADER_LEN {
            torn("incomplete record header")?;
            out.torn_at = Some(off as u64);
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&rest[8..16]);
        let seq = u64::from_le_bytes(seq_bytes);
        if len > MAX_PAYLOAD || HEADER_LEN + len > rest.len() {
            torn("record extends past the end of the file")?;
            out.torn_at = Some(off as u64);
            break;
        }
        let payload = &rest[HEADER_LEN..HEADER_LEN + len];
        if checksum(seq, payload) != crc {
            let after = &rest[HEADER_LEN + len..];
            let tail_only = after.iter().all(|&b| b == 0);
            if is_last && tail_only {
                out.torn_at = Some(off as u64);
                break;
            }
            return Err(corrupt(off, "CRC mismatch".into()));
        }
        if seq <= last_seq {
            return Err(corrupt(
                off,
                format!("sequence number {seq} does not follow {last_seq}"),
            ));
        }
        last_seq = seq;
        out.records.push((off as u64, seq, payload.to_vec()));
        off += HEADER_LEN + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::record::frame;
    use super::*;

    fn segment(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (seq, p) in records {
            frame(&mut out, *seq, p);
        }
        out
    }

    #[test]
    fn clean_segment_reads_all_records() {
        let b = segment(&[(1, b"a"), (2, b"bb")]);
        let c = parse_segment(&b, "f", true, 0).expect("parse");
        assert_eq!(c.records.len(), 2);
        assert_eq!(c.torn_at, None);
    }

    #[test]
    fn torn_tail_in_last_segment_is_truncated_and_elsewhere_is_corruption() {
        let full = segment(&[(1, b"hello"), (2, b"world")]);
        let first_end = MAGIC.len() + HEADER_LEN + 5;
        for cut in first_end + 1..full.len() {
            let c = parse_segment(&full[..cut], "f", true, 0).expect("torn tail");
            assert_eq!(c.records.len(), 1);
            assert_eq!(c.torn_at, Some(first_end as u64));
            let err = parse_segment(&full[..cut], "f", false, 0).expect_err("sealed");
            assert!(matches!(err, Error::WalCorruption { .. }), "{err}");
        }
    }

    #[test]
    fn flipped_byte_mid_file_names_the_offset() {
        let mut b = segment(&[(1, b"hello"), (2, b"world")]);
        b[MAGIC.len() + HEADER_LEN + 1] ^= 0xff; // inside the first payload
        match parse_segment(&b, "seg", true, 0) {
            Err(Error::WalCorruption { file, offset, .. }) => {
                assert_eq!(file, "seg");
                assert_eq!(offset, MAGIC.len() as u64);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let mut b = segment(&[(1, b"hello")]);
        b.extend_from_slice(&[0u8; 64]);
        let c = parse_segment(&b, "f", true, 0).expect("torn");
        assert_eq!(c.records.len(), 1);
        assert!(c.torn_at.is_some());
    }

    #[test]
    fn a_sealed_segment_may_end_in_zeros_but_not_hold_them_between_records() {
        let mut b = segment(&[(1, b"hello"), (2, b"world")]);
        let end = b.len() as u64;
        b.extend_from_slice(&[0u8; 4096]);
        let c = parse_segment(&b, "f", false, 0).expect("an untrimmed tail");
        assert_eq!(c.records.len(), 2);
        assert_eq!(c.zero_tail_at, Some(end));
        assert_eq!(c.torn_at, None);

        // Zeros followed by anything else are not a tail.
        b.push(1);
        assert!(matches!(
            parse_segment(&b, "f", false, 0),
            Err(Error::WalCorruption { .. })
        ));
        // Zeroed records inside a sealed segment are corruption, as before.
        let mut b = segment(&[(1, b"hello"), (2, b"world")]);
        let second = MAGIC.len() + HEADER_LEN + 5;
        b[second..second + HEADER_LEN].fill(0);
        assert!(matches!(
            parse_segment(&b, "f", false, 0),
            Err(Error::WalCorruption { .. })
        ));
    }

    #[test]
    fn sequence_must_increase() {
        let b = segment(&[(5, b"a"), (5, b"b")]);
        assert!(matches!(
            parse_segment(&b, "f", true, 0),
            Err(Error::WalCorruption { .. })
        ));
    }
}
