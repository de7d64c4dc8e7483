//! HTTP front of the simulator: the routes (the contract's, in `routes` and `list`, and the
//! `/__sim` surface in `admin`) and the connection loop.
//!
//! Guarantees: a dropped connection closes the socket without a byte of response; a failed
//! accept backs off and the loop goes on.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admin::*;
use super::app::{App, AppState, ConnKill, MAX_BODY, gateway};
use super::list::*;
use super::routes::*;

/// All routes of the contract plus the `/__sim` introspection surface.
pub(super) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/oauth2/token", post(token))
        .route("/api/v2/sim", get(list_sims))
        .route("/api/v2/sim/{iccId}", get(get_sim).patch(patch_sim))
        .route(
            "/api/v2/sim/{iccId}/attribute",
            get(list_attributes).post(create_attribute),
        )
        .route(
            "/api/v2/sim/{iccId}/attribute/{iccAttributeId}",
            get(get_attribute)
                .patch(patch_attribute)
                .delete(delete_attribute),
        )
        .route("/__sim/stats", get(admin_stats))
        .route("/__sim/ledger", get(admin_ledger))
        .route("/__sim/revoke", post(admin_revoke))
        .route("/__sim/faults", get(admin_get_faults).put(admin_put_faults))
        .route("/__sim/sims/{iccId}", get(admin_sim).patch(admin_change))
        .route("/__sim/save", post(admin_save))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

pub(super) async fn method_not_allowed(State(app): AppState) -> Response {
    let rid = app.request_id();
    gateway(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        &rid,
        None,
    )
}

/// Accepts connections until `shutdown`, serving each on its own task. A connection whose
/// request asks to be dropped is closed at once, without a response.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt;
    let router = match app.cfg.provider {
        super::config::Provider::Eseye => router(app),
        super::config::Provider::Twilio => super::twilio::routes::router(app),
        super::config::Provider::Emnify => super::emnify::routes::router(app),
    };
    loop {
        let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off, never exit the loop.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let kill = CancellationToken::new();
        let router = router.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let k = kill.clone();
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut req = req.map(axum::body::Body::new);
                    req.extensions_mut().insert(ConnKill(k.clone()));
                    router.clone().oneshot(req)
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = kill.cancelled() => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}
