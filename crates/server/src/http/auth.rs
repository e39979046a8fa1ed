//! Token auth: `Authorization: Token|Bearer <t>`, basic auth (password = token), or the
//! InfluxDB v1 `p` query parameter (only on `/write` and `/query`, the v1 endpoints:
//! anywhere else it would end up in proxy logs). Everything but `/health`, `/ready` and
//! `/ping` requires it when set. A failed check is counted and answered only after
//! `auth.failure_delay`, so guessing costs the guesser time.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;

use super::ServerState;
use crate::error::ServerError;

#[derive(Deserialize)]
struct V1Credentials {
    p: Option<String>,
}

pub(super) async fn require_token(
    State(state): State<Arc<ServerState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = state.token.as_deref() else {
        return next.run(req).await;
    };
    if matches!(req.uri().path(), "/health" | "/ready" | "/ping") {
        return next.run(req).await;
    }
    match check(token, req.headers(), req.uri()) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            state.trips.trip(
                crate::limits::Limit::AuthFailure,
                crate::limits::Protocol::Http,
            );
            tokio::time::sleep(state.auth_failure_delay).await;
            e.into_response()
        }
    }
}

fn check(token: &str, headers: &HeaderMap, uri: &axum::http::Uri) -> Result<(), ServerError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ServerError::Unauthorized("malformed Authorization header"))?;
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let presented = match scheme.to_ascii_lowercase().as_str() {
            "token" | "bearer" => rest.trim().to_string(),
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest.trim())
                    .map_err(|_| ServerError::Unauthorized("malformed basic auth credentials"))?;
                let text = String::from_utf8(decoded)
                    .map_err(|_| ServerError::Unauthorized("malformed basic auth credentials"))?;
                text.split_once(':')
                    .map(|(_, p)| p.to_string())
                    .unwrap_or(text)
            }
            _ => {
                return Err(ServerError::Unauthorized(
                    "unsupported Authorization scheme (use Token, Bearer or Basic)",
                ));
            }
        };
        return if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err(ServerError::Unauthorized("invalid token"))
        };
    }
    let v1_endpoint = matches!(uri.path(), "/write" | "/query");
    if let Ok(Query(V1Credentials { p: Some(p) })) = Query::<V1Credentials>::try_from_uri(uri) {
        if !v1_endpoint {
            return Err(ServerError::Unauthorized(
                "the `p` query parameter is only accepted on the InfluxDB v1 endpoints \
                 /write and /query: send `Authorization: Token <token>`",
            ));
        }
        return if constant_time_eq(p.as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err(ServerError::Unauthorized("invalid token"))
        };
    }
    Err(ServerError::Unauthorized(
        "missing token: send `Authorization: Token <token>` (or Bearer, basic auth, or v1 `p=`)",
    ))
}

/// Comparison whose time does not depend on where the inputs first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn accepted_credentials() {
        let uri: axum::http::Uri = "/write?db=x".parse().unwrap();
        let basic = base64::engine::general_purpose::STANDARD.encode("user:s3cret");
        let basic_no_user = base64::engine::general_purpose::STANDARD.encode(":s3cret");
        for h in [
            "Token s3cret",
            "Bearer s3cret",
            "bearer  s3cret",
            &format!("Basic {basic}"),
            &format!("Basic {basic_no_user}"),
        ] {
            assert!(check("s3cret", &headers(h), &uri).is_ok(), "{h}");
        }
        let v1: axum::http::Uri = "/write?db=x&u=me&p=s3cret".parse().unwrap();
        assert!(check("s3cret", &HeaderMap::new(), &v1).is_ok());
        let v1_enc: axum::http::Uri = "/write?db=x&p=s%33cret".parse().unwrap();
        assert!(check("s3cret", &HeaderMap::new(), &v1_enc).is_ok());
    }

    #[test]
    fn rejected_credentials() {
        let uri: axum::http::Uri = "/write?db=x".parse().unwrap();
        for h in [
            "Token wrong",
            "Token s3cre",
            "Bearer",
            "Digest s3cret",
            "Basic !!!",
        ] {
            assert!(check("s3cret", &headers(h), &uri).is_err(), "{h}");
        }
        assert!(check("s3cret", &HeaderMap::new(), &uri).is_err());
        let v1: axum::http::Uri = "/write?db=x&p=nope".parse().unwrap();
        assert!(check("s3cret", &HeaderMap::new(), &v1).is_err());
        // The right token, but as `p=` on an endpoint that is not InfluxDB v1's.
        for path in [
            "/api/v1/sql?q=select%201&p=s3cret",
            "/api/v1/flush?p=s3cret",
        ] {
            let uri: axum::http::Uri = path.parse().unwrap();
            let err = check("s3cret", &HeaderMap::new(), &uri).unwrap_err();
            assert!(err.to_string().contains("only accepted"), "{path}: {err}");
        }
        let v1_query: axum::http::Uri = "/query?q=show%20databases&p=s3cret".parse().unwrap();
        assert!(check("s3cret", &HeaderMap::new(), &v1_query).is_ok());
        assert!(!constant_time_eq(b"abc", b"abd"));
    }
}
