//! The PyO3 module `costctx_native`: `Core` scans requests into the api.py view classes
//! (passed in once, so the view objects are the very dataclasses the Python codec builds)
//! and encodes edit lists back. Policy stays in Python; this side only decodes and writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyString, PyTuple};

use crate::encode::{encode_into, ArenaEdits, Body, EditArena, Plan, SetValue, INLINE};
use crate::fxhash::FxBuild;
use crate::scan::{scan, Scan, Span32, Value, Watched};
use crate::slots::SlotLayout;
use crate::wire::DecodeError;
use crate::wire::{close_len, open_len, write_len_field, write_tag, write_varint, I64, LEN, VARINT};

/// A scanned request: the bytes and where everything is, for encode/extract/materialize.
#[pyclass(frozen)]
pub struct Layout {
    pub(crate) raw: Py<PyBytes>,
    pub(crate) scan: Scan,
    /// The watched keys the scan used (their ids are the attrs' key ids): for `groups`.
    pub(crate) prepared: Arc<Prepared>,
}

#[pymethods]
impl Layout {
    /// The protobuf Span body of span `index` (for the slow path's materialize).
    fn span_bytes<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyBytes>> {
        let span = self
            .scan
            .spans
            .get(index)
            .ok_or_else(|| PyValueError::new_err("span index out of range"))?;
        Ok(PyBytes::new(py, span.body.get(self.raw.as_bytes(py))))
    }
    fn __len__(&self) -> usize {
        self.scan.spans.len()
    }
    /// crate::groups::group_spans: (groups of span indices, loose span indices); `by_value`:
    /// the watched keys whose string values split groups.
    fn groups<'py>(
        &self,
        py: Python<'py>,
        by_value: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let chosen = self.chosen(by_value)?;
        let raw = self.raw.as_bytes(py);
        let (groups, loose) = crate::groups::group_spans(raw, &self.scan, &chosen);
        let out = PyList::empty(py);
        for group in groups {
            out.append(PyList::new(py, group)?)?;
        }
        Ok((out, PyList::new(py, loose)?))
    }
    /// `groups` and, per group, the key its decision is kept under (groups.rs `group_key`):
    /// a tuple of its kinds string and the sorted string values of its `by_value` keys.
    fn keyed_groups<'py>(
        &self,
        py: Python<'py>,
        by_value: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>, Bound<'py, PyList>)> {
        let chosen = self.chosen(by_value)?;
        let raw = self.raw.as_bytes(py);
        let (groups, loose) = crate::groups::group_spans(raw, &self.scan, &chosen);
        let out = PyList::empty(py);
        let keys = PyList::empty(py);
        for group in groups {
            let first = &self.scan.spans[group[0] as usize];
            let (kinds, values) = crate::groups::group_key(raw, &self.prepared.bytes, &first.attrs, &chosen);
            let mut items: Vec<Bound<'py, PyAny>> = Vec::with_capacity(values.len() + 1);
            items.push(PyString::new(py, std::str::from_utf8(&kinds).unwrap_or("")).into_any());
            for (_, value) in values {
                items.push(PyString::new(py, std::str::from_utf8(value).unwrap_or("")).into_any());
                // UTF-8 checked by the scan
            }
            keys.append(PyTuple::new(py, items)?)?;
            out.append(PyList::new(py, group)?)?;
        }
        Ok((out, PyList::new(py, loose)?, keys))
    }
}

impl Layout {
    /// Per watched key id: whether it is one of `by_value`.
    pub(crate) fn chosen(&self, by_value: &Bound<'_, PyAny>) -> PyResult<Vec<bool>> {
        let mut chosen = vec![false; self.prepared.bytes.len()];
        for key in by_value.try_iter()? {
            let key = key?;
            let key = key
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("keys must be str"))?;
            let key = key.to_str()?.as_bytes();
            for (slot, watched) in chosen.iter_mut().zip(&self.prepared.bytes) {
                *slot |= watched.as_slice() == key;
            }
        }
        Ok(chosen)
    }
}

/// The watched keys of the last scan, prepared once per distinct `watched` object.
pub(crate) struct Prepared {
    source: Py<PyAny>,
    pub(crate) keys: Vec<Py<PyString>>,
    pub(crate) bytes: Vec<Vec<u8>>,
}

/// Frozen (methods take &self): the pipeline may scan from several threads, and a scan
/// releases the GIL while it walks the bytes; the watched-key cache sits behind a mutex.
#[pyclass(frozen)]
pub struct Core {
    resource_cls: Py<PyAny>,
    scope_cls: Py<PyAny>,
    span_cls: Py<PyAny>,
    kvlist_cls: Py<PyAny>,
    empty: Py<PyAny>,
    error_cls: Py<PyAny>,
    prepared: Mutex<Option<Arc<Prepared>>>,
    /// The slots of the edits' class (SpanEdits: renames, deletes, sets, replace), found from
    /// the first edits object converted; None inside when it is no plain slots class.
    edit_slots: PyOnceLock<Option<SlotLayout>>,
    /// encode's output buffer, kept between calls (a fresh ~100 kB Vec per batch was a large
    /// malloc and free, and cold memory): taken while a call writes, another call meanwhile
    /// (another thread) writes into a Vec of its own.
    out: Mutex<Vec<u8>>,
    /// The edits' converter storage, kept between calls as `out` is.
    conv: Mutex<Option<ConvStore>>,
}

/// The slots of SpanEdits in the order `attr_edits` reads them.
const EDIT_SLOTS: [&str; 4] = ["replace", "renames", "deletes", "sets"];
/// A kept output buffer larger than this is dropped after the call (memory stays bounded).
const OUT_KEPT: usize = 1 << 20;

/// Per-scan caches: one Python object per distinct string, key signature and small int.
struct Interner<'py> {
    py: Python<'py>,
    strings: HashMap<Span32Key, Bound<'py, PyString>>,
    signatures: HashMap<u64, Bound<'py, PyFrozenSet>>,
    /// SpanView.kinds by (key id, kind letter) pairs in scan order.
    kinds: HashMap<Vec<u32>, Py<PyString>>,
    empty_bytes: Bound<'py, PyBytes>,
    empty_tuple: Bound<'py, PyTuple>,
    empty_str: Bound<'py, PyString>,
    empty_frozenset: Bound<'py, PyFrozenSet>,
}

/// Strings are interned by content: the key is the bytes (borrowed from the request).
type Span32Key = Vec<u8>;

impl<'py> Interner<'py> {
    fn new(py: Python<'py>) -> PyResult<Self> {
        Ok(Self {
            py,
            strings: HashMap::new(),
            signatures: HashMap::new(),
            kinds: HashMap::new(),
            empty_bytes: PyBytes::new(py, b""),
            empty_tuple: PyTuple::empty(py),
            empty_str: PyString::new(py, ""),
            empty_frozenset: PyFrozenSet::empty(py)?,
        })
    }

    fn string(&mut self, raw: &[u8], range: Span32) -> Bound<'py, PyString> {
        if range.len == 0 {
            return self.empty_str.clone();
        }
        let bytes = range.get(raw);
        if let Some(found) = self.strings.get(bytes) {
            return found.clone();
        }
        // Validated as UTF-8 by the scan.
        let text = std::str::from_utf8(bytes).unwrap_or("");
        let made = PyString::new(self.py, text);
        self.strings.insert(bytes.to_vec(), made.clone());
        made
    }

    /// SpanView.kinds of a span without repeated keys (crate::kinds), one object per form.
    fn kinds(&mut self, keys: &[Vec<u8>], attrs: &[(u16, Value)]) -> Bound<'py, PyString> {
        crate::view::kinds_of(self.py, &mut self.kinds, keys, attrs)
    }

    fn bytes(&self, raw: &[u8], range: Span32) -> Bound<'py, PyBytes> {
        if range.len == 0 {
            return self.empty_bytes.clone();
        }
        PyBytes::new(self.py, range.get(raw))
    }
}

impl Core {
    fn codec_error(&self, py: Python<'_>, message: &str) -> PyErr {
        match self.error_cls.bind(py).call1((message,)) {
            Ok(err) => PyErr::from_value(err),
            Err(err) => err,
        }
    }

    fn prepare(&self, py: Python<'_>, watched: &Bound<'_, PyAny>) -> PyResult<Arc<Prepared>> {
        if let Some(prepared) = self.prepared.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if prepared.source.bind(py).is(watched) {
                return Ok(prepared.clone());
            }
        }
        let mut keys = Vec::new();
        let mut bytes = Vec::new();
        for key in watched.try_iter()? {
            let key = key?;
            let key = key
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("watched keys must be str"))?;
            bytes.push(key.to_str()?.as_bytes().to_vec());
            keys.push(key.clone().unbind());
        }
        if keys.len() > u16::MAX as usize {
            return Err(PyValueError::new_err("too many watched keys"));
        }
        let prepared = Arc::new(Prepared {
            source: watched.clone().unbind(),
            keys,
            bytes,
        });
        *self.prepared.lock().unwrap_or_else(|e| e.into_inner()) = Some(prepared.clone());
        Ok(prepared)
    }

    /// The view's resources and scopes (what `scan` and `scan_lazy` both make), strings
    /// interned with the caller's `interner`.
    fn resources_and_scopes<'py>(
        &self,
        py: Python<'py>,
        bytes: &[u8],
        scanned: &Scan,
        keys: &[Bound<'py, PyString>],
        interner: &mut Interner<'py>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let unknown_service = PyString::new(py, "unknown_service");
        let resources = PyList::empty(py);
        for rec in &scanned.resources {
            let service = match rec.service {
                Some(range) => interner.string(bytes, range),
                None => unknown_service.clone(),
            };
            let schema_url = interner.string(bytes, rec.schema_url);
            let (attrs, _) = self.attrs(py, bytes, interner, keys, &rec.attrs)?;
            resources.append(self.resource_cls.bind(py).call1((
                service,
                schema_url,
                attrs,
                rec.size,
                rec.repeated,
            ))?)?;
        }
        let scopes = PyList::empty(py);
        for rec in &scanned.scopes {
            let args = (
                rec.resource,
                interner.string(bytes, rec.schema_url),
                interner.string(bytes, rec.name),
                interner.string(bytes, rec.version),
            );
            scopes.append(self.scope_cls.bind(py).call1(args)?)?;
        }
        Ok((resources, scopes))
    }

    fn value<'py>(
        &self,
        py: Python<'py>,
        raw: &[u8],
        interner: &mut Interner<'py>,
        value: &Value,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match value {
            Value::Empty => self.empty.bind(py).clone(),
            Value::Str(range) => interner.string(raw, *range).into_any(),
            Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
            Value::Int(i) | Value::StrIndex(i) => i.into_pyobject(py)?.into_any(),
            Value::Double(f) => PyFloat::new(py, *f).into_any(),
            Value::Bytes(range) => interner.bytes(raw, *range).into_any(),
            Value::Array(items) => {
                let list = PyList::empty(py);
                for item in items.iter() {
                    list.append(self.value(py, raw, interner, item)?)?;
                }
                list.into_any()
            }
            Value::KvList(pairs) => {
                let mut converted = Vec::with_capacity(pairs.len());
                for (key, item) in pairs.iter() {
                    let key = interner.string(raw, *key).into_any();
                    let item = self.value(py, raw, interner, item)?;
                    converted.push(PyTuple::new(py, [key, item])?);
                }
                let tuple = PyTuple::new(py, converted)?;
                self.kvlist_cls.bind(py).call1((tuple,))?
            }
        })
    }

    fn attrs<'py>(
        &self,
        py: Python<'py>,
        raw: &[u8],
        interner: &mut Interner<'py>,
        keys: &[Bound<'py, PyString>],
        attrs: &[(u16, Value)],
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyFrozenSet>)> {
        let dict = PyDict::new(py);
        let mut mask: u64 = 0;
        let mut wide = false;
        for (id, value) in attrs {
            dict.set_item(&keys[*id as usize], self.value(py, raw, interner, value)?)?;
            if *id < 64 {
                mask |= 1 << id;
            } else {
                wide = true;
            }
        }
        // The signature: one frozenset object per distinct key set within the batch.
        let signature = if wide {
            PyFrozenSet::new(py, dict.keys().iter())?
        } else if let Some(found) = interner.signatures.get(&mask) {
            found.clone()
        } else {
            let made = PyFrozenSet::new(py, dict.keys().iter())?;
            interner.signatures.insert(mask, made.clone());
            made
        };
        Ok((dict, signature))
    }
}

#[pymethods]
impl Core {
    #[new]
    fn new(
        resource_cls: Py<PyAny>,
        scope_cls: Py<PyAny>,
        span_cls: Py<PyAny>,
        kvlist_cls: Py<PyAny>,
        empty: Py<PyAny>,
        error_cls: Py<PyAny>,
    ) -> Self {
        Core {
            resource_cls,
            scope_cls,
            span_cls,
            kvlist_cls,
            empty,
            error_cls,
            prepared: Mutex::new(None),
            edit_slots: PyOnceLock::new(),
            out: Mutex::new(Vec::new()),
            conv: Mutex::new(None),
        }
    }

    /// Validate `raw` as protobuf would, building no view: the number of spans (for a
    /// pass-through path, and to measure the scan apart from the view objects).
    fn check(&self, py: Python<'_>, raw: Bound<'_, PyBytes>) -> PyResult<usize> {
        let bytes = raw.as_bytes();
        let none = Watched::new(Vec::new());
        match py.detach(|| scan(bytes, &none)) {
            Ok(scanned) => Ok(scanned.spans.len()),
            Err(err) => Err(self.codec_error(py, err.0)),
        }
    }

    /// Validate `raw` and build the view: (resources, scopes, spans, layout).
    fn scan<'py>(
        &self,
        py: Python<'py>,
        raw: Bound<'py, PyBytes>,
        watched: Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>, Bound<'py, PyList>, Layout)> {
        let prepared = self.prepare(py, &watched)?;
        let bytes = raw.as_bytes();
        let watched_bytes = Watched::new(prepared.bytes.iter().map(|k| k.as_slice()).collect());
        let scanned = match py.detach(|| scan(bytes, &watched_bytes)) {
            Ok(scanned) => scanned,
            Err(err) => return Err(self.codec_error(py, err.0)),
        };
        let keys: Vec<Bound<'py, PyString>> = prepared.keys.iter().map(|k| k.bind(py).clone()).collect();
        let mut interner = Interner::new(py)?;
        let (resources, scopes) = self.resources_and_scopes(py, bytes, &scanned, &keys, &mut interner)?;
        let spans = PyList::empty(py);
        let span_cls = self.span_cls.bind(py);
        for rec in &scanned.spans {
            let (attrs, signature) = self.attrs(py, bytes, &mut interner, &keys, &rec.attrs)?;
            let links = if rec.links.is_empty() {
                interner.empty_tuple.clone()
            } else {
                let mut pairs = Vec::with_capacity(rec.links.len());
                for (trace_id, span_id) in &rec.links {
                    pairs.push(PyTuple::new(
                        py,
                        [interner.bytes(bytes, *trace_id), interner.bytes(bytes, *span_id)],
                    )?);
                }
                PyTuple::new(py, pairs)?
            };
            let event_keys = if rec.event_keys.is_empty() {
                interner.empty_frozenset.clone()
            } else {
                PyFrozenSet::new(py, rec.event_keys.iter().map(|id| &keys[*id as usize]))?
            };
            // More fields than PyO3 converts as one Rust tuple: the argument tuple built by hand.
            let args = PyTuple::new(
                py,
                [
                    interner.bytes(bytes, rec.trace_id).into_any(),
                    interner.bytes(bytes, rec.span_id).into_any(),
                    interner.bytes(bytes, rec.parent_span_id).into_any(),
                    rec.start.into_pyobject(py)?.into_any(),
                    rec.end.into_pyobject(py)?.into_any(),
                    rec.resource.into_pyobject(py)?.into_any(),
                    rec.scope.into_pyobject(py)?.into_any(),
                    attrs.into_any(),
                    rec.attr_count.into_pyobject(py)?.into_any(),
                    links.into_any(),
                    rec.event_count.into_pyobject(py)?.into_any(),
                    signature.into_any(),
                    rec.body.len.into_pyobject(py)?.into_any(),
                    event_keys.into_any(),
                    PyBool::new(py, rec.repeated).to_owned().into_any(),
                    rec.kind.into_pyobject(py)?.into_any(),
                    match rec.repeated {
                        true => py.None().into_bound(py),
                        false => interner.kinds(&prepared.bytes, &rec.attrs).into_any(),
                    },
                ],
            )?;
            spans.append(span_cls.call1(args)?)?;
        }
        Ok((
            resources,
            scopes,
            spans,
            Layout {
                raw: raw.unbind(),
                scan: scanned,
                prepared,
            },
        ))
    }

    /// `scan` with the spans as a lazy `SpanList` (view.rs): no SpanView is made until asked
    /// for. Resources and scopes are made now (a few per request).
    fn scan_lazy<'py>(
        &self,
        py: Python<'py>,
        raw: Bound<'py, PyBytes>,
        watched: Bound<'py, PyAny>,
    ) -> PyResult<(
        Bound<'py, PyList>,
        Bound<'py, PyList>,
        crate::view::SpanList,
        Bound<'py, Layout>,
    )> {
        let prepared = self.prepare(py, &watched)?;
        let bytes = raw.as_bytes();
        let watched_bytes = Watched::new(prepared.bytes.iter().map(|k| k.as_slice()).collect());
        let scanned = match py.detach(|| scan(bytes, &watched_bytes)) {
            Ok(scanned) => scanned,
            Err(err) => return Err(self.codec_error(py, err.0)),
        };
        let keys: Vec<Bound<'py, PyString>> = prepared.keys.iter().map(|k| k.bind(py).clone()).collect();
        let mut interner = Interner::new(py)?;
        let (resources, scopes) = self.resources_and_scopes(py, bytes, &scanned, &keys, &mut interner)?;
        let layout = Bound::new(
            py,
            Layout {
                raw: raw.unbind(),
                scan: scanned,
                prepared,
            },
        )?;
        let classes = crate::view::Classes {
            span_cls: self.span_cls.clone_ref(py),
            kvlist_cls: self.kvlist_cls.clone_ref(py),
            empty: self.empty.clone_ref(py),
        };
        let spans = crate::view::SpanList::new(py, &classes, layout.clone().unbind());
        Ok((resources, scopes, spans, layout))
    }

    /// `encode` over a view of several scanned requests (NativeCodec.appended): `segments`
    /// are (first span, first resource, layout) in order, indices in the edits and `removed`
    /// are the view's. One call and one conversion of the edits per batch; each segment is
    /// written as `encode` writes it and the outputs concatenated (concatenated requests are
    /// one request). A segment nothing touches is copied as it arrived.
    #[pyo3(signature = (segments, span_edits, resource_edits, removed, groups=None))]
    fn encode_segments<'py>(
        &self,
        py: Python<'py>,
        segments: &Bound<'py, PyAny>,
        span_edits: &Bound<'py, PyDict>,
        resource_edits: &Bound<'py, PyDict>,
        removed: &Bound<'py, PyAny>,
        groups: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let segments = Segments::of(segments)?;
        let keep = keep_mask(segments.spans, removed, false)?;
        self.write_segments(py, &segments, false, keep, span_edits, resource_edits, groups)
    }

    /// `extract` over a view of several scanned requests (see `encode_segments`).
    #[pyo3(signature = (segments, indices, span_edits, resource_edits, groups=None))]
    fn extract_segments<'py>(
        &self,
        py: Python<'py>,
        segments: &Bound<'py, PyAny>,
        indices: &Bound<'py, PyAny>,
        span_edits: &Bound<'py, PyDict>,
        resource_edits: &Bound<'py, PyDict>,
        groups: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let segments = Segments::of(segments)?;
        let keep = keep_mask(segments.spans, indices, true)?;
        self.write_segments(py, &segments, true, keep, span_edits, resource_edits, groups)
    }

    /// One AnyValue body as the encoder writes it (exposed for tests and stamps).
    fn encode_value<'py>(&self, py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        self.any_value(value, &mut out, 0)?;
        Ok(PyBytes::new(py, &out))
    }
}

impl Core {
    /// Convert the edits once (indices the view's), then write each segment with its share.
    #[allow(clippy::too_many_arguments)]
    fn write_segments<'py>(
        &self,
        py: Python<'py>,
        segments: &Segments<'py>,
        extract: bool,
        keep: Vec<bool>,
        span_edits: &Bound<'py, PyDict>,
        resource_edits: &Bound<'py, PyDict>,
        groups: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let store = self.conv.try_lock().ok().and_then(|mut kept| kept.take());
        let mut conv = store.unwrap_or_default().into_converter();
        let mut spans = self.collect_edits(&mut conv, span_edits)?;
        if let Some(groups) = groups {
            spans = self.merge_groups(&mut conv, spans, groups, segments.spans)?;
        }
        let resources = self.collect_edits(&mut conv, resource_edits)?;
        let arena = &conv.arena;
        let mut parts: Vec<(&[u8], &Scan, Plan)> = segments
            .parts
            .iter()
            .map(|(first, _, layout)| {
                let layout = layout.get();
                let scan = &layout.scan;
                let mut plan = Plan::new(scan, extract);
                plan.keep.copy_from_slice(&keep[*first..first + scan.spans.len()]);
                (layout.raw.as_bytes(py), scan, plan)
            })
            .collect();
        // Each edit straight into its part's plan (the part found by the view's index): no
        // view-wide vectors of ~100-byte slots filled, then copied into the plans.
        for (index, edits) in &spans {
            if let Some((part, at)) = segments.find(*index, false) {
                parts[part].2.span_edits[at] = Some(arena.get(edits));
            }
        }
        for (index, edits) in &resources {
            if let Some((part, at)) = segments.find(*index, true) {
                parts[part].2.resource_edits[at] = Some(arena.get(edits));
            }
        }
        // The kept buffer if no other call holds it (the lock only taken and put back here).
        let mut out = self
            .out
            .try_lock()
            .map(|mut kept| std::mem::take(&mut *kept))
            .unwrap_or_default();
        out.clear();
        let written = py.detach(|| -> Result<(), DecodeError> {
            // Every part written into one buffer sized for all (a buffer per part was copied again).
            out.reserve(parts.iter().map(|(raw, _, plan)| plan.size_hint(raw)).sum());
            if let [(raw, scan, plan)] = parts.as_slice() {
                return encode_into(raw, scan, plan, &mut out); // one request: written as it is
            }
            for (raw, scan, plan) in &parts {
                if plan.extract && !plan.keep.contains(&true) {
                    continue; // none of its spans chosen: nothing of it (not its resources)
                }
                if !plan.extract && plan.untouched() {
                    out.extend_from_slice(raw);
                } else {
                    encode_into(raw, scan, plan, &mut out)?;
                }
            }
            Ok(())
        });
        let result = written.map(|()| PyBytes::new(py, &out));
        if out.capacity() <= OUT_KEPT {
            if let Ok(mut kept) = self.out.try_lock() {
                if kept.capacity() < out.capacity() {
                    *kept = out;
                }
            }
        }
        drop(parts);
        if conv.arena.sets.capacity() <= CONV_KEPT_SETS {
            if let Ok(mut kept) = self.conv.try_lock() {
                *kept = Some(conv.into_store());
            }
        }
        result.map_err(|err| self.codec_error(py, err.0))
    }

    /// Each span's own edits with its groups' merged in (groups.rs `merge`, on the arena's
    /// ranges); spans whose own edits are a `replace` take none. Indices past `count` are
    /// ignored, as own edits' are.
    fn merge_groups<'py>(
        &self,
        conv: &mut Converter<'py>,
        own: Vec<(usize, ArenaEdits)>,
        groups: &Bound<'py, PyAny>,
        count: usize,
    ) -> PyResult<Vec<(usize, ArenaEdits)>> {
        let py = groups.py();
        // Room for the usual batch's groups and members from the start (growing them by
        // doubling was a handful of reallocations per call).
        let mut converted: Vec<ArenaEdits> = Vec::with_capacity(32);
        // (span, group number, its cut), in group order: sorted by span (stably) below.
        let mut members: Vec<(u32, u32, Option<crate::groups::Cut>)> = Vec::with_capacity(count);
        for group in groups.try_iter()? {
            let group = group?;
            let g = converted.len() as u32;
            let edits = self.attr_edits(conv, &group.getattr(pyo3::intern!(py, "edits"))?)?;
            converted.push(edits);
            let after = group.getattr(pyo3::intern!(py, "after"))?;
            let after = after
                .cast::<PyDict>()
                .map_err(|_| PyTypeError::new_err("GroupEdits.after must be a dict"))?;
            let has_after = !after.is_empty();
            for index in group.getattr(pyo3::intern!(py, "spans"))?.try_iter()? {
                let index: usize = index?.extract()?;
                if index >= count {
                    continue;
                }
                let cut = match has_after {
                    true => match after.get_item(index)? {
                        Some(cut) => Some(cut.extract::<crate::groups::Cut>()?),
                        None => None,
                    },
                    false => None,
                };
                members.push((index as u32, g, cut));
            }
        }
        if converted.is_empty() {
            return Ok(own);
        }
        members.sort_by_key(|(span, _, _)| *span); // stable: each span's groups stay in order
        let mut by_index: Vec<Option<ArenaEdits>> = vec![None; count];
        let mut replaced = vec![false; count];
        let mut out = Vec::with_capacity(own.len() + members.len());
        for (index, edits) in own {
            if index < count && edits.replace.is_some() {
                replaced[index] = true;
                out.push((index, edits));
            } else if index < count {
                by_index[index] = Some(edits);
            } else {
                out.push((index, edits));
            }
        }
        let mut at = 0;
        let mut mine: Vec<(ArenaEdits, Option<crate::groups::Cut>)> = Vec::new();
        while at < members.len() {
            let span = members[at].0 as usize;
            let end = at + members[at..].iter().take_while(|(s, _, _)| *s as usize == span).count();
            if !replaced[span] {
                mine.clear();
                mine.extend(
                    members[at..end]
                        .iter()
                        .map(|(_, g, cut)| (converted[*g as usize], *cut)),
                );
                let own = by_index[span].take();
                out.push((span, conv.arena.merge(own.as_ref(), &mine)));
            }
            at = end;
        }
        // Own edits of spans no group touches.
        for (index, edits) in by_index.into_iter().enumerate() {
            if let Some(edits) = edits {
                out.push((index, edits));
            }
        }
        Ok(out)
    }

    fn collect_edits<'py>(
        &self,
        conv: &mut Converter<'py>,
        edits: &Bound<'py, PyDict>,
    ) -> PyResult<Vec<(usize, ArenaEdits)>> {
        let mut collected = Vec::with_capacity(edits.len());
        for (index, item) in edits.iter() {
            let index: usize = index.extract()?;
            collected.push((index, self.attr_edits(conv, &item)?));
        }
        Ok(collected)
    }

    /// One SpanEdits into the arena: its renames, deletes and sets as key and value ids.
    fn attr_edits<'py>(&self, conv: &mut Converter<'py>, item: &Bound<'py, PyAny>) -> PyResult<ArenaEdits> {
        let py = item.py();
        let slots = self
            .edit_slots
            .get_or_init(py, || SlotLayout::of(py, &item.get_type(), &EDIT_SLOTS).ok().flatten());
        // By slot offset when the object is of that class (no attribute lookup), else getattr.
        let slot = |at: usize| match slots {
            Some(layout) => layout.get(item, at),
            None => item.getattr(PyString::new(py, EDIT_SLOTS[at])),
        };
        let replace = slot(0)?;
        if !replace.is_none() {
            let data = replace
                .cast::<PyBytes>()
                .map_err(|_| PyTypeError::new_err("replace must be bytes"))?
                .as_bytes()
                .to_vec();
            let at = conv.arena.replaces.len() as u32;
            conv.arena.replaces.push(data);
            return Ok(ArenaEdits {
                replace: Some(at),
                ..ArenaEdits::default()
            });
        }
        // Lists as SpanEdits holds them: read by index (no iterator object); any other
        // iterable through the iterator protocol.
        let start = conv.arena.renames.len() as u32;
        let renames = slot(1)?;
        for_each(&renames, |pair| {
            let (old, new) = pair_of(&pair)?;
            let ids = (conv.key(&old)?, conv.key(&new)?);
            conv.arena.renames.push(ids);
            Ok(())
        })?;
        let renames = (start, conv.arena.renames.len() as u32);
        let start = conv.arena.deletes.len() as u32;
        let deletes = slot(2)?;
        for_each(&deletes, |key| {
            let id = conv.key(&key)?;
            conv.arena.deletes.push(id);
            Ok(())
        })?;
        let deletes = (start, conv.arena.deletes.len() as u32);
        let start = conv.arena.sets.len() as u32;
        let sets = slot(3)?;
        for_each(&sets, |pair| {
            // A 2-tuple (what processors write) read by borrowed items: no reference counts
            // taken and dropped on the key and value, each a shared object most spans touch.
            let ids = match pair.cast_exact::<PyTuple>() {
                Ok(tuple) if tuple.len() == 2 => {
                    // SAFETY: index 0 and 1 of a tuple of length 2, which `pair` holds.
                    let (key, value) = unsafe {
                        (
                            tuple.get_borrowed_item_unchecked(0),
                            tuple.get_borrowed_item_unchecked(1),
                        )
                    };
                    (conv.key(&key)?, conv.value(self, &value)?)
                }
                _ => {
                    let (key, value) = pair_of(&pair)?;
                    (conv.key(&key)?, conv.value(self, &value)?)
                }
            };
            conv.arena.sets.push(ids);
            Ok(())
        })?;
        let sets = (start, conv.arena.sets.len() as u32);
        Ok(ArenaEdits {
            renames,
            deletes,
            sets,
            replace: None,
        })
    }

    /// A value to set on an attribute, as the Python codec stores it: EMPTY removes the
    /// value field, a scalar is written into the existing value (keeping its unknown
    /// fields), anything else replaces it.
    fn set_value(&self, value: &Bound<'_, PyAny>) -> PyResult<SetValue> {
        let py = value.py();
        if value.is(self.empty.bind(py)) {
            return Ok(SetValue {
                body: Body::default(),
                present: false,
                keeps_unknown: false,
            });
        }
        // The usual values first, by exact type, written straight into an inline body.
        if value.is_exact_instance_of::<PyFloat>() {
            let mut bytes = [0u8; INLINE];
            bytes[0] = (4 << 3) | I64;
            bytes[1..9].copy_from_slice(&value.cast::<PyFloat>()?.value().to_le_bytes());
            return Ok(SetValue {
                body: Body::Inline { len: 9, bytes },
                present: true,
                keeps_unknown: true,
            });
        }
        if let Ok(text) = value.cast_exact::<PyString>() {
            let text = text.to_str()?.as_bytes();
            let body = if text.len() <= INLINE - 2 {
                let mut bytes = [0u8; INLINE];
                bytes[0] = (1 << 3) | LEN;
                bytes[1] = text.len() as u8;
                bytes[2..2 + text.len()].copy_from_slice(text);
                Body::Inline {
                    len: text.len() as u8 + 2,
                    bytes,
                }
            } else {
                let mut body = Vec::with_capacity(text.len() + 6);
                write_len_field(&mut body, 1, text);
                Body::Shared(body.into())
            };
            return Ok(SetValue {
                body,
                present: true,
                keeps_unknown: true,
            });
        }
        if value.is_exact_instance_of::<PyInt>() {
            let number: i64 = value
                .extract()
                .map_err(|_| PyValueError::new_err("int out of int64 range"))?;
            let mut bytes = [0u8; INLINE];
            bytes[0] = (3 << 3) | VARINT;
            let (mut rest, mut len) = (number as u64, 1usize);
            while rest >= 0x80 {
                bytes[len] = (rest as u8) | 0x80;
                rest >>= 7;
                len += 1;
            }
            bytes[len] = rest as u8;
            return Ok(SetValue {
                body: Body::Inline {
                    len: len as u8 + 1,
                    bytes,
                },
                present: true,
                keeps_unknown: true,
            });
        }
        // Room for a usual list or kvlist value at once (grown from nothing: four reallocs).
        let mut body = Vec::with_capacity(128);
        self.any_value(value, &mut body, 0)?;
        let scalar = value.is_instance_of::<PyString>()
            || value.is_instance_of::<PyInt>()
            || value.is_instance_of::<PyFloat>()
            || value.is_instance_of::<PyBytes>();
        Ok(SetValue {
            body: body.into(),
            present: true,
            keeps_unknown: scalar,
        })
    }

    /// Encode a Python value as an AnyValue body, as `set_any_value` stores it.
    fn any_value(&self, value: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: u32) -> PyResult<()> {
        if depth > 90 {
            return Err(PyValueError::new_err("value nested too deeply for OTLP"));
        }
        let py = value.py();
        if let Ok(text) = value.cast::<PyString>() {
            write_len_field(out, 1, text.to_str()?.as_bytes());
        } else if let Ok(flag) = value.cast::<PyBool>() {
            write_tag(out, 2, VARINT);
            out.push(flag.is_true() as u8);
        } else if value.is_instance_of::<PyInt>() {
            let number: i64 = value
                .extract()
                .map_err(|_| PyValueError::new_err("int out of int64 range"))?;
            write_tag(out, 3, VARINT);
            write_varint(out, number as u64);
        } else if let Ok(number) = value.cast::<PyFloat>() {
            write_tag(out, 4, I64);
            out.extend_from_slice(&number.value().to_le_bytes());
        } else if let Ok(data) = value.cast::<PyBytes>() {
            write_len_field(out, 7, data.as_bytes());
        } else if value.is_none() || value.is(self.empty.bind(py)) {
            // An AnyValue with no value set: an empty body.
        } else if value.is_instance(self.kvlist_cls.bind(py))? {
            // Written in place: each length fixed when its body is done (no buffer per level).
            let slot = open_len(out, 6, 0);
            for pair in value.try_iter()? {
                let pair = pair?;
                let key = pair.get_item(0)?.str()?;
                self.key_value(key.to_str()?, &pair.get_item(1)?, out, depth)?;
            }
            close_len(out, slot);
        } else if let Ok(dict) = value.cast::<PyDict>() {
            let slot = open_len(out, 6, 0);
            for (key, item) in dict.iter() {
                let key = key.str()?;
                self.key_value(key.to_str()?, &item, out, depth)?;
            }
            close_len(out, slot);
        } else if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
            let array = open_len(out, 5, 0);
            for item in value.try_iter()? {
                let element = open_len(out, 1, 0);
                self.any_value(&item?, out, depth + 1)?;
                close_len(out, element);
            }
            close_len(out, array);
        } else {
            let kind = value.get_type().name()?;
            return Err(PyTypeError::new_err(format!("cannot store {kind} in an OTLP AnyValue")));
        }
        Ok(())
    }

    fn key_value(&self, key: &str, value: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: u32) -> PyResult<()> {
        let kv = open_len(out, 1, key.len() + 4);
        if !key.is_empty() {
            write_len_field(out, 1, key.as_bytes());
        }
        let body = open_len(out, 2, 0);
        self.any_value(value, out, depth + 1)?;
        close_len(out, body);
        close_len(out, kv);
        Ok(())
    }
}

/// Which of `spans` spans to write: every one but those `listed` (`listed_kept` false: the
/// removed ones), or only those `listed` (true: an extract). Indices past the end are ignored.
fn keep_mask(spans: usize, listed: &Bound<'_, PyAny>, listed_kept: bool) -> PyResult<Vec<bool>> {
    let mut keep = vec![!listed_kept; spans];
    for index in listed.try_iter()? {
        let index: usize = index?.extract()?;
        if let Some(slot) = keep.get_mut(index) {
            *slot = listed_kept;
        }
    }
    Ok(keep)
}

/// The scanned requests a view is made of: (first span, first resource, layout) each, and
/// the view's span count.
struct Segments<'py> {
    parts: Vec<(usize, usize, Bound<'py, Layout>)>,
    spans: usize,
}

impl<'py> Segments<'py> {
    /// From (first span, first resource, layout) triples; each must start where the one
    /// before it ends (a view's segments), or the edits would land on the wrong spans.
    fn of(items: &Bound<'py, PyAny>) -> PyResult<Self> {
        let mut parts = Vec::new();
        let (mut spans, mut resources) = (0usize, 0usize);
        for item in items.try_iter()? {
            let (first, first_resource, layout): (usize, usize, Bound<'py, Layout>) = item?.extract()?;
            if first != spans || first_resource != resources {
                return Err(PyValueError::new_err(
                    "segments must follow each other (first span and resource)",
                ));
            }
            let scan = &layout.get().scan;
            spans += scan.spans.len();
            resources += scan.resources.len();
            parts.push((first, first_resource, layout));
        }
        Ok(Segments { parts, spans })
    }

    /// The part holding the view's span (or, `resources`, resource) `index` and its index
    /// there; None past the view's end.
    fn find(&self, index: usize, resources: bool) -> Option<(usize, usize)> {
        let first = |part: &(usize, usize, Bound<'py, Layout>)| if resources { part.1 } else { part.0 };
        // The last part starting at or before `index` (parts are in order; an empty part starts
        // where the next one does, so the one found is the next, or past the end).
        let part = self.parts.partition_point(|p| first(p) <= index).checked_sub(1)?;
        let scan = &self.parts[part].2.get().scan;
        let len = if resources {
            scan.resources.len()
        } else {
            scan.spans.len()
        };
        let at = index - first(&self.parts[part]);
        (at < len).then_some((part, at))
    }
}

/// The edits of one encode call converted to the crate's form (an `EditArena`), each distinct
/// key object and immutable value object once (many spans' edits share them: a group's, the
/// scan's interned strings, one stamp value). Keyed by object address, each object held here
/// (`held`) for the call, so no address is reused while it is a key.
struct Converter<'py> {
    arena: EditArena,
    keys: HashMap<usize, u32, FxBuild>,
    values: HashMap<usize, u32, FxBuild>,
    /// Lists of immutable scalars by the addresses of their elements (each element held, so
    /// no address is reused): a processor writes one list per span (`list(fields)`), but its
    /// elements are the same few str objects, so a batch has a few distinct lists.
    lists: HashMap<Vec<usize>, u32, FxBuild>,
    /// The element addresses of the list looked up (kept: no allocation per lookup).
    addresses: Vec<usize>,
    /// Every object an address above stands for, alive until the call ends.
    held: Vec<Bound<'py, PyAny>>,
}

/// A Converter's storage with nothing in it, kept in `Core` between calls: a fresh one per
/// batch was a dozen allocations of 1-16 kB (malloc's slow path on a fragmented heap, ~5% of
/// encode) and cold memory to fill.
struct ConvStore {
    arena: EditArena,
    keys: HashMap<usize, u32, FxBuild>,
    values: HashMap<usize, u32, FxBuild>,
    lists: HashMap<Vec<usize>, u32, FxBuild>,
    addresses: Vec<usize>,
}

impl Default for ConvStore {
    fn default() -> Self {
        // Sized for a batch of the usual shape (tens of keys, several hundred values, about a
        // thousand sets, more once groups are merged): growing showed in the encode profile.
        ConvStore {
            arena: EditArena {
                keys: Vec::with_capacity(64),
                key_prints: Vec::with_capacity(64),
                values: Vec::with_capacity(512),
                sets: Vec::with_capacity(2048),
                ..EditArena::default()
            },
            keys: HashMap::with_capacity_and_hasher(64, FxBuild::default()),
            values: HashMap::with_capacity_and_hasher(512, FxBuild::default()),
            lists: HashMap::default(),
            addresses: Vec::new(),
        }
    }
}

/// A kept ConvStore whose arena grew past this many sets is dropped (memory stays bounded).
const CONV_KEPT_SETS: usize = 1 << 16;

impl ConvStore {
    fn into_converter<'py>(self) -> Converter<'py> {
        Converter {
            arena: self.arena,
            keys: self.keys,
            values: self.values,
            lists: self.lists,
            addresses: self.addresses,
            held: Vec::with_capacity(256),
        }
    }
}

impl<'py> Converter<'py> {
    /// Empty again (the objects held released), for the next call.
    fn into_store(mut self) -> ConvStore {
        let arena = &mut self.arena;
        arena.keys.clear();
        arena.key_prints.clear();
        arena.values.clear();
        arena.renames.clear();
        arena.deletes.clear();
        arena.sets.clear();
        arena.replaces.clear();
        self.keys.clear();
        self.values.clear();
        self.lists.clear();
        ConvStore {
            arena: self.arena,
            keys: self.keys,
            values: self.values,
            lists: self.lists,
            addresses: self.addresses,
        }
    }

    fn key(&mut self, key: &Bound<'py, PyAny>) -> PyResult<u32> {
        let at = key.as_ptr() as usize;
        if let Some(found) = self.keys.get(&at) {
            return Ok(*found);
        }
        let text = key
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("attribute keys must be str"))?;
        let id = self.arena.push_key(text.to_str()?.as_bytes());
        self.keys.insert(at, id);
        self.held.push(key.clone());
        Ok(id)
    }

    fn value(&mut self, core: &Core, value: &Bound<'py, PyAny>) -> PyResult<u32> {
        // Found by address first: only immutable objects are kept, each held for the call (so
        // no other object has its address); the type checks only for one not seen yet.
        let at = value.as_ptr() as usize;
        if let Some(found) = self.values.get(&at) {
            return Ok(*found);
        }
        // Only objects that cannot change: exact str, int, float, bytes, bool (and EMPTY).
        let immutable = value.is_exact_instance_of::<PyString>()
            || value.is_exact_instance_of::<PyInt>()
            || value.is_exact_instance_of::<PyFloat>()
            || value.is_exact_instance_of::<PyBytes>()
            || value.is_exact_instance_of::<PyBool>()
            || value.is(core.empty.bind(value.py()));
        if !immutable {
            if let Ok(list) = value.cast_exact::<PyList>() {
                return self.list(core, list);
            }
            return Ok(self.push_value(core.set_value(value)?));
        }
        let id = self.push_value(core.set_value(value)?);
        self.values.insert(at, id);
        self.held.push(value.clone());
        Ok(id)
    }

    fn push_value(&mut self, value: SetValue) -> u32 {
        self.arena.values.push(value);
        self.arena.values.len() as u32 - 1
    }

    /// A list value: found by its elements when every one is an immutable scalar (what it
    /// encodes to depends on them only), else encoded afresh.
    fn list(&mut self, core: &Core, list: &Bound<'py, PyList>) -> PyResult<u32> {
        self.addresses.clear();
        for item in list.iter() {
            let scalar = item.is_exact_instance_of::<PyString>()
                || item.is_exact_instance_of::<PyInt>()
                || item.is_exact_instance_of::<PyFloat>()
                || item.is_exact_instance_of::<PyBytes>()
                || item.is_exact_instance_of::<PyBool>();
            if !scalar {
                return Ok(self.push_value(core.set_value(list.as_any())?));
            }
            self.addresses.push(item.as_ptr() as usize);
        }
        if let Some(found) = self.lists.get(self.addresses.as_slice()) {
            return Ok(*found);
        }
        let id = self.push_value(core.set_value(list.as_any())?);
        self.held.extend(list.iter());
        self.lists.insert(self.addresses.clone(), id);
        Ok(id)
    }
}

/// `f` on every item of `items`: a list read by index, anything else iterated.
fn for_each<'py>(items: &Bound<'py, PyAny>, mut f: impl FnMut(Bound<'py, PyAny>) -> PyResult<()>) -> PyResult<()> {
    if let Ok(list) = items.cast::<PyList>() {
        let mut i = 0;
        // The length re-read each time: nothing here runs Python code, but stay in bounds.
        while i < list.len() {
            // SAFETY: i < the list's length, read just now with the GIL held.
            f(unsafe { list.get_item_unchecked(i) })?;
            i += 1;
        }
        return Ok(());
    }
    for item in items.try_iter()? {
        f(item?)?;
    }
    Ok(())
}

/// The two items of a pair (a tuple, or any sequence of two).
fn pair_of<'py>(pair: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    if let Ok(tuple) = pair.cast::<PyTuple>() {
        if tuple.len() == 2 {
            return Ok((tuple.get_item(0)?, tuple.get_item(1)?));
        }
        return Err(PyValueError::new_err("an edit pair must have two items"));
    }
    Ok((pair.get_item(0)?, pair.get_item(1)?))
}

#[pymodule]
#[pyo3(name = "_core")]
fn costctx_native_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Core>()?;
    m.add_class::<Layout>()?;
    m.add_class::<crate::view::SpanList>()?;
    m.add_function(wrap_pyfunction!(crate::price::read_calls, m)?)?;
    m.add_function(wrap_pyfunction!(crate::envelope::read_shapes, m)?)?;
    m.add_function(wrap_pyfunction!(crate::envelope::missing_groups, m)?)?;
    m.add_function(wrap_pyfunction!(crate::budget::read_roots, m)?)?;
    m.add_function(wrap_pyfunction!(crate::inherit::parent_first, m)?)?;
    m.add_function(wrap_pyfunction!(crate::inherit::read_batch, m)?)?;
    m.add_function(wrap_pyfunction!(crate::inherit_learn::learn_plan, m)?)?;
    m.add_function(wrap_pyfunction!(crate::inherit_split::one_span_requests, m)?)?;
    m.add_class::<crate::ancestors::AncestorTable>()?;
    m.add_class::<crate::inherit_votes::TraceVotes>()?;
    m.add_class::<crate::inherit_kernel::DecideKernel>()?;
    m.add_function(wrap_pyfunction!(crate::budget::read_spend, m)?)?;
    m.add_function(wrap_pyfunction!(crate::wire_count::over_limit, m)?)?;
    m.add_class::<crate::table::SpanKeyTable>()?;
    m.add_function(wrap_pyfunction!(crate::price::price_calls, m)?)?;
    m.add_function(wrap_pyfunction!(crate::price::stamp_totals, m)?)?;
    m.add_function(wrap_pyfunction!(crate::settle::read_settle, m)?)?;
    m.add_class::<crate::group_table::GroupTable>()?;
    m.add_function(wrap_pyfunction!(crate::group_table::decided_groups, m)?)?;
    m.add_function(wrap_pyfunction!(crate::price::add_spend, m)?)?;
    m.add_function(wrap_pyfunction!(crate::budget::add_list_sums, m)?)?;
    Ok(())
}
