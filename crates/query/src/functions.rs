//! Time-series conveniences on top of DataFusion's functions.
//!
//! `time_bucket(interval, ts)` is an alias of DataFusion's `date_bin(interval, ts)`
//! (TimescaleDB's name for the same thing). `now()`, intervals, and
//! `first_value(x ORDER BY time)` / `last_value(x ORDER BY time)` are DataFusion built-ins.

use datafusion::prelude::SessionContext;

/// Register Bulkhead's extra functions on `ctx`.
pub(crate) fn register(ctx: &SessionContext) {
    let time_bucket = datafusion::functions::datetime::date_bin()
        .as_ref()
        .clone()
        .with_aliases(["time_bucket"]);
    ctx.register_udf(time_bucket);
}
