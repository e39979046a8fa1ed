//! The data model shared by every layer: databases hold tables; a table has string tags,
//! typed fields and a nanosecond `time`. The primary key is (tags, time).

use std::fmt;

pub use smol_str::SmolStr;

/// The type of a field column. A column keeps its first type forever; writing another
/// type is an [`crate::Error::SchemaConflict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    F64,
    I64,
    U64,
    Bool,
    Str,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::F64 => "float",
            FieldType::I64 => "integer",
            FieldType::U64 => "unsigned",
            FieldType::Bool => "boolean",
            FieldType::Str => "string",
        })
    }
}

/// One field value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(String),
}

impl FieldValue {
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::F64(_) => FieldType::F64,
            FieldValue::I64(_) => FieldType::I64,
            FieldValue::U64(_) => FieldType::U64,
            FieldValue::Bool(_) => FieldType::Bool,
            FieldValue::Str(_) => FieldType::Str,
        }
    }
}

/// One row to write: tags (any order, keys unique), fields (at least one), time in ns.
///
/// Names and tag values are [`SmolStr`]s: up to 23 bytes they live inline, so parsing
/// a typical row (ten tags, ten fields) allocates nothing per name or value; longer
/// ones are shared on clone.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub tags: Vec<(SmolStr, SmolStr)>,
    pub fields: Vec<(SmolStr, FieldValue)>,
    pub time: i64,
}

/// Rows for one table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableWrite {
    pub table: String,
    pub rows: Vec<Row>,
}

/// The engine's unit of atomicity: every row of a batch is applied and acknowledged,
/// or none is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WriteBatch {
    pub tables: Vec<TableWrite>,
}

impl WriteBatch {
    /// Append a row to `table`, reusing the table's entry when it is the last one.
    pub fn push(&mut self, table: &str, row: Row) {
        match self.tables.last_mut() {
            Some(t) if t.table == table => t.rows.push(row),
            _ => match self.tables.iter_mut().find(|t| t.table == table) {
                Some(t) => t.rows.push(row),
                None => self.tables.push(TableWrite {
                    table: table.to_string(),
                    rows: vec![row],
                }),
            },
        }
    }

    pub fn row_count(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.row_count() == 0
    }

    /// Approximate heap + inline bytes this batch occupies (used by the server's write
    /// admission control; not exact, but proportional to what the allocator holds).
    pub fn estimated_bytes(&self) -> usize {
        use std::mem::size_of;
        let string = size_of::<SmolStr>();
        let mut total = size_of::<Self>();
        for t in &self.tables {
            total += size_of::<TableWrite>() + t.table.len();
            for r in &t.rows {
                total += size_of::<Row>();
                for (k, v) in &r.tags {
                    total += 2 * string + k.len() + v.len();
                }
                for (k, v) in &r.fields {
                    total += string + size_of::<FieldValue>() + k.len();
                    if let FieldValue::Str(s) = v {
                        total += s.len();
                    }
                }
            }
        }
        total
    }
}

/// What a manual flush or compaction applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Database(String),
    Table { db: String, table: String },
}
