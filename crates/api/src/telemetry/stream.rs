//! `GET /api/v1/telemetry/stream?asset`: Server-Sent Events, one `samples` event per
//! accepted write touching the asset (`historical` for replayed edge data).
//!
//! A live reader of the ingest stream: it never holds ingest back. When it falls
//! behind what the hub keeps for live readers it says so with a `skipped` event
//! (`{"missed_writes": n}`) and goes on with the newest data. The stream ends when the
//! hub shuts down, so that a connected client never holds a shutdown up.

use super::read::{ReadParams, readable};
use crate::AppState;
use crate::columns;
use crate::error::ApiResult;
use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use model::Principal;
use model::sample::Sample;
use serde_json::json;
use std::sync::Arc;
use tsdb::{Live, LiveReader};

struct Reader {
    live: LiveReader,
    asset: String,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Reader {
    /// The next event for this asset; `None` at shutdown or when the engine closed.
    async fn next(&mut self) -> Option<Event> {
        loop {
            let next = tokio::select! {
                next = self.live.next() => next,
                () = self.shutdown.cancelled() => return None,
            };
            match next? {
                Live::Write(write) => {
                    let mine: Vec<(&str, &[Sample])> = write
                        .series
                        .iter()
                        .filter(|s| s.key.asset == self.asset)
                        .map(|s| (s.key.signal.as_str(), s.samples.as_slice()))
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let mut data = Vec::new();
                    columns::write_named_columns(&mut data, mine);
                    // Replayed edge data is its own event type, so live views can tell it
                    // from fresh samples.
                    let kind = if write.historical { "historical" } else { "samples" };
                    return Some(Event::default().event(kind).data(String::from_utf8_lossy(&data)));
                }
                Live::Skipped(missed) => {
                    return Some(Event::default().event("skipped").data(json!({"missed_writes": missed}).to_string()));
                }
            }
        }
    }
}

pub async fn stream(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> ApiResult<Response> {
    let read = readable(&state, &principal, params).await?;
    let reader = Reader { live: read.service.live(), asset: read.params.asset, shutdown: state.shutdown.clone() };
    let events = futures_util::stream::unfold(reader, |mut reader| async move {
        let event = reader.next().await?;
        Some((Ok::<_, std::convert::Infallible>(event), reader))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}
