//! The HTTP client stack alone, as simbulk builds it (reqwest over hyper, the same allocator
//! and client settings, one async worker), sending the bench's real changes: one PATCH per
//! SIM that suspends it (first pass) or unsuspends it (second pass), `CONCURRENCY` in
//! flight. No CSV, no plan, no records: the ceiling the engine's own work comes off.
//! Prints rows/s and CPU per row. Run by `benches/peers.sh`, or by hand:
//!
//!     cargo bench --bench http_stack -- URL TOKEN IDS_FILE ROWS [CONCURRENCY]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use simbulk::commands::cpu_seconds;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [url, token, ids_file, rows, rest @ ..] = args.as_slice() else {
        eprintln!("usage: http_stack URL TOKEN IDS_FILE ROWS [CONCURRENCY]");
        std::process::exit(2);
    };
    let rows: u64 = rows.parse().expect("ROWS is a number");
    let concurrency: u64 = rest.first().map_or(64, |c| c.parse().expect("a number"));
    let ids: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(ids_file)
            .expect("the IDS_FILE is readable")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
            .collect(),
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency as usize)
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .expect("a client");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    rt.block_on(async {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (http, ids, next, failed) =
                    (http.clone(), ids.clone(), next.clone(), failed.clone());
                let (url, token) = (url.clone(), token.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= rows {
                            break;
                        }
                        let n = ids.len() as u64;
                        let icc = &ids[(i % n) as usize];
                        let suspend = (i / n).is_multiple_of(2);
                        let ok = match http
                            .patch(format!("{url}/api/v2/sim/{icc}"))
                            .bearer_auth(&token)
                            .json(&serde_json::json!({ "customerSuspend": suspend }))
                            .send()
                            .await
                        {
                            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                            Err(_) => false,
                        };
                        if !ok {
                            failed.fetch_add(1, Ordering::Relaxed);
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
    println!(
        "http stack: {:.0} rows/s, {:.1} µs CPU per row, {} failed",
        rows as f64 / wall,
        cpu / rows as f64 * 1e6,
        failed.load(Ordering::Relaxed)
    );
}
