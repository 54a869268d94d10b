//! Records persistence: the `RecordStore` trait that domain code talks to, and its
//! embedded SQLite implementation.
//!
//! The trait is small on purpose: read one record, list a page, take a snapshot, apply a
//! batch of changes atomically, and keep tokens, idempotency keys and the audit chain.
//! Every read takes a `Scope`, and the implementation applies it inside its query, so a
//! customer-viewer's request cannot see another tenant's rows whatever a handler does.
//! Every write goes through `apply`, which validates, checks references, appends the
//! audit chain and stores the idempotency record in the same transaction.

mod audit;
mod error;
pub mod feed;
mod sqlite;
mod sync;
mod types;

pub use audit::{AuditEntry, AuditReport, GENESIS_HASH};
pub use error::{Error, Result};
pub use sqlite::SqliteStore;
pub use sync::{SyncPlan, plan_sync};
pub use types::{Applied, Change, IdempotencyRecord, ListQuery, Page, Stored, TokenRecord, WriteBatch};

use async_trait::async_trait;
use model::{Kind, Scope};
use std::sync::Arc;

/// The records store behind every Treaty process. Implementations: SQLite (embedded
/// default); PostgreSQL arrives with the scale-out issue and must pass the same
/// conformance suite (`tests/it/conformance.rs`).
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// One record, if it exists and `scope` may see it.
    async fn get(&self, scope: &Scope, kind: Kind, id: &str) -> Result<Option<Stored>>;
    /// One page of records of a kind, filtered, ordered by id.
    async fn list(&self, scope: &Scope, query: &ListQuery) -> Result<Page>;
    /// Every record of every kind, unscoped: for the importer's diff. Never expose it to a
    /// scoped caller.
    async fn snapshot(&self) -> Result<Vec<Stored>>;
    /// Applies all changes or none, appends one audit entry per effective change, and
    /// records the idempotency key if given.
    async fn apply(&self, batch: WriteBatch) -> Result<Applied>;
    /// The stored response for an idempotency key of one principal.
    async fn idempotency(&self, principal: &str, key: &str) -> Result<Option<IdempotencyRecord>>;
    /// Stores a new API token (only its hash) and audits it.
    async fn create_token(&self, actor: &str, token: TokenRecord) -> Result<()>;
    /// A token by its public id, revoked or not.
    async fn token(&self, id: &str) -> Result<Option<TokenRecord>>;
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Marks a token revoked; false if no such active token.
    async fn revoke_token(&self, actor: &str, id: &str) -> Result<bool>;
    /// Appends an event reported from the field (an interlock's write, data an edge
    /// gateway had to drop) to the audit trail as `action` on `kind`/`id`. `event` is the
    /// sender's unique id for it: the same actor reporting the same id again (a retry)
    /// adds nothing; the lookup is by (actor, event id) in an index of its own, so it
    /// costs the same however long the audit log is. Returns whether it was new.
    async fn record_event(
        &self,
        actor: &str,
        action: &str,
        kind: &str,
        id: &str,
        event: &str,
        details: serde_json::Value,
    ) -> Result<bool>;
    /// Audit entries with `seq > after`, oldest first.
    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>>;
    /// The sequence of the newest audit entry (0 when there is none).
    async fn audit_head(&self) -> Result<u64>;
    /// Changes whenever this process committed something: a cheap wake-up for whoever
    /// follows the audit trail (the hub's record feed), which then reads what is new.
    /// Commits of other processes are not signalled; followers also poll.
    fn commits(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Recomputes the hash chain and reports every break.
    async fn verify_audit(&self) -> Result<AuditReport>;
    /// Cheap check that the store answers, for `/readyz`.
    async fn ready(&self) -> Result<()>;
}

/// How the rest of Treaty holds a store.
pub type RecordStoreRef = Arc<dyn RecordStore>;
