//! Operational endpoints and middleware: health, readiness, Prometheus metrics,
//! authentication, per-request metrics, and the JSON shape for bodiless errors.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::records::require;
use axum::Extension;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use model::{Action, Principal};
use std::sync::Arc;
use std::time::Instant;

/// Liveness: the process answers. Unauthenticated so that supervisors can probe it; it
/// reveals nothing.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the records store answers. Unauthenticated for the same reason.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ready().await {
        Ok(()) => "ready".into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "records store unavailable").into_response()
        }
    }
}

/// Prometheus text exposition; needs a token with metrics access.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Response> {
    require(&principal, Action::ReadMetrics)?;
    let text = state.metrics.as_ref().map(|render| render()).unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// Authenticates every request it wraps and puts the `Principal` in its extensions.
pub async fn authenticate(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    match state.auth.authenticate(header.as_deref()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => {
            metrics::counter!("treaty_http_auth_failures_total").increment(1);
            error.into_response()
        }
    }
}

/// Counts requests and their latency per route and status.
pub async fn http_metrics(request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("treaty_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("treaty_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// Gives error responses that the framework produced without a body (405, and any other
/// bodiless 4xx/5xx) the same JSON error shape as ours.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let bodiless = response.headers().get(header::CONTENT_TYPE).is_none();
    if !(status.is_client_error() || status.is_server_error()) || !bodiless {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this path does not support that method".to_owned()),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "the request body is larger than the server accepts".to_owned())
        }
        other => ("error", other.canonical_reason().unwrap_or("error").to_lowercase()),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut replaced = ApiError::new(status, code, message).into_response();
    if let Some(allow) = allow {
        replaced.headers_mut().insert(header::ALLOW, allow);
    }
    replaced
}

pub async fn fallback() -> ApiError {
    ApiError::not_found("no such endpoint; see /api/v1/openapi.json")
}
