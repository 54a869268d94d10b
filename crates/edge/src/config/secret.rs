//! Passwords for brokers and servers: never in the edge file, but in an environment
//! variable or a file it names. Read when a source is built, so a missing one stops
//! the gateway at start rather than failing every reconnect.

use std::path::{Path, PathBuf};

/// Why a password could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("environment variable {variable} (the password) is not set")]
    NotSet { variable: String },
    #[error("password file {}: {error}", path.display())]
    File { path: PathBuf, error: std::io::Error },
}

/// A password from the environment variable `env` or the file `file` (its first line),
/// an empty one when neither is given.
pub fn password(env: Option<&str>, file: Option<&Path>) -> Result<String, PasswordError> {
    match (env, file) {
        (Some(var), _) => std::env::var(var).map_err(|_| PasswordError::NotSet { variable: var.to_owned() }),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|p| p.lines().next().unwrap_or("").to_owned())
            .map_err(|error| PasswordError::File { path: file.to_owned(), error }),
        (None, None) => Ok(String::new()),
    }
}
