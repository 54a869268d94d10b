//! Telemetry over HTTP: ingest (a compact JSON batch grouped by series, and the InfluxDB
//! line protocol), queries (range, aggregated range, latest, last hour, counter delta)
//! and a live Server-Sent Events stream.
//!
//! Every batch is validated against the installed base first; the reply says how many
//! samples were stored and lists each rejected one with its reason. A device token may
//! write only the assets it is bound to: one foreign series refuses the whole batch (403).

use crate::AppState;
use crate::columns;
use crate::error::{ApiError, ApiResult};
use crate::records::{body_rejection, require};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use model::sample::{Millis, Quality, Sample, SeriesKey};
use model::{Action, Kind, Principal};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tsdb::{Catalog, Precision, Rejected, Tsdb, WriteRequest};

/// Default tolerance for timestamps ahead of the hub's clock.
pub const DEFAULT_MAX_FUTURE_MS: Millis = 10 * 60 * 1000;

/// The telemetry engine plus the catalogue of valid series.
pub struct Telemetry {
    pub tsdb: Tsdb,
    catalog: RwLock<Arc<Catalog>>,
    refreshed: Mutex<Option<Instant>>,
    max_future_ms: Millis,
}

impl Telemetry {
    pub fn new(tsdb: Tsdb, max_future_ms: Millis) -> Self {
        Self { tsdb, catalog: RwLock::new(Arc::new(Catalog::default())), refreshed: Mutex::new(None), max_future_ms }
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Checks samples against the asset models (reloading the catalogue once if an asset
    /// is unknown): what may be stored, and each rejected sample with its reason. The
    /// HTTP endpoints and in-process sources (the Sparkplug host) share it.
    pub async fn validate(
        &self,
        store: &store::RecordStoreRef,
        series: SeriesSamples,
    ) -> ApiResult<(SeriesSamples, Vec<Rejected>)> {
        let mut catalog = self.catalog();
        if series.iter().any(|(key, _)| !catalog.has_asset(&key.asset)) {
            catalog = self.refresh(store, false).await?;
        }
        Ok(catalog.validate(series, now_ms(), self.max_future_ms))
    }

    /// Writes validated samples durably (acknowledged once fsync'd) and counts them.
    pub async fn write(&self, request: WriteRequest) -> ApiResult<tsdb::WriteOutcome> {
        let historical = request.historical;
        let tsdb = self.tsdb.clone();
        let outcome = tokio::task::spawn_blocking(move || tsdb.write(request))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        metrics::counter!("treaty_telemetry_samples_stored_total").increment(outcome.stored as u64);
        if historical {
            metrics::counter!("treaty_telemetry_historical_samples_stored_total").increment(outcome.stored as u64);
        }
        Ok(outcome)
    }

    /// Loads the catalogue of valid series from the store now.
    pub async fn reload(&self, store: &store::RecordStoreRef) -> ApiResult<usize> {
        Ok(self.refresh(store, true).await?.asset_count())
    }

    /// Reloads the catalogue from the store, at most once a second (unknown assets
    /// trigger it, so records imported by another process are picked up).
    async fn refresh(&self, store: &store::RecordStoreRef, force: bool) -> ApiResult<Arc<Catalog>> {
        let due = self
            .refreshed
            .lock()
            .map(|r| force || r.is_none_or(|at| at.elapsed() > Duration::from_secs(1)))
            .unwrap_or(true);
        if !due {
            return Ok(self.catalog());
        }
        let snapshot = store.snapshot().await?;
        let catalog = Arc::new(Catalog::from_entities(snapshot.iter().map(|s| &s.entity)));
        self.tsdb.set_classes(catalog.classes());
        if let Ok(mut slot) = self.catalog.write() {
            *slot = catalog.clone();
        }
        if let Ok(mut at) = self.refreshed.lock() {
            *at = Some(Instant::now());
        }
        Ok(catalog)
    }
}

fn telemetry(state: &AppState) -> ApiResult<&Telemetry> {
    state.telemetry.as_deref().ok_or_else(|| ApiError::not_found("telemetry is not enabled on this hub"))
}

fn now_ms() -> Millis {
    model::Timestamp::now().0
}

/// `?atomic=true` refuses the whole batch when any sample is rejected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    #[serde(default)]
    atomic: bool,
    /// Line protocol only: `ns` (default), `us`, `ms` or `s`.
    precision: Option<String>,
    /// Line protocol only: a batch id for retries (the JSON body carries its own).
    batch_id: Option<String>,
}

/// The JSON batch: samples grouped by series, columns per series.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
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

/// Samples grouped by series, as the engine takes them.
pub type SeriesSamples = Vec<(SeriesKey, Vec<Sample>)>;

/// A decoded JSON batch.
pub struct Decoded {
    pub batch_id: Option<String>,
    pub historical: bool,
    pub series: SeriesSamples,
}

/// Decodes a JSON telemetry batch (public for the fuzz target).
pub fn decode_batch(body: &[u8]) -> ApiResult<Decoded> {
    let batch: Batch = serde_json::from_slice(body).map_err(|e| {
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

/// Checks the device binding, validates, writes and builds the report.
async fn ingest(
    state: &AppState,
    principal: &Principal,
    batch: Decoded,
    atomic: bool,
    extra_rejections: Vec<Value>,
    line_of: &(dyn Fn(&Rejected) -> Option<usize> + Sync),
) -> ApiResult<Response> {
    let Decoded { batch_id, historical, series } = batch;
    let service = telemetry(state)?;
    if let Some((key, _)) = series.iter().find(|(key, _)| !principal.may_write_telemetry_of(&key.asset)) {
        return Err(ApiError::forbidden(format!(
            "this token may not write telemetry of asset `{}` (series `{key}`); nothing was written",
            key.asset
        )));
    }
    let (accepted, rejected) = service.validate(&state.store, series).await?;
    let mut rejections: Vec<Value> = extra_rejections;
    rejections.extend(rejected.iter().map(|r| rejection_json(r, line_of(r))));
    let submitted: usize = accepted.iter().map(|(_, s)| s.len()).sum();
    if atomic && !rejections.is_empty() {
        let body = json!({"error": {"code": "batch_rejected", "message": format!("{} sample(s) were rejected and ?atomic=true was asked: nothing was written", rejections.len()),
            "details": {"rejected": rejections}}});
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response());
    }
    let outcome = if submitted == 0 {
        tsdb::WriteOutcome::default()
    } else {
        service.write(WriteRequest { batch_id: batch_id.clone(), series: accepted, historical }).await?
    };
    metrics::counter!("treaty_telemetry_samples_rejected_total").increment(rejections.len() as u64);
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
    batch.batch_id = batch.batch_id.or(params.batch_id);
    ingest(&state, &principal, batch, params.atomic, Vec::new(), &|_| None).await
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
    let (parsed, errors) = tsdb::parse_line_protocol(text, precision, now_ms());
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
    let batch = Decoded { batch_id: params.batch_id, historical: false, series };
    ingest(&state, &principal, batch, params.atomic, malformed, &line_of).await
}

/// Query parameters of the read endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    asset: String,
    signal: Option<String>,
    /// Milliseconds since the epoch; default one hour before `to`.
    from: Option<Millis>,
    /// Milliseconds since the epoch (exclusive); default now.
    to: Option<Millis>,
    /// Aggregate into buckets of this many milliseconds.
    bucket_ms: Option<Millis>,
}

/// A read request that passed the permission and scope checks.
struct Read<'a> {
    service: &'a Telemetry,
    params: ReadParams,
    from: Millis,
    to: Millis,
}

impl Read<'_> {
    /// The series named by `asset` and `signal` (for endpoints that need a signal).
    fn series(&self) -> ApiResult<SeriesKey> {
        let signal = self.params.signal.clone().ok_or_else(|| ApiError::bad_request("`signal` is required"))?;
        Ok(SeriesKey::new(self.params.asset.clone(), signal))
    }
}

/// Checks the read permission and that the asset is visible in the caller's scope.
async fn readable<'a>(
    state: &'a AppState,
    principal: &Principal,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<Read<'a>> {
    require(principal, Action::ReadTelemetry)?;
    let service = telemetry(state)?;
    let params = crate::records::query_params(params)?;
    if state.store.get(&principal.scope(), Kind::Asset, &params.asset).await?.is_none() {
        return Err(ApiError::not_found(format!("asset `{}` does not exist", params.asset)));
    }
    let to = params.to.unwrap_or_else(|| now_ms() + 1);
    let from = params.from.unwrap_or(to - 3_600_000);
    if from >= to {
        return Err(ApiError::bad_request("`from` must be before `to`"));
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
    let tsdb = read.service.tsdb.clone();
    let lookup = key.clone();
    let mut body = json!({"series": key.to_string(), "from": from, "to": to});
    match read.params.bucket_ms {
        Some(width) if width > 0 => {
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
    let tsdb = read.service.tsdb.clone();
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
/// (default the last hour) — what the technician's copilot shows.
pub async fn asset_window(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<Response> {
    let read = readable(&state, &principal, params).await?;
    let (from, to) = (read.from, read.to);
    let tsdb = read.service.tsdb.clone();
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
/// with resets and the model's rollover handled.
pub async fn counter(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let read = readable(&state, &principal, params).await?;
    let (key, from, to, service) = (read.series()?, read.from, read.to, read.service);
    let rollover = match service.refresh(&state.store, false).await?.spec(&key) {
        Ok(tsdb::SeriesSpec::Counter { rollover }) => rollover,
        _ => {
            return Err(ApiError::unprocessable(
                "not_a_counter",
                format!("`{key}` is not a counter of the asset's model"),
            ));
        }
    };
    let tsdb = service.tsdb.clone();
    let lookup = key.clone();
    let samples = blocking(move || tsdb.range(&lookup, from, to)).await?;
    let delta = tsdb::counter_delta(&samples, rollover);
    Ok(Json(json!({"series": key.to_string(), "from": from, "to": to, "delta": delta.delta, "resets": delta.resets,
        "first_timestamp": delta.first_ts, "last_timestamp": delta.last_ts})))
}

/// `GET /api/v1/telemetry/stream?asset`: Server-Sent Events, one `samples` event per
/// accepted write touching the asset.
pub async fn stream(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<Response> {
    let read = readable(&state, &principal, params).await?;
    let receiver = read.service.tsdb.subscribe();
    let asset = read.params.asset;
    let events = futures_util::stream::unfold((receiver, asset), |(mut receiver, asset)| async move {
        loop {
            match receiver.recv().await {
                Ok(published) => {
                    let mine: Vec<(&str, &[Sample])> = published
                        .series
                        .iter()
                        .filter(|(key, _)| key.asset == asset)
                        .map(|(key, samples)| (key.signal.as_str(), samples.as_slice()))
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let mut data = Vec::new();
                    columns::write_named_columns(&mut data, mine);
                    // Replayed edge data is its own event type, so live views and rules
                    // can tell it from fresh samples.
                    let kind = if published.historical { "historical" } else { "samples" };
                    let event = Event::default().event(kind).data(String::from_utf8_lossy(&data));
                    return Some((Ok::<_, std::convert::Infallible>(event), (receiver, asset)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    let event = Event::default().event("lagged").data(json!({"missed_writes": missed}).to_string());
                    return Some((Ok(event), (receiver, asset)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

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

/// `POST /api/v1/events`: a gateway reports an interlock write or dropped data; it goes
/// into the hub's audit trail as `device.<kind>` on the asset.
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
            let catalog = telemetry(&state)?.refresh(&state.store, false).await?;
            if !catalog.has_asset(asset) {
                return Err(ApiError::unprocessable(
                    "unknown_asset",
                    format!("asset `{asset}` is not in the installed base"),
                ));
            }
            ("asset", asset.clone())
        }
        None => ("gateway", principal.actor.clone()),
    };
    let mut record = event.details;
    record.insert("event".into(), Value::String(event.event));
    let recorded = state
        .store
        .record_event(&principal.actor, &format!("device.{}", event.kind), kind, &id, Value::Object(record))
        .await?;
    Ok(Json(json!({"recorded": recorded})))
}
