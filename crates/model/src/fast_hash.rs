//! A fast, non-cryptographic hasher (FxHash, as in rustc) for the hot maps of the ingest
//! path: series and asset lookups by name, several per sample batch, where SipHash's
//! resistance to chosen keys buys nothing — the maps' keys are the installed base's own
//! names, never inserted from a request unvalidated.

use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// FxHash: a rotate, xor and multiply per word.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` with FxHash.
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    #[test]
    fn equal_keys_hash_equally_and_near_keys_differ() {
        let build = BuildHasherDefault::<FxHasher>::default();
        let hash = |s: &str| build.hash_one(s);
        assert_eq!(hash("acme/plant-1/line-1/p-101"), hash("acme/plant-1/line-1/p-101"));
        assert_ne!(hash("acme/plant-1/line-1/p-101"), hash("acme/plant-1/line-1/p-102"));
        assert_ne!(hash("a"), hash("a\0"), "the length of a tail is part of the hash");
        let mut map: FxHashMap<String, u32> = FxHashMap::default();
        map.insert("flow".into(), 1);
        assert_eq!(map.get("flow"), Some(&1));
        let mut hasher = FxHasher::default();
        7u32.hash(&mut hasher);
        assert_ne!(hasher.finish(), 0);
    }
}
