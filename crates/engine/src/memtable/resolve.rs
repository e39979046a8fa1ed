//! Resolving a row's column names to ids, reusing the previous row's answer when the
//! names repeat (the common case: the rows of a batch from one source carry the same
//! tags and fields in the same order), so most rows cost string compares, not hashes.

use crate::error::{Error, Result};
use crate::model::Row;
use crate::schema::TableSchema;

#[derive(Debug)]
pub(crate) struct RowResolver<'s> {
    schema: &'s TableSchema,
    /// Tag ids of the last row, in row order.
    tag_ids: Vec<u32>,
    /// Positions of the last row's tags sorted by tag id.
    tag_order: Vec<usize>,
    /// Field ids of the last row, in row order.
    field_ids: Vec<u32>,
}

impl<'s> RowResolver<'s> {
    pub(crate) fn new(schema: &'s TableSchema) -> Self {
        Self {
            schema,
            tag_ids: Vec::new(),
            tag_order: Vec::new(),
            field_ids: Vec::new(),
        }
    }

    /// Resolve `row`; afterwards [`Self::sorted_tags`] and [`Self::field_ids`] describe it.
    pub(crate) fn resolve(&mut self, row: &Row) -> Result<()> {
        let same_tags = self.tag_ids.len() == row.tags.len()
            && self
                .tag_ids
                .iter()
                .zip(&row.tags)
                .all(|(id, (name, _))| self.schema.tags[*id as usize] == *name);
        if !same_tags {
            self.tag_ids.clear();
            for (name, _) in &row.tags {
                let id = self
                    .schema
                    .tag_id(name)
                    .ok_or_else(|| Error::InvalidInput(format!("unknown tag `{name}`")))?;
                self.tag_ids.push(id);
            }
            self.tag_order = (0..row.tags.len()).collect();
            let ids = &self.tag_ids;
            self.tag_order.sort_unstable_by_key(|&i| ids[i]);
        }
        let same_fields = self.field_ids.len() == row.fields.len()
            && self
                .field_ids
                .iter()
                .zip(&row.fields)
                .all(|(id, (name, _))| self.schema.fields[*id as usize].0 == *name);
        if !same_fields {
            self.field_ids.clear();
            for (name, _) in &row.fields {
                let (id, _) = self
                    .schema
                    .field(name)
                    .ok_or_else(|| Error::InvalidInput(format!("unknown field `{name}`")))?;
                self.field_ids.push(id);
            }
        }
        Ok(())
    }

    /// `(tag id, value)` of the resolved row, sorted by id.
    pub(crate) fn sorted_tags<'r>(
        &'r self,
        row: &'r Row,
    ) -> impl Iterator<Item = (u32, &'r str)> + Clone + 'r {
        self.tag_order
            .iter()
            .map(move |&i| (self.tag_ids[i], row.tags[i].1.as_str()))
    }

    pub(crate) fn field_ids(&self) -> &[u32] {
        &self.field_ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FieldType, FieldValue};

    #[test]
    fn cache_follows_changing_rows() {
        let mut s = TableSchema::default();
        s.add_tag("b");
        s.add_tag("a");
        s.add_field("x", FieldType::I64);
        s.add_field("y", FieldType::I64);
        let mut r = RowResolver::new(&s);
        let row1 = Row {
            tags: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            fields: vec![("y".into(), FieldValue::I64(1))],
            time: 0,
        };
        r.resolve(&row1).expect("resolve");
        assert_eq!(
            r.sorted_tags(&row1).collect::<Vec<_>>(),
            vec![(0, "2"), (1, "1")]
        );
        assert_eq!(r.field_ids(), &[1]);
        let row2 = Row {
            tags: vec![("b".into(), "3".into())],
            fields: vec![
                ("x".into(), FieldValue::I64(1)),
                ("y".into(), FieldValue::I64(2)),
            ],
            time: 0,
        };
        r.resolve(&row2).expect("resolve");
        assert_eq!(r.sorted_tags(&row2).collect::<Vec<_>>(), vec![(0, "3")]);
        assert_eq!(r.field_ids(), &[0, 1]);
        let unknown = Row {
            tags: vec![("zz".into(), "1".into())],
            fields: vec![],
            time: 0,
        };
        assert!(r.resolve(&unknown).is_err());
    }
}
