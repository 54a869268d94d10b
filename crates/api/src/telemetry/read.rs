//! The query endpoints: a series' raw or aggregated range, the latest sample of every
//! signal of an asset, an asset's window (every signal, what the technician's copilot
//! shows) and a counter's advance.
//!
//! Raw windows are bounded (`MAX_RAW_WINDOW_MS`): a raw read decodes every sample in it,
//! so a caller asking for all of history could exhaust the hub's memory. Longer ranges
//! are read aggregated (`bucket_ms`), which is answered from rollups.

use super::service;
use crate::AppState;
use crate::columns;
use crate::error::{ApiError, ApiResult};
use crate::records::require;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ingest::{Ingest, SeriesSpec};
use model::sample::{Millis, SeriesKey};
use model::{Action, Kind, Principal};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The longest raw window one request may read: one day.
pub const MAX_RAW_WINDOW_MS: Millis = 24 * 3_600_000;
/// The longest window of a counter's advance: 31 days (a billing month).
pub const MAX_COUNTER_WINDOW_MS: Millis = 31 * 24 * 3_600_000;
/// The default window: the last hour.
const DEFAULT_WINDOW_MS: Millis = 3_600_000;

/// Query parameters of the read endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    pub(super) asset: String,
    signal: Option<String>,
    /// Milliseconds since the epoch; default one hour before `to`.
    from: Option<Millis>,
    /// Milliseconds since the epoch (exclusive); default now.
    to: Option<Millis>,
    /// Aggregate into buckets of this many milliseconds.
    bucket_ms: Option<Millis>,
}

/// A read request that passed the permission and scope checks.
pub(super) struct Read<'a> {
    pub service: &'a Ingest,
    pub params: ReadParams,
    pub from: Millis,
    pub to: Millis,
}

impl Read<'_> {
    /// The series named by `asset` and `signal` (for endpoints that need a signal).
    fn series(&self) -> ApiResult<SeriesKey> {
        let signal = self.params.signal.clone().ok_or_else(|| ApiError::bad_request("`signal` is required"))?;
        Ok(SeriesKey::new(self.params.asset.clone(), signal))
    }

    /// Refuses raw windows longer than `limit`.
    fn bounded(&self, limit: Millis, what: &str) -> ApiResult<()> {
        if self.to - self.from > limit {
            return Err(ApiError::bad_request(format!(
                "{what} may span at most {} hours (asked: {} ms from {} to {}); read longer ranges aggregated with `bucket_ms` (e.g. bucket_ms=3600000 for hourly buckets) or in several requests",
                limit / 3_600_000,
                (self.to as i128) - (self.from as i128),
                self.from,
                self.to
            ))
            .with_details(json!({"max_window_ms": limit})));
        }
        Ok(())
    }
}

/// Checks the read permission, that the asset is visible in the caller's scope, and the
/// time window (defaults, order, arithmetic on the caller's numbers).
pub(super) async fn readable<'a>(
    state: &'a AppState,
    principal: &Principal,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<Read<'a>> {
    require(principal, Action::ReadTelemetry)?;
    let service = service(state)?;
    let params = crate::records::query_params(params)?;
    if state.store.get(&principal.scope(), Kind::Asset, &params.asset).await?.is_none() {
        return Err(ApiError::not_found(format!("asset `{}` does not exist", params.asset)));
    }
    let to = match params.to {
        Some(to) => to,
        None => state.clock.now_ms().saturating_add(1),
    };
    let from = match params.from {
        Some(from) => from,
        None => to
            .checked_sub(DEFAULT_WINDOW_MS)
            .ok_or_else(|| ApiError::bad_request("`to` is too early for a default one-hour window; give `from`"))?,
    };
    if from >= to {
        return Err(ApiError::bad_request("`from` must be before `to`"));
    }
    if to.checked_sub(from).is_none() {
        return Err(ApiError::bad_request("`from` and `to` are too far apart to be a time window"));
    }
    Ok(Read { service, params, from, to })
}

/// A JSON response body written by hand (see `columns`).
fn json_bytes(bytes: Vec<u8>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> tsdb::Result<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?.map_err(ApiError::internal)
}

/// `GET /api/v1/telemetry/range?asset&signal[&from&to&bucket_ms]`: raw or aggregated.
pub async fn range(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<Response> {
    let read = readable(&state, &principal, params).await?;
    let (key, from, to) = (read.series()?, read.from, read.to);
    let tsdb = read.service.tsdb().clone();
    let lookup = key.clone();
    let mut body = json!({"series": key.to_string(), "from": from, "to": to});
    match read.params.bucket_ms {
        Some(width) if width > 0 => {
            if (to - from) / width > 100_000 {
                return Err(ApiError::bad_request(format!(
                    "{} buckets of {width} ms are too many (at most 100,000); use wider buckets",
                    (to - from) / width
                )));
            }
            let aggregated = blocking(move || tsdb.aggregate(&lookup, from, to, width)).await?;
            body["rollups"] = json!(match aggregated.resolution {
                Some(tsdb::Resolution::Minute) => "minute",
                Some(tsdb::Resolution::Hour) => "hour",
                None => "none",
            });
            body["buckets"] = json!(
                aggregated
                    .buckets
                    .iter()
                    .map(|b| json!({"start": b.start, "count": b.count, "min": b.min, "max": b.max,
                "mean": b.mean(), "first": b.first, "last": b.last}))
                    .collect::<Vec<_>>()
            );
        }
        Some(_) => return Err(ApiError::bad_request("bucket_ms must be positive")),
        None => {
            read.bounded(MAX_RAW_WINDOW_MS, "a raw range")?;
            let samples = blocking(move || tsdb.range(&lookup, from, to)).await?;
            let mut out = Vec::new();
            out.extend_from_slice(b"{\"series\":");
            columns::write_str(&mut out, &key.to_string());
            out.extend_from_slice(format!(",\"from\":{from},\"to\":{to},\"samples\":").as_bytes());
            columns::write_columns(&mut out, &samples);
            out.push(b'}');
            return Ok(json_bytes(out));
        }
    }
    Ok(Json(body).into_response())
}

/// `GET /api/v1/telemetry/latest?asset`: the newest sample of every signal of an asset.
pub async fn latest(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let read = readable(&state, &principal, params).await?;
    let tsdb = read.service.tsdb().clone();
    let asset = read.params.asset.clone();
    let latest = blocking(move || {
        tsdb.series_of_asset(&asset)
            .into_iter()
            .map(|key| Ok((key.clone(), tsdb.latest(&key)?)))
            .collect::<tsdb::Result<Vec<_>>>()
    })
    .await?;
    let signals: serde_json::Map<String, Value> = latest
        .into_iter()
        .filter_map(|(key, s)| {
            Some((key.signal, json!({"timestamp": s?.ts, "value": s?.value, "quality": s?.quality.0})))
        })
        .collect();
    Ok(Json(json!({"asset": read.params.asset, "signals": signals})))
}

/// `GET /api/v1/telemetry/asset?asset[&from&to]`: every signal of an asset over a window
/// (default the last hour, at most `MAX_RAW_WINDOW_MS`) — what the technician's copilot shows.
pub async fn asset_window(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<Response> {
    let read = readable(&state, &principal, params).await?;
    read.bounded(MAX_RAW_WINDOW_MS, "an asset window")?;
    let (from, to) = (read.from, read.to);
    let tsdb = read.service.tsdb().clone();
    let keys = tsdb.series_of_asset(&read.params.asset); // in signal order
    // Reading and formatting an hour of 20 signals is milliseconds of CPU: the signals
    // are split over the cores, each part read and written on a blocking thread, and the
    // parts joined in order.
    let parts = keys.len().clamp(1, window_parallelism());
    let per_part = keys.len().div_ceil(parts).max(1);
    // The first part starts with the envelope, so that its buffer becomes the body.
    let mut head = Vec::new();
    head.extend_from_slice(b"{\"asset\":");
    columns::write_str(&mut head, &read.params.asset);
    head.extend_from_slice(format!(",\"from\":{from},\"to\":{to},\"signals\":{{").as_bytes());
    let mut tasks = Vec::with_capacity(parts);
    let mut keys = keys.into_iter().peekable();
    while tasks.is_empty() || keys.peek().is_some() {
        let part: Vec<SeriesKey> = keys.by_ref().take(per_part).collect();
        let (tsdb, mut out) = (tsdb.clone(), std::mem::take(&mut head));
        tasks.push(tokio::task::spawn_blocking(move || -> tsdb::Result<Vec<u8>> {
            let ranges = part.iter().map(|key| tsdb.range(key, from, to)).collect::<tsdb::Result<Vec<_>>>()?;
            out.reserve(ranges.iter().map(|r| columns::estimate(r.len())).sum());
            for (i, (key, samples)) in part.iter().zip(&ranges).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                columns::write_named(&mut out, &key.signal, samples);
            }
            Ok(out)
        }));
    }
    let mut parts = Vec::with_capacity(tasks.len());
    for task in tasks {
        parts.push(task.await.map_err(ApiError::internal)?.map_err(ApiError::internal)?);
    }
    let mut parts = parts.into_iter();
    let mut out = parts.next().unwrap_or_default();
    let rest: Vec<Vec<u8>> = parts.filter(|p| !p.is_empty()).collect();
    out.reserve(rest.iter().map(|p| p.len() + 1).sum::<usize>() + 2);
    for part in rest {
        out.push(b',');
        out.extend_from_slice(&part);
    }
    out.extend_from_slice(b"}}");
    Ok(json_bytes(out))
}

/// How many parts an asset window is read and written in: the cores, at most four.
fn window_parallelism() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
}

/// `GET /api/v1/telemetry/counter?asset&signal&from&to`: how much a counter advanced,
/// with resets and the model's rollover handled (windows of at most 31 days).
pub async fn counter(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let read = readable(&state, &principal, params).await?;
    read.bounded(MAX_COUNTER_WINDOW_MS, "a counter's window")?;
    let (key, from, to, service) = (read.series()?, read.from, read.to, read.service);
    let rollover = match service.catalog().spec(&key) {
        Ok(SeriesSpec::Counter { rollover }) => rollover,
        _ => {
            return Err(ApiError::unprocessable(
                "not_a_counter",
                format!("`{key}` is not a counter of the asset's model"),
            ));
        }
    };
    let tsdb = service.tsdb().clone();
    let lookup = key.clone();
    let samples = blocking(move || tsdb.range(&lookup, from, to)).await?;
    let delta = tsdb::counter_delta(&samples, rollover);
    Ok(Json(json!({"series": key.to_string(), "from": from, "to": to, "delta": delta.delta, "resets": delta.resets,
        "first_timestamp": delta.first_ts, "last_timestamp": delta.last_ts})))
}
