//! `Idempotency-Key` behaviour on creating POSTs.

use crate::harness::Harness;
use axum::http::{Method, StatusCode};
use model::{Kind, Role, Scope};
use serde_json::json;

fn customer(id: &str) -> Vec<u8> {
    json!({"id": id, "name": format!("Customer {id}")}).to_string().into_bytes()
}

#[tokio::test]
async fn same_key_same_body_replays_the_first_response() {
    let h = Harness::new().await;
    let token = Some(h.token(Role::Admin));
    let headers = [("idempotency-key", "create-initech-1")];
    let first = h.call_with(Method::POST, "/api/v1/customers", token, Some(customer("initech")), &headers).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.headers.get("location").and_then(|v| v.to_str().ok()), Some("/api/v1/customers/initech"));
    // Same JSON with keys reordered and whitespace: still the same request.
    let reordered = br#"{ "name": "Customer initech",   "id": "initech" }"#.to_vec();
    let again = h.call_with(Method::POST, "/api/v1/customers", token, Some(reordered), &headers).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let audit = h.store.audit(0, 1000).await.expect("audit");
    assert_eq!(audit.iter().filter(|e| e.id == "initech").count(), 1, "created exactly once");
}

#[tokio::test]
async fn same_key_different_body_is_refused() {
    let h = Harness::new().await;
    let token = Some(h.token(Role::Admin));
    let headers = [("idempotency-key", "k-42")];
    let first = h.call_with(Method::POST, "/api/v1/customers", token, Some(customer("initech")), &headers).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let other = h.call_with(Method::POST, "/api/v1/customers", token, Some(customer("umbrella")), &headers).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.error_code(), "idempotency_key_reused");
    assert!(h.store.get(&Scope::All, Kind::Customer, "umbrella").await.expect("get").is_none());
}

#[tokio::test]
async fn missing_or_malformed_key_is_a_bad_request() {
    let h = Harness::new().await;
    let token = Some(h.token(Role::Admin));
    let missing = h.call_with(Method::POST, "/api/v1/customers", token, Some(customer("initech")), &[]).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.error_code(), "idempotency_key_required");
    let long = "k".repeat(201);
    let malformed = h
        .call_with(Method::POST, "/api/v1/customers", token, Some(customer("initech")), &[("idempotency-key", &long)])
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(h.store.get(&Scope::All, Kind::Customer, "initech").await.expect("get").is_none());
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    let h = Harness::new().await;
    let headers = [("idempotency-key", "shared")];
    let by_admin = h
        .call_with(Method::POST, "/api/v1/customers", Some(h.token(Role::Admin)), Some(customer("a1")), &headers)
        .await;
    let by_manager = h
        .call_with(
            Method::POST,
            "/api/v1/customers",
            Some(h.token(Role::ServiceManager)),
            Some(customer("m1")),
            &headers,
        )
        .await;
    assert_eq!((by_admin.status, by_manager.status), (StatusCode::CREATED, StatusCode::CREATED));
}

#[tokio::test]
async fn a_failed_create_does_not_burn_the_key() {
    let h = Harness::new().await;
    let token = Some(h.token(Role::Admin));
    let headers = [("idempotency-key", "retry-me")];
    let site = json!({"id": "initech/hq", "name": "HQ"}).to_string().into_bytes();
    let failed = h.call_with(Method::POST, "/api/v1/sites", token, Some(site.clone()), &headers).await;
    assert_eq!(failed.status, StatusCode::UNPROCESSABLE_ENTITY, "customer initech does not exist yet");
    let created = h
        .call_with(Method::POST, "/api/v1/customers", token, Some(customer("initech")), &[("idempotency-key", "c")])
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let retried = h.call_with(Method::POST, "/api/v1/sites", token, Some(site), &headers).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.body);
}

#[tokio::test]
async fn token_creation_with_a_key_mints_one_token() {
    let h = Harness::new().await;
    let token = Some(h.token(Role::Admin));
    let body =
        json!({"name": "gateway plant-1", "role": "device", "assets": ["acme/plant-1"]}).to_string().into_bytes();
    let headers = [("idempotency-key", "gw-1")];
    let first = h.call_with(Method::POST, "/api/v1/tokens", token, Some(body.clone()), &headers).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let secret = first.body["token"].as_str().expect("secret shown once").to_owned();
    let again = h.call_with(Method::POST, "/api/v1/tokens", token, Some(body), &headers).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body["id"], first.body["id"]);
    assert!(again.body["token"].is_null(), "the secret is never stored, so never replayed");
    let tokens = h.store.tokens().await.expect("tokens");
    assert_eq!(tokens.iter().filter(|t| t.name == "gateway plant-1").count(), 1);
    let me = h.call(Method::GET, "/api/v1/whoami", Some(&secret), None).await;
    assert_eq!(me.body["role"], "device");
}
