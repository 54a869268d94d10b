//! The plain data that crosses the `RecordStore` boundary.

use model::{Entity, Kind, Role, Timestamp};

/// A record as stored: the entity plus its optimistic-concurrency version.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub entity: Entity,
    /// Starts at 1, +1 on every effective update. Send it back to update safely.
    pub version: i64,
    pub updated_at: Timestamp,
}

/// Filters and keyset pagination for `list`.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub kind: Kind,
    /// Only records of this customer.
    pub customer: Option<String>,
    /// Only direct children of this hierarchy path.
    pub parent: Option<String>,
    /// Only ids starting with this text (e.g. a site path for everything below it).
    pub prefix: Option<String>,
    /// Only assets of this asset model.
    pub model: Option<String>,
    /// Cursor: only ids after this one (the previous page's `next`).
    pub after: Option<String>,
    /// Page size; implementations clamp it to 1..=1000.
    pub limit: usize,
}

impl ListQuery {
    pub fn all(kind: Kind) -> Self {
        Self { kind, customer: None, parent: None, prefix: None, model: None, after: None, limit: 1000 }
    }
}

/// One page of records and the cursor for the next, if there is more.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Stored>,
    pub next: Option<String>,
}

/// One change in a batch.
#[derive(Debug, Clone)]
pub enum Change {
    /// Fails if the record exists.
    Create(Entity),
    /// Fails if it does not exist, or (when given) is not at `expected_version`.
    /// An update that changes nothing is a no-op: no new version, no audit entry.
    Update { entity: Entity, expected_version: Option<i64> },
    /// Fails if it does not exist, is referenced, or is not at `expected_version`.
    Delete { kind: Kind, id: String, expected_version: Option<i64> },
}

/// Changes applied in one transaction, by one actor.
#[derive(Debug, Clone)]
pub struct WriteBatch {
    /// Who, as written to the audit trail.
    pub actor: String,
    pub changes: Vec<Change>,
    /// The response to remember for an `Idempotency-Key`, stored atomically with the changes.
    pub idempotency: Option<IdempotencyRecord>,
}

/// What `apply` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    /// Changes that changed nothing (identical updates).
    pub unchanged: usize,
    /// The new version of each created or updated record, in batch order.
    pub versions: Vec<(Kind, String, i64)>,
}

/// A remembered response to a creating request.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    /// The principal's audit actor: keys are per caller.
    pub principal: String,
    pub key: String,
    /// SHA-256 of the canonical request (method, path, body).
    pub request_hash: String,
    pub status: u16,
    pub body: String,
}

/// An API token as stored: never the token itself, only its argon2 hash.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    /// Public id, derived from the token, used to find the hash.
    pub id: String,
    /// A label for people, e.g. `gateway plant-1` or `alice laptop`.
    pub name: String,
    pub role: Role,
    pub customer: Option<String>,
    /// For device tokens: asset paths or hierarchy prefixes whose telemetry it may write.
    pub assets: Vec<String>,
    /// Argon2id PHC string.
    pub hash: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}
