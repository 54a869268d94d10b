//! Telemetry engine tests through its public API, including crash recovery by SIGKILL
//! of a child process that writes.

mod crash;
mod disk_full;
mod engine;
mod rollups;
#[path = "../../../../tests/support/small_disk.rs"]
mod small_disk;
mod stream;

use model::sample::{Sample, SeriesKey};

/// A batch id whose digest follows the content (tests need no cryptographic hash).
pub fn batch(scope: &str, id: &str, series: &[(SeriesKey, Vec<Sample>)]) -> tsdb::BatchId {
    use std::hash::{Hash, Hasher};
    let mut digest = [0u8; 32];
    for (lane, part) in digest.chunks_mut(8).enumerate() {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        lane.hash(&mut hasher);
        for (key, samples) in series {
            key.hash(&mut hasher);
            for s in samples {
                (s.ts, s.value.to_bits(), s.quality.0).hash(&mut hasher);
            }
        }
        part.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    tsdb::BatchId { scope: scope.into(), id: id.into(), digest }
}
