//! SQL formats and errors, admin and ops endpoints.

use super::*;

#[tokio::test]
async fn sql_formats_json_csv_and_arrow() {
    let h = harness();
    let r = h.get("/api/v1/sql?db=demo&q=select%20*%20from%20cpu").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert_eq!(v[1], serde_json::json!({"host": "b", "usage": 2.5}));

    let r = h
        .get("/api/v1/sql?db=demo&q=select%20*%20from%20cpu&format=csv")
        .await;
    assert_eq!(r.text(), "host,usage\na,1.0\nb,2.5\na,1.0\nb,2.5\n");
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );

    let r = h
        .get("/api/v1/sql?db=demo&q=select%20*%20from%20cpu&format=arrow")
        .await;
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(r.body), None).unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches, vec![fixed_batch(), fixed_batch()]);

    let r = h
        .get("/api/v1/sql?db=demo&q=select%20nothing&format=csv")
        .await;
    assert_eq!(r.text(), "host,usage\n");
    let r = h.get("/api/v1/sql?db=demo&q=select%20nothing").await;
    assert_eq!(r.text(), "[]");

    let labels = h.backend.sql_runtimes.lock().unwrap().clone();
    assert!(!labels.is_empty());
    assert!(
        labels.iter().all(|l| l.as_deref() == Some("query")),
        "{labels:?}"
    );
}

#[tokio::test]
async fn sql_post_accepts_json_bodies_and_raw_sql() {
    let h = harness();
    let req = Request::post("/api/v1/sql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"db":"demo","q":"select * from cpu","format":"csv"}"#,
        ))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().starts_with("host,usage\n"));
    let r = h
        .post("/api/v1/sql?db=demo&format=csv", "select * from cpu")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h.post("/api/v1/sql", "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("invalid JSON body"));
}

#[tokio::test]
async fn sql_errors_have_statuses_and_messages() {
    let h = harness();
    let cases = [
        (
            "/api/v1/sql?db=demo&q=selec%20x",
            StatusCode::BAD_REQUEST,
            "syntax error",
        ),
        (
            "/api/v1/sql?db=demo&q=select%20oom",
            StatusCode::BAD_REQUEST,
            "memory limit",
        ),
        (
            "/api/v1/sql?db=missing&q=select%201",
            StatusCode::NOT_FOUND,
            "not found",
        ),
        ("/api/v1/sql?q=select%201", StatusCode::BAD_REQUEST, "`db`"),
        ("/api/v1/sql?db=demo", StatusCode::BAD_REQUEST, "`q`"),
        (
            "/api/v1/sql?db=demo&q=select%20*%20from%20cpu&format=xml",
            StatusCode::BAD_REQUEST,
            "`xml`",
        ),
    ];
    for (uri, status, want) in cases {
        let r = h.get(uri).await;
        assert_eq!(r.status, status, "{uri}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "{uri}: {msg}");
    }
    let r = h.get("/api/v1/sql?db=demo&q=select%20oom").await;
    assert_eq!(r.json()["code"], "resources_exhausted");
}

#[tokio::test]
async fn a_failure_after_the_first_batch_aborts_the_body() {
    let h = harness();
    let resp = router(Arc::clone(&h.state))
        .oneshot(
            Request::get("/api/v1/sql?db=demo&q=select%20late%20failure")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .is_err(),
        "a truncated body must not look complete"
    );
}

#[tokio::test]
async fn flush_and_compact_take_a_scope() {
    let h = harness();
    assert_eq!(h.post("/api/v1/flush", "").await.status, StatusCode::OK);
    assert_eq!(
        h.post("/api/v1/flush?db=d", "").await.status,
        StatusCode::OK
    );
    let r = h.post("/api/v1/compact?db=d&table=t", "").await;
    assert_eq!(r.json()["target"]["table"], "t");
    assert_eq!(
        h.post("/api/v1/compact?table=t", "").await.status,
        StatusCode::BAD_REQUEST
    );
    let r = h.post("/api/v1/compact?db=d&rewrite=true", "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["rewrite"], true);
    let r = h.post("/api/v1/compact?rewrite=maybe", "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("rewrite"), "{}", r.text());
    let admin = h.backend.admin.lock().unwrap().clone();
    assert_eq!(
        admin,
        vec![
            ("flush".to_string(), Scope::All),
            ("flush".to_string(), Scope::Database("d".into())),
            (
                "compact".to_string(),
                Scope::Table {
                    db: "d".into(),
                    table: "t".into()
                }
            ),
            ("rewrite".to_string(), Scope::Database("d".into())),
        ]
    );
}

#[tokio::test]
async fn ops_endpoints() {
    let h = harness();
    assert_eq!(
        h.post("/api/v2/write?bucket=m", "m f=1").await.status,
        StatusCode::NO_CONTENT
    );
    let r = h.get("/health").await;
    assert_eq!(r.json()["status"], "pass");
    let r = h.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.text();
    assert!(text.contains("bulkhead_ingest_rows_total 1"), "{text}");
    assert!(
        text.contains("bulkhead_http_request_duration_seconds_bucket{route=\"/api/v2/write\""),
        "{text}"
    );
    assert!(text.contains("bulkhead_test_backend 1"), "{text}");
    assert!(text.contains("bulkhead_test_queries 2"), "{text}");
    assert!(text.contains("bulkhead_runtime_workers"), "{text}");
    let r = h.get("/debug/bulkheads").await;
    let names: Vec<String> = r.json()["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["runtime"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["io", "write", "flush", "query", "compact"]);
    // The one write above went through every HTTP write stage once.
    assert!(
        text.contains("bulkhead_write_stage_seconds_count{stage=\"http_handler\"} 1"),
        "{text}"
    );
    let r = h.get("/debug/latency").await;
    let stages = r.json()["write_stages"].as_array().unwrap().clone();
    let names: Vec<&str> = stages
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["http_parse_queue", "http_parse", "http_handler"]);
    for s in &stages {
        let counts = s["counts"].as_array().unwrap();
        assert_eq!(
            counts.iter().map(|c| c.as_u64().unwrap()).sum::<u64>(),
            1,
            "{s}"
        );
    }
    let r = h.get("/no/such/thing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["code"], "not_found");
}
