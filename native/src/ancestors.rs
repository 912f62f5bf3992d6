//! inherit's ancestor cache as a native table: (trace id + span id) -> the Known a span left
//! with, bounded by entries and by age, partitioned by source. The Python class it mirrors,
//! rule for rule, is `costctx.processors.inherit.context_cache.ContextCache` (the fallback and
//! the oracle; its docstring says why each rule is there). Keys come off the network: the
//! table hashes them with std's SipHash (RandomState), never a fixed hash.
//!
//! Kept here rather than in a Python dict: a key is 24 bytes inline (no bytes object), and
//! its age is one more copy of the key in a chunk. An entry's value is a 4-byte index into a
//! table of distinct native records (inherit_records.rs): spans that left with equal fields,
//! hop, depth and fallback (many spans of a workflow) share one record, and no Known or
//! fields dict is kept per entry. `get` answers a Known equal in every attribute (and in its
//! fields' order) to the one put, one object per record per batch; the processor reads only
//! those attributes.

use std::collections::{HashMap, VecDeque};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::inherit_keys::{Key24, Key24Map};
use crate::inherit_records::{Records, Slot, DISPUTED};
use pyo3::{PyTraverseError, PyVisit};

const NO_CONTEXT: &str = "(no context)";
const OTHER_SOURCES: &str = "(other)";
const KEY_LEN: usize = 24;

// Key24: the keys the table is made for, trace id (16 bytes) + span id (8), held inline.

/// Keys of another length (forged or invalid ids) live in a table of their own; a chunk
/// keeps a placeholder in their place and the key itself beside it.
fn even(bytes: &[u8]) -> Option<Key24> {
    bytes.try_into().ok()
}

/// Keys put at one expiry time, in order; `odd` holds (place, key) of the keys that are not
/// 24 bytes long, by place.
struct Chunk {
    expires: f64,
    keys: Vec<Key24>,
    odd: VecDeque<(u32, Box<[u8]>)>,
}

/// One source's keys in insertion (= expiry) order: chunks of keys put at one expiry time.
struct Part {
    source: String,
    chunks: VecDeque<Chunk>,
    head: usize, // the next key's place in chunks[0]
    size: usize, // live entries (disputed ones included)
}

#[pyclass]
pub struct AncestorTable {
    max_entries: usize,
    ttl: f64,
    max_sources: usize,
    timer: Py<PyAny>,
    table: Key24Map, // no tombstones at the bound (inherit_keys.rs)
    odd: HashMap<Box<[u8]>, Slot>,
    pool: Records,
    parts: Vec<Part>, // in creation order, as the Python dict's
    next_due: f64,
    /// The time puts are made at, when the caller has one for a whole batch (set at its
    /// start and cleared at its end: either forgets the Known objects made for reads).
    now: Option<f64>,
    evicted: Vec<(String, u64)>, // since the last take_counts, in first-eviction order
    disputed: u64,
}

fn disagree(pool: &Records, first: &Bound<'_, PyAny>, second: &Bound<'_, PyAny>) -> PyResult<bool> {
    let (Ok(first_fields), Ok(second_fields)) = (
        pool.fields_of(first)?.cast_into::<PyDict>(),
        pool.fields_of(second)?.cast_into::<PyDict>(),
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

/// The partition a Known goes to: its hop, or NO_CONTEXT when it has no fields.
fn source_of<'py>(pool: &Records, known: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyString>>> {
    if !pool.fields_of(known)?.is_truthy()? {
        return Ok(None);
    }
    Ok(Some(pool.hop_of(known)?.cast_into::<PyString>()?))
}

/// Remove the key at place `at` of `chunk` from its table (places are taken in order).
fn remove_at(
    table: &mut Key24Map,
    odd: &mut HashMap<Box<[u8]>, Slot>,
    pool: &mut Records,
    py: Python<'_>,
    chunk: &mut Chunk,
    at: usize,
) {
    let slot = if chunk.odd.front().is_some_and(|(place, _)| *place as usize == at) {
        let (_, key) = chunk.odd.pop_front().unwrap();
        odd.remove(&key)
    } else {
        table.remove(&chunk.keys[at])
    };
    if let Some(slot) = slot {
        pool.release(py, slot);
    }
}

impl AncestorTable {
    fn slot(&self, key: &[u8]) -> Option<Slot> {
        match even(key) {
            Some(key) => self.table.get(&key),
            None => self.odd.get(key).copied(),
        }
    }

    fn entry(&mut self, py: Python<'_>, key: &[u8]) -> PyResult<Option<Py<PyAny>>> {
        match self.slot(key) {
            Some(slot) => self.pool.known(py, slot),
            None => Ok(None),
        }
    }

    fn len(&self) -> usize {
        self.table.len() + self.odd.len()
    }

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
        if self.parts.len() > self.max_sources && source != NO_CONTEXT && source != OTHER_SOURCES {
            return self.partition(OTHER_SOURCES);
        }
        self.parts.push(Part {
            source: source.to_owned(),
            chunks: VecDeque::new(),
            head: 0,
            size: 0,
        });
        self.parts.len() - 1
    }

    fn evict(&mut self, py: Python<'_>, inserting: usize) {
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
        let chunk = &mut part.chunks[0];
        remove_at(&mut self.table, &mut self.odd, &mut self.pool, py, chunk, part.head);
        part.head += 1;
        if part.head == chunk.keys.len() {
            part.chunks.pop_front();
            part.head = 0;
        }
        part.size -= 1;
        let source = part.source.clone();
        match self.evicted.iter_mut().find(|(s, _)| *s == source) {
            Some((_, count)) => *count += 1,
            None => self.evicted.push((source, 1)),
        }
    }

    fn expire_at(&mut self, py: Python<'_>, now: f64) {
        let mut due = f64::INFINITY;
        let (table, odd, pool) = (&mut self.table, &mut self.odd, &mut self.pool);
        self.parts.retain_mut(|part| {
            while let Some(chunk) = part.chunks.front() {
                if chunk.expires > now {
                    break;
                }
                let mut chunk = part.chunks.pop_front().unwrap();
                for at in part.head..chunk.keys.len() {
                    remove_at(table, odd, pool, py, &mut chunk, at);
                }
                part.size -= chunk.keys.len() - part.head;
                part.head = 0;
            }
            if part.size == 0 && part.source != NO_CONTEXT && part.source != OTHER_SOURCES {
                return false;
            }
            if let Some(chunk) = part.chunks.front() {
                due = due.min(chunk.expires);
            }
            true
        });
        self.next_due = due;
    }
}

#[pymethods]
impl AncestorTable {
    #[new]
    #[pyo3(signature = (max_entries, ttl, timer, max_sources, known_class=None))]
    fn new(
        py: Python<'_>,
        max_entries: usize,
        ttl: f64,
        timer: Py<PyAny>,
        max_sources: usize,
        known_class: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        Ok(AncestorTable {
            max_entries,
            ttl,
            max_sources,
            timer,
            table: Key24Map::new(),
            odd: HashMap::new(),
            pool: Records::new(py, known_class)?,
            parts: Vec::new(),
            next_due: f64::INFINITY,
            now: None,
            evicted: Vec::new(),
            disputed: 0,
        })
    }

    /// The entry, expiring first if some entry is due (ContextCache.get).
    fn get(&mut self, py: Python<'_>, key: &Bound<'_, PyBytes>) -> PyResult<Option<Py<PyAny>>> {
        let key = key.as_bytes();
        if self.slot(key).is_some_and(|slot| slot != DISPUTED) {
            let now: f64 = self.timer.bind(py).call0()?.extract()?;
            if now >= self.next_due {
                self.expire_at(py, now); // some entry is due: it may be this one
            }
        }
        self.entry(py, key)
    }

    #[getter]
    fn get_now(&self) -> Option<f64> {
        self.now
    }

    #[setter]
    fn set_now(&mut self, now: Option<f64>) {
        self.now = now;
        self.pool.forget_made();
    }

    /// Distinct records the entries name (inherit_records.rs).
    fn records(&self) -> usize {
        self.pool.count()
    }

    /// The entry as it stands, no age check: for a batch's reads after `expire_due(now)`.
    pub(crate) fn peek(&mut self, py: Python<'_>, key: &Bound<'_, PyBytes>) -> PyResult<Option<Py<PyAny>>> {
        self.entry(py, key.as_bytes())
    }

    fn expire_due(&mut self, py: Python<'_>, now: f64) {
        if now >= self.next_due {
            self.expire_at(py, now);
        }
    }

    #[pyo3(signature = (now=None))]
    fn expire(&mut self, py: Python<'_>, now: Option<f64>) -> PyResult<()> {
        let now = match now {
            Some(now) => now,
            None => self.timer.bind(py).call0()?.extract()?,
        };
        self.expire_at(py, now);
        Ok(())
    }

    /// ContextCache.put: `source` is the Known's hop, or NO_CONTEXT when it has no fields.
    fn put(
        &mut self,
        py: Python<'_>,
        key: &Bound<'_, PyBytes>,
        known: &Bound<'_, PyAny>,
        source: &str,
    ) -> PyResult<()> {
        let now = self.clock(py)?;
        if now >= self.next_due {
            self.expire_at(py, now);
        }
        let bytes = key.as_bytes();
        let even_key = even(bytes);
        if let Some(old) = self.slot(bytes) {
            // Sent again: keeps its place and age; a different value makes it disputed.
            let value = match self.pool.known(py, old)? {
                None => DISPUTED,
                Some(old_known) => {
                    if disagree(&self.pool, old_known.bind(py), known)? {
                        self.disputed += 1;
                        DISPUTED
                    } else {
                        self.pool.intern(py, known)?
                    }
                }
            };
            self.pool.release(py, old);
            match even_key {
                Some(key) => self.table.insert(key, value),
                None => self.odd.insert(bytes.into(), value),
            };
            return Ok(());
        }
        let slot = self.pool.intern(py, known)?;
        match even_key {
            Some(key) => self.table.insert(key, slot),
            None => self.odd.insert(bytes.into(), slot),
        };
        let at = self.partition(source);
        let expires = now + self.ttl;
        let part = &mut self.parts[at];
        if part.chunks.back().is_none_or(|last| last.expires != expires) {
            // The last chunk is closed (no key joins it again): give back its spare room.
            if let Some(last) = part.chunks.back_mut() {
                last.keys.shrink_to_fit();
            }
            part.chunks.push_back(Chunk {
                expires,
                keys: Vec::new(),
                odd: VecDeque::new(),
            });
            if expires < self.next_due {
                self.next_due = expires;
            }
        }
        let chunk = part.chunks.back_mut().unwrap();
        match even_key {
            Some(key) => chunk.keys.push(key),
            None => {
                chunk.odd.push_back((chunk.keys.len() as u32, bytes.into()));
                chunk.keys.push([0; KEY_LEN]); // a placeholder: the key is in `odd`
            }
        }
        part.size += 1;
        if self.len() > self.max_entries {
            self.evict(py, at);
        }
        Ok(())
    }

    /// `put(key, known, source)` with the source read from the Known as ContextCache.put
    /// reads it (its hop, or NO_CONTEXT when it has no fields): one call from Python.
    pub(crate) fn put_known(
        &mut self,
        py: Python<'_>,
        key: &Bound<'_, PyBytes>,
        known: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        match source_of(&self.pool, known)? {
            None => self.put(py, key, known, NO_CONTEXT),
            Some(hop) => self.put(py, key, known, hop.to_str()?),
        }
    }

    /// `put_known(key, known)` for each key, in order (ContextCache.put_many).
    pub(crate) fn put_many_known(
        &mut self,
        py: Python<'_>,
        keys: &Bound<'_, PyList>,
        known: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        match source_of(&self.pool, known)? {
            None => self.put_many(py, keys, known, NO_CONTEXT),
            Some(hop) => self.put_many(py, keys, known, hop.to_str()?),
        }
    }

    /// (evictions per source since the last call, in first-eviction order; disputes since).
    /// `put(key, known, source)` for each key, in order (a unit of spans alike that left
    /// with one Known): ContextCache.put_many, its oracle, is that loop.
    fn put_many(
        &mut self,
        py: Python<'_>,
        keys: &Bound<'_, PyList>,
        known: &Bound<'_, PyAny>,
        source: &str,
    ) -> PyResult<()> {
        for key in keys.iter() {
            let key = key.cast_into::<PyBytes>()?;
            self.put(py, &key, known, source)?;
        }
        Ok(())
    }

    fn take_counts(&mut self) -> (Vec<(String, u64)>, u64) {
        (std::mem::take(&mut self.evicted), std::mem::take(&mut self.disputed))
    }

    /// The sources with a place, in creation order.
    fn sources(&self) -> Vec<String> {
        self.parts.iter().map(|p| p.source.clone()).collect()
    }

    /// Bytes the table holds natively (the key map's slots, the age
    /// chunks), for the memory figures; keys of another length than 24 are left out (rare).
    fn nbytes(&self) -> usize {
        let chunks: usize = self
            .parts
            .iter()
            .flat_map(|p| p.chunks.iter())
            .map(|c| c.keys.capacity())
            .sum();
        self.table.nbytes() + chunks * KEY_LEN + self.pool.nbytes()
    }

    /// The table itself and what it holds natively, for sys.getsizeof (memory figures).
    fn __sizeof__(&self) -> usize {
        std::mem::size_of::<Self>() + self.nbytes()
    }

    /// The Known objects (and the timer) are reachable for the garbage collector, as they
    /// were from the dict this table replaces (and for gc.get_referents: memory walks).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for known in self.pool.objects() {
            visit.call(known)?;
        }
        for text in self.pool.strings() {
            visit.call(text)?;
        }
        visit.call(&self.timer)
    }

    fn __clear__(&mut self) {
        self.table.clear();
        self.odd.clear();
        self.pool.clear();
        self.parts.clear();
        self.next_due = f64::INFINITY;
    }

    fn __len__(&self) -> usize {
        self.len()
    }
}
