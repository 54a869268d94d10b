//! The embedded SQLite record store: one file `records.db` in the data directory, WAL
//! mode with `synchronous = FULL` so that a committed write survives power loss, and a
//! busy timeout so that CLI commands can write while the hub serves.

mod apply;
mod schema;

use crate::audit::{RawEntry, Verifier};
use crate::{
    Applied, AuditEntry, AuditReport, Error, IdempotencyRecord, ListQuery, Page, RecordStore, Result, Stored,
    TokenRecord, WriteBatch,
};
use async_trait::async_trait;
use model::{Entity, Kind, Role, Scope, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// File name of the records database inside the data directory.
pub const FILE_NAME: &str = "records.db";

/// SQLite-backed `RecordStore`. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The only connection that writes: SQLite has one writer at a time anyway, and one
    /// connection lets `apply` hold a transaction without lock upgrades.
    writer: Mutex<Connection>,
    /// Reads go through their own connection so that WAL lets them run beside a write.
    reader: Mutex<Connection>,
    path: PathBuf,
    /// Stamps rows and audit entries (the hub's clock; the system clock by default).
    clock: model::ClockRef,
    /// Counts this process's write transactions (see `RecordStore::commits`).
    commits: tokio::sync::watch::Sender<u64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir` and runs pending migrations.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Self::open_with_clock(data_dir, model::SystemClock::shared())
    }

    /// `open`, with the clock that stamps rows and audit entries.
    pub fn open_with_clock(data_dir: &Path, clock: model::ClockRef) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::Internal(format!("cannot create data directory {}: {e}", data_dir.display())))?;
        let path = data_dir.join(FILE_NAME);
        let mut writer = connect(&path)?;
        migrate(&mut writer)?;
        let reader = connect(&path)?;
        let (commits, _) = tokio::sync::watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner { writer: Mutex::new(writer), reader: Mutex::new(reader), path, clock, commits }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        blocking(move || {
            let conn = inner.reader.lock().map_err(|_| Error::Internal("reader lock poisoned".into()))?;
            f(&conn)
        })
        .await
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        let result = blocking(move || {
            let mut conn = inner.writer.lock().map_err(|_| Error::Internal("writer lock poisoned".into()))?;
            f(&mut conn)
        })
        .await;
        if result.is_ok() {
            self.inner.commits.send_modify(|n| *n += 1);
        }
        result
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("store task failed: {e}")))?
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL syncs the WAL on every commit: a committed write survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let known = schema::MIGRATIONS.len() as i64;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > known {
        return Err(Error::SchemaTooNew { found: current, known });
    }
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tracing::info!(version = i + 1, "applied records schema migration");
    }
    tx.commit()?;
    Ok(())
}

/// The WHERE fragment that limits a kind's rows to what `scope` may see.
fn scope_clause(scope: &Scope, kind: Kind, params: &mut Vec<String>) -> &'static str {
    match scope {
        Scope::All => "",
        Scope::Customer(_) if !kind.is_customer_visible() => " AND 0",
        Scope::Customer(customer) if kind.is_customer_owned() => {
            params.push(customer.clone());
            " AND customer = ?"
        }
        Scope::Customer(_) => "",
    }
}

fn stored_from_row(kind: Kind, body: &str, version: i64, updated_at: i64) -> Result<Stored> {
    let entity = Entity::from_json(kind, serde_json::from_str(body)?)?;
    Ok(Stored { entity, version, updated_at: Timestamp(updated_at) })
}

fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(TokenRecord, String)> {
    let role: String = row.get(2)?;
    let record = TokenRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        role: Role::Admin,
        customer: row.get(3)?,
        assets: serde_json::from_str(&row.get::<_, String>(7)?).unwrap_or_default(),
        hash: row.get(4)?,
        created_at: Timestamp(row.get(5)?),
        revoked_at: row.get::<_, Option<i64>>(6)?.map(Timestamp),
    };
    Ok((record, role))
}

fn with_role((mut record, role): (TokenRecord, String)) -> Result<TokenRecord> {
    record.role = Role::parse(&role).map_err(Error::Internal)?;
    Ok(record)
}

const TOKEN_COLUMNS: &str = "id, name, role, customer, hash, created_at, revoked_at, assets";

#[async_trait]
impl RecordStore for SqliteStore {
    async fn get(&self, scope: &Scope, kind: Kind, id: &str) -> Result<Option<Stored>> {
        let (scope, id) = (scope.clone(), id.to_owned());
        self.read(move |conn| {
            let mut params = vec![kind.as_str().to_owned(), id];
            let clause = scope_clause(&scope, kind, &mut params);
            let sql = format!("SELECT body, version, updated_at FROM entity WHERE kind = ? AND id = ?{clause}");
            let row = conn
                .query_row(&sql, rusqlite::params_from_iter(&params), |r| {
                    Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            row.map(|(body, version, at)| stored_from_row(kind, &body, version, at)).transpose()
        })
        .await
    }

    async fn list(&self, scope: &Scope, query: &ListQuery) -> Result<Page> {
        let (scope, query) = (scope.clone(), query.clone());
        self.read(move |conn| {
            let kind = query.kind;
            let limit = query.limit.clamp(1, 1000);
            let mut params = vec![kind.as_str().to_owned()];
            let mut sql = String::from("SELECT body, version, updated_at, id FROM entity WHERE kind = ?");
            sql.push_str(scope_clause(&scope, kind, &mut params));
            for (column, value) in [("customer", &query.customer), ("parent", &query.parent), ("model", &query.model)] {
                if let Some(value) = value {
                    sql.push_str(&format!(" AND {column} = ?"));
                    params.push(value.clone());
                }
            }
            if let Some(prefix) = &query.prefix {
                sql.push_str(" AND substr(id, 1, length(?)) = ?");
                params.extend([prefix.clone(), prefix.clone()]);
            }
            if let Some(after) = &query.after {
                sql.push_str(" AND id > ?");
                params.push(after.clone());
            }
            sql.push_str(&format!(" ORDER BY id LIMIT {}", limit + 1));
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(&params), |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))
            })?;
            let mut items = Vec::new();
            let mut next = None;
            for row in rows {
                let (body, version, at, id) = row?;
                if items.len() == limit {
                    next = items.last().map(|s: &Stored| s.entity.id().to_owned());
                    let _ = id;
                    break;
                }
                items.push(stored_from_row(kind, &body, version, at)?);
            }
            Ok(Page { items, next })
        })
        .await
    }

    async fn snapshot(&self) -> Result<Vec<Stored>> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT kind, body, version, updated_at FROM entity ORDER BY kind, id")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (kind, body, version, at) = row?;
                let kind =
                    Kind::parse(&kind).ok_or_else(|| Error::Internal(format!("unknown kind `{kind}` in store")))?;
                out.push(stored_from_row(kind, &body, version, at)?);
            }
            Ok(out)
        })
        .await
    }

    async fn apply(&self, batch: WriteBatch) -> Result<Applied> {
        let now = self.inner.clock.now_ms();
        self.write(move |conn| apply::apply(conn, batch, now)).await
    }

    async fn idempotency(&self, principal: &str, key: &str) -> Result<Option<IdempotencyRecord>> {
        let (principal, key) = (principal.to_owned(), key.to_owned());
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT request_hash, status, body FROM idempotency WHERE principal = ? AND key = ?",
                    params![principal, key],
                    |r| {
                        Ok(IdempotencyRecord {
                            principal: principal.clone(),
                            key: key.clone(),
                            request_hash: r.get(0)?,
                            status: r.get(1)?,
                            body: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    async fn create_token(&self, actor: &str, token: TokenRecord) -> Result<()> {
        let actor = actor.to_owned();
        let now = self.inner.clock.now_ms();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let inserted = tx.execute(
                &format!("INSERT OR IGNORE INTO token ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)"),
                params![
                    token.id,
                    token.name,
                    token.role.as_str(),
                    token.customer,
                    token.hash,
                    token.created_at.0,
                    serde_json::to_string(&token.assets)?
                ],
            )?;
            if inserted == 0 {
                return Err(Error::Internal(format!("token id `{}` already exists", token.id)));
            }
            let after = serde_json::json!({"id": token.id, "name": token.name, "role": token.role,
                "customer": token.customer, "assets": token.assets});
            apply::append_audit(
                &tx,
                apply::By { actor: &actor, at: now },
                "token.create",
                "token",
                &token.id,
                None,
                Some(after.to_string()),
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.query_row(&format!("SELECT {TOKEN_COLUMNS} FROM token WHERE id = ?"), [id], token_from_row)
                .optional()?
                .map(with_role)
                .transpose()
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM token ORDER BY created_at, id"))?;
            let rows = stmt.query_map([], token_from_row)?;
            rows.map(|r| with_role(r?)).collect()
        })
        .await
    }

    async fn revoke_token(&self, actor: &str, id: &str) -> Result<bool> {
        let (actor, id) = (actor.to_owned(), id.to_owned());
        let now = self.inner.clock.now_ms();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let changed =
                tx.execute("UPDATE token SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", params![now, id])?;
            if changed == 1 {
                apply::append_audit(
                    &tx,
                    apply::By { actor: &actor, at: now },
                    "token.revoke",
                    "token",
                    &id,
                    None,
                    None,
                )?;
            }
            tx.commit()?;
            Ok(changed == 1)
        })
        .await
    }

    async fn record_event(
        &self,
        actor: &str,
        action: &str,
        kind: &str,
        id: &str,
        event: &str,
        details: serde_json::Value,
    ) -> Result<bool> {
        let (actor, action, kind, id, event) =
            (actor.to_owned(), action.to_owned(), kind.to_owned(), id.to_owned(), event.to_owned());
        let now = self.inner.clock.now_ms();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let seen: bool = tx
                .prepare_cached("SELECT 1 FROM field_event WHERE actor = ? AND event = ?")?
                .exists(params![actor, event])?;
            if !seen {
                let seq = apply::append_audit(
                    &tx,
                    apply::By { actor: &actor, at: now },
                    &action,
                    &kind,
                    &id,
                    None,
                    Some(details.to_string()),
                )?;
                tx.execute(
                    "INSERT INTO field_event (actor, event, audit_seq) VALUES (?, ?, ?)",
                    params![actor, event, seq as i64],
                )?;
            }
            tx.commit()?;
            Ok(!seen)
        })
        .await
    }

    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        let limit = limit.clamp(1, 1000);
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {} FROM audit WHERE seq > ? ORDER BY seq LIMIT {limit}",
                apply::AUDIT_COLUMNS
            ))?;
            let rows = stmt.query_map([after as i64], apply::raw_entry)?;
            rows.map(|r| Ok(r?.into_entry())).collect()
        })
        .await
    }

    async fn audit_head(&self) -> Result<u64> {
        self.read(|conn| {
            Ok(conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |r| r.get::<_, i64>(0))? as u64)
        })
        .await
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    async fn verify_audit(&self) -> Result<AuditReport> {
        self.read(|conn| {
            let mut verifier = Verifier::new();
            let mut stmt = conn.prepare(&format!("SELECT {} FROM audit ORDER BY seq", apply::AUDIT_COLUMNS))?;
            for row in stmt.query_map([], apply::raw_entry)? {
                let entry: RawEntry = row?;
                verifier.check(&entry);
            }
            Ok(verifier.finish(apply::audit_anchor(conn)?))
        })
        .await
    }

    async fn ready(&self) -> Result<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }
}
