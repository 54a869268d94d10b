//! `POST /api/v1/events`: a gateway reports an interlock write or dropped data; it goes
//! into the hub's audit trail as `device.<kind>` on the asset, once per event id and
//! sender however often it is retried.

use super::service;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::records::{body_rejection, require};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::{Extension, Json};
use model::{Action, Principal};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Body of `POST /api/v1/events`: something that happened at the edge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldEvent {
    /// Unique per gateway, e.g. `gw-plant-1/interlock/1795310000123`: a retry of the same
    /// event is recorded once.
    event: String,
    /// What happened: `interlock` (a write to a machine), `spool_overflow` (samples
    /// dropped), ... — lower-case letters and underscores.
    kind: String,
    /// The asset it concerns (a device token must be bound to it); none for an event of
    /// the gateway itself, recorded on the reporting token.
    #[serde(default)]
    asset: Option<String>,
    #[serde(default)]
    details: serde_json::Map<String, Value>,
}

pub async fn record_event(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    require(&principal, Action::WriteTelemetry)?;
    let body = body.map_err(body_rejection)?;
    let event: FieldEvent = serde_json::from_slice(&body)
        .map_err(|e| ApiError::unprocessable("invalid_body", format!("the body is not a field event: {e}")))?;
    if event.kind.is_empty()
        || event.kind.len() > 64
        || !event.kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return Err(ApiError::unprocessable("invalid_body", "`kind` must be lower-case letters and underscores"));
    }
    if event.event.is_empty() || event.event.len() > 200 {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "`event` must be a non-empty id of at most 200 characters",
        ));
    }
    let (kind, id) = match &event.asset {
        Some(asset) => {
            if !principal.may_write_telemetry_of(asset) {
                return Err(ApiError::forbidden(format!("this token may not report events of asset `{asset}`")));
            }
            if !service(&state)?.knows_asset(asset).await? {
                return Err(ApiError::unprocessable(
                    "unknown_asset",
                    format!("asset `{asset}` is not in the installed base"),
                ));
            }
            ("asset", asset.clone())
        }
        None => ("gateway", principal.actor.clone()),
    };
    let mut details = event.details;
    details.insert("event".into(), Value::String(event.event.clone()));
    let action = format!("device.{}", event.kind);
    let recorded =
        state.store.record_event(&principal.actor, &action, kind, &id, &event.event, Value::Object(details)).await?;
    Ok(Json(json!({"recorded": recorded})))
}
