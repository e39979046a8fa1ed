//! The checked-in `wal_record` fuzz corpus (`fuzz/corpus/wal_record/`, seeds plus what
//! fuzzing found, crash inputs included) as a regression test: every file goes through
//! the function the cargo-fuzz target calls, which panics when an invariant breaks. CI
//! needs no cargo-fuzz or nightly for this; see docs/reliability.md, "Fuzzing".

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

#[test]
fn wal_record_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/wal_record");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files = 0;
    let mut failed = Vec::new();
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        files += 1;
        let run = || bulkhead_engine::fuzzing::wal_record(&data);
        if catch_unwind(AssertUnwindSafe(run)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(files >= 10, "{}: only {files} corpus files", dir.display());
    assert!(failed.is_empty(), "invariants broken by: {failed:#?}");
}
