//! inherit's ancestor cache as a native table: (trace id + span id) -> the Known a span left
//! with, bounded by entries and by age, partitioned by source. The Python class it mirrors,
//! rule for rule, is `costctx.processors.inherit.context_cache.ContextCache` (the fallback and
//! the oracle; its docstring says why each rule is there). Keys come off the network: the
//! table hashes them with std's SipHash (RandomState), never a fixed hash.
//!
//! Kept here rather than in a Python dict: a key is 32 bytes inline (no bytes object), and
//! its age is one more copy of the key in a chunk, so an entry costs about half the memory.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

const NO_CONTEXT: &str = "(no context)";
const OTHER_SOURCES: &str = "(other)";
const INLINE: usize = 24;

/// A key: inline up to 24 bytes (trace id + span id), boxed when longer (forged ids).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Inline(u8, [u8; INLINE]),
    Heap(Box<[u8]>),
}

impl Key {
    fn new(bytes: &[u8]) -> Key {
        if bytes.len() <= INLINE {
            let mut inline = [0u8; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Key::Inline(bytes.len() as u8, inline)
        } else {
            Key::Heap(bytes.into())
        }
    }
}

/// One source's keys in insertion (= expiry) order: chunks of keys put at one expiry time.
struct Part {
    source: String,
    chunks: VecDeque<(f64, Vec<Key>)>,
    head: usize, // the next key's place in chunks[0]
    size: usize, // live entries (disputed ones included)
}

#[pyclass]
pub struct AncestorTable {
    max_entries: usize,
    ttl: f64,
    max_sources: usize,
    timer: Py<PyAny>,
    table: HashMap<Key, Option<Py<PyAny>>>, // None: disputed
    parts: Vec<Part>,                       // in creation order, as the Python dict's
    next_due: f64,
    /// The time puts are made at, when the caller has one for a whole batch.
    #[pyo3(get, set)]
    now: Option<f64>,
    evicted: Vec<(String, u64)>, // since the last take_counts, in first-eviction order
    disputed: u64,
}

fn disagree(py: Python<'_>, first: &Bound<'_, PyAny>, second: &Bound<'_, PyAny>) -> PyResult<bool> {
    let (Ok(first_fields), Ok(second_fields)) = (
        first.getattr(pyo3::intern!(py, "fields"))?.cast_into::<PyDict>(),
        second.getattr(pyo3::intern!(py, "fields"))?.cast_into::<PyDict>(),
    ) else {
        return Ok(true);
    };
    if first_fields.is(&second_fields) {
        return Ok(false);
    }
    for (field, value) in first_fields.iter() {
        if let Some(theirs) = second_fields.get_item(&field)? {
            if !theirs.is_none() && theirs.ne(&value)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

impl AncestorTable {
    fn clock(&self, py: Python<'_>) -> PyResult<f64> {
        match self.now {
            Some(now) => Ok(now),
            None => self.timer.bind(py).call0()?.extract(),
        }
    }

    fn partition(&mut self, source: &str) -> usize {
        if let Some(at) = self.parts.iter().position(|p| p.source == source) {
            return at;
        }
        // +1: NO_CONTEXT. The shared one is made whatever the count.
        if self.parts.len() >= self.max_sources + 1 && source != NO_CONTEXT && source != OTHER_SOURCES {
            return self.partition(OTHER_SOURCES);
        }
        self.parts.push(Part { source: source.to_owned(), chunks: VecDeque::new(), head: 0, size: 0 });
        self.parts.len() - 1
    }

    fn evict(&mut self, inserting: usize) {
        let no_context = self.parts.iter().position(|p| p.source == NO_CONTEXT && p.size > 0);
        let victim = match no_context {
            Some(at) => at,
            None => {
                let sized = self.parts.iter().filter(|p| p.size > 0).count();
                let fair = self.max_entries as f64 / sized.max(1) as f64;
                if self.parts[inserting].size as f64 >= fair {
                    inserting
                } else {
                    // The largest; the first of equals, as Python's max.
                    let mut best = 0;
                    for (at, part) in self.parts.iter().enumerate() {
                        if part.size > self.parts[best].size {
                            best = at;
                        }
                    }
                    best
                }
            }
        };
        let part = &mut self.parts[victim];
        let key = {
            let chunk = &mut part.chunks[0].1;
            let key = std::mem::replace(&mut chunk[part.head], Key::Inline(0, [0; INLINE]));
            part.head += 1;
            if part.head == chunk.len() {
                part.chunks.pop_front();
                part.head = 0;
            }
            key
        };
        part.size -= 1;
        let source = part.source.clone();
        self.table.remove(&key);
        match self.evicted.iter_mut().find(|(s, _)| *s == source) {
            Some((_, count)) => *count += 1,
            None => self.evicted.push((source, 1)),
        }
    }

    fn expire_at(&mut self, now: f64) {
        let mut due = f64::INFINITY;
        let table = &mut self.table;
        self.parts.retain_mut(|part| {
            while let Some((expires, _)) = part.chunks.front() {
                if *expires > now {
                    break;
                }
                let (_, keys) = part.chunks.pop_front().unwrap();
                for key in &keys[part.head..] {
                    table.remove(key);
                }
                part.size -= keys.len() - part.head;
                part.head = 0;
            }
            if part.size == 0 && part.source != NO_CONTEXT && part.source != OTHER_SOURCES {
                return false;
            }
            if let Some((expires, _)) = part.chunks.front() {
                due = due.min(*expires);
            }
            true
        });
        self.next_due = due;
    }
}

#[pymethods]
impl AncestorTable {
    #[new]
    fn new(max_entries: usize, ttl: f64, timer: Py<PyAny>, max_sources: usize) -> Self {
        AncestorTable {
            max_entries,
            ttl,
            max_sources,
            timer,
            table: HashMap::new(),
            parts: Vec::new(),
            next_due: f64::INFINITY,
            now: None,
            evicted: Vec::new(),
            disputed: 0,
        }
    }

    /// The entry, expiring first if some entry is due (ContextCache.get).
    fn get(&mut self, py: Python<'_>, key: &Bound<'_, PyBytes>) -> PyResult<Option<Py<PyAny>>> {
        let key = Key::new(key.as_bytes());
        let found = self.table.get(&key).and_then(|v| v.as_ref().map(|k| k.clone_ref(py)));
        if found.is_some() {
            let now: f64 = self.timer.bind(py).call0()?.extract()?;
            if now >= self.next_due {
                self.expire_at(now);
                return Ok(self.table.get(&key).and_then(|v| v.as_ref().map(|k| k.clone_ref(py))));
            }
        }
        Ok(found)
    }

    /// The entry as it stands, no age check: for a batch's reads after `expire_due(now)`.
    fn peek(&self, py: Python<'_>, key: &Bound<'_, PyBytes>) -> Option<Py<PyAny>> {
        self.table.get(&Key::new(key.as_bytes())).and_then(|v| v.as_ref().map(|k| k.clone_ref(py)))
    }

    fn expire_due(&mut self, now: f64) {
        if now >= self.next_due {
            self.expire_at(now);
        }
    }

    #[pyo3(signature = (now=None))]
    fn expire(&mut self, py: Python<'_>, now: Option<f64>) -> PyResult<()> {
        let now = match now {
            Some(now) => now,
            None => self.timer.bind(py).call0()?.extract()?,
        };
        self.expire_at(now);
        Ok(())
    }

    /// ContextCache.put: `source` is the Known's hop, or NO_CONTEXT when it has no fields.
    fn put(&mut self, py: Python<'_>, key: &Bound<'_, PyBytes>, known: &Bound<'_, PyAny>, source: &str) -> PyResult<()> {
        let now = self.clock(py)?;
        if now >= self.next_due {
            self.expire_at(now);
        }
        let key = Key::new(key.as_bytes());
        match self.table.entry(key.clone()) {
            Entry::Occupied(mut entry) => {
                // Sent again: keeps its place and age; a different value makes it disputed.
                let old = entry.get().as_ref().map(|k| k.clone_ref(py));
                let value = match old {
                    None => None,
                    Some(old) => {
                        if disagree(py, old.bind(py), known)? {
                            self.disputed += 1;
                            None
                        } else {
                            Some(known.clone().unbind())
                        }
                    }
                };
                entry.insert(value);
                return Ok(());
            }
            Entry::Vacant(entry) => {
                entry.insert(Some(known.clone().unbind()));
            }
        }
        let at = self.partition(source);
        let expires = now + self.ttl;
        let part = &mut self.parts[at];
        match part.chunks.back_mut() {
            Some((last, keys)) if *last == expires => keys.push(key),
            _ => {
                part.chunks.push_back((expires, vec![key]));
                if expires < self.next_due {
                    self.next_due = expires;
                }
            }
        }
        part.size += 1;
        if self.table.len() > self.max_entries {
            self.evict(at);
        }
        Ok(())
    }

    /// (evictions per source since the last call, in first-eviction order; disputes since).
    fn take_counts(&mut self) -> (Vec<(String, u64)>, u64) {
        (std::mem::take(&mut self.evicted), std::mem::take(&mut self.disputed))
    }

    /// The sources with a place, in creation order.
    fn sources(&self) -> Vec<String> {
        self.parts.iter().map(|p| p.source.clone()).collect()
    }

    /// Bytes the table holds natively (keys, slots, chunks), for the memory figures.
    fn nbytes(&self) -> usize {
        let slot = std::mem::size_of::<(Key, Option<Py<PyAny>>)>() + 1;
        let chunks: usize = self.parts.iter().flat_map(|p| p.chunks.iter()).map(|(_, keys)| keys.capacity()).sum();
        self.table.capacity() * slot + chunks * std::mem::size_of::<Key>()
    }

    fn __len__(&self) -> usize {
        self.table.len()
    }
}
