//! Parser unit tests.

use super::*;

fn one(q: &str) -> Statement {
    let mut s = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    assert_eq!(s.len(), 1, "{q}");
    s.remove(0)
}

fn select(q: &str) -> Select {
    match one(q) {
        Statement::Select(s) => *s,
        other => panic!("{q}: {other:?}"),
    }
}

fn err(q: &str) -> String {
    parse(q).expect_err(q).to_string()
}

#[test]
fn select_clauses() {
    let s = select(
        "SELECT mean(\"usage\") AS m, max(v) FROM \"db\".\"autogen\".cpu WHERE host = 'a' \
         AND time > now() - 1h GROUP BY time(10m, 5m), host fill(previous) ORDER BY time DESC \
         LIMIT 10 OFFSET 2 SLIMIT 3 SOFFSET 1 tz('UTC')",
    );
    assert_eq!(s.fields.len(), 2);
    assert_eq!(s.fields[0].alias.as_deref(), Some("m"));
    assert_eq!(
        s.fields[1].expr,
        Expr::Call {
            name: "max".into(),
            args: vec![Expr::var("v")]
        }
    );
    assert_eq!(
        s.from,
        vec![Source::Measurement {
            db: Some("db".into()),
            name: "cpu".into()
        }]
    );
    assert_eq!(
        s.group_by,
        vec![
            Dimension::Time {
                interval: 600_000_000_000,
                offset: 300_000_000_000
            },
            Dimension::Tag("host".into())
        ]
    );
    assert_eq!(s.fill, Fill::Previous);
    assert!(s.order_desc);
    assert_eq!(
        (s.limit, s.offset, s.slimit, s.soffset),
        (Some(10), Some(2), Some(3), Some(1))
    );
    assert_eq!(s.tz.as_deref(), Some("UTC"));
}

#[test]
fn sources_and_dimensions() {
    let s = select("select * from /^c/, db..m, (select v from x) group by *, /re/ fill(-1.5)");
    assert_eq!(
        s.from[0],
        Source::Regex {
            db: None,
            regex: "^c".into()
        }
    );
    assert_eq!(
        s.from[1],
        Source::Measurement {
            db: Some("db".into()),
            name: "m".into()
        }
    );
    assert!(matches!(s.from[2], Source::Subquery(_)));
    assert_eq!(s.fields[0].expr, Expr::Wildcard);
    assert_eq!(
        s.group_by,
        vec![Dimension::Wildcard, Dimension::Regex("re".into())]
    );
    assert_eq!(s.fill, Fill::Value(-1.5));
    assert_eq!(select("select v from m fill(none)").fill, Fill::None);
    assert_eq!(select("select v from m fill(0)").fill, Fill::Value(0.0));
}

#[test]
fn expressions_and_precedence() {
    let s = select(
        "SELECT a + b * 2, (a + b) * 2, -v, v::float FROM m WHERE a = 1 OR b = 2 AND c =~ /x\\/y/",
    );
    let e = &s.fields[0].expr;
    assert!(matches!(e, Expr::Binary { op: BinOp::Add, .. }), "{e:?}");
    let e = &s.fields[1].expr;
    assert!(matches!(e, Expr::Binary { op: BinOp::Mul, .. }), "{e:?}");
    assert_eq!(
        s.fields[3].expr,
        Expr::Var {
            name: "v".into(),
            cast: Some("float".into())
        }
    );
    let Some(Expr::Binary { op, rhs, .. }) = &s.cond else {
        panic!()
    };
    assert_eq!(*op, BinOp::Or);
    let Expr::Binary {
        op: and, rhs: re, ..
    } = rhs.as_ref()
    else {
        panic!()
    };
    assert_eq!(*and, BinOp::And);
    assert!(
        matches!(re.as_ref(), Expr::Binary { op: BinOp::EqRegex, rhs, .. } if **rhs == Expr::Regex("x/y".into()))
    );
    // A division is not a regex.
    let s = select("SELECT a / b / 2 FROM m");
    assert!(matches!(
        s.fields[0].expr,
        Expr::Binary { op: BinOp::Div, .. }
    ));
}

#[test]
fn show_statements() {
    assert_eq!(one("SHOW DATABASES"), Statement::ShowDatabases);
    assert_eq!(
        one("show retention policies on \"db\""),
        Statement::ShowRetentionPolicies(Some("db".into()))
    );
    assert!(matches!(
        one("SHOW MEASUREMENTS WITH MEASUREMENT =~ /cpu.*/ LIMIT 5"),
        Statement::ShowMeasurements {
            with: Some(NameMatch::Regex(_)),
            limit: Some(5),
            ..
        }
    ));
    assert!(matches!(
        one("SHOW TAG VALUES FROM cpu WITH KEY IN (\"host\", region) WHERE a = 'b'"),
        Statement::ShowTagValues { key: NameMatch::In(ref k), cond: Some(_), .. } if k.len() == 2
    ));
    assert!(matches!(
        one("SHOW TAG VALUES WITH KEY = host"),
        Statement::ShowTagValues {
            key: NameMatch::Eq(_),
            ..
        }
    ));
    assert!(matches!(
        one("SHOW TAG KEYS FROM cpu"),
        Statement::ShowTagKeys { .. }
    ));
    assert!(matches!(
        one("SHOW FIELD KEYS"),
        Statement::ShowFieldKeys { .. }
    ));
    assert!(matches!(
        one("SHOW SERIES FROM cpu WHERE host = 'a'"),
        Statement::ShowSeries { .. }
    ));
    assert_eq!(
        one("CREATE DATABASE \"my db\""),
        Statement::CreateDatabase("my db".into())
    );
    assert_eq!(
        one("DROP DATABASE \"my db\""),
        Statement::DropDatabase("my db".into())
    );
    assert_eq!(
        one("drop measurement cpu"),
        Statement::DropMeasurement("cpu".into())
    );
    assert!(err("DROP MEASUREMENT").contains("expected identifier"));
}

#[test]
fn distinct_without_parentheses() {
    let s = select("SELECT DISTINCT v FROM m");
    assert_eq!(
        s.fields[0].expr,
        Expr::Call {
            name: "distinct".into(),
            args: vec![Expr::var("v")]
        }
    );
}

#[test]
fn unsupported_statements_are_named() {
    for (q, name) in [
        ("SHOW SHARDS", "SHOW SHARDS"),
        ("SHOW USERS", "SHOW USERS"),
        ("CREATE USER a WITH PASSWORD 'x'", "CREATE USER"),
    ] {
        assert_eq!(one(q), Statement::Unsupported(name.into()), "{q}");
    }
}

#[test]
fn several_statements() {
    let s = parse("SHOW DATABASES; SELECT v FROM m;;").unwrap();
    assert_eq!(s.len(), 2);
}

#[test]
fn errors_name_the_position() {
    assert_eq!(
        err("SELECT FROM m"),
        "found FROM, expected identifier, string, number, bool at line 1, char 8"
    );
    assert!(err("SELECT v FROM").contains("found EOF, expected identifier"));
    assert!(err("SELECT v FROM m\nWHERE").contains("at line 2, char 6"));
    assert!(err("SELEC v").contains("expected SELECT"));
    assert!(err("SELECT v FROM m GROUP BY time(0s)").contains("positive duration"));
    assert!(err("SELECT v FROM m fill(maybe)").contains("fill() must be"));
    assert!(err("SELECT v FROM m ORDER BY v").contains("ORDER BY time"));
    assert!(err("").contains("found EOF"));
}

#[test]
fn nesting_is_bounded() {
    let deep = format!(
        "SELECT {}v{} FROM m",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert!(err(&deep).contains("nested more than"));
    let ok = format!("SELECT {}v{} FROM m", "(".repeat(20), ")".repeat(20));
    assert!(parse(&ok).is_ok());
}

#[test]
fn delete_and_drop_series_take_from_and_where() {
    let Statement::Delete { from, cond } = one("DELETE FROM cpu WHERE time < now()") else {
        panic!("not a DELETE");
    };
    assert_eq!(
        from,
        vec![Source::Measurement {
            db: None,
            name: "cpu".into()
        }]
    );
    assert!(cond.is_some());
    let Statement::Delete { from, cond } = one("DELETE WHERE host = 'a'") else {
        panic!("not a DELETE");
    };
    assert!(from.is_empty() && cond.is_some());
    let Statement::DropSeries { from, cond } = one("DROP SERIES FROM /c/ WHERE a = 'b'") else {
        panic!("not a DROP SERIES");
    };
    assert_eq!(
        from,
        vec![Source::Regex {
            db: None,
            regex: "c".into()
        }]
    );
    assert!(cond.is_some());
    assert!(err("DELETE").contains("expected FROM or WHERE after DELETE"));
    assert!(err("DROP SERIES").contains("expected FROM or WHERE after DROP SERIES"));
}

#[test]
fn cardinality_statements() {
    for (q, exact) in [
        ("SHOW MEASUREMENT CARDINALITY", false),
        (
            "SHOW MEASUREMENT EXACT CARDINALITY ON d WHERE host = 'a'",
            true,
        ),
        ("SHOW SERIES CARDINALITY", false),
        (
            "SHOW SERIES EXACT CARDINALITY FROM cpu WHERE host = 'a'",
            true,
        ),
        ("SHOW TAG KEY CARDINALITY", false),
        ("SHOW TAG KEY EXACT CARDINALITY FROM cpu", true),
        ("SHOW TAG VALUES CARDINALITY WITH KEY = host", false),
        (
            "SHOW TAG VALUES EXACT CARDINALITY FROM cpu WITH KEY IN (a, b)",
            true,
        ),
        ("SHOW FIELD KEY CARDINALITY", false),
        ("SHOW FIELD KEY EXACT CARDINALITY ON d FROM cpu", true),
    ] {
        let Statement::Cardinality { exact: got, inner } = one(q) else {
            panic!("{q}: not a cardinality statement");
        };
        assert_eq!(got, exact, "{q}");
        assert!(!matches!(*inner, Statement::Cardinality { .. }), "{q}");
    }
    assert!(parse("SHOW MEASUREMENT EXACT").is_err());
    assert!(parse("SHOW TAG KEY EXACT LIMIT 1").is_err());
}

#[test]
fn subqueries() {
    // Grafana's shape: the outer WHERE and GROUP BY after the parenthesised subquery.
    let s = select(
        "SELECT max(\"mean\") FROM (SELECT mean(usage) FROM cpu WHERE host =~ /a/ \
         GROUP BY time(1m), host fill(none)) WHERE time > now() - 1h AND mean > 2 \
         GROUP BY time(5m) fill(0) LIMIT 3",
    );
    let Source::Subquery(inner) = &s.from[0] else {
        panic!("{:?}", s.from);
    };
    assert_eq!(inner.fill, Fill::None);
    assert_eq!(inner.group_by.len(), 2);
    assert!(inner.cond.is_some());
    assert_eq!(inner.limit, None);
    assert_eq!(s.fill, Fill::Value(0.0));
    assert_eq!(s.limit, Some(3));
    assert_eq!(
        s.group_by,
        vec![Dimension::Time {
            interval: 300_000_000_000,
            offset: 0
        }]
    );
    // Nested, with the inner LIMIT and ORDER BY inside the parentheses.
    let s = select(
        "SELECT sum(m) FROM (SELECT max(v) AS m FROM (SELECT v FROM x ORDER BY time DESC \
         LIMIT 5) GROUP BY host)",
    );
    let Source::Subquery(mid) = &s.from[0] else {
        panic!("{:?}", s.from);
    };
    assert_eq!(mid.fields[0].alias.as_deref(), Some("m"));
    let Source::Subquery(deepest) = &mid.from[0] else {
        panic!("{:?}", mid.from);
    };
    assert!(deepest.order_desc);
    assert_eq!(deepest.limit, Some(5));
    assert!(err("SELECT v FROM (SELECT v FROM m").contains("expected )"));
    assert!(err("SELECT v FROM (SHOW DATABASES)").contains("expected SELECT"));
    assert!(err("SELECT v FROM ()").contains("expected SELECT"));
}
