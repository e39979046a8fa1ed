//! Scalar functions that can build huge values (`repeat`, `lpad`, `rpad`,
//! `array_repeat`) checked before they run: a call whose output would exceed a quarter
//! of `limits.query_memory` fails with "resources exhausted" (HTTP 400, SQLSTATE 53200)
//! instead of allocating gigabytes outside the memory pool.
//!
//! Each is DataFusion's own function wrapped in [`Capped`], which estimates the output
//! size of one call from its arguments (lengths times counts, row by row) and then
//! delegates everything to the original.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// How one function's output size is estimated from its evaluated arguments.
#[derive(Debug, Clone, Copy)]
enum Estimate {
    /// `repeat(s, n)`: bytes of `s` times `n`, per row.
    Repeat,
    /// `lpad(s, n [, fill])` / `rpad`: `n` characters of up to 4 bytes, per row.
    Pad,
    /// `array_repeat(x, n)`: `n` copies of `x` (at least 8 bytes each), per row.
    ArrayRepeat,
}

/// Register the capped versions of the functions above, replacing DataFusion's.
pub(crate) fn register(ctx: &SessionContext, memory_limit: usize) {
    let cap = (memory_limit / 4).max(1 << 20) as u64;
    let wrap = |inner: Arc<ScalarUDF>, estimate| {
        // Volatile, so constant arguments are not folded into one literal at planning:
        // a folded 1 MiB literal is then copied into every row of every batch (8 GiB
        // for a batch of 8192) and overflows Arrow's offsets. Evaluated per batch, the
        // call sees how many rows it builds for.
        let signature = Signature {
            volatility: Volatility::Volatile,
            ..inner.signature().clone()
        };
        ScalarUDF::new_from_impl(Capped {
            inner,
            signature,
            estimate,
            cap,
        })
    };
    ctx.register_udf(wrap(
        datafusion::functions::string::repeat(),
        Estimate::Repeat,
    ));
    ctx.register_udf(wrap(datafusion::functions::unicode::lpad(), Estimate::Pad));
    ctx.register_udf(wrap(datafusion::functions::unicode::rpad(), Estimate::Pad));
    ctx.register_udf(wrap(
        datafusion::functions_nested::repeat::array_repeat_udf(),
        Estimate::ArrayRepeat,
    ));
}

/// A DataFusion function with an output-size check in front.
#[derive(Debug)]
struct Capped {
    inner: Arc<ScalarUDF>,
    /// The inner function's signature, made volatile.
    signature: Signature,
    estimate: Estimate,
    /// Largest output of one call, in bytes.
    cap: u64,
}

impl PartialEq for Capped {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && self.cap == other.cap
    }
}

impl Eq for Capped {}

impl std::hash::Hash for Capped {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.cap.hash(state);
    }
}

/// `value` as an array of `rows` rows.
fn rows_of(value: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    value.to_array(rows)
}

/// Per-row byte lengths of a string argument (0 for nulls).
fn byte_lengths(value: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
    let array = rows_of(value, rows)?;
    let array = arrow::compute::cast(&array, &DataType::LargeUtf8)?;
    let strings = array.as_string::<i64>();
    Ok((0..strings.len())
        .map(|i| {
            if strings.is_null(i) {
                0
            } else {
                strings.value(i).len() as u64
            }
        })
        .collect())
}

/// Per-row counts of an integer argument (negative and null count as 0).
fn counts(value: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
    let array = rows_of(value, rows)?;
    let array = arrow::compute::cast(&array, &DataType::Int64)?;
    let ints = array.as_primitive::<Int64Type>();
    Ok((0..ints.len())
        .map(|i| {
            if ints.is_null(i) {
                0
            } else {
                ints.value(i).max(0) as u64
            }
        })
        .collect())
}

impl Capped {
    /// Upper estimate of the bytes one call with `args` builds for `rows` rows. With
    /// constant arguments the value is built once, but it is copied into each of the
    /// rows when the batch is materialized, so it counts `rows` times.
    fn output_bytes(&self, args: &[ColumnarValue], rows: usize) -> Result<u64> {
        let constant = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let copies = if constant { rows.max(1) as u64 } else { 1 };
        let rows = if constant { 1 } else { rows };
        let (Some(first), Some(second)) = (args.first(), args.get(1)) else {
            return Ok(0);
        };
        let n = counts(second, rows)?;
        let per_row: Vec<u64> = match self.estimate {
            Estimate::Repeat => byte_lengths(first, rows)?,
            Estimate::Pad => vec![4; n.len()],
            Estimate::ArrayRepeat => {
                let element = rows_of(first, rows)?;
                let each = (element.get_array_memory_size() / rows.max(1)).max(8) as u64;
                vec![each; n.len()]
            }
        };
        Ok(per_row
            .iter()
            .zip(&n)
            .fold(0u64, |acc, (b, n)| acc.saturating_add(b.saturating_mul(*n)))
            .saturating_mul(copies))
    }
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.output_bytes(&args.args, args.number_rows)?;
        if bytes > self.cap {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would build {bytes} bytes in one call, over the limit of {} bytes \
                 (a quarter of limits.query_memory)",
                self.inner.name(),
                self.cap
            )));
        }
        let mut args = args;
        if matches!(self.estimate, Estimate::Pad | Estimate::ArrayRepeat)
            && let Some(n) = args.args.get_mut(1)
        {
            // DataFusion 55's lpad, rpad and array_repeat panic (capacity overflow) on
            // a negative count; PostgreSQL treats it as 0.
            *n = non_negative(n)?;
        }
        self.inner.invoke_with_args(args)
    }
}

/// An integer argument with negative values replaced by 0 (same shape, Int64).
fn non_negative(value: &ColumnarValue) -> Result<ColumnarValue> {
    use datafusion::common::ScalarValue;
    Ok(match value {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(v)) if v < 0 => {
                ColumnarValue::Scalar(ScalarValue::Int64(Some(0)))
            }
            other => ColumnarValue::Scalar(other),
        },
        ColumnarValue::Array(a) => {
            let ints = arrow::compute::cast(a, &DataType::Int64)?;
            let clamped: arrow::array::Int64Array =
                ints.as_primitive::<Int64Type>().unary(|v| v.max(0));
            ColumnarValue::Array(Arc::new(clamped))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ctx() -> SessionContext {
        let ctx = SessionContext::new();
        register(&ctx, 64 << 20); // cap: 16 MiB
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Result<String> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
    }

    #[tokio::test]
    async fn huge_values_are_refused_before_they_are_built() {
        let ctx = ctx().await;
        for sql in [
            "select length(repeat('x', 1000000000))",
            "select length(repeat('xy', value * 1000000)) from generate_series(1, 20)",
            "select length(lpad('x', 100000000))",
            "select length(rpad('x', 100000000, 'ab'))",
            "select cardinality(array_repeat(1, 200000000))",
            // 1 MB each, copied into 3,000 rows (and aggregated): 3 GB.
            "select length(string_agg(repeat('x', 1000000), ',')) from generate_series(1, 3000)",
            "select length(repeat('x', 100000)) from generate_series(1, 3000)",
        ] {
            let err = run(&ctx, sql).await.unwrap_err();
            assert!(
                matches!(err.find_root(), DataFusionError::ResourcesExhausted(_)),
                "{sql}: {err}"
            );
            assert!(
                err.to_string().contains("limits.query_memory"),
                "{sql}: {err}"
            );
        }
    }

    /// Under the cap, the capped functions answer exactly like DataFusion's own, on
    /// random inputs.
    #[tokio::test]
    async fn small_values_answer_like_the_plain_functions() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let capped = ctx().await;
        let plain = SessionContext::new();
        let rows: Vec<String> = (0..200)
            .map(|_| {
                let s: String = (0..rng.random_range(0..6))
                    .map(|_| rng.random_range(b'a'..=b'z') as char)
                    .collect();
                format!("('{s}', {})", rng.random_range(-3..40))
            })
            .collect();
        let create = format!(
            "create table t(s varchar, n int) as values {}",
            rows.join(",")
        );
        for c in [&capped, &plain] {
            c.sql(&create).await.unwrap().collect().await.unwrap();
        }
        for sql in [
            "select s, n, repeat(s, n) from t order by s, n",
            "select s, n, lpad(s, greatest(n, 0)), rpad(s, greatest(n, 0), 'xy') from t order by s, n",
            // Negative counts make DataFusion 55's own array_repeat panic (capacity
            // overflow), so they are left out here.
            "select s, n, array_repeat(s, greatest(n, 0)) from t order by s, n",
            "select repeat('ab', 3), lpad('7', 3, '0')",
        ] {
            assert_eq!(
                run(&capped, sql).await.unwrap(),
                run(&plain, sql).await.unwrap(),
                "{sql}"
            );
        }
        // A negative count is 0, as in PostgreSQL (DataFusion's own panics).
        let out = run(
            &capped,
            "select lpad('x', n) as l, array_repeat(1, n) as a from t where n < 0 limit 1",
        )
        .await
        .unwrap();
        assert!(out.contains("|   | [] |"), "{out}");
    }
}
