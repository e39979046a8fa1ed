//! Fuzz-target bodies for the engine's byte decoders (not a public API).
//!
//! The `fuzz/` crate (cargo-fuzz) and the corpus regression tests call these same
//! functions, so a corpus file means the same thing to both. Each function panics when
//! an invariant breaks; bad input itself must only ever produce an `Err`.

use crate::error::Error;
use crate::wal::record::{HEADER_LEN, MAGIC, decode_batch, encode_batch, frame};
use crate::wal::replay::parse_segment;

/// WAL record decoding. `data` is used three ways:
///
/// 1. as a record payload: [`decode_batch`] must not panic, and a payload it accepts
///    must re-encode to a payload that decodes to the same batch (canonical form: the
///    re-encoding is a fixed point);
/// 2. as a whole segment file, sealed and last: [`parse_segment`] must not panic,
///    records must come out in file order with increasing sequence numbers, a torn
///    tail is only reported for the last segment, and anything else is a
///    `WalCorruption` naming an offset inside the file;
/// 3. framed as the payload of one valid record (what the WAL writer produces): the
///    segment must parse to exactly that record, with no torn tail.
pub fn wal_record(data: &[u8]) {
    // 1. Payload decoding.
    if let Ok((db, batch)) = decode_batch(data) {
        let once = encode_batch(&db, &batch);
        let (db2, batch2) = decode_batch(&once).expect("a re-encoded payload decodes");
        assert_eq!(db, db2, "database name survives re-encoding");
        let twice = encode_batch(&db2, &batch2);
        // Bytes, not `==` on the batch: a NaN float must round-trip bit for bit too.
        assert_eq!(once, twice, "encoding is canonical after one round trip");
        assert_eq!(batch.row_count(), batch2.row_count());
    }

    // 2. Whole segments, as read at startup.
    for is_last in [true, false] {
        match parse_segment(data, "fuzz", is_last, 0) {
            Ok(contents) => {
                assert!(data.len() >= MAGIC.len() || contents.records.is_empty());
                let mut prev_off = 0u64;
                let mut prev_seq = 0u64;
                for (off, seq, payload) in &contents.records {
                    assert!(*off >= MAGIC.len() as u64 && *off >= prev_off);
                    assert!(*seq > prev_seq, "sequence numbers increase");
                    let end = *off as usize + HEADER_LEN + payload.len();
                    assert!(end <= data.len(), "record inside the file");
                    assert_eq!(&data[*off as usize + HEADER_LEN..end], &payload[..]);
                    prev_off = *off + 1;
                    prev_seq = *seq;
                    let _ = decode_batch(payload);
                }
                if let Some(torn) = contents.torn_at {
                    assert!(is_last, "only the last segment may have a torn tail");
                    assert!(torn as usize <= data.len());
                }
            }
            Err(Error::WalCorruption { offset, reason, .. }) => {
                assert!(offset as usize <= data.len(), "offset inside the file");
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("segment parsing failed with a non-corruption error: {other}"),
        }
    }

    // 3. The same bytes behind a valid frame.
    let mut segment = MAGIC.to_vec();
    frame(&mut segment, 1, data);
    let contents = parse_segment(&segment, "fuzz", false, 0).expect("a valid frame parses");
    assert_eq!(contents.torn_at, None);
    assert_eq!(contents.records.len(), 1);
    assert_eq!(contents.records[0].1, 1);
    assert_eq!(contents.records[0].2, data);
}

/// A WAL segment file holding `records` (`(seq, db, batch)`, increasing seqs), framed
/// as the WAL writer frames them, and its file name in the WAL directory. For tests that
/// need a data directory as an older version left it (e.g. with names the write path
/// now refuses).
pub fn wal_segment(records: &[(u64, &str, &crate::WriteBatch)]) -> (String, Vec<u8>) {
    let first = records.first().map_or(1, |r| r.0);
    let mut bytes = MAGIC.to_vec();
    for (seq, db, batch) in records {
        frame(&mut bytes, *seq, &encode_batch(db, batch));
    }
    (format!("{first:020}.wal"), bytes)
}
