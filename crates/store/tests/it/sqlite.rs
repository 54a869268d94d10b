//! The conformance suite against SQLite, plus SQLite-specific durability and tamper tests.

use crate::fixtures::{base, creates};
use model::{Kind, Scope};
use std::sync::Arc;
use store::{RecordStore, RecordStoreRef, SqliteStore};

fn fresh() -> (RecordStoreRef, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path()).expect("open");
    (Arc::new(store) as RecordStoreRef, dir)
}

crate::conformance_suite!(fresh());

#[tokio::test]
async fn committed_writes_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = SqliteStore::open(dir.path()).expect("open");
        store.apply(creates(base())).await.expect("apply");
    }
    let store = SqliteStore::open(dir.path()).expect("reopen");
    assert_eq!(store.snapshot().await.expect("snapshot").len(), base().len());
    assert!(store.get(&Scope::All, Kind::Asset, "globex/works/l1/g-1").await.expect("get").is_some());
}

#[tokio::test]
async fn two_handles_on_one_directory_can_both_write() {
    // The CLI writes while `treaty serve` holds the store open.
    let dir = tempfile::tempdir().expect("tempdir");
    let serving = SqliteStore::open(dir.path()).expect("open");
    let cli = SqliteStore::open(dir.path()).expect("open again");
    serving.apply(creates(base()[..2].to_vec())).await.expect("serving writes");
    cli.apply(creates(base()[2..].to_vec())).await.expect("cli writes");
    assert_eq!(serving.snapshot().await.expect("snapshot").len(), base().len());
    assert!(serving.verify_audit().await.expect("verify").is_intact());
}

/// Opens the database behind Treaty's back, drops the append-only triggers and runs `sql`.
fn tamper(dir: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join("records.db")).expect("open raw");
    conn.execute_batch("DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;")
        .expect("drop triggers");
    conn.execute_batch(sql).expect("tamper");
}

async fn problems_after(sql: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path()).expect("open");
    store.apply(creates(base())).await.expect("apply");
    assert!(store.verify_audit().await.expect("verify").is_intact());
    tamper(dir.path(), sql);
    store.verify_audit().await.expect("verify").problems
}

#[tokio::test]
async fn audit_verify_detects_an_edited_entry() {
    let problems = problems_after("UPDATE audit SET actor = 'mallory' WHERE seq = 3").await;
    assert_eq!(problems, ["entry 3 was modified after it was written (hash mismatch)"]);
}

#[tokio::test]
async fn audit_verify_detects_a_deleted_entry() {
    let problems = problems_after("DELETE FROM audit WHERE seq = 5").await;
    assert_eq!(problems, ["entries 5..5 are missing (deleted) before entry 6"]);
}

#[tokio::test]
async fn audit_verify_detects_a_cut_tail() {
    let n = base().len();
    let problems = problems_after(&format!("DELETE FROM audit WHERE seq >= {}", n - 1)).await;
    assert_eq!(problems, [format!("entries {}..{n} were cut off the end of the log", n - 1)]);
}

#[tokio::test]
async fn audit_verify_detects_a_rewritten_entry_with_recomputed_hash() {
    // Replace entry 2 wholesale with a self-consistent hash: entry 3 no longer chains to it.
    let problems = problems_after("UPDATE audit SET hash = 'f00d', actor = 'mallory' WHERE seq = 2").await;
    assert!(problems.contains(&"entry 3 does not chain to entry 2 (reordered or replaced)".to_owned()), "{problems:?}");
}

#[tokio::test]
async fn audit_log_refuses_in_place_edits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path()).expect("open");
    store.apply(creates(base())).await.expect("apply");
    let conn = rusqlite::Connection::open(dir.path().join("records.db")).expect("open raw");
    let err = conn.execute("DELETE FROM audit", []).expect_err("trigger");
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[tokio::test]
async fn sync_plans_apply_exactly_the_difference() {
    use model::Entity;
    use store::{WriteBatch, plan_sync};
    let (store, _dir) = fresh();
    let apply = |desired: Vec<Entity>| {
        let store = store.clone();
        async move {
            let plan = plan_sync(&desired, &store.snapshot().await.expect("snapshot"));
            let summary = plan.summary();
            let unchanged = plan.unchanged;
            store
                .apply(WriteBatch { actor: "sync".into(), changes: plan.changes, idempotency: None })
                .await
                .expect("apply");
            (summary, unchanged)
        }
    };
    let (summary, _) = apply(base()).await;
    assert_eq!(summary.iter().map(|s| s.1).sum::<usize>(), base().len());
    let (summary, unchanged) = apply(base()).await;
    assert!(summary.is_empty(), "re-import changed {summary:?}");
    assert_eq!(unchanged, base().len());
    // Rename one customer, drop one user: exactly one update and one delete.
    let mut changed = base();
    changed.retain(|e| e.kind() != Kind::User);
    if let Some(Entity::Customer(c)) = changed.iter_mut().find(|e| e.id() == "globex") {
        c.name = "Globex Inc".into();
    }
    let (summary, unchanged) = apply(changed).await;
    assert_eq!(summary, vec![(Kind::Customer, 0, 1, 0), (Kind::User, 0, 0, 1)]);
    assert_eq!(unchanged, base().len() - 2);
}

#[tokio::test]
async fn rows_and_audit_entries_are_stamped_by_the_stores_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = model::ManualClock::new(model::Timestamp(1_790_000_000_000));
    let store: RecordStoreRef = Arc::new(SqliteStore::open_with_clock(dir.path(), clock.clone()).expect("open"));
    store.apply(creates(base())).await.expect("apply");
    clock.advance(60_000);
    store
        .record_event("token:gw", "device.interlock", "asset", "acme/p/l/p-1", "e-1", serde_json::json!({}))
        .await
        .expect("event");
    let entries = store.audit(0, 1000).await.expect("audit");
    let last = entries.last().expect("entries");
    assert_eq!(last.at, model::Timestamp(1_790_000_060_000));
    assert!(entries.iter().take(entries.len() - 1).all(|e| e.at == model::Timestamp(1_790_000_000_000)));
}
