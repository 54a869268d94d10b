//! The authorisation matrix: every role against every endpoint, expected outcomes taken
//! from the model's permission table, plus authentication failures.

use crate::harness::{Harness, VIEWER_CUSTOMER};
use axum::http::{Method, StatusCode};
use model::access::permits;
use model::{Action, Kind, Role};
use serde_json::Value;

/// The first record of a kind that the customer-viewer may see (so that allowed reads
/// answer 200 for every role that may read).
fn visible(h: &Harness, kind: Kind) -> model::Entity {
    h.fleet
        .iter()
        .find(|e| e.kind() == kind && e.customer().is_none_or(|c| c == VIEWER_CUSTOMER))
        .cloned()
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[tokio::test]
async fn every_role_against_every_record_endpoint() {
    let h = Harness::new().await;
    for kind in Kind::ALL {
        let record = visible(&h, kind);
        let collection = format!("/api/v1/{}", kind.collection());
        let item = format!("{collection}/{}", record.id());
        for role in Role::ALL {
            let token = Some(h.token(role));
            let may_read = permits(role, Action::Read(kind));
            let may_write = permits(role, Action::Write(kind));
            let read_status = if may_read { StatusCode::OK } else { StatusCode::FORBIDDEN };
            let context = format!("{role} on {kind}");

            let list = h.call(Method::GET, &collection, token, None).await;
            assert_eq!(list.status, read_status, "list: {context}: {}", list.body);
            let get = h.call(Method::GET, &item, token, None).await;
            assert_eq!(get.status, read_status, "get: {context}: {}", get.body);

            // Creating an existing record: allowed roles reach the store (409), others stop at 403.
            let body = record.to_json();
            let create = h
                .call_with(
                    Method::POST,
                    &collection,
                    token,
                    Some(body.to_string().into_bytes()),
                    &[("idempotency-key", &format!("authz-{role}-{kind}"))],
                )
                .await;
            let expected = if may_write { StatusCode::CONFLICT } else { StatusCode::FORBIDDEN };
            assert_eq!(create.status, expected, "create: {context}: {}", create.body);

            // Replacing with an identical body is a no-op for allowed roles.
            let put = h.call(Method::PUT, &item, token, Some(&body)).await;
            let expected = if may_write { StatusCode::OK } else { StatusCode::FORBIDDEN };
            assert_eq!(put.status, expected, "put: {context}: {}", put.body);

            let delete = h.call(Method::DELETE, &format!("{item}-absent"), token, None).await;
            let expected = if may_write { StatusCode::NOT_FOUND } else { StatusCode::FORBIDDEN };
            assert_eq!(delete.status, expected, "delete: {context}: {}", delete.body);
            if !may_write {
                assert_eq!(delete.error_code(), "forbidden");
            }
        }
    }
    // Nothing above changed anything: the audit log holds only the seeding and tokens.
    let entries = h.store.audit(0, 1000).await.expect("audit");
    assert!(entries.iter().all(|e| e.actor == "test"), "a forbidden or no-op request wrote something");
}

#[tokio::test]
async fn every_role_against_admin_and_operations_endpoints() {
    let h = Harness::new().await;
    for role in Role::ALL {
        let token = Some(h.token(role));
        let admin = if permits(role, Action::ManageTokens) { StatusCode::OK } else { StatusCode::FORBIDDEN };
        assert_eq!(h.call(Method::GET, "/api/v1/tokens", token, None).await.status, admin, "{role} tokens");
        let request = serde_json::json!({"name": format!("by {role}"), "role": "technician"});
        let created = h.call(Method::POST, "/api/v1/tokens", token, Some(&request)).await;
        let expected = if permits(role, Action::ManageTokens) { StatusCode::CREATED } else { StatusCode::FORBIDDEN };
        assert_eq!(created.status, expected, "{role} create token");
        let revoke = h.call(Method::DELETE, "/api/v1/tokens/0000000000000000", token, None).await;
        let expected = if permits(role, Action::ManageTokens) { StatusCode::NOT_FOUND } else { StatusCode::FORBIDDEN };
        assert_eq!(revoke.status, expected, "{role} revoke token");
        let audit = if permits(role, Action::ReadAudit) { StatusCode::OK } else { StatusCode::FORBIDDEN };
        assert_eq!(h.call(Method::GET, "/api/v1/audit", token, None).await.status, audit, "{role} audit");
        assert_eq!(h.call(Method::GET, "/api/v1/audit/verify", token, None).await.status, audit, "{role} verify");
        let metrics = if permits(role, Action::ReadMetrics) { StatusCode::OK } else { StatusCode::FORBIDDEN };
        assert_eq!(h.call(Method::GET, "/metrics", token, None).await.status, metrics, "{role} metrics");
        let me = h.call(Method::GET, "/api/v1/whoami", token, None).await;
        assert_eq!((me.status, me.body["role"].as_str()), (StatusCode::OK, Some(role.as_str())));
        assert_eq!(h.call(Method::GET, "/api/v1/openapi.json", token, None).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn every_endpoint_needs_a_valid_token() {
    let h = Harness::new().await;
    let mut uris: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v1/openapi.json".into()),
        (Method::GET, "/api/v1/whoami".into()),
        (Method::GET, "/api/v1/tokens".into()),
        (Method::POST, "/api/v1/tokens".into()),
        (Method::DELETE, "/api/v1/tokens/x".into()),
        (Method::GET, "/api/v1/audit".into()),
        (Method::GET, "/api/v1/audit/verify".into()),
        (Method::POST, "/api/v1/telemetry".into()),
        (Method::POST, "/api/v1/write".into()),
        (Method::POST, "/api/v1/events".into()),
        (Method::GET, "/api/v1/telemetry/range?asset=a&signal=s".into()),
        (Method::GET, "/api/v1/telemetry/latest?asset=a".into()),
        (Method::GET, "/api/v1/telemetry/asset?asset=a".into()),
        (Method::GET, "/api/v1/telemetry/counter?asset=a&signal=s".into()),
        (Method::GET, "/api/v1/telemetry/stream?asset=a".into()),
        (Method::GET, "/metrics".into()),
        (Method::GET, "/api/v1/no-such-thing".into()),
        (Method::GET, "/nothing/here".into()),
    ];
    for kind in Kind::ALL {
        let collection = format!("/api/v1/{}", kind.collection());
        uris.push((Method::GET, collection.clone()));
        uris.push((Method::POST, collection.clone()));
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            uris.push((method, format!("{collection}/{}", h.first(kind, false).id())));
        }
    }
    let revoked = api::auth::issue_token("revoked", Role::Admin, None).expect("issue");
    h.store.create_token("test", revoked.record.clone()).await.expect("store");
    h.store.revoke_token("test", &revoked.record.id).await.expect("revoke");
    let admin = h.token(Role::Admin);
    let forged = format!("{}{}", &admin[..67], if admin.ends_with('0') { '1' } else { '0' });
    for (method, uri) in uris {
        for (token, why) in [
            (None, "no token"),
            (Some("trt_not-a-real-token-but-long-enough-to-look-like-one"), "unknown token"),
            (Some(revoked.secret.as_str()), "revoked token"),
            (Some(forged.as_str()), "forged token"),
        ] {
            let reply = h.call(method.clone(), &uri, token, Some(&Value::Null)).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {uri} with {why}");
            assert_eq!(reply.error_code(), "unauthorized");
            assert_eq!(reply.headers.get("www-authenticate").map(|v| v.to_str().ok()), Some(Some("Bearer")));
        }
    }
    let bad_scheme =
        h.call_with(Method::GET, "/api/v1/whoami", None, None, &[("authorization", "Basic YWRtaW46YWRtaW4=")]).await;
    assert_eq!(bad_scheme.status, StatusCode::UNAUTHORIZED);
    // Probes are open and say nothing.
    assert_eq!(h.call(Method::GET, "/healthz", None, None).await.status, StatusCode::OK);
    assert_eq!(h.call(Method::GET, "/readyz", None, None).await.status, StatusCode::OK);
}
