//! Reading request bodies under the size limit, and gzip decompression (on `write`).

use std::io::Read;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::ServerState;
use crate::error::ServerError;
use crate::limits::{Limit, Protocol};

/// The body size the client declared (`Content-Length`), if any.
pub(super) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Read `body` (on `io`; this is network IO), failing with 413 past `limit` bytes and
/// with 408 when no bytes arrive for `limits.body_read_timeout`.
pub(super) async fn read_limited(
    state: &ServerState,
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<Bytes, ServerError> {
    read_charged(state, headers, body, limit, |_| Ok(())).await
}

/// [`read_limited`], calling `charge` with the bytes received so far after every chunk
/// (write admission grows its permit there, or refuses the request).
pub(super) async fn read_charged(
    state: &ServerState,
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    mut charge: impl FnMut(u64) -> Result<(), ServerError>,
) -> Result<Bytes, ServerError> {
    let too_large = || ServerError::PayloadTooLarge { limit };
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // Reserve what was declared only up to what has arrived so far: a client that
    // declares 64 MiB and stalls does not hold 64 MiB.
    let capacity = usize::try_from(declared.unwrap_or(0).min(limit).min(1 << 20)).unwrap_or(0);
    let mut buf = BytesMut::with_capacity(capacity);
    let mut stream = body.into_data_stream();
    let idle = state.limits.body_read_timeout;
    loop {
        let next = match tokio::time::timeout(idle.get(), stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                state.trips.trip(Limit::BodyReadTimeout, Protocol::Http);
                return Err(ServerError::BodyTimeout { timeout: idle });
            }
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| {
            ServerError::BadRequest(format!("reading the request body failed: {e}"))
        })?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
        if let Err(refused) = charge(buf.len() as u64) {
            // Refused mid-body (the write budget ran out as bytes arrived): read and
            // drop the rest first, so the client gets the 503 on a connection it can
            // keep using instead of a broken pipe while it still sends.
            // At most `limit` bytes in all, each chunk dropped as it arrives.
            let mut read = buf.len() as u64;
            drop(buf);
            while read <= limit
                && let Ok(Some(Ok(chunk))) = tokio::time::timeout(idle.get(), stream.next()).await
            {
                read += chunk.len() as u64;
            }
            return Err(refused);
        }
    }
    Ok(buf.freeze())
}

/// How the body is encoded, from `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    pub(super) fn from_headers(headers: &HeaderMap) -> Result<Self, ServerError> {
        match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str()) {
            None => Ok(Encoding::Identity),
            Some(Ok(v))
                if v.trim().eq_ignore_ascii_case("gzip")
                    || v.trim().eq_ignore_ascii_case("x-gzip") =>
            {
                Ok(Encoding::Gzip)
            }
            Some(Ok(v)) if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("identity") => {
                Ok(Encoding::Identity)
            }
            Some(Ok(v)) => Err(ServerError::BadRequest(format!(
                "unsupported Content-Encoding `{v}` (expected gzip or identity)"
            ))),
            Some(Err(_)) => Err(ServerError::BadRequest(
                "invalid Content-Encoding header".into(),
            )),
        }
    }
}

/// Decompress `body` if needed. CPU work: call it on the `write` runtime. The
/// decompressed size is limited too, so a small gzip bomb gets 413, not an OOM.
pub(super) fn decode(body: Bytes, encoding: Encoding, limit: u64) -> Result<Bytes, ServerError> {
    match encoding {
        Encoding::Identity => Ok(body),
        Encoding::Gzip => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit as usize));
            let decoder = flate2::read::MultiGzDecoder::new(&body[..]);
            decoder.take(limit + 1).read_to_end(&mut out).map_err(|e| {
                ServerError::BadRequest(format!("gzip body does not decompress: {e}"))
            })?;
            if out.len() as u64 > limit {
                return Err(ServerError::PayloadTooLarge { limit });
            }
            Ok(Bytes::from(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        Bytes::from(enc.finish().unwrap())
    }

    #[test]
    fn gzip_round_trip_and_limits() {
        let data = b"cpu f=1 1\n".repeat(100);
        assert_eq!(
            decode(gzip(&data), Encoding::Gzip, 10_000).unwrap(),
            Bytes::from(data.clone())
        );
        let err = decode(gzip(&data), Encoding::Gzip, 500).unwrap_err();
        assert!(
            matches!(err, ServerError::PayloadTooLarge { limit: 500 }),
            "{err}"
        );
        let err = decode(Bytes::from_static(b"not gzip at all"), Encoding::Gzip, 500).unwrap_err();
        assert!(
            err.to_string().contains("gzip body does not decompress"),
            "{err}"
        );
    }

    #[test]
    fn content_encoding_header() {
        let mut h = HeaderMap::new();
        assert_eq!(Encoding::from_headers(&h).unwrap(), Encoding::Identity);
        h.insert(header::CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert_eq!(Encoding::from_headers(&h).unwrap(), Encoding::Gzip);
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(
            Encoding::from_headers(&h)
                .unwrap_err()
                .to_string()
                .contains("`br`")
        );
    }
}
