//! The checked-in fuzz corpus (`fuzz/corpus/<target>/`, seeds plus what fuzzing found,
//! crash inputs included) as regression tests: every file goes through the same
//! function its cargo-fuzz target calls, which panics when an invariant breaks. CI
//! needs no cargo-fuzz or nightly for this; see docs/reliability.md, "Fuzzing".

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// Run `target` on every file of `fuzz/corpus/<name>/`; fail naming each file that
/// panicked. An empty or missing corpus is a failure too (a path typo must not pass).
fn replay(name: &str, target: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files = 0;
    let mut failed = Vec::new();
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        files += 1;
        if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(files >= 10, "{}: only {files} corpus files", dir.display());
    assert!(failed.is_empty(), "invariants broken by: {failed:#?}");
}

#[test]
fn line_protocol_corpus() {
    replay("line_protocol", bulkhead_server::fuzzing::line_protocol);
}

#[test]
fn sql_params_corpus() {
    replay("sql_params", bulkhead_server::fuzzing::sql_params);
}

#[test]
fn remote_write_corpus() {
    replay("remote_write", bulkhead_server::fuzzing::remote_write);
}
