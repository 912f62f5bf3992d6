//! Normalize's decisions per group key, kept natively: `decided_groups` looks each span of a
//! scanned batch up in a `GroupTable` by its group key (groups.rs `span_key`: what
//! `group_spans` groups by) and hands back only the spans of keys with work, gathered per
//! decision number, and the groups of keys not decided yet (grouped as `group_spans` groups)
//! with their key. Python decides a new key once and `put`s its number: a batch whose keys
//! were all seen before costs one table lookup per span and no Python per group or span.
//! The Python twin (fallback and oracle) is `costctx.normalize.group_table`.
//!
//! Keys: a span key (bytes handed out by `decided_groups`; key ids name the watched keys of
//! one prepared watched list, so the table forgets span keys when the list or `by_value`
//! changes) or api.py's `group_key` tuple of str (the generic path's). The table is filled
//! from request strings: std's SipHash (DoS-safe); the caller bounds it (`len`, `clear`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::fxhash::FxBuild;
use crate::python::{Layout, Prepared};

const SPAN_KEY: u8 = b'o';
const TUPLE_KEY: u8 = b't';

/// A key as the table holds it: a span key's bytes, or a tuple's parts each as length + bytes.
fn table_key(key: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(bytes) = key.cast::<PyBytes>() {
        let mut out = Vec::with_capacity(bytes.as_bytes().len() + 1);
        out.push(SPAN_KEY);
        out.extend_from_slice(bytes.as_bytes());
        return Ok(out);
    }
    let tuple = key
        .cast::<PyTuple>()
        .map_err(|_| PyTypeError::new_err("a group key is bytes or a tuple of str"))?;
    let mut out = vec![TUPLE_KEY];
    for part in tuple.iter() {
        let part = part
            .cast_into::<PyString>()
            .map_err(|_| PyTypeError::new_err("a group key tuple holds str only"))?;
        let text = part.to_str()?.as_bytes();
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text);
    }
    Ok(out)
}

struct Inner {
    ids: HashMap<Vec<u8>, u32>,
    /// The watched list and by_value flags the span keys in `ids` were made with.
    prepared: Option<Arc<Prepared>>,
    chosen: Vec<bool>,
}

/// Group key -> decision number (0: nothing to do).
#[pyclass(frozen)]
pub struct GroupTable {
    inner: Mutex<Inner>,
}

#[pymethods]
impl GroupTable {
    #[new]
    fn new() -> Self {
        GroupTable {
            inner: Mutex::new(Inner {
                ids: HashMap::new(),
                prepared: None,
                chosen: Vec::new(),
            }),
        }
    }

    fn get(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<u32>> {
        let key = table_key(key)?;
        Ok(self.inner.lock().expect("not poisoned").ids.get(&key).copied())
    }

    fn put(&self, key: &Bound<'_, PyAny>, id: u32) -> PyResult<()> {
        let key = table_key(key)?;
        self.inner.lock().expect("not poisoned").ids.insert(key, id);
        Ok(())
    }

    fn clear(&self) {
        self.inner.lock().expect("not poisoned").ids.clear();
    }

    fn __len__(&self) -> usize {
        self.inner.lock().expect("not poisoned").ids.len()
    }
}

/// See `costctx.normalize.group_table.decided_groups`: (decided, undecided, loose) where
/// decided lists (number, spans ascending) per decision number other than 0, in order of
/// their first span; undecided lists (span key, spans ascending) per group of spans whose key
/// the table lacks, in order of their first span; loose the spans `group_spans` leaves loose.
#[pyfunction]
pub fn decided_groups<'py>(
    py: Python<'py>,
    layout: &Bound<'py, Layout>,
    by_value: &Bound<'py, PyAny>,
    table: &Bound<'py, GroupTable>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>, Bound<'py, PyList>)> {
    let layout = layout.get();
    let chosen = layout.chosen(by_value)?;
    let raw = layout.raw.as_bytes(py);
    let mut inner = table.get().inner.lock().expect("not poisoned");
    let same = inner
        .prepared
        .as_ref()
        .is_some_and(|p| Arc::ptr_eq(p, &layout.prepared))
        && inner.chosen == chosen;
    if !same {
        // Span keys name keys by id in another list: forget them (tuple keys stay).
        inner.ids.retain(|key, _| key.first() != Some(&SPAN_KEY));
        inner.prepared = Some(layout.prepared.clone());
        inner.chosen = chosen.clone();
    }
    let mut loose: Vec<u32> = Vec::new();
    let mut decided: Vec<(u32, Vec<u32>)> = Vec::new();
    // Decision numbers are the caller's small integers (not request strings): Fx hashing.
    let mut slot: HashMap<u32, usize, FxBuild> = HashMap::default();
    let mut fresh: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut undecided: Vec<(Vec<u8>, Vec<u32>)> = Vec::new();
    let mut key: Vec<u8> = Vec::with_capacity(128);
    for (i, span) in layout.scan.spans.iter().enumerate() {
        let i = i as u32;
        if crate::groups::is_loose(span) {
            loose.push(i);
            continue;
        }
        key.clear();
        key.push(SPAN_KEY);
        crate::groups::span_key(raw, span, &chosen, &mut key);
        match inner.ids.get(&key) {
            Some(0) => {}
            Some(&id) => match slot.get(&id) {
                Some(&at) => decided[at].1.push(i),
                None => {
                    slot.insert(id, decided.len());
                    decided.push((id, vec![i]));
                }
            },
            None => match fresh.get(&key) {
                Some(&at) => undecided[at].1.push(i),
                None => {
                    fresh.insert(key.clone(), undecided.len());
                    undecided.push((key.clone(), vec![i]));
                }
            },
        }
    }
    drop(inner);
    let out = PyList::empty(py);
    for (id, spans) in decided {
        out.append((id, PyList::new(py, spans)?))?;
    }
    let pending = PyList::empty(py);
    for (key, spans) in undecided {
        pending.append((PyBytes::new(py, &key[1..]), PyList::new(py, spans)?))?;
    }
    Ok((out, pending, PyList::new(py, loose)?))
}
