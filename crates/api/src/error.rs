//! The one error type every handler returns, and its JSON shape:
//! `{ "error": { "code", "message", "details" } }`.
//!
//! User errors carry a message a person can act on; internal errors are logged with
//! their detail and answered with a generic 500 body.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable: `not_found`, `forbidden`, `validation_failed`...
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Value::Null }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; the server log has the details")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message, "details": self.details } });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::INSUFFICIENT_STORAGE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        response
    }
}

impl From<store::Error> for ApiError {
    fn from(error: store::Error) -> Self {
        use store::Error as E;
        let message = error.to_string();
        match error {
            E::NotFound { .. } => ApiError::not_found(message),
            E::AlreadyExists { .. } => ApiError::new(StatusCode::CONFLICT, "already_exists", message),
            E::VersionConflict { actual, .. } => ApiError::new(StatusCode::CONFLICT, "version_conflict", message)
                .with_details(json!({ "current_version": actual })),
            E::StillReferenced { by, .. } => {
                let by: Vec<Value> = by.iter().map(|(k, id)| json!({ "kind": k, "id": id })).collect();
                ApiError::new(StatusCode::CONFLICT, "still_referenced", message)
                    .with_details(json!({ "referenced_by": by }))
            }
            E::Invalid { errors, .. } => {
                ApiError::unprocessable("validation_failed", message).with_details(json!({ "fields": errors }))
            }
            E::DanglingReference { field, target_kind, target_id, .. } => {
                ApiError::unprocessable("dangling_reference", message)
                    .with_details(json!({ "field": field, "kind": target_kind, "id": target_id }))
            }
            E::Busy | E::IdempotencyRace { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", format!("{message}; retry shortly"))
            }
            E::SchemaTooNew { .. } | E::Internal(_) => ApiError::internal(message),
        }
    }
}
