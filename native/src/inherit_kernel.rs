//! inherit's per-span decision for the common path, run natively over a level of a batch
//! (`InheritProcessor.process_view`): `list_level` makes the level's entries (spans alone,
//! pairs and units of spans alike) as Python's `list_level` does, and `run` decides them in
//! order, stopping at the first span it cannot decide exactly. Python then handles that entry
//! with its own path (`one` / `_decide_rest`, unchanged: the oracle) and calls `run` again from
//! the next one, so every side effect (trace votes, puts into the ancestor table, `here`, the
//! hold's cascade, the tally, the registry's learning list, edits and notes) happens in
//! exactly the order it does in Python.
//!
//! A span is decided here when: its parent is known (found by the listing: in the batch, the
//! table or the registry) or it has none and lacks no required field, its own fields are
//! strings (or absent) and comparable (`own_key`), it carries no `costctx.repaired` /
//! `workflow.hop_depth` stamp, no held span waits for it (nor for any span of its unit), and
//! either its decision is shared already (`_Tally.shared`) or its plan (`_plans`) needs no
//! trace fallback. It then does, operation for operation on the same Python objects, what
//! `one` -> `_resolve` -> `_decide_by_plan` and `_apply` (a unit: `_decide_rest` and
//! `_apply_group`) do; each step below names the Python lines it mirrors. Policy stays in
//! Python: plans and resources' values are made there (`_plan`, `_use_resource`, called back
//! when an unseen shape or resource comes). What it saves is the interpreter (frames, bytecode,
//! attribute lookups), not the objects: the decisions are the same Python objects as before.

use pyo3::basic::CompareOp;
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFrozenSet, PyList, PyString, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

use std::collections::HashMap;

use crate::ancestors::AncestorTable;
use crate::fxhash::FxBuild;
use crate::inherit_votes::TraceVotes;
use crate::slots::SlotLayout;

/// What one batch's decisions write into (set by `begin`, dropped by `end`).
struct Batch {
    tally: Py<PyAny>,
    shared: Py<PyDict>,
    conflicts: Py<PyDict>, // a Counter: a dict subclass
    repaired: Py<PyDict>,  // a Counter
    here: Py<PyDict>,
    put: Py<PyAny>,
    put_many: Py<PyAny>,
    record: Py<PyAny>,
    waiters: Py<PyDict>,
    learning: Py<PyList>,
    edits: Py<PyDict>,
    batch_edits: Py<PyAny>,
    notes: Py<PyDict>,
    batch: Py<PyAny>,
    resources: Py<PyAny>,
    bulk: bool,
    /// The native ancestor table and trace votes behind `put` / `put_many` / `record` (their
    /// bound methods), called as Rust: no Python call per span. None: another implementation
    /// (the Python classes), called through the callables.
    table: Option<Py<AncestorTable>>,
    votes: Option<Py<TraceVotes>>,
    // batch.view.spans: a lazy list (its spans read by index, no view made; entries carry None
    // for the span) or a list of views
    spans: Py<PyAny>,
    lazy: bool,
    /// A lazy list's spans read in this batch (list_level reads each, `one` and `unit` read it
    /// again): what the kernel reads of one, read once, by index (a batch's indices are
    /// dense: a slot per index, no hashing, the batch's reads side by side).
    reads: std::sync::Mutex<Vec<Option<Cached>>>,
    /// The fresh decisions' `tally.repaired[bump] += 1` and `tally.conflicts[field] += 1`,
    /// counted here and added into the Counters once, at `end` (read only at `_flush`, after
    /// it): no tuple hashed, no int made per decision.
    counts: std::sync::Mutex<Counts>,
    /// The (field, value) pairs fresh decisions took from a parent, by (its fields dict, the
    /// plan's `from_parent` tuple; 0: all its fields): children of one parent decided apart
    /// (their own fields differ) take the same pair objects (tuples: never changed), not
    /// one tuple per field per child. For the batch (at most one entry per decision).
    pairs: std::sync::Mutex<HashMap<(usize, usize), ParentPairs, FxBuild>>,
}

/// A parent's pairs (`Batch::pairs`), with the dict and tuple whose addresses key them (held:
/// the addresses stay their own).
struct ParentPairs {
    fields: Py<PyDict>,
    from: Option<Py<PyTuple>>,
    pairs: Vec<Py<PyAny>>,
}

/// Counts by key object (its address: the key is held, so the address stays its own), in
/// the order first counted.
#[derive(Default)]
struct Counts {
    repaired: KeyCounts,
    conflicts: KeyCounts,
}

#[derive(Default)]
struct KeyCounts {
    at: HashMap<usize, usize, FxBuild>,
    counts: Vec<(Py<PyAny>, u64)>,
}

impl KeyCounts {
    fn bump(&mut self, key: &Bound<'_, PyAny>) {
        let address = key.as_ptr() as usize;
        match self.at.get(&address) {
            Some(&at) => self.counts[at].1 += 1,
            None => {
                self.at.insert(address, self.counts.len());
                self.counts.push((key.clone().unbind(), 1));
            }
        }
    }

    /// `counter[key] += count` for each, in the order first counted (equal keys under other
    /// objects add into one entry, as `+=` does); emptied.
    fn add_into(&mut self, counter: &Bound<'_, PyDict>) -> PyResult<()> {
        self.at.clear();
        for (key, count) in self.counts.drain(..) {
            let key = key.bind(counter.py());
            let total = match counter.get_item(key)? {
                Some(found) => found.add(count)?,
                None => count.into_pyobject(counter.py())?.into_any(),
            };
            counter.set_item(key, total)?;
        }
        Ok(())
    }
}

/// The lock's contents if it is free now (a poisoned lock's too), else None.
fn tried<T>(lock: &std::sync::Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match lock.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

impl Batch {
    fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.tally)?;
        visit.call(&self.shared)?;
        visit.call(&self.conflicts)?;
        visit.call(&self.repaired)?;
        visit.call(&self.here)?;
        visit.call(&self.put)?;
        visit.call(&self.put_many)?;
        visit.call(&self.record)?;
        visit.call(&self.waiters)?;
        visit.call(&self.learning)?;
        visit.call(&self.edits)?;
        visit.call(&self.batch_edits)?;
        visit.call(&self.notes)?;
        visit.call(&self.batch)?;
        visit.call(&self.resources)?;
        if let Some(table) = &self.table {
            visit.call(table)?;
        }
        if let Some(votes) = &self.votes {
            visit.call(votes)?;
        }
        visit.call(&self.spans)?;
        // The locks are tried, not waited on: a collection can start inside `run` while it holds
        // one (at any allocation), and waiting here would freeze the thread for good. What is
        // skipped is only not reported as referenced this time: the GC then keeps it alive.
        if let Some(reads) = tried(&self.reads) {
            for read in reads.iter().flatten() {
                visit.call(&read.attrs)?;
                visit.call(&read.trace_id)?;
                visit.call(&read.span_id)?;
            }
        }
        if let Some(counts) = tried(&self.counts) {
            for (key, _) in counts.repaired.counts.iter().chain(&counts.conflicts.counts) {
                visit.call(key)?;
            }
        }
        if let Some(pairs) = tried(&self.pairs) {
            for held in pairs.values() {
                visit.call(&held.fields)?;
                if let Some(from) = &held.from {
                    visit.call(from)?;
                }
                for pair in &held.pairs {
                    visit.call(pair)?;
                }
            }
        }
        Ok(())
    }

    /// `[(f, fields[f]) for f in from_parent]` (None: `list(fields.items())`) onto `out`: the
    /// pairs made for this dict and tuple earlier in the batch, else made now and kept.
    fn parent_pairs<'py>(
        &self,
        py: Python<'py>,
        fields: &Bound<'py, PyDict>,
        from: Option<&Bound<'py, PyTuple>>,
        out: &mut Vec<Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        let key = (fields.as_ptr() as usize, from.map_or(0, |from| from.as_ptr() as usize));
        if let Some(held) = self.pairs.lock().unwrap().get(&key) {
            out.extend(held.pairs.iter().map(|pair| pair.bind(py).clone()));
            return Ok(());
        }
        let start = out.len();
        match from {
            Some(from) => {
                for field in from.iter() {
                    let value = fields.as_any().get_item(&field)?;
                    out.push(PyTuple::new(py, [field, value])?.into_any());
                }
            }
            None => {
                for (field, value) in fields.iter() {
                    out.push(PyTuple::new(py, [field, value])?.into_any());
                }
            }
        }
        let held = ParentPairs {
            fields: fields.clone().unbind(),
            from: from.map(|from| from.clone().unbind()),
            pairs: out[start..].iter().map(|pair| pair.clone().unbind()).collect(),
        };
        self.pairs.lock().unwrap().insert(key, held);
        Ok(())
    }

    /// `put(key, known)`: the table's put_known, natively when it is the native table.
    fn put(&self, py: Python<'_>, key: &Bound<'_, PyAny>, known: &Bound<'_, PyAny>) -> PyResult<()> {
        match &self.table {
            Some(table) => table
                .bind(py)
                .try_borrow_mut()?
                .put_known(py, key.cast::<PyBytes>()?, known),
            None => self.put.bind(py).call1((key, known)).map(drop),
        }
    }

    /// `put_many(keys, known)`, natively when the table is the native one.
    fn put_many(&self, py: Python<'_>, keys: &Bound<'_, PyList>, known: &Bound<'_, PyAny>) -> PyResult<()> {
        match &self.table {
            Some(table) => table.bind(py).try_borrow_mut()?.put_many_known(py, keys, known),
            None => self.put_many.bind(py).call1((keys, known)).map(drop),
        }
    }

    /// `record(trace_id, field, value, count)`: a trace's vote, natively when the votes are
    /// the native table.
    fn record(
        &self,
        py: Python<'_>,
        trace_id: &Bound<'_, PyAny>,
        field: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        count: u64,
    ) -> PyResult<()> {
        match &self.votes {
            Some(votes) => votes.bind(py).try_borrow_mut()?.record(
                py,
                trace_id.cast::<PyBytes>()?,
                field.cast::<PyString>()?,
                value,
                count,
            ),
            None if count == 1 => self.record.bind(py).call1((trace_id, field, value)).map(drop),
            None => self.record.bind(py).call1((trace_id, field, value, count)).map(drop),
        }
    }
}

/// The object behind `method` when it is the bound method `name` of a `T` (the native
/// tables' methods the processor hands over), else None.
fn native_self<T: pyo3::PyClass>(method: &Bound<'_, PyAny>, name: &str) -> Option<Py<T>> {
    let py = method.py();
    let named = method.getattr(pyo3::intern!(py, "__name__")).ok()?;
    if named.extract::<&str>().ok()? != name {
        return None;
    }
    let owner = method.getattr(pyo3::intern!(py, "__self__")).ok()?;
    Some(owner.cast_into::<T>().ok()?.unbind())
}

/// The processor's constants (set once).
struct Fixed {
    processor: Py<PyAny>,
    plans: Py<PyDict>,
    fallback_fields: Vec<Py<PyString>>,
    known_class: Py<PyAny>,
    span_edits: Py<PyAny>,
    repaired_key: Py<PyString>,
    hop_key: Py<PyString>,
    no_fields: Py<PyAny>, // context_cache.NO_FIELDS: a root's parent fallback in a plan's shape
    /// `object.__new__`: a Known and a SpanEdits made with their slots set here, as their
    /// __init__ (Python) would set them, without running it (half a microsecond a span).
    object_new: Py<PyAny>,
    /// Known's slots (fields, hop, depth, fallback) and SpanEdits' (renames, deletes, sets,
    /// replace) at their offsets (crate::slots); None: through getattr / setattr.
    known_slots: Option<SlotLayout>,
    edits_slots: Option<SlotLayout>,
    /// Known's and SpanEdits' base is `object` itself: `object.__new__(class)` is object's
    /// tp_new called directly (what the call runs once its checks pass), no call made.
    known_direct: bool,
    edits_direct: bool,
}

/// Whether `class`'s base is `object` itself (so `object.__new__(class)` passes its checks).
fn on_object(class: &Bound<'_, PyType>) -> bool {
    // SAFETY: a live type object; only its base's address is read.
    unsafe { (*class.as_type_ptr()).tp_base == std::ptr::addr_of_mut!(ffi::PyBaseObject_Type) }
}

/// Known's slots in `Fixed::known_slots`, by place.
const FIELDS: usize = 0;
const HOP: usize = 1;
const DEPTH: usize = 2;
const FALLBACK: usize = 3;

impl Fixed {
    /// `known.<names[at]>` (FIELDS, HOP, DEPTH, FALLBACK).
    fn known_attr<'py>(&self, known: &Bound<'py, PyAny>, at: usize) -> PyResult<Bound<'py, PyAny>> {
        match &self.known_slots {
            Some(slots) => slots.get(known, at),
            None => known.getattr(["fields", "hop", "depth", "fallback"][at]),
        }
    }
}

impl Fixed {
    /// `object.__new__(class)`: an instance with its slots empty, no __init__ run.
    fn new_instance<'py>(&self, py: Python<'py>, class: &Py<PyAny>, direct: bool) -> PyResult<Bound<'py, PyAny>> {
        if !direct {
            return self.object_new.bind(py).call1((class.bind(py),));
        }
        // SAFETY: object's tp_new with an empty args tuple and no kwds allocates an instance
        // of `class` (a type whose base is object: `on_object`); a new reference or NULL
        // with the error set.
        unsafe {
            let Some(new) = (*std::ptr::addr_of!(ffi::PyBaseObject_Type)).tp_new else {
                return self.object_new.bind(py).call1((class.bind(py),));
            };
            let args = PyTuple::empty(py);
            let made = new(class.as_ptr().cast(), args.as_ptr(), std::ptr::null_mut());
            Bound::from_owned_ptr_or_err(py, made)
        }
    }

    /// `Known(fields, hop, depth, fallback)`.
    fn known<'py>(
        &self,
        py: Python<'py>,
        fields: &Bound<'py, PyAny>,
        hop: &Bound<'py, PyAny>,
        depth: &Bound<'py, PyAny>,
        fallback: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let known = self.new_instance(py, &self.known_class, self.known_direct)?;
        if let Some(slots) = &self.known_slots {
            for (at, value) in [fields, hop, depth, fallback].into_iter().enumerate() {
                slots.set(&known, at, value)?;
            }
            return Ok(known);
        }
        known.setattr(pyo3::intern!(py, "fields"), fields)?;
        known.setattr(pyo3::intern!(py, "hop"), hop)?;
        known.setattr(pyo3::intern!(py, "depth"), depth)?;
        known.setattr(pyo3::intern!(py, "fallback"), fallback)?;
        Ok(known)
    }

    /// `SpanEdits(sets=sets)`: no renames, no deletes, no replacement.
    fn span_edits<'py>(&self, py: Python<'py>, sets: Bound<'py, PyList>) -> PyResult<Bound<'py, PyAny>> {
        let edits = self.new_instance(py, &self.span_edits, self.edits_direct)?;
        if let Some(slots) = &self.edits_slots {
            slots.set(&edits, 0, PyList::empty(py).as_any())?;
            slots.set(&edits, 1, PyList::empty(py).as_any())?;
            slots.set(&edits, 2, sets.as_any())?;
            slots.set(&edits, 3, &py.None().into_bound(py))?;
            return Ok(edits);
        }
        edits.setattr(pyo3::intern!(py, "renames"), PyList::empty(py))?;
        edits.setattr(pyo3::intern!(py, "deletes"), PyList::empty(py))?;
        edits.setattr(pyo3::intern!(py, "sets"), sets)?;
        edits.setattr(pyo3::intern!(py, "replace"), py.None())?;
        Ok(edits)
    }
}

#[pyclass(module = "costctx_native._core")]
pub struct DecideKernel {
    fixed: Option<Fixed>,
    batch: Option<Batch>,
    /// Plans by the identities of their shape's parts (`one`), kept across batches (bounded).
    memo: std::sync::Mutex<PlanMemo>,
    /// The last batch's `reads`, emptied, kept for the next (its table not grown and freed
    /// per batch); let go when it grew past SPARE_READS.
    spare_reads: Vec<Option<Cached>>,
}

/// Spans whose reads' table is kept between batches at most (a batch of more lets it go).
const SPARE_READS: usize = 4096;

/// Plans (`_plans`' values) by a shape's signature: the addresses of the parent's field names
/// (their count first; usize::MAX: no parent fields), of the span's own field names (count
/// first), the parent's fallback (0 when empty, as most are, whatever the object; else 1 and
/// its address) and the addresses of the resource's names (count first). Field names are the
/// config's string objects (own fields are read under them, Knowns are made of own fields and
/// of the table's records, which keep the first object of a text), so a span's shape is found
/// without making the shape tuple `_plans` is keyed by and hashing it; a name under another
/// object only misses (then `_plans` answers). Equal signatures mean equal shapes while the
/// objects live: each entry holds them (the names tuples, the fallback, the resource's
/// names), so no address it holds is reused while it stands.
#[derive(Default)]
struct PlanMemo {
    plans: HashMap<Box<[usize]>, (Py<PyTuple>, Vec<Py<PyAny>>), FxBuild>,
    signature: Vec<usize>, // scratch: the signature of the span being decided
    /// A decision's list of repaired (or conflicting) fields, by address -> the list (held:
    /// the address stays its own), a set of its items, its length (DecideKernel::set_of_list).
    sets: HashMap<usize, (Py<PyList>, Py<PyAny>, usize), FxBuild>,
}

/// Entries kept at most (`_plans`' own bound); past it, forgotten.
const MAX_MEMO: usize = 4096;

impl PlanMemo {
    fn get<'py>(&self, py: Python<'py>, signature: &[usize]) -> Option<Bound<'py, PyAny>> {
        self.plans
            .get(signature)
            .map(|(plan, _)| plan.bind(py).clone().into_any())
    }

    fn put(&mut self, signature: &[usize], plan: &Bound<'_, PyTuple>, held: Vec<Py<PyAny>>) {
        if self.plans.len() >= MAX_MEMO {
            self.plans.clear();
        }
        self.plans.insert(signature.into(), (plan.clone().unbind(), held));
    }
}

/// A shape's signature (see PlanMemo). The names' addresses are those of the names tuples'
/// items when the entry is made (`keys_tuple` takes the dicts' own key objects).
fn shape_signature(
    out: &mut Vec<usize>,
    parent_fields: Option<&Bound<'_, PyDict>>,
    own: &Bound<'_, PyDict>,
    parent_fallback: &Bound<'_, PyAny>,
    resource_names: &Bound<'_, PyAny>,
) {
    out.clear();
    match parent_fields {
        Some(fields) if fields.len() > 0 => key_addresses(out, fields),
        _ => out.push(usize::MAX),
    }
    key_addresses(out, own);
    match parent_fallback.cast::<PyFrozenSet>() {
        Ok(set) if set.is_empty() => out.push(0),
        _ => out.extend([1, parent_fallback.as_ptr() as usize]),
    }
    match resource_names.cast::<PyTuple>() {
        Ok(names) => {
            out.push(names.len());
            out.extend(names.iter_borrowed().map(|name| name.as_ptr() as usize));
        }
        Err(_) => out.extend([usize::MAX, resource_names.as_ptr() as usize]),
    }
}

/// A dict's length, then the address of each of its keys, in order.
fn key_addresses(out: &mut Vec<usize>, dict: &Bound<'_, PyDict>) {
    out.push(dict.len());
    let mut at: ffi::Py_ssize_t = 0;
    let mut key: *mut ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: the dict is alive and not changed while iterated (no Python code runs here);
    // PyDict_Next gives borrowed references, only their addresses are kept.
    while unsafe { ffi::PyDict_Next(dict.as_ptr(), &mut at, &mut key, &mut value) } != 0 {
        out.push(key as usize);
    }
}

/// What a decision writes (`_resolve`'s answer without the Known, which goes to `here`).
struct Decision<'py> {
    known: Bound<'py, PyAny>,
    sets: Bound<'py, PyAny>,
    conflicts: Bound<'py, PyAny>,
    repaired: Bound<'py, PyAny>,
    /// Made by this decision (not a shared entry's, taken again): its sets list is the new
    /// shared entry's, which nothing appends to (entries are read, then dropped with the
    /// tally at the batch's end), so the span's first edits may take it without a copy.
    fresh: bool,
}

/// What `one` did with a span.
enum Outcome<'py> {
    /// Nothing: Python's path decides it.
    Stop,
    /// Decided and written.
    Done,
    /// Decided, not written (`defer`): the shared entry and the decision.
    Deferred(Bound<'py, PyTuple>, Decision<'py>),
}

impl DecideKernel {
    fn parts(&self) -> PyResult<(&Fixed, &Batch)> {
        match (&self.fixed, &self.batch) {
            (Some(fixed), Some(batch)) => Ok((fixed, batch)),
            _ => Err(PyRuntimeError::new_err("DecideKernel.run outside begin/end")),
        }
    }

    /// `one(index, span, key, None, own, own_key, True, parent)` when the span can be decided
    /// here: then decided and written, true; else nothing done, false.
    fn one<'py>(
        &self,
        py: Python<'py>,
        fixed: &Fixed,
        b: &Batch,
        index: &Bound<'py, PyAny>,
        span: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        own: &Bound<'py, PyAny>,
        own_key: &Bound<'py, PyAny>,
        complete: bool,
        parent: &Bound<'py, PyAny>,
        defer: bool,
    ) -> PyResult<Outcome<'py>> {
        // -- what the kernel decides: checked before any side effect
        if (parent.is_none() && !complete) || own_key.is_none() {
            return Ok(Outcome::Stop); // no parent known and something missing: `one` may hold it
        }
        let own = own.cast::<PyDict>()?;
        // `_all_str(own_key[1])`: the values' types, str or absent only.
        let types = own_key.cast::<PyTuple>()?.get_item(1)?;
        let str_type = py.get_type::<PyString>();
        let none_type = py.None().into_bound(py).get_type();
        for t in types.cast::<PyTuple>()?.iter() {
            if !t.is(&str_type) && !t.is(&none_type) {
                return Ok(Outcome::Stop);
            }
        }
        let read = b.read(py, index, span)?;
        let attrs = &read.attrs;
        if attrs.contains(fixed.repaired_key.bind(py))? || attrs.contains(fixed.hop_key.bind(py))? {
            return Ok(Outcome::Stop);
        }
        let waiters = b.waiters.bind(py);
        if waiters.contains(key)? {
            return Ok(Outcome::Stop); // `one` cascades to the held spans after it
        }
        let tally = b.tally.bind(py);
        let resource_at = read.resource;
        let resource = b.resources.bind(py).get_item(resource_at)?;
        let parent_fields = if parent.is_none() {
            None
        } else {
            Some(fixed.known_attr(parent, FIELDS)?.cast_into::<PyDict>()?)
        };
        // _resolve: a root (no parent id, or an invalid one, and no link), the shared
        // decision's key.
        let root = parent.is_none() && read.is_root(py)?;
        let mut within = parent_fields.is_some() && own.len() > 0;
        if let (true, Some(parent_fields)) = (within, &parent_fields) {
            for (field, value) in own.iter() {
                match parent_fields.get_item(&field)? {
                    Some(theirs) if theirs.rich_compare(&value, CompareOp::Eq)?.is_truthy()? => {}
                    _ => {
                        within = false;
                        break;
                    }
                }
            }
        }
        let resource_id = (resource.as_ptr() as usize).into_pyobject(py)?;
        let root_ = PyBool::new(py, root).to_owned().into_any();
        let shared_key = if within {
            let names = keys_tuple(own)?;
            PyTuple::new(py, [parent.clone(), resource_id.into_any(), names, root_])?
        } else {
            PyTuple::new(py, [parent.clone(), resource_id.into_any(), own_key.clone(), root_])?
        };
        let shared = b.shared.bind(py);
        let hit = shared.get_item(&shared_key)?;
        let mut plan: Option<Bound<'py, PyTuple>> = None;
        if hit.is_none() {
            // _decide_by_plan: the resource's values, the plan of this shape.
            if !tally.getattr(pyo3::intern!(py, "resource"))?.is(&resource) {
                fixed
                    .processor
                    .bind(py)
                    .call_method1(pyo3::intern!(py, "_use_resource"), (&resource, tally))?;
            }
            let parent_fallback = if parent.is_none() {
                fixed.no_fields.bind(py).clone()
            } else {
                fixed.known_attr(parent, FALLBACK)?
            };
            let resource_names = tally.getattr(pyo3::intern!(py, "resource_names"))?;
            // The plan of this shape by the identities of what the shape is made of (no
            // tuples made, no tuple hashed); else from `_plans` (or `_plan`), remembered.
            let mut signature = std::mem::take(&mut self.memo.lock().unwrap().signature);
            shape_signature(
                &mut signature,
                parent_fields.as_ref(),
                own,
                &parent_fallback,
                &resource_names,
            );
            let remembered = self.memo.lock().unwrap().get(py, &signature);
            let found = match remembered {
                Some(found) => found,
                None => {
                    let names = match &parent_fields {
                        Some(found) if found.len() > 0 => keys_tuple(found)?,
                        _ => py.None().into_bound(py),
                    };
                    let own_names = keys_tuple(own)?;
                    let shape = PyTuple::new(py, [&names, &own_names, &parent_fallback, &resource_names])?;
                    let found = match fixed.plans.bind(py).get_item(&shape)? {
                        Some(found) => found,
                        None => fixed.processor.bind(py).call_method1(
                            pyo3::intern!(py, "_plan"),
                            (&shape, tally.getattr(pyo3::intern!(py, "resource_values"))?),
                        )?,
                    };
                    let found = found.cast_into::<PyTuple>()?;
                    // Held with the plan: the objects whose addresses the signature holds.
                    let held = vec![
                        names.unbind(),
                        own_names.unbind(),
                        parent_fallback.unbind(),
                        resource_names.unbind(),
                    ];
                    self.memo.lock().unwrap().put(&signature, &found, held);
                    found.into_any()
                }
            };
            self.memo.lock().unwrap().signature = signature;
            let found = found.cast_into::<PyTuple>()?;
            if found.get_item(3)?.is_truthy()? {
                return Ok(Outcome::Stop); // needs_trace: the trace's votes decide, field by field
            }
            plan = Some(found);
        }

        // -- decided here: `one`'s steps from here on
        let trace_id = read.trace_id.clone();
        if own.contains(pyo3::intern!(py, "workflow.id"))? {
            b.learning.bind(py).append((learned(py, span, &read)?, own))?;
        }
        let (decision, entry) = match hit {
            Some(hit) => {
                // _resolve's hit: the entry's decision, its votes, the put.
                let hit = hit.cast_into::<PyTuple>()?;
                let hits = hit.get_item(6)?;
                let hits = hits.cast::<PyList>()?;
                hits.set_item(0, hits.get_item(0)?.add(1)?)?;
                for vote in hit.get_item(5)?.try_iter()? {
                    let vote = vote?;
                    let vote = vote.cast::<PyTuple>()?;
                    b.record(py, &trace_id, &vote.get_item(0)?, &vote.get_item(1)?, 1)?;
                }
                let known = hit.get_item(1)?;
                b.put(py, key, &known)?;
                let decision = Decision {
                    known,
                    sets: hit.get_item(2)?,
                    conflicts: hit.get_item(3)?,
                    repaired: hit.get_item(4)?,
                    fresh: false,
                };
                (decision, hit)
            }
            None => self.decide(
                py,
                fixed,
                b,
                plan.unwrap(),
                own,
                parent,
                parent_fields.as_ref(),
                root,
                within,
                &resource,
                &trace_id,
                key,
                shared_key,
            )?,
        };
        // `one`: the first span under a key is the ancestor its children find here.
        let here = b.here.bind(py);
        if !here.contains(key)? {
            here.set_item(key, &decision.known)?;
        }
        if defer {
            // `one(..., defer=True)`: the decision is shared (the kernel's always are) and no
            // held span waits for it: the caller writes it with the rest of the unit's.
            return Ok(Outcome::Deferred(entry, decision));
        }
        self.apply(py, fixed, b, index, &read, &decision)?;
        Ok(Outcome::Done)
    }

    /// `_decide_by_plan` then the rest of `_resolve` for a span whose shared decision is not
    /// made yet: fills, stamp, conflicts, votes, hop depth, counts, the Known and its put,
    /// the shared entry.
    fn decide<'py>(
        &self,
        py: Python<'py>,
        fixed: &Fixed,
        b: &Batch,
        plan: Bound<'py, PyTuple>,
        own: &Bound<'py, PyDict>,
        parent: &Bound<'py, PyAny>,
        parent_fields: Option<&Bound<'py, PyDict>>,
        root: bool,
        within: bool,
        resource: &Bound<'py, PyAny>,
        trace_id: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        shared_key: Bound<'py, PyTuple>,
    ) -> PyResult<(Decision<'py>, Bound<'py, PyTuple>)> {
        let tally = b.tally.bind(py);
        let supplied = tally.getattr(pyo3::intern!(py, "resource_values"))?;
        // from_parent, common, from_resource, needs_trace, repaired, stamp, bumps, fallback
        let from_parent = plan.get_item(0)?.cast_into::<PyTuple>()?;
        let common = plan.get_item(1)?.cast_into::<PyTuple>()?;
        let from_resource = plan.get_item(2)?.cast_into::<PyTuple>()?;
        let repaired = plan.get_item(4)?;
        let stamp = plan.get_item(5)?;
        let bumps = plan.get_item(6)?;
        let fallback = plan.get_item(7)?;
        // conflicts = [f for f in common if own[f] != parent_fields[f]] or None
        let mut conflicts = py.None().into_bound(py);
        let empty;
        let parent_fields = match parent_fields {
            Some(found) => found,
            None => {
                empty = PyDict::new(py); // no parent: the plan takes nothing from it
                &empty
            }
        };
        // `within` (one's test: every own field is the parent's, equal): no conflict, as the
        // comparisons below would find again (== and != agree on the values fields hold).
        if !common.is_empty() && !within {
            let found = PyList::empty(py);
            for field in common.iter() {
                let mine = own.as_any().get_item(&field)?;
                let theirs = parent_fields.as_any().get_item(&field)?;
                if mine.rich_compare(&theirs, CompareOp::Ne)?.is_truthy()? {
                    found.append(&field)?;
                }
            }
            if !found.is_empty() {
                let mut counts = b.counts.lock().unwrap();
                for field in found.iter() {
                    counts.conflicts.bump(&field); // tally.conflicts[field] += 1, at `end`
                }
                conflicts = found.into_any();
            }
        }
        let own_any = own.as_any();
        let mut fields: Bound<'py, PyAny>;
        // The sets gathered here, made into their list once, at its size (no list grown).
        let mut sets: Vec<Bound<'py, PyAny>> = Vec::with_capacity(parent_fields.len() + from_resource.len() + 2);
        if !from_parent.is_empty() {
            if own.is_empty() {
                fields = parent_fields.clone().into_any(); // the parent's dict, shared
                b.parent_pairs(py, parent_fields, None, &mut sets)?; // list(parent_fields.items())
            } else {
                // [(f, parent_fields[f]) for f in from_parent]; dict(own).update(those)
                b.parent_pairs(py, parent_fields, Some(&from_parent), &mut sets)?;
                let copy = own.copy()?;
                for pair in &sets {
                    let pair = pair.cast::<PyTuple>()?;
                    copy.set_item(pair.get_borrowed_item(0)?, pair.get_borrowed_item(1)?)?;
                }
                fields = copy.into_any();
            }
        } else {
            fields = own_any.clone();
        }
        if !from_resource.is_empty() {
            if fields.is(own_any) || (!parent.is_none() && fields.is(parent_fields)) {
                fields = fields.cast::<PyDict>()?.copy()?.into_any();
            }
            let target = fields.cast::<PyDict>()?;
            for i in from_resource.iter() {
                let pair = supplied.get_item(&i)?;
                let pair = pair.cast_into::<PyTuple>()?;
                let (field, value) = (pair.get_item(0)?, pair.get_item(1)?);
                target.set_item(&field, &value)?;
                // (field, value): the resource's own pair when it is exactly that (a tuple
                // is never changed), no tuple made per decision
                if pair.is_exact_instance_of::<PyTuple>() && pair.len() == 2 {
                    sets.push(pair.into_any());
                } else {
                    sets.push(PyTuple::new(py, [field, value])?.into_any());
                }
            }
        }
        if !stamp.is_none() {
            sets.push(PyTuple::new(py, [fixed.repaired_key.bind(py).as_any(), &stamp])?.into_any());
        }
        // Every carrier votes; the entry keeps the votes ((field, value) pairs; none: the
        // empty tuple, no object made).
        let mut votes: Vec<Bound<'py, PyTuple>> = Vec::new();
        for field in &fixed.fallback_fields {
            let field = field.bind(py);
            if let Some(mine) = own.get_item(field)? {
                if !mine.is_none() {
                    b.record(py, trace_id, field, &mine, 1)?;
                    votes.push(PyTuple::new(py, [field.as_any(), &mine])?);
                }
            }
        }
        // _resolve: the hop depth (no stamp of its own).
        let hop = resource.getattr(pyo3::intern!(py, "service"))?;
        let parent_depth = if parent.is_none() {
            py.None().into_bound(py)
        } else {
            fixed.known_attr(parent, DEPTH)?
        };
        let depth = if parent.is_none() {
            if root {
                0i64.into_pyobject(py)?.into_any()
            } else {
                parent_depth // the ancestors are unknown: the depth is too (None)
            }
        } else if parent_depth.is_none() {
            parent_depth
        } else {
            let workflow = own.get_item(pyo3::intern!(py, "workflow.id"))?;
            let new_workflow = match workflow {
                Some(workflow) if !workflow.is_none() => {
                    let theirs = parent_fields
                        .get_item(pyo3::intern!(py, "workflow.id"))?
                        .unwrap_or_else(|| py.None().into_bound(py));
                    workflow.rich_compare(&theirs, CompareOp::Ne)?.is_truthy()?
                }
                _ => false,
            };
            if new_workflow {
                0i64.into_pyobject(py)?.into_any() // a new workflow starts here
            } else {
                let crossed = hop.rich_compare(fixed.known_attr(parent, HOP)?, CompareOp::Ne)?;
                parent_depth.add(crossed)?
            }
        };
        if !depth.is_none() {
            sets.push(PyTuple::new(py, [fixed.hop_key.bind(py).as_any(), &depth])?.into_any());
        }
        let sets = PyList::new(py, sets)?;
        {
            // Read before the lock is taken: iterating can run Python (and so a collection,
            // whose traverse skips what is locked).
            let bumps = bumps.try_iter()?.collect::<PyResult<Vec<_>>>()?;
            let mut counts = b.counts.lock().unwrap();
            for entry in &bumps {
                counts.repaired.bump(entry); // tally.repaired[bump] += 1, at `end`
            }
        }
        let known = fixed.known(py, &fields, &hop, &depth, &fallback)?;
        b.put(py, key, &known)?;
        // The shared entry: (resource, known, sets, conflicts, repaired, votes, [0], bumps).
        // Its bumps are the plan's (a tuple, never changed: _flush only reads them).
        let votes = PyTuple::new(py, votes)?;
        let zero = PyList::new(py, [0i64])?;
        let entry = PyTuple::new(
            py,
            [
                resource.clone(),
                known.clone(),
                sets.clone().into_any(),
                conflicts.clone(),
                repaired.clone(),
                votes.into_any(),
                zero.into_any(),
                bumps,
            ],
        )?;
        b.shared.bind(py).set_item(shared_key, &entry)?;
        let decision = Decision {
            known,
            sets: sets.into_any(),
            conflicts,
            repaired,
            fresh: true,
        };
        Ok((decision, entry))
    }

    /// A unit of three spans or more (`unit`: own, own_key, parent, then index, span, key per
    /// span): `one(first, defer=True)` then `_decide_rest` and `_apply_group`, when no span of
    /// the unit has held spans waiting for it and the first can be decided here. Else nothing
    /// is done (false): Python's path takes the whole unit.
    fn unit<'py>(&self, py: Python<'py>, fixed: &Fixed, b: &Batch, unit: &Bound<'py, PyList>) -> PyResult<bool> {
        if !b.bulk {
            return Ok(false);
        }
        let count = (unit.len() - 3) / 3;
        let waiters = b.waiters.bind(py);
        if !waiters.is_empty() {
            for at in 0..count {
                if waiters.contains(unit.get_item(5 + 3 * at)?)? {
                    return Ok(false);
                }
            }
        }
        let (own, own_key, parent) = (unit.get_item(0)?, unit.get_item(1)?, unit.get_item(2)?);
        let (first_index, first_span, first_key) = (unit.get_item(3)?, unit.get_item(4)?, unit.get_item(5)?);
        let outcome = self.one(
            py,
            fixed,
            b,
            &first_index,
            &first_span,
            &first_key,
            &own,
            &own_key,
            true,
            &parent,
            true,
        )?;
        let (entry, decision) = match outcome {
            Outcome::Stop => return Ok(false),
            Outcome::Done => return Err(PyRuntimeError::new_err("a deferred decision was written")),
            Outcome::Deferred(entry, decision) => (entry, decision),
        };
        // _decide_rest: the rest of the unit takes the shared decision.
        let rest = count - 1;
        let hits = entry.get_item(6)?;
        let hits = hits.cast::<PyList>()?;
        hits.set_item(0, hits.get_item(0)?.add(rest)?)?;
        let mut indices: Vec<Bound<'py, PyAny>> = Vec::with_capacity(count);
        let mut spans: Vec<Bound<'py, PyAny>> = Vec::with_capacity(count);
        let keys = PyList::empty(py);
        indices.push(first_index);
        spans.push(first_span);
        for at in 1..count {
            indices.push(unit.get_item(3 + 3 * at)?);
            spans.push(unit.get_item(4 + 3 * at)?);
            keys.append(unit.get_item(5 + 3 * at)?)?;
        }
        let own = own.cast::<PyDict>()?;
        if own.contains(pyo3::intern!(py, "workflow.id"))? {
            let members = PyList::empty(py);
            for (index, span) in indices[1..].iter().zip(&spans[1..]) {
                members.append(if b.lazy {
                    learned(py, span, &b.read(py, index, span)?)?
                } else {
                    span.clone()
                })?;
            }
            b.learning.bind(py).append((members, own))?; // learned with the batch's others, in order
        }
        let votes = entry.get_item(5)?;
        if votes.is_truthy()? {
            let carriers = PyDict::new(py); // trace id -> spans, in order of first
            for (index, span) in indices[1..].iter().zip(&spans[1..]) {
                let trace_id = b.read(py, index, span)?.trace_id;
                let count = match carriers.get_item(&trace_id)? {
                    Some(found) => found.add(1)?,
                    None => 1i64.into_pyobject(py)?.into_any(),
                };
                carriers.set_item(trace_id, count)?;
            }
            for (trace_id, count) in carriers.iter() {
                for vote in votes.try_iter()? {
                    let vote = vote?;
                    let vote = vote.cast::<PyTuple>()?;
                    b.record(py, &trace_id, &vote.get_item(0)?, &vote.get_item(1)?, count.extract()?)?;
                }
            }
        }
        b.put_many(py, &keys, &decision.known)?;
        let here = b.here.bind(py);
        for key in keys.iter() {
            if !here.contains(&key)? {
                here.set_item(key, &decision.known)?;
            }
        }
        // _apply_group: one group edit; spans re-encoded on the slow path written alone.
        let sets = &decision.sets;
        if sets.is_truthy()? {
            let edits = b.edits.bind(py);
            if !edits.is_empty() {
                let mut kept_indices = Vec::with_capacity(count);
                let mut kept_spans = Vec::with_capacity(count);
                let mut alone = Vec::new();
                for (index, span) in indices.into_iter().zip(spans) {
                    let replaced = match edits.get_item(&index)? {
                        Some(found) => !found.getattr(pyo3::intern!(py, "replace"))?.is_none(),
                        None => false,
                    };
                    if replaced {
                        alone.push((index, span));
                    } else {
                        kept_indices.push(index);
                        kept_spans.push(span);
                    }
                }
                for (index, span) in &alone {
                    self.apply(py, fixed, b, index, &b.read(py, index, span)?, &decision)?;
                }
                if kept_indices.is_empty() {
                    return Ok(true);
                }
                indices = kept_indices;
                spans = kept_spans;
            }
            let copy = list_of(sets)?;
            let indices_list = PyList::new(py, &indices)?;
            b.batch_edits.bind(py).call_method1(
                pyo3::intern!(py, "add_group"),
                (fixed.span_edits(py, copy)?, &indices_list),
            )?;
            for (index, span) in indices.iter().zip(&spans) {
                if span.is_none() {
                    // a lazy list's span: into the attrs dict kept for its readers and view
                    let list = b.spans.bind(py).cast::<crate::view::SpanList>()?;
                    list.get().update_attrs(py, index.extract()?, sets)?;
                } else {
                    let attrs = span.getattr(pyo3::intern!(py, "attrs"))?;
                    update(attrs.cast::<PyDict>()?, sets)?;
                }
            }
        }
        for index in &indices {
            self.note(py, b, index, &decision)?;
        }
        Ok(true)
    }

    /// `_apply`: the sets as the span's edits (and its view's attrs), the notes.
    fn apply<'py>(
        &self,
        py: Python<'py>,
        fixed: &Fixed,
        b: &Batch,
        index: &Bound<'py, PyAny>,
        read: &Read<'py>,
        decision: &Decision<'py>,
    ) -> PyResult<()> {
        let sets = &decision.sets;
        if sets.is_truthy()? {
            let edits = b.edits.bind(py);
            match edits.get_item(index)? {
                None => {
                    // `SpanEdits(sets=list(sets))`: a fresh decision's own list serves (see
                    // Decision::fresh); equal content either way.
                    let copy = if decision.fresh {
                        sets.cast::<PyList>()?.clone()
                    } else {
                        list_of(sets)?
                    };
                    edits.set_item(index, fixed.span_edits(py, copy)?)?;
                    b.write(py, index, read, sets)?;
                }
                Some(found) => {
                    if !found.getattr(pyo3::intern!(py, "replace"))?.is_none() {
                        // Re-encoded on the slow path: set writes into the replacement.
                        let batch = b.batch.bind(py);
                        for pair in sets.try_iter()? {
                            let pair = pair?;
                            let pair = pair.cast::<PyTuple>()?;
                            batch.call_method1(
                                pyo3::intern!(py, "set"),
                                (index, pair.get_item(0)?, pair.get_item(1)?),
                            )?;
                        }
                    } else {
                        found
                            .getattr(pyo3::intern!(py, "sets"))?
                            .call_method1(pyo3::intern!(py, "extend"), (sets,))?;
                        b.write(py, index, read, sets)?;
                    }
                }
            }
        }
        self.note(py, b, index, decision)
    }

    /// `_apply`'s (and `_apply_group`'s) notes: the conflicting and repaired fields.
    /// `set(values)` for a decision's list of fields, copied from one set made per list (the
    /// plans' lists serve most decisions of a workload): a copy takes the set's table as it
    /// is, where `set(list)` hashes, probes and grows it item by item. The same members;
    /// their iteration order may differ from `set(list)`'s (readers test membership only).
    fn set_of_list<'py>(&self, py: Python<'py>, values: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let Ok(list) = values.cast::<PyList>() else {
            return set_of(values);
        };
        let address = list.as_ptr() as usize;
        let made = match self.memo.lock().unwrap().sets.get(&address) {
            // the list is held by the entry (its address stays its own) and decisions' lists
            // are never changed once made: the same length is a cheap check all the same
            Some((held, set, len)) if held.as_ptr() as usize == address && *len == list.len() => {
                Some(set.bind(py).clone())
            }
            _ => None,
        };
        let set = match made {
            Some(set) => set,
            None => {
                let set = set_of(values)?;
                let mut memo = self.memo.lock().unwrap();
                if memo.sets.len() >= MAX_MEMO {
                    memo.sets.clear();
                }
                memo.sets
                    .insert(address, (list.clone().unbind(), set.clone().unbind(), list.len()));
                set
            }
        };
        set_of(&set)
    }

    fn note<'py>(
        &self,
        py: Python<'py>,
        b: &Batch,
        index: &Bound<'py, PyAny>,
        decision: &Decision<'py>,
    ) -> PyResult<()> {
        let (conflicts, repaired) = (&decision.conflicts, &decision.repaired);
        let has_conflicts = conflicts.is_truthy()?;
        let has_repaired = repaired.is_truthy()?;
        if !(has_conflicts || has_repaired) {
            return Ok(());
        }
        let conflict_name = pyo3::intern!(py, "conflict");
        let repaired_name = pyo3::intern!(py, "repaired");
        let notes = b.notes.bind(py);
        // The span's notes dict (a new one when it had none), each set added or updated.
        let found = match notes.get_item(index)? {
            None => {
                let mine = PyDict::new(py);
                notes.set_item(index, &mine)?;
                mine
            }
            Some(found) => found.cast_into::<PyDict>()?,
        };
        for (has, name, values) in [
            (has_conflicts, conflict_name, conflicts),
            (has_repaired, repaired_name, repaired),
        ] {
            if !has {
                continue;
            }
            match found.get_item(name)? {
                None => found.set_item(name, self.set_of_list(py, values)?)?,
                Some(set) => {
                    set.call_method1(pyo3::intern!(py, "update"), (values,))?;
                }
            }
        }
        Ok(())
    }
}

/// What the kernel reads of a lazy list's span (no view made), kept for the batch.
struct Cached {
    attrs: Py<PyDict>, // the dict kept for its readers and view (State.edited)
    trace_id: Py<PyAny>,
    span_id: Py<PyAny>,
    kind: i32,
    resource: usize,
    no_parent: bool,
    links: bool,
}

/// A span as the kernel reads it: its view, or a lazy list's span read from its record.
struct Read<'py> {
    attrs: Bound<'py, PyDict>,
    view: Option<Bound<'py, PyAny>>,
    trace_id: Bound<'py, PyAny>,
    span_id: Option<Bound<'py, PyAny>>,
    kind: i32,
    resource: usize,
    no_parent: bool,
    links: bool,
}

impl<'py> Read<'py> {
    fn of_view(py: Python<'py>, view: &Bound<'py, PyAny>) -> PyResult<Read<'py>> {
        Ok(Read {
            attrs: view.getattr(pyo3::intern!(py, "attrs"))?.cast_into::<PyDict>()?,
            view: Some(view.clone()),
            trace_id: view.getattr(pyo3::intern!(py, "trace_id"))?,
            span_id: None,
            kind: 0,
            resource: view.getattr(pyo3::intern!(py, "resource"))?.extract()?,
            no_parent: false, // read from the view when asked (is_root)
            links: false,
        })
    }

    fn of_cached(py: Python<'py>, cached: &Cached) -> Read<'py> {
        Read {
            attrs: cached.attrs.bind(py).clone(),
            view: None,
            trace_id: cached.trace_id.bind(py).clone(),
            span_id: Some(cached.span_id.bind(py).clone()),
            kind: cached.kind,
            resource: cached.resource,
            no_parent: cached.no_parent,
            links: cached.links,
        }
    }

    /// No parent (no id, or an invalid all-zero one) and no link.
    fn is_root(&self, py: Python<'py>) -> PyResult<bool> {
        match &self.view {
            Some(view) => {
                let parent_id = view.getattr(pyo3::intern!(py, "parent_span_id"))?;
                let parent_id = parent_id.cast::<PyBytes>()?.as_bytes();
                Ok((parent_id.is_empty() || parent_id == [0u8; 8])
                    && !view.getattr(pyo3::intern!(py, "links"))?.is_truthy()?)
            }
            None => Ok(self.no_parent && !self.links),
        }
    }
}

impl Batch {
    /// The span at `index`: `span` its view, or None (a lazy list's span: read without a view,
    /// once per batch).
    fn read<'py>(&self, py: Python<'py>, index: &Bound<'py, PyAny>, span: &Bound<'py, PyAny>) -> PyResult<Read<'py>> {
        if !span.is_none() {
            return Read::of_view(py, span);
        }
        let at: usize = index.extract()?;
        if let Some(Some(found)) = self.reads.lock().unwrap().get(at) {
            return Ok(Read::of_cached(py, found));
        }
        let read = crate::span_read::SpanRead::of(py, self.spans.bind(py), at)?;
        if read.made() {
            // made since (by Python's path): read as a view
            return Read::of_view(py, &self.spans.bind(py).get_item(at)?);
        }
        let cached = Cached {
            attrs: read.attrs.clone().unbind(),
            trace_id: read.trace_id(py)?.unbind(),
            span_id: read.span_id(py)?.unbind(),
            kind: read.kind(py)?.extract()?,
            resource: read.resource(py)?.extract()?,
            no_parent: read.no_parent(py)?,
            links: read.has_links(py)?,
        };
        let made = Read::of_cached(py, &cached);
        let mut reads = self.reads.lock().unwrap();
        if reads.len() <= at {
            reads.resize_with(at + 1, || None);
        }
        reads[at] = Some(cached);
        Ok(made)
    }

    /// `attrs.update(sets)` on the span read as `read`: its view's attrs, or the dict kept for
    /// its view and the later readers (SpanList::update_attrs).
    fn write<'py>(
        &self,
        py: Python<'py>,
        index: &Bound<'py, PyAny>,
        read: &Read<'py>,
        sets: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        if read.view.is_some() {
            return update(&read.attrs, sets);
        }
        let list = self.spans.bind(py).cast::<crate::view::SpanList>()?;
        list.get().update_attrs(py, index.extract()?, sets)
    }
}

/// What learning keeps of a span the kernel read without its view: the three attributes
/// learn_plan (Python and native) reads of a span, as a view has them.
#[pyclass(frozen, module = "costctx_native._core")]
pub struct LearnedSpan {
    #[pyo3(get)]
    trace_id: Py<PyAny>,
    #[pyo3(get)]
    kind: Py<PyAny>,
    #[pyo3(get)]
    span_id: Py<PyAny>,
}

/// What learning keeps of a span (learn_plan.py): its view, or a LearnedSpan when it has none.
fn learned<'py>(py: Python<'py>, span: &Bound<'py, PyAny>, read: &Read<'py>) -> PyResult<Bound<'py, PyAny>> {
    let (Some(span_id), true) = (&read.span_id, span.is_none()) else {
        return Ok(read.view.clone().unwrap_or_else(|| span.clone()));
    };
    let made = LearnedSpan {
        trace_id: read.trace_id.clone().unbind(),
        kind: read.kind.into_pyobject(py)?.into_any().unbind(),
        span_id: span_id.clone().unbind(),
    };
    Ok(Bound::new(py, made)?.into_any())
}

/// `attrs.update(sets)` for a list of (key, value) pairs: dict.update's own loop
/// (PyDict_MergeFromSeq2, later pairs win), one call rather than one per pair.
fn update(attrs: &Bound<'_, PyDict>, sets: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: both are live objects held by the caller; the call borrows them.
    if unsafe { ffi::PyDict_MergeFromSeq2(attrs.as_ptr(), sets.as_ptr(), 1) } < 0 {
        return Err(PyErr::fetch(attrs.py()));
    }
    Ok(())
}

/// `list(items)`: a new list of the same items (PySequence_List), in one call.
fn list_of<'py>(items: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    // SAFETY: a new reference or NULL with the error set.
    let made = unsafe { Bound::from_owned_ptr_or_err(items.py(), ffi::PySequence_List(items.as_ptr()))? };
    Ok(made.cast_into::<PyList>()?)
}

/// `set(items)` (PySet_New: the items added in their order, as `PySet::new` adds them).
fn set_of<'py>(items: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: a new reference or NULL with the error set.
    unsafe { Bound::from_owned_ptr_or_err(items.py(), ffi::PySet_New(items.as_ptr())) }
}

/// `tuple(d)`: a dict's keys in order, as one tuple (PyDict_Keys then PyList_AsTuple).
fn keys_tuple<'py>(dict: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyAny>> {
    let keys = dict.keys();
    // SAFETY: a new reference or NULL with the error set.
    unsafe { Bound::from_owned_ptr_or_err(dict.py(), ffi::PyList_AsTuple(keys.as_ptr())) }
}

#[pymethods]
impl DecideKernel {
    #[new]
    fn new(
        processor: Py<PyAny>,
        plans: Py<PyDict>,
        fallback_fields: Vec<Py<PyString>>,
        known_class: Py<PyType>,
        span_edits: Py<PyType>,
        repaired_key: Py<PyString>,
        hop_key: Py<PyString>,
        no_fields: Py<PyAny>,
        py: Python<'_>,
    ) -> PyResult<Self> {
        let object_new = py.import("builtins")?.getattr("object")?.getattr("__new__")?.unbind();
        let known_slots = SlotLayout::of(py, known_class.bind(py), &["fields", "hop", "depth", "fallback"])?;
        let edits_slots = SlotLayout::of(py, span_edits.bind(py), &["renames", "deletes", "sets", "replace"])?;
        let (known_direct, edits_direct) = (on_object(known_class.bind(py)), on_object(span_edits.bind(py)));
        Ok(DecideKernel {
            fixed: Some(Fixed {
                processor,
                plans,
                fallback_fields,
                known_class: known_class.into_any(),
                span_edits: span_edits.into_any(),
                repaired_key,
                hop_key,
                no_fields,
                object_new,
                known_slots,
                edits_slots,
                known_direct,
                edits_direct,
            }),
            batch: None,
            memo: Default::default(),
            spare_reads: Default::default(),
        })
    }

    /// The batch's state the decisions write into (see process_view).
    fn begin(
        &mut self,
        tally: Py<PyAny>,
        here: Py<PyDict>,
        put: Py<PyAny>,
        put_many: Py<PyAny>,
        record: Py<PyAny>,
        waiters: Py<PyDict>,
        learning: Py<PyList>,
        batch: Py<PyAny>,
        resources: Py<PyAny>,
        bulk: bool,
        py: Python<'_>,
    ) -> PyResult<()> {
        let t = tally.bind(py);
        let shared = t.getattr("shared")?.cast_into::<PyDict>()?.unbind();
        let conflicts = t.getattr("conflicts")?.cast_into::<PyDict>()?.unbind();
        let repaired = t.getattr("repaired")?.cast_into::<PyDict>()?.unbind();
        let bound = batch.bind(py);
        let batch_edits = bound.getattr("edits")?;
        let edits = batch_edits.getattr("spans")?.cast_into::<PyDict>()?.unbind();
        let batch_edits = batch_edits.unbind();
        let notes = bound.getattr("notes")?.cast_into::<PyDict>()?.unbind();
        let table = native_self::<AncestorTable>(put.bind(py), "put_known")
            .filter(|t| native_self::<AncestorTable>(put_many.bind(py), "put_many_known").is_some_and(|m| m.is(t)));
        let votes = native_self::<TraceVotes>(record.bind(py), "record");
        let spans = bound.getattr("view")?.getattr("spans")?;
        let lazy = spans.cast::<crate::view::SpanList>().is_ok();
        let spans = spans.unbind();
        self.batch = Some(Batch {
            tally,
            shared,
            conflicts,
            repaired,
            here,
            put,
            put_many,
            record,
            waiters,
            learning,
            edits,
            batch_edits,
            notes,
            batch,
            resources,
            bulk,
            table,
            votes,
            spans,
            lazy,
            reads: std::sync::Mutex::new(std::mem::take(&mut self.spare_reads)),
            counts: Default::default(),
            pairs: Default::default(),
        });
        Ok(())
    }

    /// The batch is done: its counts added into the tally's Counters, its objects let go.
    fn end(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(batch) = self.batch.take() {
            let mut counts = batch
                .counts
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let added = counts
                .repaired
                .add_into(batch.repaired.bind(py))
                .and_then(|()| counts.conflicts.add_into(batch.conflicts.bind(py)));
            let mut reads = batch
                .reads
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            reads.clear();
            if reads.capacity() <= SPARE_READS {
                self.spare_reads = reads;
            }
            return added;
        }
        Ok(())
    }

    /// One level's entries, as `list_level` in process_view makes them (the same tuples and
    /// lists, in the same order, the same lookups in the same order): spans alone as
    /// (index, span, key, wait_key, own, own_key, complete, parent), spans alike (parent,
    /// group, resource, root) as one list [own, own_key, parent, then index, span, key each].
    fn list_level<'py>(
        &self,
        py: Python<'py>,
        order: &Bound<'py, PyList>,
        start: usize,
        end: usize,
        indices: &Bound<'py, PyAny>,
        spans: &Bound<'py, PyAny>,
        keys: &Bound<'py, PyList>,
        wait_keys: &Bound<'py, PyList>,
        groups: &Bound<'py, PyList>,
        by_group: &Bound<'py, PyList>,
        cache_get: &Bound<'py, PyAny>,
        registry_known: &Bound<'py, PyAny>,
        read_alone: &Bound<'py, PyAny>,
        grouped: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let (fixed, b) = self.parts()?;
        let here = b.here.bind(py);
        let table = native_self::<AncestorTable>(cache_get, "peek");
        let repaired_key = fixed.repaired_key.bind(py);
        let hop_key = fixed.hop_key.bind(py);
        // unit key -> its place in `listed`; the parent by identity (alive: held by `listed`).
        // (Fx: the keys are an address and the batch's own group and resource numbers, not
        // values a sender chose.)
        let mut units: HashMap<(usize, i64, i64, bool), usize, FxBuild> = HashMap::default();
        let listed = PyList::empty(py);
        let none = py.None().into_bound(py);
        let true_ = PyBool::new(py, true).to_owned().into_any();
        for p in start..end {
            let p: usize = order.get_item(p)?.extract()?;
            let index = indices.get_item(p)?;
            // a lazy list's span is read without its view (None in the entry), else the view
            let span = if b.lazy { none.clone() } else { spans.get_item(&index)? };
            let read = b.read(py, &index, &span)?;
            let group: i64 = groups.get_item(p)?.extract()?;
            let (own, own_key, complete) = if group >= 0 {
                let found = by_group.get_item(group as usize)?;
                let found = found.cast_into::<PyTuple>()?;
                (found.get_item(0)?, found.get_item(1)?, found.get_item(2)?)
            } else {
                let view = if b.lazy { spans.get_item(&index)? } else { span.clone() }; // (rare: made)
                let found = read_alone.call1((&view,))?;
                let found = found.cast_into::<PyTuple>()?;
                (found.get_item(0)?, found.get_item(1)?, found.get_item(2)?)
            };
            let wait_key = wait_keys.get_item(p)?;
            let parent = if wait_key.is_none() {
                none.clone()
            } else {
                match here.get_item(&wait_key)? {
                    Some(found) => found,
                    None => {
                        let found = match &table {
                            // the native table's peek, as Rust: no Python call per span
                            Some(table) => {
                                match table.bind(py).try_borrow_mut()?.peek(py, wait_key.cast::<PyBytes>()?)? {
                                    Some(found) => found.into_bound(py),
                                    None => none.clone(),
                                }
                            }
                            None => cache_get.call1((&wait_key,))?,
                        };
                        if found.is_none() {
                            registry_known.call1((&wait_key,))?
                        } else {
                            found
                        }
                    }
                }
            };
            let key = keys.get_item(p)?;
            let attrs = &read.attrs;
            if group < 0
                || (parent.is_none() && !complete.is_truthy()?)
                || !grouped
                || attrs.contains(repaired_key)?
                || attrs.contains(hop_key)?
            {
                listed.append(PyTuple::new(
                    py,
                    [index, span, key, wait_key, own, own_key, complete, parent],
                )?)?;
                continue;
            }
            let root = parent.is_none() && read.is_root(py)?;
            let resource = read.resource as i64;
            let unit_key = (
                if parent.is_none() { 0 } else { parent.as_ptr() as usize },
                group,
                resource,
                root,
            );
            match units.get(&unit_key) {
                None => {
                    units.insert(unit_key, listed.len());
                    listed.append(PyTuple::new(
                        py,
                        [index, span, key, none.clone(), own, own_key, true_.clone(), parent],
                    )?)?;
                }
                Some(&at) => {
                    let unit = listed.get_item(at)?;
                    let unit = match unit.cast::<PyTuple>() {
                        Ok(first) => {
                            // its second span: a unit
                            let made = PyList::new(
                                py,
                                [
                                    own,
                                    own_key,
                                    parent,
                                    first.get_item(0)?,
                                    first.get_item(1)?,
                                    first.get_item(2)?,
                                ],
                            )?;
                            listed.set_item(at, &made)?;
                            made
                        }
                        Err(_) => unit.cast_into::<PyList>()?,
                    };
                    unit.append(index)?;
                    unit.append(span)?;
                    unit.append(key)?;
                }
            }
        }
        Ok(listed)
    }

    /// Decide the entries of `listed` from `start` on, in order, until one cannot be decided
    /// here. Returns 2 * the place of that entry (+1 when the first span of a two-span unit
    /// was decided and the second was not); 2 * len(listed) when all were.
    fn run(&self, py: Python<'_>, listed: &Bound<'_, PyList>, start: usize) -> PyResult<usize> {
        let (fixed, b) = self.parts()?;
        let count = listed.len();
        let mut at = start;
        while at < count {
            let entry = listed.get_item(at)?;
            if let Ok(alone) = entry.cast::<PyTuple>() {
                // (index, span, key, wait_key, own, own_key, complete, parent)
                let decided = self.one(
                    py,
                    fixed,
                    b,
                    &alone.get_item(0)?,
                    &alone.get_item(1)?,
                    &alone.get_item(2)?,
                    &alone.get_item(4)?,
                    &alone.get_item(5)?,
                    alone.get_item(6)?.is_truthy()?,
                    &alone.get_item(7)?,
                    false,
                )?;
                if matches!(decided, Outcome::Stop) {
                    return Ok(2 * at);
                }
            } else {
                let unit = entry.cast::<PyList>()?;
                if unit.len() >= 12 {
                    if !self.unit(py, fixed, b, unit)? {
                        return Ok(2 * at);
                    }
                    at += 1;
                    continue;
                }
                // own, own_key, parent, then index, span, key per span (two spans)
                let (own, own_key, parent) = (unit.get_item(0)?, unit.get_item(1)?, unit.get_item(2)?);
                for (half, first) in [(0usize, 3usize), (1, 6)] {
                    let decided = self.one(
                        py,
                        fixed,
                        b,
                        &unit.get_item(first)?,
                        &unit.get_item(first + 1)?,
                        &unit.get_item(first + 2)?,
                        &own,
                        &own_key,
                        true,
                        &parent,
                        false,
                    )?;
                    if matches!(decided, Outcome::Stop) {
                        return Ok(2 * at + half);
                    }
                }
            }
            at += 1;
        }
        Ok(2 * count)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(fixed) = &self.fixed {
            visit.call(&fixed.processor)?;
            visit.call(&fixed.plans)?;
            for field in &fixed.fallback_fields {
                visit.call(field)?;
            }
            visit.call(&fixed.known_class)?;
            visit.call(&fixed.span_edits)?;
            visit.call(&fixed.repaired_key)?;
            visit.call(&fixed.hop_key)?;
            visit.call(&fixed.no_fields)?;
            visit.call(&fixed.object_new)?;
        }
        if let Some(batch) = &self.batch {
            batch.visit(&visit)?;
        }
        // The memo is not visited: it holds strings, tuples, lists and sets of strings and
        // frozensets, which refer to nothing that could refer back to the kernel.
        Ok(())
    }

    fn __clear__(&mut self) {
        self.fixed = None;
        self.batch = None;
        let mut memo = self.memo.lock().unwrap();
        memo.plans.clear();
        memo.sets.clear();
    }
}
