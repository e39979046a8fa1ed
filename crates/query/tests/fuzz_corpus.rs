//! The checked-in `sql_expr` fuzz corpus (`fuzz/corpus/sql_expr/`, seeds plus what
//! fuzzing found, crash inputs included) as a regression test: every file goes through
//! the function the cargo-fuzz target calls, which panics when an invariant breaks (a
//! stack overflow aborts the test binary, which fails it too). See docs/reliability.md,
//! "Fuzzing".

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

#[test]
fn sql_expr_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/sql_expr");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files = 0;
    let mut failed = Vec::new();
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        files += 1;
        let run = || bulkhead_query::fuzzing::sql_expr(&data);
        if catch_unwind(AssertUnwindSafe(run)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(files >= 10, "{}: only {files} corpus files", dir.display());
    assert!(failed.is_empty(), "invariants broken by: {failed:#?}");
}
