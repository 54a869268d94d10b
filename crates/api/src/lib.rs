//! The HTTP API: an axum `Router` over the records store.
//!
//! `app()` builds the whole router so that tests drive it with `oneshot` and the binary
//! serves it. Only this crate knows HTTP and JSON request shapes. Every route except
//! `/healthz` and `/readyz` sits behind bearer-token authentication; each handler checks
//! its action against the model's permission table; tenant scoping is applied by the
//! store inside its queries, from the principal's scope.

mod admin;
pub mod auth;
mod columns;
mod error;
mod idempotency;
mod openapi;
mod ops;
mod records;
pub mod telemetry;

pub use error::{ApiError, ApiResult};
pub use openapi::document as openapi_document;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use ingest::Ingest;
use model::ClockRef;
use std::sync::Arc;
use store::RecordStoreRef;
use tokio_util::sync::CancellationToken;

/// Renders the Prometheus exposition; installed by the binary, absent in tests.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Default request body limit: generous for records, small enough to refuse abuse.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Default body limit of telemetry writes: room for batches of ~100k samples.
pub const DEFAULT_TELEMETRY_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// What handlers share.
pub struct AppState {
    pub store: RecordStoreRef,
    pub auth: auth::Authenticator,
    pub metrics: Option<MetricsRender>,
    /// The ingest service, when this hub stores telemetry.
    pub ingest: Option<Arc<Ingest>>,
    pub clock: ClockRef,
    /// Cancelled when the hub shuts down: long-lived responses (SSE) end.
    pub shutdown: CancellationToken,
    pub body_limit: usize,
    pub telemetry_body_limit: usize,
}

/// Knobs for `app`.
pub struct AppOptions {
    /// Largest accepted request body, in bytes; bigger gets 413.
    pub body_limit: usize,
    /// Largest accepted telemetry write, in bytes.
    pub telemetry_body_limit: usize,
    pub metrics: Option<MetricsRender>,
    pub ingest: Option<Arc<Ingest>>,
    pub clock: ClockRef,
    pub shutdown: CancellationToken,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            telemetry_body_limit: DEFAULT_TELEMETRY_BODY_LIMIT,
            metrics: None,
            ingest: None,
            clock: model::SystemClock::shared(),
            shutdown: CancellationToken::new(),
        }
    }
}

/// Registers the descriptions of the metrics this crate records.
pub fn describe_metrics() {
    metrics::describe_counter!("treaty_http_requests_total", "HTTP requests answered, by method, route and status");
    metrics::describe_histogram!(
        "treaty_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method and route"
    );
    metrics::describe_counter!("treaty_http_auth_failures_total", "Requests refused for a missing or invalid token");
}

/// The whole HTTP surface.
pub fn app(store: RecordStoreRef, options: AppOptions) -> Router {
    router(state(store, options))
}

/// What the handlers share, for callers that also act on it (the hub forgets remembered
/// tokens when tokens change).
pub fn state(store: RecordStoreRef, options: AppOptions) -> Arc<AppState> {
    Arc::new(AppState {
        auth: auth::Authenticator::new(store.clone()),
        store,
        metrics: options.metrics,
        ingest: options.ingest,
        clock: options.clock,
        shutdown: options.shutdown,
        body_limit: options.body_limit,
        telemetry_body_limit: options.telemetry_body_limit,
    })
}

/// The router over a state made by `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let (body_limit, telemetry_body_limit) = (state.body_limit, state.telemetry_body_limit);
    let document = Arc::new(openapi::document());
    let telemetry_writes = Router::new()
        .route("/api/v1/telemetry", axum::routing::post(telemetry::write_json))
        .route("/api/v1/write", axum::routing::post(telemetry::write_line_protocol))
        .route("/api/v1/events", axum::routing::post(telemetry::record_event))
        .route_layer(DefaultBodyLimit::max(telemetry_body_limit));
    let authenticated = Router::new()
        .merge(telemetry_writes)
        .route("/api/v1/telemetry/range", get(telemetry::range))
        .route("/api/v1/telemetry/latest", get(telemetry::latest))
        .route("/api/v1/telemetry/asset", get(telemetry::asset_window))
        .route("/api/v1/telemetry/counter", get(telemetry::counter))
        .route("/api/v1/telemetry/stream", get(telemetry::stream))
        .route("/api/v1/openapi.json", get(move || async move { axum::Json((*document).clone()) }))
        .route("/api/v1/whoami", get(admin::whoami))
        .route("/api/v1/tokens", get(admin::list_tokens).post(admin::create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(admin::revoke_token))
        .route("/api/v1/audit", get(admin::audit))
        .route("/api/v1/audit/verify", get(admin::audit_verify))
        .route("/api/v1/{collection}", get(records::list).post(records::create))
        .route("/api/v1/{collection}/{*id}", get(records::get_one).put(records::replace).delete(records::remove))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::fallback)
        .layer(axum::middleware::from_fn_with_state(state.clone(), ops::authenticate));
    authenticated
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(ops::json_errors))
        .layer(axum::middleware::from_fn(ops::http_metrics))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
