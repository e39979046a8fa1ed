//! Fuzz target: `bulkhead_engine::fuzzing::wal_record` (its doc comment lists the invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead_engine::fuzzing::wal_record(data));
