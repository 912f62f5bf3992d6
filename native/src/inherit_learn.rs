//! What a batch's spans teach the context registry, planned in one call per batch. The
//! Python equivalent (the fallback and the oracle) is
//! `costctx.processors.inherit.learn_plan.learn_plan`; every rule here is written there first.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PySet, PyTuple};

/// Span.SPAN_KIND_CLIENT and SPAN_KIND_PRODUCER: the spans a remote child names as its parent.
fn is_remote(kind: i64) -> bool {
    kind == 3 || kind == 4
}

/// See `costctx.processors.inherit.learn_plan.learn_plan` (same arguments, same result).
#[pyfunction]
pub fn learn_plan<'py>(
    py: Python<'py>,
    learning: &Bound<'py, PyList>,
    learned: &Bound<'py, PySet>,
) -> PyResult<Bound<'py, PyList>> {
    let plan = PyList::empty(py);
    let mut keys = PyList::empty(py);
    let mut keys_own: Option<Bound<'py, PyAny>> = None;
    let none = py.None().into_bound(py);
    let mut members: Vec<Bound<'py, PyAny>> = Vec::new();
    for entry in learning.iter() {
        let entry = entry.cast_into::<PyTuple>()?;
        let spans = entry.get_item(0)?;
        let own = entry.get_item(1)?;
        members.clear();
        match spans.cast_exact::<PyList>() {
            Ok(list) => members.extend(list.iter()),
            Err(_) => members.push(spans),
        }
        for span in &members {
            let trace = span.getattr(pyo3::intern!(py, "trace_id"))?.cast_into::<PyBytes>()?;
            let remote = is_remote(span.getattr(pyo3::intern!(py, "kind"))?.extract::<i64>()?);
            if learned.contains(&trace)? {
                if remote && !trace.as_bytes().is_empty() {
                    let span_id = span.getattr(pyo3::intern!(py, "span_id"))?.cast_into::<PyBytes>()?;
                    if !span_id.as_bytes().is_empty() {
                        let same = matches!(&keys_own, Some(k) if k.is(&own));
                        if !same {
                            if !keys.is_empty() {
                                plan.append((&keys, keys_own.as_ref().unwrap_or(&none)))?;
                                keys = PyList::empty(py);
                            }
                            keys_own = Some(own.clone());
                        }
                        let mut key = Vec::with_capacity(24);
                        key.extend_from_slice(trace.as_bytes());
                        key.extend_from_slice(span_id.as_bytes());
                        keys.append(PyBytes::new(py, &key))?;
                    }
                }
                continue;
            }
            if !keys.is_empty() {
                // registered before this trace is, as they were decided
                plan.append((&keys, keys_own.as_ref().unwrap_or(&none)))?;
                keys = PyList::empty(py);
            }
            learned.add(&trace)?;
            let span_id = if remote {
                span.getattr(pyo3::intern!(py, "span_id"))?
            } else {
                none.clone()
            };
            plan.append((&trace, span_id, &own))?;
        }
    }
    if !keys.is_empty() {
        plan.append((&keys, keys_own.as_ref().unwrap_or(&none)))?;
    }
    Ok(plan)
}
