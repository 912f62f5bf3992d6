//! The budget processor's per-span reading for a commit into the in-process store, in one call
//! per batch: model-call spans read, their resend keys tested and added, their amounts summed
//! per segment (envelope fields + UTC hour). The Python equivalent (the fallback and the
//! oracle) is `costctx.processors.budget.spend_read.read_spend`; every rule is written there
//! first, and the decisions (policies, the breaker, states) stay in Python.

use std::collections::HashMap;

use crate::fxhash::FxBuild;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// Which of some key lists each attribute key is in, by one walk of a span's attrs: each key
/// object's roles found once per call (a batch's keys are a few shared string objects) instead
/// of one dict probe per listed key per span. Addresses key the cache, and the cache holds a
/// reference to each key object it saw, so no address is reused by another object meanwhile.
pub(crate) struct KeyRoles {
    lists: Vec<Vec<String>>,
    cache: HashMap<usize, u32, FxBuild>, // addresses, not request content: Fx is safe here
    held: Vec<Py<PyAny>>,
}

impl KeyRoles {
    /// Bit i of a role: the key is in lists[i].
    pub(crate) fn new(lists: Vec<Vec<String>>) -> Self {
        KeyRoles {
            lists,
            cache: HashMap::default(),
            held: Vec::new(),
        }
    }

    pub(crate) fn of(keys: &[Bound<'_, PyString>]) -> PyResult<Vec<String>> {
        keys.iter().map(|key| Ok(key.to_str()?.to_owned())).collect()
    }

    /// The union of the roles of `attrs`' keys.
    pub(crate) fn mask(&mut self, attrs: &Bound<'_, PyDict>) -> PyResult<u32> {
        let py = attrs.py();
        let mut mask = 0;
        let mut missed: Option<PyResult<()>> = None;
        dict_items(attrs, |key, _| {
            let address = key as usize;
            mask |= match self.cache.get(&address) {
                Some(role) => *role,
                None => {
                    // SAFETY: `key` is a live key of `attrs` (borrowed), the GIL is held.
                    let key = unsafe { Bound::from_borrowed_ptr(py, key) };
                    match self.learn(&key) {
                        Ok(role) => role,
                        Err(err) => {
                            missed.get_or_insert(Err(err));
                            0
                        }
                    }
                }
            };
        });
        missed.unwrap_or(Ok(()))?;
        Ok(mask)
    }

    /// A key object's roles, found by its text and kept by its address.
    fn learn(&mut self, key: &Bound<'_, PyAny>) -> PyResult<u32> {
        let mut role = 0;
        if let Ok(text) = key.cast::<PyString>() {
            let text = text.to_str()?;
            for (bit, list) in self.lists.iter().enumerate() {
                if list.iter().any(|listed| listed == text) {
                    role |= 1 << bit;
                }
            }
        }
        self.cache.insert(key.as_ptr() as usize, role);
        self.held.push(key.clone().unbind());
        Ok(role)
    }
}

/// Each (key, value) of a dict as borrowed pointers: PyDict_Next directly, without the size
/// check and the two reference counts pyo3's iterator spends per item (a span's attrs hold
/// ~18 watched keys, walked by several processors). `each` must not run Python code that
/// could change the dict (it reads addresses and, rarely, a key's text).
pub(crate) fn dict_items(dict: &Bound<'_, PyDict>, mut each: impl FnMut(*mut ffi::PyObject, *mut ffi::PyObject)) {
    let mut position: ffi::Py_ssize_t = 0;
    let mut key: *mut ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: the GIL is held (a Bound), `dict` is a dict and stays alive; PyDict_Next gives
    // borrowed references, valid while the dict is not changed, which `each` does not do.
    while unsafe { ffi::PyDict_Next(dict.as_ptr(), &mut position, &mut key, &mut value) } != 0 {
        each(key, value);
    }
}

const MICRO: f64 = 1_000_000.0;
const MAX_USD: f64 = 1e9;
const MAX_TOKENS: i128 = 1_000_000_000_000;
const MAX_RESERVATION_ID: usize = 64;
const MAX_ENVELOPE_ID: usize = 256;

/// Python's float floor division `a // b` (Objects/floatobject.c float_floor_div), for b > 0.
fn float_floordiv(a: f64, b: f64) -> f64 {
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let mut floordiv = div.floor();
        if div - floordiv > 0.5 {
            floordiv += 1.0;
        }
        floordiv
    } else {
        0.0f64.copysign(a / b)
    }
}

/// costctx.budget.ids.valid_reservation_id: `[A-Za-z0-9_.-]{1,64}`, then optionally `~` and a tenant of at most
/// 256 characters with no control character.
fn valid_rid(value: &str) -> bool {
    let (rid, tenant) = match value.find('~') {
        Some(at) => (&value[..at], Some(&value[at + 1..])),
        None => (value, None),
    };
    if rid.is_empty()
        || rid.len() > MAX_RESERVATION_ID
        || !rid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return false;
    }
    match tenant {
        None => true,
        Some(t) => {
            !t.is_empty()
                && t.chars().count() <= MAX_ENVELOPE_ID
                && !t.chars().any(|ch| (ch as u32) < 0x20 || ch as u32 == 0x7f)
        }
    }
}

/// An exact int (not a bool) as i128 when it fits 64 bits; Err(()) past that; None for another kind.
fn int64(value: &Bound<'_, PyAny>) -> Result<Option<i128>, ()> {
    if !value.is_exact_instance_of::<PyInt>() {
        return Ok(None);
    }
    value.extract::<i64>().map(|n| Some(n as i128)).map_err(|_| ())
}

/// counters.spent_micro after the inline rule: round half to even, NaN or <= 0 is 0, at most MAX_USD.
fn micro_of(cost: f64) -> i64 {
    if 0.0 < cost && cost < MAX_USD {
        return (cost * MICRO).round_ties_even() as i64;
    }
    if cost.is_nan() || cost <= 0.0 {
        return 0;
    }
    (cost.min(MAX_USD) * MICRO).round_ties_even() as i64
}

struct Read<'py> {
    index: i64,
    span: crate::span_read::SpanRead<'py>,
    fields: Vec<Bound<'py, PyAny>>,
    micro: i64,
    tokens: i64,
    at: f64,
    start_ms: i64,
    rid: Option<Bound<'py, PyAny>>,
    skewed: bool,
}

struct Segment<'py> {
    fields: Vec<Bound<'py, PyAny>>,
    at: f64,
    cost: i64,
    tokens: i64,
    steps: i64,
    start: i64,
    last: i64,
    through: i64,
    spans: Vec<u8>,
    workflow: usize, // its workflow.id's slot in the batch's running sums
}

/// The five envelope fields' values (None when absent; each is a str or None).
fn texts(fields: &[Bound<'_, PyAny>]) -> PyResult<[Option<String>; 5]> {
    let mut text: [Option<String>; 5] = Default::default();
    for (at, value) in fields.iter().enumerate() {
        if let Ok(string) = value.cast::<PyString>() {
            text[at] = Some(string.to_str()?.to_owned());
        }
    }
    Ok(text)
}

fn is_str(value: &Bound<'_, PyAny>) -> bool {
    value.is_exact_instance_of::<PyString>()
}

/// One model-call span as spend_read._read reads it; None when the per-span path must take it.
#[allow(clippy::too_many_arguments)]
fn read_one<'py>(
    py: Python<'py>,
    span: crate::span_read::SpanRead<'py>,
    keys: &[Bound<'py, PyString>],
    now: f64,
    lo: f64,
    hi: f64,
    cap: i64,
) -> PyResult<Option<Read<'py>>> {
    let attrs = &span.attrs;
    let mut fields = Vec::with_capacity(5);
    for key in &keys[..5] {
        match attrs.get_item(key)? {
            None => fields.push(py.None().into_bound(py)),
            Some(value) if is_str(&value) => fields.push(value),
            Some(_) => return Ok(None),
        }
    }
    let cost = match attrs.get_item(&keys[5])? {
        Some(value) => {
            if let Ok(double) = value.cast_exact::<PyFloat>() {
                double.value()
            } else {
                match int64(&value) {
                    Ok(Some(n)) => n as i64 as f64,
                    Ok(None) => 0.0,
                    Err(()) => return Ok(None),
                }
            }
        }
        None => 0.0,
    };
    let mut tokens: i128 = 0;
    for key in &keys[6..8] {
        if let Some(value) = attrs.get_item(key)? {
            match int64(&value) {
                Ok(Some(n)) => tokens += n,
                Ok(None) => {}
                Err(()) => return Ok(None),
            }
        }
    }
    let micro = micro_of(cost);
    let tokens = tokens.clamp(0, MAX_TOKENS) as i64;
    let end_ns: u64 = span.end(py)?.extract()?;
    let start_ns: u64 = span.start(py)?.extract()?;
    let mut at = if end_ns != 0 { end_ns as f64 / 1e9 } else { now };
    let start_ms = if start_ns != 0 {
        (start_ns / 1_000_000) as i64
    } else {
        (now * 1000.0) as i64
    };
    let skewed = !(lo <= at && at <= hi);
    if skewed {
        at = if at < lo { lo } else { hi };
    }
    let rid = match attrs.get_item(&keys[8])? {
        Some(value) if is_str(&value) && value.len()? > 0 => Some(value),
        _ => None,
    };
    if micro > cap {
        return Ok(None);
    }
    if let Some(rid) = &rid {
        if !valid_rid(rid.cast::<PyString>()?.to_str()?) {
            return Ok(None);
        }
    }
    let at_ms = (at * 1000.0) as i64;
    let start_ms = start_ms.max(at_ms - 3_600_000).min(at_ms);
    Ok(Some(Read {
        index: 0,
        span,
        fields,
        micro,
        tokens,
        at,
        start_ms,
        rid,
        skewed,
    }))
}

/// trace id and span id when both are ids (16 and 8 bytes, not all zero).
fn ids<'py>(
    py: Python<'py>,
    span: &crate::span_read::SpanRead<'py>,
) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    let trace = span.trace_id(py)?;
    let span_id = span.span_id(py)?;
    {
        let (Ok(t), Ok(s)) = (trace.cast::<PyBytes>(), span_id.cast::<PyBytes>()) else {
            return Ok(None);
        };
        let (t, s) = (t.as_bytes(), s.as_bytes());
        if !crate::span_read::SpanRead::valid_ids(t, s) {
            return Ok(None);
        }
    }
    Ok(Some((trace, span_id)))
}

extern "C" {
    // hash(bytes) of a buffer (Include/cpython/pyhash.h): what bytes.__hash__ returns.
    fn _Py_HashBytes(src: *const std::ffi::c_void, len: pyo3::ffi::Py_ssize_t) -> pyo3::ffi::Py_hash_t;
}

/// hash(trace id), hash(span id) when both are ids (as `ids`): from a record's bytes without
/// making a bytes object for either, else through `ids`.
fn id_hashes(py: Python<'_>, span: &crate::span_read::SpanRead<'_>) -> PyResult<Option<(isize, isize)>> {
    let Some((t, s)) = span.record_ids() else {
        return match ids(py, span)? {
            Some((trace, span_id)) => Ok(Some((trace.hash()?, span_id.hash()?))),
            None => Ok(None),
        };
    };
    if !crate::span_read::SpanRead::valid_ids(t, s) {
        return Ok(None);
    }
    // SAFETY: reads `len` bytes of a live slice; CPython's hash of bytes needs no GIL state
    // beyond its hash secret, set at start-up (the GIL is held here anyway).
    let hash = |bytes: &[u8]| unsafe { _Py_HashBytes(bytes.as_ptr().cast(), bytes.len() as pyo3::ffi::Py_ssize_t) };
    Ok(Some((hash(t), hash(s))))
}

/// Whether a span's attrs hold any marker key: a few probes of hashed keys, cheaper than a
/// walk over its ~18 watched attrs when the markers are few (a model call's ~5).
fn is_call(attrs: &Bound<'_, PyDict>, markers: &[Bound<'_, PyString>]) -> PyResult<bool> {
    for marker in markers {
        if attrs.contains(marker)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// See `costctx.processors.budget.spend_read.read_spend` (same arguments, same result).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn read_spend<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    markers: &Bound<'py, PyAny>,
    keys: &Bound<'py, PyTuple>,
    now: f64,
    skew: f64,
    cap: i64,
    seen: &Bound<'py, PyAny>,
    expiry: &Bound<'py, PyAny>,
    maxsize: usize,
    make_room: &Bound<'py, PyAny>,
    want_finished: bool,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let keys: Vec<Bound<'py, PyString>> = keys
        .iter()
        .map(|key| key.cast_into::<PyString>().map_err(PyErr::from))
        .collect::<PyResult<_>>()?;
    let markers: Vec<Bound<'py, PyString>> = markers
        .try_iter()?
        .map(|key| Ok(key?.cast_into::<PyString>()?))
        .collect::<PyResult<_>>()?;
    let seen = crate::resend_key::Seen::of(seen, expiry)?;
    let (lo, hi) = (now - skew, now + skew);
    let finished = PyList::empty(py);
    let mut read: Vec<Read<'py>> = Vec::new();
    // A lazy list's spans not made are read without their views (span_read.rs).
    for index in indices.try_iter()? {
        let index = index?.extract::<usize>()?;
        let span = crate::span_read::SpanRead::of(py, spans, index)?;
        let attrs = span.attrs.clone();
        if want_finished && span.is_root(py)? {
            if let Some(workflow_id) = attrs.get_item(&keys[0])? {
                if is_str(&workflow_id) && workflow_id.len()? > 0 {
                    finished.append(workflow_id)?;
                }
            }
        }
        if !is_call(&attrs, &markers)? {
            continue; // not a model call
        }
        match read_one(py, span, &keys, now, lo, hi, cap)? {
            Some(record) => read.push(Read {
                index: index as i64,
                ..record
            }),
            None => return Ok(None),
        }
    }
    let mut segments: Vec<Segment<'py>> = Vec::new();
    // Segments by the fields' objects (the codec interns a batch's strings: the common hit),
    // then by their values (equal strings in distinct objects); workflow ids by value.
    let mut by_object: HashMap<([usize; 5], i64), usize, FxBuild> = HashMap::default();
    let mut by_value: HashMap<([Option<String>; 5], i64), usize> = HashMap::new();
    let mut workflows: HashMap<Option<String>, usize> = HashMap::new();
    let mut through: Vec<i64> = Vec::new();
    let releases = PyList::empty(py);
    let (mut duplicates, mut skewed, mut position) = (0i64, 0i64, 0i64);
    // By reference: every field object stays alive while its address keys `by_object`.
    for record in &read {
        skewed += record.skewed as i64;
        if let Some((trace, span_id)) = id_hashes(py, &record.span)? {
            let rid = match &record.rid {
                Some(rid) => rid.clone(),
                None => py.None().into_bound(py),
            };
            // hash((trace id, span id, micro, tokens, rid)), as the per-span path keys `seen`
            // (budget/seen.py), without making the tuple (resend_key.rs)
            let lanes = [
                trace,
                span_id,
                crate::resend_key::int_hash(record.micro),
                crate::resend_key::int_hash(record.tokens),
                rid.hash()?,
            ];
            let key = crate::resend_key::tuple_hash(&lanes);
            if seen.contains(key)? {
                duplicates += 1;
                continue;
            }
            if seen.len()? >= maxsize {
                make_room.call0()?;
            }
            seen.add(key)?;
        }
        let hour = float_floordiv(record.at, 3600.0) as i64;
        let objects = (std::array::from_fn(|i| record.fields[i].as_ptr() as usize), hour);
        let number = match by_object.get(&objects) {
            Some(number) => *number,
            None => {
                let text = texts(&record.fields)?;
                let workflow_id = text[0].clone();
                let number = match by_value.get(&(text.clone(), hour)) {
                    Some(number) => *number,
                    None => {
                        let number = segments.len();
                        by_value.insert((text, hour), number);
                        let slots = workflows.len();
                        let workflow = *workflows.entry(workflow_id).or_insert(slots);
                        if workflow == through.len() {
                            through.push(0);
                        }
                        segments.push(Segment {
                            fields: record.fields.clone(),
                            at: record.at,
                            cost: 0,
                            tokens: 0,
                            steps: 0,
                            start: record.start_ms,
                            last: 0,
                            through: 0,
                            spans: Vec::new(),
                            workflow,
                        });
                        number
                    }
                };
                by_object.insert(objects, number);
                number
            }
        };
        let segment = &mut segments[number];
        let spent = &mut through[segment.workflow];
        *spent += record.micro;
        segment.cost += record.micro;
        segment.tokens += record.tokens;
        segment.steps += 1;
        segment.last = position;
        segment.through = *spent;
        segment.spans.extend_from_slice(&position.to_ne_bytes());
        segment.spans.extend_from_slice(&record.micro.to_ne_bytes());
        segment.spans.extend_from_slice(&record.tokens.to_ne_bytes());
        segment.spans.extend_from_slice(&record.index.to_ne_bytes());
        if let Some(rid) = &record.rid {
            releases.append(PyTuple::new(py, [rid.clone(), number.into_pyobject(py)?.into_any()])?)?;
        }
        position += 1;
    }
    let out = PyList::empty(py);
    for s in segments {
        let items: Vec<Bound<'py, PyAny>> = vec![
            PyTuple::new(py, s.fields)?.into_any(),
            s.at.into_pyobject(py)?.into_any(),
            s.cost.into_pyobject(py)?.into_any(),
            s.tokens.into_pyobject(py)?.into_any(),
            s.steps.into_pyobject(py)?.into_any(),
            s.start.into_pyobject(py)?.into_any(),
            s.last.into_pyobject(py)?.into_any(),
            s.through.into_pyobject(py)?.into_any(),
            PyBytes::new(py, &s.spans).into_any(),
        ];
        out.append(PyTuple::new(py, items)?)?;
    }
    let result = PyTuple::new(
        py,
        [
            out.into_any(),
            releases.into_any(),
            finished.into_any(),
            duplicates.into_pyobject(py)?.into_any(),
            skewed.into_pyobject(py)?.into_any(),
        ],
    )?;
    Ok(Some(result))
}

/// See `costctx.processors.budget.spend_read.read_roots` (same arguments, same result): the
/// native codec's lazy span list read from its records where no view is made.
#[pyfunction]
pub fn read_roots<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    key: &Bound<'py, PyString>,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    let Ok(list) = spans.cast::<crate::view::SpanList>() else {
        for index in indices.try_iter()? {
            let span = spans.get_item(index?)?;
            if span.getattr(pyo3::intern!(py, "parent_span_id"))?.is_truthy()? {
                continue;
            }
            let attrs = span.getattr(pyo3::intern!(py, "attrs"))?.cast_into::<PyDict>()?;
            if let Some(workflow_id) = attrs.get_item(key)? {
                if is_str(&workflow_id) && workflow_id.len()? > 0 {
                    out.append(workflow_id)?;
                }
            }
        }
        return Ok(out);
    };
    let text = key.to_str()?;
    let mut reading = crate::view::Reading::new(py, list.get());
    for index in indices.try_iter()? {
        let source = reading.span(index?.extract::<usize>()?)?;
        if !source.is_root(py)? {
            continue;
        }
        match source {
            crate::view::Source::Dict { attrs, .. } => {
                if let Some(workflow_id) = attrs.get_item(key)? {
                    if is_str(&workflow_id) && workflow_id.len()? > 0 {
                        out.append(workflow_id)?;
                    }
                }
            }
            crate::view::Source::Record {
                rec, keys, mut maker, ..
            } => {
                let found = crate::view::last_attr(py, rec, keys, text);
                if let Some(value @ crate::scan::Value::Str(range)) = found {
                    if range.len > 0 {
                        out.append(maker.value(value)?)?;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `a + b` of two Python ints: in i64 when both fit and the sum does, else by Python's int
/// (unbounded, as the oracle's `+`).
fn int_add<'py>(a: &Bound<'py, PyAny>, b: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if let (Ok(x), Ok(y)) = (a.extract::<i64>(), b.extract::<i64>()) {
        if let Some(sum) = x.checked_add(y) {
            return Ok(sum.into_pyobject(a.py())?.into_any());
        }
    }
    a.add(b)
}

/// The loop of `costctx.budget.memory.MemoryStore.apply_sums` over its sums (the Python loop
/// there, `_add_sums`, is its oracle: same counters, expiries, touch order per TTL and
/// evictions): each key's list added to its counter in `counters` (a list of the fields'
/// values in the places of costctx.budget.counters.FIELDS, None where absent: usd, tok, steps,
/// start first), made when absent as the sums after the TTL (`evict()` called when that passes
/// `max_keys`), its expiry and place at the end of its TTL's touch order set.
/// -> key -> counter, in sums' order.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn add_list_sums<'py>(
    py: Python<'py>,
    counters: &Bound<'py, PyDict>,
    expires: &Bound<'py, PyDict>,
    by_ttl: &Bound<'py, PyDict>,
    sums: &Bound<'py, PyDict>,
    now: f64,
    max_keys: usize,
    evict: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let after = PyDict::new(py);
    // one expiry float per TTL, shared by the batch's keys of that TTL (as the Python loop)
    let mut expiry_of: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = Vec::new();
    for (key, add) in sums.iter() {
        let add = add.cast_into::<PyList>()?;
        let places = add.len() - 1;
        let counter = match counters.get_item(&key)? {
            None => {
                let counter = add.get_slice(1, add.len());
                // Holds ints (and None) only, ever: no cycle can pass through it, so the cyclic
                // GC need not walk it (a dict of ints was never tracked; a list is until told).
                // SAFETY: a live list of ours; PyObject_GC_UnTrack is idempotent, and list_dealloc
                // calls it again safely.
                unsafe { pyo3::ffi::PyObject_GC_UnTrack(counter.as_ptr().cast()) };
                counters.set_item(&key, &counter)?;
                if counters.len() > max_keys {
                    evict.call0()?;
                }
                counter
            }
            Some(counter) => {
                let counter = counter.cast_into::<PyList>()?;
                while counter.len() < places {
                    counter.append(py.None())?; // made by a check with fewer fields
                }
                for place in 0..places.min(3) {
                    let was = counter.get_item(place)?;
                    let amount = add.get_item(place + 1)?;
                    let value = if was.is_none() { amount } else { int_add(&was, &amount)? };
                    counter.set_item(place, value)?;
                }
                if places > 3 && counter.get_item(3)?.is_none() {
                    counter.set_item(3, add.get_item(4)?)?;
                }
                counter
            }
        };
        let ttl = add.get_item(0)?;
        if ttl.is_truthy()? {
            let mut expiry = None;
            for (known, value) in &expiry_of {
                if known.eq(&ttl)? {
                    expiry = Some(value.clone());
                    break;
                }
            }
            let expiry = match expiry {
                Some(expiry) => expiry,
                None => {
                    let value = now.into_pyobject(py)?.into_any().add(ttl.div(1000.0f64)?)?;
                    expiry_of.push((ttl.clone(), value.clone()));
                    value
                }
            };
            expires.set_item(&key, &expiry)?;
            let order = match by_ttl.get_item(&ttl)? {
                Some(order) => order.cast_into::<PyDict>()?,
                None => {
                    let order = PyDict::new(py);
                    by_ttl.set_item(&ttl, &order)?;
                    order
                }
            };
            if order.contains(&key)? {
                order.del_item(&key)?;
            }
            order.set_item(&key, &expiry)?; // touched last: at the end
        }
        after.set_item(&key, counter)?;
    }
    Ok(after)
}
