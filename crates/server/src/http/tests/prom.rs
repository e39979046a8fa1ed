//! `POST /api/v1/prom/write`: mapping, all-or-nothing rejection, statuses, limits, auth.

use crate::promwrite::{STALE_NAN_BITS, TimeSeries, WriteRequest, encode};

use super::*;

const URI: &str = "/api/v1/prom/write?db=prom";

fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries::new(labels, samples)
}

fn body(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    encode(&WriteRequest { timeseries })
}

/// A request as Prometheus sends it.
fn prom_request(uri: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_ENCODING, "snappy")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(Body::from(body))
        .unwrap()
}

fn good() -> Vec<u8> {
    body(vec![
        series(
            &[
                ("__name__", "up"),
                ("job", "prometheus"),
                ("instance", "localhost:9090"),
            ],
            &[(1.0, 1_700_000_000_123)],
        ),
        series(
            &[("__name__", "http_requests_total"), ("code", "200")],
            &[
                (5.0, 1_700_000_000_000),
                (f64::from_bits(STALE_NAN_BITS), 1_700_000_015_000),
            ],
        ),
    ])
}

#[tokio::test]
async fn samples_become_rows_decoded_on_the_write_runtime() {
    let h = harness();
    let polls_before = super::write::write_polls(&h.runtimes);
    let r = h.send(prom_request(URI, good())).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(r.body.is_empty());
    let rows = h.backend.rows("prom");
    assert_eq!(
        rows.len(),
        2,
        "the staleness marker is not stored: {rows:?}"
    );
    assert_eq!(rows[0].0, "up");
    assert_eq!(
        rows[0].1.tags,
        vec![
            (SmolStr::new("instance"), SmolStr::new("localhost:9090")),
            (SmolStr::new("job"), SmolStr::new("prometheus"))
        ]
    );
    assert_eq!(
        rows[0].1.fields,
        vec![(SmolStr::new("value"), FieldValue::F64(1.0))]
    );
    assert_eq!(rows[0].1.time, 1_700_000_000_123_000_000, "ms -> ns");
    assert_eq!(rows[1].0, "http_requests_total");
    assert_eq!(rows[1].1.fields[0].1, FieldValue::F64(5.0));
    assert!(
        super::write::write_polls(&h.runtimes) > polls_before,
        "decoding must run on `write`"
    );
    assert_eq!(h.state.metrics.ingest_rows(), 2);
    let text = h.get("/metrics").await.text();
    assert!(
        text.contains(
            "bulkhead_http_requests_total{route=\"/api/v1/prom/write\",method=\"POST\",status=\"204\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("bulkhead_prom_stale_samples_dropped_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn empty_write_request_is_204_and_writes_nothing() {
    let h = harness();
    let r = h.send(prom_request(URI, body(Vec::new()))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(h.backend.total(), 0);
}

#[tokio::test]
async fn malformed_bodies_are_400_and_write_nothing() {
    let h = harness();
    let raw_protobuf = {
        use prost::Message as _;
        WriteRequest {
            timeseries: vec![series(&[("__name__", "up")], &[(1.0, 1)])],
        }
        .encode_to_vec()
    };
    let not_protobuf = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\xff\xff\xff\xff\x0fgarbage")
        .unwrap();
    let mut truncated = good();
    truncated.truncate(truncated.len() - 3);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"definitely not snappy".to_vec(), "not valid snappy"),
        (raw_protobuf, "not valid snappy"),
        (truncated, "not valid snappy"),
        (not_protobuf, "not a valid protobuf prometheus.WriteRequest"),
        (Vec::new(), "empty body"),
    ];
    for (b, want) in cases {
        let r = h.send(prom_request(URI, b)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{want}: {}", r.text());
        assert_eq!(r.json()["code"], "bad_request");
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "want `{want}`: {msg}");
    }
    assert_eq!(h.backend.total(), 0);
}

#[tokio::test]
async fn one_invalid_series_rejects_the_whole_request() {
    let h = harness();
    let cases = [
        (vec![("job", "x")], "no metric name (`__name__` label)"),
        (vec![("__name__", "")], "metric name (`__name__`) is empty"),
        (
            vec![("__name__", "m"), ("value", "v")],
            "label `value` collides",
        ),
        (
            vec![("__name__", "m"), ("time", "t")],
            "label `time` collides",
        ),
        (
            vec![("__name__", "m"), ("a", "1"), ("a", "2")],
            "appears twice",
        ),
    ];
    for (labels, want) in cases {
        let b = body(vec![
            series(&[("__name__", "up"), ("job", "ok")], &[(1.0, 1)]),
            series(&labels, &[(1.0, 2)]),
        ]);
        let r = h.send(prom_request(URI, b)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{want}");
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "want `{want}`: {msg}");
    }
    assert_eq!(
        h.backend.total(),
        0,
        "the valid series were not written either"
    );
}

#[tokio::test]
async fn a_non_float_value_column_is_a_clear_400() {
    let h = harness();
    let r = h
        .post("/api/v2/write?bucket=prom", "up,job=lp value=1i 1")
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let b = body(vec![
        series(&[("__name__", "fine")], &[(1.0, 1)]),
        series(&[("__name__", "up"), ("job", "p")], &[(1.0, 1)]),
    ]);
    let r = h.send(prom_request(URI, b)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("table `up`: column `value` has type integer, Prometheus samples are float"),
        "{msg}"
    );
    assert_eq!(h.backend.total(), 1, "only the line-protocol row");
}

#[tokio::test]
async fn overload_is_503_with_retry_after_so_prometheus_retries() {
    let h = harness();
    *h.backend.fail_next.lock().unwrap() = Some(EngineError::Overloaded {
        used_bytes: 10,
        limit_bytes: 5,
    });
    let r = h.send(prom_request(URI, good())).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    assert_eq!(h.backend.total(), 0);
    // The retry succeeds.
    let r = h.send(prom_request(URI, good())).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.backend.total(), 2);
}

#[tokio::test]
async fn parameters_headers_and_size_limits() {
    let h = harness_with(|c| c.limits.max_body_size = ByteSize(2000));
    let r = h.send(prom_request("/api/v1/prom/write", good())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.text().contains("missing query parameter `db`"),
        "{}",
        r.text()
    );

    let v2 = Request::post(URI)
        .header(header::CONTENT_ENCODING, "snappy")
        .header(
            header::CONTENT_TYPE,
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .body(Body::from(good()))
        .unwrap();
    let r = h.send(v2).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        r.text().contains("io.prometheus.write.v2.Request"),
        "{}",
        r.text()
    );
    let zstd = Request::post(URI)
        .header(header::CONTENT_ENCODING, "zstd")
        .body(Body::from(good()))
        .unwrap();
    assert_eq!(
        h.send(zstd).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let v1_explicit = Request::post(URI)
        .header(
            header::CONTENT_TYPE,
            "application/x-protobuf; proto=prometheus.WriteRequest",
        )
        .body(Body::from(good()))
        .unwrap();
    assert_eq!(h.send(v1_explicit).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.backend.total(), 2);

    // Over the limit on the wire, and (a small body) once decompressed.
    let many: Vec<TimeSeries> = (0..1000)
        .map(|i| {
            let v = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_string();
            series(&[("__name__", "m"), ("i", &v)], &[(i as f64, i)])
        })
        .collect();
    let wire = body(many);
    assert!(wire.len() > 2000);
    let r = h.send(prom_request(URI, wire)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let same: Vec<TimeSeries> = (0..200)
        .map(|_| series(&[("__name__", "m"), ("i", "same")], &[(1.0, 1)]))
        .collect();
    let bomb = body(same);
    assert!(
        bomb.len() < 2000,
        "snappy compresses repeats: {}",
        bomb.len()
    );
    let r = h.send(prom_request(URI, bomb)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert!(r.text().contains("limits.max_body_size"), "{}", r.text());
    assert_eq!(h.backend.total(), 2);
}

#[tokio::test]
async fn auth_applies_as_on_every_write_endpoint() {
    let h = harness_with(|c| c.auth.token = "s3cret".into());
    let with = |auth: Option<String>| {
        let mut req = prom_request(URI, good());
        if let Some(a) = auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        req
    };
    let r = h.send(with(None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(
        h.send(with(Some("Bearer nope".into()))).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.backend.total(), 0, "nothing written without the token");
    // Prometheus's `authorization: {credentials: ...}` and `basic_auth` forms.
    assert_eq!(
        h.send(with(Some("Bearer s3cret".into()))).await.status,
        StatusCode::NO_CONTENT
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("prometheus:s3cret");
    assert_eq!(
        h.send(with(Some(format!("Basic {basic}")))).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.backend.rows("prom").len(), 4);
}
