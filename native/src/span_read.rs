//! One span of the native codec's lazy list read by a processor's native pass without making
//! its view (price's `price_calls`, budget's `read_spend`): a made view is read as it is; a
//! span not made yet gives a scratch dict of the keys the pass reads (pending `edit_attrs`
//! changes applied, as the view would have them) and its record's ids and times. Writes to a
//! span not made go through `SpanList::set_attrs`, so the view shows them when it is made and
//! later column readers see them. Any other sequence (a list of views) is read by its items.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::fxhash::FxBuild;
use crate::view::{Source, SpanList};

/// Which attribute keys a pass reads: decided once per key object (a batch's keys are a few
/// shared strings), by address; the objects are held, so no address is reused meanwhile.
pub(crate) struct KeyFilter {
    texts: Vec<String>,
    cache: HashMap<usize, bool, FxBuild>,
    held: Vec<Py<PyString>>,
}

impl KeyFilter {
    pub(crate) fn new(keys: &[Bound<'_, PyString>]) -> PyResult<Self> {
        Ok(KeyFilter {
            texts: keys
                .iter()
                .map(|k| Ok(k.to_str()?.to_owned()))
                .collect::<PyResult<_>>()?,
            cache: HashMap::default(),
            held: Vec::new(),
        })
    }

    fn wants(&mut self, key: &Bound<'_, PyString>) -> bool {
        let address = key.as_ptr() as usize;
        if let Some(found) = self.cache.get(&address) {
            return *found;
        }
        let found = key.to_str().is_ok_and(|text| self.texts.iter().any(|t| t == text));
        self.cache.insert(address, found);
        self.held.push(key.clone().unbind());
        found
    }
}

/// Where a read span's ids and times come from.
enum Origin<'py> {
    View(Bound<'py, PyAny>),
    Record {
        trace_id: Bound<'py, PyBytes>,
        span_id: Bound<'py, PyBytes>,
        root: bool,
        start: u64,
        end: u64,
    },
}

/// One span as a native pass reads it (see the module's doc).
pub(crate) struct SpanRead<'py> {
    /// The made view's own attrs (writes go there), or a scratch dict of the filtered keys.
    pub(crate) attrs: Bound<'py, PyDict>,
    origin: Origin<'py>,
}

impl<'py> SpanRead<'py> {
    /// Span `index` of `spans`: from the lazy list's records where its view is not made.
    pub(crate) fn of(
        py: Python<'py>,
        spans: &Bound<'py, PyAny>,
        index: usize,
        filter: &mut KeyFilter,
    ) -> PyResult<SpanRead<'py>> {
        match spans.cast::<SpanList>() {
            Ok(list) => Self::of_list(py, list.get(), index, filter),
            Err(_) => Self::of_view(py, spans.get_item(index)?),
        }
    }

    pub(crate) fn of_view(py: Python<'py>, view: Bound<'py, PyAny>) -> PyResult<SpanRead<'py>> {
        let attrs = view.getattr(pyo3::intern!(py, "attrs"))?.cast_into::<PyDict>()?;
        Ok(SpanRead {
            attrs,
            origin: Origin::View(view),
        })
    }

    fn of_list(py: Python<'py>, list: &SpanList, index: usize, filter: &mut KeyFilter) -> PyResult<SpanRead<'py>> {
        let mut reading = crate::view::Reading::new(py, list);
        let source = reading.span(index)?;
        let (attrs, rec, raw) = match source {
            Source::Dict {
                attrs,
                view: Some(view),
                ..
            } => {
                return Ok(SpanRead {
                    attrs,
                    origin: Origin::View(view),
                })
            }
            // pending changes applied to a scratch dict of every watched key: read as it is
            Source::Dict { attrs, rec, raw, .. } => (attrs, rec, raw),
            Source::Record {
                rec,
                keys,
                mut maker,
                raw,
                ..
            } => {
                let attrs = PyDict::new(py);
                for (id, value) in &rec.attrs {
                    let key = keys[*id as usize].bind(py);
                    if filter.wants(key) {
                        attrs.set_item(key, maker.value(value)?)?; // a repeated key: the last stands
                    }
                }
                (attrs, rec, raw)
            }
        };
        Ok(SpanRead {
            attrs,
            origin: Origin::Record {
                trace_id: PyBytes::new(py, rec.trace_id.get(raw)),
                span_id: PyBytes::new(py, rec.span_id.get(raw)),
                root: rec.parent_span_id.len == 0,
                start: rec.start,
                end: rec.end,
            },
        })
    }

    /// Whether `attrs` is the made view's own dict (else writes go through `write`).
    pub(crate) fn made(&self) -> bool {
        matches!(self.origin, Origin::View(_))
    }

    pub(crate) fn start(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.origin {
            Origin::View(view) => view.getattr(pyo3::intern!(py, "start")),
            Origin::Record { start, .. } => Ok(start.into_pyobject(py)?.into_any()),
        }
    }

    pub(crate) fn end(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.origin {
            Origin::View(view) => view.getattr(pyo3::intern!(py, "end")),
            Origin::Record { end, .. } => Ok(end.into_pyobject(py)?.into_any()),
        }
    }

    pub(crate) fn trace_id(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.origin {
            Origin::View(view) => view.getattr(pyo3::intern!(py, "trace_id")),
            Origin::Record { trace_id, .. } => Ok(trace_id.clone().into_any()),
        }
    }

    pub(crate) fn span_id(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.origin {
            Origin::View(view) => view.getattr(pyo3::intern!(py, "span_id")),
            Origin::Record { span_id, .. } => Ok(span_id.clone().into_any()),
        }
    }

    /// No parent span id (the view's own, when made).
    pub(crate) fn is_root(&self, py: Python<'py>) -> PyResult<bool> {
        match &self.origin {
            Origin::View(view) => Ok(!view.getattr(pyo3::intern!(py, "parent_span_id"))?.is_truthy()?),
            Origin::Record { root, .. } => Ok(*root),
        }
    }
}

/// `attrs[key] = value` for each pair on span `index` of `spans`, as a view would take it:
/// into the made view's attrs, or kept for the view of a lazy list's span not made yet
/// (`SpanList::set_attrs`, what `edit_attrs` with sets does).
pub(crate) fn write<'py>(
    spans: &Bound<'py, PyAny>,
    index: usize,
    read: &SpanRead<'py>,
    pairs: &[(Bound<'py, PyAny>, Bound<'py, PyAny>)],
) -> PyResult<()> {
    if read.made() {
        for (key, value) in pairs {
            read.attrs.set_item(key, value)?;
        }
        return Ok(());
    }
    let list = spans.cast::<SpanList>()?;
    list.get().set_attrs(spans.py(), index, pairs)
}
