//! Rejecting, line by line, rows whose columns conflict with the table's schema or with
//! earlier rows of the same request, so that one bad line does not fail a whole batch
//! (the engine applies a batch atomically and would reject all of it).

use bulkhead_engine::{FieldType, Row};

use super::{LineError, Parsed, cut_line};
use crate::backend::TableColumns;

/// Move rows that would be a schema conflict from `parsed.batch` to `parsed.errors`.
/// `columns(table)` gives the existing table's columns (`None` for a new table). Within
/// the request the first type seen for a new column wins, as it would in the engine.
pub fn reject_conflicting_rows(
    parsed: &mut Parsed,
    body: &[u8],
    columns: impl Fn(&str) -> Option<TableColumns>,
) {
    let mut rejected = Vec::new();
    for (table, origins) in parsed.batch.tables.iter_mut().zip(&parsed.origins) {
        let existing = columns(&table.table).unwrap_or_default();
        let mut seen: foldhash::HashMap<&str, FieldType> = foldhash::HashMap::default();
        // Tag keys of accepted rows: in a new table, the first line that uses a key
        // decides whether it is a tag or a field, as it would in the engine.
        let mut seen_tags: foldhash::HashSet<&str> = foldhash::HashSet::default();
        let mut keep = Vec::with_capacity(table.rows.len());
        // The last accepted row: a row with the same tag keys and the same field keys
        // and types in the same order cannot conflict either (`seen` only ever gains
        // entries that agree with accepted rows), so it costs compares, not lookups.
        let mut last_ok: Option<usize> = None;
        for (i, (row, origin)) in table.rows.iter().zip(origins).enumerate() {
            if let Some(prev) = last_ok.map(|p| &table.rows[p])
                && same_columns(prev, row)
            {
                keep.push(true);
                last_ok = Some(i);
                continue;
            }
            let conflict = row.fields.iter().find_map(|(name, value)| {
                let ty = value.field_type();
                if existing.tags.contains(name.as_str()) || seen_tags.contains(name.as_str()) {
                    return Some(format!("`{name}` is a tag of table `{}`, not a field", table.table));
                }
                let known = existing.fields.get(name.as_str()).or_else(|| seen.get(name.as_str()));
                match known {
                    Some(k) if *k != ty => Some(format!(
                        "schema conflict in table `{}`: column `{name}` has type {k}, line has type {ty}",
                        table.table
                    )),
                    _ => None,
                }
            });
            let conflict = conflict.or_else(|| {
                row.tags.iter().find_map(|(name, _)| {
                    (existing.fields.contains_key(name.as_str())
                        || seen.contains_key(name.as_str()))
                    .then(|| format!("`{name}` is a field of table `{}`, not a tag", table.table))
                })
            });
            match conflict {
                Some(message) => rejected.push(LineError {
                    line_number: origin.line_number,
                    error_message: message,
                    original_line: cut_line(&body[origin.start..origin.end]),
                }),
                None => {
                    for (name, value) in &row.fields {
                        seen.entry(name.as_str())
                            .or_insert_with(|| value.field_type());
                    }
                    seen_tags.extend(row.tags.iter().map(|(name, _)| name.as_str()));
                    keep.push(true);
                    last_ok = Some(i);
                    continue;
                }
            }
            keep.push(false);
        }
        if keep.iter().any(|k| !k) {
            let mut flags = keep.iter();
            table.rows.retain(|_| flags.next().copied().unwrap_or(true));
        }
    }
    if rejected.is_empty() {
        return;
    }
    parsed.batch.tables.retain(|t| !t.rows.is_empty());
    // Origins no longer line up with the filtered rows; they are not needed afterwards.
    parsed.origins.clear();
    parsed.errors.extend(rejected);
    parsed.errors.sort_by_key(|e| e.line_number);
}

/// Same tag keys, and same field keys and types, in the same order.
fn same_columns(a: &Row, b: &Row) -> bool {
    a.tags.len() == b.tags.len()
        && a.fields.len() == b.fields.len()
        && a.tags.iter().zip(&b.tags).all(|(x, y)| x.0 == y.0)
        && a.fields
            .iter()
            .zip(&b.fields)
            .all(|(x, y)| x.0 == y.0 && x.1.field_type() == y.1.field_type())
}

#[cfg(test)]
mod tests {
    use super::super::{ParseOptions, parse};
    use super::*;

    #[test]
    fn conflicting_lines_are_rejected_one_by_one() {
        let body = b"cpu,host=a usage=1 1\ncpu,host=b usage=\"x\" 2\nmem free=1i 3\ncpu,host=c usage=2 4\n\
mem free=2.5 5\ncpu,usage=a f=1 6\ncpu,host=d host2=1 7\n";
        let mut parsed = parse(body, &ParseOptions::default());
        assert!(parsed.errors.is_empty());
        reject_conflicting_rows(&mut parsed, body, |t| {
            (t == "cpu").then(|| TableColumns {
                tags: ["host2".to_string()].into_iter().collect(),
                fields: [("usage".to_string(), FieldType::F64)]
                    .into_iter()
                    .collect(),
            })
        });
        let errs: Vec<(usize, &str)> = parsed
            .errors
            .iter()
            .map(|e| (e.line_number, e.error_message.as_str()))
            .collect();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert_eq!(errs[0].0, 2);
        assert!(
            errs[0]
                .1
                .contains("column `usage` has type float, line has type string"),
            "{errs:?}"
        );
        assert_eq!(
            errs[1].0, 5,
            "intra-request conflict: mem.free was integer first"
        );
        assert_eq!(errs[2].0, 6);
        assert!(errs[2].1.contains("`usage` is a field"), "{errs:?}");
        assert_eq!(errs[3].0, 7);
        assert!(errs[3].1.contains("`host2` is a tag"), "{errs:?}");
        assert_eq!(parsed.errors[0].original_line, "cpu,host=b usage=\"x\" 2");
        let kept: Vec<(String, i64)> = parsed
            .batch
            .tables
            .iter()
            .flat_map(|t| t.rows.iter().map(move |r| (t.table.clone(), r.time)))
            .collect();
        assert_eq!(
            kept,
            vec![("cpu".into(), 1), ("cpu".into(), 4), ("mem".into(), 3)]
        );
    }

    #[test]
    fn a_key_used_as_tag_and_field_in_a_new_table_rejects_only_the_later_line() {
        let body = b"n,k=a f=1 1\nn k=2 2\nn,f=b g=1 3\nn,k=c f=4 4\n";
        let mut parsed = parse(body, &ParseOptions::default());
        assert!(parsed.errors.is_empty());
        reject_conflicting_rows(&mut parsed, body, |_| None);
        let errs: Vec<(usize, &str)> = parsed
            .errors
            .iter()
            .map(|e| (e.line_number, e.error_message.as_str()))
            .collect();
        assert_eq!(
            errs,
            vec![
                (2, "`k` is a tag of table `n`, not a field"),
                (3, "`f` is a field of table `n`, not a tag"),
            ]
        );
        let kept: Vec<i64> = parsed.batch.tables[0].rows.iter().map(|r| r.time).collect();
        assert_eq!(kept, vec![1, 4]);
    }

    #[test]
    fn no_conflicts_leaves_the_batch_alone() {
        let body = b"a f=1 1\nb g=true 2\na f=2 3\n";
        let mut parsed = parse(body, &ParseOptions::default());
        reject_conflicting_rows(&mut parsed, body, |_| None);
        assert!(parsed.errors.is_empty());
        assert_eq!(parsed.batch.row_count(), 3);
        assert_eq!(
            parsed.origins[0]
                .iter()
                .map(|o| o.line_number)
                .collect::<Vec<_>>(),
            vec![1, 3]
        );
    }
}
