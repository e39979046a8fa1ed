//! Small SQL text helpers that respect quotes and comments: statement splitting, `$n`
//! placeholders and their substitution with bound values, and the session commands
//! (`SET`, `BEGIN`, ...) that are accepted without running anything.

use crate::error::PgError;

/// What a piece of SQL text is, for the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// Ordinary SQL text.
    Code,
    /// Inside a string literal, identifier or comment (never split or substituted).
    Quoted,
}

/// Walks `sql`, calling `f(index, token kind)` for every byte position, and returns
/// nothing; the shared lexer of the helpers below. It knows `'...'` (with `''`),
/// `E'...'` (with backslash escapes), `"..."`, `-- ...` and `/* ... */`.
fn scan(sql: &str, mut f: impl FnMut(usize, Tok)) {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        match b[i] {
            b'\'' | b'"' => {
                let quote = b[i];
                let backslash = quote == b'\''
                    && i > 0
                    && (b[i - 1] == b'e' || b[i - 1] == b'E')
                    && (i < 2 || !b[i - 2].is_ascii_alphanumeric());
                i += 1;
                while i < b.len() {
                    if backslash && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == quote {
                        if b.get(i + 1) == Some(&quote) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(b.len());
            }
            _ => {
                f(i, Tok::Code);
                i += 1;
                continue;
            }
        }
        for j in start..i {
            f(j, Tok::Quoted);
        }
    }
}

/// Split a simple-protocol query string into statements at top-level `;`, dropping
/// empty ones (only whitespace and comments, such as pgx's `-- ping`: a query string
/// of nothing else gets EmptyQueryResponse, as in PostgreSQL).
pub(crate) fn split_statements(sql: &str) -> Vec<String> {
    let mut cuts = Vec::new();
    scan(sql, |i, tok| {
        if tok == Tok::Code && sql.as_bytes()[i] == b';' {
            cuts.push(i);
        }
    });
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain(std::iter::once(sql.len())) {
        let stmt = sql[start..cut].trim();
        if !is_blank(stmt) {
            out.push(stmt.to_string());
        }
        start = (cut + 1).min(sql.len());
    }
    out
}

/// Whether `sql` has nothing but whitespace and comments.
fn is_blank(sql: &str) -> bool {
    let mut blank = true;
    scan(sql, |i, tok| {
        if tok == Tok::Code && !sql.as_bytes()[i].is_ascii_whitespace() {
            blank = false;
        }
    });
    blank
}

/// The byte index of the `)` that closes the `(` at the start of `sql`, skipping
/// quotes and comments.
pub(crate) fn matching_paren(sql: &str) -> Option<usize> {
    let b = sql.as_bytes();
    let mut depth = 0usize;
    let mut found = None;
    scan(sql, |i, tok| {
        if found.is_some() || tok != Tok::Code {
            return;
        }
        match b[i] {
            b'(' => depth += 1,
            b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    found = Some(i);
                }
            }
            _ => {}
        }
    });
    found
}

pub(crate) use bulkhead_frontend::sql_text::{MAX_PARAMETERS, quote_literal};

/// `$n` placeholders outside quotes: `(byte range, n)`. `n` is at most
/// [`MAX_PARAMETERS`]; a higher one (or one too long to parse) is an error naming it.
fn placeholders(sql: &str) -> Result<Vec<(std::ops::Range<usize>, usize)>, PgError> {
    let b = sql.as_bytes();
    let mut code = vec![false; b.len()];
    scan(sql, |i, tok| code[i] = tok == Tok::Code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if code[i] && b[i] == b'$' && !prev_ident {
            let mut j = i + 1;
            while j < b.len() && code[j] && b[j].is_ascii_digit() {
                j += 1;
            }
            let digits = &sql[i + 1..j];
            let significant = digits.trim_start_matches('0');
            if !significant.is_empty() {
                // Compare as text first: the number may not even fit in a u64.
                let n = if significant.len() > 5 {
                    None
                } else {
                    significant.parse::<usize>().ok()
                };
                match n {
                    Some(n) if n <= MAX_PARAMETERS => out.push((i..j, n)),
                    _ => {
                        return Err(PgError::TooManyParameters(
                            significant.parse::<u64>().unwrap_or(u64::MAX),
                        ));
                    }
                }
                i = j;
                continue;
            }
        }
        i += 1;
    }
    Ok(out)
}

/// The highest `$n` in `sql` (0 when it has none); at most [`MAX_PARAMETERS`].
pub(crate) fn parameter_count(sql: &str) -> Result<usize, PgError> {
    Ok(placeholders(sql)?
        .into_iter()
        .map(|(_, n)| n)
        .max()
        .unwrap_or(0))
}

/// Replace every `$n` with `values[n - 1]`, which must already be SQL literals.
/// Fails with the first placeholder without a value, if any.
pub(crate) fn substitute(sql: &str, values: &[String]) -> Result<String, PgError> {
    bulkhead_frontend::sql_text::substitute(sql, placeholders(sql)?, values).map_err(|n| {
        PgError::Parameter(format!(
            "there is no parameter ${n} (the statement was bound with {} values)",
            values.len()
        ))
    })
}

/// `s` as a quoted SQL identifier.
pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Collapse runs of whitespace to one space, so that client catalog queries can be
/// recognised whatever their line breaks and indentation.
pub(crate) fn normalize_whitespace(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a session command does to the transaction state the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Session {
    /// No change (`SET`, `DISCARD`, ...).
    Other,
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END`, `ROLLBACK`, `ABORT`.
    End,
}

/// Session commands drivers send on connect, or around their queries, that Bulkhead
/// accepts without effect (there are no session variables, and every statement is a
/// read, so a transaction has nothing to commit): the command tag to answer with.
pub(crate) fn session_command(sql: &str) -> Option<(&'static str, Session)> {
    let mut words = sql.split_whitespace();
    let first = words.next()?.to_ascii_uppercase();
    let first = first.trim_end_matches(';');
    // `ROLLBACK TO [SAVEPOINT] x` stays in the transaction.
    let to_savepoint = words.next().is_some_and(|w| w.eq_ignore_ascii_case("to"));
    Some(match first {
        "SAVEPOINT" => ("SAVEPOINT", Session::Other),
        "RELEASE" => ("RELEASE", Session::Other),
        "ROLLBACK" | "ABORT" if to_savepoint => ("ROLLBACK", Session::Other),
        "SET" => ("SET", Session::Other),
        "RESET" => ("RESET", Session::Other),
        "BEGIN" => ("BEGIN", Session::Begin),
        "START" => ("START TRANSACTION", Session::Begin),
        "COMMIT" | "END" => ("COMMIT", Session::End),
        "ROLLBACK" | "ABORT" => ("ROLLBACK", Session::End),
        "DISCARD" => ("DISCARD ALL", Session::Other),
        "DEALLOCATE" => ("DEALLOCATE", Session::Other),
        "LISTEN" => ("LISTEN", Session::Other),
        "UNLISTEN" => ("UNLISTEN", Session::Other),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let s = "set a = 'x;y'; select \"a;b\" -- c;d\n from t; /* ; */ ;";
        assert_eq!(
            split_statements(s),
            vec![
                "set a = 'x;y'".to_string(),
                "select \"a;b\" -- c;d\n from t".to_string(),
            ]
        );
        assert!(split_statements("-- ping").is_empty());
        assert!(split_statements(" /* a */ ; -- b\n ;").is_empty());
        assert_eq!(matching_paren("(a, ')', (b)) x"), Some(12));
        assert_eq!(matching_paren("(a"), None);
    }

    #[test]
    fn substitutes_placeholders_but_not_inside_literals() {
        let sql = "select '$1', a$1, $1 from t where b = $2 -- $3";
        assert_eq!(parameter_count(sql).unwrap(), 2);
        let out = substitute(sql, &["10".into(), quote_literal("o'k")]).unwrap();
        assert_eq!(out, "select '$1', a$1, 10 from t where b = 'o''k' -- $3");
        let missing = substitute("select $2", &["1".into()]).unwrap_err();
        assert!(missing.to_string().contains("no parameter $2"), "{missing}");
    }

    #[test]
    fn escape_strings_do_not_end_early() {
        assert_eq!(parameter_count(r"select E'it\'s $1', $2").unwrap(), 2);
        assert_eq!(placeholders(r"select E'it\'s $1', $2").unwrap().len(), 1);
    }

    #[test]
    fn parameters_past_the_postgresql_limit_are_refused() {
        assert_eq!(parameter_count("select $65535").unwrap(), 65_535);
        assert_eq!(parameter_count("select $000007").unwrap(), 7);
        for sql in [
            "select $65536",
            "select $100000000000",
            "select $99999999999999999999999999999",
        ] {
            let e = parameter_count(sql).unwrap_err();
            assert_eq!(e.sqlstate(), "54023", "{sql}");
            assert!(e.to_string().contains("at most 65535"), "{e}");
            assert!(substitute(sql, &[]).is_err());
        }
        // `$0` is not a parameter (as before): left alone.
        assert_eq!(parameter_count("select $0").unwrap(), 0);
    }

    #[test]
    fn session_commands_are_recognised() {
        assert_eq!(
            session_command("SET extra_float_digits = 3"),
            Some(("SET", Session::Other))
        );
        assert_eq!(session_command("  begin"), Some(("BEGIN", Session::Begin)));
        assert_eq!(session_command("abort"), Some(("ROLLBACK", Session::End)));
        assert_eq!(
            session_command("ROLLBACK TO SAVEPOINT \"_pg3_1\""),
            Some(("ROLLBACK", Session::Other))
        );
        assert_eq!(
            session_command("SAVEPOINT x"),
            Some(("SAVEPOINT", Session::Other))
        );
        assert_eq!(session_command("select 1"), None);
        assert_eq!(session_command("settings"), None);
    }
}
