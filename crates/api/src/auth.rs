//! Bearer-token authentication.
//!
//! A token is `trt_` + 64 hex characters of randomness. The store keeps only its
//! argon2id hash, found by a public id derived from the token (a truncated SHA-256,
//! which reveals nothing usable about a 256-bit secret). Argon2 is deliberately slow,
//! so a successful verification is remembered in memory by the token's SHA-256; the
//! token record itself is re-read on every request, so revocation is immediate.

use crate::error::ApiError;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use model::{Principal, Role, Timestamp};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use store::{RecordStoreRef, TokenRecord};

/// The shortest token accepted from an operator (e.g. `TREATY_ADMIN_TOKEN`).
pub const MIN_TOKEN_LEN: usize = 32;

/// Bound on remembered verifications; the cache is cleared when it is full.
const CACHE_LIMIT: usize = 10_000;

/// A freshly issued token: the secret (shown once) and the record to store.
pub struct IssuedToken {
    pub secret: String,
    pub record: TokenRecord,
}

/// Creates a new random token for `role`.
pub fn issue_token(name: &str, role: Role, customer: Option<String>) -> Result<IssuedToken, String> {
    issue_bound_token(name, role, customer, Vec::new())
}

/// Creates a new random token; `assets` binds a device token to asset paths or prefixes.
pub fn issue_bound_token(
    name: &str,
    role: Role,
    customer: Option<String>,
    assets: Vec<String>,
) -> Result<IssuedToken, String> {
    match (role, assets.is_empty()) {
        (Role::Device, true) => {
            return Err("a device token needs at least one asset path (or site/line prefix) it may write".into());
        }
        (role, false) if role != Role::Device => {
            return Err(format!("only device tokens are bound to assets, not {role}"));
        }
        _ => {}
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness available: {e}"))?;
    let secret = format!("trt_{}", hex(&bytes));
    let mut issued = token_from_secret(secret, name, role, customer)?;
    issued.record.assets = assets;
    Ok(issued)
}

/// Builds the record for an operator-chosen secret (checked for length and charset).
pub fn token_from_secret(
    secret: String,
    name: &str,
    role: Role,
    customer: Option<String>,
) -> Result<IssuedToken, String> {
    if secret.len() < MIN_TOKEN_LEN || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("a token must be at least {MIN_TOKEN_LEN} visible ASCII characters"));
    }
    match (role, &customer) {
        (Role::CustomerViewer, None) => return Err("a customer-viewer token needs --customer".into()),
        (role, Some(_)) if role != Role::CustomerViewer => {
            return Err(format!("only customer-viewer tokens are bound to a customer, not {role}"));
        }
        _ => {}
    }
    // The salt comes from the operating system's randomness.
    let hash = Argon2::default().hash_password(secret.as_bytes()).map_err(|e| e.to_string())?.to_string();
    let record = TokenRecord {
        id: token_id(&secret),
        name: name.to_owned(),
        role,
        customer,
        assets: Vec::new(),
        hash,
        created_at: Timestamp::now(),
        revoked_at: None,
    };
    Ok(IssuedToken { secret, record })
}

/// The public id of a token: the first 16 hex digits of its SHA-256.
pub fn token_id(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes())[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Verifies bearer tokens against the store.
pub struct Authenticator {
    store: RecordStoreRef,
    /// SHA-256 of a verified token -> the argon2 hash it was verified against.
    verified: Mutex<HashMap<[u8; 32], String>>,
}

impl Authenticator {
    pub fn new(store: RecordStoreRef) -> Self {
        Self { store, verified: Mutex::new(HashMap::new()) }
    }

    /// The principal behind an `Authorization` header value, or 401.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, ApiError> {
        let Some(header) = header else {
            return Err(ApiError::unauthorized("missing `Authorization: Bearer <token>` header"));
        };
        let Some(secret) = header.strip_prefix("Bearer ").map(str::trim) else {
            return Err(ApiError::unauthorized("the Authorization header must be `Bearer <token>`"));
        };
        let invalid = || ApiError::unauthorized("invalid or revoked token");
        let record = self.store.token(&token_id(secret)).await.map_err(ApiError::from)?.ok_or_else(invalid)?;
        if record.revoked_at.is_some() {
            return Err(invalid());
        }
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if !self.remembered(&digest, &record.hash) {
            if !verify(secret, &record.hash).await {
                return Err(invalid());
            }
            self.remember(digest, record.hash.clone());
        }
        Ok(Principal {
            actor: format!("token:{} ({})", record.id, record.name),
            role: record.role,
            customer: record.customer,
            assets: record.assets,
        })
    }

    fn remembered(&self, digest: &[u8; 32], hash: &str) -> bool {
        self.verified.lock().map(|cache| cache.get(digest).is_some_and(|h| h == hash)).unwrap_or(false)
    }

    fn remember(&self, digest: [u8; 32], hash: String) {
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(digest, hash);
        }
    }
}

/// Argon2 verification off the async threads: it takes tens of milliseconds on purpose.
async fn verify(secret: &str, hash: &str) -> bool {
    let (secret, hash) = (secret.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || Argon2::default().verify_password(secret.as_bytes(), hash.as_str()).is_ok())
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_differ() {
        let a = issue_token("a", Role::Admin, None).unwrap_or_else(|e| panic!("{e}"));
        let b = issue_token("b", Role::Admin, None).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("trt_") && a.secret.len() == 68);
        assert_eq!(a.record.id, token_id(&a.secret));
        assert!(!a.record.hash.contains(&a.secret));
        assert!(a.record.hash.starts_with("$argon2id$"));
        assert!(Argon2::default().verify_password(a.secret.as_bytes(), a.record.hash.as_str()).is_ok());
        assert!(Argon2::default().verify_password(b.secret.as_bytes(), a.record.hash.as_str()).is_err());
    }

    #[test]
    fn operator_tokens_are_checked() {
        assert!(token_from_secret("short".into(), "x", Role::Admin, None).is_err());
        assert!(token_from_secret("x".repeat(40), "x", Role::CustomerViewer, None).is_err());
        assert!(token_from_secret("x".repeat(40), "x", Role::Admin, Some("acme".into())).is_err());
        assert!(token_from_secret("x".repeat(40), "x", Role::Admin, None).is_ok());
    }
}
