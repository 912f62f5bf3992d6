//! The inherit processor's per-span reading, in one call per batch: each span's key (trace
//! id + span id), the key of the ancestor it would wait for (trace id + parent id), and which
//! spans carry the same context fields of their own (one group per distinct set of values,
//! so Python builds each span's own fields, and decides, once per group). The Python
//! equivalent (the fallback and the oracle) is `costctx.processors.inherit.batch_read.read_spans`;
//! every rule here is written there first. Decisions stay in Python.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

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

/// See `costctx.processors.inherit.batch_read.read_spans` (same arguments, same result).
#[pyfunction]
pub fn read_spans<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyList>,
    indices: &Bound<'py, PyAny>,
    fields: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyTuple>> {
    let fields: Vec<Bound<'py, PyString>> =
        fields.iter().map(|f| f.cast_into::<PyString>().map_err(PyErr::from)).collect::<PyResult<_>>()?;
    let keys = PyList::empty(py);
    let wait_keys = PyList::empty(py);
    let groups = PyList::empty(py);
    let firsts = PyList::empty(py);
    // Ids and values come off the network: SipHash (std's RandomState), never a fixed hash.
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    let none = py.None().into_bound(py);
    let mut values: Vec<Option<Bound<'py, PyAny>>> = Vec::with_capacity(fields.len());
    for index in indices.try_iter()? {
        let index = index?;
        let span = spans.get_item(index.extract::<usize>()?)?;
        let trace = span.getattr(pyo3::intern!(py, "trace_id"))?.cast_into::<PyBytes>()?;
        let span_id = span.getattr(pyo3::intern!(py, "span_id"))?.cast_into::<PyBytes>()?;
        let parent = span.getattr(pyo3::intern!(py, "parent_span_id"))?.cast_into::<PyBytes>()?;
        let trace_bytes = trace.as_bytes();
        keys.append(joined(py, trace_bytes, span_id.as_bytes()))?;
        let parent_bytes = parent.as_bytes();
        // An all-zero id is invalid (W3C): no parent, rather than one that never comes.
        if parent_bytes.is_empty() || parent_bytes == &[0u8; 8][..] {
            wait_keys.append(&none)?;
        } else {
            wait_keys.append(joined(py, trace_bytes, parent_bytes))?;
        }
        let attrs = span.getattr(pyo3::intern!(py, "attrs"))?.cast_into::<PyDict>()?;
        values.clear();
        for field in &fields {
            values.push(attrs.get_item(field)?);
        }
        let group = match group_key(&values)? {
            None => -1i64,
            Some(key) => match seen.get(&key) {
                Some(found) => *found as i64,
                None => {
                    let at = firsts.len();
                    seen.insert(key, at);
                    firsts.append(&index)?;
                    at as i64
                }
            },
        };
        groups.append(group)?;
    }
    PyTuple::new(py, [keys.into_any(), wait_keys.into_any(), groups.into_any(), firsts.into_any()])
}
