//! Recursive-descent InfluxQL parser (SELECT, SHOW, CREATE/DROP DATABASE, DROP
//! MEASUREMENT; other statements are recognised and reported as unsupported). Expression nesting is bounded by
//! [`MAX_DEPTH`] so a hostile query cannot overflow the stack.

use super::ParseError;
use super::ast::*;
use super::lexer::{Lexer, Token};

#[path = "parser_show.rs"]
mod show;

/// Deepest expression / subquery nesting accepted.
pub(crate) const MAX_DEPTH: usize = 64;

/// Clause keywords that cannot be bare identifiers (quote them: `"from"`).
const RESERVED: &[&str] = &[
    "AS", "BY", "DELETE", "DROP", "FROM", "GROUP", "INTO", "LIMIT", "OFFSET", "ON", "ORDER",
    "SELECT", "SHOW", "SLIMIT", "SOFFSET", "WHERE", "WITH", "CREATE",
];

/// Words that make up the names of statements (`DROP MEASUREMENT`, `SHOW TAG KEYS`...).
const STATEMENT_WORDS: &[&str] = &[
    "CARDINALITY",
    "CONTINUOUS",
    "DATABASE",
    "DATABASES",
    "DIAGNOSTICS",
    "EXACT",
    "FIELD",
    "GRANTS",
    "KEY",
    "KEYS",
    "MEASUREMENT",
    "MEASUREMENTS",
    "POLICIES",
    "POLICY",
    "QUERIES",
    "QUERY",
    "RETENTION",
    "SERIES",
    "SHARD",
    "SHARDS",
    "STATS",
    "SUBSCRIPTION",
    "SUBSCRIPTIONS",
    "TAG",
    "USER",
    "USERS",
    "VALUES",
];

fn reserved(name: &str) -> bool {
    RESERVED.iter().any(|k| k.eq_ignore_ascii_case(name))
}

/// Parse every `;`-separated statement of `src`.
pub(crate) fn parse(src: &str) -> Result<Vec<Statement>, ParseError> {
    let mut p = Parser::new(src)?;
    let mut out = Vec::new();
    loop {
        while p.eat_op(";")? {}
        if p.peek == Token::Eof {
            break;
        }
        out.push(p.statement()?);
        if p.peek != Token::Eof && !p.eat_op(";")? {
            return Err(p.unexpected("; or EOF"));
        }
    }
    if out.is_empty() {
        return Err(ParseError::at(
            src,
            0,
            "found EOF, expected SELECT, SHOW, CREATE",
        ));
    }
    Ok(out)
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    src: &'a str,
    peek: Token,
    peek_at: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Self, ParseError> {
        let mut lexer = Lexer::new(src);
        let (peek, peek_at) = lexer.next_token()?;
        Ok(Self {
            lexer,
            src,
            peek,
            peek_at,
            depth: 0,
        })
    }

    fn advance(&mut self) -> Result<Token, ParseError> {
        let (next, at) = self.lexer.next_token()?;
        self.peek_at = at;
        Ok(std::mem::replace(&mut self.peek, next))
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        ParseError::at(
            self.src,
            self.peek_at,
            format!("found {}, expected {expected}", self.peek.describe()),
        )
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(&self.peek, Token::Ident { name, quoted: false } if name.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> Result<bool, ParseError> {
        if self.is_keyword(kw) {
            self.advance()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), ParseError> {
        if self.eat_keyword(kw)? {
            Ok(())
        } else {
            Err(self.unexpected(kw))
        }
    }

    fn eat_op(&mut self, op: &str) -> Result<bool, ParseError> {
        if matches!(self.peek, Token::Op(o) if o == op) {
            self.advance()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn expect_op(&mut self, op: &str) -> Result<(), ParseError> {
        if self.eat_op(op)? {
            Ok(())
        } else {
            Err(self.unexpected(op))
        }
    }

    fn ident(&mut self) -> Result<String, ParseError> {
        match &self.peek {
            Token::Ident { name, quoted } if *quoted || !reserved(name) => {
                let name = name.clone();
                self.advance()?;
                Ok(name)
            }
            _ => Err(self.unexpected("identifier")),
        }
    }

    /// The regex whose `/` is the current token.
    fn regex(&mut self) -> Result<String, ParseError> {
        if !matches!(self.peek, Token::Op("/")) {
            return Err(self.unexpected("regex"));
        }
        let re = self.lexer.regex(self.peek_at)?;
        let (next, at) = self.lexer.next_token()?;
        self.peek = next;
        self.peek_at = at;
        Ok(re)
    }

    fn unsigned(&mut self) -> Result<u64, ParseError> {
        match self.peek {
            Token::Integer(i) if i >= 0 => {
                self.advance()?;
                Ok(i as u64)
            }
            _ => Err(self.unexpected("integer")),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::at(
                self.src,
                self.peek_at,
                format!("query nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(())
    }

    fn statement(&mut self) -> Result<Statement, ParseError> {
        if self.is_keyword("SELECT") {
            return Ok(Statement::Select(Box::new(self.select()?)));
        }
        if self.eat_keyword("SHOW")? {
            return self.show();
        }
        if self.eat_keyword("CREATE")? {
            if self.eat_keyword("DATABASE")? {
                let name = self.ident()?;
                if self.is_keyword("WITH") {
                    return self.unsupported("CREATE DATABASE ... WITH");
                }
                return Ok(Statement::CreateDatabase(name));
            }
            let what = self.words(2)?;
            return self.unsupported(&format!("CREATE {what}"));
        }
        if self.eat_keyword("DROP")? {
            if self.eat_keyword("DATABASE")? {
                return Ok(Statement::DropDatabase(self.ident()?));
            }
            if self.eat_keyword("MEASUREMENT")? {
                return Ok(Statement::DropMeasurement(self.ident()?));
            }
            if self.eat_keyword("SERIES")? {
                let (from, cond) = self.delete_target("DROP SERIES")?;
                return Ok(Statement::DropSeries { from, cond });
            }
            let what = self.words(2)?;
            return self.unsupported(&format!("DROP {what}"));
        }
        if self.eat_keyword("DELETE")? {
            let (from, cond) = self.delete_target("DELETE")?;
            return Ok(Statement::Delete { from, cond });
        }
        for verb in ["ALTER", "GRANT", "REVOKE", "KILL", "SET", "EXPLAIN"] {
            if self.eat_keyword(verb)? {
                let what = self.words(2)?;
                return self.unsupported(format!("{verb} {what}").trim());
            }
        }
        Err(self.unexpected(
            "SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, KILL",
        ))
    }

    /// `[FROM sources] [WHERE cond]` of `DELETE` and `DROP SERIES`: at least one of them,
    /// as InfluxDB requires.
    fn delete_target(&mut self, what: &str) -> Result<(Vec<Source>, Option<Expr>), ParseError> {
        let from = self.optional_from()?;
        let cond = self.where_clause()?;
        if from.is_empty() && cond.is_none() {
            return Err(self.unexpected(&format!("FROM or WHERE after {what}")));
        }
        Ok((from, cond))
    }

    /// Up to `n` upper-cased keywords (to name an unsupported statement).
    fn words(&mut self, n: usize) -> Result<String, ParseError> {
        let mut out = Vec::new();
        for _ in 0..n {
            match &self.peek {
                Token::Ident {
                    name,
                    quoted: false,
                } if STATEMENT_WORDS.iter().any(|w| w.eq_ignore_ascii_case(name)) => {
                    out.push(name.to_ascii_uppercase());
                    self.advance()?;
                }
                _ => break,
            }
        }
        Ok(out.join(" "))
    }

    /// Skip the rest of an unsupported statement (to `;` or EOF).
    fn unsupported(&mut self, what: &str) -> Result<Statement, ParseError> {
        while !matches!(self.peek, Token::Eof | Token::Op(";")) {
            if matches!(self.peek, Token::Op("/")) {
                // Maybe a regex (`DROP SERIES FROM /re/`): skip it whole if it is one.
                let at = self.peek_at;
                if self.regex().is_err() {
                    self.lexer.set_pos(at + 1);
                    self.advance()?;
                }
                continue;
            }
            self.advance()?;
        }
        Ok(Statement::Unsupported(what.to_string()))
    }

    fn on(&mut self) -> Result<Option<String>, ParseError> {
        if self.eat_keyword("ON")? {
            return Ok(Some(self.ident()?));
        }
        Ok(None)
    }

    /// `= name`, `!= name`, `=~ /re/`, `!~ /re/`, and with `allow_in` also `IN (a, b)`.
    fn name_match(&mut self, allow_in: bool) -> Result<NameMatch, ParseError> {
        if allow_in && self.eat_keyword("IN")? {
            self.expect_op("(")?;
            let mut names = vec![self.ident()?];
            while self.eat_op(",")? {
                names.push(self.ident()?);
            }
            self.expect_op(")")?;
            return Ok(NameMatch::In(names));
        }
        if self.eat_op("=~")? {
            return Ok(NameMatch::Regex(self.regex()?));
        }
        if self.eat_op("!~")? {
            return Ok(NameMatch::NotRegex(self.regex()?));
        }
        if self.eat_op("=")? {
            return Ok(NameMatch::Eq(self.ident()?));
        }
        if self.eat_op("!=")? || self.eat_op("<>")? {
            return Ok(NameMatch::NotEq(self.ident()?));
        }
        Err(self.unexpected(if allow_in {
            "=, !=, =~, !~ or IN"
        } else {
            "=, !=, =~ or !~"
        }))
    }

    fn where_clause(&mut self) -> Result<Option<Expr>, ParseError> {
        if self.eat_keyword("WHERE")? {
            return Ok(Some(self.expr(0)?));
        }
        Ok(None)
    }

    fn limit_offset(&mut self) -> Result<(Option<u64>, Option<u64>), ParseError> {
        let limit = if self.eat_keyword("LIMIT")? {
            Some(self.unsigned()?)
        } else {
            None
        };
        let offset = if self.eat_keyword("OFFSET")? {
            Some(self.unsigned()?)
        } else {
            None
        };
        Ok((limit, offset))
    }

    fn optional_from(&mut self) -> Result<Vec<Source>, ParseError> {
        if self.eat_keyword("FROM")? {
            return self.sources();
        }
        Ok(Vec::new())
    }

    fn sources(&mut self) -> Result<Vec<Source>, ParseError> {
        let mut out = vec![self.source()?];
        while self.eat_op(",")? {
            out.push(self.source()?);
        }
        Ok(out)
    }

    /// `m`, `db.rp.m`, `db..m`, `/re/`, `db.rp./re/` or `(SELECT ...)`.
    fn source(&mut self) -> Result<Source, ParseError> {
        if self.eat_op("(")? {
            self.enter()?;
            let inner = self.select()?;
            self.depth -= 1;
            self.expect_op(")")?;
            return Ok(Source::Subquery(Box::new(inner)));
        }
        let mut parts: Vec<Option<String>> = Vec::new();
        loop {
            if matches!(self.peek, Token::Op("/")) {
                let regex = self.regex()?;
                let db = parts.first().cloned().flatten();
                return Ok(Source::Regex { db, regex });
            }
            if matches!(self.peek, Token::Op(".")) {
                parts.push(None);
            } else {
                parts.push(Some(self.ident()?));
            }
            if !self.eat_op(".")? {
                break;
            }
            if parts.len() >= 3 {
                return Err(self.unexpected("measurement (at most db.rp.measurement)"));
            }
        }
        let name = parts
            .pop()
            .flatten()
            .ok_or_else(|| self.unexpected("measurement"))?;
        let db = if parts.len() == 2 {
            parts[0].clone()
        } else {
            None
        };
        Ok(Source::Measurement { db, name })
    }

    fn select(&mut self) -> Result<Select, ParseError> {
        self.expect_keyword("SELECT")?;
        let mut fields = vec![self.field()?];
        while self.eat_op(",")? {
            fields.push(self.field()?);
        }
        let into = if self.eat_keyword("INTO")? {
            Some(self.ident()?)
        } else {
            None
        };
        self.expect_keyword("FROM")?;
        let from = self.sources()?;
        let cond = self.where_clause()?;
        let mut group_by = Vec::new();
        if self.eat_keyword("GROUP")? {
            self.expect_keyword("BY")?;
            group_by.push(self.dimension()?);
            while self.eat_op(",")? {
                group_by.push(self.dimension()?);
            }
        }
        let fill = self.fill()?;
        let mut order_desc = false;
        if self.eat_keyword("ORDER")? {
            self.expect_keyword("BY")?;
            if !self.is_keyword("time") {
                return Err(self.unexpected("time (only ORDER BY time is supported)"));
            }
            self.advance()?;
            if self.eat_keyword("DESC")? {
                order_desc = true;
            } else {
                self.eat_keyword("ASC")?;
            }
        }
        let mut s = Select {
            fields,
            from,
            cond,
            group_by,
            fill,
            order_desc,
            limit: None,
            offset: None,
            slimit: None,
            soffset: None,
            tz: None,
            into,
        };
        for (kw, slot) in [("LIMIT", 0), ("OFFSET", 1), ("SLIMIT", 2), ("SOFFSET", 3)] {
            if self.eat_keyword(kw)? {
                let n = Some(self.unsigned()?);
                match slot {
                    0 => s.limit = n,
                    1 => s.offset = n,
                    2 => s.slimit = n,
                    _ => s.soffset = n,
                }
            }
        }
        if self.eat_keyword("tz")? {
            self.expect_op("(")?;
            match self.advance()? {
                Token::Str(z) => s.tz = Some(z),
                _ => return Err(self.unexpected("string")),
            }
            self.expect_op(")")?;
        }
        Ok(s)
    }

    fn field(&mut self) -> Result<Field, ParseError> {
        let expr = self.expr(0)?;
        let alias = if self.eat_keyword("AS")? {
            Some(self.ident()?)
        } else {
            None
        };
        Ok(Field { expr, alias })
    }

    fn dimension(&mut self) -> Result<Dimension, ParseError> {
        if self.eat_op("*")? {
            return Ok(Dimension::Wildcard);
        }
        if matches!(self.peek, Token::Op("/")) {
            return Ok(Dimension::Regex(self.regex()?));
        }
        if self.is_keyword("time") {
            let at = self.peek_at;
            self.advance()?;
            if self.eat_op("(")? {
                let interval = self.duration()?;
                let offset = if self.eat_op(",")? {
                    if self.eat_op("-")? {
                        -self.duration()?
                    } else if self.is_keyword("now") {
                        return Err(self.unexpected("duration (offset now() is not supported)"));
                    } else {
                        self.duration()?
                    }
                } else {
                    0
                };
                self.expect_op(")")?;
                if interval <= 0 {
                    return Err(ParseError::at(
                        self.src,
                        at,
                        "time dimension must have a positive duration",
                    ));
                }
                return Ok(Dimension::Time { interval, offset });
            }
            return Ok(Dimension::Tag("time".into()));
        }
        Ok(Dimension::Tag(self.ident()?))
    }

    fn duration(&mut self) -> Result<i64, ParseError> {
        match self.peek {
            Token::Duration(d) => {
                self.advance()?;
                Ok(d)
            }
            _ => Err(self.unexpected("duration")),
        }
    }

    fn fill(&mut self) -> Result<Fill, ParseError> {
        if !self.is_keyword("fill") {
            return Ok(Fill::Null);
        }
        self.advance()?;
        self.expect_op("(")?;
        let negative = self.eat_op("-")?;
        let sign = if negative { -1.0 } else { 1.0 };
        let fill = match self.advance()? {
            Token::Ident {
                name,
                quoted: false,
            } if !negative => match name.to_ascii_lowercase().as_str() {
                "null" => Fill::Null,
                "none" => Fill::None,
                "previous" => Fill::Previous,
                "linear" => Fill::Linear,
                other => {
                    return Err(ParseError::at(
                        self.src,
                        self.peek_at,
                        format!(
                            "fill() must be null, none, previous, linear or a number, found {other}"
                        ),
                    ));
                }
            },
            Token::Integer(i) => Fill::Value(sign * i as f64),
            Token::Number(n) => Fill::Value(sign * n),
            _ => return Err(self.unexpected("fill option")),
        };
        self.expect_op(")")?;
        Ok(fill)
    }

    /// Precedence climbing over [`BinOp::precedence`].
    fn expr(&mut self, min_prec: u8) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut lhs = self.unary()?;
        loop {
            let op = match &self.peek {
                Token::Op(o) => BinOp::from_op(o),
                Token::Ident {
                    name,
                    quoted: false,
                } if name.eq_ignore_ascii_case("AND") => Some(BinOp::And),
                Token::Ident {
                    name,
                    quoted: false,
                } if name.eq_ignore_ascii_case("OR") => Some(BinOp::Or),
                _ => None,
            };
            let Some(op) = op else { break };
            if op.precedence() <= min_prec {
                break;
            }
            self.advance()?;
            let rhs = if matches!(op, BinOp::EqRegex | BinOp::NotEqRegex) {
                Expr::Regex(self.regex()?)
            } else {
                self.expr(op.precedence())?
            };
            lhs = Expr::binary(op, lhs, rhs);
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat_op("-")? {
            return Ok(match self.unary()? {
                Expr::Integer(i) => Expr::Integer(-i),
                Expr::Number(n) => Expr::Number(-n),
                Expr::Duration(d) => Expr::Duration(-d),
                other => Expr::binary(BinOp::Mul, Expr::Integer(-1), other),
            });
        }
        if self.eat_op("+")? {
            return self.unary();
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.peek.clone() {
            Token::Op("(") => {
                self.advance()?;
                self.enter()?;
                let inner = self.expr(0)?;
                self.depth -= 1;
                self.expect_op(")")?;
                Ok(Expr::Paren(Box::new(inner)))
            }
            Token::Op("*") => {
                self.advance()?;
                Ok(Expr::Wildcard)
            }
            Token::Op("/") => Ok(Expr::Regex(self.regex()?)),
            Token::Integer(i) => {
                self.advance()?;
                Ok(Expr::Integer(i))
            }
            Token::Number(n) => {
                self.advance()?;
                Ok(Expr::Number(n))
            }
            Token::Duration(d) => {
                self.advance()?;
                Ok(Expr::Duration(d))
            }
            Token::Str(s) => {
                self.advance()?;
                Ok(Expr::Str(s))
            }
            Token::Ident { name, quoted } if quoted || !reserved(&name) => {
                self.advance()?;
                if !quoted && self.eat_op("(")? {
                    let mut args = Vec::new();
                    if !self.eat_op(")")? {
                        args.push(self.expr(0)?);
                        while self.eat_op(",")? {
                            args.push(self.expr(0)?);
                        }
                        self.expect_op(")")?;
                    }
                    return Ok(Expr::Call {
                        name: name.to_ascii_lowercase(),
                        args,
                    });
                }
                if !quoted
                    && name.eq_ignore_ascii_case("distinct")
                    && matches!(self.peek, Token::Ident { .. })
                {
                    // `DISTINCT f` is `distinct(f)`.
                    let field = self.ident()?;
                    return Ok(Expr::Call {
                        name: "distinct".into(),
                        args: vec![Expr::var(&field)],
                    });
                }
                if !quoted && name.eq_ignore_ascii_case("true") {
                    return Ok(Expr::Bool(true));
                }
                if !quoted && name.eq_ignore_ascii_case("false") {
                    return Ok(Expr::Bool(false));
                }
                let cast = if self.eat_op("::")? {
                    Some(self.ident()?.to_ascii_lowercase())
                } else {
                    None
                };
                Ok(Expr::Var { name, cast })
            }
            _ => Err(self.unexpected("identifier, string, number, bool")),
        }
    }
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
