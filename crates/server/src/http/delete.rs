//! `POST /api/v2/delete?bucket=db`: InfluxDB 2's delete API. The JSON body names an
//! inclusive time range and a predicate: `{"start": "...", "stop": "...",
//! "predicate": "_measurement=\"cpu\" AND host=\"a\""}` (RFC 3339 times; the predicate
//! is optional, and is InfluxDB's: `key="value"` or `key!="value"` terms joined by
//! `AND`; `_measurement` picks the table, without it every table of the bucket).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use bulkhead_engine::{DeletePredicate, DeleteRequest};
use serde::Deserialize;

use super::ServerState;
use crate::error::ServerError;

#[derive(Debug, Deserialize)]
pub(super) struct DeleteParams {
    bucket: Option<String>,
    db: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    start: String,
    stop: String,
    #[serde(default)]
    predicate: Option<String>,
}

pub(super) async fn delete_v2(
    State(state): State<Arc<ServerState>>,
    params: Result<Query<DeleteParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ServerError> {
    let Query(p) = params.map_err(|e| ServerError::BadRequest(e.body_text()))?;
    let db = p.bucket.or(p.db).filter(|d| !d.is_empty()).ok_or_else(|| {
        ServerError::BadRequest("missing query parameter `bucket` (the database)".into())
    })?;
    let bytes = super::read_body(&headers, body, &state).await?;
    let body: DeleteBody = serde_json::from_slice(&bytes)
        .map_err(|e| ServerError::BadRequest(format!("invalid delete body: {e}")))?;
    let req = request(&body)?;
    state.writes.delete(&db, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn time(name: &str, s: &str) -> Result<i64, ServerError> {
    arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s)
        .map_err(|e| ServerError::BadRequest(format!("invalid `{name}` time `{s}`: {e}")))
}

fn request(body: &DeleteBody) -> Result<DeleteRequest, ServerError> {
    let min_time = time("start", &body.start)?;
    let max_time = time("stop", &body.stop)?;
    if min_time > max_time {
        return Err(ServerError::BadRequest(format!(
            "`start` ({}) is after `stop` ({})",
            body.start, body.stop
        )));
    }
    let (table, predicate) = parse_predicate(body.predicate.as_deref().unwrap_or(""))
        .map_err(|e| ServerError::BadRequest(format!("invalid predicate: {e}")))?;
    Ok(DeleteRequest {
        table,
        min_time,
        max_time,
        predicate,
    })
}

/// InfluxDB 2's delete predicate: `key="value"` / `key!="value"` terms joined by `AND`
/// (keys bare or double-quoted, values double-quoted; `\"` escapes a quote). Returns
/// the `_measurement` (if given) and the predicate on tags.
pub(crate) fn parse_predicate(s: &str) -> Result<(Option<String>, DeletePredicate), String> {
    let tokens = tokenize(s)?;
    let mut table = None;
    let mut terms = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !terms.is_empty() || table.is_some() {
            match &tokens[i] {
                Token::Word(w) if w.eq_ignore_ascii_case("and") => i += 1,
                Token::Word(w) if w.eq_ignore_ascii_case("or") => {
                    return Err("OR is not supported (InfluxDB's delete predicates use AND)".into());
                }
                t => return Err(format!("expected AND, found {t}")),
            }
        }
        let key = match tokens.get(i) {
            Some(Token::Word(w)) | Some(Token::Quoted(w)) => w.clone(),
            Some(t) => return Err(format!("expected a tag key, found {t}")),
            None => return Err("expected a term after AND".into()),
        };
        let negated = match tokens.get(i + 1) {
            Some(Token::Eq) => false,
            Some(Token::NotEq) => true,
            Some(t) => return Err(format!("expected = or != after `{key}`, found {t}")),
            None => return Err(format!("expected = or != after `{key}`")),
        };
        let value = match tokens.get(i + 2) {
            Some(Token::Quoted(v)) => v.clone(),
            Some(t) => {
                return Err(format!(
                    "expected a double-quoted value after `{key}`, found {t}"
                ));
            }
            None => return Err(format!("expected a value after `{key}`")),
        };
        i += 3;
        if key == "_measurement" && !negated {
            if table.replace(value).is_some() {
                return Err("_measurement is given twice".into());
            }
            continue;
        }
        if key.starts_with('_') {
            return Err(format!("`{key}` cannot be used in a delete predicate"));
        }
        let eq = DeletePredicate::Eq(key, value);
        terms.push(if negated {
            DeletePredicate::Not(Box::new(eq))
        } else {
            eq
        });
    }
    let predicate = match terms.len() {
        0 => DeletePredicate::All,
        1 => terms.remove(0),
        _ => DeletePredicate::And(terms),
    };
    Ok((table, predicate))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Eq,
    NotEq,
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Word(w) => write!(f, "`{w}`"),
            Token::Quoted(w) => write!(f, "\"{w}\""),
            Token::Eq => write!(f, "`=`"),
            Token::NotEq => write!(f, "`!=`"),
        }
    }
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                out.push(Token::Eq);
            }
            '!' => {
                chars.next();
                if chars.next() != Some('=') {
                    return Err("`!` must be followed by `=`".into());
                }
                out.push(Token::NotEq);
            }
            '"' | '\'' => {
                let quote = c;
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some(e) => v.push(e),
                            None => return Err("unterminated string".into()),
                        },
                        Some(c) if c == quote => break,
                        Some(c) => v.push(c),
                        None => return Err("unterminated string".into()),
                    }
                }
                out.push(Token::Quoted(v));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '=' | '!' | '"' | '\'') {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                out.push(Token::Word(w));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(k: &str, v: &str) -> DeletePredicate {
        DeletePredicate::Eq(k.into(), v.into())
    }

    #[test]
    fn influxdb_predicates_parse() {
        assert_eq!(parse_predicate(""), Ok((None, DeletePredicate::All)));
        assert_eq!(
            parse_predicate(r#"_measurement="cpu""#),
            Ok((Some("cpu".into()), DeletePredicate::All))
        );
        assert_eq!(
            parse_predicate(r#"_measurement="cpu" AND host="a b" and "dc"!="x\"y""#),
            Ok((
                Some("cpu".into()),
                DeletePredicate::And(vec![
                    eq("host", "a b"),
                    DeletePredicate::Not(Box::new(eq("dc", "x\"y")))
                ])
            ))
        );
        assert_eq!(parse_predicate(r#"host="a""#), Ok((None, eq("host", "a"))));
        for bad in [
            r#"host="a" OR host="b""#,
            r#"host=a"#,
            r#"host"#,
            r#"host="a" AND"#,
            r#"host="a" host="b""#,
            r#"_field="usage""#,
            r#"host="a"#,
            r#"_measurement="a" AND _measurement="b""#,
        ] {
            assert!(parse_predicate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_give_inclusive_ranges() {
        let body = DeleteBody {
            start: "1970-01-01T00:00:00Z".into(),
            stop: "1970-01-01T00:00:01Z".into(),
            predicate: None,
        };
        let r = request(&body).expect("request");
        assert_eq!((r.min_time, r.max_time), (0, 1_000_000_000));
        let backwards = DeleteBody {
            start: body.stop.clone(),
            stop: body.start.clone(),
            predicate: None,
        };
        assert!(request(&backwards).is_err());
        let bad = DeleteBody {
            start: "yesterday".into(),
            ..backwards
        };
        let err = request(&bad).expect_err("bad time").to_string();
        assert!(err.contains("`start`"), "{err}");
    }
}
