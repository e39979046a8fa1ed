//! SQL text helpers that every front end with bound parameters needs (the PostgreSQL
//! wire's `$n`, Flight SQL's `?` and `$n`): the parameter limit, literal quoting, and the
//! substitution of values for placeholders that each protocol's own lexer found.

use std::ops::Range;

/// Most parameters a statement may have, as in PostgreSQL (its protocol counts them in
/// an `Int16`). Front ends refuse a higher placeholder before sizing anything from it.
pub const MAX_PARAMETERS: usize = 65_535;

/// `s` as a SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `sql` with each placeholder `(byte range, n)` replaced by `values[n - 1]`, which
/// must already be SQL literals; every other byte is copied as written. The ranges are
/// in order and do not overlap. A placeholder without a value is an error carrying its
/// 1-based number, for the caller to word in its protocol's terms.
pub fn substitute(
    sql: &str,
    placeholders: impl IntoIterator<Item = (Range<usize>, usize)>,
    values: &[String],
) -> Result<String, usize> {
    let mut out = String::with_capacity(sql.len());
    let mut last = 0;
    for (range, n) in placeholders {
        let value = n.checked_sub(1).and_then(|i| values.get(i)).ok_or(n)?;
        out.push_str(&sql[last..range.start]);
        out.push_str(value);
        last = range.end;
    }
    out.push_str(&sql[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_by_number_and_names_the_missing_one() {
        let sql = "select $2, $1, '$1'";
        let at = vec![(7..9, 2), (11..13, 1)];
        assert_eq!(
            substitute(sql, at.clone(), &["1".into(), quote_literal("o'k")]),
            Ok("select 'o''k', 1, '$1'".to_string())
        );
        assert_eq!(substitute(sql, at, &["1".into()]), Err(2));
        assert_eq!(substitute("select ?", [(7..8, 0)], &["1".into()]), Err(0));
        assert_eq!(substitute("x", [], &[]), Ok("x".to_string()));
    }
}
