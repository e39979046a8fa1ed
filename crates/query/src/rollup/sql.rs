//! `CREATE ROLLUP` and `DROP ROLLUP`: their grammar, parsed here before DataFusion sees
//! the statement (`crate::ddl`), and the canonical text a declared rollup is stored as.
//!
//! ```text
//! CREATE ROLLUP [IF NOT EXISTS] name FROM source
//!     AGGREGATE agg [, ...] EVERY duration
//!     [GRACE [PERIOD] duration] [RETENTION duration] [FIELDS (field [, ...])]
//! DROP ROLLUP [IF EXISTS] name
//! ```
//!
//! The clauses after `FROM` come in any order, each at most once. Names are `t`,
//! `db.t` or `bulkhead.db.t`, folded to lower case unless double-quoted (as the planner
//! does); durations are the config file's (`10m`, `1h30m`, `365d`), bare or quoted.
//! Errors are [`QueryError::Syntax`] and name the clause.

use std::time::Duration;

use bulkhead_frontend::units::HumanDuration;

use super::{Aggregate, RollupSpec};
use crate::catalog::CATALOG;
use crate::error::{QueryError, Result};

/// A parsed rollup statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RollupStatement {
    Create {
        spec: RollupSpec,
        if_not_exists: bool,
    },
    Drop {
        database: String,
        name: String,
        if_exists: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An unquoted word, as written.
    Word(String),
    /// A double-quoted identifier, unescaped.
    Quoted(String),
    /// A single-quoted string, unescaped.
    Str(String),
    /// A word starting with a digit: a duration such as `1h30m`.
    Atom(String),
    Punct(char),
}

impl Tok {
    fn is_word(&self, keyword: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn show(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Atom(w) => format!("`{w}`"),
            Tok::Quoted(q) => format!("`\"{q}\"`"),
            Tok::Str(s) => format!("`'{s}'`"),
            Tok::Punct(c) => format!("`{c}`"),
        }
    }
}

/// Split `sql` into tokens (the first `limit` of them), skipping blanks and comments.
fn lex(sql: &str, limit: usize) -> std::result::Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if out.len() >= limit {
            break;
        }
        let rest = &sql[i..];
        if c.is_whitespace() {
            chars.next();
        } else if rest.starts_with("--") {
            let end = rest.find('\n').map_or(sql.len(), |n| i + n);
            while chars.peek().is_some_and(|&(j, _)| j < end) {
                chars.next();
            }
        } else if rest.starts_with("/*") {
            let Some(n) = rest.find("*/") else {
                return Err("unterminated /* comment".into());
            };
            while chars.peek().is_some_and(|&(j, _)| j < i + n + 2) {
                chars.next();
            }
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    Some((_, q)) if q == c => {
                        if chars.peek().is_some_and(|&(_, n)| n == c) {
                            chars.next();
                            text.push(c);
                        } else {
                            break;
                        }
                    }
                    Some((_, other)) => text.push(other),
                    None => return Err(format!("unterminated {c}quoted{c} text")),
                }
            }
            out.push(if c == '"' {
                Tok::Quoted(text)
            } else {
                Tok::Str(text)
            });
        } else if c.is_alphanumeric() || c == '_' {
            let mut text = String::new();
            while let Some(&(_, n)) = chars.peek() {
                if !(n.is_alphanumeric() || n == '_' || n == '$') {
                    break;
                }
                text.push(n);
                chars.next();
            }
            out.push(if c.is_ascii_digit() {
                Tok::Atom(text)
            } else {
                Tok::Word(text)
            });
        } else {
            // Any other symbol is a token of its own: the parser names the first token
            // it did not expect (`WHERE` in `... EVERY 1h WHERE x = 1`), not a later `=`.
            chars.next();
            out.push(Tok::Punct(c));
        }
    }
    Ok(out)
}

/// Whether `sql` starts with `CREATE ROLLUP` or `DROP ROLLUP` (after comments).
pub(crate) fn is_rollup_statement(sql: &str) -> bool {
    let Ok(tokens) = lex(sql, 2) else {
        return false;
    };
    matches!(tokens.as_slice(), [first, second, ..]
        if (first.is_word("create") || first.is_word("drop")) && second.is_word("rollup"))
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
    /// `CREATE ROLLUP` or `DROP ROLLUP`, for messages.
    statement: &'static str,
}

/// Parse a rollup statement; unqualified names are in `default_db`.
pub(crate) fn parse(sql: &str, default_db: &str) -> Result<RollupStatement> {
    let tokens =
        lex(sql, usize::MAX).map_err(|e| QueryError::Syntax(format!("ROLLUP statement: {e}")))?;
    let create = tokens.first().is_some_and(|t| t.is_word("create"));
    let mut p = Parser {
        tokens,
        pos: 2, // CREATE|DROP ROLLUP, checked by `is_rollup_statement`
        statement: if create {
            "CREATE ROLLUP"
        } else {
            "DROP ROLLUP"
        },
    };
    let statement = if create {
        p.create(default_db)?
    } else {
        p.drop(default_db)?
    };
    if p.peek() == Some(&Tok::Punct(';')) {
        p.pos += 1;
    }
    if let Some(t) = p.peek() {
        return Err(p.err(
            "",
            format!("unexpected {} after the end of the statement", t.show()),
        ));
    }
    Ok(statement)
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn bump(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "the end of the statement".to_string(), Tok::show)
    }

    fn err(&self, clause: &str, msg: impl std::fmt::Display) -> QueryError {
        if clause.is_empty() {
            QueryError::Syntax(format!("{}: {msg}", self.statement))
        } else {
            QueryError::Syntax(format!("{}: {clause}: {msg}", self.statement))
        }
    }

    /// Consume the keywords `words` if they come next.
    fn eat(&mut self, words: &[&str]) -> bool {
        let all = words
            .iter()
            .enumerate()
            .all(|(i, w)| self.tokens.get(self.pos + i).is_some_and(|t| t.is_word(w)));
        if all {
            self.pos += words.len();
        }
        all
    }

    fn expect_punct(&mut self, clause: &str, c: char) -> Result<()> {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(clause, format!("expected `{c}`, found {}", self.found())))
        }
    }

    fn ident(&mut self, clause: &str, what: &str) -> Result<String> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                let w = w.to_lowercase();
                self.pos += 1;
                Ok(w)
            }
            Some(Tok::Quoted(q)) => {
                let q = q.clone();
                self.pos += 1;
                Ok(q)
            }
            _ => Err(self.err(clause, format!("expected {what}, found {}", self.found()))),
        }
    }

    /// `t`, `db.t` or `bulkhead.db.t` -> (db, t).
    fn name(&mut self, clause: &str, default_db: &str) -> Result<(String, String)> {
        let mut parts = vec![self.ident(clause, "a name")?];
        while self.peek() == Some(&Tok::Punct('.')) {
            self.pos += 1;
            parts.push(self.ident(clause, "a name after `.`")?);
        }
        match parts.as_slice() {
            [t] => Ok((default_db.to_string(), t.clone())),
            [d, t] => Ok((d.clone(), t.clone())),
            [c, d, t] if c == CATALOG => Ok((d.clone(), t.clone())),
            _ => Err(self.err(
                clause,
                format!(
                    "`{}`: expected table, db.table or {CATALOG}.db.table",
                    parts.join(".")
                ),
            )),
        }
    }

    fn duration(&mut self, clause: &str) -> Result<Duration> {
        let text = match self.peek() {
            Some(Tok::Atom(a) | Tok::Str(a)) => a.clone(),
            _ => {
                return Err(self.err(
                    clause,
                    format!(
                        "expected a duration such as 10m, 1h or 1h30m, found {}",
                        self.found()
                    ),
                ));
            }
        };
        self.pos += 1;
        text.parse::<HumanDuration>()
            .map(HumanDuration::get)
            .map_err(|e| self.err(clause, e))
    }

    fn drop(&mut self, default_db: &str) -> Result<RollupStatement> {
        let if_exists = self.eat(&["if", "exists"]);
        let (database, name) = self.name("name", default_db)?;
        Ok(RollupStatement::Drop {
            database,
            name,
            if_exists,
        })
    }

    fn create(&mut self, default_db: &str) -> Result<RollupStatement> {
        let if_not_exists = self.eat(&["if", "not", "exists"]);
        let (database, name) = self.name("name", default_db)?;
        if !self.eat(&["from"]) {
            return Err(self.err(
                "FROM",
                format!("expected FROM source_table, found {}", self.found()),
            ));
        }
        let (source_db, source) = self.name("FROM", &database)?;
        if source_db != database {
            return Err(self.err(
                "FROM",
                format!(
                    "`{source_db}.{source}` is in another database than the rollup \
                     (`{database}`); a rollup and its source share one database"
                ),
            ));
        }
        let mut aggregates: Option<Vec<Aggregate>> = None;
        let mut every = None;
        let mut grace = None;
        let mut retention = None;
        let mut fields: Option<Vec<String>> = None;
        while let Some(tok) = self.bump() {
            let clause = match &tok {
                Tok::Word(w) => w.to_ascii_uppercase(),
                Tok::Punct(';') => {
                    self.pos -= 1;
                    break;
                }
                other => {
                    return Err(self.err(
                        "",
                        format!(
                            "unexpected {}; expected AGGREGATE, EVERY, GRACE, RETENTION or FIELDS",
                            other.show()
                        ),
                    ));
                }
            };
            match clause.as_str() {
                "AGGREGATE" => {
                    if aggregates.is_some() {
                        return Err(self.err(&clause, "given twice"));
                    }
                    aggregates = Some(self.aggregates()?);
                }
                "EVERY" => {
                    if every.is_some() {
                        return Err(self.err(&clause, "given twice"));
                    }
                    every = Some(self.duration("EVERY")?);
                }
                "GRACE" => {
                    if grace.is_some() {
                        return Err(self.err(&clause, "given twice"));
                    }
                    self.eat(&["period"]);
                    grace = Some(self.duration("GRACE")?);
                }
                "RETENTION" => {
                    if retention.is_some() {
                        return Err(self.err(&clause, "given twice"));
                    }
                    retention = Some(self.duration("RETENTION")?);
                }
                "FIELDS" => {
                    if fields.is_some() {
                        return Err(self.err(&clause, "given twice"));
                    }
                    fields = Some(self.fields()?);
                }
                _ => {
                    return Err(self.err(
                        "",
                        format!(
                            "unexpected {}; expected AGGREGATE, EVERY, GRACE, RETENTION or FIELDS",
                            tok.show()
                        ),
                    ));
                }
            }
        }
        let Some(aggregates) = aggregates else {
            return Err(self.err(
                "AGGREGATE",
                "missing: name the aggregates, e.g. AGGREGATE avg, min, max, count",
            ));
        };
        let Some(every) = every else {
            return Err(self.err("EVERY", "missing: give the bucket width, e.g. EVERY 1h"));
        };
        let spec = RollupSpec {
            name,
            database,
            source,
            aggregates,
            fields: fields.unwrap_or_default(),
            every,
            grace_period: grace.unwrap_or(super::DEFAULT_GRACE_PERIOD),
            retention: retention.filter(|d| !d.is_zero()),
        };
        Ok(RollupStatement::Create {
            spec,
            if_not_exists,
        })
    }

    /// `agg [, agg]...`, optionally in parentheses.
    fn aggregates(&mut self) -> Result<Vec<Aggregate>> {
        let parens = self.peek() == Some(&Tok::Punct('('));
        if parens {
            self.pos += 1;
        }
        let mut out = Vec::new();
        loop {
            let word = match self.peek() {
                Some(Tok::Word(w) | Tok::Quoted(w)) => w.clone(),
                _ => {
                    return Err(self.err(
                        "AGGREGATE",
                        format!(
                            "expected an aggregate (avg, min, max, sum, count, first, last), found {}",
                            self.found()
                        ),
                    ));
                }
            };
            self.pos += 1;
            out.push(
                word.parse::<Aggregate>()
                    .map_err(|e| self.err("AGGREGATE", e))?,
            );
            if self.peek() != Some(&Tok::Punct(',')) {
                break;
            }
            self.pos += 1;
        }
        if parens {
            self.expect_punct("AGGREGATE", ')')?;
        }
        Ok(out)
    }

    /// `(field [, field]...)`.
    fn fields(&mut self) -> Result<Vec<String>> {
        self.expect_punct("FIELDS", '(')?;
        let mut out = Vec::new();
        loop {
            out.push(self.ident("FIELDS", "a field name")?);
            if self.peek() != Some(&Tok::Punct(',')) {
                break;
            }
            self.pos += 1;
        }
        self.expect_punct("FIELDS", ')')?;
        Ok(out)
    }
}

/// A double-quoted identifier.
pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The canonical `CREATE ROLLUP` statement of `spec`: fully qualified, every name
/// quoted, every clause given; [`parse`] reads it back to the same spec. Declared
/// rollups are stored as this text, and `system.rollups.definition` shows it.
pub fn to_sql(spec: &RollupSpec) -> String {
    let aggregates: Vec<&str> = spec.aggregates.iter().map(|a| a.name()).collect();
    let mut sql = format!(
        "CREATE ROLLUP {}.{} FROM {} AGGREGATE {} EVERY {} GRACE {}",
        quote(&spec.database),
        quote(&spec.name),
        quote(&spec.source),
        aggregates.join(", "),
        HumanDuration(spec.every),
        HumanDuration(spec.grace_period),
    );
    if let Some(r) = spec.retention {
        sql.push_str(&format!(" RETENTION {}", HumanDuration(r)));
    }
    if !spec.fields.is_empty() {
        let fields: Vec<String> = spec.fields.iter().map(|f| quote(f)).collect();
        sql.push_str(&format!(" FIELDS ({})", fields.join(", ")));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(sql: &str) -> RollupSpec {
        match parse(sql, "db") {
            Ok(RollupStatement::Create { spec, .. }) => spec,
            other => panic!("{sql}: {other:?}"),
        }
    }

    fn syntax_error(sql: &str) -> String {
        match parse(sql, "db") {
            Err(QueryError::Syntax(m)) => m,
            other => panic!("{sql}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn recognises_only_rollup_statements() {
        for sql in [
            "create rollup x from y aggregate avg every 1h",
            " -- c\n DROP /* x */ Rollup x",
            "CREATE ROLLUP",
        ] {
            assert!(is_rollup_statement(sql), "{sql}");
        }
        for sql in [
            "create table x",
            "drop table rollup",
            "select 'create rollup'",
            "drop rollups",
            "createrollup",
            "",
        ] {
            assert!(!is_rollup_statement(sql), "{sql}");
        }
    }

    #[test]
    fn parses_every_clause_in_any_order() {
        let spec = create(
            "CREATE ROLLUP Cpu_1h FROM cpu AGGREGATE avg, MIN, max, count EVERY 1h \
             RETENTION 365d GRACE PERIOD '5m' FIELDS (usage, \"Load\");",
        );
        assert_eq!(spec.name, "cpu_1h");
        assert_eq!(spec.database, "db");
        assert_eq!(spec.source, "cpu");
        assert_eq!(
            spec.aggregates,
            [
                Aggregate::Avg,
                Aggregate::Min,
                Aggregate::Max,
                Aggregate::Count
            ]
        );
        assert_eq!(spec.every, Duration::from_secs(3600));
        assert_eq!(spec.grace_period, Duration::from_secs(300));
        assert_eq!(spec.retention, Some(Duration::from_secs(365 * 86_400)));
        assert_eq!(spec.fields, ["usage", "Load"]);
        let short = create("create rollup other.r from other.t aggregate (mean) every 90s");
        assert_eq!(short.database, "other");
        assert_eq!(short.grace_period, super::super::DEFAULT_GRACE_PERIOD);
        assert_eq!(short.retention, None);
        assert!(short.fields.is_empty());
        let zero = create("create rollup r from t aggregate max every 1m retention 0s");
        assert_eq!(zero.retention, None);
    }

    #[test]
    fn canonical_text_reads_back_to_the_same_rollup() {
        for sql in [
            "CREATE ROLLUP cpu_1h FROM cpu AGGREGATE avg, min, max, count EVERY 1h",
            "CREATE ROLLUP \"we\"\"ird\" FROM \"a b\" AGGREGATE first, last, sum EVERY 1h30m \
             GRACE 1500ms RETENTION 7d FIELDS (\"x\", y)",
            "create rollup bulkhead.d.r from t aggregate count every 7s grace 0s",
        ] {
            let spec = create(sql);
            let text = to_sql(&spec);
            assert_eq!(create(&text), spec, "{text}");
            assert_eq!(to_sql(&create(&text)), text);
        }
    }

    #[test]
    fn drop_parses_with_and_without_if_exists() {
        assert_eq!(
            parse("DROP ROLLUP IF EXISTS x.cpu_1h", "db").expect("parse"),
            RollupStatement::Drop {
                database: "x".into(),
                name: "cpu_1h".into(),
                if_exists: true,
            }
        );
        let m = syntax_error("DROP ROLLUP");
        assert!(m.starts_with("DROP ROLLUP: name: expected a name"), "{m}");
        let m = syntax_error("DROP ROLLUP a b");
        assert!(m.contains("unexpected `b`"), "{m}");
    }

    #[test]
    fn errors_name_the_clause() {
        for (sql, says) in [
            ("CREATE ROLLUP r", "CREATE ROLLUP: FROM: expected FROM"),
            ("CREATE ROLLUP FROM t", "CREATE ROLLUP: FROM: expected FROM"),
            (
                "CREATE ROLLUP r FROM t EVERY 1h",
                "CREATE ROLLUP: AGGREGATE: missing",
            ),
            (
                "CREATE ROLLUP r FROM t AGGREGATE avg",
                "CREATE ROLLUP: EVERY: missing",
            ),
            (
                "CREATE ROLLUP r FROM t AGGREGATE median EVERY 1h",
                "AGGREGATE: unknown aggregate `median`",
            ),
            (
                "CREATE ROLLUP r FROM t AGGREGATE avg, EVERY 1h",
                "AGGREGATE: unknown aggregate `EVERY`",
            ),
            (
                "CREATE ROLLUP r FROM t AGGREGATE avg EVERY soon",
                "EVERY: expected a duration",
            ),
            (
                "CREATE ROLLUP r FROM t AGGREGATE avg EVERY 1y",
                "EVERY: invalid duration `1y`",
            ),
            (
                "CREATE ROLLUP r FROM t AGGREGATE avg EVERY 1h GRACE x",
                "GRACE: expected a duration",
            ),
            (
                "CREATE ROLLUP r FROM t AGGREGATE avg EVERY 1h RETENTION 1 year",
                "RETENTION: invalid duration `1`",
            ),
            (
                "CREATE ROLLUP r FROM t AGGREGATE avg EVERY 1h FIELDS a",
                "FIELDS: expected `(`",
            ),
            (
                "CREATE ROLLUP r FROM t AGGREGATE avg EVERY 1h FIELDS (a,)",
                "FIELDS: expected a field name",
            ),
            (
                "CREATE ROLLUP r FROM t AGGREGATE avg EVERY 1h EVERY 2h",
                "EVERY: given twice",
            ),
            (
                "CREATE ROLLUP r FROM t AGGREGATE avg EVERY 1h WHERE x",
                "unexpected `WHERE`; expected AGGREGATE, EVERY",
            ),
            (
                "CREATE ROLLUP r FROM other.t AGGREGATE avg EVERY 1h",
                "FROM: `other.t` is in another database",
            ),
            (
                "CREATE ROLLUP a.b.c.d FROM t AGGREGATE avg EVERY 1h",
                "name: `a.b.c.d`",
            ),
            (
                "CREATE ROLLUP r FROM t AGGREGATE avg EVERY 1h ; x",
                "unexpected `x`",
            ),
            ("CREATE ROLLUP r FROM 't'", "FROM: expected a name"),
            (
                "CREATE ROLLUP r FROM t AGGREGATE avg EVERY 1h #",
                "unexpected `#`; expected AGGREGATE",
            ),
        ] {
            let m = syntax_error(sql);
            assert!(m.contains(says), "{sql}: {m}");
        }
    }
}
