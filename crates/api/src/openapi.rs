//! The OpenAPI 3.1 document at `/api/v1/openapi.json`, generated from the code: record
//! schemas come from the model types (`utoipa::ToSchema`), paths from the `Kind` table,
//! and the roles named on each operation from the permission table itself.

use model::access::permits;
use model::{
    Action, Asset, AssetModel, Component, Contract, Customer, Kind, Line, Part, Role, Site, Technician, User, Warehouse,
};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::{ComponentsBuilder, RefOr, schema::Schema};

fn schema_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Customer => "Customer",
        Kind::Site => "Site",
        Kind::Line => "Line",
        Kind::Asset => "Asset",
        Kind::Component => "Component",
        Kind::AssetModel => "AssetModel",
        Kind::Part => "Part",
        Kind::Warehouse => "Warehouse",
        Kind::Technician => "Technician",
        Kind::Contract => "Contract",
        Kind::User => "User",
    }
}

fn roles(action: Action) -> String {
    let allowed: Vec<&str> = Role::ALL.iter().filter(|r| permits(**r, action)).map(Role::as_str).collect();
    format!("Roles: {}.", allowed.join(", "))
}

fn error_responses(codes: &[&str]) -> Value {
    let mut map = serde_json::Map::new();
    for code in codes {
        map.insert((*code).into(), json!({"$ref": format!("#/components/responses/Error{code}")}));
    }
    Value::Object(map)
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn schema_ref(kind: Kind) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", schema_name(kind))})
}

fn record_paths(kind: Kind, paths: &mut serde_json::Map<String, Value>) {
    let name = schema_name(kind);
    let read = roles(Action::Read(kind));
    let write = roles(Action::Write(kind));
    let view = json!({"type": "object", "required": ["data", "version"], "properties": {
        "data": schema_ref(kind), "version": {"type": "integer"}, "updated_at": {"type": "string", "format": "date-time"}}});
    let list_params = json!([
        {"name": "customer", "in": "query", "schema": {"type": "string"}, "description": "only this customer's records"},
        {"name": "parent", "in": "query", "schema": {"type": "string"}, "description": "only direct children of this path"},
        {"name": "prefix", "in": "query", "schema": {"type": "string"}, "description": "only ids starting with this text"},
        {"name": "model", "in": "query", "schema": {"type": "string"}, "description": "only assets of this asset model"},
        {"name": "after", "in": "query", "schema": {"type": "string"}, "description": "cursor: the `next` of the previous page"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}
    ]);
    let id_param = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"},
        "description": "record id; hierarchy ids are paths and keep their slashes"});
    let if_match = json!({"name": "If-Match", "in": "header", "schema": {"type": "string"},
        "description": "the version you read; the change fails with 409 if the record moved on"});
    let body = json!({"required": true, "content": {"application/json": {"schema": schema_ref(kind)}}});
    let ok = |description: &str, schema: Value| json!({"description": description, "content": {"application/json": {"schema": schema}}});
    let collection = kind.collection();
    paths.insert(format!("/api/v1/{collection}"), json!({
        "get": {"tags": [name], "operationId": format!("list_{}", kind.as_str()), "summary": format!("List {collection}"),
            "description": format!("One page, ordered by id. Customer-viewers only see their own customer's records. {read}"),
            "parameters": list_params,
            "responses": merge(json!({"200": ok("a page", json!({"type": "object", "properties": {
                "items": {"type": "array", "items": view}, "next": {"type": ["string", "null"]}}}))}),
                error_responses(&["400", "401", "403"]))},
        "post": {"tags": [name], "operationId": format!("create_{}", kind.as_str()), "summary": format!("Create a {kind}"),
            "description": format!("Requires an Idempotency-Key header: a retry with the same key and body replays the first response. {write}"),
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": true, "schema": {"type": "string", "maxLength": 200}}],
            "requestBody": body,
            "responses": merge(json!({"201": ok("created", view.clone())}), error_responses(&["400", "401", "403", "409", "413", "422"]))}
    }));
    paths.insert(format!("/api/v1/{collection}/{{id}}"), json!({
        "get": {"tags": [name], "operationId": format!("get_{}", kind.as_str()), "summary": format!("Read a {kind}"),
            "description": read, "parameters": [id_param],
            "responses": merge(json!({"200": ok("the record", view.clone())}), error_responses(&["401", "403", "404"]))},
        "put": {"tags": [name], "operationId": format!("replace_{}", kind.as_str()), "summary": format!("Replace a {kind}"),
            "description": format!("Replaces the whole record; an identical body changes nothing. {write}"),
            "parameters": [id_param, if_match], "requestBody": body,
            "responses": merge(json!({"200": ok("the new version", view)}), error_responses(&["400", "401", "403", "404", "409", "413", "422"]))},
        "delete": {"tags": [name], "operationId": format!("delete_{}", kind.as_str()), "summary": format!("Delete a {kind}"),
            "description": format!("Refused with 409 while other records refer to it. {write}"),
            "parameters": [id_param, if_match],
            "responses": merge(json!({"204": {"description": "deleted"}}), error_responses(&["401", "403", "404", "409"]))}
    }));
}

fn admin_paths(paths: &mut serde_json::Map<String, Value>) {
    let admin = roles(Action::ManageTokens);
    let any = json!({"type": "object"});
    let ok = |description: &str| json!({"description": description, "content": {"application/json": {"schema": any}}});
    paths.insert("/api/v1/whoami".into(), json!({"get": {"tags": ["Admin"], "operationId": "whoami",
        "summary": "The caller's identity, role and customer", "responses": merge(json!({"200": ok("identity")}), error_responses(&["401"]))}}));
    paths.insert("/api/v1/tokens".into(), json!({
        "get": {"tags": ["Admin"], "operationId": "list_tokens", "summary": "List API tokens (never their secrets)", "description": admin,
            "responses": merge(json!({"200": ok("tokens")}), error_responses(&["401", "403"]))},
        "post": {"tags": ["Admin"], "operationId": "create_token", "summary": "Create an API token; the secret is in this response only",
            "description": format!("Body: {{name, role, customer?}}. An optional Idempotency-Key prevents a second token on retry. {admin}"),
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name", "role"],
                "properties": {"name": {"type": "string"}, "role": {"$ref": "#/components/schemas/Role"}, "customer": {"type": "string"}}}}}},
            "responses": merge(json!({"201": ok("the token, with its secret")}), error_responses(&["400", "401", "403", "413", "422"]))}}));
    paths.insert(
        "/api/v1/tokens/{id}".into(),
        json!({"delete": {"tags": ["Admin"], "operationId": "revoke_token",
        "summary": "Revoke a token", "description": admin,
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": merge(json!({"204": {"description": "revoked"}}), error_responses(&["401", "403", "404"]))}}),
    );
    paths.insert("/api/v1/audit".into(), json!({"get": {"tags": ["Admin"], "operationId": "audit",
        "summary": "Audit trail entries, oldest first", "description": roles(Action::ReadAudit),
        "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer"}}, {"name": "limit", "in": "query", "schema": {"type": "integer"}}],
        "responses": merge(json!({"200": ok("entries")}), error_responses(&["400", "401", "403"]))}}));
    paths.insert(
        "/api/v1/audit/verify".into(),
        json!({"get": {"tags": ["Admin"], "operationId": "audit_verify",
        "summary": "Recompute the audit hash chain", "description": roles(Action::ReadAudit),
        "responses": merge(json!({"200": ok("report")}), error_responses(&["401", "403"]))}}),
    );
    paths.insert("/metrics".into(), json!({"get": {"tags": ["Operations"], "operationId": "metrics",
        "summary": "Prometheus metrics", "description": roles(Action::ReadMetrics),
        "responses": merge(json!({"200": {"description": "text exposition format"}}), error_responses(&["401", "403"]))}}));
    paths.insert(
        "/healthz".into(),
        json!({"get": {"tags": ["Operations"], "operationId": "healthz", "security": [],
        "summary": "Liveness (no authentication, reveals nothing)", "responses": {"200": {"description": "ok"}}}}),
    );
    paths.insert("/readyz".into(), json!({"get": {"tags": ["Operations"], "operationId": "readyz", "security": [],
        "summary": "Readiness: the records store answers (no authentication)", "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}}));
}

fn telemetry_paths(paths: &mut serde_json::Map<String, Value>) {
    let write = roles(Action::WriteTelemetry);
    let read = roles(Action::ReadTelemetry);
    let report = json!({"description": "what was stored and every rejected sample with its reason", "content": {"application/json": {"schema": {"type": "object",
        "properties": {"batch_id": {"type": ["string", "null"]}, "stored": {"type": "integer"}, "duplicates": {"type": "integer"},
        "replaced": {"type": "integer"}, "replayed_batch": {"type": "boolean"}, "rejected": {"type": "array", "items": {"type": "object",
        "properties": {"series": {"type": "string"}, "index": {"type": "integer"}, "line": {"type": "integer"}, "timestamp": {"type": "integer"},
        "code": {"type": "string", "enum": ["unknown_asset", "unknown_series", "not_finite", "out_of_range", "timestamp_in_future", "negative_counter", "malformed_line"]},
        "reason": {"type": "string"}}}}}}}}});
    let atomic = json!({"name": "atomic", "in": "query", "schema": {"type": "boolean", "default": false}, "description": "refuse the whole batch (422) if any sample is rejected"});
    let batch = json!({"type": "object", "required": ["series"], "properties": {"batch_id": {"type": "string", "description": "retries with the same id are answered without writing"},
        "series": {"type": "array", "items": {"type": "object", "required": ["asset", "signal", "timestamps", "values"], "properties": {
            "asset": {"type": "string"}, "signal": {"type": "string"},
            "timestamps": {"type": "array", "items": {"type": "integer"}, "description": "UTC milliseconds"},
            "values": {"type": "array", "items": {"type": ["number", "null"]}},
            "qualities": {"type": "array", "items": {"type": "integer"}, "description": "OPC UA status codes; omitted = good"}}}}}});
    paths.insert("/api/v1/telemetry".into(), json!({"post": {"tags": ["Telemetry"], "operationId": "write_telemetry",
        "summary": "Write samples grouped by series (acknowledged after fsync)", "description": format!("Devices only for their bound assets. {write}"),
        "parameters": [atomic], "requestBody": {"required": true, "content": {"application/json": {"schema": batch}}},
        "responses": merge(json!({"200": report}), error_responses(&["400", "401", "403", "413", "422"]))}}));
    paths.insert("/api/v1/write".into(), json!({"post": {"tags": ["Telemetry"], "operationId": "write_line_protocol",
        "summary": "Write InfluxDB line protocol (tag `asset` = asset path, fields = signals)", "description": write,
        "parameters": [atomic, {"name": "precision", "in": "query", "schema": {"type": "string", "enum": ["ns", "us", "ms", "s"], "default": "ns"}},
            {"name": "batch_id", "in": "query", "schema": {"type": "string"}}],
        "requestBody": {"required": true, "content": {"text/plain": {"schema": {"type": "string"}}}},
        "responses": merge(json!({"200": report}), error_responses(&["400", "401", "403", "413", "422"]))}}));
    let event = json!({"type": "object", "required": ["event", "kind"], "properties": {
        "event": {"type": "string", "description": "unique per gateway; a retry is recorded once"},
        "kind": {"type": "string", "description": "e.g. interlock, spool_overflow"},
        "asset": {"type": "string"}, "details": {"type": "object"}}});
    paths.insert("/api/v1/events".into(), json!({"post": {"tags": ["Telemetry"], "operationId": "record_event",
        "summary": "Report an edge event (an interlock's write, dropped data) into the audit trail as device.<kind>",
        "description": "Devices only for their bound assets.",
        "requestBody": {"required": true, "content": {"application/json": {"schema": event}}},
        "responses": merge(json!({"200": {"description": "recorded (false: this event was already recorded)",
            "content": {"application/json": {"schema": {"type": "object", "properties": {"recorded": {"type": "boolean"}}}}}}}),
            error_responses(&["401", "403", "422"]))}}));
    let asset = json!({"name": "asset", "in": "query", "required": true, "schema": {"type": "string"}});
    let signal = json!({"name": "signal", "in": "query", "schema": {"type": "string"}});
    let from = json!({"name": "from", "in": "query", "schema": {"type": "integer"}, "description": "UTC ms; default one hour before `to`"});
    let to = json!({"name": "to", "in": "query", "schema": {"type": "integer"}, "description": "UTC ms, exclusive; default now"});
    let bucket = json!({"name": "bucket_ms", "in": "query", "schema": {"type": "integer", "minimum": 1}});
    let ok = json!({"description": "result", "content": {"application/json": {"schema": {"type": "object"}}}});
    for (path, id, summary, params) in [
        (
            "/api/v1/telemetry/range",
            "telemetry_range",
            "Raw samples of one series, or buckets with bucket_ms",
            json!([asset, signal, from, to, bucket]),
        ),
        ("/api/v1/telemetry/latest", "telemetry_latest", "Newest sample of every signal of an asset", json!([asset])),
        (
            "/api/v1/telemetry/asset",
            "telemetry_asset",
            "Every signal of an asset over a window (default the last hour)",
            json!([asset, from, to]),
        ),
        (
            "/api/v1/telemetry/counter",
            "telemetry_counter",
            "How much a counter advanced, resets and rollover handled",
            json!([asset, signal, from, to]),
        ),
        ("/api/v1/telemetry/stream", "telemetry_stream", "Server-Sent Events: new samples of an asset", json!([asset])),
    ] {
        paths.insert(
            path.into(),
            json!({"get": {"tags": ["Telemetry"], "operationId": id, "summary": summary,
            "description": format!("Customer-viewers only for their own assets. {read}"), "parameters": params,
            "responses": merge(json!({"200": ok}), error_responses(&["400", "401", "403", "404", "422"]))}}),
        );
    }
}

/// A type's schema plus every schema it refers to.
fn with_dependencies<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
    out.push((T::name().into_owned(), T::schema()));
    T::schemas(out);
}

/// Builds the whole document.
pub fn document() -> Value {
    let mut schemas = Vec::new();
    with_dependencies::<Customer>(&mut schemas);
    with_dependencies::<Site>(&mut schemas);
    with_dependencies::<Line>(&mut schemas);
    with_dependencies::<Asset>(&mut schemas);
    with_dependencies::<Component>(&mut schemas);
    with_dependencies::<AssetModel>(&mut schemas);
    with_dependencies::<Part>(&mut schemas);
    with_dependencies::<Warehouse>(&mut schemas);
    with_dependencies::<Technician>(&mut schemas);
    with_dependencies::<Contract>(&mut schemas);
    with_dependencies::<User>(&mut schemas);
    with_dependencies::<Role>(&mut schemas);
    let components = ComponentsBuilder::new().schemas_from_iter(schemas).build();
    let mut components = serde_json::to_value(components).unwrap_or_else(|_| json!({}));
    let mut paths = serde_json::Map::new();
    for kind in Kind::ALL {
        record_paths(kind, &mut paths);
    }
    admin_paths(&mut paths);
    telemetry_paths(&mut paths);
    let error = json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
        "required": ["code", "message", "details"], "properties": {"code": {"type": "string"},
        "message": {"type": "string", "description": "what went wrong and how to fix it"}, "details": {}}}}});
    let mut responses = serde_json::Map::new();
    for (code, text) in [
        ("400", "malformed request"),
        ("401", "missing, invalid or revoked token"),
        ("403", "the role may not do this"),
        ("404", "no such record (or not visible to the caller)"),
        ("409", "conflict: exists, referenced or version moved on"),
        ("413", "body too large"),
        ("422", "well-formed but invalid"),
    ] {
        responses.insert(
            format!("Error{code}"),
            json!({"description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    if let Some(object) = components.as_object_mut() {
        object.entry("schemas").or_insert_with(|| json!({}))["Error"] = error;
        object.insert("responses".into(), Value::Object(responses));
        object.insert(
            "securitySchemes".into(),
            json!({"bearer": {"type": "http", "scheme": "bearer",
            "description": "an API token from `treaty token create` or POST /api/v1/tokens"}}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Treaty API", "version": env!("CARGO_PKG_VERSION"),
            "description": "Treaty's installed base, tokens and audit trail. Every endpoint except /healthz and /readyz needs a bearer token."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": components,
    })
}
