//! The native view's spans, built lazily: `SpanList` holds the scanned records (Layout) and
//! makes the api.py `SpanView` of a span only when something asks for that span, once (the
//! same object afterwards, so edits to its `attrs` stay). A processor that decides per group
//! or per batch (normalize, limits) reads the records' columns instead and no view object is
//! made for its spans; a span nobody looks at never gets one.
//!
//! Python sees a read-only sequence: len, [i] (negative too), slices (a list), iteration,
//! ==, + (a list). `extend_with` appends another scan's spans in place, sharing the views
//! already made (NativeCodec.appended); `column(name)` reads one field of
//! every span (a made view's own value when it exists: a processor may have changed it, e.g.
//! ViewBatch.replace).

use std::collections::HashMap;
use std::sync::Mutex;

use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyList, PyRange, PySlice, PyString, PyTuple};

use crate::fxhash::FxBuild;
use crate::kinds::{canonical, kind_letter};
use crate::python::Layout;
use crate::scan::{Span32, SpanRec, Value};

/// The api.py classes and constants a view is made of.
pub(crate) struct Classes {
    pub span_cls: Py<PyAny>,
    pub kvlist_cls: Py<PyAny>,
    pub empty: Py<PyAny>,
}

impl Classes {
    fn clone_ref(&self, py: Python<'_>) -> Classes {
        Classes {
            span_cls: self.span_cls.clone_ref(py),
            kvlist_cls: self.kvlist_cls.clone_ref(py),
            empty: self.empty.clone_ref(py),
        }
    }
}

/// One scanned request's spans in the list: its layout, where its spans start in the list,
/// and how far its resource and scope indices are shifted (a view appended to another).
struct Segment {
    layout: Py<Layout>,
    first: usize,
    resource_shift: usize,
    scope_shift: usize,
    /// Per segment (the watched key ids are its layout's): SpanView.signature by key mask,
    /// SpanView.kinds by (key id, kind letter) pairs.
    signatures: HashMap<u64, Py<PyFrozenSet>>,
    kinds: HashMap<Vec<u32>, Py<PyString>>,
}

/// Changes to the attrs of spans whose view is not made yet (`edit_attrs`), applied in order
/// when it is: renames (the value moved to the new key), deletes, sets (a list copied).
#[derive(Default)]
struct AttrOp {
    renames: Vec<(Py<PyAny>, Py<PyAny>)>,
    deletes: Vec<Py<PyAny>>,
    sets: Vec<(Py<PyAny>, Py<PyAny>)>,
}

impl AttrOp {
    fn apply(&self, py: Python<'_>, attrs: &Bound<'_, PyDict>) -> PyResult<()> {
        for (old, new) in &self.renames {
            if let Some(value) = attrs.get_item(old.bind(py))? {
                attrs.del_item(old.bind(py))?;
                attrs.set_item(new.bind(py), value)?;
            }
        }
        for key in &self.deletes {
            if attrs.contains(key.bind(py))? {
                attrs.del_item(key.bind(py))?;
            }
        }
        for (key, value) in &self.sets {
            let value = value.bind(py);
            match value.cast::<PyList>() {
                Ok(list) => attrs.set_item(key.bind(py), PyList::new(py, list.iter())?)?,
                Err(_) => attrs.set_item(key.bind(py), value)?,
            }
        }
        Ok(())
    }
}

/// Span `i`'s attrs as its view would have them now, no view made, when it has pending
/// `edit_attrs` changes (None when it has none): its record's watched keys in a dict with the
/// changes applied, kept in `edited` with how many it holds, so a later reader of the same
/// span applies only the changes made since (readers only read it).
fn edited_attrs<'py>(
    py: Python<'py>,
    classes: &Classes,
    segments: &[Segment],
    pending: &HashMap<usize, Vec<std::sync::Arc<AttrOp>>, FxBuild>,
    edited: &mut HashMap<usize, (Py<PyDict>, usize), FxBuild>,
    strings: &mut HashMap<Vec<u8>, Py<PyString>>,
    i: usize,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(ops) = pending.get(&i) else {
        return Ok(None);
    };
    let (dict, applied) = match edited.get(&i) {
        Some((dict, applied)) => (dict.bind(py).clone(), *applied),
        None => {
            let s = segments.partition_point(|seg| seg.first <= i) - 1;
            let segment = &segments[s];
            let layout = segment.layout.bind(py).get();
            let rec = &layout.scan.spans[i - segment.first];
            let mut maker = Maker {
                py,
                classes,
                raw: layout.raw.bind(py).as_bytes(),
                strings,
            };
            let dict = maker.attrs_of(&rec.attrs, &layout.prepared.keys)?;
            edited.insert(i, (dict.clone().unbind(), 0));
            (dict, 0)
        }
    };
    if applied < ops.len() {
        for op in &ops[applied..] {
            op.apply(py, &dict)?;
        }
        if let Some(entry) = edited.get_mut(&i) {
            entry.1 = ops.len();
        }
    }
    Ok(Some(dict))
}

struct State {
    segments: Vec<Segment>,
    made: Vec<Option<Py<PyAny>>>,
    /// Per span not made yet: the attrs changes to apply when it is.
    pending: HashMap<usize, Vec<std::sync::Arc<AttrOp>>, FxBuild>,
    /// Per span with pending changes that a reader read (`edited_attrs`), or that a native
    /// pass read to write to (`Reading::span_kept`): its attrs as the view would have them, and
    /// how many of its pending changes they hold. Kept, so the next reader applies only the
    /// changes since, not all of them to a new dict.
    edited: HashMap<usize, (Py<PyDict>, usize), FxBuild>,
    /// One str object per distinct string, across segments (content-keyed: SipHash, as the
    /// bytes come off the network).
    strings: HashMap<Vec<u8>, Py<PyString>>,
}

#[pyclass(frozen, sequence)]
pub struct SpanList {
    classes: Classes,
    state: Mutex<State>,
    /// Shared by every span without watched keys on its events (most).
    no_event_keys: Py<PyFrozenSet>,
}

impl SpanList {
    pub(crate) fn new(py: Python<'_>, classes: &Classes, layout: Py<Layout>) -> SpanList {
        let count = layout.get().scan.spans.len();
        let segment = Segment {
            layout,
            first: 0,
            resource_shift: 0,
            scope_shift: 0,
            signatures: HashMap::new(),
            kinds: HashMap::new(),
        };
        SpanList {
            classes: classes.clone_ref(py),
            state: Mutex::new(State {
                segments: vec![segment],
                made: (0..count).map(|_| None).collect(),
                pending: HashMap::default(),
                edited: HashMap::default(),
                strings: HashMap::new(),
            }),
            no_event_keys: PyFrozenSet::empty(py)
                .map(|s| s.unbind())
                .unwrap_or_else(|_| unreachable!()),
        }
    }

    /// The state, waiting (if ever: one batch is one thread's) with the interpreter released,
    /// so a thread holding the lock while making a view can always finish.
    fn lock(&self, py: Python<'_>) -> std::sync::MutexGuard<'_, State> {
        self.state.lock_py_attached(py).unwrap_or_else(|e| e.into_inner())
    }

    fn index(&self, index: isize, len: usize) -> PyResult<usize> {
        let at = if index < 0 { index + len as isize } else { index };
        if at < 0 || at as usize >= len {
            return Err(PyIndexError::new_err("span index out of range"));
        }
        Ok(at as usize)
    }

    /// The view of span `i`, made now if nobody asked for it before.
    fn get<'py>(&self, py: Python<'py>, state: &mut State, i: usize) -> PyResult<Bound<'py, PyAny>> {
        if let Some(found) = &state.made[i] {
            return Ok(found.bind(py).clone());
        }
        let made = self.make(py, state, i)?;
        if let Some(ops) = if state.pending.is_empty() {
            None
        } else {
            state.pending.remove(&i)
        } {
            match state.edited.remove(&i) {
                // A reader made its attrs already: they become the view's, the rest applied.
                Some((attrs, applied)) => {
                    let attrs = attrs.bind(py);
                    for op in &ops[applied..] {
                        op.apply(py, attrs)?;
                    }
                    made.setattr(pyo3::intern!(py, "attrs"), attrs)?;
                }
                None => {
                    let attrs = made.getattr(pyo3::intern!(py, "attrs"))?;
                    let attrs = attrs.cast::<PyDict>()?;
                    for op in ops {
                        op.apply(py, attrs)?;
                    }
                }
            }
        }
        state.made[i] = Some(made.clone().unbind());
        Ok(made)
    }

    fn segment_of(state: &State, i: usize) -> usize {
        state.segments.partition_point(|s| s.first <= i) - 1
    }

    fn make<'py>(&self, py: Python<'py>, state: &mut State, i: usize) -> PyResult<Bound<'py, PyAny>> {
        let s = Self::segment_of(state, i);
        let State { segments, strings, .. } = state;
        let segment = &mut segments[s];
        let layout = segment.layout.bind(py).get();
        let raw = layout.raw.bind(py).as_bytes();
        let rec: &SpanRec = &layout.scan.spans[i - segment.first];
        let prepared = &layout.prepared;
        let mut made = Maker {
            py,
            classes: &self.classes,
            raw,
            strings,
        };
        let dict = made.attrs_of(&rec.attrs, &prepared.keys)?;
        let mut mask: u64 = 0;
        let mut wide = false;
        for (id, _) in &rec.attrs {
            if *id < 64 {
                mask |= 1 << id;
            } else {
                wide = true;
            }
        }
        let signature = if wide {
            PyFrozenSet::new(py, dict.keys().iter())?
        } else if let Some(found) = segment.signatures.get(&mask) {
            found.bind(py).clone()
        } else {
            let set = PyFrozenSet::new(py, dict.keys().iter())?;
            segment.signatures.insert(mask, set.clone().unbind());
            set
        };
        let links = if rec.links.is_empty() {
            PyTuple::empty(py)
        } else {
            let mut pairs = Vec::with_capacity(rec.links.len());
            for (trace_id, span_id) in &rec.links {
                pairs.push(PyTuple::new(py, [made.bytes(*trace_id), made.bytes(*span_id)])?);
            }
            PyTuple::new(py, pairs)?
        };
        let event_keys = match rec.event_keys.is_empty() {
            true => self.no_event_keys.bind(py).clone(),
            false => PyFrozenSet::new(py, rec.event_keys.iter().map(|id| prepared.keys[*id as usize].bind(py)))?,
        };
        let kinds = match rec.repeated {
            true => py.None().into_bound(py),
            false => kinds_of(py, &mut segment.kinds, &prepared.bytes, &rec.attrs).into_any(),
        };
        let args = PyTuple::new(
            py,
            [
                made.bytes(rec.trace_id).into_any(),
                made.bytes(rec.span_id).into_any(),
                made.bytes(rec.parent_span_id).into_any(),
                rec.start.into_pyobject(py)?.into_any(),
                rec.end.into_pyobject(py)?.into_any(),
                (rec.resource as usize + segment.resource_shift)
                    .into_pyobject(py)?
                    .into_any(),
                (rec.scope as usize + segment.scope_shift).into_pyobject(py)?.into_any(),
                dict.into_any(),
                rec.attr_count.into_pyobject(py)?.into_any(),
                links.into_any(),
                rec.event_count.into_pyobject(py)?.into_any(),
                signature.into_any(),
                rec.body.len.into_pyobject(py)?.into_any(),
                event_keys.into_any(),
                PyBool::new(py, rec.repeated).to_owned().into_any(),
                rec.kind.into_pyobject(py)?.into_any(),
                kinds,
            ],
        )?;
        self.classes.span_cls.bind(py).call1(args)
    }

    /// Per span, in order: a made view's attribute `name`, else `read` of its scanned record.
    fn read_column<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        read: impl Fn(&Layout, &Segment, &SpanRec) -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let state = self.lock(py);
        let attr = PyString::new(py, name);
        let out = PyList::empty(py);
        let mut s = 0;
        for (i, view) in state.made.iter().enumerate() {
            if let Some(view) = view {
                out.append(view.bind(py).getattr(&attr)?)?;
                continue;
            }
            while s + 1 < state.segments.len() && state.segments[s + 1].first <= i {
                s += 1;
            }
            let segment = &state.segments[s];
            let layout = segment.layout.bind(py).get();
            out.append(read(layout, segment, &layout.scan.spans[i - segment.first])?)?;
        }
        Ok(out)
    }

    /// `set_attrs(i, sets)` for a list of (key, value) pairs (inherit's kernel), written now
    /// into the dict later readers and the view share when span `i` has one kept up to date
    /// (State.edited, read by `Reading::span_kept`): dict.update's own loop, the values as
    /// they are (as a made view's attrs take them), the change counted as applied. Else as
    /// `set_attrs`.
    pub(crate) fn update_attrs(&self, py: Python<'_>, i: usize, sets: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut state = self.lock(py);
        let len = state.made.len();
        let at = self.index(i as isize, len)?;
        let state = &mut *state;
        if let Some(view) = &state.made[at] {
            let attrs = view.bind(py).getattr(pyo3::intern!(py, "attrs"))?;
            return merge_pairs(attrs.cast::<PyDict>()?, sets);
        }
        if write_kept(py, state, at, |dict| merge_pairs(dict, sets))? {
            return Ok(());
        }
        let mut op = AttrOp::default();
        for pair in sets.try_iter()? {
            let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
            op.sets.push((key.unbind(), value.unbind()));
        }
        edit_span(py, state, at, &std::sync::Arc::new(op))
    }

    /// `attrs[key] = value` for each pair on span `i` (one `edit_attrs` of sets): now on its
    /// view when made, else when it is (crate::span_read::write, for native passes).
    pub(crate) fn set_attrs(
        &self,
        py: Python<'_>,
        i: usize,
        pairs: &[(Bound<'_, PyAny>, Bound<'_, PyAny>)],
    ) -> PyResult<()> {
        let mut state = self.lock(py);
        let len = state.made.len();
        let at = self.index(i as isize, len)?;
        let state = &mut *state;
        // A span a native pass read to write to (Reading::span_kept: price's stamps) has its
        // kept dict up to date: written now, as update_attrs does, not an op of its own (a
        // vector and a reference per pair) applied to that same dict by the next reader.
        let written = write_kept(py, state, at, |dict| {
            for (key, value) in pairs {
                match value.cast::<PyList>() {
                    Ok(list) => dict.set_item(key, PyList::new(py, list.iter())?)?, // as AttrOp::apply
                    Err(_) => dict.set_item(key, value)?,
                }
            }
            Ok(())
        })?;
        if written {
            return Ok(());
        }
        let op = AttrOp {
            renames: Vec::new(),
            deletes: Vec::new(),
            sets: pairs
                .iter()
                .map(|(k, v)| (k.clone().unbind(), v.clone().unbind()))
                .collect(),
        };
        edit_span(py, state, at, &std::sync::Arc::new(op))
    }

    fn all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut state = self.lock(py);
        let out = PyList::empty(py);
        for i in 0..state.made.len() {
            out.append(self.get(py, &mut state, i)?)?;
        }
        Ok(out)
    }
}

/// SpanView.kinds (crate::kinds), one object per form within `cache` (a segment, or a scan).
pub(crate) fn kinds_of<'py>(
    py: Python<'py>,
    cache: &mut HashMap<Vec<u32>, Py<PyString>>,
    keys: &[Vec<u8>],
    attrs: &[(u16, Value)],
) -> Bound<'py, PyString> {
    // The lookup key on the stack for the usual few watched keys: no allocation on a hit.
    let mut small = [0u32; 32];
    let spilled: Vec<u32>;
    let compact: &[u32] = if attrs.len() <= small.len() {
        for (slot, (id, v)) in small.iter_mut().zip(attrs) {
            *slot = (*id as u32) << 8 | kind_letter(v) as u32;
        }
        &small[..attrs.len()]
    } else {
        spilled = attrs
            .iter()
            .map(|(id, v)| (*id as u32) << 8 | kind_letter(v) as u32)
            .collect();
        &spilled
    };
    if let Some(found) = cache.get(compact) {
        return found.bind(py).clone();
    }
    let mut pairs: Vec<(&[u8], u8)> = attrs
        .iter()
        .map(|(id, v)| (keys[*id as usize].as_slice(), kind_letter(v)))
        .collect();
    let text = canonical(&mut pairs);
    let made = PyString::new(py, std::str::from_utf8(&text).unwrap_or(""));
    cache.insert(compact.to_vec(), made.clone().unbind());
    made
}

/// Python objects of one segment's values (strings interned across the list).
pub(crate) struct Maker<'a, 'py> {
    py: Python<'py>,
    classes: &'a Classes,
    raw: &'a [u8],
    strings: &'a mut HashMap<Vec<u8>, Py<PyString>>,
}

impl<'py> Maker<'_, 'py> {
    fn string(&mut self, range: Span32) -> Bound<'py, PyString> {
        let bytes = range.get(self.raw);
        if let Some(found) = self.strings.get(bytes) {
            return found.bind(self.py).clone();
        }
        let made = PyString::new(self.py, std::str::from_utf8(bytes).unwrap_or("")); // UTF-8 checked by the scan
        self.strings.insert(bytes.to_vec(), made.clone().unbind());
        made
    }

    fn bytes(&self, range: Span32) -> Bound<'py, PyBytes> {
        PyBytes::new(self.py, range.get(self.raw))
    }

    /// A record's attrs as its view's dict: each key (the batch's interned `keys`) to its
    /// value, in record order (a repeated key's last occurrence stands).
    fn attrs_of(&mut self, attrs: &[(u16, Value)], keys: &[Py<PyString>]) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(self.py);
        self.fill(&dict, attrs, keys)
    }

    /// `attrs_of` in a dict made with room for `room` keys more (no resize while they are
    /// added: a dict made empty resizes as it grows past 5, 10, 21 keys).
    fn attrs_with_room(
        &mut self,
        attrs: &[(u16, Value)],
        keys: &[Py<PyString>],
        room: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        // SAFETY: a new reference or NULL with the error set.
        let dict = unsafe {
            Bound::from_owned_ptr_or_err(
                self.py,
                _PyDict_NewPresized((attrs.len() + room) as pyo3::ffi::Py_ssize_t),
            )?
        };
        self.fill(dict.cast::<PyDict>()?, attrs, keys)
    }

    fn fill(
        &mut self,
        dict: &Bound<'py, PyDict>,
        attrs: &[(u16, Value)],
        keys: &[Py<PyString>],
    ) -> PyResult<Bound<'py, PyDict>> {
        for (id, value) in attrs {
            dict.set_item(keys[*id as usize].bind(self.py), self.value(value)?)?;
        }
        Ok(dict.clone())
    }

    pub(crate) fn value(&mut self, value: &Value) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        Ok(match value {
            Value::Empty => self.classes.empty.bind(py).clone(),
            Value::Str(range) => self.string(*range).into_any(),
            Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
            Value::Int(i) | Value::StrIndex(i) => i.into_pyobject(py)?.into_any(),
            Value::Double(f) => PyFloat::new(py, *f).into_any(),
            Value::Bytes(range) => self.bytes(*range).into_any(),
            Value::Array(items) => {
                let list = PyList::empty(py);
                for item in items.iter() {
                    list.append(self.value(item)?)?;
                }
                list.into_any()
            }
            Value::KvList(pairs) => {
                let mut converted = Vec::with_capacity(pairs.len());
                for (key, item) in pairs.iter() {
                    let key = self.string(*key).into_any();
                    let item = self.value(item)?;
                    converted.push(PyTuple::new(py, [key, item])?);
                }
                self.classes
                    .kvlist_cls
                    .bind(py)
                    .call1((PyTuple::new(py, converted)?,))?
            }
        })
    }
}

/// A field `column` reads: from a made view by attribute, else from the record.
fn record_field(rec: &SpanRec, segment: &Segment, name: &str) -> Option<u64> {
    Some(match name {
        "resource" => rec.resource as u64 + segment.resource_shift as u64,
        "scope" => rec.scope as u64 + segment.scope_shift as u64,
        "size" => rec.body.len as u64,
        "attr_count" => rec.attr_count as u64,
        "event_count" => rec.event_count as u64,
        "start" => rec.start,
        "end" => rec.end,
        _ => return None,
    })
}

/// An id field `bytes_column` reads from the record (a made view's attribute otherwise).
fn record_id(rec: &SpanRec, name: &str) -> Option<Span32> {
    Some(match name {
        "trace_id" => rec.trace_id,
        "span_id" => rec.span_id,
        "parent_span_id" => rec.parent_span_id,
        _ => return None,
    })
}

/// The op that marks a change written into a span's kept dict already (no allocation: one
/// shared empty op).
fn applied_op() -> std::sync::Arc<AttrOp> {
    static EMPTY: std::sync::OnceLock<std::sync::Arc<AttrOp>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| std::sync::Arc::new(AttrOp::default())).clone()
}

/// `write` into span `at`'s kept dict (State.edited) when its view is not made and the dict
/// holds every pending change (true): the change is counted as applied, an `applied_op` kept
/// pending so readers still find the dict through it. False, nothing written, otherwise (the
/// caller keeps the change as an op of its own). SpanList's set_attrs and update_attrs.
fn write_kept(
    py: Python<'_>,
    state: &mut State,
    at: usize,
    write: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>,
) -> PyResult<bool> {
    if state.made[at].is_some() {
        return Ok(false);
    }
    let done = state.pending.get(&at).map_or(0, |ops| ops.len());
    let Some((dict, applied)) = state.edited.get_mut(&at) else {
        return Ok(false);
    };
    if *applied != done {
        return Ok(false);
    }
    write(dict.bind(py))?;
    state.pending.entry(at).or_default().push(applied_op());
    *applied = done + 1;
    Ok(true)
}

/// `op` on span `at`: into its made view's attrs at once, else kept pending for its view and
/// for column readers.
fn edit_span(py: Python<'_>, state: &mut State, at: usize, op: &std::sync::Arc<AttrOp>) -> PyResult<()> {
    match &state.made[at] {
        Some(view) => {
            let attrs = view.bind(py).getattr(pyo3::intern!(py, "attrs"))?;
            op.apply(py, attrs.cast::<PyDict>()?)
        }
        None => {
            state.pending.entry(at).or_default().push(op.clone());
            Ok(())
        }
    }
}

/// Keys a kept dict (Reading::span_kept) has room for beyond its record's.
const KEPT_ROOM: usize = 10;

extern "C" {
    // CPython's dict made for `minused` keys (Include/cpython/dictobject.h; pyo3-ffi skips it).
    fn _PyDict_NewPresized(minused: pyo3::ffi::Py_ssize_t) -> *mut pyo3::ffi::PyObject;
}

/// `attrs.update(pairs)` for a sequence of (key, value) pairs (PyDict_MergeFromSeq2).
fn merge_pairs(attrs: &Bound<'_, PyDict>, pairs: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: both are live objects held by the caller; the call borrows them.
    if unsafe { pyo3::ffi::PyDict_MergeFromSeq2(attrs.as_ptr(), pairs.as_ptr(), 1) } < 0 {
        return Err(PyErr::fetch(attrs.py()));
    }
    Ok(())
}

/// Whether an attrs dict holds any of `keys`.
fn holds_any(attrs: &Bound<'_, PyDict>, keys: &[Bound<'_, PyString>]) -> PyResult<bool> {
    for key in keys {
        if attrs.contains(key)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A scanned record's value of the attribute named `text` (the last occurrence stands, as in
/// the view's attrs); `keys` the batch's interned attribute keys.
pub(crate) fn last_attr<'a>(
    py: Python<'_>,
    rec: &'a SpanRec,
    keys: &[Py<PyString>],
    text: &str,
) -> Option<&'a crate::scan::Value> {
    rec.attrs
        .iter()
        .rev()
        .find(|(id, _)| keys[*id as usize].bind(py).to_str().is_ok_and(|k| k == text))
        .map(|(_, value)| value)
}

/// What a native reader reads of one span, no view made: the attrs of its view (made) or a
/// scratch dict (pending `edit_attrs` changes applied, as the view would have them), else
/// its scanned record, whose values the reader converts only where it needs objects.
pub(crate) enum Source<'a, 'py> {
    Dict {
        attrs: Bound<'py, PyDict>,
        view: Option<Bound<'py, PyAny>>,
        rec: &'a SpanRec,
        raw: &'a [u8],
        resource: usize,
    },
    Record {
        rec: &'a SpanRec,
        keys: &'a [Py<PyString>],
        maker: Maker<'a, 'py>,
        raw: &'a [u8],
        resource: usize,
    },
}

impl<'py> Source<'_, 'py> {
    /// Whether the span has no parent (a made view's own parent_span_id).
    pub(crate) fn is_root(&self, py: Python<'py>) -> PyResult<bool> {
        match self {
            Source::Dict { view: Some(view), .. } => {
                Ok(!view.getattr(pyo3::intern!(py, "parent_span_id"))?.is_truthy()?)
            }
            Source::Dict { rec, .. } | Source::Record { rec, .. } => Ok(rec.parent_span_id.len == 0),
        }
    }

    /// The span's trace id (a made view's own value).
    pub(crate) fn trace_id(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Source::Dict { view: Some(view), .. } => view.getattr(pyo3::intern!(py, "trace_id")),
            Source::Dict { rec, raw, .. } | Source::Record { rec, raw, .. } => {
                Ok(PyBytes::new(py, rec.trace_id.get(raw)).into_any())
            }
        }
    }

    /// The span's resource, start and end from its record: a made view's are its record's
    /// (views are made from it and nothing writes these three), read without attribute lookups.
    pub(crate) fn fields(&self) -> (usize, i128, i128) {
        match self {
            Source::Dict { rec, resource, .. } | Source::Record { rec, resource, .. } => {
                (*resource, rec.start as i128, rec.end as i128)
            }
        }
    }
}

/// A native reader's hold on the list for one call: spans read one by one, no view made.
pub(crate) struct Reading<'a, 'py> {
    py: Python<'py>,
    list: &'a SpanList,
    state: std::sync::MutexGuard<'a, State>,
}

impl<'a, 'py> Reading<'a, 'py> {
    pub(crate) fn new(py: Python<'py>, list: &'a SpanList) -> Self {
        Reading {
            py,
            list,
            state: list.lock(py),
        }
    }

    /// Span `i` to read (see Source).
    pub(crate) fn span(&mut self, i: usize) -> PyResult<Source<'_, 'py>> {
        self.read(i, false)
    }

    /// Span `i` to read as a dict (a made view's attrs, else its attrs as the view would have
    /// them, made now from its record where it has no pending changes and kept in
    /// State.edited): for a native pass that writes to the span next (`set_attrs`), so a later
    /// reader applies those changes to this dict instead of making another.
    pub(crate) fn span_kept(&mut self, i: usize) -> PyResult<Source<'_, 'py>> {
        self.read(i, true)
    }

    fn read(&mut self, i: usize, keep: bool) -> PyResult<Source<'_, 'py>> {
        let py = self.py;
        if i >= self.state.made.len() {
            return Err(PyIndexError::new_err("span index out of range"));
        }
        let State {
            segments,
            made,
            pending,
            edited,
            strings,
        } = &mut *self.state;
        let s = segments.partition_point(|seg| seg.first <= i) - 1;
        let segment = &segments[s];
        let layout: &Layout = segment.layout.get();
        let rec = &layout.scan.spans[i - segment.first];
        let resource = rec.resource as usize + segment.resource_shift;
        let raw: &[u8] = layout.raw.as_bytes(py);
        if let Some(view) = &made[i] {
            let view = view.bind(py).clone();
            let attrs = view.getattr(pyo3::intern!(py, "attrs"))?.cast_into::<PyDict>()?;
            return Ok(Source::Dict {
                attrs,
                view: Some(view),
                rec,
                raw,
                resource,
            });
        }
        if let Some(attrs) = edited_attrs(py, &self.list.classes, segments, pending, edited, strings, i)? {
            return Ok(Source::Dict {
                attrs,
                view: None,
                rec,
                raw,
                resource,
            });
        }
        if keep {
            let attrs = match edited.get(&i) {
                Some((attrs, _)) => attrs.bind(py).clone(), // made from the record, no change since
                None => {
                    let mut maker = Maker {
                        py,
                        classes: &self.list.classes,
                        raw,
                        strings,
                    };
                    // room for the keys the pass writes next (inherit's kernel adds ~8 to
                    // a repaired span): no resize on its write
                    let attrs = maker.attrs_with_room(&rec.attrs, &layout.prepared.keys, KEPT_ROOM)?;
                    edited.insert(i, (attrs.clone().unbind(), 0));
                    attrs
                }
            };
            return Ok(Source::Dict {
                attrs,
                view: None,
                rec,
                raw,
                resource,
            });
        }
        let maker = Maker {
            py,
            classes: &self.list.classes,
            raw,
            strings,
        };
        Ok(Source::Record {
            rec,
            keys: &layout.prepared.keys,
            maker,
            raw,
            resource,
        })
    }
}

#[pymethods]
impl SpanList {
    fn __len__(&self, py: Python<'_>) -> usize {
        self.lock(py).made.len()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(slice) = key.cast::<PySlice>() {
            return self.all(py)?.into_any().get_item(slice);
        }
        let index: isize = key
            .extract()
            .map_err(|_| PyTypeError::new_err("span indices must be integers or slices"))?;
        let mut state = self.lock(py);
        let len = state.made.len();
        let at = self.index(index, len)?;
        self.get(py, &mut state, at)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.all(py)?.try_iter()?.into_any())
    }

    fn __eq__<'py>(&self, py: Python<'py>, other: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let mine = self.all(py)?;
        if let Ok(other) = other.cast::<SpanList>() {
            return Ok(mine.eq(other.get().all(py)?)?.into_pyobject(py)?.to_owned().into_any());
        }
        if other.is_instance_of::<PyList>() || other.is_instance_of::<PyTuple>() {
            let other = PyList::new(py, other.try_iter()?.collect::<PyResult<Vec<_>>>()?)?;
            return Ok(mine.eq(other)?.into_pyobject(py)?.to_owned().into_any());
        }
        Ok(py.NotImplemented().into_bound(py))
    }

    fn __add__<'py>(&self, py: Python<'py>, other: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let mine = self.all(py)?;
        let other: Bound<'py, PyAny> = match other.cast::<SpanList>() {
            Ok(list) => list.get().all(py)?.into_any(),
            Err(_) => other.clone(),
        };
        mine.into_any().add(other)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = self.lock(py);
        let made = state.made.iter().filter(|m| m.is_some()).count();
        format!("<SpanList of {} spans, {} made>", state.made.len(), made)
    }

    /// `other`'s spans (a list from another scan) appended to this list's, their resource and
    /// scope indices shifted by `resources` and `scopes` (NativeCodec.appended, inherit's
    /// released spans; the view this list belonged to is spent). Nothing of this list is
    /// copied: its made views, pending changes, read attrs and strings stay where they are.
    /// `other`'s made views are shared (their indices shifted now), its read attrs copied, and
    /// `other` is otherwise left as it was made.
    fn extend_with(
        &self,
        py: Python<'_>,
        other: &Bound<'_, SpanList>,
        resources: usize,
        scopes: usize,
    ) -> PyResult<()> {
        if std::ptr::eq(self, other.get()) {
            return Err(PyValueError::new_err("a span list cannot be extended with itself"));
        }
        let mut mine = self.lock(py);
        let theirs = other.get().lock(py);
        let start = mine.made.len();
        let state = &mut *mine;
        for s in &theirs.segments {
            state.segments.push(Segment {
                layout: s.layout.clone_ref(py),
                first: start + s.first,
                resource_shift: s.resource_shift + resources,
                scope_shift: s.scope_shift + scopes,
                signatures: s.signatures.iter().map(|(k, v)| (*k, v.clone_ref(py))).collect(),
                kinds: s.kinds.iter().map(|(k, v)| (k.clone(), v.clone_ref(py))).collect(),
            });
        }
        let (resource_name, scope_name) = (pyo3::intern!(py, "resource"), pyo3::intern!(py, "scope"));
        state.made.reserve(theirs.made.len());
        for view in &theirs.made {
            state.made.push(match view {
                None => None,
                Some(view) => {
                    let view = view.bind(py);
                    let resource: usize = view.getattr(resource_name)?.extract()?;
                    let scope: usize = view.getattr(scope_name)?.extract()?;
                    view.setattr(resource_name, resource + resources)?;
                    view.setattr(scope_name, scope + scopes)?;
                    Some(view.clone().unbind())
                }
            });
        }
        for (i, ops) in &theirs.pending {
            state.pending.insert(start + i, ops.clone());
        }
        for (i, (attrs, applied)) in &theirs.edited {
            // copied: `other`'s spans change on their own from here
            state
                .edited
                .insert(start + i, (attrs.bind(py).copy()?.unbind(), *applied));
        }
        for (k, v) in &theirs.strings {
            if !state.strings.contains_key(k) {
                state.strings.insert(k.clone(), v.clone_ref(py));
            }
        }
        Ok(())
    }

    /// One int field of every span, in order: resource, scope, size, attr_count,
    /// event_count, start, end or kind. A span whose view was made reads the view's (current) value.
    fn column<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyList>> {
        self.read_column(py, name, |_, segment, rec| {
            if name == "kind" {
                return Ok(rec.kind.into_pyobject(py)?.into_any()); // an int32 enum: may be negative
            }
            let value =
                record_field(rec, segment, name).ok_or_else(|| PyValueError::new_err(format!("no column {name:?}")))?;
            Ok(value.into_pyobject(py)?.into_any())
        })
    }

    /// One id field of every span, in order: trace_id, span_id or parent_span_id, as bytes.
    /// A span whose view was made reads the view's value.
    fn bytes_column<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyList>> {
        self.read_column(py, name, |layout, _, rec| {
            let range = record_id(rec, name).ok_or_else(|| PyValueError::new_err(format!("no id column {name:?}")))?;
            Ok(PyBytes::new(py, range.get(layout.raw.bind(py).as_bytes())).into_any())
        })
    }

    /// Per span, in order, a tuple of the current values of `keys` (watched keys; None where
    /// absent), as `tuple(map(view.attrs.get, keys))` would give, without making views: a made
    /// view is read as is; a span with pending `edit_attrs` changes has them applied to a
    /// scratch dict first, so earlier processors' edits are seen exactly as a view would.
    fn attr_values<'py>(&self, py: Python<'py>, keys: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyList>> {
        let len = self.lock(py).made.len();
        self.values_at(py, PyRange::new(py, 0, len as isize)?.as_any(), keys)
    }

    /// The same change to the attrs of every span at `indices` (api.py `edit_attrs`): now on
    /// the views already made, and on the others when they are made. A rename moves the value
    /// of a key present to its new key, a delete drops a key present, a set stores the value
    /// (a list copied per span); keys absent are left alone.
    fn edit_attrs(
        &self,
        py: Python<'_>,
        indices: &Bound<'_, PyAny>,
        renames: &Bound<'_, PyAny>,
        deletes: &Bound<'_, PyAny>,
        sets: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let mut op = AttrOp::default();
        for pair in renames.try_iter()? {
            let (old, new): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
            op.renames.push((old.unbind(), new.unbind()));
        }
        for key in deletes.try_iter()? {
            op.deletes.push(key?.unbind());
        }
        for pair in sets.try_iter()? {
            let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
            op.sets.push((key.unbind(), value.unbind()));
        }
        let op = std::sync::Arc::new(op);
        let mut state = self.lock(py);
        let len = state.made.len();
        for index in indices.try_iter()? {
            let at = self.index(index?.extract::<isize>()?, len)?;
            edit_span(py, &mut state, at, &op)?;
        }
        Ok(())
    }

    /// Of `indices` (in their order), the spans whose attrs hold any of `keys` (api.py
    /// `spans_having`), as a view would have them now: a made view's own attrs, else the
    /// record's watched keys with pending `edit_attrs` applied. No view is made.
    fn having<'py>(
        &self,
        py: Python<'py>,
        indices: &Bound<'py, PyAny>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let keys: Vec<Bound<'py, PyString>> = keys
            .try_iter()?
            .map(|key| Ok(key?.cast_into::<PyString>()?))
            .collect::<PyResult<_>>()?;
        let mut state = self.lock(py);
        let len = state.made.len();
        // Per segment: which of its key ids are among `keys` (ids index its layout's keys).
        let mut wanted: Vec<Vec<bool>> = Vec::with_capacity(state.segments.len());
        for segment in &state.segments {
            let prepared = &segment.layout.bind(py).get().prepared;
            let mut marks = vec![false; prepared.bytes.len()];
            for (id, text) in prepared.bytes.iter().enumerate() {
                for key in &keys {
                    if key.to_str()?.as_bytes() == text.as_slice() {
                        marks[id] = true;
                    }
                }
            }
            wanted.push(marks);
        }
        let out = PyList::empty(py);
        for index in indices.try_iter()? {
            let index = index?;
            let at = self.index(index.extract::<isize>()?, len)?;
            let found = match &state.made[at] {
                Some(view) => {
                    let attrs = view.bind(py).getattr(pyo3::intern!(py, "attrs"))?;
                    holds_any(attrs.cast::<PyDict>()?, &keys)?
                }
                None => {
                    let State {
                        segments,
                        pending,
                        edited,
                        strings,
                        ..
                    } = &mut *state;
                    // With pending changes: the keys of its attrs as the view would have them.
                    match edited_attrs(py, &self.classes, segments, pending, edited, strings, at)? {
                        Some(attrs) => holds_any(&attrs, &keys)?,
                        None => {
                            let s = segments.partition_point(|seg| seg.first <= at) - 1;
                            let segment = &segments[s];
                            let layout = segment.layout.bind(py).get();
                            let rec = &layout.scan.spans[at - segment.first];
                            rec.attrs.iter().any(|(id, _)| wanted[s][*id as usize])
                        }
                    }
                }
            };
            if found {
                out.append(index)?;
            }
        }
        Ok(out)
    }

    /// `attr_values` for the spans at `indices` only, in their order (api.py `attr_values_at`):
    /// the rows of the few spans a processor looks at (model calls), no view made.
    fn values_at<'py>(
        &self,
        py: Python<'py>,
        indices: &Bound<'py, PyAny>,
        keys: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut state = self.lock(py);
        let len = state.made.len();
        let wanted: Vec<Bound<'py, PyString>> = keys
            .iter()
            .map(|k| k.cast_into::<PyString>().map_err(PyErr::from))
            .collect::<PyResult<_>>()?;
        let wanted_bytes: Vec<Vec<u8>> = wanted
            .iter()
            .map(|k| k.to_str().map(|t| t.as_bytes().to_vec()))
            .collect::<PyResult<_>>()?;
        let none = py.None().into_bound(py);
        let out = PyList::empty(py);
        let State {
            segments,
            made,
            pending,
            edited,
            strings,
        } = &mut *state;
        // Per segment met: key id -> its place in `keys`.
        let mut places: HashMap<usize, Vec<Option<usize>>, FxBuild> = HashMap::default();
        let mut values: Vec<Option<Bound<'py, PyAny>>> = Vec::with_capacity(wanted.len());
        for index in indices.try_iter()? {
            let i = self.index(index?.extract::<isize>()?, len)?;
            if let Some(view) = &made[i] {
                let attrs = view.bind(py).getattr(pyo3::intern!(py, "attrs"))?;
                let attrs = attrs.cast::<PyDict>()?;
                let mut row = Vec::with_capacity(wanted.len());
                for key in &wanted {
                    row.push(attrs.get_item(key)?.unwrap_or_else(|| none.clone()));
                }
                out.append(PyTuple::new(py, row)?)?;
                continue;
            }
            // Renames may move any key onto a wanted one: its attrs as the view would have them.
            if let Some(dict) = edited_attrs(py, &self.classes, segments, pending, edited, strings, i)? {
                let mut row = Vec::with_capacity(wanted.len());
                for key in &wanted {
                    row.push(dict.get_item(key)?.unwrap_or_else(|| none.clone()));
                }
                out.append(PyTuple::new(py, row)?)?;
                continue;
            }
            let s = segments.partition_point(|seg| seg.first <= i) - 1;
            let segment = &segments[s];
            let layout = segment.layout.bind(py).get();
            let place = places.entry(s).or_insert_with(|| {
                layout
                    .prepared
                    .bytes
                    .iter()
                    .map(|b| wanted_bytes.iter().position(|w| w == b))
                    .collect()
            });
            let rec = &layout.scan.spans[i - segment.first];
            let mut maker = Maker {
                py,
                classes: &self.classes,
                raw: layout.raw.bind(py).as_bytes(),
                strings,
            };
            values.clear();
            values.resize(wanted.len(), None);
            for (id, value) in &rec.attrs {
                if let Some(Some(at)) = place.get(*id as usize) {
                    values[*at] = Some(maker.value(value)?); // a repeated key: the last stands
                }
            }
            let row = values.drain(..).map(|v| v.unwrap_or_else(|| none.clone()));
            out.append(PyTuple::new(py, row)?)?;
        }
        Ok(out)
    }

    /// Every span's view (made now where not yet) as a plain list, in order.
    fn to_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.all(py)
    }

    /// How many spans have a view made (for tests and the benchmarks: spans nobody read).
    fn made_count(&self, py: Python<'_>) -> usize {
        self.lock(py).made.iter().filter(|m| m.is_some()).count()
    }
}
