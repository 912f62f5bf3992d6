//! The PyO3 module `costctx_native`: `Core` scans requests into the api.py view classes
//! (passed in once, so the view objects are the very dataclasses the Python codec builds)
//! and encodes edit lists back. Policy stays in Python; this side only decodes and writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyString, PyTuple};

use crate::encode::{encode, AttrEdits, Plan, SetValue};
use crate::kinds::{canonical, kind_letter};
use crate::scan::{scan, Scan, Span32, Value, Watched};
use crate::wire::{write_len_field, write_tag, write_varint, I64, LEN, VARINT};

/// A scanned request: the bytes and where everything is, for encode/extract/materialize.
#[pyclass(frozen)]
pub struct Layout {
    raw: Py<PyBytes>,
    scan: Scan,
    /// The watched keys the scan used (their ids are the attrs' key ids): for `groups`.
    prepared: Arc<Prepared>,
}

#[pymethods]
impl Layout {
    /// The protobuf Span body of span `index` (for the slow path's materialize).
    fn span_bytes<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyBytes>> {
        let span = self.scan.spans.get(index).ok_or_else(|| PyValueError::new_err("span index out of range"))?;
        Ok(PyBytes::new(py, span.body.get(self.raw.as_bytes(py))))
    }
    fn __len__(&self) -> usize {
        self.scan.spans.len()
    }
    /// crate::groups::group_spans: (groups of span indices, loose span indices); `by_value`:
    /// the watched keys whose string values split groups.
    fn groups<'py>(&self, py: Python<'py>, by_value: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let mut chosen = vec![false; self.prepared.bytes.len()];
        for key in by_value.try_iter()? {
            let key = key?;
            let key = key.cast::<PyString>().map_err(|_| PyTypeError::new_err("keys must be str"))?;
            let key = key.to_str()?.as_bytes();
            for (slot, watched) in chosen.iter_mut().zip(&self.prepared.bytes) {
                *slot |= watched.as_slice() == key;
            }
        }
        let raw = self.raw.as_bytes(py);
        let (groups, loose) = crate::groups::group_spans(raw, &self.scan, &chosen);
        let out = PyList::empty(py);
        for group in groups {
            out.append(PyList::new(py, group)?)?;
        }
        Ok((out, PyList::new(py, loose)?))
    }
}

/// The watched keys of the last scan, prepared once per distinct `watched` object.
struct Prepared {
    source: Py<PyAny>,
    keys: Vec<Py<PyString>>,
    bytes: Vec<Vec<u8>>,
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
}

/// Per-scan caches: one Python object per distinct string, key signature and small int.
struct Interner<'py> {
    py: Python<'py>,
    strings: HashMap<Span32Key, Bound<'py, PyString>>,
    signatures: HashMap<u64, Bound<'py, PyFrozenSet>>,
    /// SpanView.kinds by (key id, kind letter) pairs in scan order.
    kinds: HashMap<Vec<u32>, Bound<'py, PyString>>,
    empty_bytes: Bound<'py, PyBytes>,
    empty_tuple: Bound<'py, PyTuple>,
    empty_str: Bound<'py, PyString>,
    empty_frozenset: Bound<'py, PyFrozenSet>,
}

/// Strings are interned by content: the key is the bytes (borrowed from the request).
type Span32Key = Vec<u8>;

impl<'py> Interner<'py> {
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
        // The lookup key on the stack for the usual few watched keys: no allocation on a hit.
        let mut small = [0u32; 32];
        let spilled: Vec<u32>;
        let compact: &[u32] = if attrs.len() <= small.len() {
            for (slot, (id, v)) in small.iter_mut().zip(attrs) {
                *slot = (*id as u32) << 8 | kind_letter(v) as u32;
            }
            &small[..attrs.len()]
        } else {
            spilled = attrs.iter().map(|(id, v)| (*id as u32) << 8 | kind_letter(v) as u32).collect();
            &spilled
        };
        if let Some(found) = self.kinds.get(compact) {
            return found.clone();
        }
        let mut pairs: Vec<(&[u8], u8)> = attrs.iter().map(|(id, v)| (keys[*id as usize].as_slice(), kind_letter(v))).collect();
        let text = canonical(&mut pairs);
        let made = PyString::new(self.py, std::str::from_utf8(&text).unwrap_or(""));
        self.kinds.insert(compact.to_vec(), made.clone());
        made
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
            let key = key.cast::<PyString>().map_err(|_| PyTypeError::new_err("watched keys must be str"))?;
            bytes.push(key.to_str()?.as_bytes().to_vec());
            keys.push(key.clone().unbind());
        }
        if keys.len() > u16::MAX as usize {
            return Err(PyValueError::new_err("too many watched keys"));
        }
        let prepared = Arc::new(Prepared { source: watched.clone().unbind(), keys, bytes });
        *self.prepared.lock().unwrap_or_else(|e| e.into_inner()) = Some(prepared.clone());
        Ok(prepared)
    }

    fn value<'py>(&self, py: Python<'py>, raw: &[u8], interner: &mut Interner<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
        Ok(match value {
            Value::Empty => self.empty.bind(py).clone(),
            Value::Str(range) => interner.string(raw, *range).into_any(),
            Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
            Value::Int(i) | Value::StrIndex(i) => i.into_pyobject(py)?.into_any(),
            Value::Double(f) => PyFloat::new(py, *f).into_any(),
            Value::Bytes(range) => interner.bytes(raw, *range).into_any(),
            Value::Array(items) => {
                let list = PyList::empty(py);
                for item in items {
                    list.append(self.value(py, raw, interner, item)?)?;
                }
                list.into_any()
            }
            Value::KvList(pairs) => {
                let mut converted = Vec::with_capacity(pairs.len());
                for (key, item) in pairs {
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
        Core { resource_cls, scope_cls, span_cls, kvlist_cls, empty, error_cls, prepared: Mutex::new(None) }
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
        let mut interner = Interner {
            py,
            strings: HashMap::new(),
            signatures: HashMap::new(),
            kinds: HashMap::new(),
            empty_bytes: PyBytes::new(py, b""),
            empty_tuple: PyTuple::empty(py),
            empty_str: PyString::new(py, ""),
            empty_frozenset: PyFrozenSet::empty(py)?,
        };
        let unknown_service = PyString::new(py, "unknown_service");

        let resources = PyList::empty(py);
        for rec in &scanned.resources {
            let service = match rec.service {
                Some(range) => interner.string(bytes, range),
                None => unknown_service.clone(),
            };
            let schema_url = interner.string(bytes, rec.schema_url);
            let (attrs, _) = self.attrs(py, bytes, &mut interner, &keys, &rec.attrs)?;
            resources.append(self.resource_cls.bind(py).call1((service, schema_url, attrs, rec.size, rec.repeated))?)?;
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
        let spans = PyList::empty(py);
        let span_cls = self.span_cls.bind(py);
        for rec in &scanned.spans {
            let (attrs, signature) = self.attrs(py, bytes, &mut interner, &keys, &rec.attrs)?;
            let links = if rec.links.is_empty() {
                interner.empty_tuple.clone()
            } else {
                let mut pairs = Vec::with_capacity(rec.links.len());
                for (trace_id, span_id) in &rec.links {
                    pairs.push(PyTuple::new(py, [interner.bytes(bytes, *trace_id), interner.bytes(bytes, *span_id)])?);
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
        Ok((resources, scopes, spans, Layout { raw: raw.unbind(), scan: scanned, prepared }))
    }

    /// The request with edits applied and `removed` spans left out. `groups`: api.py
    /// GroupEdits (edits, spans, after), merged into each member's edits here (groups.rs).
    #[pyo3(signature = (layout, span_edits, resource_edits, removed, groups=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        layout: &Layout,
        span_edits: &Bound<'py, PyDict>,
        resource_edits: &Bound<'py, PyDict>,
        removed: &Bound<'py, PyAny>,
        groups: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut keep = vec![true; layout.scan.spans.len()];
        for index in removed.try_iter()? {
            let index: usize = index?.extract()?;
            if let Some(slot) = keep.get_mut(index) {
                *slot = false;
            }
        }
        self.write(py, layout, false, keep, span_edits, resource_edits, groups)
    }

    /// Only the spans at `indices`, with their resource and scope, edits applied.
    #[pyo3(signature = (layout, indices, span_edits, resource_edits, groups=None))]
    fn extract<'py>(
        &self,
        py: Python<'py>,
        layout: &Layout,
        indices: &Bound<'py, PyAny>,
        span_edits: &Bound<'py, PyDict>,
        resource_edits: &Bound<'py, PyDict>,
        groups: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut keep = vec![false; layout.scan.spans.len()];
        for index in indices.try_iter()? {
            let index: usize = index?.extract()?;
            if let Some(slot) = keep.get_mut(index) {
                *slot = true;
            }
        }
        self.write(py, layout, true, keep, span_edits, resource_edits, groups)
    }

    /// One AnyValue body as the encoder writes it (exposed for tests and stamps).
    fn encode_value<'py>(&self, py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        self.any_value(value, &mut out, 0)?;
        Ok(PyBytes::new(py, &out))
    }
}

impl Core {
    fn write<'py>(
        &self,
        py: Python<'py>,
        layout: &Layout,
        extract: bool,
        keep: Vec<bool>,
        span_edits: &Bound<'py, PyDict>,
        resource_edits: &Bound<'py, PyDict>,
        groups: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut spans = self.collect_edits(span_edits)?;
        if let Some(groups) = groups {
            spans = self.merge_groups(spans, groups, layout.scan.spans.len())?;
        }
        let resources = self.collect_edits(resource_edits)?;
        let mut plan = Plan::new(&layout.scan, extract);
        plan.keep = keep;
        for (index, edits) in &spans {
            if let Some(slot) = plan.span_edits.get_mut(*index) {
                *slot = Some(edits);
            }
        }
        for (index, edits) in &resources {
            if let Some(slot) = plan.resource_edits.get_mut(*index) {
                *slot = Some(edits);
            }
        }
        let raw = layout.raw.as_bytes(py);
        let out = py.detach(|| encode(raw, &layout.scan, &plan)).map_err(|err| self.codec_error(py, err.0))?;
        Ok(PyBytes::new(py, &out))
    }

    /// Each span's own edits with its groups' merged in (groups.rs `merge`); spans whose own
    /// edits are a `replace` take none. Indices past `count` are ignored, as own edits' are.
    fn merge_groups(&self, own: Vec<(usize, AttrEdits)>, groups: &Bound<'_, PyAny>, count: usize) -> PyResult<Vec<(usize, AttrEdits)>> {
        let py = groups.py();
        let mut converted: Vec<AttrEdits> = Vec::new();
        // per span: (group number, its cut) in group order
        let mut of: Vec<Vec<(usize, Option<crate::groups::Cut>)>> = vec![Vec::new(); count];
        for group in groups.try_iter()? {
            let group = group?;
            let g = converted.len();
            converted.push(self.attr_edits(&group.getattr(pyo3::intern!(py, "edits"))?)?);
            let after = group.getattr(pyo3::intern!(py, "after"))?;
            let after = after.cast::<PyDict>().map_err(|_| PyTypeError::new_err("GroupEdits.after must be a dict"))?;
            for index in group.getattr(pyo3::intern!(py, "spans"))?.try_iter()? {
                let index: usize = index?.extract()?;
                if index >= count {
                    continue;
                }
                let cut = match after.get_item(index)? {
                    Some(cut) => Some(cut.extract::<crate::groups::Cut>()?),
                    None => None,
                };
                of[index].push((g, cut));
            }
        }
        if converted.is_empty() {
            return Ok(own);
        }
        let mut by_index: Vec<Option<AttrEdits>> = vec![None; count];
        let mut replaced = vec![false; count];
        let mut out = Vec::with_capacity(own.len());
        for (index, edits) in own {
            if index < count && edits.replace.is_none() && !of[index].is_empty() {
                by_index[index] = Some(edits);
            } else {
                if index < count && edits.replace.is_some() {
                    replaced[index] = true;
                }
                out.push((index, edits));
            }
        }
        for (index, mine) in of.iter().enumerate() {
            if mine.is_empty() {
                continue;
            }
            if replaced[index] {
                continue; // the replacement carries everything
            }
            let own = by_index[index].take();
            let refs: Vec<(&AttrEdits, Option<crate::groups::Cut>)> = mine.iter().map(|(g, cut)| (&converted[*g], *cut)).collect();
            out.push((index, crate::groups::merge(own.as_ref(), &refs)));
        }
        Ok(out)
    }

    fn collect_edits(&self, edits: &Bound<'_, PyDict>) -> PyResult<Vec<(usize, AttrEdits)>> {
        let mut collected = Vec::with_capacity(edits.len());
        for (index, item) in edits.iter() {
            let index: usize = index.extract()?;
            collected.push((index, self.attr_edits(&item)?));
        }
        Ok(collected)
    }

    fn attr_edits(&self, item: &Bound<'_, PyAny>) -> PyResult<AttrEdits> {
        let py = item.py();
        let mut edits = AttrEdits::default();
        let replace = item.getattr(pyo3::intern!(py, "replace"))?;
        if !replace.is_none() {
            edits.replace = Some(replace.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("replace must be bytes"))?.as_bytes().to_vec());
            return Ok(edits);
        }
        for pair in item.getattr(pyo3::intern!(py, "renames"))?.try_iter()? {
            let (old, new): (String, String) = pair?.extract()?;
            edits.renames.push((old.into_bytes(), new.into_bytes()));
        }
        for key in item.getattr(pyo3::intern!(py, "deletes"))?.try_iter()? {
            let key: String = key?.extract()?;
            edits.deletes.push(key.into_bytes());
        }
        for pair in item.getattr(pyo3::intern!(py, "sets"))?.try_iter()? {
            let pair = pair?;
            let key: String = pair.get_item(0)?.extract()?;
            let value = pair.get_item(1)?;
            edits.sets.push((key.into_bytes(), self.set_value(&value)?));
        }
        Ok(edits)
    }

    /// A value to set on an attribute, as the Python codec stores it: EMPTY removes the
    /// value field, a scalar is written into the existing value (keeping its unknown
    /// fields), anything else replaces it.
    fn set_value(&self, value: &Bound<'_, PyAny>) -> PyResult<SetValue> {
        let py = value.py();
        if value.is(self.empty.bind(py)) {
            return Ok(SetValue { body: Vec::new(), present: false, keeps_unknown: false });
        }
        let mut body = Vec::new();
        self.any_value(value, &mut body, 0)?;
        let scalar = value.is_instance_of::<PyString>()
            || value.is_instance_of::<PyInt>()
            || value.is_instance_of::<PyFloat>()
            || value.is_instance_of::<PyBytes>();
        Ok(SetValue { body, present: true, keeps_unknown: scalar })
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
            let number: i64 = value.extract().map_err(|_| PyValueError::new_err("int out of int64 range"))?;
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
            let mut list = Vec::new();
            for pair in value.try_iter()? {
                let pair = pair?;
                let key = pair.get_item(0)?.str()?;
                self.key_value(key.to_str()?, &pair.get_item(1)?, &mut list, depth)?;
            }
            write_len_field(out, 6, &list);
        } else if let Ok(dict) = value.cast::<PyDict>() {
            let mut list = Vec::new();
            for (key, item) in dict.iter() {
                let key = key.str()?;
                self.key_value(key.to_str()?, &item, &mut list, depth)?;
            }
            write_len_field(out, 6, &list);
        } else if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
            let mut array = Vec::new();
            for item in value.try_iter()? {
                let mut element = Vec::new();
                self.any_value(&item?, &mut element, depth + 1)?;
                write_len_field(&mut array, 1, &element);
            }
            write_len_field(out, 5, &array);
        } else {
            let kind = value.get_type().name()?;
            return Err(PyTypeError::new_err(format!("cannot store {kind} in an OTLP AnyValue")));
        }
        Ok(())
    }

    fn key_value(&self, key: &str, value: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: u32) -> PyResult<()> {
        let mut kv = Vec::new();
        if !key.is_empty() {
            write_len_field(&mut kv, 1, key.as_bytes());
        }
        let mut body = Vec::new();
        self.any_value(value, &mut body, depth + 1)?;
        write_len_field(&mut kv, 2, &body);
        write_tag(out, 1, LEN);
        write_varint(out, kv.len() as u64);
        out.extend_from_slice(&kv);
        Ok(())
    }
}

#[pymodule]
#[pyo3(name = "_core")]
fn costctx_native_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Core>()?;
    m.add_class::<Layout>()?;
    m.add_function(wrap_pyfunction!(crate::price::read_calls, m)?)?;
    m.add_function(wrap_pyfunction!(crate::envelope::read_shapes, m)?)?;
    m.add_function(wrap_pyfunction!(crate::inherit::read_spans, m)?)?;
    m.add_function(wrap_pyfunction!(crate::inherit::parent_first, m)?)?;
    m.add_class::<crate::ancestors::AncestorTable>()?;
    m.add_function(wrap_pyfunction!(crate::budget::read_spend, m)?)?;
    m.add_function(wrap_pyfunction!(crate::wire_count::over_limit, m)?)?;
    m.add_class::<crate::table::SpanKeyTable>()?;
    m.add_function(wrap_pyfunction!(crate::price::price_calls, m)?)?;
    m.add_function(wrap_pyfunction!(crate::price::stamp_totals, m)?)?;
    m.add_function(wrap_pyfunction!(crate::settle::read_settle, m)?)?;
    m.add_function(wrap_pyfunction!(crate::price::add_spend, m)?)?;
    Ok(())
}
