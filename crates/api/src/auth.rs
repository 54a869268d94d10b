//! Bearer-token authentication.
//!
//! A token is `trt_` + 64 hex characters of randomness. The store keeps only its
//! argon2id hash, found by a public id derived from the token (a truncated SHA-256,
//! which reveals nothing usable about a 256-bit secret). Argon2 is deliberately slow,
//! and gateways send many small requests, so an authenticated token is remembered in
//! memory by its SHA-256 with the principal it names, for at most `REMEMBER`. Any change
//! to tokens forgets everything remembered: a revocation through the API at once, one
//! made by the CLI in another process as soon as the record feed relays it (the hub
//! calls `forget` on every `records.token.*` event, within about a second), and
//! `REMEMBER` bounds the rest.

use crate::error::ApiError;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use model::{Principal, Role, Timestamp};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use store::{RecordStoreRef, TokenRecord};

/// The shortest token accepted from an operator (e.g. `TREATY_ADMIN_TOKEN`).
pub const MIN_TOKEN_LEN: usize = 32;

/// Bound on remembered tokens; the cache is cleared when it is full.
const CACHE_LIMIT: usize = 10_000;

/// How long an authenticated token is trusted without reading its record again.
const REMEMBER: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a device token needs at least one asset path (or site/line prefix) it may write")]
    DeviceWithoutAssets,
    #[error("only device tokens are bound to assets, not {0}")]
    AssetsForRole(Role),
    #[error("no randomness available: {0}")]
    NoRandomness(getrandom::Error),
    #[error("a token must be at least {MIN_TOKEN_LEN} visible ASCII characters")]
    BadSecret,
    #[error("a customer-viewer token needs --customer")]
    ViewerWithoutCustomer,
    #[error("only customer-viewer tokens are bound to a customer, not {0}")]
    CustomerForRole(Role),
    #[error("{0}")]
    Hash(argon2::password_hash::Error),
}

/// A freshly issued token: the secret (shown once) and the record to store.
pub struct IssuedToken {
    pub secret: String,
    pub record: TokenRecord,
}

/// Creates a new random token for `role`.
pub fn issue_token(name: &str, role: Role, customer: Option<String>) -> Result<IssuedToken, TokenError> {
    issue_bound_token(name, role, customer, Vec::new())
}

/// Creates a new random token; `assets` binds a device token to asset paths or prefixes.
pub fn issue_bound_token(
    name: &str,
    role: Role,
    customer: Option<String>,
    assets: Vec<String>,
) -> Result<IssuedToken, TokenError> {
    match (role, assets.is_empty()) {
        (Role::Device, true) => return Err(TokenError::DeviceWithoutAssets),
        (role, false) if role != Role::Device => return Err(TokenError::AssetsForRole(role)),
        _ => {}
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(TokenError::NoRandomness)?;
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
) -> Result<IssuedToken, TokenError> {
    if secret.len() < MIN_TOKEN_LEN || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::BadSecret);
    }
    match (role, &customer) {
        (Role::CustomerViewer, None) => return Err(TokenError::ViewerWithoutCustomer),
        (role, Some(_)) if role != Role::CustomerViewer => return Err(TokenError::CustomerForRole(role)),
        _ => {}
    }
    // The salt comes from the operating system's randomness.
    let hash = Argon2::default().hash_password(secret.as_bytes()).map_err(TokenError::Hash)?.to_string();
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
    /// SHA-256 of a token -> what it authenticated as, and when its record was read.
    remembered: Mutex<HashMap<[u8; 32], (Principal, std::time::Instant)>>,
    /// Argon2id verifications at once (one per core): each takes 19 MiB and a core for
    /// tens of milliseconds, so many connections presenting a token at the same moment
    /// (gateways reconnecting, or a flood of wrong tokens) cannot exhaust memory.
    verifying: tokio::sync::Semaphore,
}

impl Authenticator {
    pub fn new(store: RecordStoreRef) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self { store, remembered: Mutex::new(HashMap::new()), verifying: tokio::sync::Semaphore::new(cores) }
    }

    /// Resolves an `Authorization` header to a principal, or 401.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, ApiError> {
        let Some(header) = header else {
            return Err(ApiError::unauthorized("missing `Authorization: Bearer <token>` header"));
        };
        let Some(secret) = header.strip_prefix("Bearer ").map(str::trim) else {
            return Err(ApiError::unauthorized("the Authorization header must be `Bearer <token>`"));
        };
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if let Some(principal) = self.recall(&digest) {
            return Ok(principal);
        }
        let invalid = || ApiError::unauthorized("invalid or revoked token");
        let _turn = self.verifying.acquire().await.map_err(ApiError::internal)?;
        // Another request with the same token may have verified it while this one waited.
        if let Some(principal) = self.recall(&digest) {
            return Ok(principal);
        }
        let record = self.store.token(&token_id(secret)).await.map_err(ApiError::from)?.ok_or_else(invalid)?;
        if record.revoked_at.is_some() || !verify(secret, &record.hash).await {
            return Err(invalid());
        }
        let principal = Principal {
            actor: format!("token:{} ({})", record.id, record.name),
            role: record.role,
            customer: record.customer,
            assets: record.assets,
        };
        self.remember(digest, principal.clone());
        Ok(principal)
    }

    /// Forgets every remembered token: the next request of each reads its record again.
    /// Called whenever tokens change.
    pub fn forget(&self) {
        if let Ok(mut cache) = self.remembered.lock() {
            cache.clear();
        }
    }

    fn recall(&self, digest: &[u8; 32]) -> Option<Principal> {
        let cache = self.remembered.lock().ok()?;
        let (principal, at) = cache.get(digest)?;
        (at.elapsed() < REMEMBER).then(|| principal.clone())
    }

    fn remember(&self, digest: [u8; 32], principal: Principal) {
        if let Ok(mut cache) = self.remembered.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(digest, (principal, std::time::Instant::now()));
        }
    }
}

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
