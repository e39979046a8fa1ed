//! The catalog: one DataFusion schema per Bulkhead database, plus `system`.
//!
//! Nothing is registered ahead of time: every lookup asks the engine, so tables and
//! columns written a moment ago are visible to the next query without a restart.

use std::sync::Arc;

use async_trait::async_trait;
use bulkhead_engine::Engine;
use bulkhead_runtime::Runtimes;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result;

use crate::stats::QueryStats;
use crate::system::{SYSTEM_SCHEMA, SystemSchema};
use crate::table::EngineTable;

/// The name of Bulkhead's one catalog.
pub const CATALOG: &str = "bulkhead";

#[derive(Debug)]
pub(crate) struct BulkheadCatalog {
    pub(crate) engine: Arc<Engine>,
    pub(crate) runtimes: Arc<Runtimes>,
    pub(crate) stats: Arc<QueryStats>,
    pub(crate) cache: Option<bulkhead_runtime::store::CachedStore>,
    /// PostgreSQL's catalog tables, in sessions of the PG protocol ([`crate::pg`]).
    pub(crate) pg_catalog: Option<Arc<dyn SchemaProvider>>,
    /// The rollups' progress, for `system.rollups`.
    pub(crate) rollups: Arc<crate::rollup::RollupBoard>,
}

impl CatalogProvider for BulkheadCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.engine.databases();
        names.push(SYSTEM_SCHEMA.to_string());
        if self.pg_catalog.is_some() {
            names.push(crate::pg::PG_CATALOG.to_string());
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == crate::pg::PG_CATALOG
            && let Some(pg) = &self.pg_catalog
        {
            return Some(Arc::clone(pg));
        }
        if name == SYSTEM_SCHEMA {
            return Some(Arc::new(SystemSchema {
                engine: Arc::clone(&self.engine),
                runtimes: Arc::clone(&self.runtimes),
                cache: self.cache.clone(),
                rollups: Arc::clone(&self.rollups),
            }));
        }
        // Unknown databases are empty schemas: `select * from t` then fails with
        // DataFusion's "table not found", naming the table.
        Some(Arc::new(DatabaseSchema {
            engine: Arc::clone(&self.engine),
            stats: Arc::clone(&self.stats),
            db: name.to_string(),
        }))
    }
}

#[derive(Debug)]
struct DatabaseSchema {
    engine: Arc<Engine>,
    stats: Arc<QueryStats>,
    db: String,
}

#[async_trait]
impl SchemaProvider for DatabaseSchema {
    fn table_names(&self) -> Vec<String> {
        self.engine.tables(&self.db)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.engine.table_schema(&self.db, name).map(|schema| {
            Arc::new(EngineTable::new(
                Arc::clone(&self.engine),
                Arc::clone(&self.stats),
                self.db.clone(),
                name.to_string(),
                schema,
            )) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.engine.table_schema(&self.db, name).is_some()
    }
}
