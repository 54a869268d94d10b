//! Batch ids remembered for retries. A sender names a batch; a retry of the same batch
//! (same sender, same id, same content) is answered with the first write's outcome and
//! writes nothing; the same id with different content is refused, never answered with a
//! "stored" that did not happen. Ids are scoped to their sender, so one sender cannot
//! suppress another's data. The committer checks and records ids in one place, so two
//! concurrent writes of one id cannot both be written.
//!
//! Remembered ids live in memory, in the WAL records (replayed at open) and in
//! `batches.log`, rewritten at checkpoints for ids whose WAL segments are gone.

use crate::{Error, Result, WriteOutcome};
use model::Millis;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A batch's identity for retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchId {
    /// Who sent it: the same id from two senders names two batches.
    pub scope: String,
    pub id: String,
    /// SHA-256 of the batch's content, so that a reused id with other content is caught.
    pub digest: [u8; 32],
}

/// What the remembered ids say about a batch.
pub(crate) enum Seen {
    New,
    /// Written before: this outcome, nothing written now.
    Retry(WriteOutcome),
}

struct Remembered {
    at: Millis,
    /// `None` for ids written before digests were kept (trusted as retries).
    digest: Option<[u8; 32]>,
    outcome: WriteOutcome,
}

pub(crate) struct Batches {
    map: Mutex<HashMap<(String, String), Remembered>>,
    path: PathBuf,
}

impl Batches {
    pub fn open(dir: &Path) -> Self {
        let path = dir.join("batches.log");
        let map = std::fs::read_to_string(&path).map(|text| parse(&text)).unwrap_or_default();
        Self { map: Mutex::new(map), path }
    }

    /// Whether `batch` was written before; an error if its id was used for other content.
    pub fn check(&self, batch: &BatchId) -> Result<Seen> {
        let map = self.map.lock().map_err(|_| Error::Poisoned)?;
        let Some(seen) = map.get(&(batch.scope.clone(), batch.id.clone())) else { return Ok(Seen::New) };
        if seen.digest.is_some_and(|d| d != batch.digest) {
            return Err(Error::BatchConflict { id: batch.id.clone() });
        }
        Ok(Seen::Retry(WriteOutcome { replayed_batch: true, position: None, ..seen.outcome }))
    }

    pub fn remember(&self, scope: String, id: String, digest: Option<[u8; 32]>, at: Millis, outcome: WriteOutcome) {
        if let Ok(mut map) = self.map.lock() {
            map.insert((scope, id), Remembered { at, digest, outcome });
        }
    }

    /// Forgets ids older than `cutoff` and saves the rest durably.
    pub fn save(&self, cutoff: Millis) -> Result<()> {
        let text = {
            let mut map = self.map.lock().map_err(|_| Error::Poisoned)?;
            map.retain(|_, seen| seen.at >= cutoff);
            let mut text = String::new();
            for ((scope, id), seen) in map.iter() {
                let digest: String =
                    seen.digest.map(|d| d.iter().map(|b| format!("{b:02x}")).collect()).unwrap_or_default();
                let o = seen.outcome;
                text.push_str(&format!(
                    "v2\t{}\t{}\t{}\t{}\t{digest}\t{}\t{}\n",
                    seen.at,
                    o.stored,
                    o.duplicates,
                    o.replaced,
                    clean(scope),
                    clean(id)
                ));
            }
            text
        };
        crate::write_atomically(&self.path, text.as_bytes())
    }
}

fn clean(text: &str) -> String {
    text.replace(['\t', '\n'], " ")
}

fn parse(text: &str) -> HashMap<(String, String), Remembered> {
    text.lines().filter_map(parse_line).collect()
}

/// `v2 <at> <stored> <duplicates> <replaced> <digest hex> <scope> <id>`, or the first
/// format `<at> <stored> <duplicates> <replaced> <id>` (no scope, no digest).
fn parse_line(line: &str) -> Option<((String, String), Remembered)> {
    let (current, rest) = match line.strip_prefix("v2\t") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let mut parts = rest.splitn(if current { 7 } else { 5 }, '\t');
    let at = parts.next()?.parse().ok()?;
    let stored = parts.next()?.parse().ok()?;
    let duplicates = parts.next()?.parse().ok()?;
    let replaced = parts.next()?.parse().ok()?;
    let outcome = WriteOutcome { stored, duplicates, replaced, replayed_batch: false, position: None };
    if !current {
        let id = parts.next()?.to_owned();
        return Some(((String::new(), id), Remembered { at, digest: None, outcome }));
    }
    let digest = parse_digest(parts.next()?);
    let scope = parts.next()?.to_owned();
    let id = parts.next()?.to_owned();
    Some(((scope, id), Remembered { at, digest, outcome }))
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_ids_load_again_in_both_formats() {
        let dir = tempfile::tempdir().expect("dir");
        let batches = Batches::open(dir.path());
        let outcome = WriteOutcome { stored: 3, duplicates: 1, replaced: 0, replayed_batch: false, position: None };
        batches.remember("token:a".into(), "b-1".into(), Some([0xab; 32]), 1_000, outcome);
        batches.remember("token:b".into(), "old".into(), Some([1; 32]), 10, outcome);
        batches.save(500).expect("save");
        let mut text = std::fs::read_to_string(dir.path().join("batches.log")).expect("read");
        text.push_str("2000\t5\t0\t0\tlegacy id\n");
        std::fs::write(dir.path().join("batches.log"), text).expect("write");
        let again = Batches::open(dir.path());
        let id = |scope: &str, id: &str, digest| BatchId { scope: scope.into(), id: id.into(), digest };
        assert!(matches!(again.check(&id("token:a", "b-1", [0xab; 32])), Ok(Seen::Retry(o)) if o.stored == 3));
        assert!(matches!(again.check(&id("token:a", "b-1", [0; 32])), Err(Error::BatchConflict { .. })));
        assert!(matches!(again.check(&id("token:b", "b-1", [0xab; 32])), Ok(Seen::New)), "scoped to the sender");
        assert!(matches!(again.check(&id("token:b", "old", [1; 32])), Ok(Seen::New)), "expired");
        assert!(matches!(again.check(&id("", "legacy id", [9; 32])), Ok(Seen::Retry(o)) if o.stored == 5));
    }
}
