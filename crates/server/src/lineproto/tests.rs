//! Table-driven tests of the line-protocol parser against the InfluxDB spec.

use bulkhead_engine::{FieldValue, Row, SmolStr};

use super::*;

fn opts() -> ParseOptions {
    ParseOptions {
        default_time: 42,
        ..ParseOptions::default()
    }
}

/// Parse one line that must be valid; returns (table, row).
fn ok(line: &str) -> (String, Row) {
    let parsed = parse(line.as_bytes(), &opts());
    assert!(parsed.errors.is_empty(), "{line:?}: {:?}", parsed.errors);
    assert_eq!(parsed.batch.row_count(), 1, "{line:?}");
    let t = &parsed.batch.tables[0];
    (t.table.clone(), t.rows[0].clone())
}

/// Parse one line that must be rejected; returns the reason.
fn err(line: &str) -> String {
    let parsed = parse(line.as_bytes(), &opts());
    assert_eq!(parsed.batch.row_count(), 0, "{line:?} should be rejected");
    assert_eq!(parsed.errors.len(), 1, "{line:?}");
    parsed.errors[0].error_message.clone()
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(SmolStr, SmolStr)> {
    pairs
        .iter()
        .map(|(k, v)| (SmolStr::new(k), SmolStr::new(v)))
        .collect()
}

#[test]
fn basic_lines() {
    let (t, r) = ok("cpu,host=a,region=eu usage=1.5,idle=2i 1700000000000000000");
    assert_eq!(t, "cpu");
    assert_eq!(r.tags, tags(&[("host", "a"), ("region", "eu")]));
    assert_eq!(
        r.fields,
        vec![
            (SmolStr::new("usage"), FieldValue::F64(1.5)),
            (SmolStr::new("idle"), FieldValue::I64(2))
        ]
    );
    assert_eq!(r.time, 1_700_000_000_000_000_000);

    let (t, r) = ok("cpu usage=1");
    assert_eq!(t, "cpu");
    assert!(r.tags.is_empty());
    assert_eq!(
        r.fields,
        vec![(SmolStr::new("usage"), FieldValue::F64(1.0))]
    );
    assert_eq!(r.time, 42, "no timestamp: the request's now");
}

#[test]
fn field_types() {
    let cases: &[(&str, FieldValue)] = &[
        ("1", FieldValue::F64(1.0)),
        ("-1.5", FieldValue::F64(-1.5)),
        ("1e3", FieldValue::F64(1000.0)),
        ("-2.5E-2", FieldValue::F64(-0.025)),
        (".5", FieldValue::F64(0.5)),
        ("12i", FieldValue::I64(12)),
        ("-9223372036854775808i", FieldValue::I64(i64::MIN)),
        ("18446744073709551615u", FieldValue::U64(u64::MAX)),
        ("0u", FieldValue::U64(0)),
        ("\"hello\"", FieldValue::Str("hello".into())),
        ("\"\"", FieldValue::Str(String::new())),
        (r#""say \"hi\"""#, FieldValue::Str("say \"hi\"".into())),
        (r#""back\\slash""#, FieldValue::Str("back\\slash".into())),
        (
            r#""keep \n as is""#,
            FieldValue::Str("keep \\n as is".into()),
        ),
        (r#""a,b c=d""#, FieldValue::Str("a,b c=d".into())),
        ("\"héllo ✓\"", FieldValue::Str("héllo ✓".into())),
    ];
    for (text, want) in cases {
        let (_, r) = ok(&format!("m f={text}"));
        assert_eq!(r.fields[0].1, *want, "{text}");
    }
    for t in ["t", "T", "true", "True", "TRUE"] {
        assert_eq!(
            ok(&format!("m f={t}")).1.fields[0].1,
            FieldValue::Bool(true),
            "{t}"
        );
    }
    for f in ["f", "F", "false", "False", "FALSE"] {
        assert_eq!(
            ok(&format!("m f={f}")).1.fields[0].1,
            FieldValue::Bool(false),
            "{f}"
        );
    }
}

#[test]
fn bad_field_values() {
    let cases = [
        ("m f=tRUE", "invalid value `tRUE`"),
        ("m f=yes", "invalid value `yes`"),
        ("m f=1.2.3", "invalid value `1.2.3`"),
        ("m f=1x", "invalid value `1x`"),
        ("m f=NaN", "invalid value `NaN`"),
        ("m f=inf", "invalid value `inf`"),
        ("m f=1e999", "out of range"),
        ("m f=-1u", "invalid value `-1u`"),
        ("m f=1.5i", "invalid value `1.5i`"),
        ("m f=i", "invalid value `i`"),
        ("m f=9223372036854775808i", "out of range for a signed"),
        ("m f=18446744073709551616u", "out of range for an unsigned"),
        ("m f=\"unterminated", "unterminated string"),
        ("m f=\"a\"b", "unexpected text after the string"),
        ("m f=", "field `f` has no value"),
        ("m f", "field `f` has no value"),
        ("m =1", "empty field key"),
        ("m f=1,", "empty field key"),
    ];
    for (line, want) in cases {
        let got = err(line);
        assert!(got.contains(want), "{line:?}: got {got:?}, want {want:?}");
    }
}

#[test]
fn escapes_in_names() {
    let (t, r) = ok(r"my\ meas\,ure,ta\ g\=k=v\,a\ l\=ue fi\,eld\ k\=ey=1");
    assert_eq!(t, "my meas,ure");
    assert_eq!(r.tags, tags(&[("ta g=k", "v,a l=ue")]));
    assert_eq!(r.fields[0].0, "fi,eld k=ey");
    // `=` needs no escape in a measurement; a backslash before another char stays.
    let (t, _) = ok(r"a=b\x f=1");
    assert_eq!(t, r"a=b\x");
    let (t, r) = ok(r"m\\,t=a\\b f=1");
    assert_eq!(t, r"m\");
    assert_eq!(r.tags, tags(&[("t", r"a\b")]));
    let (_, r) = ok("m,emoji=🚀 f=1");
    assert_eq!(r.tags, tags(&[("emoji", "🚀")]));
}

#[test]
fn structural_errors() {
    let cases = [
        ("cpu", "missing fields"),
        ("cpu,host=a", "missing fields"),
        ("cpu,host=a ", "missing fields"),
        (",host=a f=1", "missing measurement"),
        ("cpu,host f=1", "tag `host` has no value"),
        ("cpu,host= f=1", "tag `host` has an empty value"),
        ("cpu,=a f=1", "empty tag key"),
        ("cpu,a=1,a=2 f=1", "duplicate tag key `a`"),
        ("cpu,a=1 a=2", "`a` is used both as a tag and as a field"),
        ("cpu,time=1 f=1", "`time` is reserved"),
        ("cpu time=1", "`time` is reserved"),
        ("cpu f=1 abc", "invalid timestamp `abc`"),
        ("cpu f=1 12.5", "invalid timestamp"),
        ("cpu f=1 1 2", "unexpected text after the timestamp"),
    ];
    for (line, want) in cases {
        let got = err(line);
        assert!(got.contains(want), "{line:?}: got {got:?}, want {want:?}");
    }
}

#[test]
fn comments_blank_lines_whitespace_and_crlf() {
    let body =
        "# a comment\n\n   \ncpu f=1 1\r\n  # indented comment\n\tcpu  f=2  2  \r\ncpu f=3 3";
    let parsed = parse(body.as_bytes(), &opts());
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let rows = &parsed.batch.tables[0].rows;
    assert_eq!(
        rows.iter().map(|r| r.time).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(rows[1].fields[0].1, FieldValue::F64(2.0));
}

#[test]
fn duplicate_field_keeps_the_last_value() {
    let (_, r) = ok("m f=1,g=2,f=3");
    assert_eq!(
        r.fields,
        vec![
            (SmolStr::new("f"), FieldValue::F64(3.0)),
            (SmolStr::new("g"), FieldValue::F64(2.0))
        ]
    );
}

#[test]
fn precision_scales_timestamps_and_rejects_overflow() {
    for (p, mult) in [
        ("s", 1_000_000_000i64),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("u", 1_000),
        ("n", 1),
        ("ns", 1),
    ] {
        let o = ParseOptions {
            precision: Precision::parse(p).unwrap(),
            ..opts()
        };
        let parsed = parse(b"m f=1 1700000000", &o);
        assert_eq!(
            parsed.batch.tables[0].rows[0].time,
            1_700_000_000 * mult,
            "{p}"
        );
    }
    let o = ParseOptions {
        precision: Precision::Seconds,
        ..opts()
    };
    let parsed = parse(b"m f=1 9223372036854775807", &o);
    assert!(
        parsed.errors[0].error_message.contains("out of range"),
        "{:?}",
        parsed.errors
    );
    assert_eq!(parse(b"m f=1 -5", &opts()).batch.tables[0].rows[0].time, -5);
    let e = Precision::parse("minutes").unwrap_err();
    assert!(e.contains("unknown precision `minutes`"), "{e}");
}

#[test]
fn partial_bodies_report_each_bad_line_with_its_number() {
    let body = "cpu f=1 1\nbad line\ncpu f=2 2\n\ncpu,t=x f=\"oops 3\nmem g=1u 4\n";
    let parsed = parse(body.as_bytes(), &opts());
    assert_eq!(parsed.batch.row_count(), 3);
    assert_eq!(parsed.batch.tables.len(), 2);
    let errs: Vec<(usize, &str)> = parsed
        .errors
        .iter()
        .map(|e| (e.line_number, e.original_line.as_str()))
        .collect();
    assert_eq!(errs, vec![(2, "bad line"), (5, "cpu,t=x f=\"oops 3")]);
}

#[test]
fn quoted_strings_may_span_lines() {
    let body = "m s=\"line one\nline two\" 1\nm s=\"x\" 2\nbad\n";
    let parsed = parse(body.as_bytes(), &opts());
    let rows = &parsed.batch.tables[0].rows;
    assert_eq!(
        rows[0].fields[0].1,
        FieldValue::Str("line one\nline two".into())
    );
    assert_eq!(rows[1].time, 2);
    assert_eq!(parsed.errors.len(), 1);
    assert_eq!(
        parsed.errors[0].line_number, 4,
        "line numbers count the embedded newline"
    );
}

#[test]
fn limits_reject_only_the_offending_line() {
    let o = ParseOptions {
        max_line_length: 40,
        max_tags: 2,
        max_fields: 2,
        ..opts()
    };
    let long = format!("m f=\"{}\"", "x".repeat(200));
    let body = format!("m,a=1,b=2 f=1\nm,a=1,b=2,c=3 f=1\nm f=1,g=2,h=3\n{long}\nm f=2\n");
    let parsed = parse(body.as_bytes(), &o);
    assert_eq!(parsed.batch.row_count(), 2);
    let reasons: Vec<(usize, &str)> = parsed
        .errors
        .iter()
        .map(|e| (e.line_number, e.error_message.as_str()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert_eq!(reasons[0].0, 2);
    assert!(reasons[0].1.contains("too many tags"), "{reasons:?}");
    assert_eq!(reasons[1].0, 3);
    assert!(reasons[1].1.contains("too many fields"), "{reasons:?}");
    assert_eq!(reasons[2].0, 4);
    assert!(reasons[2].1.contains("over the limit of 40"), "{reasons:?}");
    assert_eq!(parsed.errors[2].original_line.len(), ERROR_LINE_BYTES);
}

#[test]
fn invalid_utf8_rejects_the_line() {
    let mut body = b"m,t=ok f=1 1\nm,t=".to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(b" f=1 2\nm s=\"");
    body.extend_from_slice(&[0xc3]);
    body.extend_from_slice(b"\" 3\n");
    let parsed = parse(&body, &opts());
    assert_eq!(parsed.batch.row_count(), 1);
    assert_eq!(parsed.errors.len(), 2);
    assert!(
        parsed.errors[0]
            .error_message
            .contains("invalid UTF-8 in tag value")
    );
    assert!(
        parsed.errors[1]
            .error_message
            .contains("invalid UTF-8 in string value")
    );
    assert!(parsed.errors[0].original_line.starts_with("m,t="));
}

#[test]
fn error_lines_are_cut_at_a_char_boundary() {
    let line = format!("{}é rest", "a".repeat(99));
    let cut = cut_line(line.as_bytes());
    assert_eq!(cut, "a".repeat(99));
    assert_eq!(cut_line(b"short\r"), "short");
}

#[test]
fn rows_group_by_table_in_first_seen_order() {
    let parsed = parse(b"a f=1 1\nb f=1 1\na f=2 2\n", &opts());
    let tables: Vec<(&str, usize)> = parsed
        .batch
        .tables
        .iter()
        .map(|t| (t.table.as_str(), t.rows.len()))
        .collect();
    assert_eq!(tables, vec![("a", 2), ("b", 1)]);
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A tiny deterministic fuzz: every prefix and every single-byte mutation of a line.
    let seed = b"cpu\\ x,host=a\\,b,r=eu f=\"s\\\"q\",i=-3i,u=4u,b=T 1700000000\n# c\nm f=1";
    for end in 0..=seed.len() {
        let _ = parse(&seed[..end], &opts());
    }
    for i in 0..seed.len() {
        for b in [
            b' ', b',', b'=', b'"', b'\\', b'\n', b'\r', 0xff, b'#', b'i',
        ] {
            let mut m = seed.to_vec();
            m[i] = b;
            let parsed = parse(&m, &opts());
            for e in &parsed.errors {
                assert!(e.original_line.len() <= ERROR_LINE_BYTES);
                assert!(e.line_number >= 1);
            }
        }
    }
}

/// Found by fuzzing: a rejected line whose string value spans physical lines was
/// skipped only up to its first newline, so the rest of the string was parsed as rows.
#[test]
fn a_rejected_multi_line_string_is_skipped_whole() {
    let o = ParseOptions {
        max_line_length: 60,
        ..opts()
    };
    for body in [
        // Rejected for its timestamp.
        "log msg=\"hello\ninjected,host=x f=1 1\nend\" notatime\nok f=1 2\n",
        // Rejected for its length (the physical line alone is over the limit).
        "log msg=\"a very long first physical line of the log message, over the limit\ninjected,host=x f=1 1\nend\" 1\nok f=1 2\n",
    ] {
        let parsed = parse(body.as_bytes(), &o);
        let tables: Vec<&str> = parsed
            .batch
            .tables
            .iter()
            .map(|t| t.table.as_str())
            .collect();
        assert_eq!(tables, vec!["ok"], "{body:?}: {:?}", parsed.errors);
        assert_eq!(parsed.errors.len(), 1, "{:?}", parsed.errors);
        assert_eq!(parsed.errors[0].line_number, 1);
        assert_eq!(
            parsed.origins[0][0].line_number, 4,
            "line numbers stay right"
        );
    }
    // An unterminated string does not swallow the lines after it.
    let parsed = parse(b"m s=\"oops 1\nok f=1 2\n", &o);
    assert_eq!(parsed.batch.row_count(), 1);
    assert_eq!(parsed.errors[0].line_number, 1);
}

#[test]
fn key_checks_still_run_after_a_line_of_the_same_shape() {
    // Each bad line follows a good line whose keys it repeats as far as it can, so the
    // parser's "same keys as the previous line" shortcut is exercised at every point.
    let body = "m,a=1,b=2 f=1,g=2 1\n\
                m,a=1,b=2,a=3 f=1 2\n\
                m,a=1,b=2 f=1,g=2 3\n\
                m,a=1,b=2 f=1,a=2 4\n\
                m,a=1,b=2 f=1,g=2 5\n\
                m,a=1,b=2,time=3 f=1 6\n\
                m,a=1,b=2 f=1,g=2 7\n\
                m,a=1,b=2 f=1,g=2,time=1 8\n\
                m,a=1,b=2 f=1,g=2 9\n\
                m,a=1,b=2 f=1,g=2,f=3 10\n\
                m,a=1 f=1,g=2 11\n\
                m,a=1,b=2 f=1,g=2 12\n";
    let parsed = parse(body.as_bytes(), &opts());
    let errs: Vec<(usize, &str)> = parsed
        .errors
        .iter()
        .map(|e| (e.line_number, e.error_message.as_str()))
        .collect();
    assert_eq!(
        errs,
        vec![
            (2, "duplicate tag key `a`"),
            (4, "`a` is used both as a tag and as a field"),
            (6, "`time` is reserved and cannot be a tag key"),
            (8, "`time` is reserved and cannot be a field key"),
        ]
    );
    let rows = &parsed.batch.tables[0].rows;
    assert_eq!(rows.len(), 8);
    // Line 10 repeats `f`: the last value wins; line 11 has fewer tags.
    assert_eq!(
        rows[5].fields,
        vec![
            (SmolStr::new("f"), FieldValue::F64(3.0)),
            (SmolStr::new("g"), FieldValue::F64(2.0)),
        ]
    );
    assert_eq!(rows[6].tags, tags(&[("a", "1")]));
    assert_eq!(rows[7].tags, tags(&[("a", "1"), ("b", "2")]));
}
