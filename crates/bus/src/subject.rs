//! Subjects and filters, in NATS' syntax.

use crate::{Error, Result};

fn valid_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A subject: dot-separated tokens of letters, digits, `_` and `-`.
pub fn check_subject(subject: &str) -> Result<()> {
    if subject.split('.').all(valid_token) { Ok(()) } else { Err(Error::BadSubject(subject.to_owned())) }
}

/// A filter: tokens, `*` for any one token, `>` (last only) for one or more tokens.
pub fn check_filter(filter: &str) -> Result<()> {
    let tokens: Vec<&str> = filter.split('.').collect();
    let ok =
        tokens.iter().enumerate().all(|(i, t)| valid_token(t) || *t == "*" || (*t == ">" && i + 1 == tokens.len()));
    if ok { Ok(()) } else { Err(Error::BadFilter(filter.to_owned())) }
}

/// Whether `subject` matches `filter`.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in filter.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (t, Some(s)) if t == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(matches("records.asset.*", "records.asset.update"));
        assert!(!matches("records.asset.*", "records.asset.device.interlock"));
        assert!(matches("records.>", "records.asset.device.interlock"));
        assert!(!matches("records.>", "records"));
        assert!(matches("records.*.delete", "records.asset_model.delete"));
        assert!(!matches("records.asset", "records.asset.update"));
        assert!(check_subject("records.asset_model.update").is_ok());
        assert!(check_subject("records..update").is_err());
        assert!(check_subject("records.*").is_err());
        assert!(check_filter("records.>").is_ok());
        assert!(check_filter("records.>.x").is_err());
    }
}
