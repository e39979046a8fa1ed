//! The InfluxQL tokenizer: identifiers (bare and `"quoted"`), keywords (bare identifiers,
//! matched case-insensitively by the parser), `'strings'`, numbers, durations (`1h30m`,
//! `10ms`, `5u`, `1ns`), operators and, when the parser asks for one, `/regex/`.
//!
//! A regex and a division both start with `/`; as in InfluxDB's own scanner the parser
//! decides, by calling [`Lexer::regex`] where the grammar expects a regex.

use super::ParseError;

/// One token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    /// A bare identifier or keyword (`quoted = false`) or a `"quoted"` identifier.
    Ident {
        name: String,
        quoted: bool,
    },
    Str(String),
    Integer(i64),
    Number(f64),
    /// A duration literal, in nanoseconds.
    Duration(i64),
    Op(&'static str),
    /// A character that starts no token (the parser reports what it expected instead).
    Illegal(char),
    Eof,
}

impl Token {
    /// How the token reads in an error message (InfluxDB's "found X").
    pub(crate) fn describe(&self) -> String {
        match self {
            Token::Ident { name, .. } => name.clone(),
            Token::Str(s) => format!("'{s}'"),
            Token::Integer(i) => i.to_string(),
            Token::Number(n) => n.to_string(),
            Token::Duration(d) => format!("{d}ns"),
            Token::Op(o) => (*o).to_string(),
            Token::Illegal(c) => c.to_string(),
            Token::Eof => "EOF".to_string(),
        }
    }
}

const OPS: &[&str] = &[
    "::", "=~", "!~", "!=", "<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")",
    ",", ";", ".", "&", "|", "^",
];

pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    pub(crate) fn error(&self, at: usize, message: impl Into<String>) -> ParseError {
        ParseError::at(self.src, at, message)
    }

    fn skip_space_and_comments(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if trimmed.starts_with("--") {
                self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
            } else if let Some(body) = trimmed.strip_prefix("/*") {
                self.pos += 2 + body.find("*/").map_or(body.len(), |i| i + 2);
            } else {
                return;
            }
        }
    }

    /// The next token and its start offset.
    pub(crate) fn next_token(&mut self) -> Result<(Token, usize), ParseError> {
        self.skip_space_and_comments();
        let start = self.pos;
        let Some(c) = self.rest().chars().next() else {
            return Ok((Token::Eof, start));
        };
        let token = if c == '"' {
            let name = self.quoted('"')?;
            Token::Ident { name, quoted: true }
        } else if c == '\'' {
            Token::Str(self.quoted('\'')?)
        } else if c.is_ascii_digit()
            || (c == '.' && self.rest()[1..].starts_with(|d: char| d.is_ascii_digit()))
        {
            self.number()?
        } else if c.is_alphabetic() || c == '_' {
            let len = self
                .rest()
                .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .unwrap_or(self.rest().len());
            let name = self.rest()[..len].to_string();
            self.pos += len;
            Token::Ident {
                name,
                quoted: false,
            }
        } else if let Some(op) = OPS.iter().find(|op| self.rest().starts_with(**op)) {
            self.pos += op.len();
            Token::Op(op)
        } else {
            self.pos += c.len_utf8();
            Token::Illegal(c)
        };
        Ok((token, start))
    }

    /// A `'string'` or `"identifier"`: backslash escapes `\\`, `\n`, `\t` and the quote.
    fn quoted(&mut self, quote: char) -> Result<String, ParseError> {
        let start = self.pos;
        let mut out = String::new();
        let mut chars = self.rest().char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += i + 1;
                return Ok(out);
            }
            if c == '\\' {
                match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, q)) if q == quote => out.push(q),
                    Some((_, other)) => {
                        return Err(self.error(
                            start,
                            format!("bad escape \\{other} in quoted {}", kind(quote)),
                        ));
                    }
                    None => break,
                }
            } else if c == '\n' && quote == '\'' {
                return Err(self.error(start, "unterminated string (newline)"));
            } else {
                out.push(c);
            }
        }
        Err(self.error(start, format!("unterminated {}", kind(quote))))
    }

    /// Digits (`1`, `1.5`, `.5`), possibly a duration (`10m`, `1h30m`).
    fn number(&mut self) -> Result<Token, ParseError> {
        let start = self.pos;
        let rest = self.rest();
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let after = &rest[int_len..];
        if int_len > 0 && after.starts_with(|c: char| c.is_alphabetic() || c == 'µ') {
            return self.duration();
        }
        let mut len = int_len;
        let mut float = false;
        if let Some(frac) = after.strip_prefix('.') {
            let frac_len = frac
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(frac.len());
            if frac_len > 0 || int_len > 0 {
                len += 1 + frac_len;
                float = true;
            }
        }
        let text = &rest[..len];
        self.pos += len;
        if float {
            text.parse::<f64>()
                .map(Token::Number)
                .map_err(|_| self.error(start, format!("unable to parse number {text}")))
        } else {
            match text.parse::<i64>() {
                Ok(i) => Ok(Token::Integer(i)),
                Err(_) => Err(self.error(start, format!("unable to parse integer {text}"))),
            }
        }
    }

    /// `1h30m` → nanoseconds. Units: ns, u/µ, ms, s, m, h, d, w.
    fn duration(&mut self) -> Result<Token, ParseError> {
        let start = self.pos;
        let mut total: i64 = 0;
        loop {
            let rest = self.rest();
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                break;
            }
            let unit_len = rest[digits..]
                .find(|c: char| !(c.is_alphabetic() || c == 'µ'))
                .unwrap_or(rest.len() - digits);
            let unit = &rest[digits..digits + unit_len];
            let per: i64 = match unit {
                "ns" => 1,
                "u" | "µ" | "us" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "d" => 86_400_000_000_000,
                "w" => 604_800_000_000_000,
                _ => {
                    return Err(self.error(
                        start,
                        format!("invalid duration {}", &rest[..digits + unit_len]),
                    ));
                }
            };
            let n: i64 = rest[..digits]
                .parse()
                .map_err(|_| self.error(start, "duration out of range"))?;
            total = n
                .checked_mul(per)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| self.error(start, "duration out of range"))?;
            self.pos += digits + unit_len;
        }
        Ok(Token::Duration(total))
    }

    /// A `/regex/` starting at `at` (where the parser saw `/`); `\/` is a slash.
    pub(crate) fn regex(&mut self, at: usize) -> Result<String, ParseError> {
        self.pos = at;
        if !self.rest().starts_with('/') {
            return Err(self.error(at, "expected a regular expression /.../"));
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '/' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, '/')) => out.push('/'),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                '\n' => break,
                other => out.push(other),
            }
        }
        Err(self.error(at, "unterminated regular expression"))
    }
}

fn kind(quote: char) -> &'static str {
    if quote == '"' { "identifier" } else { "string" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(src: &str) -> Vec<Token> {
        let mut l = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let (t, _) = l.next_token().unwrap();
            if t == Token::Eof {
                return out;
            }
            out.push(t);
        }
    }

    fn ident(s: &str, quoted: bool) -> Token {
        Token::Ident {
            name: s.into(),
            quoted,
        }
    }

    #[test]
    fn scans_literals_and_operators() {
        assert_eq!(
            tokens(r#"SELECT "my ""x" FROM cpu WHERE a='it\'s' AND b >= 1.5 -- c"#),
            vec![
                ident("SELECT", false),
                ident("my ", true),
                ident("x", true),
                ident("FROM", false),
                ident("cpu", false),
                ident("WHERE", false),
                ident("a", false),
                Token::Op("="),
                Token::Str("it's".into()),
                ident("AND", false),
                ident("b", false),
                Token::Op(">="),
                Token::Number(1.5),
            ]
        );
        assert_eq!(
            tokens("a=~b!~c<>d::float 42 .5"),
            vec![
                ident("a", false),
                Token::Op("=~"),
                ident("b", false),
                Token::Op("!~"),
                ident("c", false),
                Token::Op("<>"),
                ident("d", false),
                Token::Op("::"),
                ident("float", false),
                Token::Integer(42),
                Token::Number(0.5),
            ]
        );
    }

    #[test]
    fn scans_durations() {
        assert_eq!(
            tokens("1h 10m 5s 1ms 1u 1µ 1ns 1h30m 2d 1w"),
            vec![
                Token::Duration(3_600_000_000_000),
                Token::Duration(600_000_000_000),
                Token::Duration(5_000_000_000),
                Token::Duration(1_000_000),
                Token::Duration(1_000),
                Token::Duration(1_000),
                Token::Duration(1),
                Token::Duration(5_400_000_000_000),
                Token::Duration(172_800_000_000_000),
                Token::Duration(604_800_000_000_000),
            ]
        );
        let err = Lexer::new("10x").next_token().unwrap_err();
        assert!(err.to_string().contains("invalid duration 10x"), "{err}");
        assert!(Lexer::new("99999999999999999999w").next_token().is_err());
    }

    #[test]
    fn regex_on_request() {
        let mut l = Lexer::new(r"/^cpu\/[0-9]+$/ x");
        assert_eq!(l.regex(0).unwrap(), r"^cpu/[0-9]+$");
        assert_eq!(l.next_token().unwrap().0, ident("x", false));
        assert!(Lexer::new("/abc").regex(0).is_err());
    }

    #[test]
    fn rejects_unterminated_and_stray() {
        assert_eq!(Lexer::new("#").next_token().unwrap().0, Token::Illegal('#'));
        for bad in ["'abc", "\"abc", "'a\\qb'", "'a\nb'"] {
            let mut l = Lexer::new(bad);
            assert!(l.next_token().is_err(), "{bad:?}");
        }
    }
}
