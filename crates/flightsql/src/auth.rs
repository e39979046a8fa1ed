//! Authentication, as on the other listeners: with `auth.token` set, every call carries
//! it, either as `authorization: Bearer <token>` or as the password of basic auth (the
//! Flight handshake, what ADBC's `username`/`password` options do; the handshake answers
//! with the bearer header the client then sends). Without a token every client is trusted.

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Check `metadata` against `token`.
#[allow(clippy::result_large_err)]
pub(crate) fn check(token: Option<&str>, metadata: &MetadataMap) -> Result<(), Status> {
    let Some(token) = token else {
        return Ok(());
    };
    let header = metadata
        .get("authorization")
        .ok_or_else(|| {
            Status::unauthenticated(
                "authentication required: send `authorization: Bearer <auth.token>` or basic \
                 auth with the token as the password",
            )
        })?
        .to_str()
        .map_err(|_| Status::unauthenticated("the authorization header is not ASCII"))?;
    let presented = presented_token(header)?;
    if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Status::unauthenticated("invalid token"))
    }
}

/// The token in a `Bearer`, `Token` or `Basic` authorization header.
#[allow(clippy::result_large_err)]
fn presented_token(header: &str) -> Result<String, Status> {
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        return Ok(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = BASE64_STANDARD
            .decode(rest)
            .map_err(|_| Status::unauthenticated("basic auth is not valid base64"))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| Status::unauthenticated("basic auth is not valid UTF-8"))?;
        let (_user, password) = text
            .split_once(':')
            .ok_or_else(|| Status::unauthenticated("basic auth without a password"))?;
        return Ok(password.to_owned());
    }
    Err(Status::unauthenticated(format!(
        "unsupported authorization scheme `{scheme}` (use Bearer or Basic)"
    )))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(header: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", header.parse().unwrap());
        m
    }

    #[test]
    fn bearer_and_basic_tokens_are_checked() {
        let basic = format!("Basic {}", BASE64_STANDARD.encode("anyone:s3cret"));
        assert!(check(Some("s3cret"), &with("Bearer s3cret")).is_ok());
        assert!(check(Some("s3cret"), &with(&basic)).is_ok());
        assert!(check(None, &MetadataMap::new()).is_ok());
        let wrong = check(Some("s3cret"), &with("Bearer nope")).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        let missing = check(Some("s3cret"), &MetadataMap::new()).unwrap_err();
        assert!(missing.message().contains("authentication required"));
        assert!(check(Some("s3cret"), &with("Digest x")).is_err());
    }
}
