//! Fuzz target: `bulkhead_server::fuzzing::line_protocol` (its doc comment lists the invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead_server::fuzzing::line_protocol(data));
