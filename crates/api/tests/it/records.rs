//! Record endpoints: writes, bad input, pagination, tokens, audit and the OpenAPI document.

use crate::harness::Harness;
use axum::http::{Method, StatusCode};
use model::{Kind, Role, Scope};
use serde_json::{Value, json};

fn key(k: &str) -> [(&'static str, String); 1] {
    [("idempotency-key", k.to_owned())]
}

async fn post(h: &Harness, uri: &str, body: &Value, k: &str) -> crate::harness::Reply {
    let [(name, value)] = key(k);
    h.call_with(Method::POST, uri, Some(h.token(Role::Admin)), Some(body.to_string().into_bytes()), &[(name, &value)])
        .await
}

#[tokio::test]
async fn create_read_update_delete_with_versions() {
    let h = Harness::new().await;
    let admin = Some(h.token(Role::Admin));
    let line = h.first(Kind::Line, false).id().to_owned();
    let model = h.first(Kind::AssetModel, false).id().to_owned();
    let id = format!("{line}/p-999");
    let created = post(&h, "/api/v1/assets", &json!({"id": id, "name": "P-999", "model": model}), "c1").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let uri = format!("/api/v1/assets/{id}");
    let read = h.call(Method::GET, &uri, admin, None).await;
    assert_eq!((read.body["version"].as_i64(), read.body["data"]["name"].as_str()), (Some(1), Some("P-999")));
    assert_eq!(read.headers.get("etag").and_then(|v| v.to_str().ok()), Some("\"1\""));
    let encoded = h.call(Method::GET, &format!("/api/v1/assets/{}", id.replace('/', "%2F")), admin, None).await;
    assert_eq!(encoded.status, StatusCode::OK, "percent-encoded slashes work too");

    let renamed = json!({"name": "P-999 renamed", "model": model});
    let [(name, _)] = key("");
    let _ = name;
    let put =
        h.call_with(Method::PUT, &uri, admin, Some(renamed.to_string().into_bytes()), &[("if-match", "\"1\"")]).await;
    assert_eq!((put.status, put.body["version"].as_i64()), (StatusCode::OK, Some(2)), "{}", put.body);
    let stale =
        h.call_with(Method::PUT, &uri, admin, Some(renamed.to_string().into_bytes()), &[("if-match", "1")]).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(
        (stale.error_code(), stale.body["error"]["details"]["current_version"].as_i64()),
        ("version_conflict".into(), Some(2))
    );
    let mismatch =
        h.call(Method::PUT, &uri, admin, Some(&json!({"id": "acme/x/y/z", "name": "n", "model": model}))).await;
    assert_eq!((mismatch.status, mismatch.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, "id_mismatch".into()));

    let deleted = h.call(Method::DELETE, &uri, admin, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(h.call(Method::GET, &uri, admin, None).await.status, StatusCode::NOT_FOUND);
    let actions: Vec<String> =
        h.store.audit(0, 5000).await.expect("audit").into_iter().filter(|e| e.id == id).map(|e| e.action).collect();
    assert_eq!(actions, ["create", "update", "delete"]);
    let verify = h.call(Method::GET, "/api/v1/audit/verify", admin, None).await;
    assert_eq!(verify.body["intact"], true, "{}", verify.body);
}

#[tokio::test]
async fn bad_input_gets_a_specific_error_and_writes_nothing() {
    let h = Harness::new().await;
    let admin = Some(h.token(Role::Admin));
    let before = h.store.audit(0, 5000).await.expect("audit").len();
    let cases: Vec<(Vec<u8>, &str, StatusCode, &str, &str)> = vec![
        (b"{not json".to_vec(), "/api/v1/customers", StatusCode::BAD_REQUEST, "bad_request", "not valid JSON"),
        (
            br#"{"id": "x", "name": "X", "colour": 1}"#.to_vec(),
            "/api/v1/customers",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "unknown field `colour`",
        ),
        (
            br#"{"id": "x"}"#.to_vec(),
            "/api/v1/customers",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "missing field `name`",
        ),
        (
            br#"{"id": "acme/new", "name": "S", "latitude": 123}"#.to_vec(),
            "/api/v1/sites",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "latitude must be between",
        ),
        (
            br#"{"id": "nobody/new", "name": "S"}"#.to_vec(),
            "/api/v1/sites",
            StatusCode::UNPROCESSABLE_ENTITY,
            "dangling_reference",
            "customer `nobody`",
        ),
        (
            br#"{"id": "acme", "name": "Acme again"}"#.to_vec(),
            "/api/v1/customers",
            StatusCode::CONFLICT,
            "already_exists",
            "already exists",
        ),
        (
            br#"{"id": "x", "name": "X"}"#.to_vec(),
            "/api/v1/robots",
            StatusCode::NOT_FOUND,
            "not_found",
            "no collection `robots`",
        ),
        (
            br#"{"id": "p", "description": "d", "unit_cost": "1.001 EUR", "weight_kg": 1}"#.to_vec(),
            "/api/v1/parts",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "at most 2 decimals",
        ),
    ];
    for (i, (body, uri, status, code, fragment)) in cases.into_iter().enumerate() {
        let k = format!("bad-{i}");
        let reply = h.call_with(Method::POST, uri, admin, Some(body), &[("idempotency-key", &k)]).await;
        assert_eq!(reply.status, status, "{uri}: {}", reply.body);
        assert_eq!(reply.error_code(), code, "{uri}");
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(fragment), "`{message}` should mention `{fragment}`");
    }
    let referenced = h.first(Kind::Part, false).id().to_owned();
    let reply = h.call(Method::DELETE, &format!("/api/v1/parts/{referenced}"), admin, None).await;
    assert_eq!((reply.status, reply.error_code()), (StatusCode::CONFLICT, "still_referenced".into()));
    assert!(reply.body["error"]["details"]["referenced_by"].as_array().is_some_and(|a| !a.is_empty()));
    let wrong_method = h.call(Method::PATCH, "/api/v1/customers", admin, None).await;
    assert_eq!(
        (wrong_method.status, wrong_method.error_code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into())
    );
    let bad_query = h.call(Method::GET, "/api/v1/assets?colour=red", admin, None).await;
    assert_eq!(bad_query.status, StatusCode::BAD_REQUEST);
    let bad_limit = h.call(Method::GET, "/api/v1/assets?limit=0", admin, None).await;
    assert_eq!(bad_limit.status, StatusCode::BAD_REQUEST);
    let bad_if_match =
        h.call_with(Method::DELETE, "/api/v1/customers/acme", admin, None, &[("if-match", "soon")]).await;
    assert_eq!(bad_if_match.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.store.audit(0, 5000).await.expect("audit").len(), before, "bad input wrote something");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let h = Harness::with_options(api::AppOptions { body_limit: 4096, ..Default::default() }).await;
    let big = json!({"id": "big", "name": "x".repeat(10_000)}).to_string().into_bytes();
    let reply = h
        .call_with(
            Method::POST,
            "/api/v1/customers",
            Some(h.token(Role::Admin)),
            Some(big),
            &[("idempotency-key", "big")],
        )
        .await;
    assert_eq!((reply.status, reply.error_code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into()));
    assert!(h.store.get(&Scope::All, Kind::Customer, "big").await.expect("get").is_none());
}

#[tokio::test]
async fn lists_paginate_and_filter() {
    let h = Harness::new().await;
    let token = Some(h.token(Role::Dispatcher));
    let total = h.fleet.iter().filter(|e| e.kind() == Kind::Asset).count();
    let mut seen = Vec::new();
    let mut uri = "/api/v1/assets?limit=7".to_owned();
    loop {
        let page = h.call(Method::GET, &uri, token, None).await;
        assert_eq!(page.status, StatusCode::OK);
        let items = page.body["items"].as_array().expect("items").clone();
        assert!(items.len() <= 7);
        seen.extend(items.iter().map(|i| i["data"]["id"].as_str().unwrap_or_default().to_owned()));
        match page.body["next"].as_str() {
            Some(next) => uri = format!("/api/v1/assets?limit=7&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), total);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "pages are ordered and never overlap");
    let site = h.first(Kind::Site, false).id().to_owned();
    let under_site = h.call(Method::GET, &format!("/api/v1/assets?prefix={site}/&limit=1000"), token, None).await;
    let expected =
        h.fleet.iter().filter(|e| e.kind() == Kind::Asset && e.id().starts_with(&format!("{site}/"))).count();
    assert_eq!(under_site.body["items"].as_array().map(Vec::len), Some(expected));
    let model = h.first(Kind::AssetModel, false).id().to_owned();
    let of_model = h.call(Method::GET, &format!("/api/v1/assets?model={model}&limit=1000"), token, None).await;
    assert!(of_model.body["items"].as_array().expect("items").iter().all(|i| i["data"]["model"] == model.as_str()));
}

#[tokio::test]
async fn tokens_can_be_created_used_and_revoked_over_the_api() {
    let h = Harness::new().await;
    let admin = Some(h.token(Role::Admin));
    let created = h
        .call(
            Method::POST,
            "/api/v1/tokens",
            admin,
            Some(&json!({"name": "acme portal", "role": "customer-viewer", "customer": "acme"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let secret = created.body["token"].as_str().expect("secret").to_owned();
    let me = h.call(Method::GET, "/api/v1/whoami", Some(&secret), None).await;
    assert_eq!((me.body["role"].as_str(), me.body["customer"].as_str()), (Some("customer-viewer"), Some("acme")));
    let listed = h.call(Method::GET, "/api/v1/tokens", admin, None).await;
    assert!(!listed.body.to_string().contains("argon2"), "hashes must never leave the store");
    let id = created.body["id"].as_str().expect("id");
    assert_eq!(
        h.call(Method::DELETE, &format!("/api/v1/tokens/{id}"), admin, None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.call(Method::GET, "/api/v1/whoami", Some(&secret), None).await.status, StatusCode::UNAUTHORIZED);
    for bad in [
        json!({"name": "x", "role": "customer-viewer"}),
        json!({"name": "x", "role": "overlord"}),
        json!({"name": "x", "role": "customer-viewer", "customer": "nobody"}),
        json!({"name": " ", "role": "admin"}),
    ] {
        let reply = h.call(Method::POST, "/api/v1/tokens", admin, Some(&bad)).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {}", reply.body);
    }
}

#[tokio::test]
async fn api_writes_are_audited_with_the_caller() {
    let h = Harness::new().await;
    let manager = Some(h.token(Role::ServiceManager));
    let reply = h
        .call_with(
            Method::POST,
            "/api/v1/customers",
            manager,
            Some(br#"{"id": "initech", "name": "Initech"}"#.to_vec()),
            &[("idempotency-key", "a")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let audit = h.call(Method::GET, "/api/v1/audit?limit=1000", Some(h.token(Role::Admin)), None).await;
    let entry =
        audit.body["items"].as_array().expect("items").iter().find(|e| e["id"] == "initech").cloned().expect("entry");
    assert_eq!(entry["action"], "create");
    assert!(
        entry["actor"].as_str().is_some_and(|a| a.starts_with("token:") && a.ends_with("(service-manager)")),
        "{entry}"
    );
    assert_eq!(entry["after"]["name"], "Initech");
}

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let h = Harness::new().await;
    let doc = h.call(Method::GET, "/api/v1/openapi.json", Some(h.token(Role::Technician)), None).await.body;
    assert_eq!(doc["openapi"], "3.1.0");
    for kind in Kind::ALL {
        let collection = format!("/api/v1/{}", kind.collection());
        assert!(doc["paths"][&collection]["get"].is_object(), "{collection}");
        assert!(doc["paths"][&collection]["post"]["requestBody"].is_object(), "{collection}");
        assert!(doc["paths"][format!("{collection}/{{id}}")]["delete"].is_object(), "{collection}");
    }
    for path in [
        "/api/v1/tokens",
        "/api/v1/audit",
        "/api/v1/audit/verify",
        "/api/v1/whoami",
        "/metrics",
        "/healthz",
        "/api/v1/telemetry",
        "/api/v1/write",
        "/api/v1/events",
        "/api/v1/telemetry/range",
        "/api/v1/telemetry/latest",
        "/api/v1/telemetry/asset",
        "/api/v1/telemetry/counter",
        "/api/v1/telemetry/stream",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    for schema in ["Asset", "AssetModel", "Contract", "Money", "Pricing", "Error", "Role"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
    }
    // Every $ref points at something that exists.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/").skip(1) {
        let target: Vec<&str> = part.split('"').next().unwrap_or_default().split('/').collect();
        assert!(doc["components"][target[0]][target[1]].is_object(), "dangling $ref {target:?}");
    }
}
