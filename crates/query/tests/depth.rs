//! Deep and wide expressions through the whole query path on the real `query` runtime
//! (parse, depth check, planning, optimizer, physical planning, execution, pruning):
//! answered, or refused with `TooComplex`; never a stack overflow (issue 22).

mod common;

use bulkhead_query::{MAX_EXPR_DEPTH, MAX_OPERATORS, QueryError};
use common::{Db, f, row};

fn chain(op: &str, terms: usize) -> String {
    let mut sql = String::from("select 1");
    for _ in 1..terms {
        sql.push_str(op);
        sql.push('1');
    }
    sql
}

fn too_complex(r: Result<Vec<arrow::array::RecordBatch>, QueryError>) -> String {
    match r {
        Err(QueryError::TooComplex(m)) => m,
        Err(other) => panic!("expected TooComplex, got {other:?}"),
        Ok(_) => panic!("expected TooComplex, got an answer"),
    }
}

#[test]
fn an_addition_chain_up_to_the_limit_is_answered_and_past_it_refused() {
    let db = Db::open();
    // The chain sits under the projection; a margin for the levels above it.
    let terms = MAX_EXPR_DEPTH - 5;
    let out = db.table("d", &format!("{} as n", chain("+", terms)));
    assert!(out.contains(&format!("| {terms} ")), "{out}");
    // Every other operator counts too, not only `+`.
    let concat = chain("||", MAX_EXPR_DEPTH - 5).replace('1', "'1'");
    let out = db.table("d", &format!("{concat} as s"));
    assert!(
        out.contains(&"1".repeat(MAX_EXPR_DEPTH - 5)),
        "the concatenation"
    );
    for terms in [MAX_EXPR_DEPTH + 1, 2_000, 100_000] {
        let m = too_complex(db.sql("d", &chain("+", terms)));
        assert!(m.contains("expression too deep"), "{terms}: {m}");
    }
    let m = too_complex(db.sql("d", &chain("+", MAX_OPERATORS + 1)));
    assert!(m.contains("over the limit of 200000"), "{m}");
    // The server side is intact: the next query works.
    assert!(db.table("d", "select 1 as one").contains("| 1   |"));
}

#[test]
fn a_long_or_of_tag_values_is_answered_correctly() {
    let db = Db::open();
    let hosts: Vec<String> = (0..3_000).map(|i| format!("host-{i:04}")).collect();
    db.write(
        "grafana",
        hosts
            .iter()
            .enumerate()
            .map(|(i, h)| ("cpu", row(&[("host", h)], &[("usage", f(i as f64))], 1)))
            .collect(),
    );
    // What Grafana sends for "All": every host but the first 500, ORed.
    let wanted = &hosts[500..];
    let or = wanted
        .iter()
        .map(|h| format!("host = '{h}'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let out = db.table(
        "grafana",
        &format!("select count(*) as n, sum(usage) as s from cpu where {or}"),
    );
    let sum: usize = (500..3_000).sum();
    assert!(out.contains(&format!("| 2500 | {sum}.0 |")), "{out}");
    // AND chains are not regrouped (DataFusion joins conjunctions into a chain again):
    // up to the limit they are answered, past it refused.
    let and = |hosts: &[String]| {
        hosts
            .iter()
            .map(|h| format!("host <> '{h}'"))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let out = db.table(
        "grafana",
        &format!(
            "select count(*) as n from cpu where ({}) and time >= '1970-01-01T00:00:00Z'",
            and(&hosts[..900])
        ),
    );
    assert!(out.contains("| 2100 |"), "{out}");
    let m = too_complex(db.sql(
        "grafana",
        &format!("select count(*) from cpu where {}", and(wanted)),
    ));
    assert!(m.contains("expression too deep"), "{m}");
}

#[test]
fn deep_statements_are_refused_wherever_the_expression_is() {
    let db = Db::open();
    let deep = chain("+", 5_000)["select ".len()..].to_string();
    for sql in [
        format!("select * from (select {deep} as x) t"),
        format!("select 1 where 1 < {deep}"),
        format!("explain select {deep}"),
        format!("select abs({deep})"),
        format!("select case when true then {deep} end"),
    ] {
        let m = too_complex(db.sql("d", &sql));
        assert!(m.contains("expression too deep"), "{m}");
    }
}
