//! Transformations as SQL window functions, for a subquery's derived table
//! ([`super::super::subquery`]): one transformation of one column, over the rows of each
//! series in time order, with the values [`super::transform`] gives.

use super::{Kind, Plan, TimeRange};

impl Plan {
    /// The output column names (the transformations' names or aliases).
    pub(in crate::influxql) fn names(&self) -> &[String] {
        &self.names
    }

    /// SQL of the one transformation of this plan over column `x` (SQL) and `"time"`
    /// (BIGINT) with window `w` (`(PARTITION BY ... ORDER BY "time")`): null where
    /// InfluxDB gives no point. `int`: whether `x` is an integer column. With whether
    /// the result is an integer.
    pub(in crate::influxql) fn window_sql(
        &self,
        x: &str,
        w: &str,
        int: bool,
    ) -> Result<(String, bool), String> {
        let [kind] = self.kinds.as_slice() else {
            return Err(
                "several transformations in one subquery are not supported by Bulkhead yet".into(),
            );
        };
        if self.desc {
            return Err(
                "a transformation inside a subquery with ORDER BY time DESC is not supported \
                 by Bulkhead yet"
                    .into(),
            );
        }
        if self.limit.is_some() || self.offset.is_some() {
            return Err(
                "LIMIT, OFFSET, SLIMIT or SOFFSET inside a subquery is not supported by Bulkhead yet"
                    .into(),
            );
        }
        let t = "\"time\"";
        let prev = |e: &str| format!("lag({e}) OVER {w}");
        let elapsed = format!("({t} - {})", prev(t));
        let non_negative = |d: String, yes: bool| {
            if yes {
                format!("CASE WHEN {d} >= 0 THEN {d} END")
            } else {
                d
            }
        };
        Ok(match *kind {
            Kind::Derivative {
                unit,
                non_negative: nn,
            } => {
                let d = format!(
                    "CASE WHEN {elapsed} <> 0 THEN (CAST({x} AS DOUBLE) - CAST({} AS DOUBLE)) \
                     / (CAST({elapsed} AS DOUBLE) / {unit}.0) END",
                    prev(x)
                );
                (non_negative(d, nn), false)
            }
            Kind::Difference { non_negative: nn } => {
                (non_negative(format!("({x} - {})", prev(x)), nn), int)
            }
            Kind::CumulativeSum => {
                let frame = format!(
                    "({} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
                    &w[1..w.len() - 1]
                );
                (format!("sum({x}) OVER {frame}"), int)
            }
            Kind::MovingAverage(n) => {
                let frame = format!(
                    "({} ROWS BETWEEN {} PRECEDING AND CURRENT ROW)",
                    &w[1..w.len() - 1],
                    n - 1
                );
                (
                    format!(
                        "CASE WHEN count({x}) OVER {frame} = {n} \
                         THEN avg(CAST({x} AS DOUBLE)) OVER {frame} END"
                    ),
                    false,
                )
            }
            Kind::Elapsed(unit) => (format!("({elapsed} / {unit})"), true),
        })
    }

    /// The SQL condition keeping the rows of the statement's own range `range` (not the
    /// interval read before it for the first bucket's predecessor).
    pub(in crate::influxql) fn range_sql(&self, range: TimeRange) -> Option<String> {
        let iv = self.extension()?;
        let lower = range.lower?;
        Some(format!("\"time\" > {}", lower.saturating_sub(iv)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan;
    use crate::influxql::ast::Statement;
    use crate::influxql::parser::parse;

    fn window(q: &str, int: bool) -> Result<(String, bool), String> {
        let Statement::Select(s) = parse(q).unwrap().remove(0) else {
            unreachable!()
        };
        plan(&s)?
            .unwrap()
            .window_sql("\"x\"", "(ORDER BY \"time\")", int)
    }

    #[test]
    fn window_functions() {
        let (d, int) = window(
            "SELECT non_negative_derivative(max(v), 1s) FROM m GROUP BY time(1m)",
            true,
        )
        .unwrap();
        assert!(!int);
        assert!(d.starts_with("CASE WHEN CASE WHEN"), "{d}");
        assert!(d.contains("/ 1000000000.0)"), "{d}");
        let (diff, int) = window("SELECT difference(v) FROM m", true).unwrap();
        assert_eq!(diff, "(\"x\" - lag(\"x\") OVER (ORDER BY \"time\"))");
        assert!(int);
        let (sum, _) = window("SELECT cumulative_sum(v) FROM m", false).unwrap();
        assert_eq!(
            sum,
            "sum(\"x\") OVER (ORDER BY \"time\" ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
        );
        let (avg, _) = window("SELECT moving_average(v, 3) FROM m", false).unwrap();
        assert!(avg.contains("2 PRECEDING"), "{avg}");
        let (el, int) = window("SELECT elapsed(v, 1ms) FROM m", false).unwrap();
        assert!(int && el.ends_with("/ 1000000)"), "{el}");
        for q in [
            "SELECT difference(v), elapsed(v) FROM m",
            "SELECT difference(v) FROM m ORDER BY time DESC",
            "SELECT difference(v) FROM m LIMIT 3",
        ] {
            let err = window(q, false).unwrap_err();
            assert!(err.contains("not supported"), "{q}: {err}");
        }
    }
}
