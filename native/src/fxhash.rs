//! A small fast hasher (the Fx hash rustc uses) for lookups in a table this crate builds from
//! its own keys (the watched keys): SipHash's DoS resistance buys nothing there, since the
//! table's content is fixed by the config, and it costs more than the lookup it serves.
//! Never use it for a table a request fills (the per-batch string interner keeps SipHash).

use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn finds_every_key_and_nothing_else() {
        let keys: Vec<Vec<u8>> = (0..300).map(|i| format!("key.{i}.x").into_bytes()).collect();
        let mut map: HashMap<&[u8], usize, FxBuild> = HashMap::default();
        for (i, key) in keys.iter().enumerate() {
            map.insert(key.as_slice(), i);
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(map.get(key.as_slice()), Some(&i));
        }
        assert_eq!(map.get(b"key.300.x".as_slice()), None);
        assert_eq!(map.get(b"".as_slice()), None);
    }
}
