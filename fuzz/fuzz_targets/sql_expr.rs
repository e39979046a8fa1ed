//! Fuzz target: `bulkhead_query::fuzzing::sql_expr` (its doc comment lists the shapes and invariants).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulkhead_query::fuzzing::sql_expr(data));
