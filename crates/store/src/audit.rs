//! The audit trail: an append-only, hash-chained log of every write.
//!
//! Each entry's hash is SHA-256 over the previous entry's hash and this entry's exact
//! stored text, so editing any field, deleting or reordering entries breaks the chain.
//! The newest (seq, hash) is also kept as an anchor beside the log, updated in the same
//! transaction, so that cutting entries off the end is detected too. Someone who can
//! rewrite the database file and recompute every hash *and* the anchor is beyond what an
//! in-file chain can catch; `treaty audit verify` prints the head hash so it can be
//! recorded elsewhere and compared later.

use model::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry. `before`/`after` are the record's JSON (null on create/delete).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: Timestamp,
    pub actor: String,
    /// `create`, `update`, `delete`, `token.create`, `token.revoke`.
    pub action: String,
    pub kind: String,
    pub id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub prev_hash: String,
    pub hash: String,
}

/// An entry as stored: the text that is hashed.
pub(crate) struct RawEntry {
    pub seq: u64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub kind: String,
    pub id: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl RawEntry {
    /// The hash this entry must carry, given its content and `prev_hash`.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.prev_hash.as_str(),
            &self.seq.to_string(),
            &self.at.to_string(),
            &self.actor,
            &self.action,
            &self.kind,
            &self.id,
            self.before.as_deref().unwrap_or("\u{0}"),
            self.after.as_deref().unwrap_or("\u{0}"),
        ] {
            // Length-prefix each field so that moving text between fields changes the hash.
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex(&h.finalize())
    }

    pub fn into_entry(self) -> AuditEntry {
        let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
        AuditEntry {
            seq: self.seq,
            at: Timestamp(self.at),
            actor: self.actor,
            action: self.action,
            kind: self.kind,
            id: self.id,
            before: parse(self.before),
            after: parse(self.after),
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The outcome of checking the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    pub entries: u64,
    /// Hash of the newest entry (or the genesis hash when empty).
    pub head: String,
    /// Every break found, oldest first; empty means the chain is intact.
    pub problems: Vec<String>,
}

impl AuditReport {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks entries in seq order and reports every break.
pub(crate) struct Verifier {
    report: AuditReport,
    last_seq: u64,
}

impl Verifier {
    pub fn new() -> Self {
        Self { report: AuditReport { entries: 0, head: GENESIS_HASH.into(), problems: Vec::new() }, last_seq: 0 }
    }

    pub fn check(&mut self, entry: &RawEntry) {
        let problems = &mut self.report.problems;
        if entry.seq != self.last_seq + 1 {
            problems.push(format!(
                "entries {}..{} are missing (deleted) before entry {}",
                self.last_seq + 1,
                entry.seq.saturating_sub(1),
                entry.seq
            ));
        } else if entry.prev_hash != self.report.head {
            problems
                .push(format!("entry {} does not chain to entry {} (reordered or replaced)", entry.seq, self.last_seq));
        }
        if entry.compute_hash() != entry.hash {
            problems.push(format!("entry {} was modified after it was written (hash mismatch)", entry.seq));
        }
        self.report.entries += 1;
        self.last_seq = entry.seq;
        self.report.head = entry.hash.clone();
    }

    /// Compares the end of the chain with the anchor kept beside it.
    pub fn finish(mut self, anchor: Option<(u64, String)>) -> AuditReport {
        let (seq, hash) = anchor.unwrap_or((0, GENESIS_HASH.to_owned()));
        if seq > self.last_seq {
            self.report.problems.push(format!(
                "entries {}..{} were cut off the end of the log",
                self.last_seq + 1,
                seq
            ));
        } else if seq < self.last_seq || hash != self.report.head {
            self.report.problems.push(format!(
                "the log's head (entry {}) does not match the recorded anchor (entry {seq}); entries were appended or rewritten outside Treaty",
                self.last_seq
            ));
        }
        self.report
    }
}
