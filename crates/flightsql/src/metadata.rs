//! The catalog calls (`GetCatalogs`, `GetDbSchemas`, `GetTables`, `GetTableTypes`,
//! `GetSqlInfo`), answered from DataFusion's `information_schema` through the same query
//! backend, and shaped by arrow-flight's builders (which also apply the filters).

use std::sync::OnceLock;

use arrow::array::{AsArray, RecordBatch};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables, SqlInfo,
    SqlSupportedTransaction,
};
use tonic::Status;

use crate::service::Service;

/// The default database of catalog queries: they name every table fully, so any name
/// does; this one is never a user database's name by accident.
pub(crate) const CATALOG_DB: &str = "information_schema";

/// Flight SQL's name for a base table (information_schema says `BASE TABLE`).
const TABLE: &str = "TABLE";
const VIEW: &str = "VIEW";

pub(crate) async fn catalogs(
    service: &Service,
    query: CommandGetCatalogs,
) -> Result<RecordBatch, Status> {
    let rows = strings(
        service
            .collect(
                "select distinct catalog_name from information_schema.schemata order by 1".into(),
            )
            .await?,
    )?;
    let mut builder = query.into_builder();
    for row in rows {
        builder.append(&row[0]);
    }
    builder.build().map_err(|e| Status::internal(e.to_string()))
}

pub(crate) async fn schemas(
    service: &Service,
    query: CommandGetDbSchemas,
) -> Result<RecordBatch, Status> {
    let rows = strings(
        service
            .collect(
                "select catalog_name, schema_name from information_schema.schemata order by 1, 2"
                    .into(),
            )
            .await?,
    )?;
    let mut builder = query.into_builder();
    for row in rows {
        builder.append(&row[0], &row[1]);
    }
    builder.build().map_err(|e| Status::internal(e.to_string()))
}

pub(crate) async fn tables(
    service: &Service,
    query: CommandGetTables,
) -> Result<RecordBatch, Status> {
    // Filter in SQL first, so only the tables asked for are planned for their schema
    // (the builder filters again, by the same LIKE patterns).
    let mut conditions = Vec::new();
    if let Some(catalog) = &query.catalog {
        conditions.push(format!("table_catalog = {}", quote(catalog)));
    }
    if let Some(pattern) = &query.db_schema_filter_pattern {
        conditions.push(format!("table_schema like {}", quote(pattern)));
    }
    if let Some(pattern) = &query.table_name_filter_pattern {
        conditions.push(format!("table_name like {}", quote(pattern)));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" where {}", conditions.join(" and "))
    };
    let sql = format!(
        "select table_catalog, table_schema, table_name, table_type \
         from information_schema.tables{filter} order by 1, 2, 3"
    );
    let rows = strings(service.collect(sql).await?)?;
    let include_schema = query.include_schema;
    let mut builder = query.into_builder();
    for row in rows {
        let [catalog, schema, table, kind] = &row[..] else {
            continue;
        };
        let kind = if kind == "BASE TABLE" { TABLE } else { VIEW };
        let table_schema = if include_schema {
            let sql = format!(
                "select * from {}.{}.{} limit 0",
                ident(catalog),
                ident(schema),
                ident(table)
            );
            service
                .result_schema(Some(CATALOG_DB.to_owned()), sql)
                .await?
        } else {
            arrow::datatypes::Schema::empty()
        };
        builder
            .append(catalog, schema, table, kind, &table_schema)
            .map_err(|e| Status::internal(e.to_string()))?;
    }
    builder.build().map_err(|e| Status::internal(e.to_string()))
}

pub(crate) fn table_types(query: CommandGetTableTypes) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    builder.append(TABLE);
    builder.append(VIEW);
    builder.build().map_err(|e| Status::internal(e.to_string()))
}

/// What `GetSqlInfo` reports.
pub(crate) fn sql_info() -> &'static SqlInfoData {
    static INFO: OnceLock<SqlInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "Bulkhead");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        // Not read-only: `DELETE` and `DROP` work (writes come by line protocol).
        b.append(SqlInfo::FlightSqlServerReadOnly, false);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        b.append(SqlInfo::FlightSqlServerCancel, false);
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, false);
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(SqlInfo::SqlQuotedIdentifierCase, 3_i32); // case sensitive
        b.build().expect("static SqlInfo is valid")
    })
}

/// Every row of `batches`, each column as text (the catalog columns are strings).
fn strings(batches: Vec<RecordBatch>) -> Result<Vec<Vec<String>>, Status> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8))
            .collect::<Result<_, _>>()
            .map_err(|e| Status::internal(format!("reading information_schema: {e}")))?;
        for i in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|c| c.as_string::<i32>().value(i).to_owned())
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
