//! The engine's scenario tests, built as one test binary: every integration-test file
//! links the whole engine (and its dependencies), so one binary instead of fourteen keeps
//! the build's disk use and link time down. Each module is one scenario; `common` holds
//! the helpers they share.

mod common;

mod backpressure;
mod compaction;
mod concurrency;
mod delete;
mod delete_commit_window;
mod delete_stress;
mod drop;
mod failing_store;
mod fencing;
mod flush_placement;
mod flush_triggers;
mod flush_vs_compaction;
mod limits;
mod many_tables;
mod merge_scan;
mod model;
mod object_io;
mod packs;
mod parallel_scan;
mod recovery;
mod schema_conflict;
mod seq_reuse;
mod series_index;
mod snapshot;
mod startup_gc;
mod torn_tail;
mod wal_corruption;
