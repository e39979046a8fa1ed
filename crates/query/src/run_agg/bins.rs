//! A faster `date_bin` for run aggregation's group keys.
//!
//! The engine returns rows sorted by time within each series, so a row almost always
//! falls in the same bin as the row before it. [`FastDateBin`] keeps the bin of the
//! previous row and computes a bin with a division only when a row leaves it; the
//! division is DataFusion's own (`date_bin_nanos_interval`: `origin` plus the distance
//! rounded down to a multiple of the stride), so every bin is exactly the one
//! `date_bin` gives. It covers `date_bin(<interval literal>, time[, <constant
//! timestamp>])` on a nanosecond `time` column with a fixed stride (no months); anything
//! else, a null time or an overflow falls back to DataFusion's evaluation.
//! `tests::same_bins_as_date_bin` compares the two on random data.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{DataType, IntervalDayTimeType, IntervalMonthDayNanoType, TimeUnit};
use arrow::datatypes::{SchemaRef, TimestampNanosecondType};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::scalar::ScalarValue;

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// `date_bin` of one column with a fixed stride and origin.
#[derive(Debug, Clone)]
pub(super) struct FastDateBin {
    column: usize,
    stride: i64,
    origin: i64,
    data_type: DataType,
}

impl FastDateBin {
    /// The fast form of `e`, if it is a `date_bin` this module covers.
    pub(super) fn of(e: &dyn PhysicalExpr, schema: &SchemaRef) -> Option<Self> {
        let f = e.downcast_ref::<ScalarFunctionExpr>()?;
        if f.name() != "date_bin" {
            return None;
        }
        let args = f.args();
        let stride = match args.first()?.downcast_ref::<Literal>()?.value() {
            ScalarValue::IntervalMonthDayNano(Some(v)) => {
                let (months, days, nanos) = IntervalMonthDayNanoType::to_parts(*v);
                if months != 0 {
                    return None;
                }
                i64::from(days)
                    .checked_mul(NANOS_PER_DAY)?
                    .checked_add(nanos)?
            }
            ScalarValue::IntervalDayTime(Some(v)) => {
                let (days, ms) = IntervalDayTimeType::to_parts(*v);
                i64::from(days)
                    .checked_mul(NANOS_PER_DAY)?
                    .checked_add(i64::from(ms).checked_mul(1_000_000)?)?
            }
            _ => return None,
        };
        let column = args.get(1)?.downcast_ref::<Column>()?.index();
        let origin = match args.get(2) {
            None => 0,
            // A constant (a literal, or a cast of one to the column's time zone).
            Some(o) if collect_columns(o).is_empty() => {
                let empty = RecordBatch::new_empty(Arc::clone(schema));
                match o.evaluate(&empty).ok()? {
                    ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(Some(v), _)) => v,
                    _ => return None,
                }
            }
            Some(_) => return None,
        };
        if args.len() > 3 || stride <= 0 {
            return None;
        }
        let data_type = schema.fields().get(column)?.data_type().clone();
        let out = e.data_type(schema).ok()?;
        if !matches!(&data_type, DataType::Timestamp(TimeUnit::Nanosecond, _)) || out != data_type {
            return None;
        }
        Some(Self {
            column,
            stride,
            origin,
            data_type,
        })
    }

    /// The bins of `batch`'s rows, or `None` to leave them to DataFusion (a null time,
    /// an overflow).
    pub(super) fn evaluate(&self, batch: &RecordBatch) -> Option<ArrayRef> {
        let times = batch
            .columns()
            .get(self.column)?
            .as_primitive_opt::<TimestampNanosecondType>()?;
        if times.null_count() > 0 {
            return None;
        }
        let mut out = Vec::with_capacity(times.len());
        // The previous row's bin: [lo, hi).
        let (mut lo, mut hi) = (0i64, 0i64);
        for &t in times.values() {
            if !(lo <= t && t < hi) {
                lo = self.bin(t)?;
                hi = lo.checked_add(self.stride).unwrap_or(i64::MAX);
                if !(lo <= t && t < hi) {
                    return None; // not a bin that holds t: leave it to DataFusion
                }
            }
            out.push(lo);
        }
        let tz = match &self.data_type {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        Some(Arc::new(
            TimestampNanosecondArray::from(out).with_timezone_opt(tz),
        ))
    }

    /// DataFusion's `date_bin_nanos_interval`, `None` where it fails.
    fn bin(&self, t: i64) -> Option<i64> {
        let diff = t.checked_sub(self.origin)?;
        let delta = diff.checked_sub(diff.checked_rem(self.stride)?)?;
        let delta = if diff < 0 && self.stride > 1 && delta != diff {
            delta.checked_sub(self.stride)?
        } else {
            delta
        };
        self.origin.checked_add(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use datafusion::prelude::SessionContext;

    /// A tiny xorshift, so the test needs no crate.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[tokio::test]
    async fn same_bins_as_date_bin() {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        )]));
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let exprs = [
            "date_bin(interval '1 hour', time)",
            "date_bin(interval '1 minute', time)",
            "date_bin(interval '7 seconds', time, timestamp '2001-02-03T04:05:06.789Z')",
            "date_bin(interval '2 days', time)",
            "date_bin(interval '1 day 3 hours', time, timestamp '1969-12-31T23:59:59Z')",
            "date_bin(interval '1 nanosecond', time)",
        ];
        let mut covered = 0;
        for sql in exprs {
            for round in 0..20 {
                // Sorted runs (as the engine gives them), then jumps back, negatives and
                // values near the ends of the range.
                let mut t = (next(&mut state) % (1 << 62)) as i64 - (1 << 61);
                let times: Vec<i64> = (0..500)
                    .map(|i| {
                        t = match next(&mut state) % 20 {
                            0 => (next(&mut state) as i64) >> (next(&mut state) % 8),
                            1 => t.wrapping_neg(),
                            2 if round == 0 => i64::MAX - (i % 7),
                            3 if round == 1 => i64::MIN + (i % 7),
                            // On whole seconds, stepping by TSBS's 10 s: rows on bin edges.
                            4..=9 => t
                                .saturating_sub(t.rem_euclid(1_000_000_000))
                                .saturating_add(10_000_000_000),
                            _ => t.saturating_add((next(&mut state) % 20_000_000_000) as i64),
                        };
                        t
                    })
                    .collect();
                let batch = RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(
                        TimestampNanosecondArray::from(times).with_timezone("UTC"),
                    )],
                )
                .expect("batch");
                let df_schema = datafusion::common::DFSchema::try_from(schema.as_ref().clone())
                    .expect("schema");
                let expr = ctx.parse_sql_expr(sql, &df_schema).expect("parse");
                let physical = ctx.create_physical_expr(expr, &df_schema).expect("plan");
                let fast = FastDateBin::of(physical.as_ref(), &schema)
                    .unwrap_or_else(|| panic!("{sql} has a fast form"));
                let Some(got) = fast.evaluate(&batch) else {
                    continue; // an overflow: DataFusion's evaluation runs instead
                };
                let want = physical
                    .evaluate(&batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
                    .expect("date_bin");
                assert_eq!(got.as_ref(), want.as_ref(), "{sql}, round {round}");
                covered += 1;
            }
        }
        assert!(covered > 60, "only {covered} batches compared");
    }

    #[test]
    fn other_shapes_have_no_fast_form() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        )]));
        let ctx = SessionContext::new();
        let df_schema =
            datafusion::common::DFSchema::try_from(schema.as_ref().clone()).expect("schema");
        for sql in [
            "date_bin(interval '1 month', time)",
            "date_trunc('hour', time)",
            "time",
        ] {
            let expr = ctx.parse_sql_expr(sql, &df_schema).expect("parse");
            let physical = ctx.create_physical_expr(expr, &df_schema).expect("plan");
            assert!(
                FastDateBin::of(physical.as_ref(), &schema).is_none(),
                "{sql}"
            );
        }
    }
}
