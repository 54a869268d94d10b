//! One write transaction: apply a batch of changes, keep references, check integrity,
//! append the audit chain, and remember the idempotency key — all or nothing.

use crate::audit::{GENESIS_HASH, RawEntry};
use crate::{Applied, Change, Error, Result, WriteBatch};
use model::{Entity, Kind};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

pub(super) const AUDIT_COLUMNS: &str = "seq, at, actor, action, kind, entity_id, before, after, prev_hash, hash";

pub(super) fn raw_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEntry> {
    Ok(RawEntry {
        seq: r.get::<_, i64>(0)? as u64,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        kind: r.get(4)?,
        id: r.get(5)?,
        before: r.get(6)?,
        after: r.get(7)?,
        prev_hash: r.get(8)?,
        hash: r.get(9)?,
    })
}

/// The (seq, hash) anchor of the newest audit entry, kept in `meta`.
pub(super) fn audit_anchor(conn: &Connection) -> Result<Option<(u64, String)>> {
    let value: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key = 'audit_head'", [], |r| r.get(0)).optional()?;
    Ok(value.and_then(|v| {
        let (seq, hash) = v.split_once(':')?;
        Some((seq.parse().ok()?, hash.to_owned()))
    }))
}

/// Appends one chained audit entry and moves the anchor, inside the caller's transaction.
/// Who made a change, and when: what every audit entry starts with.
pub(super) struct By<'a> {
    pub actor: &'a str,
    pub at: i64,
}

pub(super) fn append_audit(
    tx: &Transaction<'_>,
    by: By<'_>,
    action: &str,
    kind: &str,
    id: &str,
    before: Option<String>,
    after: Option<String>,
) -> Result<u64> {
    let (seq, prev_hash) = match audit_anchor(tx)? {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let mut entry = RawEntry {
        seq,
        at: by.at,
        actor: by.actor.to_owned(),
        action: action.to_owned(),
        kind: kind.to_owned(),
        id: id.to_owned(),
        before,
        after,
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry.compute_hash();
    tx.execute(
        &format!("INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
        params![
            entry.seq as i64,
            entry.at,
            entry.actor,
            entry.action,
            entry.kind,
            entry.id,
            entry.before,
            entry.after,
            entry.prev_hash,
            entry.hash
        ],
    )?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('audit_head', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [format!("{}:{}", entry.seq, entry.hash)],
    )?;
    Ok(entry.seq)
}

struct Current {
    body: String,
    version: i64,
}

fn current(tx: &Transaction<'_>, kind: Kind, id: &str) -> Result<Option<Current>> {
    Ok(tx
        .query_row("SELECT body, version FROM entity WHERE kind = ? AND id = ?", params![kind.as_str(), id], |r| {
            Ok(Current { body: r.get(0)?, version: r.get(1)? })
        })
        .optional()?)
}

fn check_version(kind: Kind, id: &str, expected: Option<i64>, actual: i64) -> Result<()> {
    match expected {
        Some(expected) if expected != actual => {
            Err(Error::VersionConflict { kind, id: id.to_owned(), expected, actual })
        }
        _ => Ok(()),
    }
}

fn validate(entity: &Entity) -> Result<()> {
    let errors = entity.validate();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid { kind: entity.kind(), id: entity.id().to_owned(), errors })
    }
}

fn write_row(tx: &Transaction<'_>, entity: &Entity, body: &str, version: i64, now: i64) -> Result<()> {
    let model = match entity {
        Entity::Asset(a) => Some(a.model.as_str()),
        _ => None,
    };
    tx.execute(
        "INSERT INTO entity (kind, id, customer, parent, model, body, version, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (kind, id) DO UPDATE SET customer = excluded.customer, parent = excluded.parent,
           model = excluded.model, body = excluded.body, version = excluded.version, updated_at = excluded.updated_at",
        params![entity.kind().as_str(), entity.id(), entity.customer(), entity.parent(), model, body, version, now],
    )?;
    Ok(())
}

/// Applies a batch in one transaction; `now` stamps its rows and audit entries.
pub(super) fn apply(conn: &mut Connection, batch: WriteBatch, now: i64) -> Result<Applied> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut applied = Applied::default();
    let mut upserted: Vec<Entity> = Vec::new();
    let mut deleted: Vec<(Kind, String)> = Vec::new();
    for change in batch.changes {
        match change {
            Change::Create(entity) => {
                validate(&entity)?;
                let (kind, id) = (entity.kind(), entity.id().to_owned());
                if current(&tx, kind, &id)?.is_some() {
                    return Err(Error::AlreadyExists { kind, id });
                }
                let body = entity.to_json().to_string();
                write_row(&tx, &entity, &body, 1, now)?;
                append_audit(&tx, By { actor: &batch.actor, at: now }, "create", kind.as_str(), &id, None, Some(body))?;
                applied.created += 1;
                applied.versions.push((kind, id, 1));
                upserted.push(entity);
            }
            Change::Update { entity, expected_version } => {
                validate(&entity)?;
                let (kind, id) = (entity.kind(), entity.id().to_owned());
                let Some(before) = current(&tx, kind, &id)? else {
                    return Err(Error::NotFound { kind, id });
                };
                check_version(kind, &id, expected_version, before.version)?;
                let body = entity.to_json().to_string();
                if body == before.body {
                    applied.unchanged += 1;
                    applied.versions.push((kind, id, before.version));
                    continue;
                }
                let version = before.version + 1;
                write_row(&tx, &entity, &body, version, now)?;
                append_audit(
                    &tx,
                    By { actor: &batch.actor, at: now },
                    "update",
                    kind.as_str(),
                    &id,
                    Some(before.body),
                    Some(body),
                )?;
                applied.updated += 1;
                applied.versions.push((kind, id, version));
                upserted.push(entity);
            }
            Change::Delete { kind, id, expected_version } => {
                let Some(before) = current(&tx, kind, &id)? else {
                    return Err(Error::NotFound { kind, id });
                };
                check_version(kind, &id, expected_version, before.version)?;
                tx.execute("DELETE FROM entity WHERE kind = ? AND id = ?", params![kind.as_str(), id])?;
                tx.execute("DELETE FROM entity_ref WHERE from_kind = ? AND from_id = ?", params![kind.as_str(), id])?;
                append_audit(
                    &tx,
                    By { actor: &batch.actor, at: now },
                    "delete",
                    kind.as_str(),
                    &id,
                    Some(before.body),
                    None,
                )?;
                applied.deleted += 1;
                deleted.push((kind, id));
            }
        }
    }
    // Integrity is checked once the whole batch is in place, like deferred foreign keys:
    // a batch may create a site and its lines in any order.
    for entity in &upserted {
        check_references(&tx, entity)?;
    }
    for (kind, id) in &deleted {
        check_unreferenced(&tx, *kind, id)?;
    }
    if let Some(record) = batch.idempotency {
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO idempotency (principal, key, request_hash, status, body, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
            params![record.principal, record.key, record.request_hash, record.status, record.body, now],
        )?;
        if inserted == 0 {
            return Err(Error::IdempotencyRace { key: record.key });
        }
    }
    tx.commit()?;
    Ok(applied)
}

fn check_references(tx: &Transaction<'_>, entity: &Entity) -> Result<()> {
    let (kind, id) = (entity.kind(), entity.id());
    // The entity may have been deleted later in the same batch.
    if current(tx, kind, id)?.is_none() {
        return Ok(());
    }
    tx.execute("DELETE FROM entity_ref WHERE from_kind = ? AND from_id = ?", params![kind.as_str(), id])?;
    for reference in entity.references() {
        if current(tx, reference.kind, &reference.id)?.is_none() {
            return Err(Error::DanglingReference {
                kind,
                id: id.to_owned(),
                field: reference.field,
                target_kind: reference.kind,
                target_id: reference.id,
            });
        }
        tx.execute(
            "INSERT OR REPLACE INTO entity_ref (from_kind, from_id, field, to_kind, to_id) VALUES (?, ?, ?, ?, ?)",
            params![kind.as_str(), id, reference.field, reference.kind.as_str(), reference.id],
        )?;
    }
    let lookup = |kind: Kind, id: &str| -> Option<Entity> {
        let body = current(tx, kind, id).ok().flatten()?.body;
        Entity::from_json(kind, serde_json::from_str(&body).ok()?).ok()
    };
    let errors = entity.cross_check(&lookup);
    if errors.is_empty() { Ok(()) } else { Err(Error::Invalid { kind, id: id.to_owned(), errors }) }
}

fn check_unreferenced(tx: &Transaction<'_>, kind: Kind, id: &str) -> Result<()> {
    let mut stmt = tx.prepare(
        "SELECT DISTINCT from_kind, from_id FROM entity_ref WHERE to_kind = ? AND to_id = ? ORDER BY from_kind, from_id",
    )?;
    let by: Vec<(Kind, String)> = stmt
        .query_map(params![kind.as_str(), id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .filter_map(|r| r.ok())
        .filter_map(|(k, i)| Kind::parse(&k).map(|k| (k, i)))
        .collect();
    if by.is_empty() { Ok(()) } else { Err(Error::StillReferenced { kind, id: id.to_owned(), by }) }
}
