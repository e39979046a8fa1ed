//! The statements that change data rather than read it: `DROP TABLE`, `DROP DATABASE`
//! (also spelled `DROP SCHEMA`), `DELETE` (`delete.rs`), and `CREATE ROLLUP` /
//! `DROP ROLLUP` (`rollup/ddl.rs`). They run on the engine directly; DataFusion's own
//! DDL stays disabled. Everything else goes to the planner.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bulkhead_engine::{Engine, Error as EngineError};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{ObjectName, ObjectType, Statement};
use futures::StreamExt;

use crate::catalog::CATALOG;
use crate::error::{QueryError, Result};
use crate::exec::QueryOutput;
use crate::rollup::sql::RollupStatement;

/// Whether `sql` starts with the keyword `DROP`, `DELETE` or `CREATE` (after blanks and
/// `--`/`/* */` comments): only those are looked at here, so every other statement pays
/// nothing.
fn starts_with_drop(sql: &str) -> bool {
    starts_with(sql, "drop") || starts_with(sql, "delete") || starts_with(sql, "create")
}

fn starts_with(sql: &str, keyword: &str) -> bool {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    let n = keyword.len();
    rest.get(..n)
        .is_some_and(|w| w.eq_ignore_ascii_case(keyword))
        && !rest[n..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
}

/// Run `sql` if it is one of these statements; `None` for every other statement
/// (including every `CREATE` but `CREATE ROLLUP`).
pub(crate) async fn try_run(
    query: &crate::QueryEngine,
    db: &str,
    sql: &str,
) -> Option<Result<QueryOutput>> {
    if !starts_with_drop(sql) {
        return None;
    }
    if crate::rollup::sql::is_rollup_statement(sql) {
        return Some(crate::rollup::ddl::run(query, db, sql).await);
    }
    if starts_with(sql, "create") {
        return None;
    }
    Some(run(query.engine(), db, sql).await)
}

/// The result schema of `sql` if it is one of these statements, by parsing it and
/// nothing else (a PostgreSQL Describe must not run it); `None` for every other
/// statement, as [`try_run`] would answer. Errors are those its run would give before
/// touching anything (syntax, an unsupported `DROP`).
pub(crate) fn describe(db: &str, sql: &str) -> Option<Result<SchemaRef>> {
    if !starts_with_drop(sql) {
        return None;
    }
    if crate::rollup::sql::is_rollup_statement(sql) {
        return Some(crate::rollup::sql::parse(sql, db).map(|s| match s {
            RollupStatement::Create { .. } => names_schema("created"),
            RollupStatement::Drop { .. } => names_schema("dropped"),
        }));
    }
    if starts_with(sql, "create") {
        return None;
    }
    Some(parse_one(sql).and_then(|statement| match statement {
        Statement::Delete(_) => Ok(names_schema(crate::delete::COLUMN)),
        Statement::Drop { object_type, .. } => {
            drop_kind(object_type).map(|_| names_schema("dropped"))
        }
        _ => Err(QueryError::Plan("unsupported DROP statement".into())),
    }))
}

/// The one statement of `sql`, as DataFusion's parser reads it.
fn parse_one(sql: &str) -> Result<Statement> {
    let mut statements =
        DFParser::parse_sql(sql).map_err(|e| QueryError::Plan(format!("SQL error: {e}")))?;
    if statements.len() != 1 {
        return Err(QueryError::Plan(format!(
            "expected one statement, found {}",
            statements.len()
        )));
    }
    let Some(DfStatement::Statement(statement)) = statements.pop_front() else {
        return Err(QueryError::Plan("unsupported DROP statement".into()));
    };
    Ok(*statement)
}

/// What a `DROP` drops: a table (`true`) or a database (`false`); others are refused.
fn drop_kind(object_type: ObjectType) -> Result<bool> {
    match object_type {
        ObjectType::Table => Ok(true),
        ObjectType::Database | ObjectType::Schema => Ok(false),
        other => Err(QueryError::Plan(format!(
            "DROP {other} is not supported: Bulkhead has tables and databases \
             (DROP TABLE, DROP DATABASE)"
        ))),
    }
}

async fn run(engine: &Engine, db: &str, sql: &str) -> Result<QueryOutput> {
    let statement = parse_one(sql)?;
    if let Statement::Delete(delete) = statement {
        return crate::delete::run(engine, db, delete).await;
    }
    let Statement::Drop {
        object_type,
        if_exists,
        names,
        ..
    } = statement
    else {
        return Err(QueryError::Plan("unsupported DROP statement".into()));
    };
    let mut dropped = Vec::new();
    match drop_kind(object_type)? {
        true => {
            for name in &names {
                let (table_db, table) = table_name(db, name)?;
                let summary = engine
                    .drop_table(&table_db, &table, if_exists)
                    .await
                    .map_err(engine_error)?;
                dropped.extend(
                    summary
                        .tables
                        .into_iter()
                        .map(|t| format!("{table_db}.{t}")),
                );
            }
        }
        false => {
            for name in &names {
                let target = database_name(name)?;
                let summary = engine
                    .drop_database(&target, if_exists)
                    .await
                    .map_err(engine_error)?;
                dropped.extend(summary.tables.into_iter().map(|t| format!("{target}.{t}")));
            }
        }
    }
    names_output("dropped", dropped)
}

/// The schema of a one-column answer of names (`db.table`) under `column`.
pub(crate) fn names_schema(column: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, false)]))
}

/// A one-column answer: `values` under the name `column`.
pub(crate) fn names_output(column: &str, values: Vec<String>) -> Result<QueryOutput> {
    let schema = names_schema(column);
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(values))],
    )
    .map_err(|e| QueryError::Execution(e.to_string()))?;
    Ok(QueryOutput {
        schema,
        batches: futures::stream::iter([Ok(batch)]).boxed(),
    })
}

/// `t`, `db.t` or `bulkhead.db.t` -> (db, t), as the planner resolves table names.
pub(crate) fn table_name(default_db: &str, name: &ObjectName) -> Result<(String, String)> {
    let parts = idents(name)?;
    match parts.as_slice() {
        [t] => Ok((default_db.to_string(), t.clone())),
        [d, t] => Ok((d.clone(), t.clone())),
        [c, d, t] if c == CATALOG => Ok((d.clone(), t.clone())),
        _ => Err(QueryError::Plan(format!(
            "table name `{name}`: expected table, db.table or {CATALOG}.db.table"
        ))),
    }
}

fn database_name(name: &ObjectName) -> Result<String> {
    match idents(name)?.as_slice() {
        [d] => Ok(d.clone()),
        [c, d] if c == CATALOG => Ok(d.clone()),
        _ => Err(QueryError::Plan(format!(
            "database name `{name}`: expected db or {CATALOG}.db"
        ))),
    }
}

/// Name parts, unquoted identifiers folded to lower case as the planner does.
fn idents(name: &ObjectName) -> Result<Vec<String>> {
    name.0
        .iter()
        .map(|part| {
            let ident = part
                .as_ident()
                .ok_or_else(|| QueryError::Plan(format!("unsupported name `{name}`")))?;
            Ok(if ident.quote_style.is_some() {
                ident.value.clone()
            } else {
                ident.value.to_lowercase()
            })
        })
        .collect()
}

pub(crate) fn engine_error(e: EngineError) -> QueryError {
    match e {
        EngineError::DatabaseNotFound(db) => QueryError::DatabaseNotFound(db),
        EngineError::TableNotFound { db, table } => {
            QueryError::Plan(format!("table `{db}.{table}` not found"))
        }
        EngineError::InvalidInput(msg) => QueryError::Plan(msg),
        other => QueryError::Execution(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{describe, starts_with_drop};

    #[test]
    fn describe_answers_the_column_of_a_change_without_running_it() {
        let column = |sql: &str| {
            describe("db", sql).map(|r| {
                r.map(|s| s.field(0).name().clone())
                    .map_err(|e| e.to_string())
            })
        };
        assert_eq!(
            column("DELETE FROM cpu WHERE host = 'a'"),
            Some(Ok("deleted_from".into()))
        );
        assert_eq!(
            column("drop table if exists a, b"),
            Some(Ok("dropped".into()))
        );
        assert_eq!(column("DROP SCHEMA x"), Some(Ok("dropped".into())));
        assert_eq!(
            column("create rollup r from cpu aggregate avg every 1h"),
            Some(Ok("created".into()))
        );
        assert_eq!(
            column("drop rollup if exists r"),
            Some(Ok("dropped".into()))
        );
        assert!(matches!(column("drop view v"), Some(Err(e)) if e.contains("DROP VIEW")));
        assert!(matches!(column("create rollup r"), Some(Err(_))));
        assert_eq!(column("select 1"), None);
        assert_eq!(column("create table t (a int)"), None);
    }

    #[test]
    fn only_drop_statements_are_intercepted() {
        for sql in [
            "drop table cpu",
            "  DROP TABLE cpu",
            "-- why\n drop database x",
            "/* c */Drop table t",
            "delete from cpu",
            " DELETE FROM cpu WHERE host = 'a'",
            "create rollup r from t aggregate avg every 1h",
        ] {
            assert!(starts_with_drop(sql), "{sql}");
        }
        for sql in [
            "select 1",
            "dropx",
            "drop_it",
            "select * from drop_log",
            "deleted",
            "-- drop table x\nselect 1",
            "",
        ] {
            assert!(!starts_with_drop(sql), "{sql}");
        }
    }
}
