//! Telemetry over HTTP: ingest (a compact JSON batch grouped by series, and the InfluxDB
//! line protocol), queries (range, aggregated range, latest, an asset's window, counter
//! delta), a live Server-Sent Events stream, and field events from gateways.
//!
//! This module only decodes, authorises and shapes replies: validation and durable
//! writes are the `ingest` service's. Every batch is validated against the installed
//! base; the reply says how many samples were stored and lists each rejected one with
//! its reason. A device token may write only the assets it is bound to: one foreign
//! series refuses the whole batch (403).

mod batch;
mod events;
mod read;
mod stream;
mod write;

pub use batch::{Decoded, decode_batch, decode_with_serde};
pub use events::record_event;
pub use read::{MAX_COUNTER_WINDOW_MS, MAX_RAW_WINDOW_MS, asset_window, counter, latest, range};
pub use stream::stream;
pub use write::{write_json, write_line_protocol};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::http::StatusCode;
use ingest::Ingest;

fn service(state: &AppState) -> ApiResult<&Ingest> {
    state.ingest.as_deref().ok_or_else(|| ApiError::not_found("telemetry is not enabled on this hub"))
}

impl From<ingest::Error> for ApiError {
    fn from(error: ingest::Error) -> Self {
        use ingest::Error as E;
        let message = error.to_string();
        match error {
            E::BatchConflict { .. } => ApiError::unprocessable("batch_id_reused", message),
            // 507: the request was fine, the hub cannot store it now; gateways keep their
            // spool and retry (Retry-After).
            E::DiskFull(_) => {
                tracing::error!(%message, "telemetry refused: disk full");
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", message)
            }
            E::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message),
            E::Records(error) => error.into(),
            E::Storage(error) => ApiError::internal(error),
        }
    }
}
