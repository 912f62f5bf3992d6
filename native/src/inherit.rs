//! The inherit processor's per-span reading, in one call per batch: each span's key (trace
//! id + span id), the key of the ancestor it would wait for (trace id + parent id), and which
//! spans carry the same context fields of their own (one group per distinct set of values,
//! so Python builds each span's own fields, and decides, once per group). The Python
//! equivalent (the fallback and the oracle) is `costctx.processors.inherit.batch_read.read_spans`;
//! every rule here is written there first. Decisions stay in Python.

use std::collections::HashMap;

use crate::fxhash::FxBuild;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString, PyTuple};

/// A span's values of the context fields as one byte string: per field, 0 when absent, else
/// 1, the length and the UTF-8 bytes. None when some value is not a str (arrays, ints, ...):
/// Python reads those spans alone, as before.
fn group_key(values: &[Option<Bound<'_, PyAny>>]) -> PyResult<Option<Vec<u8>>> {
    let mut key = Vec::with_capacity(64);
    for value in values {
        match value {
            None => key.push(0),
            Some(value) => {
                let Ok(text) = value.cast_exact::<PyString>() else {
                    return Ok(None);
                };
                let text = text.to_str()?;
                key.push(1);
                key.extend_from_slice(&(text.len() as u64).to_le_bytes());
                key.extend_from_slice(text.as_bytes());
            }
        }
    }
    Ok(Some(key))
}

fn joined<'py>(py: Python<'py>, first: &[u8], second: &[u8]) -> Bound<'py, PyBytes> {
    let mut out = Vec::with_capacity(first.len() + second.len());
    out.extend_from_slice(first);
    out.extend_from_slice(second);
    PyBytes::new(py, &out)
}

/// See `costctx.processors.inherit.batch_read.parent_first` (same arguments, same result):
/// (the positions level by level, where each level ends).
#[pyfunction]
pub fn parent_first<'py>(
    py: Python<'py>,
    keys: &Bound<'py, PyList>,
    wait_keys: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyTuple>> {
    let count = keys.len();
    if wait_keys.len() != count {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "keys and wait_keys differ in length",
        ));
    }
    let keys: Vec<Bound<'py, PyBytes>> = keys
        .iter()
        .map(|k| k.cast_into::<PyBytes>().map_err(PyErr::from))
        .collect::<PyResult<_>>()?;
    let mut waits: Vec<Option<Bound<'py, PyBytes>>> = Vec::with_capacity(count);
    for wait in wait_keys.iter() {
        waits.push(if wait.is_none() {
            None
        } else {
            Some(wait.cast_into::<PyBytes>()?)
        });
    }
    // Ids come off the network: SipHash (std's RandomState), never a fixed hash.
    let mut first: HashMap<&[u8], usize> = HashMap::with_capacity(count);
    for (position, key) in keys.iter().enumerate() {
        first.entry(key.as_bytes()).or_insert(position);
    }
    let parent: Vec<Option<usize>> = waits
        .iter()
        .map(|w| w.as_ref().and_then(|w| first.get(w.as_bytes()).copied()))
        .collect();
    const UNKNOWN: i64 = -1;
    const ON_PATH: i64 = -2;
    let mut depth = vec![UNKNOWN; count];
    let mut path: Vec<usize> = Vec::new();
    for start in 0..count {
        if depth[start] >= 0 {
            continue;
        }
        path.clear();
        let mut at = start;
        let mut base: i64;
        loop {
            depth[at] = ON_PATH;
            path.push(at);
            match parent[at] {
                None => {
                    base = 0;
                    break;
                }
                Some(p) if depth[p] == ON_PATH => {
                    base = 0; // a cycle closes here
                    break;
                }
                Some(p) if depth[p] >= 0 => {
                    base = depth[p] + 1;
                    break;
                }
                Some(p) => at = p,
            }
        }
        for &at in path.iter().rev() {
            depth[at] = base;
            base += 1;
        }
    }
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by_key(|&position| depth[position]); // stable: batch order within a level
    let mut ends: Vec<usize> = Vec::new();
    for at in 1..count {
        if depth[order[at]] != depth[order[at - 1]] {
            ends.push(at);
        }
    }
    if count > 0 {
        ends.push(count);
    }
    PyTuple::new(
        py,
        [PyList::new(py, order)?.into_any(), PyList::new(py, ends)?.into_any()],
    )
}

/// A group's own fields from its first span's values of the context fields (`own_groups`'
/// entry): (own fields, (values, their types), whether it lacks no required field).
fn own_entry<'py>(
    py: Python<'py>,
    fields: &[Bound<'py, PyString>],
    values: &[Option<Bound<'py, PyAny>>],
    required: &[Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyTuple>> {
    let none = py.None().into_bound(py);
    let own = PyDict::new(py);
    let mut held = Vec::with_capacity(fields.len());
    let mut types = Vec::with_capacity(fields.len());
    for (field, value) in fields.iter().zip(values) {
        let value = value.clone().unwrap_or_else(|| none.clone());
        if !value.is_none() && value.is_truthy()? {
            own.set_item(field, &value)?; // an empty string is no value
        }
        types.push(value.get_type().into_any());
        held.push(value);
    }
    let mut complete = true;
    for field in required {
        if !own.contains(field)? {
            complete = false;
            break;
        }
    }
    let own_key = PyTuple::new(py, [PyTuple::new(py, held)?, PyTuple::new(py, types)?])?;
    PyTuple::new(
        py,
        [
            own.into_any(),
            own_key.into_any(),
            PyBool::new(py, complete).to_owned().into_any(),
        ],
    )
}

/// See `costctx.processors.inherit.batch_read.read_batch` (same arguments, same result):
/// `read_spans` and `own_groups` in one pass, each group's own fields made from the values
/// its first span was read with, not read again. (keys, wait keys, groups, by group)
#[pyfunction]
pub fn read_batch<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    fields: &Bound<'py, PyTuple>,
    required: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyTuple>> {
    let fields: Vec<Bound<'py, PyString>> = fields
        .iter()
        .map(|f| f.cast_into::<PyString>().map_err(PyErr::from))
        .collect::<PyResult<_>>()?;
    let required: Vec<Bound<'py, PyAny>> = required.try_iter()?.collect::<PyResult<_>>()?;
    let spans_list = spans.cast::<PyList>().ok();
    let keys = PyList::empty(py);
    let wait_keys = PyList::empty(py);
    let groups = PyList::empty(py);
    let by_group = PyList::empty(py);
    // Ids and values come off the network: SipHash (std's RandomState), never a fixed hash.
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    // The values as string objects (addresses; 0: absent) -> their group. The objects are held
    // by the spans' attrs for the whole call, so an address is never another object's here;
    // equal objects, equal texts: the group `seen` gives. Addresses are not request content: Fx.
    // A batch's scan makes one object per distinct text, so most spans are found here without
    // their texts being read or hashed.
    let mut by_objects: HashMap<Vec<usize>, i64, FxBuild> = HashMap::default();
    let mut objects: Vec<usize> = Vec::with_capacity(fields.len());
    let none = py.None().into_bound(py);
    let mut values: Vec<Option<Bound<'py, PyAny>>> = Vec::with_capacity(fields.len());
    for index in indices.try_iter()? {
        let index = index?;
        let at = index.extract::<usize>()?;
        // a lazy list's span read without making its view (its attrs kept for the readers after)
        let span = match &spans_list {
            Some(list) => crate::span_read::SpanRead::of_view(py, list.get_item(at)?)?,
            None => crate::span_read::SpanRead::of(py, spans, at)?,
        };
        let trace = span.trace_id(py)?.cast_into::<PyBytes>()?;
        let span_id = span.span_id(py)?.cast_into::<PyBytes>()?;
        let parent = span.parent_span_id(py)?.cast_into::<PyBytes>()?;
        let trace_bytes = trace.as_bytes();
        keys.append(joined(py, trace_bytes, span_id.as_bytes()))?;
        let parent_bytes = parent.as_bytes();
        // An all-zero id is invalid (W3C): no parent, rather than one that never comes.
        if parent_bytes.is_empty() || parent_bytes == &[0u8; 8][..] {
            wait_keys.append(&none)?;
        } else {
            wait_keys.append(joined(py, trace_bytes, parent_bytes))?;
        }
        let attrs = &span.attrs;
        values.clear();
        objects.clear();
        let mut strings = true;
        for field in &fields {
            let value = attrs.get_item(field)?;
            match &value {
                None => objects.push(0),
                Some(found) if found.is_exact_instance_of::<PyString>() => objects.push(found.as_ptr() as usize),
                Some(_) => strings = false,
            }
            values.push(value);
        }
        if strings {
            if let Some(&group) = by_objects.get(&objects) {
                groups.append(group)?;
                continue;
            }
        }
        let group = match group_key(&values)? {
            None => -1i64,
            Some(key) => match seen.get(&key) {
                Some(found) => *found as i64,
                None => {
                    let at = by_group.len();
                    seen.insert(key, at);
                    by_group.append(own_entry(py, &fields, &values, &required)?)?;
                    at as i64
                }
            },
        };
        if strings && group >= 0 {
            by_objects.insert(objects.clone(), group);
        }
        groups.append(group)?;
    }
    PyTuple::new(
        py,
        [
            keys.into_any(),
            wait_keys.into_any(),
            groups.into_any(),
            by_group.into_any(),
        ],
    )
}
