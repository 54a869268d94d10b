//! Administration endpoints: API tokens, the audit trail, and `whoami`.

use crate::auth::issue_bound_token;
use crate::error::{ApiError, ApiResult};
use crate::records::{body_rejection, parse_json, require};
use crate::{AppState, idempotency};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use model::{Action, Principal, Role};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use store::{IdempotencyRecord, TokenRecord};

pub async fn whoami(Extension(principal): Extension<Principal>) -> Json<Value> {
    Json(json!({ "actor": principal.actor, "role": principal.role, "customer": principal.customer }))
}

fn token_view(token: &TokenRecord) -> Value {
    json!({
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "customer": token.customer,
        "assets": token.assets,
        "created_at": token.created_at.to_rfc3339(),
        "revoked_at": token.revoked_at.map(|t| t.to_rfc3339()),
    })
}

pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    require(&principal, Action::ManageTokens)?;
    let tokens = state.store.tokens().await?;
    Ok(Json(json!({ "items": tokens.iter().map(token_view).collect::<Vec<_>>() })))
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Role,
    #[serde(default)]
    customer: Option<String>,
    /// Device tokens: asset paths or site/line prefixes whose telemetry it may write.
    #[serde(default)]
    assets: Vec<String>,
}

/// Creates a token and shows its secret once. With an Idempotency-Key, a retry does not
/// mint a second token; because the secret is never stored, the replay carries the
/// token's id and says so instead of repeating the secret.
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    require(&principal, Action::ManageTokens)?;
    let value = parse_json(&body.map_err(body_rejection)?)?;
    let key = idempotency::optional_key(&headers)?;
    let hash = idempotency::request_hash("POST", "/api/v1/tokens", &value);
    if let Some(key) = &key
        && let Some(replayed) = idempotency::replay(&state.store, &principal, key, &hash).await?
    {
        return Ok(replayed);
    }
    let request: NewToken = serde_json::from_value(value)
        .map_err(|e| ApiError::unprocessable("invalid_body", format!("the body is not a valid token request: {e}")))?;
    if request.name.trim().is_empty() {
        return Err(ApiError::unprocessable("invalid_body", "name must describe who or what uses the token"));
    }
    if let Some(customer) = &request.customer
        && state.store.get(&model::Scope::All, model::Kind::Customer, customer).await?.is_none()
    {
        return Err(ApiError::unprocessable("dangling_reference", format!("customer `{customer}` does not exist")));
    }
    let issued = issue_bound_token(&request.name, request.role, request.customer, request.assets)
        .map_err(|e| ApiError::unprocessable("invalid_body", e.to_string()))?;
    let view = token_view(&issued.record);
    state.store.create_token(&principal.actor, issued.record).await?;
    if let Some(key) = key {
        let mut replay = view.clone();
        replay["token"] = Value::Null;
        replay["note"] = json!(
            "replayed: the secret was shown once, in the first response; revoke this token and create another if it was lost"
        );
        let record = IdempotencyRecord {
            principal: principal.actor.clone(),
            key,
            request_hash: hash,
            status: 201,
            body: replay.to_string(),
        };
        // The token exists either way; failing to remember the key only loses replay.
        let batch = store::WriteBatch { actor: principal.actor.clone(), changes: vec![], idempotency: Some(record) };
        if let Err(error) = state.store.apply(batch).await {
            tracing::warn!(%error, "could not store the idempotency key of a token creation");
        }
    }
    let mut body = view;
    body["token"] = json!(issued.secret);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require(&principal, Action::ManageTokens)?;
    let revoked = state.store.revoke_token(&principal.actor, &id).await?;
    // Whoever used it is no longer trusted from memory.
    state.auth.forget();
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no active token with id `{id}`")))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    after: Option<u64>,
    limit: Option<usize>,
}

pub async fn audit(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    require(&principal, Action::ReadAudit)?;
    let params = crate::records::query_params(params)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let entries = state.store.audit(params.after.unwrap_or(0), limit).await?;
    let next = if entries.len() == limit { entries.last().map(|e| e.seq) } else { None };
    let items: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({"seq": e.seq, "at": e.at.to_rfc3339(), "actor": e.actor, "action": e.action, "kind": e.kind,
                   "id": e.id, "before": e.before, "after": e.after, "hash": e.hash})
        })
        .collect();
    Ok(Json(json!({ "items": items, "next": next })))
}

pub async fn audit_verify(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    require(&principal, Action::ReadAudit)?;
    let report = state.store.verify_audit().await?;
    Ok(Json(
        json!({ "intact": report.is_intact(), "entries": report.entries, "head": report.head, "problems": report.problems }),
    ))
}
