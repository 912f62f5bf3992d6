//! The budget's commit-once set and the spend ledger's dedupe keys as a native table: span keys
//! (`hash()` of a span's identity, a Python int) -> the expiry they were added with, dropped a
//! generation at a time. The Python structure it mirrors, rule for rule, is the dict and sealed
//! lists of `costctx.budget.seen.SeenSpans` (the fallback and the oracle; its docstring says why
//! each rule is there); `NativeSeenSpans` there drives this table with the same policy.
//!
//! Why native: in a dict an entry costs its slot (~40-70 bytes at the dict's load) plus an int
//! object for the key (32) plus its place in a sealed generation's list (8): ~95 bytes. Here it
//! is 16 bytes in the map (hashbrown: ~18-36 per entry with its control bytes and load) plus 8
//! in a generation's key list, and nothing the cyclic GC tracks. The map hashes keys with std's
//! SipHash under a random key (RandomState): the keys come from spans a client sent.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;

#[pyclass(module = "costctx_native._core")]
pub struct SpanKeyTable {
    map: HashMap<i64, f64>,
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
        SpanKeyTable { map: HashMap::new(), young: Vec::new(), sealed: VecDeque::new(), sealed_count: 0 }
    }

    fn __len__(&self) -> usize {
        self.map.len()
    }

    /// Present (whatever its expiry), as `key in dict`.
    fn __contains__(&self, key: i64) -> bool {
        self.map.contains_key(&key)
    }

    fn __getitem__(&self, key: i64) -> PyResult<f64> {
        self.map.get(&key).copied().ok_or_else(|| PyKeyError::new_err(key))
    }

    /// The key's expiry, else `default` (as dict.get).
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(&self, py: Python<'py>, key: i64, default: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        match self.map.get(&key) {
            Some(expiry) => Ok(expiry.into_pyobject(py)?.into_any()),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    /// A new key joins the young generation; an existing one keeps its place, with this expiry
    /// (as a dict keeps a key's position when its value is set again).
    fn __setitem__(&mut self, key: i64, expiry: f64) {
        match self.map.entry(key) {
            Entry::Occupied(mut entry) => {
                entry.insert(expiry);
            }
            Entry::Vacant(entry) => {
                entry.insert(expiry);
                self.young.push(key);
            }
        }
    }

    /// Removed from the map only: its generation's list still names it (`forget_listed`).
    fn __delitem__(&mut self, key: i64) -> PyResult<()> {
        match self.map.remove(&key) {
            Some(_) => Ok(()),
            None => Err(PyKeyError::new_err(key)),
        }
    }

    /// The keys, oldest generation first (tests and tools; not on the hot path).
    fn keys(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.map.len());
        let mut listed: HashSet<i64> = HashSet::with_capacity(self.map.len());
        for key in self.sealed.iter().flat_map(|(keys, _)| keys.iter()).chain(self.young.iter()) {
            if self.map.contains_key(key) && listed.insert(*key) {
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
        let keys = std::mem::take(&mut self.young);
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
            if let Entry::Occupied(entry) = self.map.entry(key) {
                if *entry.get() <= newest {
                    entry.remove();
                    dropped += 1;
                }
            }
        }
        // A map that emptied (traffic fell) hands its table back rather than keep its peak.
        let len = self.map.len();
        if self.map.capacity() > 4 * len.max(4096) {
            self.map.shrink_to(2 * len);
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
        let bucket = std::mem::size_of::<(i64, f64)>() + 1;
        let listed: usize = self.sealed.iter().map(|(keys, _)| keys.capacity()).sum::<usize>() + self.young.capacity();
        self.map.capacity() * 8 / 7 * bucket + listed * std::mem::size_of::<i64>()
    }
}
