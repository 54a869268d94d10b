//! Tenant isolation: a customer-viewer sees only their own customer's records on every
//! read endpoint, and nothing else exists as far as they can tell.

use crate::harness::{Harness, VIEWER_CUSTOMER};
use axum::http::{Method, StatusCode};
use model::{Kind, Role};

#[tokio::test]
async fn viewer_lists_only_their_own_records() {
    let h = Harness::new().await;
    let viewer = Some(h.token(Role::CustomerViewer));
    for kind in Kind::ALL {
        let uri = format!("/api/v1/{}?limit=1000", kind.collection());
        let reply = h.call(Method::GET, &uri, viewer, None).await;
        if !kind.is_customer_visible() {
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{kind}");
            continue;
        }
        assert_eq!(reply.status, StatusCode::OK, "{kind}: {}", reply.body);
        let items = reply.body["items"].as_array().expect("items");
        let expected =
            h.fleet.iter().filter(|e| e.kind() == kind && e.customer().is_none_or(|c| c == VIEWER_CUSTOMER)).count();
        assert_eq!(items.len(), expected, "{kind}");
        assert!(expected > 0, "the fleet should give the viewer some {kind}");
        if kind.is_customer_owned() {
            for item in items {
                let id = item["data"]["id"].as_str().expect("id");
                let customer = item["data"]["customer"].as_str().unwrap_or_else(|| id.split('/').next().unwrap_or(id));
                assert_eq!(customer, VIEWER_CUSTOMER, "{kind} {id} leaked");
            }
        }
    }
}

#[tokio::test]
async fn viewer_cannot_read_another_customers_records_by_id_or_filter() {
    let h = Harness::new().await;
    let viewer = Some(h.token(Role::CustomerViewer));
    let staff = Some(h.token(Role::ServiceManager));
    let mut checked = 0;
    for entity in h.fleet.iter().filter(|e| e.customer().is_some_and(|c| c != VIEWER_CUSTOMER)) {
        let uri = format!("/api/v1/{}/{}", entity.kind().collection(), entity.id());
        let reply = h.call(Method::GET, &uri, viewer, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri} must look absent to the viewer");
        assert_eq!(h.call(Method::GET, &uri, staff, None).await.status, StatusCode::OK, "{uri} exists for staff");
        checked += 1;
    }
    assert!(checked > 50, "only {checked} foreign records checked");
    for kind in Kind::ALL.into_iter().filter(Kind::is_customer_owned) {
        for filter in ["customer=skyways", "prefix=skyways", "parent=skyways"] {
            let uri = format!("/api/v1/{}?{filter}", kind.collection());
            let reply = h.call(Method::GET, &uri, viewer, None).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.body["items"].as_array().map(Vec::len), Some(0), "{uri}");
        }
    }
}

#[tokio::test]
async fn viewer_can_read_the_shared_catalogue() {
    let h = Harness::new().await;
    let viewer = Some(h.token(Role::CustomerViewer));
    for kind in [Kind::AssetModel, Kind::Part] {
        let id = h.first(kind, false).id().to_owned();
        let reply = h.call(Method::GET, &format!("/api/v1/{}/{id}", kind.collection()), viewer, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{kind}");
    }
}
