//! `POST /api/v1/telemetry` (JSON batch) and `POST /api/v1/write` (line protocol):
//! decode, check the device binding, hand the batch to the ingest service, shape the
//! report.
//!
//! Batch ids are scoped to the sender (the token): the same id from two senders names
//! two batches. A reused id is a retry only if the request is the same (its SHA-256
//! digest); with other content the reply is 422 `batch_id_reused` and nothing is written.

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
use ingest::{Batch, BatchRef, Precision, Rejected, SeriesSamples};
use model::sample::{Quality, Sample, SeriesKey};
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

/// The JSON batch: samples grouped by series, columns per series.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBatch {
    #[serde(default)]
    batch_id: Option<String>,
    /// Data queued at the edge during an outage and replayed now.
    #[serde(default)]
    historical: bool,
    series: Vec<SeriesColumns>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesColumns {
    asset: String,
    signal: String,
    /// Milliseconds since the epoch, UTC.
    timestamps: Vec<i64>,
    /// `null` stands for a missing value (rejected as not finite).
    values: Vec<Option<f64>>,
    /// OPC UA status codes; omitted means all good.
    #[serde(default)]
    qualities: Vec<u32>,
}

/// A decoded JSON batch.
pub struct Decoded {
    pub batch_id: Option<String>,
    pub historical: bool,
    pub series: SeriesSamples,
}

/// Decodes a JSON telemetry batch (public for the fuzz target).
pub fn decode_batch(body: &[u8]) -> ApiResult<Decoded> {
    let batch: JsonBatch = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::bad_request(format!("the body is not valid JSON: {e}"))
        } else {
            ApiError::unprocessable("invalid_body", format!("the body is not a telemetry batch: {e}"))
        }
    })?;
    let mut series = Vec::with_capacity(batch.series.len());
    for (i, columns) in batch.series.into_iter().enumerate() {
        let n = columns.timestamps.len();
        if columns.values.len() != n || !(columns.qualities.is_empty() || columns.qualities.len() == n) {
            return Err(ApiError::unprocessable(
                "invalid_body",
                format!(
                    "series[{i}] ({}#{}): timestamps, values and qualities must have the same length",
                    columns.asset, columns.signal
                ),
            ));
        }
        let samples = (0..n)
            .map(|k| Sample {
                ts: columns.timestamps[k],
                value: columns.values[k].unwrap_or(f64::NAN),
                quality: columns.qualities.get(k).map_or(Quality::GOOD, |q| Quality(*q)),
            })
            .collect();
        series.push((SeriesKey::new(columns.asset, columns.signal), samples));
    }
    Ok(Decoded { batch_id: batch.batch_id, historical: batch.historical, series })
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
    let digest = digest(&[b"json", query_id, &body]);
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
    let digest = digest(&[b"line protocol", precision_name, &body]);
    let batch = Decoded { batch_id: params.batch_id, historical: false, series };
    let request = Request { batch, digest, atomic: params.atomic, malformed };
    ingest(&state, &principal, request, &line_of).await
}
