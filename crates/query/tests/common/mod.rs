//! A real engine on a temp dir and a query engine over it: the workspace's test kit
//! (`bulkhead-testkit`), under the names these tests use.

#![allow(dead_code, unreachable_pub)]

use bulkhead_engine::FieldValue;

pub use bulkhead_testkit::{TempDb as Db, row};

pub fn f(v: f64) -> FieldValue {
    FieldValue::F64(v)
}
