//! Writing a row back as one line of line protocol, with the spec's escaping: the
//! inverse of the parser for every row it produces (used by the property test and the
//! line-protocol fuzz target to check that parse ∘ serialize is the identity).

use bulkhead_engine::{FieldValue, Row};

fn escape(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        if c == '\\' || special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// `table[,tag=value...] field=value[,...] time` (time in nanoseconds), no newline.
/// Floats use Rust's shortest round-trip form, so they parse back bit for bit.
pub(crate) fn to_line(table: &str, row: &Row) -> String {
    let mut line = String::with_capacity(64);
    escape(&mut line, table, &[',', ' ']);
    for (k, v) in &row.tags {
        line.push(',');
        escape(&mut line, k, &[',', '=', ' ']);
        line.push('=');
        escape(&mut line, v, &[',', '=', ' ']);
    }
    line.push(' ');
    for (i, (k, v)) in row.fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        escape(&mut line, k, &[',', '=', ' ']);
        line.push('=');
        match v {
            FieldValue::F64(x) => line.push_str(&format!("{x:?}")),
            FieldValue::I64(x) => line.push_str(&format!("{x}i")),
            FieldValue::U64(x) => line.push_str(&format!("{x}u")),
            FieldValue::Bool(b) => line.push_str(if *b { "true" } else { "false" }),
            FieldValue::Str(s) => {
                line.push('"');
                escape(&mut line, s, &['"']);
                line.push('"');
            }
        }
    }
    line.push(' ');
    line.push_str(&row.time.to_string());
    line
}
