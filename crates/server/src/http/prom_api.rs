//! Prometheus' HTTP query API (`/api/v1/query`, `query_range`, `series`, `labels`,
//! `label/<name>/values`, `metadata`, `status/buildinfo`, `query_exemplars`): its
//! parameters (query string or form body), its JSON answers and its error format
//! (`{"status":"error","errorType":…}`). Parsing, scans ([`crate::promquery`]) and
//! evaluation ([`bulkhead_promql`]) run on the `query` runtime; the database is the
//! `db` parameter, [`DEFAULT_DB`] without one.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bulkhead_promql::{
    Data, Error, EvalParams, Fetch, LabelMatcher, Labels, Limits, MatchKind, NAME, ValueType,
};
use bulkhead_runtime::RuntimeName;
use serde_json::{Value as Json, json};

use super::ServerState;
use super::body::read_limited;
use crate::influxql::sql::url_decode;
use crate::influxql::time::parse_rfc3339;
use crate::promquery::{Reader, remote_read};

/// The database queried when a request names none.
pub(crate) const DEFAULT_DB: &str = "prom";
/// Prometheus' default query timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Prometheus' limit on points per series of a range query.
const MAX_POINTS: i64 = 11_000;
/// Bounds of the series/labels endpoints when `start`/`end` are not given (ms).
const MIN_TIME: i64 = -62_135_596_800_000;
const MAX_TIME: i64 = 253_402_300_799_000;

/// The API's routes (merged into the main router).
pub(super) fn routes() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/prom/read", post(remote_read))
        .route("/api/v1/read", post(remote_read))
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
}

/// A failure in Prometheus' error format.
#[derive(Debug)]
pub(crate) enum ApiError {
    Prom(Error),
    Internal(String),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Prom(e)
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::Prom(Error::BadData(msg.into()))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, msg) = match &self {
            ApiError::Prom(e) => (
                match e {
                    Error::BadData(_) => StatusCode::BAD_REQUEST,
                    Error::Execution(_) | Error::TooManySamples(_) => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                    Error::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
                },
                e.error_type(),
                e.to_string(),
            ),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m.clone()),
        };
        if status.is_server_error() {
            tracing::warn!(error = %msg, %status, "Prometheus API request failed");
        }
        let body = json!({"status": "error", "errorType": kind, "error": msg});
        (status, axum::Json(body)).into_response()
    }
}

fn success(data: Json) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// Form parameters from the query string and an `application/x-www-form-urlencoded` body.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Self, ApiError> {
        let mut pairs = Vec::new();
        let mut add = |text: &str| {
            for part in text.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('=').unwrap_or((part, ""));
                pairs.push((url_decode(k), url_decode(v)));
            }
        };
        if let Some(q) = uri.query() {
            add(q);
        }
        if !body.is_empty() {
            let form = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            if !form {
                return Err(bad(
                    "a POST body must be application/x-www-form-urlencoded parameters",
                ));
            }
            let text = std::str::from_utf8(body)
                .map_err(|_| bad("the request body is not valid UTF-8"))?;
            add(text);
        }
        Ok(Self(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn db(&self) -> String {
        self.get("db")
            .filter(|d| !d.is_empty())
            .unwrap_or(DEFAULT_DB)
            .to_string()
    }

    /// A time parameter (Unix seconds with a fraction, or RFC 3339) in ms.
    fn time(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                parse_time(v).ok_or_else(|| {
                    bad(format!(
                        "invalid parameter {key:?}: cannot parse {v:?} to a valid timestamp"
                    ))
                })
            })
            .transpose()
    }

    /// A duration parameter (seconds with a fraction, or `1m30s`) in ms.
    fn duration(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                parse_duration(v).ok_or_else(|| {
                    bad(format!(
                        "invalid parameter {key:?}: cannot parse {v:?} to a valid duration"
                    ))
                })
            })
            .transpose()
    }
}

/// Unix seconds (`1700000000.123`) or RFC 3339, in ms.
pub(crate) fn parse_time(v: &str) -> Option<i64> {
    if let Ok(secs) = v.parse::<f64>() {
        return secs.is_finite().then(|| (secs * 1000.0).round() as i64);
    }
    parse_rfc3339(v).map(|ns| ns.div_euclid(1_000_000))
}

/// Seconds (`15`, `0.5`) or a Prometheus duration (`1h30m`, `5m`, `100ms`), in ms.
pub(crate) fn parse_duration(v: &str) -> Option<i64> {
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).round() as i64);
    }
    let mut total: i64 = 0;
    let mut rest = v;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(ms)?)?;
    }
    Some(total)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn read_params(
    state: &ServerState,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Params, ApiError> {
    let raw = read_limited(state, headers, body, state.limits.max_body_size.as_u64())
        .await
        .map_err(|e| bad(e.to_string()))?;
    Params::parse(uri, headers, &raw)
}

/// Run `work` on the `query` runtime under `timeout`.
async fn on_query<F, T>(state: &ServerState, timeout: Duration, work: F) -> Result<T, ApiError>
where
    F: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
{
    let timed = async move {
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::Prom(Error::Timeout("query execution"))),
        }
    };
    state
        .runtimes
        .run(RuntimeName::Query, timed)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Samples one query may read: `limits.query_memory` at 16 bytes a sample.
fn max_samples(state: &ServerState) -> usize {
    (state.limits.query_memory.as_u64() / 16) as usize
}

async fn evaluate(state: Arc<ServerState>, p: Params, range: bool) -> Result<Json, ApiError> {
    let query = p
        .get("query")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| bad("invalid parameter \"query\": missing the PromQL expression"))?
        .to_string();
    let params = if range {
        let start = p
            .time("start")?
            .ok_or_else(|| bad("invalid parameter \"start\": missing"))?;
        let end = p
            .time("end")?
            .ok_or_else(|| bad("invalid parameter \"end\": missing"))?;
        let step = p
            .duration("step")?
            .ok_or_else(|| bad("invalid parameter \"step\": missing"))?;
        if end < start {
            return Err(bad(
                "invalid parameter \"end\": end timestamp must not be before start time",
            ));
        }
        if step <= 0 {
            return Err(bad(
                "invalid parameter \"step\": zero or negative query resolution step widths are \
                 not accepted. Try a positive integer",
            ));
        }
        if (end - start) / step > MAX_POINTS {
            return Err(bad(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the \
                 query resolution (?step=XX)",
            ));
        }
        EvalParams::range(start, end, step)
    } else {
        EvalParams::instant(p.time("time")?.unwrap_or_else(now_ms))
    };
    let timeout = p
        .duration("timeout")?
        .map_or(DEFAULT_TIMEOUT, |ms| Duration::from_millis(ms as u64));
    let db = p.db();
    let max = max_samples(&state);
    let queries = Arc::clone(&state.queries);
    let deadline = Instant::now() + timeout;
    on_query(&state, timeout, async move {
        let expr = bulkhead_promql::parse(&query)?;
        if range {
            let t = expr.value_type();
            if !matches!(t, ValueType::Vector | ValueType::Scalar) {
                return Err(bad(format!(
                    "invalid expression type \"{t}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        let mut reader = Reader::new(queries.as_ref(), &db, max).await?;
        let mut data = Data::new();
        for f in bulkhead_promql::fetches(&expr, &params)? {
            let series = reader.scan(&f).await?;
            data.insert(f.key.clone(), series);
        }
        let limits = Limits {
            deadline: Some(deadline),
            max_points: max,
        };
        let value = bulkhead_promql::evaluate(&expr, &params, &data, limits)?;
        Ok(bulkhead_promql::result_json(&expr, &value, &params, !range))
    })
    .await
}

async fn query(
    State(state): State<Arc<ServerState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = read_params(&state, &uri, &headers, body).await?;
    Ok(success(evaluate(state, p, false).await?))
}

async fn query_range(
    State(state): State<Arc<ServerState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = read_params(&state, &uri, &headers, body).await?;
    Ok(success(evaluate(state, p, true).await?))
}

/// The `match[]` selectors as fetches over `start`..`end` (defaults: all time).
fn match_fetches(p: &Params) -> Result<Vec<Fetch>, ApiError> {
    let min_ms = p.time("start")?.unwrap_or(MIN_TIME);
    let max_ms = p.time("end")?.unwrap_or(MAX_TIME);
    p.all("match[]")
        .into_iter()
        .map(|m| {
            Ok(Fetch {
                key: m.to_string(),
                matchers: bulkhead_promql::parse_selector(m)?,
                min_ms,
                max_ms,
            })
        })
        .collect()
}

/// The label sets of the series matching any of `fetches`.
async fn matching_series(
    state: &ServerState,
    db: String,
    fetches: Vec<Fetch>,
) -> Result<Vec<Labels>, ApiError> {
    let queries = Arc::clone(&state.queries);
    let max = max_samples(state);
    on_query(state, DEFAULT_TIMEOUT, async move {
        let mut reader = Reader::new(queries.as_ref(), &db, max).await?;
        let mut out = Vec::new();
        for f in &fetches {
            out.extend(reader.series(f).await?);
        }
        out.sort();
        out.dedup();
        Ok(out)
    })
    .await
}

async fn series(
    State(state): State<Arc<ServerState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = read_params(&state, &uri, &headers, body).await?;
    let fetches = match_fetches(&p)?;
    if fetches.is_empty() {
        return Err(bad("no match[] parameter provided"));
    }
    let series = matching_series(&state, p.db(), fetches).await?;
    Ok(success(Json::Array(
        series.iter().map(Labels::to_json).collect(),
    )))
}

async fn labels(
    State(state): State<Arc<ServerState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = read_params(&state, &uri, &headers, body).await?;
    let fetches = match_fetches(&p)?;
    let mut names: Vec<String> = if fetches.is_empty() {
        let queries = Arc::clone(&state.queries);
        let db = p.db();
        let catalog = on_query(&state, DEFAULT_TIMEOUT, async move {
            Ok(crate::promquery::catalog(queries.as_ref(), &db).await?)
        })
        .await?;
        let mut names: Vec<String> = catalog.values().flatten().cloned().collect();
        if !catalog.is_empty() {
            names.push(NAME.to_string());
        }
        names
    } else {
        matching_series(&state, p.db(), fetches)
            .await?
            .iter()
            .flat_map(|l| l.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>())
            .collect()
    };
    names.sort();
    names.dedup();
    Ok(success(json!(names)))
}

async fn label_values(
    State(state): State<Arc<ServerState>>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = read_params(&state, &uri, &headers, Body::empty()).await?;
    let valid = !name.is_empty()
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if !valid {
        return Err(bad(format!("invalid label name: {name:?}")));
    }
    let mut fetches = match_fetches(&p)?;
    let has_value = LabelMatcher::new(&name, MatchKind::NotEqual, "")?;
    if fetches.is_empty() {
        fetches.push(Fetch {
            key: name.clone(),
            matchers: vec![has_value],
            min_ms: p.time("start")?.unwrap_or(MIN_TIME),
            max_ms: p.time("end")?.unwrap_or(MAX_TIME),
        });
    } else {
        for f in &mut fetches {
            f.matchers.push(has_value.clone());
        }
    }
    let mut values: Vec<String> = matching_series(&state, p.db(), fetches)
        .await?
        .iter()
        .map(|l| l.get(&name).to_string())
        .collect();
    values.sort();
    values.dedup();
    Ok(success(json!(values)))
}

/// Remote read: a snappy protobuf `ReadRequest` in, a `ReadResponse` of samples out.
async fn remote_read(
    State(state): State<Arc<ServerState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.limits.max_body_size.as_u64();
    let raw = read_limited(&state, &headers, body, limit)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let db = Params::parse(&uri, &headers, b"")?.db();
    let queries = Arc::clone(&state.queries);
    let max = max_samples(&state);
    let bytes = on_query(&state, DEFAULT_TIMEOUT, async move {
        let request = remote_read::decode(&raw, limit)?;
        let mut reader = Reader::new(queries.as_ref(), &db, max).await?;
        Ok(remote_read::answer(&mut reader, &request).await?)
    })
    .await?;
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-protobuf"),
    );
    h.insert(
        header::CONTENT_ENCODING,
        header::HeaderValue::from_static("snappy"),
    );
    Ok(response)
}

async fn metadata() -> Response {
    success(json!({}))
}

async fn exemplars() -> Response {
    success(json!([]))
}

async fn buildinfo() -> Response {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "bulkhead",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "application": "bulkhead",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1700000000.123"), Some(1_700_000_000_123));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_time("soon"), None);
        assert_eq!(parse_duration("15"), Some(15_000));
        assert_eq!(parse_duration("0.5"), Some(500));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("100ms"), Some(100));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("m"), None);
    }

    #[test]
    fn params_from_query_string_and_form() {
        let uri: Uri = "/api/v1/series?match[]=up&match%5B%5D=foo%7Bjob%3D%22a%22%7D"
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let p = Params::parse(&uri, &headers, b"query=sum(rate(x%5B5m%5D))&db=d").unwrap();
        assert_eq!(p.all("match[]"), vec!["up", "foo{job=\"a\"}"]);
        assert_eq!(p.get("query"), Some("sum(rate(x[5m]))"));
        assert_eq!(p.db(), "d");
        let err = Params::parse(&uri, &HeaderMap::new(), b"{}").unwrap_err();
        assert!(matches!(err, ApiError::Prom(Error::BadData(_))));
    }
}
