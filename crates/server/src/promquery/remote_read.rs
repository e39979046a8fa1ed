//! Prometheus remote read (`prometheus.ReadRequest` → `prometheus.ReadResponse`, snappy
//! block format, `SAMPLES` response type): each query's matchers and time range become
//! one [`Fetch`], read like a PromQL selector.

use bulkhead_promql::{Error, Fetch, LabelMatcher, MatchKind};
use prost::Message as _;

use super::Reader;
use crate::promwrite::{Label, Sample, TimeSeries};

/// `prometheus.ReadRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ReadRequest {
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// `ReadRequest.ResponseType`: 0 = SAMPLES, 1 = STREAMED_XOR_CHUNKS.
    #[prost(int32, repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// `prometheus.Query`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Query {
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<Matcher>,
}

/// `prometheus.LabelMatcher`: type 0 `=`, 1 `!=`, 2 `=~`, 3 `!~`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Matcher {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub value: String,
}

/// `prometheus.ReadResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ReadResponse {
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `prometheus.QueryResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct QueryResult {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// Decompress and decode a request body (`limit`: largest decompressed size).
pub(crate) fn decode(body: &[u8], limit: u64) -> Result<ReadRequest, Error> {
    let size = snap::raw::decompress_len(body)
        .map_err(|e| Error::BadData(format!("body is not valid snappy (block format): {e}")))?;
    if size as u64 > limit {
        return Err(Error::BadData(format!(
            "decompressed body of {size} bytes exceeds the limit of {limit} bytes"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Error::BadData(format!("body is not valid snappy (block format): {e}")))?;
    ReadRequest::decode(raw.as_slice())
        .map_err(|e| Error::BadData(format!("body is not a prometheus.ReadRequest: {e}")))
}

/// A query of the request as a fetch.
pub(crate) fn to_fetch(q: &Query) -> Result<Fetch, Error> {
    let matchers = q
        .matchers
        .iter()
        .map(|m| {
            let kind = match m.r#type {
                0 => MatchKind::Equal,
                1 => MatchKind::NotEqual,
                2 => MatchKind::Regex,
                3 => MatchKind::NotRegex,
                t => return Err(Error::BadData(format!("unknown label matcher type {t}"))),
            };
            LabelMatcher::new(&m.name, kind, &m.value)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Fetch {
        key: String::new(),
        matchers,
        min_ms: q.start_timestamp_ms,
        max_ms: q.end_timestamp_ms,
    })
}

/// Answer every query of `request`; the response body, snappy-compressed.
pub(crate) async fn answer(
    reader: &mut Reader<'_>,
    request: &ReadRequest,
) -> Result<Vec<u8>, Error> {
    let mut results = Vec::with_capacity(request.queries.len());
    for q in &request.queries {
        let fetch = to_fetch(q)?;
        let series = reader.scan(&fetch).await?;
        let timeseries = series
            .into_iter()
            .map(|s| TimeSeries {
                labels: s.labels.iter().map(|(n, v)| Label::new(n, v)).collect(),
                samples: s
                    .times
                    .iter()
                    .zip(&s.values)
                    .map(|(&timestamp, &value)| Sample { value, timestamp })
                    .collect(),
                exemplars: Vec::new(),
                histograms: Vec::new(),
            })
            .collect();
        results.push(QueryResult { timeseries });
    }
    let raw = ReadResponse { results }.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map_err(|e| Error::Execution(format!("snappy: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_decode_into_fetches() {
        let request = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: 1_000,
                end_timestamp_ms: 2_000,
                matchers: vec![
                    Matcher {
                        r#type: 0,
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Matcher {
                        r#type: 2,
                        name: "job".into(),
                        value: "a|b".into(),
                    },
                ],
            }],
            accepted_response_types: vec![0],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap();
        let decoded = decode(&body, 1 << 20).unwrap();
        assert_eq!(decoded, request);
        let f = to_fetch(&decoded.queries[0]).unwrap();
        assert_eq!(f.metric(), Some("up"));
        assert_eq!((f.min_ms, f.max_ms), (1_000, 2_000));
        assert!(f.selects(|n| if n == "job" { "b".into() } else { "up".into() }));
        assert!(!f.selects(|n| if n == "job" { "c".into() } else { "up".into() }));
        assert!(matches!(decode(b"nope", 1 << 20), Err(Error::BadData(_))));
        assert!(matches!(decode(&body, 4), Err(Error::BadData(_))));
    }
}
