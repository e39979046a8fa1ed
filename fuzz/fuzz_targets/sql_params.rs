//! Fuzz target: `bulkhead_server::fuzzing::sql_params` (its doc comment lists the invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead_server::fuzzing::sql_params(data));
