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
        let measurements = if self.eat_keyword("MEASUREMENTS")? {
            Some(None)
        } else if self.eat_keyword("MEASUREMENT")? {
            Some(Some(self.cardinality()?))
        } else {
            None
        };
        if let Some(count) = measurements {
            let on = self.on()?;
            let mut with = None;
            if count.is_none() && self.eat_keyword("WITH")? {
                self.expect_keyword("MEASUREMENT")?;
                with = Some(self.name_match(false)?);
            }
            let cond = self.where_clause()?;
            return self.counted(count, |limit, offset| Statement::ShowMeasurements {
                on,
                with,
                cond,
                limit,
                offset,
            });
        }
        if self.eat_keyword("SERIES")? {
            let count = self.optional_cardinality()?;
            let on = self.on()?;
            let from = self.optional_from()?;
            let cond = self.where_clause()?;
            return self.counted(count, |limit, offset| Statement::ShowSeries {
                on,
                from,
                cond,
                limit,
                offset,
            });
        }
        if self.eat_keyword("TAG")? {
            if let Some(count) = self.key_or_keys()? {
                let on = self.on()?;
                let from = self.optional_from()?;
                let cond = self.where_clause()?;
                return self.counted(count, |limit, offset| Statement::ShowTagKeys {
                    on,
                    from,
                    cond,
                    limit,
                    offset,
                });
            }
            if self.eat_keyword("VALUES")? {
                let count = self.optional_cardinality()?;
                let on = self.on()?;
                let from = self.optional_from()?;
                self.expect_keyword("WITH")?;
                self.expect_keyword("KEY")?;
                let key = self.name_match(true)?;
                let cond = self.where_clause()?;
                return self.counted(count, |limit, offset| Statement::ShowTagValues {
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
            if let Some(count) = self.key_or_keys()? {
                let on = self.on()?;
                let from = self.optional_from()?;
                return self.counted(count, |limit, offset| Statement::ShowFieldKeys {
                    on,
                    from,
                    limit,
                    offset,
                });
            }
            let what = self.words(3)?;
            return self.unsupported(&format!("SHOW FIELD {what}"));
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

    /// An optional `[EXACT] CARDINALITY`: `Some(exact)` when given.
    fn optional_cardinality(&mut self) -> Result<Option<bool>, ParseError> {
        if self.is_keyword("EXACT") || self.is_keyword("CARDINALITY") {
            return Ok(Some(self.cardinality()?));
        }
        Ok(None)
    }

    /// `KEY [EXACT] CARDINALITY` (`Some(Some(exact))`) or `KEYS` (`Some(None)`), after
    /// `TAG` or `FIELD`; `None` when neither follows.
    fn key_or_keys(&mut self) -> Result<Option<Option<bool>>, ParseError> {
        if self.eat_keyword("KEY")? {
            return Ok(Some(Some(self.cardinality()?)));
        }
        Ok(self.eat_keyword("KEYS")?.then_some(None))
    }

    /// The end of a listing `SHOW`: a count of what it lists when `count` is
    /// `Some(exact)` (no `LIMIT`/`OFFSET`), else the listing with its `LIMIT`/`OFFSET`.
    fn counted(
        &mut self,
        count: Option<bool>,
        build: impl FnOnce(Option<u64>, Option<u64>) -> Statement,
    ) -> Result<Statement, ParseError> {
        if let Some(exact) = count {
            return Ok(cardinality(exact, build(None, None)));
        }
        let (limit, offset) = self.limit_offset()?;
        Ok(build(limit, offset))
    }
}

fn cardinality(exact: bool, inner: Statement) -> Statement {
    Statement::Cardinality {
        exact,
        inner: Box::new(inner),
    }
}
