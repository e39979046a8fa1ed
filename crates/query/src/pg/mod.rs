//! PostgreSQL compatibility for sessions of the PG wire protocol: the `pg_catalog`
//! schema and the PostgreSQL functions drivers and GUI tools call on connect, plus the
//! rewriting of their PostgreSQL-only SQL into what DataFusion plans.
//!
//! The catalog tables, most functions and the SQL rewrites come from
//! `datafusion-pg-catalog` (the `datafusion-postgres` project's catalog, on the same
//! DataFusion). What it cannot know is Bulkhead's: a connection's database is the
//! DataFusion schema it works in, so `current_schema()`, `current_schemas()` and
//! `search_path` name it; `version()` says PostgreSQL first, because drivers parse it.
//!
//! One [`PgCompat`] lives as long as the query engine: its static tables are decoded
//! once, and its `pg_catalog` schema keeps one oid cache, so a table's oid is the same
//! in every query of a client's catalog walk (look up the oid, then its columns).

use std::ops::ControlFlow;
use std::sync::Arc;

use std::collections::HashMap;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, new_null_array,
};
use arrow::datatypes::{DataType, Field, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemTable, SchemaProvider, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility, create_udf,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, SelectItem,
    SetExpr, Statement, TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{
    self as pgc, PgCatalogSchemaProvider, PgCatalogStaticTables,
};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::catalog::{BulkheadCatalog, CATALOG};

mod catalog;
mod functions;
mod rewrite;

use self::catalog::*;
use self::functions::*;
pub use self::functions::{pg_type_name, setting, version};
use self::rewrite::*;

/// The name of the schema with PostgreSQL's catalog tables.
pub(crate) const PG_CATALOG: &str = "pg_catalog";

/// The PostgreSQL version clients are told (`version()`, `server_version`).
pub const PG_VERSION: &str = "16.6";

/// What PG sessions add to a plain session; one per query engine.
pub(crate) struct PgCompat {
    static_tables: Arc<PgCatalogStaticTables>,
    pg_catalog: Arc<PgCatalogSchema>,
    parser: PostgresCompatibilityParser,
    /// [`REPLACEMENTS`], tokenized.
    replacements: Vec<(Vec<Token>, String)>,
    /// `information_schema.columns` with PostgreSQL type names.
    columns: TableFactor,
    /// What `pg_table_is_visible(oid)` becomes ([`TableIsVisible`]).
    visible: Expr,
}

impl std::fmt::Debug for PgCompat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCompat").finish_non_exhaustive()
    }
}

impl PgCompat {
    /// `catalog` is Bulkhead's catalog (without `pg_catalog`), which the catalog tables
    /// list at query time.
    pub(crate) fn new(catalog: Arc<BulkheadCatalog>) -> Result<Self> {
        let static_tables = Arc::new(PgCatalogStaticTables::try_new()?);
        let inner = Arc::new(PgCatalogSchemaProvider::try_new(
            Tables(Arc::clone(&catalog)),
            Arc::clone(&static_tables),
            EmptyContextProvider,
        )?);
        let type_oids = type_oids(&static_tables);
        let pg_catalog = Arc::new(PgCatalogSchema {
            inner,
            catalog,
            type_oids: Arc::clone(&type_oids),
        });
        Ok(Self {
            static_tables,
            pg_catalog,
            parser: PostgresCompatibilityParser::new(),
            replacements: replacements(),
            columns: pg_columns_factor(),
            visible: table_is_visible_expr(),
        })
    }

    pub(crate) fn schema(&self) -> Arc<dyn SchemaProvider> {
        Arc::clone(&self.pg_catalog) as _
    }

    /// Register the PostgreSQL functions on a session whose default schema is `db`
    /// (what `datafusion_pg_catalog::setup_pg_catalog` does, with Bulkhead's answers
    /// where they differ and the static tables shared).
    pub(crate) fn register(&self, ctx: &SessionContext, db: &str) {
        use datafusion_pg_catalog::pg_catalog::{
            array_bounds_udf, format_type, has_privilege_udf, pg_get_expr_udf, quote_ident_udf,
        };
        for udf in [
            pgc::create_pg_get_userbyid_udf(),
            has_privilege_udf::create_has_privilege_udf("has_table_privilege"),
            has_privilege_udf::create_has_privilege_udf("has_schema_privilege"),
            has_privilege_udf::create_has_privilege_udf("has_database_privilege"),
            has_privilege_udf::create_has_privilege_udf("has_any_column_privilege"),
            pgc::create_pg_table_is_visible(),
            format_type::create_format_type_udf(),
            pgc::create_session_user_udf(),
            pg_get_expr_udf::create_pg_get_expr_udf(),
            pgc::create_pg_get_partkeydef_udf(),
            pgc::create_pg_relation_is_publishable_udf(),
            pgc::create_pg_get_statisticsobjdef_columns_udf(),
            pgc::create_pg_encoding_to_char_udf(),
            pgc::create_pg_backend_pid_udf(),
            pgc::create_pg_relation_size_udf(),
            pgc::create_pg_total_relation_size_udf(),
            pgc::create_pg_stat_get_numscans(),
            pgc::create_pg_get_constraintdef(),
            pgc::create_pg_get_partition_ancestors_udf(),
            quote_ident_udf::create_quote_ident_udf(),
            quote_ident_udf::create_parse_ident_udf(),
            array_bounds_udf::create_array_upper_udf(),
            array_bounds_udf::create_array_lower_udf(),
            constant("current_database", db),
            to_regtype(Arc::clone(&self.pg_catalog.type_oids)),
            constant("current_schema", db),
            constant("version", &version()),
            constant("current_user", "bulkhead"),
            constant("user", "bulkhead"),
            current_schemas(db),
            current_setting(db),
            pg_type_of_arrow_name(),
            ScalarUDF::new_from_impl(PgTypeOf::new()),
        ]
        .into_iter()
        .chain(
            NULL_TEXT_FUNCTIONS
                .iter()
                .map(|name| ScalarUDF::new_from_impl(Constant::new(name, ScalarValue::Utf8(None)))),
        )
        .chain([
            ScalarUDF::new_from_impl(Constant::new(
                "pg_collation_is_visible",
                ScalarValue::Boolean(Some(true)),
            )),
            ScalarUDF::new_from_impl(Constant::new(
                "pg_my_temp_schema",
                ScalarValue::Int32(Some(0)),
            )),
            ScalarUDF::new_from_impl(JsonBuildObject::new()),
        ]) {
            ctx.register_udf(udf);
        }
        ctx.register_udtf(
            "pg_get_keywords",
            Arc::clone(&self.static_tables.pg_get_keywords) as _,
        );
        datafusion_pg_catalog::pg_catalog::generate_series_arg_coercion::CoerceIntArgsToBigInt::widen(ctx);
    }

    /// `statement` as PostgreSQL clients mean it: their catalog idioms (`::regclass`,
    /// `= ANY(array)`, `pg_catalog.`-qualified functions, ...) rewritten for DataFusion.
    /// `sql` is the statement's text: a few whole client queries are replaced by
    /// equivalent ones before parsing. `None` when the text does not parse as one
    /// PostgreSQL statement; the caller then keeps its own parse.
    pub(crate) fn rewrite(&self, sql: &str) -> Option<Statement> {
        rewrite(
            &self.parser,
            &self.replacements,
            &self.columns,
            &self.visible,
            sql,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn information_schema_type_names_become_postgresql_names() {
        for (arrow, pg) in [
            ("Float64", "double precision"),
            ("Int64", "bigint"),
            ("UInt64", "numeric"),
            ("Boolean", "boolean"),
            ("Utf8", "text"),
            ("Dictionary(Int32, Utf8)", "text"),
        ] {
            let ty: DataType = arrow.parse().unwrap();
            assert_eq!(pg_type_name(&ty), pg, "{arrow}");
        }
        let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, Some("UTC".into()));
        let parsed: DataType = ts.to_string().parse().unwrap();
        assert_eq!(pg_type_name(&parsed), "timestamp with time zone");
    }

    #[test]
    fn grafana_search_path_is_replaced_whatever_the_whitespace() {
        let parser = PostgresCompatibilityParser::new();
        let replacements = replacements();
        let columns = pg_columns_factor();
        let visible = table_is_visible_expr();
        let sql = "select 1 where quote_ident(table_schema) IN (SELECT CASE WHEN trim(s[i]) = \
                   '\"$user\"' THEN user ELSE trim(s[i]) END FROM generate_series(array_lower(\
                   string_to_array(current_setting('search_path'),','),1), array_upper(\
                   string_to_array(current_setting('search_path'),','),1)) as i, \
                   string_to_array(current_setting('search_path'),',') s) order by 1";
        let out = substitute(sql, &replacements);
        assert_eq!(
            out,
            "select 1 where quote_ident(table_schema) = current_schema() order by 1"
        );
        let statement = rewrite(
            &parser,
            &replacements,
            &columns,
            &visible,
            "select c.data_type from information_schema.columns c",
        )
        .unwrap()
        .to_string();
        assert!(
            statement.contains("bulkhead_pg_type(data_type)"),
            "{statement}"
        );
        assert!(statement.ends_with(") c"), "{statement}");
        // Regproc columns compared with the oid 0.
        let statement = rewrite(
            &parser,
            &replacements,
            &columns,
            &visible,
            "select 1 from pg_catalog.pg_type where typreceive != 0",
        )
        .unwrap()
        .to_string();
        assert!(statement.contains("typreceive <> '-'"), "{statement}");
        // Correlated scalar subqueries of catalog queries are aggregated.
        let statement = rewrite(
            &parser,
            &replacements,
            &columns,
            &visible,
            "select case when a.attnum > 0 then (select t.typname from pg_catalog.pg_type t \
             where t.oid = a.atttypid) end from pg_catalog.pg_attribute a",
        )
        .unwrap()
        .to_string();
        assert!(statement.contains("SELECT max(t.typname)"), "{statement}");
        let statement = rewrite(
            &parser,
            &replacements,
            &columns,
            &visible,
            "select a.attname, case when a.atthasdef then (select d.adbin from \
             pg_catalog.pg_attrdef d where a.atthasdef and d.adrelid = a.attrelid) end \
             from pg_catalog.pg_attribute a",
        )
        .unwrap()
        .to_string();
        assert!(statement.contains("THEN NULL"), "{statement}");
        let statement = rewrite(
            &parser,
            &replacements,
            &columns,
            &visible,
            "select c.relname from pg_catalog.pg_class c where pg_catalog.pg_table_is_visible(c.oid)",
        )
        .unwrap()
        .to_string();
        assert!(
            statement.contains("WHERE (c.oid IN (SELECT bh_c.oid"),
            "{statement}"
        );
        let statement = rewrite(
            &parser,
            &replacements,
            &columns,
            &visible,
            "select 1 from pg_catalog.pg_class c where c.relkind = ANY('{\"p\", \"r\"}')",
        )
        .unwrap()
        .to_string();
        assert!(statement.contains("['p', 'r']"), "{statement}");
    }
}
