//! The WAL writer under injected IO failures: every group either lands whole (and is
//! acknowledged) or fails and leaves nothing behind, so the segments always parse as
//! clean sealed segments, with exactly the acknowledged records.

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc as tmpsc;

use super::replay::{list_segments, read_segment};
use super::segment::Faults;
use super::*;

struct Harness {
    _dir: tempfile::TempDir,
    path: PathBuf,
    writer: Writer,
    faults: Arc<Faults>,
    tx: tmpsc::UnboundedSender<Appended<usize>>,
    rx: tmpsc::UnboundedReceiver<Appended<usize>>,
}

impl Harness {
    fn open(sync: WalSync, segment_size: u64) -> Self {
        Self::open_with(sync, segment_size, false)
    }

    fn open_with(sync: WalSync, segment_size: u64, preallocate: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wal");
        let opts = WalOptions {
            dir: path.clone(),
            sync,
            segment_size,
            next_seq: 1,
            existing: Vec::new(),
            preallocate,
            latency_slice: std::time::Duration::ZERO,
            nice: 0,
        };
        let mut writer = Writer::open(opts, Arc::default()).expect("open WAL");
        let faults = Arc::new(Faults::default());
        writer.active.faults = Arc::clone(&faults);
        let (tx, rx) = tmpsc::unbounded_channel();
        Self {
            _dir: dir,
            path,
            writer,
            faults,
            tx,
            rx,
        }
    }

    /// Write one group; the outcome of each payload, in order.
    fn group(&mut self, payloads: &[Vec<u8>]) -> Vec<std::result::Result<u64, WalError>> {
        let mut cmds: Vec<Command<usize>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Command::Append {
                payload: p.clone(),
                item: i,
            })
            .collect();
        assert!(!self.writer.process(&mut cmds, &self.tx));
        (0..payloads.len())
            .map(|i| {
                let a = self.rx.try_recv().expect("an outcome per append");
                assert_eq!(a.item, i);
                a.result
            })
            .collect()
    }

    /// Every record on disk, parsing every segment as *sealed*: a torn tail, a hole or
    /// leftovers of a failed group anywhere is an error.
    fn records(&self) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut last = 0;
        for seg in list_segments(&self.path).expect("list") {
            let c = read_segment(&seg.path, false, last)
                .unwrap_or_else(|e| panic!("{}: {e}", seg.path.display()));
            assert_eq!(c.zero_tail_at, None, "{}: untrimmed", seg.path.display());
            for (_, seq, payload) in c.records {
                last = seq;
                out.push((seq, payload));
            }
        }
        out
    }
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

#[test]
fn a_full_disk_fails_the_group_and_leaves_no_hole() {
    let mut h = Harness::open(WalSync::Always, 1 << 20);
    let a = payload(1, 100);
    assert!(h.group(std::slice::from_ref(&a))[0].is_ok());
    // Room for 10 bytes: a short write of the next group, then ENOSPC.
    h.faults.space.store(10, Ordering::SeqCst);
    let failed = h.group(&[payload(2, 100), payload(3, 100)]);
    for r in &failed {
        let e = r
            .as_ref()
            .expect_err("a group that did not fit is not acknowledged");
        assert_eq!(e.kind, ErrorKind::StorageFull, "{e}");
    }
    let err = wal_io_error(failed[0].clone().unwrap_err());
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == ErrorKind::StorageFull),
        "{err}"
    );
    // Space is back: the next group lands right after the first one.
    h.faults.space.store(-1, Ordering::SeqCst);
    let d = payload(4, 50);
    assert_eq!(h.group(std::slice::from_ref(&d)), vec![Ok(4)]);
    assert_eq!(h.records(), vec![(1, a), (4, d)]);
}

#[test]
fn a_failed_repair_is_retried_before_each_group_until_it_succeeds() {
    let mut h = Harness::open(WalSync::Always, 1 << 20);
    let a = payload(1, 64);
    assert!(h.group(std::slice::from_ref(&a))[0].is_ok());
    // The write leaves 10 bytes of junk and the truncation that should remove them
    // fails twice: the group after it fails too (the segment is not trusted yet).
    h.faults.space.store(10, Ordering::SeqCst);
    h.faults.failing_truncates.store(2, Ordering::SeqCst);
    assert!(h.group(&[payload(2, 64)])[0].is_err());
    let second = h.group(&[payload(3, 64)]);
    let e = second[0].as_ref().expect_err("still broken");
    assert!(e.message.contains("could not be repaired"), "{e}");
    h.faults.space.store(-1, Ordering::SeqCst);
    let d = payload(4, 64);
    assert_eq!(h.group(std::slice::from_ref(&d)), vec![Ok(4)]);
    assert_eq!(h.records(), vec![(1, a), (4, d)]);
}

#[test]
fn a_failed_fsync_fails_its_group_and_later_groups_land() {
    let mut h = Harness::open(WalSync::Always, 1 << 20);
    let a = payload(1, 80);
    assert!(h.group(std::slice::from_ref(&a))[0].is_ok());
    h.faults.failing_syncs.store(1, Ordering::SeqCst);
    let e = h
        .group(&[payload(2, 80)])
        .remove(0)
        .expect_err("unsynced group");
    assert!(e.message.contains("fdatasync"), "{e}");
    let c = payload(3, 80);
    assert_eq!(h.group(std::slice::from_ref(&c)), vec![Ok(3)]);
    assert_eq!(h.records(), vec![(1, a), (3, c)]);
}

#[test]
fn interval_mode_rewrites_acknowledged_records_after_a_failed_fsync() {
    let mut h = Harness::open(WalSync::Interval(Duration::from_secs(3600)), 1 << 20);
    let (a, b) = (payload(1, 70), payload(2, 90));
    assert_eq!(h.group(std::slice::from_ref(&a)), vec![Ok(1)]);
    assert_eq!(h.group(std::slice::from_ref(&b)), vec![Ok(2)]);
    // The sync fails and the injected failure zeroes the unsynced bytes in the file,
    // as Linux may drop dirty pages after a failed writeback. The repair re-writes
    // them from memory and syncs them, so the acknowledged records survive.
    h.faults.failing_syncs.store(1, Ordering::SeqCst);
    h.writer.sync_now().expect("repaired");
    assert_eq!(h.records(), vec![(1, a.clone()), (2, b.clone())]);
    let c = payload(3, 10);
    assert_eq!(h.group(std::slice::from_ref(&c)), vec![Ok(3)]);
    h.writer.sync_now().expect("sync");
    assert_eq!(h.records(), vec![(1, a), (2, b), (3, c)]);
}

#[test]
fn failures_across_rotations_keep_exactly_the_acknowledged_records() {
    // 4 KiB segments and ~1 KiB groups: rotations all the time, and some groups hit
    // a full disk, a failed sync, or a full disk whose clean-up fails once.
    let mut h = Harness::open(WalSync::Always, 4096);
    let mut acked = Vec::new();
    for i in 0..60usize {
        match i % 7 {
            2 => h
                .faults
                .space
                .store((i * 37 % 900) as i64, Ordering::SeqCst),
            4 => h.faults.failing_syncs.store(1, Ordering::SeqCst),
            6 => {
                h.faults.space.store(5, Ordering::SeqCst);
                h.faults.failing_truncates.store(1, Ordering::SeqCst);
            }
            _ => h.faults.space.store(-1, Ordering::SeqCst),
        }
        let group: Vec<Vec<u8>> = (0..3).map(|k| payload(i * 3 + k, 300 + k)).collect();
        for (r, p) in h.group(&group).into_iter().zip(group) {
            if let Ok(seq) = r {
                acked.push((seq, p));
            }
        }
    }
    h.faults.space.store(-1, Ordering::SeqCst);
    h.writer.sync_now().expect("final sync");
    assert!(acked.len() >= 60, "most groups land: {}", acked.len());
    assert!(
        h.writer.sealed.len() >= 5,
        "rotations happened: {}",
        h.writer.sealed.len()
    );
    assert_eq!(h.records(), acked);
}

/// Preallocated segments (`prealloc.rs`): after a crash the zeros past the last record
/// read as a torn tail (in the active segment) or a zero tail (in a sealed one not yet
/// trimmed) and every acknowledged record is there; sealed segments are trimmed off the
/// WAL thread, and the active one at shutdown.
#[test]
fn preallocated_segments_hold_exactly_the_acknowledged_records() {
    let segment_size = 3 << 20;
    let mut h = Harness::open_with(WalSync::Always, segment_size, true);
    let mut acked = Vec::new();
    let mut i = 0;
    let mut append = |h: &mut Harness, acked: &mut Vec<(u64, Vec<u8>)>| {
        let p = payload(i, 64 << 10);
        i += 1;
        let seq = h.group(std::slice::from_ref(&p))[0]
            .clone()
            .expect("acknowledged");
        acked.push((seq, p));
    };
    // Past the traffic threshold: a spare is prepared in the background.
    while h.writer.active.len() < super::prealloc::TRAFFIC_THRESHOLD {
        append(&mut h, &mut acked);
    }
    append(&mut h, &mut acked);
    let spare = h.writer.spare.as_mut().expect("preallocation on");
    let waited = std::time::Instant::now();
    while !spare.is_ready() {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "spare never got ready"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The next group moves onto it, then fills it past its size: one more rotation.
    append(&mut h, &mut acked);
    assert!(h.writer.active.is_preallocated());
    let first_preallocated = h.writer.active.seg.path.clone();
    assert_eq!(
        std::fs::metadata(&first_preallocated).unwrap().len(),
        segment_size
    );
    while h.writer.sealed.len() < 2 {
        append(&mut h, &mut acked);
    }
    for _ in 0..3 {
        append(&mut h, &mut acked);
    }
    let sealed_len = h.writer.sealed.back().unwrap().1;
    // After a crash now: the active segment, if the spare was ready in time, still has
    // its zeros, which recovery cuts off as a torn tail; a sealed one may still have
    // them too (its trim is queued), and then its last record is the one before the
    // next segment's first. Nothing acknowledged is lost.
    let segments = list_segments(&h.path).unwrap();
    let mut recovered = Vec::new();
    let mut last = 0;
    for (k, seg) in segments.iter().enumerate() {
        let is_last = k + 1 == segments.len();
        let c = read_segment(&seg.path, is_last, last).expect("recoverable");
        if is_last && h.writer.active.is_preallocated() {
            assert_eq!(c.torn_at, Some(h.writer.active.len()));
        }
        if c.zero_tail_at.is_some() {
            let last_here = c.records.last().expect("a sealed segment has records").1;
            assert_eq!(last_here + 1, segments[k + 1].first_seq);
        }
        for (_, seq, p) in c.records {
            last = seq;
            recovered.push((seq, p));
        }
    }
    assert_eq!(recovered, acked);
    // A clean shutdown waits for the trims, trims the active segment and removes the
    // spare: every segment then holds exactly its records (`records` reads them all as
    // sealed and refuses zeros).
    h.writer.finish().expect("shutdown");
    assert_eq!(
        std::fs::metadata(&first_preallocated).unwrap().len(),
        sealed_len
    );
    assert_eq!(h.records(), acked);
    let names: Vec<_> = std::fs::read_dir(&h.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".wal")), "{names:?}");
}
