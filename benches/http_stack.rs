//! The HTTP client stack alone, sending the bench's real changes: one PATCH per SIM that
//! suspends it (first pass) or unsuspends it (second pass), `CONCURRENCY` in flight, on one
//! async worker with simbulk's allocator. No CSV, no plan, no records: what a row's HTTP work
//! costs before the engine adds its own. Prints rows/s and CPU per row. Three stacks:
//!
//! - `reqwest` (the default): as simbulk builds it (the same client settings), the ceiling
//!   the engine's own work comes off;
//! - `pooled`: hyper-util's pooled client, the layer reqwest is built on, with no reqwest
//!   around it — what a transport written straight on hyper-util would cost;
//! - `bare`: one hyper client connection a task, no pool, no URL type, no timeout or redirect
//!   layers — the least a Rust client can do per request.
//!
//! Run by `benches/peers.sh`, or by hand:
//!
//!     cargo bench --bench http_stack -- URL TOKEN IDS_FILE ROWS [CONCURRENCY] [--stack NAME]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::client::legacy::{self, connect::HttpConnector};
use simbulk::commands::cpu_seconds;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str =
    "usage: http_stack URL TOKEN IDS_FILE ROWS [CONCURRENCY] [--stack reqwest|pooled|bare]";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stack {
    Reqwest,
    Pooled,
    Bare,
}

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let stack = match args.iter().position(|a| a == "--stack") {
        None => Stack::Reqwest,
        Some(i) => {
            let name = args.get(i + 1).cloned().unwrap_or_default();
            args.drain(i..(i + 2).min(args.len()));
            match name.as_str() {
                "reqwest" => Stack::Reqwest,
                "pooled" => Stack::Pooled,
                "bare" => Stack::Bare,
                _ => usage(),
            }
        }
    };
    let [url, token, ids_file, rows, rest @ ..] = args.as_slice() else {
        usage()
    };
    let rows: u64 = rows.parse().unwrap_or_else(|_| usage());
    let concurrency: u64 = rest
        .first()
        .map_or(Some(64), |c| c.parse().ok())
        .unwrap_or_else(|| usage());
    let ids: Vec<String> = std::fs::read_to_string(ids_file)
        .expect("the IDS_FILE is readable")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .collect();
    assert!(!ids.is_empty(), "the IDS_FILE names SIMs");
    let work = Arc::new(Work {
        url: url.trim_end_matches('/').to_owned(),
        token: token.clone(),
        auth: format!("Bearer {token}"),
        ids,
        rows,
        next: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    // Only the stack measured is built, and before the clock starts.
    let sender = {
        let _runtime = rt.enter();
        match stack {
            Stack::Reqwest => Sender::Reqwest(
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_max_idle_per_host(concurrency as usize)
                    .tcp_nodelay(true)
                    .no_proxy()
                    .build()
                    .expect("a client"),
            ),
            Stack::Pooled => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                Sender::Pooled(Arc::new(
                    legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                        .pool_max_idle_per_host(concurrency as usize)
                        .build(connector),
                ))
            }
            Stack::Bare => Sender::Bare,
        }
    };
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    rt.block_on(async {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (work, sender) = (work.clone(), sender.clone());
                tokio::spawn(async move {
                    match sender {
                        Sender::Reqwest(http) => with_reqwest(&work, &http).await,
                        Sender::Pooled(http) => with_pooled(&work, &http).await,
                        Sender::Bare => {
                            if let Err(e) = bare(&work).await {
                                eprintln!("a connection ended: {e}");
                                work.failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let (wall, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    let name = match stack {
        Stack::Reqwest => "http stack",
        Stack::Pooled => "hyper-util pooled",
        Stack::Bare => "hyper alone",
    };
    println!(
        "{name}: {:.0} rows/s, {:.1} µs CPU per row, {} failed",
        rows as f64 / wall,
        cpu / rows as f64 * 1e6,
        work.failed.load(Ordering::Relaxed)
    );
}

/// The client of the stack measured, shared by the tasks (bare hyper opens its own).
#[derive(Clone)]
enum Sender {
    Reqwest(reqwest::Client),
    Pooled(Arc<legacy::Client<HttpConnector, Full<Bytes>>>),
    Bare,
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}

/// What every task shares: the SIMs, the rows left to send, and the failures.
struct Work {
    url: String,
    token: String,
    auth: String,
    ids: Vec<String>,
    rows: u64,
    next: AtomicU64,
    failed: AtomicU64,
}

impl Work {
    /// The next row: its SIM and whether it suspends (first pass) or unsuspends.
    fn next(&self) -> Option<(&str, bool)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.ids.len() as u64;
        (i < self.rows).then(|| {
            (
                self.ids[(i % n) as usize].as_str(),
                (i / n).is_multiple_of(2),
            )
        })
    }

    fn body(suspend: bool) -> Bytes {
        Bytes::from_static(if suspend {
            br#"{"customerSuspend":true}"#
        } else {
            br#"{"customerSuspend":false}"#
        })
    }

    fn ended(&self, ok: bool) {
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Rows through reqwest, configured as simbulk configures it.
async fn with_reqwest(work: &Work, http: &reqwest::Client) {
    while let Some((icc, suspend)) = work.next() {
        let ok = match http
            .patch(format!("{}/api/v2/sim/{icc}", work.url))
            .bearer_auth(&work.token)
            .json(&serde_json::json!({ "customerSuspend": suspend }))
            .send()
            .await
        {
            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
            Err(_) => false,
        };
        work.ended(ok);
    }
}

/// Rows through hyper-util's pooled client, with no reqwest layers around it.
async fn with_pooled(work: &Work, http: &legacy::Client<HttpConnector, Full<Bytes>>) {
    while let Some((icc, suspend)) = work.next() {
        let request = hyper::Request::patch(format!("{}/api/v2/sim/{icc}", work.url))
            .header(AUTHORIZATION, &work.auth)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Work::body(suspend)))
            .expect("a well-formed request");
        let ok = match http.request(request).await {
            Ok(r) => r.status().is_success() && r.into_body().collect().await.is_ok(),
            Err(_) => false,
        };
        work.ended(ok);
    }
}

/// Rows through one HTTP/1.1 connection of hyper's own client.
async fn bare(work: &Work) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let host = work.url.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&host).await?;
    stream.set_nodelay(true)?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    while let Some((icc, suspend)) = work.next() {
        send.ready().await?;
        let request = hyper::Request::patch(format!("/api/v2/sim/{icc}"))
            .header(HOST, &host)
            .header(AUTHORIZATION, &work.auth)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Work::body(suspend)))?;
        let response = send.send_request(request).await?;
        let ok = response.status().is_success();
        response.into_body().collect().await?;
        work.ended(ok);
    }
    Ok(())
}
