//! Fuzz-target body for deep and wide SQL expressions (not a public API).
//!
//! The `fuzz/` crate (cargo-fuzz, target `sql_expr`) and the corpus regression test
//! (`tests/fuzz_corpus.rs`) call [`sql_expr`], so a corpus file means the same thing to
//! both. It panics when an invariant breaks; a stack overflow aborts the process, which
//! both report as a crash.

use std::sync::{Arc, OnceLock};

use bulkhead_runtime::{RuntimeConfig, RuntimeName, Runtimes};
use datafusion::prelude::SessionContext;

use crate::depth::MAX_EXPR_DEPTH;
use crate::error::QueryError;

/// Most terms an input builds: past [`MAX_EXPR_DEPTH`] and sqlparser's recursion limit,
/// small enough to keep an execution under a second.
const MAX_TERMS: usize = 6_000;

/// Binary operators a chain is built from (`OR` is rebalanced, the rest count one level
/// each).
const OPS: &[&str] = &[
    " + ", " - ", " * ", " / ", " % ", " || ", " AND ", " OR ", " = ", " <> ", " < ",
];

/// One statement from the input's recipe: the first byte picks a shape, the next two
/// how many terms, the rest which operators. Shapes:
///
/// 0. a left-deep chain of binary operators over `1` (the issue's `1+1+…+1`);
/// 1. nested parentheses, `(1 op (1 op (…)))`, right-deep;
/// 2. nested function calls, `abs(abs(…))`;
/// 3. nested scalar subqueries, `(select (select …))`;
/// 4. `x = k OR x = k' …` over a `VALUES` table: Grafana's "All" (answer checked);
/// 5. a wide `IN (…)` list (answer checked);
/// 6. a chain of postfix operators (`IS NULL`, `::BIGINT`, `IS TRUE`);
/// 7. a `UNION ALL` chain.
///
/// Invariants: the statement is answered, or refused with a clean error; it is never
/// refused as too deep when it nests at most half the limit; it always is when a chain
/// of counted operators is longer than the limit; shapes 4 and 5 count the right rows.
pub fn sql_expr(data: &[u8]) {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let (terms, ops) = match rest {
        [a, b, ops @ ..] => (
            usize::from(u16::from_le_bytes([*a, *b])) % MAX_TERMS + 1,
            ops,
        ),
        _ => (rest.len() + 1, rest),
    };
    let pick = |i: usize| usize::from(ops.get(i % ops.len().max(1)).copied().unwrap_or(0));
    let values = |rows: usize| {
        let rows = (0..rows).map(|i| format!("({i})")).collect::<Vec<_>>();
        format!("(values {}) as t(x)", rows.join(","))
    };
    // The statement, how deeply it nests, whether that is one chain of counted
    // operators (which must be refused past the limit), and the count it must answer.
    let (sql, nesting, chain, expect_rows) = match shape % 8 {
        0 => {
            let mut sql = String::from("select 1");
            let mut used = std::collections::BTreeSet::new();
            for i in 1..terms {
                let op = OPS[pick(i) % OPS.len()];
                used.insert(op);
                sql.push_str(op);
                sql.push('1');
            }
            // A chain of only OR is rebalanced; any other operator counts. Mixed
            // precedences nest less deeply than the term count, so only a chain of one
            // counted operator must be refused past the limit.
            let or_only = used.iter().all(|op| *op == " OR ");
            let nesting = if or_only { 0 } else { terms };
            (sql, nesting, used.len() == 1 && !or_only, None)
        }
        1 => {
            let mut sql = String::from("select ");
            for i in 0..terms {
                sql.push_str("(1");
                sql.push_str(OPS[pick(i) % OPS.len()]);
            }
            sql.push('1');
            sql.push_str(&")".repeat(terms));
            (sql, terms, false, None)
        }
        2 => {
            let sql = format!("select {}1{}", "abs(".repeat(terms), ")".repeat(terms));
            (sql, terms, false, None)
        }
        3 => {
            let sql = format!("select {}1{}", "(select ".repeat(terms), ")".repeat(terms));
            (sql, terms, false, None)
        }
        4 => {
            let rows = terms.min(2_000);
            let wanted = (0..terms)
                .map(|i| format!("x = {}", i * 2))
                .collect::<Vec<_>>();
            let sql = format!(
                "select count(*) from {} where {}",
                values(rows),
                wanted.join(" OR ")
            );
            // Even values below `rows` among the first `terms` even numbers.
            let hits = (0..terms).filter(|i| i * 2 < rows).count();
            (sql, 0, false, Some(hits))
        }
        5 => {
            let list = (0..terms * 8).map(|i| i.to_string()).collect::<Vec<_>>();
            let sql = format!(
                "select count(*) from {} where x in ({})",
                values(100),
                list.join(",")
            );
            (sql, 0, false, Some(100.min(terms * 8)))
        }
        6 => {
            let mut sql = String::from("select 1");
            for i in 0..terms {
                sql.push_str(match pick(i) % 4 {
                    0 => " IS NULL",
                    1 => "::BIGINT",
                    2 => " IS NOT NULL",
                    _ => " IS TRUE",
                });
            }
            (sql, terms, true, None)
        }
        _ => {
            let sql = std::iter::repeat_n("select 1", terms)
                .collect::<Vec<_>>()
                .join(" union all ");
            (sql, terms, true, None)
        }
    };
    let result = run(&sql);
    let must_refuse = chain && terms > MAX_EXPR_DEPTH + 1;
    match &result {
        Err(QueryError::TooComplex(m)) => assert!(
            nesting > MAX_EXPR_DEPTH / 2,
            "refused as too complex at {terms} terms (shape {shape}): {m}"
        ),
        Err(QueryError::Plan(_) | QueryError::Execution(_)) => {
            // Overflow, division by zero, sqlparser's recursion limit, types: a clean
            // error. Past the limit it must be the depth error; where the answer is
            // known, there must be one.
            assert!(!must_refuse, "shape {shape}, {terms} terms: {result:?}");
            assert!(
                expect_rows.is_none(),
                "shape {shape}, {terms} terms: {result:?}"
            );
        }
        Err(e) => panic!("unexpected error for shape {shape}, {terms} terms: {e:?}"),
        Ok(rows) => {
            assert!(!must_refuse, "a chain of {terms} terms was planned");
            if let Some(expected) = expect_rows {
                assert_eq!(*rows, Some(expected as i64), "shape {shape}, {terms} terms");
            }
        }
    }
}

/// Run `sql` through the query layer on a real `query` runtime; the first column of
/// the first row when it is a count.
fn run(sql: &str) -> Result<Option<i64>, QueryError> {
    static RUNTIMES: OnceLock<Arc<Runtimes>> = OnceLock::new();
    let runtimes = RUNTIMES
        .get_or_init(|| Runtimes::new(RuntimeConfig::for_parallelism(2)).expect("runtimes"));
    let sql = sql.to_owned();
    let rt = Arc::clone(runtimes);
    runtimes
        .block_on(RuntimeName::Io, async move {
            let output = crate::exec::run_sql(
                &rt,
                RuntimeName::Query,
                SessionContext::new().into(),
                sql,
                None,
                None,
                true,
            )
            .await?;
            let batches = output.collect().await?;
            let first = batches.iter().find(|b| b.num_rows() > 0).and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .map(|a| a.value(0))
            });
            Ok(first)
        })
        .expect("the io runtime runs")
}
