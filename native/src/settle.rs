//! The settle processor's per-span reading, in one call per batch. The Python equivalent (the
//! fallback and the oracle) is `costctx.processors.settle.reading.read_settle`; every rule is
//! written there first, and what is remembered or settled stays in Python.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

/// `type(v) is str and v`.
fn filled(value: Option<Bound<'_, PyAny>>) -> bool {
    match value {
        // SAFETY: an exact str, the GIL held.
        Some(value) if value.is_exact_instance_of::<PyString>() => unsafe {
            ffi::PyUnicode_GetLength(value.as_ptr()) > 0
        },
        _ => false,
    }
}

/// See `costctx.processors.settle.reading.read_settle` (same arguments, same result).
#[pyfunction]
#[pyo3(signature = (spans, indices, workflow_key, tenant_key, cost_key, want_context, traces=None))]
#[allow(clippy::too_many_arguments)]
pub fn read_settle<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    workflow_key: &Bound<'py, PyString>,
    tenant_key: &Bound<'py, PyString>,
    cost_key: &Bound<'py, PyString>,
    want_context: bool,
    traces: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyList>)> {
    let context = PyDict::new(py);
    let pending = PyList::empty(py);
    let (attrs_name, trace_name) = (pyo3::intern!(py, "attrs"), pyo3::intern!(py, "trace_id"));
    // The last trace id object put in `context`: a trace's spans mostly come together, and one
    // object per trace (the codec interns a batch's ids) is then one address test, not a probe.
    let mut last: Option<Bound<'py, PyAny>> = None;
    for index in indices.try_iter()? {
        let index = index?;
        let at = index.extract::<usize>()?;
        let span = spans.get_item(at)?;
        // A row (workflow, tenant, cost) with `traces`, else a view.
        let (workflow, tenant, cost) = match traces {
            Some(_) => (
                Some(span.get_item(0)?),
                Some(span.get_item(1)?),
                Some(span.get_item(2)?),
            ),
            None => {
                let attrs = span.getattr(attrs_name)?.cast_into::<PyDict>()?;
                (
                    attrs.get_item(workflow_key)?,
                    attrs.get_item(tenant_key)?,
                    attrs.get_item(cost_key)?,
                )
            }
        };
        if filled(workflow) && filled(tenant) {
            if want_context {
                let trace = match traces {
                    Some(traces) => traces.get_item(at)?,
                    None => span.getattr(trace_name)?,
                };
                if last.as_ref().is_some_and(|last| last.is(&trace)) {
                    continue;
                }
                if !context.contains(&trace)? {
                    context.set_item(&trace, index)?;
                }
                last = Some(trace);
            }
        } else if cost.is_some_and(|cost| !cost.is_none()) {
            pending.append(index)?;
        }
    }
    Ok((context, pending))
}
