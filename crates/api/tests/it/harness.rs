//! A router over a fresh SQLite store seeded with `examples/fleet.toml`, a token per role,
//! and a helper that sends one request and decodes the answer.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use model::{Entity, Role};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use store::{Change, RecordStoreRef, SqliteStore, WriteBatch};
use tower::ServiceExt;

pub struct Harness {
    pub app: Router,
    pub store: RecordStoreRef,
    pub tokens: HashMap<Role, String>,
    pub fleet: Vec<Entity>,
    /// The engine behind the API, for sealing on demand.
    pub tsdb: tsdb::Tsdb,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the uniform error shape and returns the error code.
    pub fn error_code(&self) -> String {
        let error = &self.body["error"];
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "no message in {}", self.body);
        assert!(error.get("details").is_some(), "no details in {}", self.body);
        error["code"].as_str().unwrap_or_else(|| panic!("no error code in {}", self.body)).to_owned()
    }
}

/// The customer the customer-viewer token is bound to.
pub const VIEWER_CUSTOMER: &str = "acme";

/// The site whose assets the device token may write telemetry for.
pub const DEVICE_ASSETS: &str = "acme/plant-1";

impl Harness {
    pub async fn new() -> Self {
        Self::with_options(api::AppOptions::default()).await
    }

    pub async fn with_options(mut options: api::AppOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: RecordStoreRef = Arc::new(SqliteStore::open(dir.path()).expect("open store"));
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.toml");
        let fleet = config::load_fleet(std::path::Path::new(path)).unwrap_or_else(|d| panic!("{d}")).entities;
        let batch = WriteBatch {
            actor: "test".into(),
            changes: fleet.iter().cloned().map(Change::Create).collect(),
            idempotency: None,
        };
        store.apply(batch).await.expect("seed fleet");
        let mut tokens = HashMap::new();
        for role in Role::ALL {
            let customer = (role == Role::CustomerViewer).then(|| VIEWER_CUSTOMER.to_owned());
            let assets = if role == Role::Device { vec![DEVICE_ASSETS.to_owned()] } else { vec![] };
            let issued = api::auth::issue_bound_token(role.as_str(), role, customer, assets).expect("issue");
            store.create_token("test", issued.record).await.expect("store token");
            tokens.insert(role, issued.secret);
        }
        let tsdb = tsdb::Tsdb::open(&dir.path().join("telemetry"), tsdb::TsdbOptions::default()).expect("open tsdb");
        let clock = options.clock.clone();
        let ingest = ingest::Ingest::open(tsdb.clone(), store.clone(), clock, ingest::DEFAULT_MAX_FUTURE_MS)
            .await
            .expect("ingest service");
        // Record changes reach the catalogue over the bus, as in a hub.
        let bus: bus::BusRef = Arc::new(bus::InProcessBus::new());
        let changes = bus.subscribe(ingest::CATALOG_SUBJECTS).await.expect("subscribe");
        tokio::spawn(ingest.clone().watch_records(changes));
        tokio::spawn(store::feed::relay(store.clone(), bus, options.shutdown.clone()));
        options.ingest = Some(ingest);
        let app = api::app(store.clone(), options);
        Self { app, store, tokens, fleet, tsdb, _dir: dir }
    }

    /// Where the hub keeps its data.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn token(&self, role: Role) -> &str {
        &self.tokens[&role]
    }

    pub async fn call(&self, method: Method, uri: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        self.call_with(method, uri, token, body.map(|b| b.to_string().into_bytes()), &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(body.map(Body::from).unwrap_or_else(Body::empty)).expect("request");
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply { status, headers, body }
    }

    /// The first fleet record of a kind, optionally of another customer than the viewer's.
    pub fn first(&self, kind: model::Kind, other_customer: bool) -> &Entity {
        self.fleet
            .iter()
            .find(|e| e.kind() == kind && (!other_customer || e.customer().is_some_and(|c| c != VIEWER_CUSTOMER)))
            .unwrap_or_else(|| panic!("fleet has no {kind}"))
    }
}
