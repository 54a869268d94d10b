//! `Idempotency-Key` handling for creating POSTs.
//!
//! The key is scoped to the caller. The first request with a key stores its response in
//! the same transaction as its write; a retry with the same key and the same request
//! (method, path and canonical JSON body) gets that response again, marked with
//! `Idempotent-Replayed: true`; the same key with a different request is refused (422).

use crate::error::{ApiError, ApiResult};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use model::Principal;
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::{IdempotencyRecord, RecordStoreRef};

pub const HEADER: &str = "idempotency-key";
const MAX_KEY_LEN: usize = 200;

/// The request's key, if it sent one (and it is well-formed).
pub fn optional_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    let key = value.to_str().ok().map(str::trim).filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN);
    match key {
        Some(key) if key.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(key.to_owned())),
        _ => Err(ApiError::bad_request(format!(
            "the Idempotency-Key header must be 1..={MAX_KEY_LEN} visible ASCII characters, e.g. a UUID"
        ))),
    }
}

/// The request's key; creating POSTs must send one.
pub fn required_key(headers: &HeaderMap) -> ApiResult<String> {
    optional_key(headers)?.ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "idempotency_key_required", "this request creates a record: send an Idempotency-Key header (a unique string such as a UUID) so that a retry cannot create it twice")
    })
}

/// SHA-256 over method, path and the body's canonical JSON (object keys sorted).
pub fn request_hash(method: &str, path: &str, body: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(body, &mut canonical);
    let digest = Sha256::new()
        .chain_update(method)
        .chain_update([0])
        .chain_update(path)
        .chain_update([0])
        .chain_update(canonical)
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The stored response for this key, if any; 422 if the key was used for another request.
pub async fn replay(
    store: &RecordStoreRef,
    principal: &Principal,
    key: &str,
    hash: &str,
) -> ApiResult<Option<Response>> {
    let Some(record) = store.idempotency(&principal.actor, key).await? else { return Ok(None) };
    if record.request_hash != hash {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            format!(
                "Idempotency-Key `{key}` was already used for a different request; use a new key for a new request"
            ),
        ));
    }
    Ok(Some(stored_response(&record)))
}

fn stored_response(record: &IdempotencyRecord) -> Response {
    let status = StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK);
    let mut response = (status, record.body.clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_but_content_does() {
        let a = request_hash("POST", "/x", &json!({"a": 1, "b": {"d": [1, 2], "c": null}}));
        let b = request_hash("POST", "/x", &json!({"b": {"c": null, "d": [1, 2]}, "a": 1}));
        assert_eq!(a, b);
        assert_ne!(a, request_hash("POST", "/y", &json!({"a": 1, "b": {"d": [1, 2], "c": null}})));
        assert_ne!(a, request_hash("POST", "/x", &json!({"a": 1, "b": {"d": [2, 1], "c": null}})));
    }
}
