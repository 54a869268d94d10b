//! Store errors, classified so that callers can map them to HTTP statuses and CLI exits.

use model::{FieldError, Kind};
use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{kind} `{id}` does not exist")]
    NotFound { kind: Kind, id: String },
    #[error("{kind} `{id}` already exists")]
    AlreadyExists { kind: Kind, id: String },
    #[error("{kind} `{id}` is at version {actual}, not {expected}; re-read it and retry")]
    VersionConflict { kind: Kind, id: String, expected: i64, actual: i64 },
    #[error("{kind} `{id}` is invalid: {}", join(errors))]
    Invalid { kind: Kind, id: String, errors: Vec<FieldError> },
    #[error("{kind} `{id}` field `{field}` refers to {target_kind} `{target_id}`, which does not exist")]
    DanglingReference { kind: Kind, id: String, field: String, target_kind: Kind, target_id: String },
    #[error("{kind} `{id}` is still referenced by {}; change or delete those first", list(by))]
    StillReferenced { kind: Kind, id: String, by: Vec<(Kind, String)> },
    #[error("idempotency key `{key}` was used concurrently")]
    IdempotencyRace { key: String },
    #[error("the store is busy (locked by another writer); retry")]
    Busy,
    #[error("the data directory was written by a newer Treaty (schema version {found}, this build knows {known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("record store failure: {0}")]
    Internal(String),
}

impl Error {
    /// Worth retrying unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Busy | Error::IdempotencyRace { .. })
    }

    /// The caller's mistake (4xx), as opposed to ours or the environment's.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Busy | Error::Internal(_) | Error::SchemaTooNew { .. })
    }
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn list(by: &[(Kind, String)]) -> String {
    let shown: Vec<String> = by.iter().take(5).map(|(k, id)| format!("{k} `{id}`")).collect();
    let more = by.len().saturating_sub(5);
    if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") }
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => Error::Busy,
            _ => Error::Internal(error.to_string()),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::Internal(format!("stored JSON: {error}"))
    }
}
