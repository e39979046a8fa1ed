//! A cache of optimized logical plans, keyed by a statement's shape.
//!
//! A dashboard or a benchmark sends the same query again and again with other hosts and
//! other time windows. Planning such a small query (SQL to a logical plan, then the
//! analyzer and ~30 optimizer rules over three passes) costs more CPU than running it
//! (`docs/benchmarks.md`, "Fixed per-query cost"). So the literals that a `WHERE`
//! clause compares a column with (`col <op> literal`, `col [NOT] IN (literals)`,
//! `col [NOT] BETWEEN literal AND literal`) become placeholders `$1..$n`; the statement
//! with its placeholders is the key, and its optimized logical plan is kept. The next
//! statement of the same shape binds its own literals into a copy of that plan and goes
//! straight to physical planning.
//!
//! The answer is always the one planning the statement itself would give:
//! - A literal is bound only when DataFusion's own type coercion would cast it to the
//!   column's type (the placeholder's type), never the column to the literal's; so
//!   `int_col >= 90.5` is planned from scratch, not bound as `int_col >= 90`.
//! - Plans that read anything but engine tables (`system.*`, `information_schema`), or
//!   call a function that is not immutable (`now()`, `random()`: folded or evaluated at
//!   planning), are not cached. `now()` (or `current_timestamp`) compared with a column,
//!   alone or plus or minus an interval of fixed length, is not a call in the template:
//!   it is read as the literal time it stands for when the statement arrives
//!   ([`now_literal`]), so `time > now() - interval '1 hour'` is cached like any range.
//! - A cached plan names its tables' schemas; a table whose schema changed since (a new
//!   field written, the table dropped) is planned again.
//! - Whatever fails on the cached path (binding, a cast) falls back to plain planning,
//!   so errors read exactly as before.
//! - Both flavors use it, each with entries of its own: HTTP SQL and InfluxQL (plain),
//!   and PostgreSQL clients (the simple protocol, and the extended one, whose bound
//!   parameters arrive here as literals). No session setting changes planning per
//!   connection (`SET datafusion.*` is refused), so connections share plans.
//!
//! A shape's first physical plan is kept too, as a template for the next queries'
//! physical plans ([`crate::physical_template`]).
//!
//! `crates/query/tests/plan_cache.rs` compares cached and plain answers on random data.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::compute::kernels::cast_utils::{
    IntervalParseConfig, IntervalUnit, parse_interval_month_day_nano_config,
};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SQLOptions;
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, FunctionArguments, ObjectNamePart, SetExpr, Statement,
    UnaryOperator, Value, ValueWithSpan,
};

use crate::error::Result;
use crate::physical_template::Slot;
use crate::stats::QueryStats;
use crate::table::EngineTable;

/// Statements nested deeper than this are planned plainly: making a template clones,
/// prints and drops the tree with plain recursion, on the query thread's stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// Statements longer than this are planned plainly. It bounds what one entry can hold
/// (a plan grows with its statement: an `IN` list of 100,000 values is megabytes), so
/// `capacity` entries stay small whatever clients send; and a long statement's planning
/// is a smaller share of its cost anyway.
pub(crate) const MAX_SQL_BYTES: usize = 4096;

/// Plans kept by default (each a few KiB).
pub(crate) const DEFAULT_PLAN_CACHE_ENTRIES: usize = 256;

/// A literal taken out of a statement, in the type the SQL planner gives it.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Int(i64),
    Float(f64),
    Str(String),
    /// What `now()` (± an interval) stands for, in nanoseconds since the epoch: the
    /// type `now()` plans to, so it binds only where `now()` itself would compare with
    /// the column as a timestamp (never to a string column, as a string).
    Time(i64),
}

impl Literal {
    fn scalar(&self) -> ScalarValue {
        match self {
            Literal::Int(v) => ScalarValue::Int64(Some(*v)),
            Literal::Float(v) => ScalarValue::Float64(Some(*v)),
            Literal::Str(v) => ScalarValue::Utf8(Some(v.clone())),
            Literal::Time(ns) => ScalarValue::TimestampNanosecond(Some(*ns), Some("UTC".into())),
        }
    }
}

/// A statement with the literals of its `WHERE` comparisons replaced by placeholders.
struct Template {
    key: String,
    statement: DfStatement,
    literals: Vec<Literal>,
}

impl Template {
    /// The template of `statement`, if it is a plain `SELECT ... WHERE` without
    /// placeholders of its own.
    fn of(statement: &DfStatement, sql: &str) -> Option<Template> {
        if sql.len() > MAX_SQL_BYTES || sql.contains('$') {
            return None; // too long to keep; placeholders of the client's own, or `$` in strings
        }
        let DfStatement::Statement(inner) = statement else {
            return None;
        };
        let Statement::Query(query) = inner.as_ref() else {
            return None;
        };
        let mut query = query.clone();
        let mut literals = Vec::new();
        if let SetExpr::Select(select) = query.body.as_mut()
            && let Some(selection) = select.selection.as_mut()
        {
            parameterize(selection, &mut literals, bulkhead_engine::now_nanos());
        }
        let statement = DfStatement::Statement(Box::new(Statement::Query(query)));
        Some(Template {
            key: statement.to_string(),
            statement,
            literals,
        })
    }
}

/// Replace the literals of column comparisons under `expr` (through `AND`, `OR`, `NOT`
/// and parentheses) with placeholders, collecting them in order. `now()` there (alone,
/// or plus or minus an interval) is read as the literal time it stands for at `now`.
fn parameterize(expr: &mut SqlExpr, literals: &mut Vec<Literal>, now: i64) {
    match expr {
        SqlExpr::BinaryOp { left, op, right } => match op {
            BinaryOperator::And | BinaryOperator::Or => {
                parameterize(left, literals, now);
                parameterize(right, literals, now);
            }
            BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq => {
                if is_column(left) {
                    replace(right, literals, now);
                } else if is_column(right) {
                    replace(left, literals, now);
                }
            }
            _ => {}
        },
        SqlExpr::Nested(inner) => parameterize(inner, literals, now),
        SqlExpr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => parameterize(expr, literals, now),
        SqlExpr::InList { expr, list, .. }
            if is_column(expr) && list.iter().all(|e| literal(e).is_some()) =>
        {
            for item in list {
                replace(item, literals, now);
            }
        }
        SqlExpr::Between {
            expr, low, high, ..
        } if is_column(expr) && bindable(low, now).is_some() && bindable(high, now).is_some() => {
            replace(low, literals, now);
            replace(high, literals, now);
        }
        _ => {}
    }
}

fn is_column(e: &SqlExpr) -> bool {
    matches!(e, SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_))
}

/// The literal `e` is, if it is one this cache binds: a number that is an `i64` or a
/// finite `f64` with a `.` or an exponent (as the SQL planner reads them), with or
/// without a leading minus (which the planner folds into the number), or a
/// single-quoted string.
fn literal(e: &SqlExpr) -> Option<Literal> {
    if let SqlExpr::UnaryOp {
        op: UnaryOperator::Minus,
        expr,
    } = e
    {
        return match expr.as_ref() {
            SqlExpr::Value(_) => match literal(expr)? {
                Literal::Int(v) => Some(Literal::Int(-v)),
                Literal::Float(v) => Some(Literal::Float(-v)),
                Literal::Str(_) | Literal::Time(_) => None,
            },
            _ => None,
        };
    }
    let SqlExpr::Value(ValueWithSpan { value, .. }) = e else {
        return None;
    };
    match value {
        Value::Number(text, false) => {
            if let Ok(v) = text.parse::<i64>() {
                Some(Literal::Int(v))
            } else if text.contains(['.', 'e', 'E']) {
                text.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .map(Literal::Float)
            } else {
                None // u64 or larger: leave it in the key
            }
        }
        Value::SingleQuotedString(s) => Some(Literal::Str(s.clone())),
        _ => None,
    }
}

/// What [`replace`] binds for `e`: a [`literal`], or a [`now_literal`].
fn bindable(e: &SqlExpr, now: i64) -> Option<Literal> {
    literal(e).or_else(|| now_literal(e, now))
}

/// `now()` or `current_timestamp`, alone or plus or minus `INTERVAL '<text>'`, as the
/// time it stands for at `now`: a timestamp literal (UTC, nanoseconds, the type `now()`
/// has in these sessions), bound where the column is such a timestamp. DataFusion folds `now()` to the statement's start time
/// at planning, so a cached plan would otherwise keep the first query's time; this way
/// the shape is cached and each query binds its own. Only intervals without months
/// (whose length depends on the date) and with a unit in the text, parsed as the SQL
/// planner parses them; anything else stays in the key and is planned plainly.
fn now_literal(e: &SqlExpr, now: i64) -> Option<Literal> {
    let at = match e {
        SqlExpr::BinaryOp { left, op, right } if is_now(left) => {
            let offset = interval_nanos(right)?;
            match op {
                BinaryOperator::Plus => now.checked_add(offset)?,
                BinaryOperator::Minus => now.checked_sub(offset)?,
                _ => return None,
            }
        }
        e if is_now(e) => now,
        _ => return None,
    };
    Some(Literal::Time(at))
}

/// `now()` or `current_timestamp` (no arguments, no qualifier).
fn is_now(e: &SqlExpr) -> bool {
    let SqlExpr::Function(f) = e else {
        return false;
    };
    let [ObjectNamePart::Identifier(name)] = f.name.0.as_slice() else {
        return false;
    };
    let no_args = match &f.args {
        FunctionArguments::None => true,
        FunctionArguments::List(list) => list.args.is_empty() && list.clauses.is_empty(),
        FunctionArguments::Subquery(_) => false,
    };
    no_args
        && f.filter.is_none()
        && f.over.is_none()
        && f.within_group.is_empty()
        && matches!(f.parameters, FunctionArguments::None)
        && (name.value.eq_ignore_ascii_case("now")
            || name.value.eq_ignore_ascii_case("current_timestamp"))
}

/// The length of `INTERVAL '<text>'` with a unit in the text and no months, as DataFusion's
/// SQL planner reads it (`parse_interval_month_day_nano_config`, seconds by default).
fn interval_nanos(e: &SqlExpr) -> Option<i64> {
    let SqlExpr::Interval(interval) = e else {
        return None;
    };
    if interval.leading_field.is_some()
        || interval.leading_precision.is_some()
        || interval.last_field.is_some()
        || interval.fractional_seconds_precision.is_some()
    {
        return None;
    }
    let SqlExpr::Value(ValueWithSpan {
        value: Value::SingleQuotedString(text),
        ..
    }) = interval.value.as_ref()
    else {
        return None;
    };
    if !text.chars().any(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let config = IntervalParseConfig::new(IntervalUnit::Second);
    let v = parse_interval_month_day_nano_config(text, config).ok()?;
    if v.months != 0 {
        return None;
    }
    i64::from(v.days)
        .checked_mul(86_400_000_000_000)?
        .checked_add(v.nanoseconds)
}

fn replace(e: &mut SqlExpr, literals: &mut Vec<Literal>, now: i64) {
    if let Some(lit) = bindable(e, now) {
        literals.push(lit);
        *e = SqlExpr::value(Value::Placeholder(format!("${}", literals.len())));
    }
}

/// One cached plan.
enum Entry {
    /// The optimized plan, its placeholders' types (`$1` first) and the tables it reads.
    Plan {
        plan: Box<LogicalPlan>,
        types: Vec<DataType>,
        tables: Vec<(EngineTable, SchemaRef)>,
        physical: Slot,
    },
    /// A shape that cannot be cached: plan it plainly without trying again.
    Uncacheable,
}

/// See the module docs. Keyed by (database, flavor, lastpoint rule on, template).
#[derive(Default)]
pub(crate) struct PlanCache {
    capacity: usize,
    entries: std::sync::Mutex<Lru>,
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

type Key = (String, crate::Flavor, bool, String);

#[derive(Default)]
struct Lru {
    map: HashMap<Key, (Arc<Entry>, u64)>,
    clock: u64,
}

impl PlanCache {
    /// A cache of at most `capacity` plans (0: off).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: std::sync::Mutex::new(Lru::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // Inserts and removals only: a panic while holding it left the map whole.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        let mut lru = self.lock();
        lru.clock += 1;
        let now = lru.clock;
        lru.map.get_mut(key).map(|(entry, used)| {
            *used = now;
            Arc::clone(entry)
        })
    }

    fn insert(&self, key: Key, entry: Arc<Entry>) {
        let mut lru = self.lock();
        if lru.map.len() >= self.capacity
            && !lru.map.contains_key(&key)
            && let Some(oldest) = lru
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            lru.map.remove(&oldest);
        }
        lru.clock += 1;
        let now = lru.clock;
        lru.map.insert(key, (entry, now));
    }
}

/// The plan cache as one query's session sees it.
pub(crate) struct CachedPlans {
    pub(crate) cache: Arc<PlanCache>,
    /// The session's default database and whether its lastpoint rule is on: the same
    /// text means another plan under another of either.
    pub(crate) db: String,
    pub(crate) lastpoint: bool,
    /// The session's SQL flavor: a PostgreSQL session has functions, types and
    /// rewrites of its own, so its plans are kept apart from the plain ones.
    pub(crate) flavor: crate::Flavor,
    /// Whether the session's physical optimizer aggregates runs (a template is made
    /// with the rule on or off).
    pub(crate) run_aggregate: Arc<AtomicBool>,
    /// Whether templates leave out the filter conjuncts that the scan applies.
    pub(crate) drop_applied_filters: bool,
    pub(crate) stats: Arc<QueryStats>,
}

impl CachedPlans {
    /// The physical plan of `statement` (the text `sql`) with its literals bound: from
    /// the shape's physical template, or planned from its cached optimized logical
    /// plan (planned and cached now on a miss). `None` when it must be planned plainly
    /// (not cacheable, or a literal that cannot be bound).
    pub(crate) async fn plan(
        &self,
        state: &SessionState,
        statement: &DfStatement,
        sql: &str,
        options: &SQLOptions,
    ) -> Option<Result<Arc<dyn ExecutionPlan>>> {
        if self.cache.capacity == 0 {
            return None;
        }
        let template = Template::of(statement, sql)?;
        let key = (self.db.clone(), self.flavor, self.lastpoint, template.key);
        let entry = match self.cache.get(&key) {
            Some(entry) if matches!(entry.as_ref(), Entry::Uncacheable) => return None,
            Some(entry) if fresh(&entry) => {
                self.stats.plan_cache_hits.fetch_add(1, Ordering::Relaxed);
                entry
            }
            _ => {
                self.stats.plan_cache_misses.fetch_add(1, Ordering::Relaxed);
                // A statement that does not plan (a table not written yet, a typo) is
                // left to plain planning for its error, and tried again next time.
                let entry = Arc::new(
                    plan_template(state, template.statement, template.literals.len(), options)
                        .await?,
                );
                self.cache.insert(key, Arc::clone(&entry));
                entry
            }
        };
        let Entry::Plan {
            plan,
            types,
            physical,
            ..
        } = entry.as_ref()
        else {
            return None;
        };
        let values = bind(types, &template.literals)?;
        let run_aggregate = self.run_aggregate.load(Ordering::Relaxed);
        if let Some(t) = physical.get() {
            match t
                .instantiate(state, &values, run_aggregate, self.drop_applied_filters)
                .await
            {
                Ok(Some(made)) => {
                    self.stats
                        .plan_template_hits
                        .fetch_add(1, Ordering::Relaxed);
                    #[cfg(debug_assertions)]
                    check_against_fresh(state, plan, &values, &made).await;
                    return Some(Ok(made));
                }
                Ok(None) => {}
                Err(e) => return Some(Err(e.into())),
            }
        }
        let bound = LogicalPlan::clone(plan)
            .with_param_values(values.clone())
            .ok()?;
        let planned = state
            .query_planner()
            .create_physical_plan(&bound, state)
            .await;
        if let Ok(p) = &planned {
            physical.learn(plan, p, &values, run_aggregate);
        }
        Some(planned.map_err(Into::into))
    }
}

/// Debug builds: a plan made from a template must be the plan that planning gives.
#[cfg(debug_assertions)]
async fn check_against_fresh(
    state: &SessionState,
    plan: &LogicalPlan,
    values: &[ScalarValue],
    made: &Arc<dyn ExecutionPlan>,
) {
    let bound = LogicalPlan::clone(plan)
        .with_param_values(values.to_vec())
        .expect("bound once already");
    let fresh = state
        .query_planner()
        .create_physical_plan(&bound, state)
        .await
        .expect("planned once already");
    // Either may have had the conjuncts its scan applies left out (idempotent).
    let drop = |p: &Arc<dyn ExecutionPlan>| {
        crate::applied_filters::drop_applied(Arc::clone(p)).expect("rebuilt once already")
    };
    let (made, fresh) = (
        crate::physical_template::shape(&drop(made)),
        crate::physical_template::shape(&drop(&fresh)),
    );
    assert_eq!(made, fresh, "a physical template made another plan");
}

/// Whether the tables `entry` reads still have the schemas it was planned with.
fn fresh(entry: &Entry) -> bool {
    match entry {
        Entry::Uncacheable => false,
        Entry::Plan { tables, .. } => tables
            .iter()
            .all(|(table, schema)| table.current_schema().is_some_and(|now| now == *schema)),
    }
}

/// Plan and optimize a template: [`Entry::Uncacheable`] if what it reads or calls
/// keeps it out of the cache, `None` if it does not plan.
async fn plan_template(
    state: &SessionState,
    statement: DfStatement,
    params: usize,
    options: &SQLOptions,
) -> Option<Entry> {
    let plan = state.statement_to_plan(statement).await.ok()?;
    options.verify_plan(&plan).ok()?;
    let Some(tables) = cacheable(&plan) else {
        return Some(Entry::Uncacheable);
    };
    let Some(types) = placeholder_types(&plan, params) else {
        return Some(Entry::Uncacheable);
    };
    let plan = state.optimize(&plan).ok()?;
    Some(Entry::Plan {
        plan: Box::new(plan),
        types,
        tables,
        physical: Slot::default(),
    })
}

/// The engine tables `plan` reads, if it reads nothing else and calls only immutable
/// functions.
fn cacheable(plan: &LogicalPlan) -> Option<Vec<(EngineTable, SchemaRef)>> {
    let mut tables = Vec::new();
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let table = source_as_provider(&scan.source)
                .ok()
                .and_then(|p| p.downcast_ref::<EngineTable>().cloned());
            match table {
                Some(t) => {
                    let schema = t.schema_ref();
                    tables.push((t, schema));
                }
                None => ok = false,
            }
        }
        let _ = node.apply_expressions(|e| {
            let _ = e.apply(|e| {
                let stable = match e {
                    Expr::ScalarFunction(f) => {
                        f.func.signature().volatility == Volatility::Immutable
                    }
                    Expr::AggregateFunction(f) => {
                        f.func.signature().volatility == Volatility::Immutable
                    }
                    _ => true,
                };
                if !stable {
                    ok = false;
                }
                Ok(TreeNodeRecursion::Continue)
            });
            Ok(TreeNodeRecursion::Continue)
        });
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok.then_some(tables)
}

/// The types of `$1..$params` as the planner inferred them from their columns.
fn placeholder_types(plan: &LogicalPlan, params: usize) -> Option<Vec<DataType>> {
    let mut found = plan.get_parameter_types().ok()?;
    if found.len() != params {
        return None;
    }
    (1..=params)
        .map(|i| found.remove(&format!("${i}")).flatten())
        .collect()
}

/// The literals cast to their placeholders' types, if DataFusion's coercion of each
/// comparison would cast the literal to the column's type (and not the column).
fn bind(types: &[DataType], literals: &[Literal]) -> Option<Vec<ScalarValue>> {
    types
        .iter()
        .zip(literals)
        .map(|(ty, lit)| {
            let value = lit.scalar();
            let common = comparison_coercion(ty, &value.data_type())?;
            if &common != ty {
                return None;
            }
            let cast = value.cast_to(ty).ok()?;
            (!cast.is_null()).then_some(cast)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn template(sql: &str) -> Option<Template> {
        let statement = DFParser::parse_sql(sql).unwrap().pop_front().unwrap();
        Template::of(&statement, sql)
    }

    #[test]
    fn where_comparisons_become_placeholders() {
        let t = template(
            "select max(v) from cpu where host in ('a', 'b') and time >= '2016-01-01T00:00:00Z' \
             and (v > 5 or v between -1.5 and 2) and not region = 'x' and w < -3 group by 1 limit 10",
        )
        .unwrap();
        assert_eq!(
            t.key,
            "SELECT max(v) FROM cpu WHERE host IN ($1, $2) AND time >= $3 \
             AND (v > $4 OR v BETWEEN $5 AND $6) AND NOT region = $7 AND w < $8 GROUP BY 1 LIMIT 10"
        );
        assert_eq!(
            t.literals,
            vec![
                Literal::Str("a".into()),
                Literal::Str("b".into()),
                Literal::Str("2016-01-01T00:00:00Z".into()),
                Literal::Int(5),
                Literal::Float(-1.5),
                Literal::Int(2),
                Literal::Str("x".into()),
                Literal::Int(-3),
            ]
        );
        // Two statements of one shape share a key.
        let u = template(
            "select max(v) from cpu where host in ('c', 'd') and time >= '2017-01-01T00:00:00Z' \
             and (v > 6 or v between 2.5 and 3) and not region = 'y' and w < 4 group by 1 limit 10",
        )
        .unwrap();
        assert_eq!(t.key, u.key);
    }

    #[test]
    fn now_compared_with_a_column_is_the_time_it_stands_for() {
        let at = |sql: &str| {
            let t = template(sql).unwrap();
            let times = t
                .literals
                .iter()
                .map(|l| match l {
                    Literal::Time(ns) => *ns,
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>();
            (t.key, times)
        };
        let before = bulkhead_engine::now_nanos();
        let (key, t) = at(
            "select count(*) from cpu where time > now() - interval '1 hour' \
             and time <= current_timestamp + interval '1 day 30 seconds'",
        );
        let after = bulkhead_engine::now_nanos();
        assert_eq!(
            key,
            "SELECT count(*) FROM cpu WHERE time > $1 AND time <= $2"
        );
        let hour = 3_600_000_000_000;
        assert!(t[0] >= before - hour && t[0] <= after - hour, "{t:?}");
        assert_eq!(t[1] - t[0], (25 * 3600 + 30) * 1_000_000_000);
        // Other windows share the shape.
        let (other, _) = at(
            "select count(*) from cpu where time > now() - interval '5 minutes' \
             and time <= now()",
        );
        assert_eq!(key, other);
        // Months (their length depends on the date), a bare number (its unit is the
        // planner's choice), a unit outside the string and `now()` elsewhere stay.
        for sql in [
            "select count(*) from cpu where time > now() - interval '1 month'",
            "select count(*) from cpu where time > now() - interval '5'",
            "select count(*) from cpu where time > now() - interval '5' minute",
            "select count(*) from cpu where time > now() * 2",
            "select count(*) from cpu where time > now(1)",
            "select now() from cpu where time > date_trunc('day', now())",
        ] {
            let (key, literals) = at(sql);
            assert!(literals.is_empty(), "{sql}: {key}");
        }
    }

    #[test]
    fn only_where_comparisons_are_parameterized() {
        // Select-list literals name output columns; they stay in the key.
        let t = template("select v > 5, 'a' from cpu where 1 = 1 and v + 1 > 2").unwrap();
        assert_eq!(
            t.key,
            "SELECT v > 5, 'a' FROM cpu WHERE 1 = 1 AND v + 1 > 2"
        );
        assert!(t.literals.is_empty());
        // A mixed IN list, a huge number, NULL and a client's own placeholder.
        let t = template(
            "select * from cpu where h in ('a', v) and v > 99999999999999999999 and v = null",
        )
        .unwrap();
        assert!(t.literals.is_empty(), "{:?}", t.literals);
        assert!(template("select * from cpu where v = $1").is_none());
        let list = vec!["'h'"; MAX_SQL_BYTES / 4].join(", ");
        assert!(template(&format!("select * from cpu where host in ({list})")).is_none());
        assert!(template("insert into cpu values (1)").is_none());
    }

    #[test]
    fn binds_only_what_coercion_would_cast_to_the_column() {
        let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, Some("UTC".into()));
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let bound = bind(
            &[ts.clone(), dict.clone(), DataType::Float64, DataType::Int64],
            &[
                Literal::Str("2016-01-01T00:00:01Z".into()),
                Literal::Str("host_1".into()),
                Literal::Int(90),
                Literal::Int(3),
            ],
        )
        .unwrap();
        assert_eq!(
            bound[0],
            ScalarValue::TimestampNanosecond(Some(1_451_606_401_000_000_000), Some("UTC".into()))
        );
        assert_eq!(bound[1].data_type(), dict);
        assert_eq!(bound[2], ScalarValue::Float64(Some(90.0)));
        assert_eq!(bound[3], ScalarValue::Int64(Some(3)));
        // `now()` binds to the time column as the timestamp it is, and never to a tag
        // or string column (where it would compare as a string instead of casting it).
        let now = Literal::Time(1_451_606_401_000_000_000);
        assert_eq!(
            bind(std::slice::from_ref(&ts), std::slice::from_ref(&now)).unwrap()[0],
            bound[0]
        );
        assert!(bind(&[DataType::Utf8], std::slice::from_ref(&now)).is_none());
        assert!(bind(std::slice::from_ref(&dict), std::slice::from_ref(&now)).is_none());
        assert!(bind(&[DataType::Int64], &[now]).is_none());
        // `int_col >= 90.5` compares as floats: binding 90.5 as an integer would change
        // the answer, so it is not bound.
        assert!(bind(&[DataType::Int64], &[Literal::Float(90.5)]).is_none());
        // Not a timestamp: an error, left to plain planning to report.
        assert!(bind(&[ts], &[Literal::Str("yesterday-ish".into())]).is_none());
    }
}
