//! The few client catalog answers that stay in the PG layer: psql's `\l` (Bulkhead's
//! databases are what a client connects to, so they are listed as PostgreSQL
//! databases) and `SHOW` of the settings drivers ask about. Everything else a client
//! reads from the catalog (`pg_catalog.*`, `information_schema`, `\d`, `\dn`, `\d+`)
//! is answered by the query layer's PostgreSQL catalog (`bulkhead_query`'s `pg`
//! module, built on `datafusion-pg-catalog`).

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response};
use std::sync::Arc;

use crate::error::PgError;
use crate::handler::Handler;
use crate::sql::normalize_whitespace;

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

    // `\l`: the databases (schemas of the `bulkhead` catalog, without `system`).
    if lower.contains("from pg_catalog.pg_database d") && lower.contains("as \"name\"") {
        let sql = "SELECT schema_name FROM information_schema.schemata \
                   WHERE catalog_name = 'bulkhead' \
                   AND schema_name NOT IN ('information_schema', 'pg_catalog', 'system') \
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
