//! Table schemas: tag and field columns with stable ids, and their Arrow form.
//!
//! Columns get ids in the order they are first written (tags and fields have separate
//! id spaces); memtables index rows by these ids. The Arrow schema handed to readers is
//! sorted instead: tags by name, then fields by name, then `time`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::model::FieldType;

/// Name of the time column.
pub const TIME_COLUMN: &str = "time";
/// Arrow field metadata key telling a column's role: `tag`, `field` or `time`.
pub const ROLE_KEY: &str = "bulkhead.role";

/// The columns of one table. Grows by adding columns; a column never changes type.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TableSchema {
    /// Tag names in id order.
    pub tags: Vec<String>,
    /// Field names and types in id order.
    pub fields: Vec<(String, FieldType)>,
    // foldhash, not SipHash: looked up for every tag and field of every written row.
    #[serde(skip)]
    tag_index: foldhash::HashMap<String, u32>,
    #[serde(skip)]
    field_index: foldhash::HashMap<String, u32>,
}

/// A column of a table, as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Tag(u32),
    Field(u32, FieldType),
    Time,
}

impl TableSchema {
    /// Rebuild the name indexes (after deserializing).
    pub(crate) fn reindex(&mut self) {
        self.tag_index = self
            .tags
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        self.field_index = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i as u32))
            .collect();
    }

    pub fn tag_id(&self, name: &str) -> Option<u32> {
        self.tag_index.get(name).copied()
    }

    pub fn field(&self, name: &str) -> Option<(u32, FieldType)> {
        self.field_index
            .get(name)
            .map(|&i| (i, self.fields[i as usize].1))
    }

    pub fn column(&self, name: &str) -> Option<ColumnKind> {
        if name == TIME_COLUMN {
            return Some(ColumnKind::Time);
        }
        if let Some(t) = self.tag_id(name) {
            return Some(ColumnKind::Tag(t));
        }
        self.field(name).map(|(i, t)| ColumnKind::Field(i, t))
    }

    pub(crate) fn add_tag(&mut self, name: &str) -> u32 {
        if let Some(id) = self.tag_id(name) {
            return id;
        }
        let id = self.tags.len() as u32;
        self.tags.push(name.to_string());
        self.tag_index.insert(name.to_string(), id);
        id
    }

    pub(crate) fn add_field(&mut self, name: &str, ty: FieldType) -> u32 {
        if let Some((id, _)) = self.field(name) {
            return id;
        }
        let id = self.fields.len() as u32;
        self.fields.push((name.to_string(), ty));
        self.field_index.insert(name.to_string(), id);
        id
    }

    /// Tag ids sorted by tag name (the order of tag columns in Arrow output and of the
    /// series sort key).
    pub fn sorted_tag_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..self.tags.len() as u32).collect();
        ids.sort_by(|a, b| self.tags[*a as usize].cmp(&self.tags[*b as usize]));
        ids
    }

    /// Field ids sorted by field name.
    pub fn sorted_field_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..self.fields.len() as u32).collect();
        ids.sort_by(|a, b| self.fields[*a as usize].0.cmp(&self.fields[*b as usize].0));
        ids
    }

    /// The full Arrow schema: tags (sorted, `Dictionary(Int32, Utf8)`), fields (sorted),
    /// then `time` as `Timestamp(Nanosecond, "UTC")`.
    pub fn arrow_schema(&self) -> SchemaRef {
        self.projected_schema(None)
    }

    /// The Arrow schema restricted to `projection` (column names; unknown names are
    /// ignored), keeping the canonical column order.
    pub fn projected_schema(&self, projection: Option<&[String]>) -> SchemaRef {
        let keep = |name: &str| projection.is_none_or(|p| p.iter().any(|c| c == name));
        let mut fields = Vec::new();
        for id in self.sorted_tag_ids() {
            let name = &self.tags[id as usize];
            if keep(name) {
                fields.push(tag_field(name));
            }
        }
        for id in self.sorted_field_ids() {
            let (name, ty) = &self.fields[id as usize];
            if keep(name) {
                fields.push(field_field(name, *ty));
            }
        }
        if keep(TIME_COLUMN) {
            fields.push(time_field());
        }
        Arc::new(Schema::new(fields))
    }
}

/// Arrow type of a field column.
pub fn arrow_type(ty: FieldType) -> DataType {
    match ty {
        FieldType::F64 => DataType::Float64,
        FieldType::I64 => DataType::Int64,
        FieldType::U64 => DataType::UInt64,
        FieldType::Bool => DataType::Boolean,
        FieldType::Str => DataType::Utf8,
    }
}

pub(crate) fn tag_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

pub(crate) fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn with_role(f: Field, role: &str) -> Field {
    f.with_metadata(HashMap::from([(ROLE_KEY.to_string(), role.to_string())]))
}

pub(crate) fn tag_field(name: &str) -> Field {
    with_role(Field::new(name, tag_type(), true), "tag")
}

pub(crate) fn field_field(name: &str, ty: FieldType) -> Field {
    with_role(Field::new(name, arrow_type(ty), true), "field")
}

pub(crate) fn time_field() -> Field {
    with_role(Field::new(TIME_COLUMN, time_type(), false), "time")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_schema_is_sorted_tags_fields_time() {
        let mut s = TableSchema::default();
        s.add_tag("region");
        s.add_field("usage", FieldType::F64);
        s.add_tag("host");
        s.add_field("count", FieldType::I64);
        let names: Vec<String> = s
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["host", "region", "count", "usage", "time"]);
        assert_eq!(s.tag_id("region"), Some(0));
        let json = serde_json::to_string(&s).expect("ser");
        let mut back: TableSchema = serde_json::from_str(&json).expect("de");
        back.reindex();
        assert_eq!(back.field("count"), Some((1, FieldType::I64)));
    }
}
