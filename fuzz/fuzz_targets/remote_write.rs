//! Fuzz target: `bulkhead_server::fuzzing::remote_write` (its doc comment lists the invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead_server::fuzzing::remote_write(data));
