//! The price processor's per-span reading, in one call per batch: which spans are worth a
//! look and, for the common model call, what the inline path prices it from. The Python
//! equivalent (the fallback and the oracle) is `costctx.processors.price.calls.read_calls`;
//! every rule here is written there first, and the decisions (rates, arithmetic, stamps,
//! the general path) stay in Python.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::span_read::SpanRead;

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

/// A token count the inline path takes: an int (not a bool) in 0..2^63, as its value.
fn count(value: &Bound<'_, PyAny>) -> Option<i64> {
    if !value.is_exact_instance_of::<PyInt>() {
        return None;
    }
    value.extract::<i64>().ok().filter(|n| *n >= 0)
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
fn span_key<'py>(py: Python<'py>, span: &SpanRead<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
    if let Some((t, s)) = span.record_ids() {
        // read from its record: one bytes object, not one per id and the joined one
        if !SpanRead::valid_ids(t, s) {
            return Ok(None);
        }
        let mut joined = [0u8; 24];
        joined[..16].copy_from_slice(t);
        joined[16..].copy_from_slice(s);
        return Ok(Some(PyBytes::new(py, &joined)));
    }
    let trace = span.trace_id(py)?;
    let span_id = span.span_id(py)?;
    let (Ok(trace), Ok(span_id)) = (trace.cast::<PyBytes>(), span_id.cast::<PyBytes>()) else {
        return Ok(None);
    };
    let (t, s) = (trace.as_bytes(), span_id.as_bytes());
    if !SpanRead::valid_ids(t, s) {
        return Ok(None);
    }
    let mut joined = Vec::with_capacity(24);
    joined.extend_from_slice(t);
    joined.extend_from_slice(s);
    Ok(Some(PyBytes::new(py, &joined)))
}

/// One span as `read_calls` reads it: worth no look, the general path's, or an inline call.
#[allow(clippy::large_enum_variant)] // made once per span and matched at once: no box to allocate
enum Read<'py> {
    Skip,
    General(Bound<'py, PyAny>),
    Call(Call<'py>),
}

/// What the inline path prices a call from (read_calls' tuple, as Rust values where it computes).
struct Call<'py> {
    index: Bound<'py, PyAny>,
    span: SpanRead<'py>,
    names: Vec<Bound<'py, PyAny>>,
    counts: Vec<Bound<'py, PyAny>>,
    /// the counts' values, read once (read_calls took ints in 0..2^63 only)
    values: [i128; 5],
    reported: Bound<'py, PyAny>,
    workflow: Bound<'py, PyAny>,
    key: Bound<'py, PyAny>,
    at: Bound<'py, PyAny>,
    late: bool,
}

const TRIGGER: u32 = 1;
const GENERAL: u32 = 2;

/// read_calls' state for one batch: the keys, their roles, the clock.
struct Reader<'py> {
    keys: Keys<'py>,
    roles: crate::budget::KeyRoles,
    /// A lazy list's spans not made are read without their views (span_read.rs); else every
    /// span is read through its view.
    lazy: bool,
    /// Whether a call's counts are kept as objects (read_calls' tuple), not only as values.
    objects: bool,
    now: Bound<'py, PyAny>,
    now_ns: i128,
    tolerance: i128,
    none: Bound<'py, PyAny>,
}

impl<'py> Reader<'py> {
    fn new(
        py: Python<'py>,
        keys: &Bound<'py, PyTuple>,
        now: &Bound<'py, PyAny>,
        tolerance: i128,
        lazy: bool,
    ) -> PyResult<Self> {
        let keys = Keys {
            trigger: strings(&keys.get_item(0)?)?,
            general: strings(&keys.get_item(1)?)?,
            reported: keys.get_item(2)?.cast_into::<PyString>()?,
            counts: strings(&keys.get_item(3)?)?,
            names: strings(&keys.get_item(4)?)?,
            workflow: keys.get_item(5)?.cast_into::<PyString>()?,
        };
        let roles = crate::budget::KeyRoles::new(vec![
            crate::budget::KeyRoles::of(&keys.trigger)?,
            crate::budget::KeyRoles::of(&keys.general)?,
        ]);
        Ok(Reader {
            keys,
            roles,
            lazy,
            objects: !lazy, // read_calls reads views and gives objects; price_calls reads records
            now: now.clone(),
            now_ns: now.extract()?,
            tolerance,
            none: py.None().into_bound(py),
        })
    }

    fn read(&mut self, py: Python<'py>, spans: &Bound<'py, PyAny>, index: Bound<'py, PyAny>) -> PyResult<Read<'py>> {
        let keys = &self.keys;
        let none = &self.none;
        let at = index.extract::<usize>()?;
        let span = match self.lazy {
            true => SpanRead::of(py, spans, at)?,
            false => SpanRead::of_view(py, spans.get_item(at)?)?,
        };
        let attrs = &span.attrs;
        let mask = self.roles.mask(attrs)?;
        if mask & TRIGGER == 0 {
            return Ok(Read::Skip);
        }
        if mask & GENERAL != 0 {
            return Ok(Read::General(index));
        }
        let reported = match attrs.get_item(&keys.reported)? {
            Some(value) if reported_ok(&value)? => value,
            Some(_) => return Ok(Read::General(index)),
            None => none.clone(),
        };
        // input and output must be there; cache read, cache creation and reasoning are 0 when absent.
        // (their objects kept for read_calls' tuple only: price_calls reads `values`)
        let mut counts: Vec<Bound<'py, PyAny>> = Vec::with_capacity(if self.objects { 5 } else { 0 });
        let mut values = [0i128; 5];
        for (at, key) in keys.counts.iter().enumerate() {
            match attrs.get_item(key)? {
                Some(value) => match count(&value) {
                    Some(n) => {
                        values[at] = n as i128;
                        if self.objects {
                            counts.push(value);
                        }
                    }
                    None => return Ok(Read::General(index)),
                },
                None if at >= 2 => {
                    if self.objects {
                        counts.push(0i64.into_pyobject(py)?.into_any());
                    }
                }
                None => return Ok(Read::General(index)),
            }
        }
        let start = span.start(py)?;
        let start_ns: i128 = match start.extract::<u64>() {
            Ok(ns) => ns as i128, // a fixed64 on the wire: the common case, without a 128-bit conversion
            Err(_) => start.extract()?,
        };
        let late = (start_ns - self.now_ns).abs() > self.tolerance;
        let mut names = Vec::with_capacity(3);
        for key in &keys.names {
            names.push(attrs.get_item(key)?.unwrap_or_else(|| none.clone()));
        }
        let workflow = match attrs.get_item(&keys.workflow)? {
            Some(value)
                if value
                    .cast::<PyString>()
                    .is_ok_and(|s| s.is_exact_instance_of::<PyString>())
                    && value.len()? > 0 =>
            {
                value
            }
            _ => none.clone(),
        };
        let key = match span_key(py, &span)? {
            Some(joined) => joined.into_any(),
            None => none.clone(),
        };
        let at = if late { self.now.clone() } else { start };
        Ok(Read::Call(Call {
            index,
            span,
            names,
            counts,
            values,
            reported,
            workflow,
            key,
            at,
            late,
        }))
    }
}

/// See `costctx.processors.price.calls.read_calls` (same arguments, same result).
#[pyfunction]
pub fn read_calls<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    now: &Bound<'py, PyAny>,
    tolerance: i128,
    keys: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyList>> {
    let mut reader = Reader::new(py, keys, now, tolerance, false)?;
    let out = PyList::empty(py);
    for index in indices.try_iter()? {
        match reader.read(py, spans, index?)? {
            Read::Skip => {}
            Read::General(index) => out.append(index)?,
            Read::Call(call) => {
                let mut items: Vec<Bound<'py, PyAny>> = vec![
                    call.index,
                    call.span.attrs.into_any(),
                    PyTuple::new(py, call.names)?.into_any(),
                ];
                items.extend(call.counts);
                items.extend([
                    call.reported,
                    call.workflow,
                    call.key,
                    call.at,
                    pyo3::types::PyBool::new(py, call.late).to_owned().into_any(),
                ]);
                out.append(PyTuple::new(py, items)?)?;
            }
        }
    }
    Ok(out)
}

/// A rate entry (or None) with what pricing reads from it, read once.
struct Rate<'py> {
    rate: Option<Bound<'py, PyAny>>,
    rates: Option<[i128; 5]>,
    inclusive: bool,
    source: Option<Bound<'py, PyAny>>,
    lo: Bound<'py, PyAny>,
    hi: Bound<'py, PyAny>,
    bounds: Option<(i128, i128)>, // lo and hi when both are ints
    _names: Vec<Bound<'py, PyAny>>,
}

impl<'py> Rate<'py> {
    fn of(rate: Bound<'py, PyAny>, names: Vec<Bound<'py, PyAny>>) -> PyResult<Self> {
        let py = rate.py();
        if rate.is_none() {
            let none = py.None().into_bound(py);
            return Ok(Rate {
                rate: None,
                rates: None,
                inclusive: false,
                source: None,
                lo: none.clone(),
                hi: none,
                bounds: None,
                _names: names,
            });
        }
        let (lo, hi) = (rate.get_item(3)?, rate.get_item(4)?);
        let bounds = match (lo.extract::<i128>(), hi.extract::<i128>()) {
            (Ok(lo), Ok(hi)) => Some((lo, hi)),
            _ => None,
        };
        Ok(Rate {
            rates: rates_of(&rate)?,
            inclusive: rate.get_item(1)?.is_truthy()?,
            source: Some(rate.get_item(2)?),
            lo,
            hi,
            bounds,
            rate: Some(rate),
            _names: names,
        })
    }

    fn is_none(&self) -> bool {
        self.rate.is_none()
    }

    /// lo <= at < hi, as Python compares them.
    fn holds(&self, at: &Bound<'py, PyAny>, at_ns: i128) -> PyResult<bool> {
        match self.bounds {
            Some((lo, hi)) => Ok(lo <= at_ns && at_ns < hi),
            None => Ok(self.lo.le(at)? && at.lt(&self.hi)?),
        }
    }
}

/// A price time (an int, ns) as i128.
fn start_of(at: &Bound<'_, PyAny>) -> PyResult<i128> {
    match at.extract::<u64>() {
        Ok(ns) => Ok(ns as i128),
        Err(_) => at.extract(),
    }
}

/// A rate entry's five rates (pico-USD per token) as `processor._rate` orders them.
fn rates_of(rate: &Bound<'_, PyAny>) -> PyResult<Option<[i128; 5]>> {
    let items = rate.get_item(0)?;
    let mut out = [0i128; 5];
    for (at, slot) in out.iter_mut().enumerate() {
        let item = items.get_item(at)?;
        // i64 first: PyO3 converts 128-bit ints through a byte array, ~10x the cost.
        match item.extract::<i64>() {
            Ok(value) => *slot = value as i128,
            Err(_) => match item.extract::<i128>() {
                Ok(value) => *slot = value,
                Err(_) => return Ok(None),
            },
        }
    }
    Ok(Some(out))
}

/// pico / 10^12 as Python's int true division (correctly rounded): exact operands below 2^53.
fn usd_of<'py>(py: Python<'py>, pico: i128) -> PyResult<Bound<'py, PyAny>> {
    if pico.unsigned_abs() < (1u128 << 53) {
        return Ok(PyFloat::new(py, pico as f64 / 1e12).into_any());
    }
    let value = pico.into_pyobject(py)?;
    match value.call_method1(pyo3::intern!(py, "__truediv__"), (1_000_000_000_000i64,)) {
        Ok(usd) => Ok(usd),
        Err(err) if err.is_instance_of::<pyo3::exceptions::PyOverflowError>(py) => {
            Ok(PyFloat::new(py, f64::INFINITY).into_any())
        }
        Err(err) => Err(err),
    }
}

/// The inline price: calc.price_usage for counts that agree with the mode; None for the general
/// path (counts against the mode, or a sum past 128 bits).
fn inline_pico(rates: [i128; 5], inclusive: bool, counts: [i128; 5]) -> Option<i128> {
    let [input, output, cache_read, cache_creation, reasoning] = counts;
    let uncached = if inclusive {
        input - cache_read - cache_creation
    } else {
        input
    };
    if uncached < 0 || reasoning > output {
        return None;
    }
    let parts = [uncached, cache_read, cache_creation, output - reasoning, reasoning];
    let mut pico: i128 = 0;
    for (count, rate) in parts.iter().zip(rates.iter()) {
        pico = pico.checked_add(count.checked_mul(*rate)?)?;
    }
    Some(pico)
}

/// See `costctx.processors.price.calls.price_calls` (same arguments, same result).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn price_calls<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    now: &Bound<'py, PyAny>,
    tolerance: i128,
    keys: &Bound<'py, PyTuple>,
    rates: &Bound<'py, PyDict>,
    rate_of: &Bound<'py, PyAny>,
    general: &Bound<'py, PyAny>,
    reported_of: &Bound<'py, PyAny>,
    edits: &Bound<'py, PyDict>,
    span_edits: &Bound<'py, PyAny>,
    stamp_computed: &Bound<'py, PyAny>,
    stamp_reported: &Bound<'py, PyTuple>,
    cost_key: &Bound<'py, PyString>,
    stamp_slow: &Bound<'py, PyAny>,
    spend: &Bound<'py, PyList>,
    stamp_at: &Bound<'py, PyList>,
) -> PyResult<(i64, i64, i64, i64)> {
    let (mut computed, mut reported_count, mut untracked, mut outside) = (0i64, 0i64, 0i64, 0i64);
    // A lazy list's spans are read from their records, no view made (stamps kept for them).
    let mut reader = Reader::new(py, keys, now, tolerance, true)?;
    // Rate entries by the addresses of the three name objects (each entry holds them, so no
    // address is reused meanwhile): a batch's calls share a few interned names, and one dict
    // lookup per distinct set of objects serves them all. `rates` stays the source: a miss or
    // a period change asks it (rate_of), as the Python pass does per call.
    let mut known: HashMap<[usize; 3], Rate<'py>, crate::fxhash::FxBuild> = HashMap::default();
    // Read and priced span by span, in visiting order: the general path's callback for one
    // span runs before the next is read, as in the Python pass.
    for index in indices.try_iter()? {
        let call = match reader.read(py, spans, index?)? {
            Read::Skip => continue,
            Read::General(index) => {
                general.call1((index,))?;
                continue;
            }
            Read::Call(call) => call,
        };
        let Call {
            index,
            span,
            names,
            counts: _,
            values: counts,
            reported,
            workflow,
            key: span_key,
            at,
            late,
        } = call;
        let at_ns = if late { reader.now_ns } else { start_of(&at)? };
        let address: [usize; 3] = std::array::from_fn(|i| names[i].as_ptr() as usize);
        if let std::collections::hash_map::Entry::Vacant(e) = known.entry(address) {
            let tuple = PyTuple::new(py, &names)?.into_any();
            let found = match rates.get_item(&tuple) {
                Ok(Some(rate)) => rate,
                Ok(None) => rate_of.call1((&tuple, &at))?,
                Err(err) if err.is_instance_of::<pyo3::exceptions::PyTypeError>(py) => py.None().into_bound(py),
                Err(err) => return Err(err),
            };
            e.insert(Rate::of(found, names.clone())?);
        }
        let mut entry = known.get(&address).expect("inserted above");
        if !entry.is_none() && !entry.holds(&at, at_ns)? {
            let tuple = PyTuple::new(py, &names)?.into_any();
            known.insert(address, Rate::of(rate_of.call1((&tuple, &at))?, names.clone())?);
            entry = known.get(&address).expect("inserted above");
        }
        let Some(rate) = entry.rate.clone() else {
            general.call1((&index,))?;
            continue;
        };
        let pico = match entry.rates {
            Some(each) => inline_pico(each, entry.inclusive, counts),
            None => None,
        };
        let Some(pico) = pico else {
            general.call1((&index,))?;
            continue;
        };
        if late {
            outside += 1;
        }
        let (pico, stamps) = if reported.is_none() {
            let cost = PyTuple::new(py, [cost_key.clone().into_any(), usd_of(py, pico)?])?;
            let pico = match i64::try_from(pico) {
                Ok(small) => small.into_pyobject(py)?.into_any(),
                Err(_) => pico.into_pyobject(py)?.into_any(),
            };
            (
                pico,
                [
                    cost.into_any(),
                    entry.source.clone().expect("a rate has a source"),
                    stamp_computed.clone(),
                ],
            )
        } else {
            let estimate = match i64::try_from(pico) {
                Ok(small) => small.into_pyobject(py)?.into_any(),
                Err(_) => pico.into_pyobject(py)?.into_any(),
            };
            let answer = reported_of
                .call1((estimate, &reported, &rate))?
                .cast_into::<PyTuple>()?;
            let cost = PyTuple::new(py, [cost_key.clone().into_any(), answer.get_item(1)?])?;
            (
                answer.get_item(0)?,
                [
                    cost.into_any(),
                    stamp_reported.get_item(0)?,
                    stamp_reported.get_item(1)?,
                ],
            )
        };
        let span_edit = match edits.get_item(&index)? {
            Some(found) => found,
            None => {
                let made = span_edits.call0()?;
                edits.set_item(&index, &made)?;
                made
            }
        };
        let sets = if span_edit.getattr(pyo3::intern!(py, "replace"))?.is_none() {
            let sets = span_edit.getattr(pyo3::intern!(py, "sets"))?.cast_into::<PyList>()?;
            let mut pairs = Vec::with_capacity(3);
            for stamp in &stamps {
                sets.append(stamp)?;
                pairs.push(match stamp.cast::<PyTuple>() {
                    Ok(pair) => (pair.get_item(0)?, pair.get_item(1)?), // the usual: no generic indexing
                    Err(_) => (stamp.get_item(0)?, stamp.get_item(1)?),
                });
            }
            crate::span_read::write(spans, index.extract::<usize>()?, &span, &pairs)?;
            sets.into_any()
        } else {
            stamp_slow.call1((
                &index,
                stamps[0].get_item(1)?,
                stamps[1].get_item(1)?,
                stamps[2].get_item(1)?,
            ))?;
            py.None().into_bound(py)
        };
        if workflow.is_none() {
            untracked += 1;
            continue;
        }
        spend.append(PyTuple::new(py, [workflow, pico, span_key])?)?;
        // the attrs written later (stamp_totals): a made view's own, else None (the record's)
        let attrs = if span.made() {
            span.attrs.into_any()
        } else {
            py.None().into_bound(py)
        };
        stamp_at.append(PyTuple::new(py, [index, attrs, sets])?)?;
        if reported.is_none() {
            computed += 1;
        } else {
            reported_count += 1;
        }
    }
    Ok((computed, reported_count, untracked, outside))
}

/// See `costctx.processors.price.calls.stamp_totals` (same arguments, same result).
#[pyfunction]
#[pyo3(signature = (totals, stamp_at, key, stamp_slow, spans=None))]
pub fn stamp_totals<'py>(
    py: Python<'py>,
    totals: &Bound<'py, PyList>,
    stamp_at: &Bound<'py, PyList>,
    key: &Bound<'py, PyString>,
    stamp_slow: &Bound<'py, PyAny>,
    spans: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    if totals.len() != stamp_at.len() {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "totals and stamp_at differ in length",
        ));
    }
    for (total, entry) in totals.iter().zip(stamp_at.iter()) {
        let value = match total.extract::<i64>() {
            Ok(pico) => usd_of(py, pico as i128)?,
            Err(_) => match total.call_method1(pyo3::intern!(py, "__truediv__"), (1_000_000_000_000i64,)) {
                Ok(usd) => usd,
                Err(err) if err.is_instance_of::<pyo3::exceptions::PyOverflowError>(py) => {
                    PyFloat::new(py, f64::INFINITY).into_any()
                }
                Err(err) => return Err(err),
            },
        };
        let entry = entry.cast_into::<PyTuple>()?;
        let sets = entry.get_item(2)?;
        if sets.is_none() {
            stamp_slow.call1((entry.get_item(0)?, value))?;
        } else {
            sets.cast::<PyList>()?
                .append(PyTuple::new(py, [key.clone().into_any(), value.clone()])?)?;
            let attrs = entry.get_item(1)?;
            if attrs.is_none() {
                // a span read from its record (price_calls): kept for its view, none made
                let spans = spans
                    .ok_or_else(|| pyo3::exceptions::PyValueError::new_err("a span without attrs needs `spans`"))?;
                let list = spans.cast::<crate::view::SpanList>()?;
                list.get()
                    .set_attrs(py, entry.get_item(0)?.extract()?, &[(key.clone().into_any(), value)])?;
            } else {
                attrs.cast_into::<PyDict>()?.set_item(key, value)?;
            }
        }
    }
    Ok(())
}

/// `total + pico` as Python adds them: i64 when both fit and the sum does, else Python's int.
fn add_pico<'py>(total: &Bound<'py, PyAny>, pico: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if let (Ok(a), Ok(b)) = (total.extract::<i64>(), pico.extract::<i64>()) {
        if total.is_exact_instance_of::<PyInt>() && pico.is_exact_instance_of::<PyInt>() {
            if let Some(sum) = a.checked_add(b) {
                return Ok(sum.into_pyobject(total.py())?.into_any());
            }
        }
    }
    total.add(pico)
}

/// See `costctx.pricing.ledger.add_spend` (same arguments, same result).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn add_spend<'py>(
    py: Python<'py>,
    entries: &Bound<'py, PyList>,
    seen: Option<Bound<'py, PyAny>>, // a dict or the native SpanKeyTable (budget/seen.py): mapping ops only
    expiry: &Bound<'py, PyAny>,
    dedupe_size: usize,
    make_room: &Bound<'py, PyAny>,
    young: Bound<'py, PyDict>,
    old: Bound<'py, PyDict>,
    cap: usize,
    rotate: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyList>, usize)> {
    let seen = match &seen {
        Some(seen) => Some(crate::resend_key::Seen::of(seen, expiry)?),
        None => None,
    };
    let (mut young, mut old) = (young, old);
    let out = PyList::empty(py);
    let zero = 0i64.into_pyobject(py)?.into_any();
    let mut duplicates = 0usize;
    for entry in entries.iter() {
        let entry = entry.cast_into::<PyTuple>()?;
        let (workflow, pico, span_key) = (entry.get_item(0)?, entry.get_item(1)?, entry.get_item(2)?);
        if let Some(seen) = &seen {
            if !span_key.is_none() {
                // hash((workflow id, span key)), as the Python loop keys `seen`, without making
                // the tuple (resend_key.rs)
                let key = crate::resend_key::tuple_hash(&[workflow.hash()?, span_key.hash()?]);
                if seen.contains(key)? {
                    duplicates += 1;
                    let total = match young.get_item(&workflow)? {
                        Some(total) => total,
                        None => old.get_item(&workflow)?.unwrap_or_else(|| zero.clone()),
                    };
                    out.append(total)?;
                    continue;
                }
                if seen.len()? >= dedupe_size {
                    make_room.call0()?;
                }
                seen.add(key)?;
            }
        }
        let total = match young.get_item(&workflow)? {
            Some(total) => total,
            None => {
                // taken before a rotation drops the old generation
                let total = match old.get_item(&workflow)? {
                    Some(total) => {
                        old.del_item(&workflow)?;
                        total
                    }
                    None => zero.clone(),
                };
                if young.len() >= cap {
                    let pair = rotate.call0()?.cast_into::<PyTuple>()?;
                    young = pair.get_item(0)?.cast_into::<PyDict>()?;
                    old = pair.get_item(1)?.cast_into::<PyDict>()?;
                }
                total
            }
        };
        let total = add_pico(&total, &pico)?;
        young.set_item(&workflow, &total)?;
        out.append(total)?;
    }
    Ok((out, duplicates))
}
