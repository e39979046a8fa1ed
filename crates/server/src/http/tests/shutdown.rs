//! Graceful shutdown over real TCP on the io runtime.

use super::*;

/// Over real TCP on the io runtime: a request in flight when shutdown starts completes.
#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let h = harness();
    *h.backend.write_delay.lock().unwrap() = Duration::from_millis(300);
    let state = Arc::clone(&h.state);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = h
        .runtimes
        .block_on(bulkhead_runtime::RuntimeName::Io, async move {
            HttpServer::bind("127.0.0.1:0".parse().unwrap(), state).await
        })
        .unwrap()
        .unwrap();
    let addr = server.local_addr().unwrap();
    let serving = h.runtimes.spawn_io(server.serve(
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(10),
    ));
    let client = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let body = "m f=1 1";
        write!(
            s,
            "POST /api/v2/write?bucket=s HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    std::thread::sleep(Duration::from_millis(100));
    stop_tx.send(()).unwrap();
    let reply = client.join().unwrap();
    assert!(reply.starts_with("HTTP/1.1 204"), "{reply}");
    futures::executor::block_on(serving).unwrap().unwrap();
    assert_eq!(h.backend.rows("s").len(), 1);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener closed after shutdown"
    );
}

/// A request that outlives the drain bound does not hold shutdown hostage.
#[test]
fn shutdown_drain_is_bounded() {
    let h = harness();
    *h.backend.write_delay.lock().unwrap() = Duration::from_secs(30);
    let state = Arc::clone(&h.state);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = h
        .runtimes
        .block_on(bulkhead_runtime::RuntimeName::Io, async move {
            HttpServer::bind("127.0.0.1:0".parse().unwrap(), state).await
        })
        .unwrap()
        .unwrap();
    let addr = server.local_addr().unwrap();
    let serving = h.runtimes.spawn_io(server.serve(
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_millis(200),
    ));
    let _client = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let _ = write!(
            s,
            "POST /api/v2/write?bucket=s HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\nm f=1 1"
        );
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
    });
    std::thread::sleep(Duration::from_millis(100));
    let start = std::time::Instant::now();
    stop_tx.send(()).unwrap();
    futures::executor::block_on(serving).unwrap().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(h.backend.total(), 0, "the hung write was never applied");
}
