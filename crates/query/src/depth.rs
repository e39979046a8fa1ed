//! Bounded statement depth: SQL is parsed and checked here before DataFusion plans it,
//! so that no statement can overflow a query thread's stack.
//!
//! sqlparser limits how deeply its parser recurses, but a chain of infix operators
//! (`1+1+…+1`, `a OR b OR …`) is parsed in a loop into a left-deep tree of any depth,
//! and DataFusion's planning, optimizer rules, `Clone`, `Drop` and evaluation of such a
//! tree recurse once per level, only some of them behind stack growth. So, in order:
//!
//! 1. the statement's tokens are counted ([`MAX_OPERATORS`]): a bound on how deep the
//!    parsed tree can be, checked before a tree is built at all;
//! 2. the statement is parsed, and long `OR` chains are rebalanced into trees of
//!    logarithmic depth (`OR` is associative, so the answer is the same: this is what
//!    makes Grafana's "All" over thousands of values, a long `host = 'a' OR …`, work).
//!    `AND` chains are not: DataFusion splits conjunctions and joins them again into a
//!    left-deep chain while pushing filters down, so they count at their full length;
//! 3. the depth of the remaining expression tree is measured; over
//!    [`MAX_EXPR_DEPTH`] the statement is refused with [`QueryError::TooComplex`]
//!    (HTTP 400, SQLSTATE 54001).
//!
//! Parsing, the walk and dropping a refused tree run on a large stack of their own
//! ([`PARSE_STACK`], switched to on the calling thread), so they do not depend on the
//! stack of the thread they are called from.

use std::ops::ControlFlow;

use datafusion::common::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::sql::parser::{CopyToSource, DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Query, Value, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::dialect::{Dialect, dialect_from_str};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::error::{QueryError, Result};

/// How deeply expressions (and subqueries) may nest, once `OR` chains are rebalanced:
/// `1+1+…+1` may have about this many terms. Planning and running a tree this deep fits
/// the query threads' default 2 MiB stack, in a debug build too: `tests/depth.rs` runs
/// the limit itself on the real `query` runtime, and DataFusion's own recursion
/// protection grows the stack on the paths it covers.
pub const MAX_EXPR_DEPTH: usize = 1_000;

/// Most tokens that can add a level to the parse tree (operators, keywords) in one
/// statement. Literals, plain identifiers, commas and parentheses are not counted, so
/// a long `IN (…)` list or a wide `SELECT` list is not limited by this.
pub const MAX_OPERATORS: usize = 200_000;

/// Most set operations (`UNION`, `EXCEPT`, `INTERSECT`) in one statement: they form a
/// chain of their own that the expression walk does not see.
pub const MAX_SET_OPERATIONS: usize = MAX_EXPR_DEPTH;

/// `OR` chains up to this length keep their shape (and so their column name); longer
/// ones are rebalanced.
const REBALANCE_OVER: usize = 64;

/// The stack that parsing, the depth walk and dropping a refused tree run on. A tree
/// of [`MAX_OPERATORS`] levels is dropped recursively; this is ample for that.
const PARSE_STACK: usize = 256 * 1024 * 1024;

/// A statement with at most this many operators and keywords is parsed on the calling
/// thread's own stack, when [`IN_PLACE_STACK`] of it is left. Its tree is at most this
/// deep from operator chains, plus the parser's own recursion limit (nested parentheses
/// and calls); `tests::small_statements_fit_a_small_stack` parses the deepest such
/// statements on a thread with less stack than that, in a debug build too.
const IN_PLACE_OPERATORS: usize = 256;

/// Stack that must be left on the calling thread to parse a small statement in place.
/// Mapping, switching to and unmapping a [`PARSE_STACK`] costs a dashboard query more
/// than parsing it: the unmap interrupts every other core to flush its TLB.
const IN_PLACE_STACK: usize = 1024 * 1024;

/// Parse `sql` with the session's dialect and parser settings, check it against the
/// limits above, and return it ready to plan, with the depth of its deepest expression
/// (after rebalancing). With `pg`, a plain SQL statement is
/// rewritten from PostgreSQL's idioms first (see [`crate::pg`]).
pub(crate) fn parse(
    state: &SessionState,
    sql: &str,
    pg: Option<&crate::pg::PgCompat>,
) -> Result<(DfStatement, usize)> {
    let options = &state.config().options().sql_parser;
    let dialect = dialect_from_str(options.dialect.as_ref())
        .ok_or_else(|| QueryError::Plan(format!("unsupported SQL dialect {}", options.dialect)))?;
    // Tokenized once: counted here, then parsed. A statement that does not tokenize
    // is left to the parser, which names the error.
    let tokens = Tokenizer::new(dialect.as_ref(), sql)
        .tokenize_with_location()
        .ok();
    let operators = match &tokens {
        Some(tokens) => count_operators(tokens.iter().map(|t| &t.token))?,
        None => usize::MAX,
    };
    let recursion_limit = options.recursion_limit.get();
    let parse_here = move || -> Result<(DfStatement, usize)> {
        let mut statement = match tokens {
            Some(tokens) => statement_of(dialect.as_ref(), tokens, recursion_limit)?,
            None => state.sql_to_statement(sql, &options.dialect)?,
        };
        if let (Some(pg), DfStatement::Statement(_)) = (pg, &statement)
            && let Some(rewritten) = pg.rewrite(sql)
        {
            statement = DfStatement::Statement(Box::new(rewritten));
        }
        let depth = check_statement(&mut statement)?;
        Ok((statement, depth))
    };
    // A small statement is parsed on this thread's stack. Any other gets a stack of its
    // own, on this thread (`stacker` maps it, switches to it and unmaps it afterwards):
    // reserved address space, of which only the pages a statement touches are used. It
    // used to be a thread of its own, whose start and join (two context switches, each
    // waiting for a core) cost more than parsing a small query.
    let in_place = operators <= IN_PLACE_OPERATORS
        && stacker::remaining_stack().is_some_and(|left| left >= IN_PLACE_STACK);
    let parse = || {
        if in_place {
            parse_here()
        } else {
            stacker::grow(PARSE_STACK, parse_here)
        }
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse))
        .unwrap_or_else(|_| Err(QueryError::Execution("the SQL parser panicked".into())))
}

/// The one statement of `tokens`, as `SessionState::sql_to_statement` parses it
/// from text (same parser, recursion limit and errors), without tokenizing again.
fn statement_of(
    dialect: &dyn Dialect,
    tokens: Vec<TokenWithSpan>,
    recursion_limit: usize,
) -> Result<DfStatement> {
    let mut statements = DFParserBuilder::new(tokens)
        .with_dialect(dialect)
        .with_recursion_limit(recursion_limit)
        .build()?
        .parse_statements()?;
    if statements.len() > 1 {
        return Err(DataFusionError::NotImplemented(
            "The context currently only supports a single SQL statement".into(),
        )
        .into());
    }
    statements.pop_front().ok_or_else(|| {
        DataFusionError::Plan("No SQL statements were provided in the query string".into()).into()
    })
}

/// Step 1: a bound on the parse tree's depth from the tokens alone. Returns the number
/// of operators and keywords, or [`usize::MAX`] for a statement that does not tokenize.
#[cfg(test)]
fn check_tokens(dialect: &dyn Dialect, sql: &str) -> Result<usize> {
    // A statement that does not tokenize is left to the parser, which names the error.
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize() else {
        return Ok(usize::MAX);
    };
    count_operators(tokens.iter())
}

/// The operators and keywords among `tokens`; an error past the limits.
fn count_operators<'a>(tokens: impl Iterator<Item = &'a Token>) -> Result<usize> {
    let mut operators = 0usize;
    let mut set_operations = 0usize;
    for token in tokens {
        if let Token::Word(w) = token
            && w.quote_style.is_none()
            && matches!(
                w.keyword,
                Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS
            )
        {
            set_operations += 1;
        }
        if adds_depth(token) {
            operators += 1;
        }
    }
    if operators > MAX_OPERATORS {
        return Err(QueryError::TooComplex(format!(
            "statement too complex: it has {operators} operators and keywords, over the \
             limit of {MAX_OPERATORS}"
        )));
    }
    if set_operations > MAX_SET_OPERATIONS {
        return Err(QueryError::TooComplex(format!(
            "statement too complex: it chains {set_operations} set operations (UNION, \
             EXCEPT, INTERSECT), over the limit of {MAX_SET_OPERATIONS}"
        )));
    }
    Ok(operators)
}

/// Whether `token` can add a level to the parse tree: everything but literals, plain
/// identifiers and punctuation that only separates.
fn adds_depth(token: &Token) -> bool {
    match token {
        Token::Word(w) => w.quote_style.is_none() && w.keyword != Keyword::NoKeyword,
        Token::EOF
        | Token::Whitespace(_)
        | Token::Comma
        | Token::SemiColon
        | Token::LParen
        | Token::RParen
        | Token::Number(..)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_) => false,
        _ => true,
    }
}

/// Steps 2 and 3 on a parsed statement (and the statement an `EXPLAIN` or `COPY`
/// wraps).
fn check_statement(statement: &mut DfStatement) -> Result<usize> {
    let mut depth = Depth::default();
    let flow = match statement {
        DfStatement::Statement(s) => s.visit(&mut depth),
        DfStatement::Explain(explain) => return check_statement(&mut explain.statement),
        DfStatement::CopyTo(copy) => match &mut copy.source {
            CopyToSource::Query(query) => query.visit(&mut depth),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        DfStatement::CreateExternalTable(_) | DfStatement::Reset(_) => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Continue(()) => Ok(depth.max),
        ControlFlow::Break(()) => Err(QueryError::TooComplex(format!(
            "expression too deep: it nests more than {MAX_EXPR_DEPTH} levels (a long \
             chain of OR is fine; every other operator, function call and subquery \
             adds a level)"
        ))),
    }
}

/// Measures nesting while rebalancing `OR` chains on the way down; stops at
/// the first level past [`MAX_EXPR_DEPTH`], so its own recursion is bounded too.
#[derive(Default)]
struct Depth {
    depth: usize,
    /// The deepest level seen.
    max: usize,
}

impl Depth {
    fn enter(&mut self) -> ControlFlow<()> {
        self.depth += 1;
        self.max = self.max.max(self.depth);
        if self.depth > MAX_EXPR_DEPTH {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl VisitorMut for Depth {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // Before the walk descends into `expr`'s children: they are then the balanced
        // ones.
        rebalance(expr);
        self.enter()
    }

    fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// If `expr` heads a left-deep chain of more than [`REBALANCE_OVER`] `OR`s, replace
/// it with a balanced tree of the same terms in the same order.
fn rebalance(expr: &mut Expr) {
    let op = match expr {
        Expr::BinaryOp {
            op: op @ BinaryOperator::Or,
            ..
        } => op.clone(),
        _ => return,
    };
    // Measure the chain without moving anything: most are short.
    let mut len = 1;
    let mut cur = &*expr;
    while let Expr::BinaryOp { left, op: o, .. } = cur
        && *o == op
    {
        len += 1;
        cur = left;
        if len > REBALANCE_OVER {
            break;
        }
    }
    if len <= REBALANCE_OVER {
        return;
    }
    let mut terms = Vec::new();
    let mut cur = std::mem::replace(expr, Expr::value(Value::Null));
    loop {
        match cur {
            Expr::BinaryOp { left, op: o, right } if o == op => {
                terms.push(*right);
                cur = *left;
            }
            other => {
                terms.push(other);
                break;
            }
        }
    }
    terms.reverse();
    *expr = balanced(terms, &op);
}

/// `terms` joined by `op` into a tree of depth log2(len): recursion is shallow.
fn balanced(mut terms: Vec<Expr>, op: &BinaryOperator) -> Expr {
    if terms.len() == 1 {
        return terms.pop().unwrap_or_else(|| unreachable!("one term"));
    }
    let right = terms.split_off(terms.len() / 2);
    Expr::BinaryOp {
        left: Box::new(balanced(terms, op)),
        op: op.clone(),
        right: Box::new(balanced(right, op)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    fn check(sql: &str) -> Result<DfStatement> {
        parse(&SessionContext::new().state(), sql, None).map(|(s, _)| s)
    }

    fn chain(op: &str, terms: usize) -> String {
        let mut sql = String::from("select 1");
        for _ in 1..terms {
            sql.push_str(op);
            sql.push('1');
        }
        sql
    }

    fn too_complex(r: Result<DfStatement>) -> String {
        match r {
            Err(QueryError::TooComplex(m)) => m,
            other => panic!("expected TooComplex, got {other:?}"),
        }
    }

    /// The statement (or error) parsed from tokens equals what `sql_to_statement`
    /// parses from the text, for statements of every kind the servers receive and for
    /// broken ones; the random part mixes tokens into statements that mostly fail.
    #[test]
    fn parsing_from_tokens_matches_parsing_the_text() {
        use rand::{Rng, SeedableRng};
        let state = SessionContext::new().state();
        let dialect = GenericDialect {};
        let mut corpus: Vec<String> = [
            "select 1",
            "select date_bin(interval '1 minute', time) as m, max(usage_user) from cpu \
             where hostname = 'host_1' and time >= '2016-01-01T00:00:00Z' group by m order by m",
            "select * from cpu where usage_user > 90 limit 5",
            "with t as (select 1 as a) select a from t union all select 2",
            "explain analyze select count(*) from cpu",
            "copy (select 1) to 'x.parquet'",
            "set datafusion.execution.batch_size = 1024",
            "show tables",
            "select 1; select 2",
            "",
            ";",
            "select from where",
            "select 'unterminated",
            "select \"quoted id\", $1, 1e10, x'0f' from \"t\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let words = [
            "select", "from", "where", "(", ")", ",", "1", "'a'", "x", "+", "and", "or",
            "group by", "order by", "limit", ";", "*", "not", "in", "case", "when", "end",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..400 {
            let n = rng.random_range(1..12);
            let mut sql = String::from("select ");
            for _ in 0..n {
                sql.push_str(words[rng.random_range(0..words.len())]);
                sql.push(' ');
            }
            corpus.push(sql);
        }
        for sql in &corpus {
            let from_text = state
                .sql_to_statement(sql, &state.config().options().sql_parser.dialect)
                .map(|s| s.to_string())
                .map_err(|e| format!("{:?}", QueryError::from(e)));
            let from_tokens = match Tokenizer::new(&dialect, sql).tokenize_with_location() {
                Ok(tokens) => statement_of(&dialect, tokens, 50)
                    .map(|s| s.to_string())
                    .map_err(|e| format!("{e:?}")),
                Err(_) => continue, // parsed from the text, as before
            };
            assert_eq!(from_tokens, from_text, "{sql}");
        }
    }

    #[test]
    fn chains_up_to_the_limit_parse_and_past_it_are_refused() {
        // `select` + the chain: the projection item is the outermost expression.
        check(&chain("+", MAX_EXPR_DEPTH - 10)).unwrap();
        let m = too_complex(check(&chain("+", MAX_EXPR_DEPTH + 1)));
        assert!(m.contains("nests more than 1000 levels"), "{m}");
        // Nesting through function calls counts as well.
        let nested = format!(
            "select {}1{}",
            "abs(1+".repeat(MAX_EXPR_DEPTH),
            ")".repeat(MAX_EXPR_DEPTH)
        );
        // sqlparser's own recursion limit (50) answers this one first.
        assert!(check(&nested).is_err());
    }

    #[test]
    fn small_statements_fit_a_small_stack() {
        // The deepest statements that are parsed in place: a chain of operators up to
        // the limit, and calls, parentheses and subqueries nested until the parser's
        // own recursion limit refuses them (they count few or no operators). On a
        // thread with little more stack than the in-place parse requires, none may
        // overflow it.
        let nest = |open: &str, inner: &str, n: usize| {
            format!("select {}{inner}{}", open.repeat(n), ")".repeat(n))
        };
        let chain_sql = chain("+", IN_PLACE_OPERATORS - 2);
        let inner_chain = chain("+", 120).trim_start_matches("select ").to_string();
        std::thread::Builder::new()
            .stack_size(IN_PLACE_STACK + 256 * 1024)
            .spawn(move || {
                assert!(stacker::remaining_stack().unwrap() >= IN_PLACE_STACK);
                check(&chain_sql).unwrap();
                for (open, inner) in [
                    ("abs(", "1"),
                    ("(", "1"),
                    ("(select ", "1"),
                    ("abs(", inner_chain.as_str()),
                ] {
                    let mut deepest = 0;
                    for n in 1.. {
                        let sql = nest(open, inner, n);
                        if check_tokens(&GenericDialect {}, &sql).unwrap() > IN_PLACE_OPERATORS {
                            break;
                        }
                        if check(&sql).is_err() {
                            break;
                        }
                        deepest = n;
                    }
                    assert!(deepest >= 10, "{open}: only {deepest} levels parsed");
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn huge_chains_are_refused_from_their_tokens() {
        let m = too_complex(check(&chain("+", MAX_OPERATORS + 1)));
        assert!(m.contains("operators and keywords"), "{m}");
        let unions = "select 1 union all ".repeat(MAX_SET_OPERATIONS + 1) + "select 1";
        let m = too_complex(check(&unions));
        assert!(m.contains("set operations"), "{m}");
    }

    #[test]
    fn long_or_chains_are_rebalanced_in_order() {
        let terms = 5_000;
        let sql = format!(
            "select * from t where {}",
            (0..terms)
                .map(|i| format!("host = 'h{i}'"))
                .collect::<Vec<_>>()
                .join(" OR ")
        );
        let statement = check(&sql).unwrap();
        let DfStatement::Statement(s) = statement else {
            panic!("not a SQL statement")
        };
        // Same terms, same order (Display prints no parentheses for the grouping)...
        let text = s.to_string();
        assert!(
            text.ends_with(&sql["select * from t where ".len()..]),
            "{text}"
        );
        // ...in a tree of logarithmic depth.
        let datafusion::sql::sqlparser::ast::Statement::Query(query) = *s else {
            panic!("not a query")
        };
        let datafusion::sql::sqlparser::ast::SetExpr::Select(select) = *query.body else {
            panic!("not a select")
        };
        let mut deepest = 0;
        let mut stack = vec![(select.selection.as_ref().expect("a WHERE"), 1)];
        while let Some((e, d)) = stack.pop() {
            deepest = deepest.max(d);
            if let Expr::BinaryOp { left, right, .. } = e {
                stack.push((left, d + 1));
                stack.push((right, d + 1));
            }
        }
        assert!((13..=16).contains(&deepest), "depth {deepest}");
    }

    #[test]
    fn short_chains_keep_their_shape() {
        let sql = "SELECT a OR b OR c FROM t";
        let DfStatement::Statement(s) = check(sql).unwrap() else {
            panic!("not a SQL statement")
        };
        assert_eq!(s.to_string(), sql);
    }

    #[test]
    fn wide_lists_are_not_limited() {
        let list = (0..50_000).map(|i| i.to_string()).collect::<Vec<_>>();
        check(&format!("select 1 where 1 in ({})", list.join(","))).unwrap();
    }
}
