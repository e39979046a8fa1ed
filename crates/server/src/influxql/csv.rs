//! `Accept: application/csv`: InfluxDB 1.x's CSV results. A `name,tags,<columns>` header
//! (again when the columns change), one line per row with the series' tags as
//! `k=v,k2=v2` (empty values left out), times as integers (nanoseconds, or the `epoch`
//! unit), a blank line between statements. A failed request, and (unlike InfluxDB 1.6,
//! which drops them silently) a failed statement, write a line `error`, then the message.

use serde_json::Value;

use super::StatementResult;

/// One CSV field, quoted as Go's `encoding/csv` does.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) || s.starts_with([' ', '\t']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn line(out: &mut String, fields: &[String]) {
    let quoted: Vec<String> = fields.iter().map(|f| field(f)).collect();
    out.push_str(&quoted.join(","));
    out.push('\n');
}

/// A cell as text: floats in plain decimal (Go's `'f', -1`), null as empty.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// `k=v,k2=v2` of the non-empty tags, with `,`, `=` and spaces escaped (a series key).
fn tags(tags: Option<&Vec<(String, String)>>) -> String {
    let esc = |s: &str| {
        s.replace(',', "\\,")
            .replace('=', "\\=")
            .replace(' ', "\\ ")
    };
    let mut pairs: Vec<String> = tags
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// The CSV body of a request whose statements gave `results`.
pub(crate) fn encode(results: &[StatementResult], epoch_unit: Option<i64>) -> String {
    let mut out = String::new();
    for result in results {
        let series = match result {
            Err(message) => {
                if !out.is_empty() {
                    out.push('\n');
                }
                line(&mut out, &["error".into()]);
                line(&mut out, std::slice::from_ref(message));
                continue;
            }
            Ok(series) if series.is_empty() => continue,
            Ok(series) => series,
        };
        if !out.is_empty() {
            out.push('\n');
        }
        let mut header: Option<&[String]> = None;
        for s in series {
            if header != Some(&s.columns[..]) {
                let mut h = vec!["name".to_string(), "tags".to_string()];
                h.extend(s.columns.iter().cloned());
                line(&mut out, &h);
                header = Some(&s.columns);
            }
            let materialized = s.arrow.as_ref().map(|a| a.materialize());
            let name = s.name.clone().unwrap_or_default();
            let tags = tags(s.tags.as_ref());
            for row in materialized.as_ref().unwrap_or(&s.values) {
                let mut fields = vec![name.clone(), tags.clone()];
                for (i, v) in row.iter().enumerate() {
                    fields.push(match (i, s.time_column, v.as_i64()) {
                        (0, true, Some(ns)) => ns.div_euclid(epoch_unit.unwrap_or(1)).to_string(),
                        _ => text(v),
                    });
                }
                line(&mut out, &fields);
            }
        }
    }
    out
}

/// The CSV body of a request that failed as a whole.
pub(crate) fn error(message: &str) -> String {
    let mut out = String::new();
    line(&mut out, &["error".into()]);
    line(&mut out, &[message.to_string()]);
    out
}

#[cfg(test)]
mod tests {
    use super::super::Series;
    use super::*;

    fn series(host: &str, columns: &[&str], values: Vec<Vec<Value>>) -> Series {
        Series {
            name: Some("cpu".into()),
            tags: Some(vec![("host".into(), host.into())]),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            values,
            time_column: true,
            arrow: None,
        }
    }

    #[test]
    fn like_influxdb() {
        let a = series(
            "a",
            &["time", "v"],
            vec![vec![Value::from(1_000_000_000i64), Value::from(1.5)]],
        );
        let b = series(
            "",
            &["time", "v"],
            vec![vec![Value::from(2_000_000_000i64), Value::Null]],
        );
        let c = series(
            "a",
            &["time", "s"],
            vec![vec![Value::from(0i64), Value::from("x, \"y\"")]],
        );
        let results = vec![
            Ok(vec![a, b]),
            Ok(vec![]),
            Ok(vec![c]),
            Err("boom".to_string()),
        ];
        assert_eq!(
            encode(&results, None),
            "name,tags,time,v\ncpu,host=a,1000000000,1.5\ncpu,,2000000000,\n\n\
             name,tags,time,s\ncpu,host=a,0,\"x, \"\"y\"\"\"\n\nerror\nboom\n"
        );
        assert!(encode(&results[..1], Some(1_000_000_000)).contains("cpu,host=a,1,1.5\n"));
        assert_eq!(text(&Value::from(2.0)), "2");
        assert_eq!(text(&Value::from(1e21)), "1000000000000000000000");
        assert_eq!(
            error("found SELEC, expected SELECT"),
            "error\n\"found SELEC, expected SELECT\"\n"
        );
    }
}
