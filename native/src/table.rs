//! The budget's commit-once set and the spend ledger's dedupe keys as a native table: span keys
//! (`hash()` of a span's identity, a Python int) -> the expiry they were added with, dropped a
//! generation at a time. The Python structure it mirrors, rule for rule, is the dict and sealed
//! lists of `costctx.budget.seen.SeenSpans` (the fallback and the oracle; its docstring says why
//! each rule is there); `NativeSeenSpans` there drives this table with the same policy.
//!
//! Why native: in a dict an entry costs its slot (~40-70 bytes at the dict's load) plus an int
//! object for the key (32) plus its place in a sealed generation's list (8): ~95 bytes. Here it
//! is a 16-byte slot in an open-addressing map kept 2/5 to 4/5 full (20-40 bytes per key) plus 8
//! in a generation's key list, and nothing the cyclic GC tracks.
//!
//! Why not std's HashMap: a removal there leaves a tombstone, and a table whose keys come and go
//! at a steady count doubles once tombstones fill it (hashbrown resizes whenever more than half
//! its capacity is live): at the commit-once bound it settled at ~65 bytes per key. `KeyMap`
//! uses linear probing with backward-shift deletion: no tombstones, so its size follows the
//! live count. Slots are chosen by std's SipHash under a random key (RandomState): the keys come
//! from spans a client sent.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;

const EMPTY: i64 = i64::MIN;
const MIN_SLOTS: usize = 1024;

/// i64 -> f64, open addressing with linear probing. The key EMPTY marks a free slot, so that one
/// key lives beside the slots (`empty_key`). A slot holds its key and value side by side: a
/// probe and the write after it touch one cache line, not one in a key array and another in a
/// value array (the table is MBs, each span's key a random slot: a miss per line touched).
struct KeyMap {
    slots: Vec<(i64, f64)>,
    len: usize,
    empty_key: Option<f64>,
    hasher: RandomState,
}

impl KeyMap {
    fn new() -> Self {
        KeyMap {
            slots: vec![(EMPTY, 0.0); MIN_SLOTS],
            len: 0,
            empty_key: None,
            hasher: RandomState::new(),
        }
    }

    fn len(&self) -> usize {
        self.len + self.empty_key.is_some() as usize
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, key: i64) -> usize {
        (self.hasher.hash_one(key) as usize) & self.mask()
    }

    /// The key's slot, or the free slot where it would go.
    fn find(&self, key: i64) -> (usize, bool) {
        let mask = self.mask();
        let mut at = self.home(key);
        loop {
            let here = self.slots[at].0;
            if here == key {
                return (at, true);
            }
            if here == EMPTY {
                return (at, false);
            }
            at = (at + 1) & mask;
        }
    }

    fn get(&self, key: i64) -> Option<f64> {
        if key == EMPTY {
            return self.empty_key;
        }
        let (at, found) = self.find(key);
        found.then(|| self.slots[at].1)
    }

    fn contains(&self, key: i64) -> bool {
        self.get(key).is_some()
    }

    /// -> whether the key is new.
    fn insert(&mut self, key: i64, value: f64) -> bool {
        if key == EMPTY {
            return self.empty_key.replace(value).is_none();
        }
        let (at, found) = self.find(key);
        self.slots[at] = (key, value);
        if found {
            return false;
        }
        self.len += 1;
        if self.len * 5 > self.slots.len() * 4 {
            self.resize(self.slots.len() * 2);
        }
        true
    }

    fn remove(&mut self, key: i64) -> Option<f64> {
        if key == EMPTY {
            return self.empty_key.take();
        }
        let (mut hole, found) = self.find(key);
        if !found {
            return None;
        }
        let value = self.slots[hole].1;
        // Backward-shift deletion: move later keys of the run into the hole when their home
        // slot allows, so every key stays reachable from its home without tombstones.
        let mask = self.mask();
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let here = self.slots[at].0;
            if here == EMPTY {
                break;
            }
            let home = self.home(here);
            // `here` may move to `hole` unless its home lies cyclically in (hole, at].
            let stays = if hole <= at {
                hole < home && home <= at
            } else {
                hole < home || home <= at
            };
            if !stays {
                self.slots[hole] = self.slots[at];
                hole = at;
            }
        }
        self.slots[hole].0 = EMPTY;
        self.len -= 1;
        if self.slots.len() > MIN_SLOTS && self.len * 8 < self.slots.len() {
            self.resize(self.slots.len() / 2); // an eighth full: half the slots (a quarter full)
        }
        Some(value)
    }

    fn resize(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![(EMPTY, 0.0); slots]);
        for (key, value) in old {
            if key != EMPTY {
                let (at, _) = self.find(key);
                self.slots[at] = (key, value);
            }
        }
    }

    fn nbytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<(i64, f64)>()
    }
}

#[pyclass(module = "costctx_native._core")]
pub struct SpanKeyTable {
    map: KeyMap,
    /// Keys added since the last seal, oldest first (`SeenSpans`: the dict's tail).
    young: Vec<i64>,
    /// Sealed generations, oldest first: (their keys, the newest expiry among them).
    sealed: VecDeque<(Vec<i64>, f64)>,
    sealed_count: usize,
}

#[pymethods]
impl SpanKeyTable {
    #[new]
    fn new() -> Self {
        SpanKeyTable {
            map: KeyMap::new(),
            young: Vec::new(),
            sealed: VecDeque::new(),
            sealed_count: 0,
        }
    }

    pub(crate) fn __len__(&self) -> usize {
        self.map.len()
    }

    /// Present (whatever its expiry), as `key in dict`.
    pub(crate) fn __contains__(&self, key: i64) -> bool {
        self.map.contains(key)
    }

    fn __getitem__(&self, key: i64) -> PyResult<f64> {
        self.map.get(key).ok_or_else(|| PyKeyError::new_err(key))
    }

    /// The key's expiry, else `default` (as dict.get).
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(&self, py: Python<'py>, key: i64, default: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        match self.map.get(key) {
            Some(expiry) => Ok(expiry.into_pyobject(py)?.into_any()),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    /// A new key joins the young generation; an existing one keeps its place, with this expiry
    /// (as a dict keeps a key's position when its value is set again).
    pub(crate) fn __setitem__(&mut self, key: i64, expiry: f64) {
        if self.map.insert(key, expiry) {
            self.young.push(key);
        }
    }

    /// Removed from the map only: its generation's list still names it (`forget_listed`).
    fn __delitem__(&mut self, key: i64) -> PyResult<()> {
        match self.map.remove(key) {
            Some(_) => Ok(()),
            None => Err(PyKeyError::new_err(key)),
        }
    }

    /// The keys, oldest generation first (tests and tools; not on the hot path).
    fn keys(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.map.len());
        let mut listed: HashSet<i64> = HashSet::with_capacity(self.map.len());
        for key in self
            .sealed
            .iter()
            .flat_map(|(keys, _)| keys.iter())
            .chain(self.young.iter())
        {
            if self.map.contains(*key) && listed.insert(*key) {
                out.push(*key);
            }
        }
        out
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let keys = pyo3::types::PyList::new(py, slf.keys())?;
        Ok(keys.try_iter()?.into_any().unbind())
    }

    fn young_count(&self) -> usize {
        self.young.len()
    }

    fn sealed_count(&self) -> usize {
        self.sealed_count
    }

    fn generations(&self) -> usize {
        self.sealed.len()
    }

    /// The young generation sealed with the newest expiry handed out to it.
    fn seal(&mut self, newest_expiry: f64) {
        if self.young.is_empty() {
            return;
        }
        let mut keys = std::mem::take(&mut self.young);
        keys.shrink_to_fit(); // kept until the generation goes: 8 bytes a key, not up to 16
        self.sealed_count += keys.len();
        self.sealed.push_back((keys, newest_expiry));
    }

    /// The newest expiry of the oldest sealed generation (None: nothing sealed).
    fn oldest_expiry(&self) -> Option<f64> {
        self.sealed.front().map(|(_, newest)| *newest)
    }

    /// The oldest sealed generation dropped: its keys not added again since leave the map.
    /// -> how many left.
    fn drop_oldest(&mut self) -> usize {
        let Some((keys, newest)) = self.sealed.pop_front() else {
            return 0;
        };
        self.sealed_count -= keys.len();
        let mut dropped = 0;
        for key in keys {
            if self.map.get(key).is_some_and(|expiry| expiry <= newest) {
                self.map.remove(key);
                dropped += 1;
            }
        }
        dropped
    }

    /// A key about to be added again leaves the list it is in (it is young again).
    fn forget_listed(&mut self, key: i64) -> bool {
        for (keys, _) in self.sealed.iter_mut() {
            if let Some(at) = keys.iter().position(|k| *k == key) {
                keys.remove(at);
                self.sealed_count -= 1;
                return true;
            }
        }
        if let Some(at) = self.young.iter().position(|k| *k == key) {
            self.young.remove(at);
            return true;
        }
        false
    }

    /// Bytes held natively (the map's buckets and the generations' lists): tracemalloc does
    /// not see them.
    fn nbytes(&self) -> usize {
        let listed: usize = self.sealed.iter().map(|(keys, _)| keys.capacity()).sum::<usize>() + self.young.capacity();
        self.map.nbytes() + listed * std::mem::size_of::<i64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// KeyMap against std's HashMap over a long run of inserts and removals (resizes up and
    /// down, backward shifts across the wrap, the EMPTY key beside the slots).
    #[test]
    fn keymap_matches_a_hashmap() {
        let mut map = KeyMap::new();
        let mut model: HashMap<i64, f64> = HashMap::new();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 17
        };
        for step in 0..200_000u64 {
            // keys from a range small enough to repeat; EMPTY now and then
            let key = match next() % 1000 {
                0 => EMPTY,
                _ => (next() % 30_000) as i64 - 15_000,
            };
            // grow for the first half, then shrink: both resizes run
            let insert = if step < 100_000 {
                next() % 4 != 0
            } else {
                next() % 4 == 0
            };
            if insert {
                let value = step as f64;
                assert_eq!(map.insert(key, value), model.insert(key, value).is_none());
            } else {
                assert_eq!(map.remove(key), model.remove(&key));
            }
            assert_eq!(map.len(), model.len());
        }
        for (key, value) in &model {
            assert_eq!(map.get(*key), Some(*value));
        }
        assert!(map.slots.len() >= MIN_SLOTS && map.len() * 5 <= map.slots.len() * 4 + 5);
    }
}
