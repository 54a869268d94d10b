//! The `RecordStore` conformance suite. Each case takes a fresh, empty store; the
//! `conformance_suite!` macro instantiates every case for one implementation.

use crate::fixtures::{base, creates, entity};
use model::{Entity, Kind, Role, Scope, Timestamp};
use serde_json::json;
use store::{Change, Error, IdempotencyRecord, ListQuery, RecordStoreRef, TokenRecord, WriteBatch};

/// Instantiates every conformance case as a `#[tokio::test]` using `$make` to build a fresh store.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            round_trip, create_twice_fails_atomically, updates_version_and_noops, dangling_reference_writes_nothing,
            referenced_records_cannot_be_deleted, tenant_scope_is_enforced_in_queries, pagination_and_filters,
            idempotency_records_are_atomic, tokens, audit_chain_records_every_change, invalid_records_are_refused,
            cross_checks_run_against_stored_records, deferred_integrity_within_a_batch,
            field_events_are_audited_once);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $make;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

async fn seeded(store: &RecordStoreRef) {
    store.apply(creates(base())).await.unwrap_or_else(|e| panic!("seeding: {e}"));
}

pub async fn round_trip(store: RecordStoreRef) {
    let applied = store.apply(creates(base())).await.expect("apply");
    assert_eq!(applied.created, base().len());
    for expected in base() {
        let stored = store.get(&Scope::All, expected.kind(), expected.id()).await.expect("get").expect("present");
        assert_eq!(stored.entity, expected);
        assert_eq!(stored.version, 1);
    }
    assert_eq!(store.snapshot().await.expect("snapshot").len(), base().len());
    assert!(store.get(&Scope::All, Kind::Asset, "acme/plant-1/line-1/nope").await.expect("get").is_none());
}

pub async fn create_twice_fails_atomically(store: RecordStoreRef) {
    seeded(&store).await;
    let batch = creates(vec![
        entity(Kind::Customer, json!({"id": "initech", "name": "Initech"})),
        entity(Kind::Customer, json!({"id": "acme", "name": "Acme again"})),
    ]);
    let err = store.apply(batch).await.expect_err("duplicate must fail");
    assert!(matches!(err, Error::AlreadyExists { kind: Kind::Customer, ref id } if id == "acme"), "{err}");
    assert!(store.get(&Scope::All, Kind::Customer, "initech").await.expect("get").is_none(), "batch was half-applied");
}

pub async fn updates_version_and_noops(store: RecordStoreRef) {
    seeded(&store).await;
    let renamed = entity(Kind::Customer, json!({"id": "acme", "name": "Acme Corp"}));
    let update = |e: &Entity, v| WriteBatch {
        actor: "test".into(),
        changes: vec![Change::Update { entity: e.clone(), expected_version: v }],
        idempotency: None,
    };
    let applied = store.apply(update(&renamed, Some(1))).await.expect("update");
    assert_eq!((applied.updated, applied.versions[0].2), (1, 2));
    let applied = store.apply(update(&renamed, None)).await.expect("same update");
    assert_eq!((applied.updated, applied.unchanged), (0, 1));
    let stale = store.apply(update(&renamed, Some(1))).await.expect_err("stale version");
    assert!(matches!(stale, Error::VersionConflict { expected: 1, actual: 2, .. }), "{stale}");
    let missing = entity(Kind::Customer, json!({"id": "nobody", "name": "N"}));
    assert!(matches!(store.apply(update(&missing, None)).await, Err(Error::NotFound { .. })));
    let stored = store.get(&Scope::All, Kind::Customer, "acme").await.expect("get").expect("present");
    assert_eq!((stored.version, stored.entity), (2, renamed));
}

pub async fn dangling_reference_writes_nothing(store: RecordStoreRef) {
    seeded(&store).await;
    let batch = creates(vec![
        entity(Kind::Line, json!({"id": "acme/plant-1/line-9", "name": "L9"})),
        entity(Kind::Asset, json!({"id": "acme/plant-1/line-9/x", "name": "X", "model": "no-such-model"})),
    ]);
    let err = store.apply(batch).await.expect_err("dangling");
    assert!(
        matches!(&err, Error::DanglingReference { field, target_kind: Kind::AssetModel, target_id, .. }
            if field == "model" && target_id == "no-such-model"),
        "{err}"
    );
    assert!(store.get(&Scope::All, Kind::Line, "acme/plant-1/line-9").await.expect("get").is_none());
    let orphan = creates(vec![entity(Kind::Site, json!({"id": "nobody/site", "name": "S"}))]);
    assert!(matches!(store.apply(orphan).await, Err(Error::DanglingReference { target_kind: Kind::Customer, .. })));
}

pub async fn referenced_records_cannot_be_deleted(store: RecordStoreRef) {
    seeded(&store).await;
    let delete = |kind, id: &str| WriteBatch {
        actor: "test".into(),
        changes: vec![Change::Delete { kind, id: id.into(), expected_version: None }],
        idempotency: None,
    };
    let err = store.apply(delete(Kind::Part, "BRG-1")).await.expect_err("part is in a BOM");
    assert!(
        matches!(&err, Error::StillReferenced { by, .. } if by == &[(Kind::AssetModel, "cp200".to_owned())]),
        "{err}"
    );
    let err = store.apply(delete(Kind::Asset, "acme/plant-1/line-1/p-1")).await.expect_err("contract and component");
    assert!(matches!(&err, Error::StillReferenced { by, .. } if by.len() == 2), "{err}");
    store.apply(delete(Kind::Asset, "acme/plant-1/line-1/p-2")).await.expect("leaf delete");
    assert!(store.get(&Scope::All, Kind::Asset, "acme/plant-1/line-1/p-2").await.expect("get").is_none());
    assert!(matches!(store.apply(delete(Kind::Asset, "acme/plant-1/line-1/p-2")).await, Err(Error::NotFound { .. })));
}

pub async fn tenant_scope_is_enforced_in_queries(store: RecordStoreRef) {
    seeded(&store).await;
    let acme = Scope::Customer("acme".into());
    for kind in Kind::ALL {
        let page = store.list(&acme, &ListQuery::all(kind)).await.expect("list");
        for item in &page.items {
            match item.entity.customer() {
                Some(customer) => assert_eq!(customer, "acme", "{kind} leaked"),
                None => assert!(matches!(kind, Kind::AssetModel | Kind::Part), "{kind} is internal but was listed"),
            }
        }
        let all = store.list(&Scope::All, &ListQuery::all(kind)).await.expect("list");
        for item in all.items {
            let visible = store.get(&acme, kind, item.entity.id()).await.expect("get").is_some();
            let expected = kind.is_customer_visible() && item.entity.customer().is_none_or(|c| c == "acme");
            assert_eq!(visible, expected, "{kind} {}", item.entity.id());
        }
    }
    let assets = store.list(&acme, &ListQuery::all(Kind::Asset)).await.expect("list");
    assert_eq!(assets.items.len(), 2);
    let nobody = Scope::Customer("initech".into());
    assert!(store.list(&nobody, &ListQuery::all(Kind::Asset)).await.expect("list").items.is_empty());
}

pub async fn pagination_and_filters(store: RecordStoreRef) {
    seeded(&store).await;
    let mut query = ListQuery::all(Kind::Asset);
    query.limit = 2;
    let first = store.list(&Scope::All, &query).await.expect("page 1");
    assert_eq!(first.items.len(), 2);
    query.after = first.next.clone();
    assert!(query.after.is_some());
    let second = store.list(&Scope::All, &query).await.expect("page 2");
    assert_eq!((second.items.len(), second.next.clone()), (1, None));
    let mut ids: Vec<String> = first.items.iter().chain(&second.items).map(|s| s.entity.id().to_owned()).collect();
    let sorted = {
        let mut s = ids.clone();
        s.sort();
        s
    };
    assert_eq!(ids, sorted);
    ids.dedup();
    assert_eq!(ids.len(), 3);

    let count = |q: ListQuery| {
        let store = store.clone();
        async move { store.list(&Scope::All, &q).await.expect("list").items.len() }
    };
    let mut q = ListQuery::all(Kind::Asset);
    q.customer = Some("globex".into());
    assert_eq!(count(q).await, 1);
    let mut q = ListQuery::all(Kind::Asset);
    q.prefix = Some("acme/plant-1/".into());
    assert_eq!(count(q).await, 2);
    let mut q = ListQuery::all(Kind::Line);
    q.parent = Some("acme/plant-1".into());
    assert_eq!(count(q).await, 1);
    let mut q = ListQuery::all(Kind::Asset);
    q.model = Some("cp200".into());
    assert_eq!(count(q).await, 3);
    let mut q = ListQuery::all(Kind::Asset);
    q.prefix = Some("acme/plant-1/line-1/p-1%".into());
    assert_eq!(count(q).await, 0, "prefix must be literal, not a LIKE pattern");
}

pub async fn idempotency_records_are_atomic(store: RecordStoreRef) {
    seeded(&store).await;
    let record = IdempotencyRecord {
        principal: "token:abc".into(),
        key: "k-1".into(),
        request_hash: "h".into(),
        status: 201,
        body: "{}".into(),
    };
    let mut batch = creates(vec![entity(Kind::Customer, json!({"id": "initech", "name": "Initech"}))]);
    batch.idempotency = Some(record.clone());
    store.apply(batch).await.expect("apply with key");
    assert_eq!(store.idempotency("token:abc", "k-1").await.expect("lookup"), Some(record.clone()));
    assert_eq!(store.idempotency("token:other", "k-1").await.expect("lookup"), None, "keys are per principal");
    let mut again = creates(vec![entity(Kind::Customer, json!({"id": "umbrella", "name": "Umbrella"}))]);
    again.idempotency = Some(record);
    assert!(matches!(store.apply(again).await, Err(Error::IdempotencyRace { .. })));
    assert!(store.get(&Scope::All, Kind::Customer, "umbrella").await.expect("get").is_none());
}

pub async fn tokens(store: RecordStoreRef) {
    let token = TokenRecord {
        id: "abcd".into(),
        name: "viewer".into(),
        role: Role::CustomerViewer,
        customer: Some("acme".into()),
        assets: vec![],
        hash: "$argon2id$...".into(),
        created_at: Timestamp(1),
        revoked_at: None,
    };
    store.create_token("cli:root", token.clone()).await.expect("create");
    assert_eq!(store.token("abcd").await.expect("get"), Some(token.clone()));
    assert_eq!(store.tokens().await.expect("list"), vec![token]);
    assert!(store.revoke_token("cli:root", "abcd").await.expect("revoke"));
    assert!(!store.revoke_token("cli:root", "abcd").await.expect("revoke twice"));
    assert!(store.token("abcd").await.expect("get").expect("kept").revoked_at.is_some());
    let audit = store.audit(0, 100).await.expect("audit");
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["token.create", "token.revoke"]);
    assert!(!audit[0].after.as_ref().expect("after").to_string().contains("argon2"), "hash must not be audited");
}

pub async fn audit_chain_records_every_change(store: RecordStoreRef) {
    seeded(&store).await;
    let renamed = entity(Kind::Customer, json!({"id": "globex", "name": "Globex Inc"}));
    let batch = WriteBatch {
        actor: "alice".into(),
        changes: vec![
            Change::Update { entity: renamed.clone(), expected_version: None },
            Change::Delete { kind: Kind::User, id: "u-1".into(), expected_version: None },
        ],
        idempotency: None,
    };
    store.apply(batch).await.expect("apply");
    let entries = store.audit(base().len() as u64, 100).await.expect("audit");
    assert_eq!(entries.len(), 2);
    assert_eq!((entries[0].action.as_str(), entries[0].actor.as_str()), ("update", "alice"));
    assert_eq!(entries[0].before.as_ref().and_then(|b| b["name"].as_str()), Some("Globex"));
    assert_eq!(entries[0].after, Some(renamed.to_json()));
    assert_eq!((entries[1].action.as_str(), entries[1].after.as_ref()), ("delete", None));
    assert_eq!(entries[1].prev_hash, entries[0].hash);
    let report = store.verify_audit().await.expect("verify");
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.entries, base().len() as u64 + 2);
    assert_eq!(report.head, entries[1].hash);
}

pub async fn invalid_records_are_refused(store: RecordStoreRef) {
    seeded(&store).await;
    let bad = entity(Kind::Site, json!({"id": "acme", "name": "Not a site path", "latitude": 95.0}));
    let err = store.apply(creates(vec![bad])).await.expect_err("invalid");
    let Error::Invalid { errors, .. } = err else { panic!("expected Invalid, got {err}") };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["id", "latitude", "latitude"]);
}

pub async fn cross_checks_run_against_stored_records(store: RecordStoreRef) {
    seeded(&store).await;
    let bad = entity(Kind::Component, json!({"id": "acme/plant-1/line-1/p-2/impeller", "model_component": "impeller"}));
    let err = store.apply(creates(vec![bad])).await.expect_err("no such model component");
    assert!(err.to_string().contains("not a component of model `cp200`"), "{err}");
    let contract = entity(
        Kind::Contract,
        json!({"id": "c-2", "customer": "acme", "assets": ["acme/plant-1/line-1/p-2"], "start": "2026-01-01",
               "end": "2026-12-31", "pricing": {"kind": "outcome_based", "counter": "cycles", "rate": "1.00 EUR",
               "period": "monthly"}}),
    );
    let err = store.apply(creates(vec![contract])).await.expect_err("no such counter");
    assert!(err.to_string().contains("has no counter `cycles`"), "{err}");
}

pub async fn deferred_integrity_within_a_batch(store: RecordStoreRef) {
    // Children before parents in one batch is fine; the check runs at the end.
    let mut entities = base();
    entities.reverse();
    store.apply(creates(entities)).await.expect("reverse order batch");
    // Deleting a parent and its only child together is fine too.
    let batch = WriteBatch {
        actor: "test".into(),
        changes: vec![
            Change::Delete { kind: Kind::Line, id: "globex/works/l1".into(), expected_version: None },
            Change::Delete { kind: Kind::Asset, id: "globex/works/l1/g-1".into(), expected_version: None },
        ],
        idempotency: None,
    };
    store.apply(batch).await.expect("delete parent and child together");
}

pub async fn field_events_are_audited_once(store: RecordStoreRef) {
    let event = json!({"event": "gw-1/interlock/1", "interlock": "stop on heat", "address": 5, "value": 1.0});
    let head = store.audit_head().await.expect("head");
    let commits = store.commits();
    let record = |actor: &'static str, id: &'static str, details: serde_json::Value| {
        let store = store.clone();
        async move { store.record_event(actor, "device.interlock", "asset", "acme/p/l/p-1", id, details).await }
    };
    assert!(record("token:gw", "gw-1/interlock/1", event.clone()).await.expect("record"), "a new event is recorded");
    assert!(commits.has_changed().expect("watch"), "a commit is signalled");
    assert!(!record("token:gw", "gw-1/interlock/1", event.clone()).await.expect("record"), "a retry adds nothing");
    let other = json!({"event": "gw-1/interlock/2"});
    assert!(record("token:gw", "gw-1/interlock/2", other).await.expect("record"));
    // Event ids are the sender's: another gateway's event with the same id is its own.
    assert!(record("token:gw-2", "gw-1/interlock/1", event.clone()).await.expect("record"));
    let entries = store.audit(0, 100).await.expect("audit");
    let events: Vec<_> = entries.iter().filter(|e| e.action == "device.interlock").collect();
    assert_eq!(events.len(), 3);
    assert_eq!((events[0].actor.as_str(), events[0].id.as_str()), ("token:gw", "acme/p/l/p-1"));
    assert_eq!(events[0].after.as_ref(), Some(&event));
    assert_eq!(store.audit_head().await.expect("head"), head + 3);
    assert!(store.verify_audit().await.expect("verify").problems.is_empty(), "events are part of the hash chain");
}
