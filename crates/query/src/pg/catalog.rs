//! What `pg_catalog` lists: Bulkhead's catalog as the library's `CatalogInfo`, and
//! `pg_database` made of Bulkhead's databases.

use super::*;

/// What the catalog tables list: the `bulkhead` catalog's databases and `system`, with
/// their tables (and `pg_catalog` and `information_schema` as schemas without tables,
/// so that `pg_namespace` has them as in PostgreSQL).
#[derive(Debug, Clone)]
pub(super) struct Tables(pub(super) Arc<BulkheadCatalog>);

impl Tables {
    fn schema(&self, catalog: &str, schema: &str) -> Option<Arc<dyn SchemaProvider>> {
        if catalog != CATALOG || schema == PG_CATALOG || schema == "information_schema" {
            return None;
        }
        self.0.schema(schema)
    }
}

#[async_trait]
impl CatalogInfo for Tables {
    async fn catalog_names(&self) -> Result<Vec<String>> {
        Ok(vec![CATALOG.to_owned()])
    }

    async fn schema_names(&self, catalog: &str) -> Result<Option<Vec<String>>> {
        if catalog != CATALOG {
            return Ok(None);
        }
        let mut names = self.0.schema_names();
        names.push(PG_CATALOG.to_owned());
        names.push("information_schema".to_owned());
        Ok(Some(names))
    }

    async fn table_names(&self, catalog: &str, schema: &str) -> Result<Option<Vec<String>>> {
        if catalog == CATALOG && (schema == PG_CATALOG || schema == "information_schema") {
            return Ok(Some(Vec::new()));
        }
        Ok(self.schema(catalog, schema).map(|s| s.table_names()))
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>> {
        match self.schema(catalog, schema) {
            Some(s) => Ok(s.table(table).await?.map(|t| t.schema())),
            None => Ok(None),
        }
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableType>> {
        match self.schema(catalog, schema) {
            Some(s) => Ok(s.table_type(table).await?),
            None => Ok(None),
        }
    }
}

/// The `pg_catalog` schema of PG sessions: `datafusion-pg-catalog`'s tables, except
/// `pg_database`, which lists Bulkhead's databases (what a PG client connects to with
/// `dbname`), so that `current_database()` is one of them.
#[derive(Debug)]
pub(super) struct PgCatalogSchema {
    pub(super) inner: Arc<dyn SchemaProvider>,
    pub(super) catalog: Arc<BulkheadCatalog>,
    pub(super) type_oids: Arc<HashMap<String, i32>>,
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !name.eq_ignore_ascii_case("pg_database") {
            return self.inner.table(name).await;
        }
        let Some(template) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let databases: Vec<String> = self
            .catalog
            .schema_names()
            .into_iter()
            .filter(|s| s != crate::system::SYSTEM_SCHEMA)
            .collect();
        let batch = pg_database(template.schema(), &databases)?;
        Ok(Some(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// `pg_database` rows for `databases`, in the columns of the library's table.
pub(super) fn pg_database(schema: SchemaRef, databases: &[String]) -> Result<RecordBatch> {
    let n = databases.len();
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            let int = |v: i32| Arc::new(Int32Array::from(vec![v; n])) as ArrayRef;
            let text = |v: &str| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
            match field.name().as_str() {
                "oid" => Arc::new(Int32Array::from_iter_values(
                    databases.iter().map(|d| database_oid(d)),
                )),
                "datname" => Arc::new(StringArray::from_iter_values(databases)),
                "datdba" => int(10),
                "encoding" => int(6),
                "datconnlimit" => int(-1),
                "datlastsysoid" => int(16383),
                "dattablespace" => int(1663),
                "datfrozenxid" | "datminmxid" => int(1),
                "datlocprovider" => text("c"),
                "datcollate" | "datctype" => text("C.UTF-8"),
                "datistemplate" => Arc::new(BooleanArray::from(vec![false; n])),
                "datallowconn" => Arc::new(BooleanArray::from(vec![true; n])),
                _ => new_null_array(field.data_type(), n),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A stable oid for a database: FNV-1a of its name, in the range of user oids.
pub(super) fn database_oid(name: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (16_384 + h % (i32::MAX as u32 - 16_384)) as i32
}
