//! One span of the native codec's lazy list read by a processor's native pass without making
//! its view (price's `price_calls`, budget's `read_spend`): a made view is read as it is; a
//! span not made yet gives its attrs as the view would have them (Reading::span_kept: made
//! from its record with pending `edit_attrs` changes applied, and kept for later readers) and
//! its record's ids and times. Writes to a
//! span not made go through `SpanList::set_attrs`, so the view shows them when it is made and
//! later column readers see them. Any other sequence (a list of views) is read by its items.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::view::{Source, SpanList};

/// A span's ids one after another: inline when they fit (16 + 8 + 8 bytes, every valid
/// span's), no allocation per span read; on the heap otherwise.
enum Ids {
    Inline([u8; 32], usize),
    Heap(Vec<u8>),
}

impl Ids {
    fn of(parts: &[&[u8]]) -> Ids {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > 32 {
            return Ids::Heap(parts.concat());
        }
        let mut inline = [0u8; 32];
        let mut at = 0;
        for part in parts {
            inline[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ids::Inline(inline, len)
    }

    fn get(&self) -> &[u8] {
        match self {
            Ids::Inline(bytes, len) => &bytes[..*len],
            Ids::Heap(bytes) => bytes,
        }
    }
}

/// Where a read span's ids and times come from.
enum Origin<'py> {
    View(Bound<'py, PyAny>),
    Record {
        // trace id, span id, parent span id, one after another: bytes objects made only when read
        ids: Ids,
        trace_len: usize,
        span_len: usize,
        root: bool,
        start: u64,
        end: u64,
        // inherit's kernel: links, kind and resource index of its record
        links: bool,
        kind: i32,
        resource: usize,
    },
}

/// One span as a native pass reads it (see the module's doc).
pub(crate) struct SpanRead<'py> {
    /// The made view's own attrs (writes go there), or the span's kept attrs (read only: writes
    /// go through `write`, so the view and later readers see them).
    pub(crate) attrs: Bound<'py, PyDict>,
    origin: Origin<'py>,
}

impl<'py> SpanRead<'py> {
    /// Span `index` of `spans`: from the lazy list's records where its view is not made.
    pub(crate) fn of(py: Python<'py>, spans: &Bound<'py, PyAny>, index: usize) -> PyResult<SpanRead<'py>> {
        match spans.cast::<SpanList>() {
            Ok(list) => Self::of_list(py, list.get(), index),
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

    fn of_list(py: Python<'py>, list: &SpanList, index: usize) -> PyResult<SpanRead<'py>> {
        let mut reading = crate::view::Reading::new(py, list);
        match reading.span_kept(index)? {
            Source::Dict {
                attrs,
                view: Some(view),
                ..
            } => Ok(SpanRead {
                attrs,
                origin: Origin::View(view),
            }),
            // its attrs as the view would have them, kept for the writes and readers after
            Source::Dict {
                attrs,
                rec,
                raw,
                resource,
                ..
            } => Ok(SpanRead {
                attrs,
                origin: Origin::Record {
                    ids: Ids::of(&[rec.trace_id.get(raw), rec.span_id.get(raw), rec.parent_span_id.get(raw)]),
                    trace_len: rec.trace_id.len as usize,
                    span_len: rec.span_id.len as usize,
                    root: rec.parent_span_id.len == 0,
                    start: rec.start,
                    end: rec.end,
                    links: !rec.links.is_empty(),
                    kind: rec.kind,
                    resource,
                },
            }),
            Source::Record { .. } => unreachable!("span_kept gives a dict"),
        }
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
            Origin::Record { ids, trace_len, .. } => Ok(PyBytes::new(py, &ids.get()[..*trace_len]).into_any()),
        }
    }

    pub(crate) fn span_id(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.origin {
            Origin::View(view) => view.getattr(pyo3::intern!(py, "span_id")),
            Origin::Record {
                ids,
                trace_len,
                span_len,
                ..
            } => Ok(PyBytes::new(py, &ids.get()[*trace_len..trace_len + span_len]).into_any()),
        }
    }

    pub(crate) fn parent_span_id(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.origin {
            Origin::View(view) => view.getattr(pyo3::intern!(py, "parent_span_id")),
            Origin::Record {
                ids,
                trace_len,
                span_len,
                ..
            } => Ok(PyBytes::new(py, &ids.get()[trace_len + span_len..]).into_any()),
        }
    }

    /// The record's trace id and span id as they are (no bytes object made); None for a made
    /// view (read its ids through `trace_id` and `span_id`).
    pub(crate) fn record_ids(&self) -> Option<(&[u8], &[u8])> {
        match &self.origin {
            Origin::View(_) => None,
            Origin::Record {
                ids,
                trace_len,
                span_len,
                ..
            } => Some((&ids.get()[..*trace_len], &ids.get()[*trace_len..trace_len + span_len])),
        }
    }

    /// Whether a trace id and a span id are valid ones (W3C): 16 and 8 bytes, neither all
    /// zero. Price's span key and budget's seen-span ids take no span without both.
    pub(crate) fn valid_ids(trace_id: &[u8], span_id: &[u8]) -> bool {
        match (<&[u8; 16]>::try_from(trace_id), <&[u8; 8]>::try_from(span_id)) {
            (Ok(trace), Ok(span)) => u128::from_ne_bytes(*trace) != 0 && u64::from_ne_bytes(*span) != 0,
            _ => false,
        }
    }

    /// No parent: no parent span id, or an invalid all-zero one (W3C).
    pub(crate) fn no_parent(&self, py: Python<'py>) -> PyResult<bool> {
        let empty = |id: &[u8]| id.is_empty() || id == [0u8; 8];
        match &self.origin {
            Origin::View(view) => {
                let id = view.getattr(pyo3::intern!(py, "parent_span_id"))?;
                Ok(empty(id.cast::<PyBytes>()?.as_bytes()))
            }
            Origin::Record {
                ids,
                trace_len,
                span_len,
                ..
            } => Ok(empty(&ids.get()[trace_len + span_len..])),
        }
    }

    /// Whether the span has links (the view's own, when made).
    pub(crate) fn has_links(&self, py: Python<'py>) -> PyResult<bool> {
        match &self.origin {
            Origin::View(view) => view.getattr(pyo3::intern!(py, "links"))?.is_truthy(),
            Origin::Record { links, .. } => Ok(*links),
        }
    }

    pub(crate) fn kind(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.origin {
            Origin::View(view) => view.getattr(pyo3::intern!(py, "kind")),
            Origin::Record { kind, .. } => Ok(kind.into_pyobject(py)?.into_any()),
        }
    }

    /// The span's resource index (the view's own, when made).
    pub(crate) fn resource(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.origin {
            Origin::View(view) => view.getattr(pyo3::intern!(py, "resource")),
            Origin::Record { resource, .. } => Ok(resource.into_pyobject(py)?.into_any()),
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
