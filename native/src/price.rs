//! The price processor's per-span reading, in one call per batch: which spans are worth a
//! look and, for the common model call, what the inline path prices it from. The Python
//! equivalent (the fallback and the oracle) is `costctx.processors.price.calls.read_calls`;
//! every rule here is written there first, and the decisions (rates, arithmetic, stamps,
//! the general path) stay in Python.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// The keys `read_calls` reads, as `calls.READ_KEYS` orders them.
struct Keys<'py> {
    trigger: Vec<Bound<'py, PyString>>,
    general: Vec<Bound<'py, PyString>>,
    reported: Bound<'py, PyString>,
    counts: Vec<Bound<'py, PyString>>,
    names: Vec<Bound<'py, PyString>>,
    workflow: Bound<'py, PyString>,
}

fn strings<'py>(item: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyString>>> {
    item.try_iter()?.map(|key| Ok(key?.cast_into::<PyString>()?)).collect()
}

fn any_in(dict: &Bound<'_, PyDict>, keys: &[Bound<'_, PyString>]) -> PyResult<bool> {
    for key in keys {
        if dict.contains(key)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A token count the inline path takes: an int (not a bool) in 0..2^63.
fn count(value: &Bound<'_, PyAny>) -> bool {
    value.is_exact_instance_of::<PyInt>() && value.extract::<i64>().is_ok_and(|n| n >= 0)
}

/// A reported cost the inline path takes: a finite double >= 0, or an int >= 0.
fn reported_ok(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    if let Ok(double) = value.cast_exact::<PyFloat>() {
        let v = double.value();
        return Ok(v.is_finite() && v >= 0.0);
    }
    if value.is_exact_instance_of::<PyInt>() {
        return Ok(!value.lt(0)?);
    }
    Ok(false)
}

/// trace id + span id when both are ids (16 and 8 bytes, not all zero), as pdata/ids.py.
fn span_key<'py>(py: Python<'py>, span: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let trace = span.getattr(pyo3::intern!(py, "trace_id"))?;
    let span_id = span.getattr(pyo3::intern!(py, "span_id"))?;
    let (Ok(trace), Ok(span_id)) = (trace.cast::<PyBytes>(), span_id.cast::<PyBytes>()) else {
        return Ok(None);
    };
    let (t, s) = (trace.as_bytes(), span_id.as_bytes());
    if t.len() != 16 || s.len() != 8 || t.iter().all(|b| *b == 0) || s.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let mut joined = Vec::with_capacity(24);
    joined.extend_from_slice(t);
    joined.extend_from_slice(s);
    Ok(Some(PyBytes::new(py, &joined)))
}

/// See `costctx.processors.price.calls.read_calls` (same arguments, same result).
#[pyfunction]
pub fn read_calls<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyList>,
    indices: &Bound<'py, PyAny>,
    now: &Bound<'py, PyAny>,
    tolerance: i128,
    keys: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyList>> {
    let keys = Keys {
        trigger: strings(&keys.get_item(0)?)?,
        general: strings(&keys.get_item(1)?)?,
        reported: keys.get_item(2)?.cast_into::<PyString>()?,
        counts: strings(&keys.get_item(3)?)?,
        names: strings(&keys.get_item(4)?)?,
        workflow: keys.get_item(5)?.cast_into::<PyString>()?,
    };
    let now_ns: i128 = now.extract()?;
    let out = PyList::empty(py);
    let none = py.None().into_bound(py);
    for index in indices.try_iter()? {
        let index = index?;
        let span = spans.get_item(index.extract::<usize>()?)?;
        let attrs = span.getattr(pyo3::intern!(py, "attrs"))?.cast_into::<PyDict>()?;
        if !any_in(&attrs, &keys.trigger)? {
            continue;
        }
        if any_in(&attrs, &keys.general)? {
            out.append(index)?;
            continue;
        }
        let reported = match attrs.get_item(&keys.reported)? {
            Some(value) if reported_ok(&value)? => value,
            Some(_) => {
                out.append(index)?;
                continue;
            }
            None => none.clone(),
        };
        // input and output must be there; cache read, cache creation and reasoning are 0 when absent.
        let mut counts: Vec<Bound<'py, PyAny>> = Vec::with_capacity(5);
        let mut usable = true;
        for (at, key) in keys.counts.iter().enumerate() {
            match attrs.get_item(key)? {
                Some(value) if count(&value) => counts.push(value),
                None if at >= 2 => counts.push(0i64.into_pyobject(py)?.into_any()),
                _ => {
                    usable = false;
                    break;
                }
            }
        }
        if !usable {
            out.append(index)?;
            continue;
        }
        let start = span.getattr(pyo3::intern!(py, "start"))?;
        let start_ns: i128 = start.extract()?;
        let late = (start_ns - now_ns).abs() > tolerance;
        let mut names = Vec::with_capacity(3);
        for key in &keys.names {
            names.push(attrs.get_item(key)?.unwrap_or_else(|| none.clone()));
        }
        let workflow = match attrs.get_item(&keys.workflow)? {
            Some(value) if value.cast::<PyString>().is_ok_and(|s| s.is_exact_instance_of::<PyString>())
                && value.len()? > 0 => value,
            _ => none.clone(),
        };
        let key = match span_key(py, &span)? {
            Some(joined) => joined.into_any(),
            None => none.clone(),
        };
        let at = if late { now.clone() } else { start };
        let mut items: Vec<Bound<'py, PyAny>> = vec![index, attrs.into_any(), PyTuple::new(py, names)?.into_any()];
        items.extend(counts);
        items.extend([reported, workflow, key, at, pyo3::types::PyBool::new(py, late).to_owned().into_any()]);
        out.append(PyTuple::new(py, items)?)?;
    }
    Ok(out)
}
