//! Identifiers and readable paths.
//!
//! Hierarchy records are identified by their path, which is also what people read:
//! `acme/plant-1/line-2/press-7/spindle` is customer `acme`, site `plant-1`, line `line-2`,
//! asset `press-7`, component `spindle`. Treaty never rewrites a path, so paths are stable
//! ids; moving a machine is an explicit delete and create. Records outside the hierarchy
//! (parts, models, warehouses, technicians, contracts, users) have a single segment id.

use thiserror::Error;

/// Why an id or path was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("is {len} characters long; at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    #[error(
        "segment `{segment}` contains `{ch}`; use letters, digits, `-`, `_` and `.`, starting with a letter or digit"
    )]
    BadChar { segment: String, ch: char },
    #[error("`{path}` has {found} segments; {what} ids have exactly {expected} (e.g. `{example}`)")]
    Depth { path: String, what: &'static str, found: usize, expected: usize, example: &'static str },
}

/// The longest id accepted anywhere; keeps URLs and index keys bounded.
pub const MAX_ID_LEN: usize = 200;

/// Checks one path segment or flat id: `[A-Za-z0-9][A-Za-z0-9._-]*`.
pub fn check_slug(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { len: s.len(), max: MAX_ID_LEN });
    }
    for (i, ch) in s.chars().enumerate() {
        let ok = ch.is_ascii_alphanumeric() || (i > 0 && matches!(ch, '-' | '_' | '.'));
        if !ok {
            return Err(IdError::BadChar { segment: s.to_owned(), ch });
        }
    }
    Ok(())
}

/// Checks a hierarchy path of exactly `depth` segments.
pub fn check_path(path: &str, depth: usize, what: &'static str, example: &'static str) -> Result<(), IdError> {
    if path.is_empty() {
        return Err(IdError::Empty);
    }
    if path.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { len: path.len(), max: MAX_ID_LEN });
    }
    let segments: Vec<&str> = path.split('/').collect();
    for segment in &segments {
        check_slug(segment).map_err(|e| match e {
            IdError::Empty => IdError::BadChar { segment: path.to_owned(), ch: '/' },
            other => other,
        })?;
    }
    if segments.len() != depth {
        return Err(IdError::Depth { path: path.to_owned(), what, found: segments.len(), expected: depth, example });
    }
    Ok(())
}

/// The path one level up (`acme/plant-1/line-2` -> `acme/plant-1`), if any.
pub fn path_parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(parent, _)| parent)
}

/// The first segment of a path: the customer (tenant) it belongs to.
pub fn path_customer(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(check_slug("P-104").is_ok());
        assert!(check_slug("bearing_de.v2").is_ok());
        assert_eq!(check_slug(""), Err(IdError::Empty));
        assert!(matches!(check_slug("-x"), Err(IdError::BadChar { ch: '-', .. })));
        assert!(matches!(check_slug("a b"), Err(IdError::BadChar { ch: ' ', .. })));
        assert!(matches!(check_slug(&"a".repeat(201)), Err(IdError::TooLong { .. })));
    }

    #[test]
    fn paths() {
        assert!(check_path("acme/plant-1", 2, "site", "acme/plant-1").is_ok());
        assert!(matches!(check_path("acme", 2, "site", "acme/plant-1"), Err(IdError::Depth { found: 1, .. })));
        assert!(matches!(check_path("acme//x", 3, "line", ""), Err(IdError::BadChar { .. })));
        assert_eq!(path_parent("a/b/c"), Some("a/b"));
        assert_eq!(path_parent("a"), None);
        assert_eq!(path_customer("a/b/c"), "a");
    }
}
