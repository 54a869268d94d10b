//! Generic read and write endpoints for every record kind:
//! `GET/POST /api/v1/{collection}` and `GET/PUT/DELETE /api/v1/{collection}/{id}`.
//! Ids of hierarchy records are paths and keep their slashes in the URL.

use crate::error::{ApiError, ApiResult};
use crate::{AppState, idempotency};
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use model::{Action, Entity, Kind, Principal};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use store::{Change, IdempotencyRecord, ListQuery, Stored, WriteBatch};

/// Query parameters of a list request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    customer: Option<String>,
    parent: Option<String>,
    prefix: Option<String>,
    model: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

pub fn kind_of(collection: &str) -> ApiResult<Kind> {
    Kind::from_collection(collection).ok_or_else(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(Kind::collection).collect();
        ApiError::not_found(format!("no collection `{collection}`; collections are: {}", known.join(", ")))
    })
}

pub fn require(principal: &Principal, action: Action) -> ApiResult<()> {
    if principal.may(action) {
        return Ok(());
    }
    let what = match action {
        Action::Read(kind) => format!("read {} records", kind),
        Action::Write(kind) => format!("change {} records", kind),
        Action::ManageTokens => "manage API tokens".into(),
        Action::ReadAudit => "read the audit log".into(),
        Action::ReadMetrics => "read metrics".into(),
        Action::WriteTelemetry => "send telemetry".into(),
        Action::ReadTelemetry => "read telemetry".into(),
    };
    Err(ApiError::forbidden(format!("role {} may not {what}", principal.role)))
}

/// The JSON view of a stored record.
pub fn view(stored: &Stored) -> Value {
    json!({ "data": stored.entity.to_json(), "version": stored.version, "updated_at": stored.updated_at.to_rfc3339() })
}

pub fn body_rejection(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "payload_too_large",
            "the request body is larger than the server accepts; send less per request",
        )
    } else {
        ApiError::bad_request(format!("cannot read the request body: {rejection}"))
    }
}

/// The decoded query string, or a 400 that says what is wrong with it.
pub fn query_params<T>(params: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    params.map(|Query(p)| p).map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))
}

pub fn parse_json(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

fn decode(kind: Kind, value: Value) -> ApiResult<Entity> {
    Entity::from_json(kind, value)
        .map_err(|e| ApiError::unprocessable("invalid_body", format!("the body is not a valid {kind}: {e}")))
}

fn expected_version(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_matches('"').trim_start_matches('v'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("If-Match must be a record version, e.g. `3` or `\"v3\"`"))
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(collection): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let kind = kind_of(&collection)?;
    require(&principal, Action::Read(kind))?;
    let params = crate::records::query_params(params)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let query = ListQuery {
        kind,
        customer: params.customer,
        parent: params.parent,
        prefix: params.prefix,
        model: params.model,
        after: params.after,
        limit,
    };
    let page = state.store.list(&principal.scope(), &query).await?;
    let items: Vec<Value> = page.items.iter().map(view).collect();
    Ok(Json(json!({ "items": items, "next": page.next })))
}

pub async fn get_one(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path((collection, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let kind = kind_of(&collection)?;
    require(&principal, Action::Read(kind))?;
    // Out of scope and absent look the same: a viewer learns nothing about other tenants.
    let stored = state.store.get(&principal.scope(), kind, &id).await?.ok_or_else(|| not_found(kind, &id))?;
    Ok(with_etag(Json(view(&stored)).into_response(), stored.version))
}

fn not_found(kind: Kind, id: &str) -> ApiError {
    ApiError::not_found(format!("{kind} `{id}` does not exist"))
}

fn with_etag(mut response: Response, version: i64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(collection): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let kind = kind_of(&collection)?;
    require(&principal, Action::Write(kind))?;
    let body = body.map_err(body_rejection)?;
    let key = idempotency::required_key(&headers)?;
    let value = parse_json(&body)?;
    let hash = idempotency::request_hash("POST", &format!("/api/v1/{collection}"), &value);
    if let Some(replayed) = idempotency::replay(&state.store, &principal, &key, &hash).await? {
        return Ok(replayed);
    }
    let entity = decode(kind, value)?;
    let location = format!("/api/v1/{collection}/{}", entity.id());
    let response = json!({ "data": entity.to_json(), "version": 1 });
    let record = IdempotencyRecord {
        principal: principal.actor.clone(),
        key: key.clone(),
        request_hash: hash.clone(),
        status: StatusCode::CREATED.as_u16(),
        body: response.to_string(),
    };
    let batch =
        WriteBatch { actor: principal.actor.clone(), changes: vec![Change::Create(entity)], idempotency: Some(record) };
    match state.store.apply(batch).await {
        Ok(_) => {
            let mut response = (StatusCode::CREATED, Json(response)).into_response();
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            Ok(with_etag(response, 1))
        }
        // A concurrent retry with the same key won the race: answer as it was answered.
        Err(store::Error::IdempotencyRace { .. }) => idempotency::replay(&state.store, &principal, &key, &hash)
            .await?
            .ok_or_else(|| ApiError::internal("idempotency record vanished")),
        Err(error) => Err(error.into()),
    }
}

pub async fn replace(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let kind = kind_of(&collection)?;
    require(&principal, Action::Write(kind))?;
    let body = body.map_err(body_rejection)?;
    let expected_version = expected_version(&headers)?;
    let mut value = parse_json(&body)?;
    if let Some(object) = value.as_object_mut() {
        match object.get("id").and_then(Value::as_str) {
            None => {
                object.insert("id".into(), Value::String(id.clone()));
            }
            Some(body_id) if body_id != id => {
                return Err(ApiError::unprocessable(
                    "id_mismatch",
                    format!(
                        "the body's id `{body_id}` differs from the URL's `{id}`; ids cannot be changed (delete and create instead)"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let entity = decode(kind, value)?;
    let batch = WriteBatch {
        actor: principal.actor.clone(),
        changes: vec![Change::Update { entity: entity.clone(), expected_version }],
        idempotency: None,
    };
    let applied = state.store.apply(batch).await?;
    let version = applied.versions.first().map_or(0, |v| v.2);
    Ok(with_etag(Json(json!({ "data": entity.to_json(), "version": version })).into_response(), version))
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let kind = kind_of(&collection)?;
    require(&principal, Action::Write(kind))?;
    let expected_version = expected_version(&headers)?;
    let batch = WriteBatch {
        actor: principal.actor.clone(),
        changes: vec![Change::Delete { kind, id, expected_version }],
        idempotency: None,
    };
    state.store.apply(batch).await?;
    Ok(StatusCode::NO_CONTENT)
}
