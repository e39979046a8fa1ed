//! The `SHOW ...` statements of the InfluxQL parser (including the `... CARDINALITY`
//! forms), an `impl` block of [`super::Parser`].

use super::super::ast::*;
use super::Parser;
use crate::influxql::ParseError;

impl Parser<'_> {
    pub(super) fn show(&mut self) -> Result<Statement, ParseError> {
        if self.eat_keyword("DATABASES")? {
            return Ok(Statement::ShowDatabases);
        }
        if self.eat_keyword("RETENTION")? {
            self.expect_keyword("POLICIES")?;
            let on = self.on()?;
            return Ok(Statement::ShowRetentionPolicies(on));
        }
        if self.eat_keyword("MEASUREMENTS")? {
            let on = self.on()?;
            let mut with = None;
            if self.eat_keyword("WITH")? {
                self.expect_keyword("MEASUREMENT")?;
                with = Some(self.name_match(false)?);
            }
            let cond = self.where_clause()?;
            let (limit, offset) = self.limit_offset()?;
            return Ok(Statement::ShowMeasurements {
                on,
                with,
                cond,
                limit,
                offset,
            });
        }
        if self.is_keyword("MEASUREMENT") || self.is_keyword("SERIES") && self.cardinality_next() {
            let series = self.is_keyword("SERIES");
            self.advance()?;
            let exact = self.cardinality()?;
            let on = self.on()?;
            let inner = if series {
                let from = self.optional_from()?;
                let cond = self.where_clause()?;
                Statement::ShowSeries {
                    on,
                    from,
                    cond,
                    limit: None,
                    offset: None,
                }
            } else {
                let cond = self.where_clause()?;
                Statement::ShowMeasurements {
                    on,
                    with: None,
                    cond,
                    limit: None,
                    offset: None,
                }
            };
            return Ok(cardinality(exact, inner));
        }
        if self.eat_keyword("TAG")? {
            if self.eat_keyword("KEY")? {
                let exact = self.cardinality()?;
                let on = self.on()?;
                let from = self.optional_from()?;
                let cond = self.where_clause()?;
                let inner = Statement::ShowTagKeys {
                    on,
                    from,
                    cond,
                    limit: None,
                    offset: None,
                };
                return Ok(cardinality(exact, inner));
            }
            if self.eat_keyword("KEYS")? {
                let on = self.on()?;
                let from = self.optional_from()?;
                let cond = self.where_clause()?;
                let (limit, offset) = self.limit_offset()?;
                return Ok(Statement::ShowTagKeys {
                    on,
                    from,
                    cond,
                    limit,
                    offset,
                });
            }
            if self.eat_keyword("VALUES")? {
                let count = if self.is_keyword("EXACT") || self.is_keyword("CARDINALITY") {
                    Some(self.cardinality()?)
                } else {
                    None
                };
                let on = self.on()?;
                let from = self.optional_from()?;
                self.expect_keyword("WITH")?;
                self.expect_keyword("KEY")?;
                let key = self.name_match(true)?;
                let cond = self.where_clause()?;
                if let Some(exact) = count {
                    let inner = Statement::ShowTagValues {
                        on,
                        from,
                        key,
                        cond,
                        limit: None,
                        offset: None,
                    };
                    return Ok(cardinality(exact, inner));
                }
                let (limit, offset) = self.limit_offset()?;
                return Ok(Statement::ShowTagValues {
                    on,
                    from,
                    key,
                    cond,
                    limit,
                    offset,
                });
            }
            let what = self.words(3)?;
            return self.unsupported(&format!("SHOW TAG {what}"));
        }
        if self.eat_keyword("FIELD")? {
            if self.eat_keyword("KEY")? {
                let exact = self.cardinality()?;
                let on = self.on()?;
                let from = self.optional_from()?;
                let inner = Statement::ShowFieldKeys {
                    on,
                    from,
                    limit: None,
                    offset: None,
                };
                return Ok(cardinality(exact, inner));
            }
            if self.eat_keyword("KEYS")? {
                let on = self.on()?;
                let from = self.optional_from()?;
                let (limit, offset) = self.limit_offset()?;
                return Ok(Statement::ShowFieldKeys {
                    on,
                    from,
                    limit,
                    offset,
                });
            }
            let what = self.words(3)?;
            return self.unsupported(&format!("SHOW FIELD {what}"));
        }
        if self.eat_keyword("SERIES")? {
            let on = self.on()?;
            let from = self.optional_from()?;
            let cond = self.where_clause()?;
            let (limit, offset) = self.limit_offset()?;
            return Ok(Statement::ShowSeries {
                on,
                from,
                cond,
                limit,
                offset,
            });
        }
        let what = self.words(3)?;
        if what.is_empty() {
            return Err(self.unexpected(
                "DATABASES, MEASUREMENTS, RETENTION POLICIES, SERIES, TAG KEYS, TAG VALUES, FIELD KEYS",
            ));
        }
        self.unsupported(&format!("SHOW {what}"))
    }

    /// `[EXACT] CARDINALITY`: whether `EXACT` was given.
    fn cardinality(&mut self) -> Result<bool, ParseError> {
        let exact = self.eat_keyword("EXACT")?;
        self.expect_keyword("CARDINALITY")?;
        Ok(exact)
    }

    /// Whether `SERIES` (the current token) is followed by `CARDINALITY` or `EXACT`.
    fn cardinality_next(&self) -> bool {
        let rest = self.src[self.peek_at..].to_ascii_uppercase();
        let mut words = rest.split_whitespace();
        words.next();
        matches!(words.next(), Some("CARDINALITY" | "EXACT"))
    }
}

fn cardinality(exact: bool, inner: Statement) -> Statement {
    Statement::Cardinality {
        exact,
        inner: Box::new(inner),
    }
}
