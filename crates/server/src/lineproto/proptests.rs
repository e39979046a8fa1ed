//! Property test: any row, written as line protocol with the spec's escaping, parses
//! back to itself (names with commas, spaces, equals signs, quotes and backslashes,
//! strings with newlines, extreme numbers).

use bulkhead_engine::{FieldValue, Row};
use proptest::prelude::*;

use super::serialize::to_line;
use super::{ParseOptions, parse};

fn name() -> impl Strategy<Value = String> {
    // Printable ASCII plus a few multi-byte characters; no tabs or line breaks, which
    // line protocol cannot carry in names; not blank (the name rules refuse that).
    proptest::string::string_regex("[a-zA-Z0-9 ,=\"\\\\_.#é✓-]{1,12}")
        .expect("valid regex")
        .prop_filter("not blank", |n| !n.trim().is_empty())
}

fn value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(FieldValue::F64),
        any::<i64>().prop_map(FieldValue::I64),
        any::<u64>().prop_map(FieldValue::U64),
        any::<bool>().prop_map(FieldValue::Bool),
        proptest::string::string_regex("[a-z \"\\\\,=\n\r✓]{0,16}")
            .expect("valid regex")
            .prop_map(FieldValue::Str),
    ]
}

fn row() -> impl Strategy<Value = (String, Row)> {
    (
        name().prop_filter("not a comment", |m| !m.starts_with('#')),
        proptest::collection::btree_map(name(), name(), 0..4),
        proptest::collection::btree_map(name(), value(), 1..4),
        any::<i64>(),
    )
        .prop_filter("keys", |(_, tags, fields, _)| {
            !tags.contains_key("time")
                && !fields.contains_key("time")
                && fields.keys().all(|k| !tags.contains_key(k))
        })
        .prop_map(|(m, tags, fields, time)| {
            (
                m,
                Row {
                    tags: tags
                        .into_iter()
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect(),
                    fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
                    time,
                },
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rows_round_trip_through_line_protocol(rows in proptest::collection::vec(row(), 1..6)) {
        let body: String = rows.iter().map(|(t, r)| to_line(t, r) + "\n").collect();
        let parsed = parse(body.as_bytes(), &ParseOptions::default());
        prop_assert!(parsed.errors.is_empty(), "{:?}\n{body}", parsed.errors);
        let mut got: Vec<(String, Row)> = Vec::new();
        for t in &parsed.batch.tables {
            for r in &t.rows {
                got.push((t.table.clone(), r.clone()));
            }
        }
        let mut want = rows.clone();
        // The batch groups rows by table in first-seen order; compare as multisets.
        let key = |(t, r): &(String, Row)| format!("{t}\u{0}{r:?}");
        got.sort_by_key(key);
        want.sort_by_key(key);
        prop_assert_eq!(got, want, "{}", body);
    }
}
