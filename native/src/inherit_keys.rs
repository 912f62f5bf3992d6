//! The ancestor table's (ancestors.rs) map from a 24-byte key (trace id + span id) to a u32
//! (a place in the records, or DISPUTED): open addressing, linear probing, backward-shift
//! deletion, as table.rs's KeyMap for the budget's keys.
//!
//! Why not std's HashMap: the ancestor table sits at its bound (an eviction per put) and a
//! removal there leaves a tombstone; a table whose keys come and go at a steady count
//! rehashes into double the buckets once tombstones fill it, so it settled at ~100 native
//! bytes per entry after churn against ~62 before. Here no tombstones: the slots follow the
//! live count, at most 4/5 full and halved below 1/8 (32 bytes a slot; 65,536 slots,
//! ~2.1 MB, at the 50,000 bound). Each slot keeps its key's hash bits: the shift of a
//! deletion hashes nothing again (with SipHash per moved key, a put at the bound cost 1.6x
//! std's). The price left: at ~3/4 full a new key's probe and a deletion's shift walk runs
//! of ~9 slots, so a put at the bound costs ~1.2x std's (bench/inherit_puts.py's churn);
//! lookups are as fast. Keys come off the network: slots are chosen by std's SipHash under
//! a random key (RandomState).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

pub type Key24 = [u8; 24];

/// The value that marks a free slot: never a value put (records' places are far fewer;
/// DISPUTED is u32::MAX).
const FREE: u32 = u32::MAX - 1;
const MIN_SLOTS: usize = 16;

/// A key, its value and its hash's low bits side by side (32 bytes): a probe reads one
/// cache line, compares keys only when the hashes agree, and a deletion's shift finds a
/// key's home without hashing it again.
#[derive(Clone, Copy)]
struct Entry {
    key: Key24,
    value: u32, // FREE: the slot is free
    hash: u32,
}

const FREE_ENTRY: Entry = Entry {
    key: [0; 24],
    value: FREE,
    hash: 0,
};

pub struct Key24Map {
    slots: Vec<Entry>,
    len: usize,
    hasher: RandomState,
}

impl Default for Key24Map {
    fn default() -> Self {
        Self::new()
    }
}

impl Key24Map {
    pub fn new() -> Self {
        Key24Map {
            slots: vec![FREE_ENTRY; MIN_SLOTS],
            len: 0,
            hasher: RandomState::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    fn slot_count(&self) -> usize {
        self.slots.len()
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn hash(&self, key: &Key24) -> u32 {
        self.hasher.hash_one(key) as u32 // the low bits: slots are far fewer than 2^32
    }

    /// The key's slot, or the free slot where it would go.
    fn find(&self, key: &Key24, hash: u32) -> (usize, bool) {
        let mask = self.mask();
        let mut at = hash as usize & mask;
        loop {
            let entry = &self.slots[at];
            if entry.value == FREE {
                return (at, false);
            }
            if entry.hash == hash && entry.key == *key {
                return (at, true);
            }
            at = (at + 1) & mask;
        }
    }

    pub fn get(&self, key: &Key24) -> Option<u32> {
        let (at, found) = self.find(key, self.hash(key));
        found.then(|| self.slots[at].value)
    }

    /// -> the value the key had.
    pub fn insert(&mut self, key: Key24, value: u32) -> Option<u32> {
        debug_assert!(value != FREE);
        let hash = self.hash(&key);
        let (at, found) = self.find(&key, hash);
        if found {
            return Some(std::mem::replace(&mut self.slots[at].value, value));
        }
        self.slots[at] = Entry { key, value, hash };
        self.len += 1;
        if self.len * 5 > self.slots.len() * 4 {
            self.resize(self.slots.len() * 2);
        }
        None
    }

    pub fn remove(&mut self, key: &Key24) -> Option<u32> {
        let (mut hole, found) = self.find(key, self.hash(key));
        if !found {
            return None;
        }
        let value = self.slots[hole].value;
        // Backward-shift deletion: later keys of the run move into the hole when their home
        // allows, so every key stays reachable from its home without tombstones.
        let mask = self.mask();
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let entry = self.slots[at];
            if entry.value == FREE {
                break;
            }
            let home = entry.hash as usize & mask;
            // The key at `at` may move to `hole` unless its home lies cyclically in (hole, at].
            let stays = if hole <= at {
                hole < home && home <= at
            } else {
                hole < home || home <= at
            };
            if !stays {
                self.slots[hole] = entry;
                hole = at;
            }
        }
        self.slots[hole] = FREE_ENTRY;
        self.len -= 1;
        if self.slots.len() > MIN_SLOTS && self.len * 8 < self.slots.len() {
            self.resize(self.slots.len() / 2); // an eighth full: half the slots (a quarter full)
        }
        Some(value)
    }

    fn resize(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![FREE_ENTRY; slots]);
        for entry in old {
            if entry.value != FREE {
                let (at, _) = self.find(&entry.key, entry.hash);
                self.slots[at] = entry;
            }
        }
    }

    pub fn clear(&mut self) {
        *self = Key24Map {
            hasher: std::mem::take(&mut self.hasher),
            ..Key24Map::new()
        };
    }

    /// Bytes held natively.
    pub fn nbytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Against std's HashMap, op for op, on few distinct keys (long probe runs, wrap-around,
    /// growth and shrinking): a small xorshift stream, no dependency.
    #[test]
    fn the_map_answers_as_std_hashmap() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..40 {
            let mut map = Key24Map::new();
            let mut oracle: HashMap<Key24, u32> = HashMap::new();
            let distinct = 8 + round * 25;
            for _ in 0..4000 {
                let r = next();
                let mut key = [0u8; 24];
                key[..8].copy_from_slice(&(r % distinct as u64).to_le_bytes());
                let value = (r >> 40) as u32;
                match (r >> 32) % 5 {
                    0 | 1 => assert_eq!(map.insert(key, value), oracle.insert(key, value)),
                    2 | 3 => assert_eq!(map.remove(&key), oracle.remove(&key)),
                    _ => assert_eq!(map.get(&key), oracle.get(&key).copied()),
                }
                assert_eq!(map.len(), oracle.len());
            }
            for (key, value) in &oracle {
                assert_eq!(map.get(key), Some(*value));
            }
            assert!(map.slot_count() >= MIN_SLOTS && map.len() * 5 <= map.slot_count() * 4);
        }
    }
}
