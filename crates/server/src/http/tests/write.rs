//! Write endpoints: parsing, partial writes, limits, gzip, engine errors, auth.

use super::*;

#[tokio::test]
async fn v2_write_is_parsed_on_the_write_runtime_and_acknowledged_with_204() {
    let h = harness();
    let polls_before = write_polls(&h.runtimes);
    let r = h
        .post(
            "/api/v2/write?bucket=demo&org=ignored&precision=s",
            "cpu,host=a usage=1 1700000000\ncpu,host=b usage=2,cores=2i 1700000001",
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let rows = h.backend.rows("demo");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, "cpu");
    assert_eq!(
        rows[0].1.tags,
        vec![(SmolStr::new("host"), SmolStr::new("a"))]
    );
    assert_eq!(rows[0].1.time, 1_700_000_000_000_000_000);
    assert_eq!(rows[1].1.fields[1].1, FieldValue::I64(2));
    assert!(
        write_polls(&h.runtimes) > polls_before,
        "parsing must run on `write`"
    );
    assert_eq!(h.state.metrics.ingest_rows(), 2);
}

pub(super) fn write_polls(runtimes: &Runtimes) -> u64 {
    let snap = runtimes.snapshot();
    snap.runtimes
        .iter()
        .find(|r| r.runtime == "write")
        .map(|r| r.polls)
        .unwrap_or(0)
}

#[tokio::test]
async fn v1_write_uses_db_and_v1_precision_and_defaults_time_to_now() {
    let h = harness();
    let r = h
        .post(
            "/write?db=v1db&rp=autogen&precision=ms",
            "m f=1 1700000000000\nm f=2",
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let rows = h.backend.rows("v1db");
    assert_eq!(rows[0].1.time, 1_700_000_000_000_000_000);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        (now - rows[1].1.time).abs() < 60_000_000_000,
        "default time is now"
    );
    let r = h.post("/write?bucket=x", "m f=1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"].as_str().unwrap().contains("`db`"));
}

#[tokio::test]
async fn partial_write_writes_valid_lines_and_lists_exactly_the_bad_ones() {
    let h = harness();
    let body = "cpu f=1 1\ncpu f= 2\ncpu f=3 3\nnot a line\n";
    let r = h.post("/api/v2/write?bucket=p", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = r.json();
    assert_eq!(v["error"], "partial write of line protocol occurred");
    let data = v["data"].as_array().unwrap();
    let got: Vec<(u64, &str)> = data
        .iter()
        .map(|e| {
            (
                e["line_number"].as_u64().unwrap(),
                e["original_line"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(2, "cpu f= 2"), (4, "not a line")]);
    assert!(
        data[0]["error_message"]
            .as_str()
            .unwrap()
            .contains("field `f`")
    );
    assert_eq!(h.backend.rows("p").len(), 2, "valid lines are written");
}

#[tokio::test]
async fn type_conflicts_reject_only_the_conflicting_lines() {
    let h = harness();
    let r = h
        .post("/api/v2/write?bucket=c", "cpu,host=a usage=1 1")
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let body = "cpu,host=b usage=\"high\" 2\ncpu,host=c usage=3 3\ncpu,host=d idle=1i 4\ncpu,host=e idle=2 5\n";
    let r = h.post("/api/v2/write?bucket=c", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = r.json();
    let lines: Vec<u64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line_number"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![1, 4], "{v}");
    assert!(
        v["data"][0]["error_message"]
            .as_str()
            .unwrap()
            .contains("has type float, line has type string")
    );
    let times: Vec<i64> = h.backend.rows("c").iter().map(|(_, r)| r.time).collect();
    assert_eq!(times, vec![1, 3, 4]);
    // With accept_partial=false the same conflict writes nothing.
    let r = h
        .post(
            "/api/v2/write?bucket=c&accept_partial=false",
            "cpu,host=f usage=9 9\ncpu usage=true 10",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.backend.rows("c").len(), 3);
}

#[tokio::test]
async fn accept_partial_false_writes_nothing() {
    let h = harness();
    let r = h
        .post(
            "/api/v2/write?bucket=p&accept_partial=false",
            "cpu f=1 1\nbad\n",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["data"][0]["line_number"], 2);
    assert_eq!(h.backend.total(), 0);
    let r = h
        .post("/api/v2/write?bucket=p&accept_partial=maybe", "cpu f=1 1")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_parameters_are_400_with_a_message() {
    let h = harness();
    let cases = [
        ("/api/v2/write", "missing query parameter `bucket`"),
        ("/api/v2/write?bucket=", "must not be empty"),
        (
            "/api/v2/write?bucket=d&precision=minutes",
            "unknown precision `minutes`",
        ),
    ];
    for (uri, want) in cases {
        let r = h.post(uri, "m f=1").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "{uri}: {msg}");
    }
    assert_eq!(h.backend.total(), 0);
}

#[tokio::test]
async fn gzip_bodies_are_accepted_and_broken_gzip_is_400() {
    let h = harness();
    let req = Request::post("/api/v2/write?bucket=g")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(gzip(b"m f=1 1\nm f=2 2\n")))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(h.backend.rows("g").len(), 2);
    let req = Request::post("/api/v2/write?bucket=g")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from("m f=1 1"))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.text().contains("gzip body does not decompress"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_compressed_or_not() {
    let h = harness_with(|c| c.limits.max_body_size = ByteSize(1000));
    let big = "m f=1 1\n".repeat(200);
    let r = h.post("/api/v2/write?bucket=l", big.clone()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("limits.max_body_size")
    );
    // Small on the wire, too big once decompressed.
    let req = Request::post("/api/v2/write?bucket=l")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(gzip(big.as_bytes())))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A streamed body without Content-Length.
    let chunks = futures::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 100])));
    let req = Request::post("/api/v2/write?bucket=l")
        .body(Body::from_stream(chunks))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.backend.total(), 0);
}

#[tokio::test]
async fn line_length_and_tag_limits_name_the_line() {
    let h = harness_with(|c| {
        c.limits.max_line_length = ByteSize(50);
        c.limits.max_tags_per_line = 2;
    });
    let long = format!("m f=\"{}\"", "y".repeat(60));
    let body = format!("m,a=1 f=1 1\n{long}\nm,a=1,b=2,c=3 f=1 1\n");
    let r = h.post("/api/v2/write?bucket=l", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = r.json();
    assert_eq!(v["data"][0]["line_number"], 2);
    assert!(
        v["data"][0]["error_message"]
            .as_str()
            .unwrap()
            .contains("limits.max_line_length")
    );
    assert_eq!(v["data"][1]["line_number"], 3);
    assert!(
        v["data"][1]["error_message"]
            .as_str()
            .unwrap()
            .contains("too many tags")
    );
    assert_eq!(h.backend.rows("l").len(), 1);
}

#[tokio::test]
async fn engine_errors_map_to_400_and_503_with_retry_after() {
    let h = harness();
    *h.backend.fail_next.lock().unwrap() = Some(EngineError::SchemaConflict {
        db: "d".into(),
        table: "cpu".into(),
        column: "usage".into(),
        existing: FieldType::F64,
        attempted: FieldType::Str,
    });
    let r = h.post("/api/v2/write?bucket=d", "cpu usage=\"x\"").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], "schema_conflict");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("`usage` has type float")
    );
    *h.backend.fail_next.lock().unwrap() = Some(EngineError::Overloaded {
        used_bytes: 10,
        limit_bytes: 5,
    });
    let r = h.post("/api/v2/write?bucket=d", "cpu usage=1").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    assert_eq!(h.backend.total(), 0);
}

#[tokio::test]
async fn auth_is_required_everywhere_but_health() {
    let h = harness_with(|c| c.auth.token = "s3cret".into());
    let body = "m f=1 1";
    let with = |auth: &str| {
        Request::post("/api/v2/write?bucket=a")
            .header(header::AUTHORIZATION, auth)
            .body(Body::from(body))
            .unwrap()
    };
    let r = h.post("/api/v2/write?bucket=a", body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(
        h.send(with("Token nope")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.post("/write?db=a&u=x&p=nope", body).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.get("/metrics").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.get("/api/v1/sql?db=a&q=select%20*%20from%20cpu")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.backend.total(), 0, "nothing written without the token");

    assert_eq!(
        h.send(with("Token s3cret")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.send(with("Bearer s3cret")).await.status,
        StatusCode::NO_CONTENT
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("me:s3cret");
    assert_eq!(
        h.send(with(&format!("Basic {basic}"))).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.post("/write?db=a&u=me&p=s3cret", body).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.backend.rows("a").len(), 4);
    assert_eq!(h.get("/health").await.status, StatusCode::OK);
    assert_eq!(h.get("/ping").await.status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_in_flight_budget_get_503_at_once_and_nothing_is_written() {
    let h = harness_with(|c| c.limits.max_inflight_write_bytes = ByteSize::kib(4));
    *h.backend.write_delay.lock().unwrap() = Duration::from_millis(500);
    let body = |tag: &str| -> String {
        (0..100)
            .map(|i| format!("cpu,host={tag} usage={i} {i}\n"))
            .collect()
    };
    let (a, b) = (body("a"), body("b"));
    assert!(a.len() > 2048 && a.len() < 4096, "{}", a.len());
    let first = h.post("/api/v2/write?bucket=d", a);
    let second = async {
        // Once the first write holds its admission, the second does not fit.
        while h.state.write_admission.in_flight_kib() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // 3 KiB of request bytes, or the whole 4 KiB budget once its parsed rows
        // (several times bigger) are charged.
        let metrics = h.get("/metrics").await.text();
        assert!(
            metrics.contains("bulkhead_write_inflight_bytes 3072\n")
                || metrics.contains("bulkhead_write_inflight_bytes 4096\n"),
            "{metrics}"
        );
        h.post("/api/v2/write?bucket=d", b).await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.status, StatusCode::NO_CONTENT, "{}", first.text());
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.headers[header::RETRY_AFTER], "1");
    assert_eq!(second.json()["code"], "overloaded");
    assert!(
        second.json()["error"]
            .as_str()
            .unwrap()
            .contains("limits.max_inflight_write_bytes"),
        "{}",
        second.text()
    );
    assert_eq!(
        h.backend.total(),
        100,
        "only the admitted write was applied"
    );
    assert_eq!(
        h.state.write_admission.in_flight_kib(),
        0,
        "permit released"
    );
    // With the budget free again, the retry succeeds.
    *h.backend.write_delay.lock().unwrap() = Duration::ZERO;
    let retry = h.post("/api/v2/write?bucket=d", body("b")).await;
    assert_eq!(retry.status, StatusCode::NO_CONTENT, "{}", retry.text());
    assert_eq!(h.backend.total(), 200);
}
