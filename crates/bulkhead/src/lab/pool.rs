//! The seed's connection-pool bug: `io-5 cost: 1.015s`.
//!
//! Two runtimes, `io` and `cpu` (2 workers each), share one pooled `reqwest::Client`.
//! A local server answers every request after 50 ms. CPU tasks make a request, then
//! block their worker for 200 ms (`std::thread::sleep`, as in the seed). IO tasks only
//! make requests. hyper spawns each connection's driver task on the runtime that
//! *opened* the connection, so an IO request that reuses a connection opened by a CPU
//! task waits until a blocked cpu worker gets around to driving it.
//!
//! The server tags every response with the thread that opened the connection it came
//! in on (the `x-opened-on` header of the connection's first request), so each IO
//! request's line says whose connection it rode on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue};
use parking_lot::Mutex;
use serde_json::json;

use super::{Report, lab_runtime, p50_max_ms};

const SERVER_DELAY: Duration = Duration::from_millis(50);
const CPU_BLOCK: Duration = Duration::from_millis(200);
const CPU_TASKS: usize = 8;
const IO_TASKS: usize = 10;
const IO_SPACING: Duration = Duration::from_millis(60);
/// IO tasks start once the CPU tasks' first requests are answered, so the pool holds
/// idle connections that the cpu runtime opened (as in the seed, where IO requests
/// arrive while compaction work is running).
const IO_START: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// One pooled client used from both runtimes (the seed's bug).
    Naive,
    /// `pool_max_idle_per_host(0)`: the seed's workaround (no reuse, a handshake per request).
    NoPool,
    /// Every request is spawned on `io`, so connections are opened and driven there only.
    Bulkhead,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Naive => "naive",
            Variant::NoPool => "no-pool",
            Variant::Bulkhead => "bulkhead",
        }
    }
}

struct IoRequest {
    name: String,
    cost: Duration,
    opened_on: String,
}

pub(crate) fn run(print: bool) -> anyhow::Result<Report> {
    let server_rt = lab_runtime("server", 1, true)?;
    let addr = server_rt.block_on(start_server())?;
    if print {
        println!("== lab pool: the seed's connection-pool bug ==");
        println!(
            "server at http://{addr} answers after {} ms; {CPU_TASKS} CPU tasks block their worker {} ms after each request; {IO_TASKS} IO tasks every {} ms",
            SERVER_DELAY.as_millis(),
            CPU_BLOCK.as_millis(),
            IO_SPACING.as_millis()
        );
    }
    let mut variants = Vec::new();
    let mut summary = Vec::new();
    for variant in [Variant::Naive, Variant::NoPool, Variant::Bulkhead] {
        let requests = run_variant(variant, addr)?;
        let costs: Vec<Duration> = requests.iter().map(|r| r.cost).collect();
        let (p50, max) = p50_max_ms(&costs);
        let on_cpu = requests
            .iter()
            .filter(|r| r.opened_on.starts_with("lab-cpu"))
            .count();
        if print {
            println!("-- variant `{}`", variant.name());
            for r in &requests {
                println!(
                    "  {:<6} cost {:>7.1} ms   connection opened on {}",
                    r.name,
                    r.cost.as_secs_f64() * 1e3,
                    r.opened_on
                );
            }
        }
        summary.push(format!(
            "  {:<9} io p50 {:>7.1} ms   io max {:>7.1} ms   io requests on cpu-opened connections: {on_cpu}/{}",
            variant.name(),
            p50,
            max,
            requests.len()
        ));
        variants.push(json!({
            "name": variant.name(),
            "io_p50_ms": p50,
            "io_max_ms": max,
            "io_requests": requests.len(),
            "io_requests_on_cpu_connections": on_cpu,
        }));
    }
    server_rt.shutdown_background();
    if print {
        println!("summary:");
        for line in summary {
            println!("{line}");
        }
        println!(
            "(ideal io cost: {} ms, the server's delay)\n",
            SERVER_DELAY.as_millis()
        );
    }
    Ok(Report {
        experiment: "pool",
        variants,
    })
}

fn run_variant(variant: Variant, addr: SocketAddr) -> anyhow::Result<Vec<IoRequest>> {
    let io = lab_runtime("io", 2, true)?;
    // In the bulkhead variant the cpu runtime has no IO driver at all, as in Bulkhead:
    // had any connection been opened there, the request would panic instead of stalling.
    let cpu = lab_runtime("cpu", 2, variant != Variant::Bulkhead)?;
    let mut builder = reqwest::Client::builder();
    if variant == Variant::NoPool {
        builder = builder.pool_max_idle_per_host(0);
    }
    let client = builder.build()?;
    let base = format!("http://{addr}");
    let io_handle = io.handle().clone();

    let cpu_tasks: Vec<_> = (0..CPU_TASKS)
        .map(|i| {
            let (client, url, io_handle) =
                (client.clone(), format!("{base}/cpu-{i}"), io_handle.clone());
            cpu.spawn(async move {
                let result = match variant {
                    Variant::Bulkhead => io_handle
                        .spawn(get(client, url))
                        .await
                        .map_err(anyhow::Error::from)
                        .and_then(|r| r),
                    Variant::Naive | Variant::NoPool => get(client, url).await,
                };
                // The CPU-heavy part: blocks this worker, as the seed's program does.
                std::thread::sleep(CPU_BLOCK);
                result.map(|_| ())
            })
        })
        .collect();

    let io_tasks: Vec<_> = (0..IO_TASKS)
        .map(|i| {
            let (client, url) = (client.clone(), format!("{base}/io-{i}"));
            io.spawn(async move {
                tokio::time::sleep(IO_START + IO_SPACING * i as u32).await;
                let start = Instant::now();
                let opened_on = get(client, url).await?;
                anyhow::Ok(IoRequest {
                    name: format!("io-{i}"),
                    cost: start.elapsed(),
                    opened_on,
                })
            })
        })
        .collect();

    let requests = io.block_on(async {
        let mut out = Vec::new();
        for t in io_tasks {
            out.push(t.await??);
        }
        for t in cpu_tasks {
            t.await??;
        }
        anyhow::Ok(out)
    })?;
    cpu.shutdown_background();
    io.shutdown_background();
    Ok(requests)
}

/// GET `url`, tagging the request with the calling thread; returns the name of the
/// thread that opened the connection the response came back on.
async fn get(client: reqwest::Client, url: String) -> anyhow::Result<String> {
    let thread = std::thread::current().name().unwrap_or("?").to_string();
    let resp = client.get(url).header("x-opened-on", thread).send().await?;
    let opened_on = resp
        .headers()
        .get("x-connection-opened-on")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string();
    resp.bytes().await?;
    Ok(opened_on)
}

/// Connection (client address) -> thread that sent its first request.
type Openers = Arc<Mutex<HashMap<SocketAddr, String>>>;

async fn start_server() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let openers: Openers = Arc::default();
    let app = axum::Router::new()
        .fallback(respond_later)
        .with_state(openers)
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "lab server failed");
        }
    });
    Ok(addr)
}

async fn respond_later(
    State(openers): State<Openers>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> (HeaderMap, &'static str) {
    let sender = headers
        .get("x-opened-on")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string();
    let opener = openers.lock().entry(peer).or_insert(sender).clone();
    tokio::time::sleep(SERVER_DELAY).await;
    let mut out = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&opener) {
        out.insert("x-connection-opened-on", v);
    }
    (out, "hello")
}
