//! Answers to the `pg_catalog` queries psql sends for `\l`, `\d`, `\dt` and `\d NAME`,
//! built from Bulkhead's own catalog (`information_schema` and table schemas, read
//! through the query layer on `query`).
//!
//! Bulkhead has no `pg_catalog` schema. Instead, the few catalog queries psql sends are
//! recognised (after collapsing whitespace) and answered here: the listing of
//! relations, the name -> oid lookup, the relation details and the columns of one
//! table. The catalogs that are empty for Bulkhead by construction (policies,
//! statistics objects, publications, inheritance, triggers, constraints, indexes,
//! rules) answer with no rows. Every other `pg_catalog` query goes to the query layer
//! and fails there with 42P01 (a documented gap). A table's oid is a hash of its name,
//! so it is the same in every query of a `\d` without any session state.

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response};
use std::sync::Arc;

use crate::error::PgError;
use crate::handler::{Handler, pg_fields};
use crate::sql::{normalize_whitespace, quote_ident, quote_literal};

/// The first oid of user objects in PostgreSQL; table oids are hashed above it.
const FIRST_USER_OID: u32 = 16384;

/// Catalogs that have no rows for Bulkhead.
const EMPTY_CATALOGS: &[&str] = &[
    "pg_catalog.pg_policy",
    "pg_catalog.pg_statistic_ext",
    "pg_catalog.pg_publication",
    "pg_catalog.pg_inherits",
    "pg_catalog.pg_trigger",
    "pg_catalog.pg_constraint",
    "pg_catalog.pg_index",
    "pg_catalog.pg_rewrite",
];

/// A small, fully materialised text result.
#[derive(Debug)]
pub(crate) struct Answer {
    columns: Vec<(String, Type)>,
    rows: Vec<Vec<Option<String>>>,
}

impl Answer {
    pub(crate) fn into_response(self, format: &Format) -> Response {
        let fields: Vec<FieldInfo> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| {
                FieldInfo::new(name.clone(), None, None, ty.clone(), format.format_for(i))
            })
            .collect();
        let fields = Arc::new(fields);
        let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
        let rows: Vec<_> = self
            .rows
            .into_iter()
            .map(|row| {
                for value in &row {
                    encoder.encode_field(value)?;
                }
                Ok(encoder.take_row())
            })
            .collect();
        Response::Query(QueryResponse::new(fields, futures::stream::iter(rows)))
    }
}

/// The answer to `stmt` if it is one of the recognised client catalog queries.
pub(crate) async fn answer(
    handler: &Handler,
    db: &str,
    stmt: &str,
) -> Result<Option<Answer>, PgError> {
    if !stmt.contains("pg_catalog") {
        return Ok(None);
    }
    let sql = normalize_whitespace(stmt);
    let lower = sql.to_ascii_lowercase();
    let text = |name: &str| (name.to_owned(), Type::TEXT);

    // `\d`, `\dt` (and `\dv`, `\di`, ...: only tables exist).
    if lower.contains("from pg_catalog.pg_class c")
        && lower.contains("as \"owner\"")
        && lower.contains("c.relkind in (")
    {
        let kinds = between(&lower, "c.relkind in (", ")").unwrap_or_default();
        let tables = if kinds.contains("'r'") {
            tables(handler, db, relname_pattern(&sql)).await?
        } else {
            Vec::new()
        };
        let rows = tables
            .into_iter()
            .map(|t| {
                vec![
                    Some(db.to_owned()),
                    Some(t),
                    Some("table".to_owned()),
                    Some("bulkhead".to_owned()),
                ]
            })
            .collect();
        return Ok(Some(Answer {
            columns: vec![text("Schema"), text("Name"), text("Type"), text("Owner")],
            rows,
        }));
    }

    // `\l`: the databases (schemas of the `bulkhead` catalog, without `system`).
    if lower.contains("from pg_catalog.pg_database d") && lower.contains("as \"name\"") {
        let sql = "SELECT schema_name FROM information_schema.schemata \
                   WHERE catalog_name = 'bulkhead' \
                   AND schema_name NOT IN ('information_schema', 'system') \
                   ORDER BY schema_name";
        let rows = strings(handler.collect(db, sql).await?)?
            .into_iter()
            .map(|name| {
                vec![
                    Some(name),
                    Some("bulkhead".to_owned()),
                    Some("UTF8".to_owned()),
                ]
            })
            .collect();
        return Ok(Some(Answer {
            columns: vec![text("Name"), text("Owner"), text("Encoding")],
            rows,
        }));
    }

    // `\d NAME`, step 1: name -> oid.
    if lower.starts_with("select c.oid, n.nspname, c.relname from pg_catalog.pg_class c") {
        let rows = tables(handler, db, relname_pattern(&sql))
            .await?
            .into_iter()
            .map(|t| vec![Some(oid(db, &t).to_string()), Some(db.to_owned()), Some(t)])
            .collect();
        return Ok(Some(Answer {
            columns: vec![
                ("oid".to_owned(), Type::OID),
                text("nspname"),
                text("relname"),
            ],
            rows,
        }));
    }

    // `\d NAME`, step 2: relation details (psql 12+ column layout, read by index).
    if lower.starts_with("select c.relchecks, c.relkind,") {
        let found = match quoted_number(&lower, "where c.oid = '") {
            Some(o) => table_by_oid(handler, db, o).await?,
            None => None,
        };
        let names = [
            "relchecks",
            "relkind",
            "relhasindex",
            "relhasrules",
            "relhastriggers",
            "relrowsecurity",
            "relforcerowsecurity",
            "relhasoids",
            "relispartition",
            "reloptions",
            "reltablespace",
            "reloftype",
            "relpersistence",
            "relreplident",
            "amname",
        ];
        let values = [
            "0", "r", "f", "f", "f", "f", "f", "f", "f", "", "0", "", "p", "d", "heap",
        ];
        let rows = found
            .map(|_| values.iter().map(|v| Some((*v).to_owned())).collect())
            .into_iter()
            .collect();
        return Ok(Some(Answer {
            columns: names.into_iter().map(text).collect(),
            rows,
        }));
    }

    // `\d NAME`, step 3: the columns.
    if lower.starts_with("select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)") {
        if lower.contains("a.attstorage") {
            return Err(PgError::Query(bulkhead_server::QueryError::new(
                bulkhead_server::QueryErrorKind::Unsupported,
                "\\d+ is not supported by Bulkhead; use \\d",
            )));
        }
        let mut rows = Vec::new();
        if let Some(o) = quoted_number(&lower, "a.attrelid = '")
            && let Some(table) = table_by_oid(handler, db, o).await?
        {
            let sql = format!(
                "SELECT * FROM {}.{} LIMIT 0",
                quote_ident(db),
                quote_ident(&table)
            );
            let schema = handler.run(db, &sql).await?.schema;
            let fields = pg_fields(&schema, &Format::UnifiedText)?;
            for (field, pg) in schema.fields().iter().zip(&fields) {
                rows.push(vec![
                    Some(field.name().clone()),
                    Some(format_type(pg.datatype()).to_owned()),
                    None,
                    Some(if field.is_nullable() { "f" } else { "t" }.to_owned()),
                    None,
                    Some(String::new()),
                    Some(String::new()),
                ]);
            }
        }
        return Ok(Some(Answer {
            columns: vec![
                text("attname"),
                text("format_type"),
                text("default"),
                ("attnotnull".to_owned(), Type::BOOL),
                text("attcollation"),
                text("attidentity"),
                text("attgenerated"),
            ],
            rows,
        }));
    }

    if EMPTY_CATALOGS.iter().any(|c| lower.contains(c)) {
        return Ok(Some(Answer {
            columns: Vec::new(),
            rows: Vec::new(),
        }));
    }
    Ok(None)
}

/// `SHOW name` for the PostgreSQL settings drivers ask about (DataFusion's own
/// `datafusion.*` settings are left to the query layer).
pub(crate) fn show(db: &str, stmt: &str) -> Option<Answer> {
    let sql = normalize_whitespace(stmt).to_ascii_lowercase();
    let name = sql.strip_prefix("show ")?.trim_end_matches(';').trim();
    let value = match name {
        "transaction isolation level" | "transaction_isolation" => "read committed",
        "server_version" => "16.6",
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "timezone" => "UTC",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "max_identifier_length" => "63",
        "search_path" => db,
        _ => return None,
    };
    let column = if name == "transaction isolation level" {
        "transaction_isolation"
    } else {
        name
    };
    Some(Answer {
        columns: vec![(column.to_owned(), Type::TEXT)],
        rows: vec![vec![Some(value.to_owned())]],
    })
}

/// Tables of `db`, sorted, optionally filtered by a psql regex literal (`'^(cpu)$'`).
async fn tables(
    handler: &Handler,
    db: &str,
    pattern: Option<&str>,
) -> Result<Vec<String>, PgError> {
    let mut sql = format!(
        "SELECT table_name FROM information_schema.tables \
         WHERE table_catalog = 'bulkhead' AND table_schema = {}",
        quote_literal(db)
    );
    if let Some(p) = pattern {
        // `p` is the client's own literal, quotes included, as psql wrote it.
        sql.push_str(&format!(" AND table_name ~ {p}"));
    }
    sql.push_str(" ORDER BY table_name");
    strings(handler.collect(db, &sql).await?)
}

/// The first column of `batches` as strings (NULLs skipped).
fn strings(batches: Vec<arrow::array::RecordBatch>) -> Result<Vec<String>, PgError> {
    let mut out = Vec::new();
    for batch in batches {
        let column = arrow::compute::cast(batch.column(0), &DataType::Utf8)
            .map_err(|e| PgError::Encode(e.to_string()))?;
        let names = column.as_string::<i32>();
        out.extend(
            (0..names.len())
                .filter(|i| names.is_valid(*i))
                .map(|i| names.value(i).to_owned()),
        );
    }
    Ok(out)
}

async fn table_by_oid(handler: &Handler, db: &str, oid_: u32) -> Result<Option<String>, PgError> {
    Ok(tables(handler, db, None)
        .await?
        .into_iter()
        .find(|t| oid(db, t) == oid_))
}

/// A stable oid for a table: FNV-1a of `db.table`, above [`FIRST_USER_OID`].
fn oid(db: &str, table: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in db.bytes().chain([b'.']).chain(table.bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    FIRST_USER_OID + h % (i32::MAX as u32 - FIRST_USER_OID)
}

/// The SQL literal psql compares `c.relname` with (`'^(cpu)$'`), quotes included.
fn relname_pattern(sql: &str) -> Option<&str> {
    let key = "c.relname OPERATOR(pg_catalog.~) '";
    let start = sql.find(key)? + key.len() - 1;
    let b = sql.as_bytes();
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(&sql[start..=i]);
        }
        i += 1;
    }
    None
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

fn quoted_number(s: &str, prefix: &str) -> Option<u32> {
    between(s, prefix, "'")?.parse().ok()
}

/// PostgreSQL's `format_type` name of a type.
fn format_type(ty: &Type) -> &'static str {
    match *ty {
        Type::BOOL => "boolean",
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::NUMERIC => "numeric",
        Type::TEXT => "text",
        Type::TIMESTAMPTZ => "timestamp with time zone",
        Type::TIMESTAMP => "timestamp without time zone",
        Type::DATE => "date",
        Type::BYTEA => "bytea",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_psql_pattern_literal() {
        let sql = "WHERE c.relname OPERATOR(pg_catalog.~) '^(it''s)$' COLLATE pg_catalog.default";
        assert_eq!(relname_pattern(sql), Some("'^(it''s)$'"));
        assert_eq!(relname_pattern("select 1"), None);
    }

    #[test]
    fn oids_are_stable_and_in_user_range() {
        assert_eq!(oid("demo", "cpu"), oid("demo", "cpu"));
        assert_ne!(oid("demo", "cpu"), oid("demo", "mem"));
        assert!(oid("demo", "cpu") >= FIRST_USER_OID);
        assert!(oid("demo", "cpu") <= i32::MAX as u32);
        assert_eq!(
            quoted_number("where c.oid = '16385';", "where c.oid = '"),
            Some(16385)
        );
    }
}
