//! InfluxQL on `GET|POST /query`, the InfluxDB 1.x query API (Grafana's InfluxDB data
//! source, the v1 client libraries).
//!
//! A hand-written parser ([`parser`], over [`lexer`]) turns `q` into statements. `SELECT`
//! is translated to SQL over the measurement's table and run through the server's
//! [`crate::QueryBackend`] on the `query` runtime ([`select`]); the rows are then cut
//! into InfluxDB series, gap-filled and limited per series. `SHOW ...` is answered from
//! `information_schema` and `SELECT DISTINCT` queries ([`meta`]). Results are encoded in
//! InfluxDB's JSON shape ([`response`]). `docs/influxql.md` lists what is supported.

mod ast;
mod cond;
mod csv;
mod delete;
mod distinct;
mod fields;
mod fill;
mod lexer;
mod meta;
mod parser;
mod points;
mod reduce;
mod relation;
mod response;
mod rows;
mod select;
pub(crate) mod sql;
mod subquery;
pub(crate) mod time;
mod transform;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bulkhead_runtime::RuntimeName;
use serde_json::{Value, json};

use crate::error::ServerError;
use crate::http::ServerState;
use ast::Statement;

/// A syntax error, with InfluxDB's "at line L, char C" position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParseError {
    message: String,
    line: usize,
    col: usize,
}

impl ParseError {
    pub(crate) fn at(src: &str, offset: usize, message: impl Into<String>) -> Self {
        let before = &src[..offset.min(src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self {
            message: message.into(),
            line,
            col,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, char {}",
            self.message, self.line, self.col
        )
    }
}

/// InfluxQL state kept by the server: databases made by `CREATE DATABASE` that hold no
/// data yet (the engine creates a database on its first write; until then this set
/// lists it, in memory only).
#[derive(Debug, Default)]
pub(crate) struct InfluxqlState {
    created: Mutex<BTreeSet<String>>,
}

/// One series of a statement result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) name: Option<String>,
    pub(crate) tags: Option<Vec<(String, String)>>,
    pub(crate) columns: Vec<String>,
    /// With `time_column`, column 0 holds nanoseconds (formatted per `epoch` at the end).
    pub(crate) values: Vec<Vec<Value>>,
    pub(crate) time_column: bool,
    /// Raw rows still in Arrow (then `values` is empty), encoded straight to JSON.
    pub(crate) arrow: Option<rows::ArrowRows>,
}

impl Series {
    /// Move Arrow rows into `values` (for the code that works on values).
    pub(crate) fn materialize(&mut self) {
        if let Some(rows) = self.arrow.take() {
            self.values = rows.materialize();
        }
    }
}

/// What one statement returns: series, or an error message in InfluxDB's words.
pub(crate) type StatementResult = Result<Vec<Series>, String>;

/// What a statement runs against.
pub(crate) struct Ctx {
    pub(crate) state: Arc<ServerState>,
    /// The request's `db` (may be empty).
    pub(crate) db: String,
    /// `now()`, fixed for the whole request, in nanoseconds.
    pub(crate) now: i64,
}

impl Ctx {
    /// The database a statement addresses: `ON db` / `db.rp.m`, else the request's.
    pub(crate) fn database(&self, explicit: Option<&str>) -> Result<String, String> {
        match explicit.filter(|d| !d.is_empty()) {
            Some(d) => Ok(d.to_string()),
            None if self.db.is_empty() => Err("database name required".into()),
            None => Ok(self.db.clone()),
        }
    }
}

/// Request parameters, from the query string and (POST) a form body.
#[derive(Debug, Default)]
struct Params {
    q: Option<String>,
    db: Option<String>,
    epoch: Option<String>,
    pretty: bool,
    /// `Accept: application/csv`.
    csv: bool,
}

fn params(uri: &Uri, headers: &HeaderMap, form: Option<&str>) -> Params {
    let mut p = Params {
        csv: headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/csv") || a.contains("text/csv")),
        ..Params::default()
    };
    let pairs = uri
        .query()
        .into_iter()
        .chain(form)
        .flat_map(|s| s.split('&'));
    for pair in pairs {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = sql::url_decode(v);
        match sql::url_decode(k).as_str() {
            "q" => p.q = Some(v),
            "db" => p.db = Some(v),
            "epoch" => p.epoch = Some(v).filter(|e| !e.is_empty()),
            "pretty" => p.pretty = v == "true",
            _ => {} // rp, u, p (checked by the auth layer), chunked, chunk_size
        }
    }
    p
}

pub(crate) async fn query_get(
    State(state): State<Arc<ServerState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    handle(state, params(&uri, &headers, None)).await
}

pub(crate) async fn query_post(
    State(state): State<Arc<ServerState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let raw = match crate::http::read_body(&headers, body, &state).await {
        Ok(raw) => raw,
        Err(e) => return e.into_response(),
    };
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let text = String::from_utf8_lossy(&raw);
    let mut p = params(&uri, &headers, form.then_some(&*text));
    if !form && p.q.is_none() && !text.trim().is_empty() {
        p.q = Some(text.into_owned());
    }
    handle(state, p).await
}

fn error_response(status: StatusCode, message: String, csv: bool) -> Response {
    if csv {
        let mut response = (status, csv::error(&message)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
        return response;
    }
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn handle(state: Arc<ServerState>, p: Params) -> Response {
    let Some(q) = p.q.filter(|q| !q.trim().is_empty()) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "missing required parameter \"q\"".into(),
            p.csv,
        );
    };
    let unit = match p.epoch.as_deref() {
        None => None,
        Some(e) => match time::epoch_unit(e) {
            Some(u) => Some(u),
            None => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!("invalid epoch {e:?} (expected ns, u, µ, ms, s, m or h)"),
                    p.csv,
                );
            }
        },
    };
    let statements = match parser::parse(&q) {
        Ok(s) => s,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("error parsing query: {e}"),
                p.csv,
            );
        }
    };
    let ctx = Ctx {
        state: Arc::clone(&state),
        db: p.db.unwrap_or_default(),
        now: now_nanos(),
    };
    let run = state.runtimes.run(RuntimeName::Query, async move {
        // As InfluxDB 1.x: the statements after a failed one are not executed.
        let mut results: Vec<StatementResult> = Vec::with_capacity(statements.len());
        for statement in statements {
            let failed = results.last().is_some_and(|r| r.is_err());
            results.push(if failed {
                Err("not executed".into())
            } else {
                execute(&ctx, statement).await
            });
        }
        results
    });
    let results = match run.await {
        Ok(r) => r,
        Err(e) => return ServerError::from(e).into_response(),
    };
    let (body, content_type) = if p.csv {
        (csv::encode(&results, unit).into_bytes(), "text/csv")
    } else {
        (
            response::encode(&results, unit, p.pretty),
            "application/json",
        )
    };
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(
        "X-Influxdb-Version",
        HeaderValue::from_static("1.8-bulkhead"),
    );
    response
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

async fn execute(ctx: &Ctx, statement: Statement) -> StatementResult {
    match statement {
        Statement::Select(s) => select::run(ctx, &s).await,
        Statement::CreateDatabase(name) => {
            if let Err(e) = bulkhead_engine::names::check_database(&name) {
                return Err(format!("invalid database name {name:?}: {e}"));
            }
            ctx.state
                .influxql
                .created
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name);
            Ok(Vec::new())
        }
        Statement::DropDatabase(name) => {
            ctx.state
                .influxql
                .created
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
            let sql = format!("DROP DATABASE IF EXISTS {}", sql::ident(&name));
            sql::collect(ctx, &name, &sql).await?;
            Ok(Vec::new())
        }
        Statement::DropMeasurement(name) => {
            // InfluxDB answers a measurement that does not exist with success too.
            let db = ctx.database(None)?;
            if !database_exists(ctx, &db).await? {
                return Err(format!("database not found: {db}"));
            }
            let sql = format!("DROP TABLE IF EXISTS {}", sql::table(&db, &name));
            sql::collect(ctx, &db, &sql).await?;
            Ok(Vec::new())
        }
        Statement::ShowDatabases => {
            let mut names = meta::databases(ctx).await?;
            names.extend(
                ctx.state
                    .influxql
                    .created
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned(),
            );
            names.sort();
            names.dedup();
            Ok(vec![Series {
                name: Some("databases".into()),
                tags: None,
                columns: vec!["name".into()],
                values: names.into_iter().map(|n| vec![Value::String(n)]).collect(),
                time_column: false,
                arrow: None,
            }])
        }
        Statement::Delete { from, cond } => {
            delete::run(ctx, delete::DeleteKind::Delete, &from, cond.as_ref()).await
        }
        Statement::DropSeries { from, cond } => {
            delete::run(ctx, delete::DeleteKind::DropSeries, &from, cond.as_ref()).await
        }
        Statement::Cardinality { exact, inner } => meta::cardinality(ctx, exact, *inner).await,
        Statement::Unsupported(what) => Err(format!(
            "{what} is not supported by Bulkhead yet (see docs/influxql.md)"
        )),
        other => meta::run(ctx, other).await,
    }
}

/// Whether `db` exists: written to, or created by `CREATE DATABASE`.
pub(crate) async fn database_exists(ctx: &Ctx, db: &str) -> Result<bool, String> {
    if ctx
        .state
        .influxql
        .created
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(db)
    {
        return Ok(true);
    }
    Ok(meta::databases(ctx).await?.iter().any(|d| d == db))
}
