//! Versioned SQLite schema migrations, applied in order at open; `PRAGMA user_version`
//! records how many have run. Append new migrations; never edit a released one.

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: installed base, references, tokens, idempotency keys, audit chain.
    r#"
    CREATE TABLE entity (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        customer TEXT,            -- tenant of customer-owned kinds; scope filter
        parent TEXT,              -- hierarchy parent path
        model TEXT,               -- asset model of assets, for filtering
        body TEXT NOT NULL,       -- the record as JSON
        version INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (kind, id)
    ) WITHOUT ROWID;
    CREATE INDEX entity_by_customer ON entity (kind, customer, id);
    CREATE INDEX entity_by_parent ON entity (kind, parent, id);

    CREATE TABLE entity_ref (
        from_kind TEXT NOT NULL,
        from_id TEXT NOT NULL,
        field TEXT NOT NULL,
        to_kind TEXT NOT NULL,
        to_id TEXT NOT NULL,
        PRIMARY KEY (from_kind, from_id, field)
    ) WITHOUT ROWID;
    CREATE INDEX entity_ref_by_target ON entity_ref (to_kind, to_id);

    CREATE TABLE token (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        customer TEXT,
        hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );

    CREATE TABLE idempotency (
        principal TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (principal, key)
    );

    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        kind TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        before TEXT,
        after TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    -- Append-only against accidents; the hash chain detects deliberate edits.
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    "#,
    // 2: device tokens are bound to assets (a JSON array of paths or prefixes).
    r#"
    ALTER TABLE token ADD COLUMN assets TEXT NOT NULL DEFAULT '[]';
    "#,
    // 3: field events are de-duplicated by (actor, event id) through an index of their
    // own instead of a scan of the audit log inside the write transaction.
    r#"
    CREATE TABLE field_event (
        actor TEXT NOT NULL,
        event TEXT NOT NULL,
        audit_seq INTEGER NOT NULL,
        PRIMARY KEY (actor, event)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO field_event (actor, event, audit_seq)
        SELECT actor, json_extract(after, '$.event'), seq FROM audit
        WHERE action LIKE 'device.%' AND json_extract(after, '$.event') IS NOT NULL;
    "#,
];
