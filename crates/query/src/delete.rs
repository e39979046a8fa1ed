//! `DELETE FROM table [WHERE ...]`: the WHERE clause is translated to an engine delete
//! (a time range and a predicate on tags) and run on the engine directly.
//!
//! Accepted: top-level `AND` of time conditions (`time >= | > | <= | < | = literal`,
//! `time BETWEEN a AND b`, literals RFC 3339 strings, `TIMESTAMP '...'` or integer
//! nanoseconds) and tag conditions: `tag = 'v'`, `tag <> 'v'`, `tag [NOT] IN (...)`,
//! `tag IS [NOT] NULL`, combined with `AND`, `OR`, `NOT` and parentheses. Anything
//! else (fields, functions, time under `OR`) is an error naming what was refused.

use bulkhead_engine::{DeletePredicate, DeleteRequest, Engine, TIME_COLUMN};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Delete, Expr, FromTable, TableFactor, UnaryOperator, Value,
};

use crate::error::{QueryError, Result};
use crate::exec::QueryOutput;

/// The one column of a `DELETE`'s answer: the tables it deleted from, as `db.table`.
pub(crate) const COLUMN: &str = "deleted_from";

/// Run a parsed `DELETE` against `db` (the default database).
pub(crate) async fn run(engine: &Engine, db: &str, delete: Delete) -> Result<QueryOutput> {
    let tables = match &delete.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    if delete.using.is_some()
        || delete.returning.is_some()
        || delete.limit.is_some()
        || !delete.order_by.is_empty()
        || !delete.tables.is_empty()
    {
        return Err(plan("DELETE supports only FROM table [WHERE ...]"));
    }
    let [from] = tables.as_slice() else {
        return Err(plan("DELETE takes exactly one table"));
    };
    let TableFactor::Table { name, .. } = &from.relation else {
        return Err(plan("DELETE takes a table name"));
    };
    if !from.joins.is_empty() {
        return Err(plan("DELETE takes no joins"));
    }
    let (table_db, table) = crate::ddl::table_name(db, name)?;
    let schema = engine.table_schema(&table_db, &table).ok_or_else(|| {
        match engine.databases().contains(&table_db) {
            true => plan(format!("table `{table_db}.{table}` not found")),
            false => QueryError::DatabaseNotFound(table_db.clone()),
        }
    })?;
    let tags: Vec<String> = schema
        .fields()
        .iter()
        .filter(|f| {
            f.metadata()
                .get(bulkhead_engine::ROLE_KEY)
                .map(String::as_str)
                == Some("tag")
        })
        .map(|f| f.name().clone())
        .collect();
    let columns = Columns {
        tags: &tags,
        fields: schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !tags.contains(n) && n != TIME_COLUMN)
            .collect(),
    };
    let mut range = (i64::MIN, i64::MAX);
    let mut preds = Vec::new();
    if let Some(selection) = &delete.selection {
        let mut conjuncts = Vec::new();
        split_and(selection, &mut conjuncts);
        for c in conjuncts {
            if !time_condition(c, &mut range)? {
                preds.push(columns.predicate(c)?);
            }
        }
    }
    let predicate = match preds.len() {
        0 => DeletePredicate::All,
        1 => preds.remove(0),
        _ => DeletePredicate::And(preds),
    };
    let mut deleted = Vec::new();
    if range.0 <= range.1 {
        let summary = engine
            .delete(
                &table_db,
                DeleteRequest {
                    table: Some(table.clone()),
                    min_time: range.0,
                    max_time: range.1,
                    predicate,
                },
            )
            .await
            .map_err(crate::ddl::engine_error)?;
        deleted = summary
            .tables
            .into_iter()
            .map(|t| format!("{table_db}.{t}"))
            .collect();
    }
    crate::ddl::names_output(COLUMN, deleted)
}

fn plan(msg: impl Into<String>) -> QueryError {
    QueryError::Plan(msg.into())
}

fn unnest(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => unnest(inner),
        other => other,
    }
}

fn split_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match unnest(e) {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(left, out);
            split_and(right, out);
        }
        other => out.push(other),
    }
}

/// A column reference's name (unquoted identifiers folded to lower case).
fn column(e: &Expr) -> Option<String> {
    let ident = match unnest(e) {
        Expr::Identifier(i) => i,
        Expr::CompoundIdentifier(parts) => parts.last()?,
        _ => return None,
    };
    Some(if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    })
}

fn string_literal(e: &Expr) -> Option<String> {
    match unnest(e) {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A timestamp literal in nanoseconds.
fn time_literal(e: &Expr) -> Result<i64> {
    let bad = || plan(format!("`{e}` is not a timestamp literal"));
    let text = match unnest(e) {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => return n.parse::<i64>().map_err(|_| bad()),
            Value::SingleQuotedString(s) => s.clone(),
            _ => return Err(bad()),
        },
        Expr::TypedString(ts) => match &ts.value.value {
            Value::SingleQuotedString(s) => s.clone(),
            _ => return Err(bad()),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => return time_literal(expr).map(|v| -v),
        _ => return Err(bad()),
    };
    arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(&text)
        .map_err(|e| plan(format!("timestamp `{text}`: {e}")))
}

/// If `e` is a condition on `time`, narrow `range` by it and return true.
fn time_condition(e: &Expr, range: &mut (i64, i64)) -> Result<bool> {
    match unnest(e) {
        Expr::BinaryOp { left, op, right } => {
            let (op, lit) = if column(left).as_deref() == Some(TIME_COLUMN) {
                (op.clone(), right)
            } else if column(right).as_deref() == Some(TIME_COLUMN) {
                let flipped = match op {
                    BinaryOperator::Gt => BinaryOperator::Lt,
                    BinaryOperator::GtEq => BinaryOperator::LtEq,
                    BinaryOperator::Lt => BinaryOperator::Gt,
                    BinaryOperator::LtEq => BinaryOperator::GtEq,
                    other => other.clone(),
                };
                (flipped, left)
            } else {
                return Ok(false);
            };
            let t = time_literal(lit)?;
            match op {
                BinaryOperator::Gt => range.0 = range.0.max(t.saturating_add(1)),
                BinaryOperator::GtEq => range.0 = range.0.max(t),
                BinaryOperator::Lt => range.1 = range.1.min(t.saturating_sub(1)),
                BinaryOperator::LtEq => range.1 = range.1.min(t),
                BinaryOperator::Eq => {
                    range.0 = range.0.max(t);
                    range.1 = range.1.min(t);
                }
                other => {
                    return Err(plan(format!(
                        "DELETE: time can be compared with >, >=, <, <= or =, not {other}"
                    )));
                }
            }
            Ok(true)
        }
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } if column(expr).as_deref() == Some(TIME_COLUMN) => {
            range.0 = range.0.max(time_literal(low)?);
            range.1 = range.1.min(time_literal(high)?);
            Ok(true)
        }
        _ => Ok(false),
    }
}

struct Columns<'a> {
    tags: &'a [String],
    fields: Vec<String>,
}

impl Columns<'_> {
    fn tag(&self, e: &Expr) -> Result<String> {
        let name = column(e).ok_or_else(|| {
            plan(format!(
                "DELETE: `{e}` is not a column; conditions compare a tag with a string"
            ))
        })?;
        if self.tags.contains(&name) {
            Ok(name)
        } else if name == TIME_COLUMN {
            Err(plan(
                "DELETE: conditions on time must be top-level AND terms (not under OR or NOT)",
            ))
        } else if self.fields.contains(&name) {
            Err(plan(format!(
                "DELETE: `{name}` is a field; rows can be selected by tags and time only"
            )))
        } else {
            Err(plan(format!("DELETE: column `{name}` not found")))
        }
    }

    fn value(e: &Expr) -> Result<String> {
        string_literal(e).ok_or_else(|| plan(format!("DELETE: `{e}` is not a string literal")))
    }

    /// The predicate of a condition on tags.
    fn predicate(&self, e: &Expr) -> Result<DeletePredicate> {
        Ok(match unnest(e) {
            Expr::BinaryOp { left, right, .. }
                if [left, right]
                    .iter()
                    .any(|x| column(x).as_deref() == Some(TIME_COLUMN)) =>
            {
                return Err(plan(
                    "DELETE: conditions on time must be top-level AND terms (not under OR or NOT)",
                ));
            }
            Expr::BinaryOp { left, op, right } => match op {
                BinaryOperator::And => {
                    DeletePredicate::And(vec![self.predicate(left)?, self.predicate(right)?])
                }
                BinaryOperator::Or => {
                    DeletePredicate::Or(vec![self.predicate(left)?, self.predicate(right)?])
                }
                BinaryOperator::Eq | BinaryOperator::NotEq => {
                    let (tag, value) = match column(left) {
                        Some(_) => (self.tag(left)?, Self::value(right)?),
                        None => (self.tag(right)?, Self::value(left)?),
                    };
                    let eq = DeletePredicate::Eq(tag, value);
                    if *op == BinaryOperator::Eq {
                        eq
                    } else {
                        DeletePredicate::Not(Box::new(eq))
                    }
                }
                other => {
                    return Err(plan(format!(
                        "DELETE: tags can be tested with =, <>, IN and IS NULL, not {other}"
                    )));
                }
            },
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let tag = self.tag(expr)?;
                let values = list.iter().map(Self::value).collect::<Result<Vec<_>>>()?;
                let p = DeletePredicate::In(tag, values);
                if *negated {
                    DeletePredicate::Not(Box::new(p))
                } else {
                    p
                }
            }
            Expr::IsNull(e) => DeletePredicate::IsNull(self.tag(e)?),
            Expr::IsNotNull(e) => {
                DeletePredicate::Not(Box::new(DeletePredicate::IsNull(self.tag(e)?)))
            }
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => DeletePredicate::Not(Box::new(self.predicate(expr)?)),
            other => {
                return Err(plan(format!(
                    "DELETE: unsupported condition `{other}` (tags: =, <>, IN, IS NULL, AND, OR, NOT; time: comparisons and BETWEEN)"
                )));
            }
        })
    }
}
