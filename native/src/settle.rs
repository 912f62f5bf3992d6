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
    if traces.is_none() {
        if let Ok(list) = spans.cast::<crate::view::SpanList>() {
            read_list(
                py,
                list.get(),
                indices,
                [workflow_key, tenant_key, cost_key],
                want_context,
                &context,
                &pending,
            )?;
            return Ok((context, pending));
        }
    }
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

/// read_settle over the native codec's lazy list: the records read where no view is made
/// (a made view's attrs, or pending edit_attrs changes applied, read as the view has them).
fn read_list<'py>(
    py: Python<'py>,
    list: &crate::view::SpanList,
    indices: &Bound<'py, PyAny>,
    keys: [&Bound<'py, PyString>; 3],
    want_context: bool,
    context: &Bound<'py, PyDict>,
    pending: &Bound<'py, PyList>,
) -> PyResult<()> {
    let texts: Vec<&str> = keys.iter().map(|k| k.to_str()).collect::<PyResult<_>>()?;
    // Which of the three keys a key object is (by address: a layout's keys live for the call).
    let mut which: std::collections::HashMap<usize, Option<usize>, crate::fxhash::FxBuild> = Default::default();
    let mut reading = crate::view::Reading::new(py, list);
    for index in indices.try_iter()? {
        let index = index?;
        let source = reading.span(index.extract::<usize>()?)?;
        let (workflow, tenant, cost) = match &source {
            crate::view::Source::Dict { attrs, .. } => (
                filled(attrs.get_item(keys[0])?),
                filled(attrs.get_item(keys[1])?),
                attrs.get_item(keys[2])?.is_some_and(|cost| !cost.is_none()),
            ),
            crate::view::Source::Record { rec, keys: names, .. } => {
                let (mut workflow, mut tenant, mut cost) = (false, false, false);
                for (id, value) in &rec.attrs {
                    let name = names[*id as usize].bind(py);
                    let role = *which
                        .entry(name.as_ptr() as usize)
                        .or_insert_with(|| name.to_str().ok().and_then(|t| texts.iter().position(|k| *k == t)));
                    // `type(v) is str and v`: a non-empty string (a repeated key: the last stands)
                    let text = matches!(value, crate::scan::Value::Str(range) if range.len > 0);
                    match role {
                        Some(0) => workflow = text,
                        Some(1) => tenant = text,
                        Some(2) => cost = true,
                        _ => {}
                    }
                }
                (workflow, tenant, cost)
            }
        };
        if workflow && tenant {
            if want_context {
                let trace = source.trace_id(py)?;
                if !context.contains(&trace)? {
                    context.set_item(&trace, &index)?;
                }
            }
        } else if cost {
            pending.append(&index)?;
        }
    }
    Ok(())
}
