//! `POST /api/v1/telemetry` (JSON batch) and `POST /api/v1/write` (line protocol):
//! decode, check the device binding, hand the batch to the ingest service, shape the
//! report.
//!
//! Batch ids are scoped to the sender (the token): the same id from two senders names
//! two batches. A reused id is a retry only if the request is the same (its SHA-256
//! digest); with other content the reply is 422 `batch_id_reused` and nothing is written.

use super::batch::{Decoded, decode_batch};
use super::service;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::records::{body_rejection, require};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ingest::{Batch, BatchRef, Precision, Rejected};
use model::{Action, Principal};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// `?atomic=true` refuses the whole batch when any sample is rejected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    #[serde(default)]
    atomic: bool,
    /// Line protocol only: `ns` (default), `us`, `ms` or `s`.
    precision: Option<String>,
    /// A batch id for retries (the JSON body may carry its own instead).
    batch_id: Option<String>,
}

fn rejection_json(r: &Rejected, line: Option<usize>) -> Value {
    let mut v = json!({"series": r.key.to_string(), "index": r.index, "timestamp": r.ts, "code": r.reason.code(), "reason": r.reason.message(&r.key)});
    if let Some(line) = line {
        v["line"] = json!(line);
    }
    v
}

/// SHA-256 of what makes a request what it is: its kind, the parameters that change
/// how the body reads, and the body.
fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// A request's batch, before the service sees it.
struct Request {
    batch: Decoded,
    digest: [u8; 32],
    atomic: bool,
    /// Lines the decoder could not read (line protocol), reported beside rejections.
    malformed: Vec<Value>,
}

/// Checks the device binding, hands the batch to the ingest service and builds the report.
async fn ingest(
    state: &AppState,
    principal: &Principal,
    request: Request,
    line_of: &(dyn Fn(&Rejected) -> Option<usize> + Sync),
) -> ApiResult<Response> {
    let Request { batch: Decoded { batch_id, historical, series }, digest, atomic, malformed } = request;
    let service = service(state)?;
    if let Some((key, _)) = series.iter().find(|(key, _)| !principal.may_write_telemetry_of(&key.asset)) {
        return Err(ApiError::forbidden(format!(
            "this token may not write telemetry of asset `{}` (series `{key}`); nothing was written",
            key.asset
        )));
    }
    let batch = Batch {
        sender: principal.actor.clone(),
        id: batch_id.clone().map(|id| BatchRef { id, digest }),
        historical,
        series,
        // Malformed lines count as rejections for `?atomic=true`.
        atomic: atomic && malformed.is_empty(),
    };
    if atomic && !malformed.is_empty() {
        return Ok(refused(malformed));
    }
    let report = service.ingest(batch).await?;
    let mut rejections = malformed;
    rejections.extend(report.rejected.iter().map(|r| rejection_json(r, line_of(r))));
    let Some(outcome) = report.written.or_else(|| (!atomic || rejections.is_empty()).then(Default::default)) else {
        return Ok(refused(rejections));
    };
    let body = json!({
        "batch_id": batch_id,
        "stored": outcome.stored,
        "duplicates": outcome.duplicates,
        "replaced": outcome.replaced,
        "replayed_batch": outcome.replayed_batch,
        "rejected": rejections,
    });
    Ok(Json(body).into_response())
}

fn refused(rejections: Vec<Value>) -> Response {
    let message =
        format!("{} sample(s) were rejected and ?atomic=true was asked: nothing was written", rejections.len());
    let body = json!({"error": {"code": "batch_rejected", "message": message, "details": {"rejected": rejections}}});
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// `POST /api/v1/telemetry`: the JSON batch.
pub async fn write_json(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<IngestParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    require(&principal, Action::WriteTelemetry)?;
    let params = crate::records::query_params(params)?;
    let body = body.map_err(body_rejection)?;
    let mut batch = decode_batch(&body)?;
    let query_id = params.batch_id.as_deref().unwrap_or_default().as_bytes();
    // The digest only matters for a batch with an id (retries); most small writes have none.
    let digest = if batch.batch_id.is_some() || params.batch_id.is_some() {
        digest(&[b"json", query_id, &body])
    } else {
        [0; 32]
    };
    batch.batch_id = batch.batch_id.or(params.batch_id);
    let request = Request { batch, digest, atomic: params.atomic, malformed: Vec::new() };
    ingest(&state, &principal, request, &|_| None).await
}

/// `POST /api/v1/write`: the InfluxDB line protocol.
pub async fn write_line_protocol(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<IngestParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    require(&principal, Action::WriteTelemetry)?;
    let params = crate::records::query_params(params)?;
    let precision = match params.precision.as_deref() {
        None => Precision::Nanoseconds,
        Some(p) => Precision::parse(p)
            .ok_or_else(|| ApiError::bad_request(format!("precision `{p}` must be ns, us, ms or s")))?,
    };
    let body = body.map_err(body_rejection)?;
    let text = std::str::from_utf8(&body).map_err(|e| {
        let line = body[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
        ApiError::bad_request(format!("line {line}: the body is not UTF-8 text")).with_details(json!({"line": line}))
    })?;
    let now = state.clock.now_ms();
    let (parsed, errors) = ingest::parse_line_protocol(text, precision, now);
    if parsed.is_empty() && !errors.is_empty() {
        let first = &errors[0];
        return Err(ApiError::bad_request(format!("line {}: {}", first.line, first.message)).with_details(
            json!({"errors": errors.iter().map(|e| json!({"line": e.line, "reason": e.message})).collect::<Vec<_>>()}),
        ));
    }
    let malformed: Vec<Value> =
        errors.iter().map(|e| json!({"line": e.line, "code": "malformed_line", "reason": e.message})).collect();
    let mut lines = std::collections::HashMap::new();
    let mut series = Vec::with_capacity(parsed.len());
    for (key, samples, line_numbers) in parsed {
        lines.insert(key.clone(), line_numbers);
        series.push((key, samples));
    }
    let line_of = move |r: &Rejected| lines.get(&r.key).and_then(|l| l.get(r.index)).copied();
    let precision_name = params.precision.as_deref().unwrap_or("ns").as_bytes();
    let digest = if params.batch_id.is_some() { digest(&[b"line protocol", precision_name, &body]) } else { [0; 32] };
    let batch = Decoded { batch_id: params.batch_id, historical: false, series };
    let request = Request { batch, digest, atomic: params.atomic, malformed };
    ingest(&state, &principal, request, &line_of).await
}
