//! The envelope processor's per-span reading and schema stamp, in one call per batch. The
//! Python equivalent (the fallback and the oracle) is
//! `costctx.processors.envelope.shapes.read_shapes`; every rule here is written there first.
//! What each shape means (outcome codes, missing fields, readiness) stays in Python: this
//! only reads keys, notes and values into a small per-batch shape id, counts spans per
//! (resource, depth, shape) and stamps the schema into the span's edits.

use std::collections::HashMap;

use pyo3::prelude::*;

use crate::fxhash::FxBuild;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyList, PySet, PyString, PyTuple};

fn strings<'py>(item: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyString>>> {
    item.try_iter()?.map(|key| Ok(key?.cast_into::<PyString>()?)).collect()
}

/// `_present` in shapes.py: a value there, not None, not EMPTY, not "".
fn present(value: Option<&Bound<'_, PyAny>>, empty: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Some(value) = value else { return Ok(false) };
    if value.is_none() || value.is(empty) {
        return Ok(false);
    }
    if let Ok(text) = value.cast_exact::<PyString>() {
        return Ok(text.len()? > 0);
    }
    // The decoded scalars never equal "": no rich comparison for them (the usual extras).
    if value.is_exact_instance_of::<PyInt>()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<pyo3::types::PyBool>()
    {
        return Ok(true);
    }
    Ok(!value.eq("")?)
}

/// A span's start or end (an int): as i64 when it fits (no 128-bit conversion), else i128.
fn time_of(value: &Bound<'_, PyAny>) -> PyResult<i128> {
    match value.extract::<i64>() {
        Ok(small) => Ok(small as i128),
        Err(_) => value.extract::<i128>(),
    }
}

extern "C" {
    // CPython's own walk over a set's table (Include/cpython/setobject.h; pyo3-ffi skips it):
    // borrowed members, no iterator object made.
    fn _PySet_NextEntry(
        set: *mut pyo3::ffi::PyObject,
        pos: *mut pyo3::ffi::Py_ssize_t,
        key: *mut *mut pyo3::ffi::PyObject,
        hash: *mut pyo3::ffi::Py_hash_t,
    ) -> std::os::raw::c_int;
}

/// Each member of a set, borrowed (what iterating it gives, without an iterator object and a
/// call per member: a span's note sets are walked once per span).
fn set_members(set: &Bound<'_, PySet>, mut each: impl FnMut(*mut pyo3::ffi::PyObject)) {
    let mut position: pyo3::ffi::Py_ssize_t = 0;
    let mut member: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    let mut hash: pyo3::ffi::Py_hash_t = 0;
    // SAFETY: the GIL is held (a Bound), `set` is a set and stays alive; the members are
    // borrowed, valid while the set is not changed, which `each` does not do (no Python code).
    while unsafe { _PySet_NextEntry(set.as_ptr(), &mut position, &mut member, &mut hash) } != 0 {
        each(member);
    }
}

/// `key in notes` for one note set (a set, or any container a caller put there).
fn noted(set: &Option<Bound<'_, PyAny>>, key: &Bound<'_, PyString>) -> PyResult<bool> {
    match set {
        None => Ok(false),
        Some(set) => match set.cast::<PySet>() {
            Ok(set) => set.contains(key),
            Err(_) => set.contains(key),
        },
    }
}

/// A span's non-empty renamed, repaired and conflict note sets (`names`, in that order), in
/// one pass over its notes dict (one or two entries) rather than a lookup per name: a name
/// matched by object (the literals writers use are interned, as `names` are), else by text.
#[allow(clippy::type_complexity)]
fn note_sets<'py>(
    py: Python<'py>,
    found: &Bound<'py, PyDict>,
    names: [&Bound<'py, PyString>; 3],
) -> PyResult<(
    Option<Bound<'py, PyAny>>,
    Option<Bound<'py, PyAny>>,
    Option<Bound<'py, PyAny>>,
)> {
    let mut sets: [Option<Bound<'py, PyAny>>; 3] = [None, None, None];
    crate::budget::dict_items(found, |key, value| {
        // SAFETY: a live key and value of `found` (borrowed), the GIL held: new references.
        let (key, value) = unsafe { (Bound::from_borrowed_ptr(py, key), Bound::from_borrowed_ptr(py, value)) };
        let at = names.iter().position(|name| key.is(*name)).or_else(|| {
            let text = key.cast::<PyString>().ok()?.to_str().ok()?;
            names.iter().position(|name| name.to_str().is_ok_and(|n| n == text))
        });
        if let Some(at) = at {
            sets[at] = Some(value);
        }
    });
    // `found.get(name) or _NONE` in shapes.py: an empty set (or other falsy value) is none
    // (asked after the walk: a container's own __len__ may run Python code).
    for set in sets.iter_mut() {
        let truthy = match set {
            None => continue,
            Some(value) => match value.cast::<PySet>() {
                Ok(set) => !set.is_empty(),
                Err(_) => value.is_truthy().unwrap_or(true),
            },
        };
        if !truthy {
            *set = None;
        }
    }
    let [renamed, repaired, conflict] = sets;
    Ok((renamed, repaired, conflict))
}

/// A span's cost in pico-USD: none (unusable), an exact small amount, or `pico`'s own answer.
enum Pico<'py> {
    None,
    Small(i128),
    Big(Bound<'py, PyAny>),
}

/// `_cost_pico_value` in processor.py for the common values (a finite double >= 0 whose
/// pico-USD fits an i64, an int >= 0 below 2^63 / 10^12); anything else asks `pico` itself.
fn cost_pico<'py>(value: &Bound<'py, PyAny>, pico: &Bound<'py, PyAny>) -> PyResult<Pico<'py>> {
    if let Ok(double) = value.cast_exact::<PyFloat>() {
        let v = double.value();
        if !v.is_finite() || v < 0.0 {
            return Ok(Pico::None);
        }
        let scaled = v * 1e12;
        if scaled < 9.0e18 {
            // Python's round() of a double: to the nearest integer, ties to even, exact.
            return Ok(Pico::Small(scaled.round_ties_even() as i64 as i128));
        }
    } else if value.is_exact_instance_of::<PyInt>() {
        if let Ok(n) = value.extract::<i64>() {
            if (0..9_000_000).contains(&n) {
                return Ok(Pico::Small(n as i128 * 1_000_000_000_000));
            }
            if n < 0 {
                return Ok(Pico::None);
            }
        }
    } else {
        return Ok(Pico::None);
    }
    let amount = pico.call1((value,))?;
    Ok(if amount.is_none() {
        Pico::None
    } else {
        Pico::Big(amount)
    })
}

/// A spend tally's pico-USD sum: in Rust while every amount is a small one, else a Python int.
enum Total<'py> {
    Small(i128),
    Big(Bound<'py, PyAny>),
}

impl<'py> Total<'py> {
    fn add(&mut self, py: Python<'py>, amount: Pico<'py>) -> PyResult<()> {
        *self = match (&*self, amount) {
            (_, Pico::None) => return Ok(()),
            (Total::Small(sum), Pico::Small(n)) => Total::Small(sum + n),
            (Total::Small(sum), Pico::Big(n)) => Total::Big(sum.into_pyobject(py)?.into_any().add(n)?),
            (Total::Big(sum), Pico::Small(n)) => Total::Big(sum.add(n)?),
            (Total::Big(sum), Pico::Big(n)) => Total::Big(sum.add(n)?),
        };
        Ok(())
    }

    fn object(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            Total::Small(sum) => sum.into_pyobject(py)?.into_any(),
            Total::Big(sum) => sum,
        })
    }
}

/// The batch's tally keys' strings (workflow names, dimension values) numbered by value, as
/// a dict's keys compare (equal text, one number): by object first, by value when new.
/// Every object numbered is held for the call, so its address names it.
struct Texts<'py> {
    by_object: HashMap<usize, usize, FxBuild>,
    by_value: Bound<'py, PyDict>,
    first: Vec<Bound<'py, PyAny>>,
    held: Vec<Bound<'py, PyAny>>,
}

/// Stands for None among the numbers.
const NO_TEXT: usize = usize::MAX;

impl<'py> Texts<'py> {
    fn new(py: Python<'py>) -> Self {
        Texts {
            by_object: HashMap::default(),
            by_value: PyDict::new(py),
            first: Vec::new(),
            held: Vec::new(),
        }
    }

    /// The number of a non-empty str value, NO_TEXT for any other (`text_or_none`'s None).
    fn number(&mut self, value: Option<&Bound<'py, PyAny>>) -> PyResult<usize> {
        let Some(value) = value else { return Ok(NO_TEXT) };
        if let Some(n) = self.by_object.get(&(value.as_ptr() as usize)) {
            return Ok(*n);
        }
        let n = if !value.is_exact_instance_of::<PyString>() || value.len()? == 0 {
            NO_TEXT
        } else {
            match self.by_value.get_item(value)? {
                Some(n) => n.extract()?,
                None => {
                    self.by_value.set_item(value, self.first.len())?;
                    self.first.push(value.clone());
                    self.first.len() - 1
                }
            }
        };
        self.by_object.insert(value.as_ptr() as usize, n);
        self.held.push(value.clone());
        Ok(n)
    }

    fn object(&self, n: usize, none: &Bound<'py, PyAny>) -> Bound<'py, PyAny> {
        if n == NO_TEXT {
            none.clone()
        } else {
            self.first[n].clone()
        }
    }
}

/// `_present` of a scanned value: not EMPTY and not "" (any other value is present).
fn value_present(value: &crate::scan::Value) -> bool {
    match value {
        crate::scan::Value::Empty => false,
        crate::scan::Value::Str(range) => range.len > 0,
        _ => true,
    }
}

/// What a watched key is to this pass: the value slots it fills, the context field it is
/// (for notes), whether it marks a model call.
#[derive(Default)]
struct Role {
    slots: Vec<usize>,
    field: Option<usize>,
    marker: bool,
}

/// `present` of a dict's value where no Python code runs (None, EMPTY, exact str, int, float,
/// bool): Some(answer), else None (the caller keeps the value and asks `present` later).
///
/// # Safety
/// `value` is a live object and the GIL is held.
unsafe fn present_now(value: *mut pyo3::ffi::PyObject, empty: *mut pyo3::ffi::PyObject) -> Option<bool> {
    use pyo3::ffi;
    if value == ffi::Py_None() || value == empty {
        return Some(false);
    }
    if ffi::PyUnicode_CheckExact(value) != 0 {
        return Some(ffi::PyUnicode_GetLength(value) > 0);
    }
    if ffi::PyLong_CheckExact(value) != 0 || ffi::PyFloat_CheckExact(value) != 0 || ffi::PyBool_Check(value) != 0 {
        return Some(true);
    }
    None
}

/// One walk over a span's attrs dict (not a lookup per key read): each value into the slots of
/// its key's role. A field's or extra's slot (below `marks_below`) takes `marks`' present or
/// blank mark where the value's presence is known without Python code (no reference to the
/// value kept: its object is read, not written), else the value. Returns whether a key marks
/// the span as a model call.
fn fill_from_dict<'py, 'r>(
    py: Python<'py>,
    attrs: &Bound<'py, PyDict>,
    seen: &mut HashMap<usize, Option<&'r Role>, FxBuild>,
    roles: &'r HashMap<&str, Role, FxBuild>,
    slots: &mut [Option<Bound<'py, PyAny>>],
    marks_below: usize,
    marks: (&Bound<'py, PyAny>, &Bound<'py, PyAny>),
) -> bool {
    let mut is_llm = false;
    let (present_mark, blank_mark) = marks;
    let empty = blank_mark.as_ptr();
    crate::budget::dict_items(attrs, |name, value| {
        let role = match seen.get(&(name as usize)) {
            Some(role) => *role,
            // SAFETY: a live key of `attrs` (borrowed), the GIL held.
            None => role_of(seen, roles, unsafe { &Bound::from_borrowed_ptr(py, name) }),
        };
        if let Some(role) = role {
            is_llm |= role.marker;
            for at in &role.slots {
                // SAFETY: a live value of `attrs` (borrowed), the GIL held.
                let known = match *at < marks_below {
                    true => unsafe { present_now(value, empty) },
                    false => None,
                };
                slots[*at] = Some(match known {
                    Some(true) => present_mark.clone(),
                    Some(false) => blank_mark.clone(),
                    // SAFETY: as above: a new reference to it.
                    None => unsafe { Bound::from_borrowed_ptr(py, value) },
                });
            }
        }
    });
    is_llm
}

/// The role of a key (or note member), by its address first, by its text when new.
fn role_of<'r>(
    seen: &mut HashMap<usize, Option<&'r Role>, FxBuild>,
    roles: &'r HashMap<&str, Role, FxBuild>,
    name: &Bound<'_, PyAny>,
) -> Option<&'r Role> {
    let at = name.as_ptr() as usize;
    if let Some(role) = seen.get(&at) {
        return *role; // the usual case: a key (or note member) met before in this call
    }
    *seen.entry(at).or_insert_with(|| {
        let text = name.cast::<PyString>().ok()?.to_str().ok()?;
        roles.get(text)
    })
}

/// The hop depth as a count key: an exact int (bool is not one), else none.
#[derive(Hash, PartialEq, Eq)]
enum Depth {
    None,
    Small(i64),
    Big(String),
}

/// See `costctx.processors.envelope.shapes.read_shapes` (same arguments, same result): each
/// span's watched values come as a row (`rows[index]`, a tuple of values or None, in the order
/// of `row_keys`: api.py `attr_values`), its resource, start and end from `columns`; or, with
/// `columns` None, `rows` is a list of views already made, read as they are.
#[pyfunction]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn read_shapes<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyAny>,
    row_keys: &Bound<'py, PyTuple>,
    columns: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    notes: &Bound<'py, PyDict>,
    edits: &Bound<'py, PyDict>,
    keys: &Bound<'py, PyTuple>,
    empty: &Bound<'py, PyAny>,
    stamp: &Bound<'py, PyTuple>,
    pico: &Bound<'py, PyAny>,
) -> PyResult<(
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyDict>,
    Bound<'py, PyDict>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
)> {
    let columns: Option<[Bound<'py, PyAny>; 3]> = match columns.is_none() {
        true => None,
        false => Some([columns.get_item(0)?, columns.get_item(1)?, columns.get_item(2)?]),
    };
    let (attrs_name, resource_name) = (pyo3::intern!(py, "attrs"), pyo3::intern!(py, "resource"));
    let (start_name, end_name) = (pyo3::intern!(py, "start"), pyo3::intern!(py, "end"));
    // A span's int field: from its column, or from its view.
    let field = |item: &Bound<'py, PyAny>, at: usize, which: usize, name: &Bound<'py, PyString>| match &columns {
        Some(columns) => columns[which].get_item(at),
        None => item.getattr(name),
    };
    let fields = strings(&keys.get_item(0)?)?;
    let extras = strings(&keys.get_item(1)?)?;
    let markers = strings(&keys.get_item(2)?)?;
    let depth_key = keys.get_item(3)?.cast_into::<PyString>()?;
    let cost_key = keys.get_item(4)?.cast_into::<PyString>()?;
    let dimensions = strings(&keys.get_item(5)?)?;
    let workflow_key = keys.get_item(6)?.cast_into::<PyString>()?;
    let tenant_key = keys.get_item(7)?.cast_into::<PyString>()?;
    let schema_key = stamp.get_item(0)?.cast_into::<PyString>()?;
    let schema = stamp.get_item(1)?;
    let note_names = [
        pyo3::intern!(py, "renamed"),
        pyo3::intern!(py, "repaired"),
        pyo3::intern!(py, "conflict"),
    ];
    let (replace_name, sets_name) = (pyo3::intern!(py, "replace"), pyo3::intern!(py, "sets"));

    // Per span results gathered in Rust, made into lists once at the end (no list growth
    // per append).
    let mut ids: Vec<usize> = Vec::with_capacity(indices.len().unwrap_or(0));
    let shapes = PyList::empty(py);
    // The llm and spend tallies, by numbers (Texts), in order of first appearance: made into
    // dicts once at the end, not a tuple key and a dict update per span.
    let mut texts = Texts::new(py);
    let mut llm_at: HashMap<(usize, usize, bool), usize, FxBuild> =
        HashMap::with_capacity_and_hasher(32, FxBuild::default());
    let mut llm_rows: Vec<((usize, usize, bool), usize)> = Vec::new();
    // Spend tallies by (workflow, dimension values' number, tenant repaired): each distinct
    // list of dimension numbers numbered once, looked up by slice (no Vec made per span).
    let mut dims_at: HashMap<Vec<usize>, usize, FxBuild> = HashMap::default();
    let mut dim_lists: Vec<Vec<usize>> = Vec::new();
    let mut dims: Vec<usize> = Vec::new();
    let mut spend_at: HashMap<(usize, usize, bool), usize, FxBuild> =
        HashMap::with_capacity_and_hasher(32, FxBuild::default());
    let mut spend_rows: Vec<((usize, usize, bool), Total<'py>, usize)> = Vec::new();
    let mut to_stamp: Vec<Bound<'py, PyAny>> = Vec::new();
    let mut appended: Vec<Bound<'py, PyAny>> = Vec::new();
    let mut slow: Vec<Bound<'py, PyAny>> = Vec::new();
    let mut shape_ids: HashMap<Vec<u8>, usize, FxBuild> = HashMap::with_capacity_and_hasher(32, FxBuild::default());
    let mut count_at: HashMap<(i64, Depth, usize), usize, FxBuild> =
        HashMap::with_capacity_and_hasher(64, FxBuild::default());
    let mut counts: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>, usize, usize)> = Vec::new();
    let mut key: Vec<u8> = Vec::with_capacity(fields.len() + 1 + extras.len());
    if fields.len() > 64 {
        return Err(pyo3::exceptions::PyValueError::new_err("at most 64 context fields"));
    }
    // Slots: fields, extras, dimensions, then depth, cost, schema, workflow.
    let extra_at = fields.len();
    let dim_at = extra_at + extras.len();
    let (depth_at, cost_at, schema_at, workflow_at) = (
        dim_at + dimensions.len(),
        dim_at + dimensions.len() + 1,
        dim_at + dimensions.len() + 2,
        dim_at + dimensions.len() + 3,
    );
    let mut roles: HashMap<&str, Role, FxBuild> = HashMap::default();
    let groups: [(&[Bound<'py, PyString>], usize); 3] = [(&fields, 0), (&extras, extra_at), (&dimensions, dim_at)];
    for (names, base) in groups {
        for (at, name) in names.iter().enumerate() {
            roles.entry(name.to_str()?).or_default().slots.push(base + at);
        }
    }
    for (at, name) in fields.iter().enumerate() {
        roles
            .get_mut(name.to_str()?)
            .expect("added above")
            .field
            .get_or_insert(at);
    }
    for (at, name) in [
        (depth_at, &depth_key),
        (cost_at, &cost_key),
        (schema_at, &schema_key),
        (workflow_at, &workflow_key),
    ] {
        roles.entry(name.to_str()?).or_default().slots.push(at);
    }
    for name in &markers {
        roles.entry(name.to_str()?).or_default().marker = true;
    }
    // Keys and note members by object (the codec interns a batch's keys): a string looked up
    // by its text once per call. Every object seen stays alive for the call (attrs and notes
    // only gain entries here), so its address names it.
    // (Sized for a batch's usual distinct keys: no regrowth mid-call.)
    let mut seen: HashMap<usize, Option<&Role>, FxBuild> = HashMap::with_capacity_and_hasher(256, FxBuild::default());
    // The role of each row position, by the row key's text.
    let row_keys: Vec<Bound<'py, PyAny>> = row_keys.iter().collect();
    let row_roles: Vec<Option<&Role>> = row_keys.iter().map(|name| role_of(&mut seen, &roles, name)).collect();
    let mut slots: Vec<Option<Bound<'py, PyAny>>> = vec![None; workflow_at + 1];
    let none = py.None().into_bound(py);
    let check_notes = !notes.is_empty();
    // The native codec's lazy list itself: records read where no view is made, a value made
    // into an object only where one is read (a field's or extra's presence needs none).
    let list = rows.cast::<crate::view::SpanList>().ok();
    let mut reading = list.as_ref().map(|list| crate::view::Reading::new(py, list.get()));
    let present_mark = pyo3::types::PyBool::new(py, true).to_owned().into_any();
    let marks = (&present_mark, empty);

    for index in indices.try_iter()? {
        let index = index?;
        let at_index = index.extract::<usize>()?;
        let mut item: Option<Bound<'py, PyAny>> = None;
        let mut read_fields: Option<(usize, i128, i128)> = None;
        let (mut renamed, mut repaired, mut conflict) = (None, None, None);
        if check_notes {
            if let Some(found) = notes.get_item(&index)? {
                if found.is_truthy()? {
                    (renamed, repaired, conflict) = note_sets(py, &found.cast_into::<PyDict>()?, note_names)?;
                }
            }
        }
        // One walk over the span's row (values present only): each value to the slot of
        // every role its key has.
        slots.iter_mut().for_each(|slot| *slot = None);
        let mut is_llm = false;
        if let Some(reading) = reading.as_mut() {
            let source = reading.span(at_index)?;
            read_fields = Some(source.fields());
            match source {
                crate::view::Source::Dict { attrs, .. } => {
                    is_llm |= fill_from_dict(py, &attrs, &mut seen, &roles, &mut slots, dim_at, marks);
                }
                crate::view::Source::Record {
                    rec, keys, mut maker, ..
                } => {
                    for (id, value) in &rec.attrs {
                        let key = keys[*id as usize].bind(py).as_any();
                        let role = match seen.get(&(key.as_ptr() as usize)) {
                            Some(role) => *role,
                            None => role_of(&mut seen, &roles, key),
                        };
                        let Some(role) = role else { continue };
                        is_llm |= role.marker;
                        let mut made: Option<Bound<'py, PyAny>> = None;
                        for at in &role.slots {
                            slots[*at] = Some(if *at < dim_at {
                                // a field or extra: only whether its value is present is read
                                match value_present(value) {
                                    true => present_mark.clone(),
                                    false => empty.clone(),
                                }
                            } else {
                                match &made {
                                    Some(object) => object.clone(),
                                    None => {
                                        let object = maker.value(value)?;
                                        made = Some(object.clone());
                                        object
                                    }
                                }
                            });
                        }
                    }
                }
            }
        } else if columns.is_some() {
            let found = rows.get_item(at_index)?;
            let row = found.cast::<PyTuple>()?;
            if row.len() != row_roles.len() {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "a row's length is not row_keys'",
                ));
            }
            for (value, role) in row.iter().zip(&row_roles) {
                if value.is_none() {
                    continue;
                }
                if let Some(role) = role {
                    is_llm |= role.marker;
                    for at in &role.slots {
                        slots[*at] = Some(value.clone());
                    }
                }
            }
        } else {
            // A view: one walk over its watched attrs (not a lookup per key read).
            let found = rows.get_item(at_index)?;
            let attrs = found.getattr(attrs_name)?.cast_into::<PyDict>()?;
            item = Some(found);
            is_llm |= fill_from_dict(py, &attrs, &mut seen, &roles, &mut slots, dim_at, marks);
        }
        // Notes: each note set's (few) members mapped to fields, not a lookup per field.
        let mut bits = [0u8; 64];
        for (set, bit) in [(&renamed, 2u8), (&repaired, 4u8), (&conflict, 8u8)] {
            if let Some(set) = set {
                let mut mark = |member: &Bound<'py, PyAny>| {
                    if let Some(at) = role_of(&mut seen, &roles, member).and_then(|role| role.field) {
                        bits[at] |= bit;
                    }
                };
                match set.cast::<PySet>() {
                    // SAFETY: a live member of `set` (borrowed), the GIL held: no reference taken.
                    Ok(set) => set_members(set, |member| mark(&*unsafe { pyo3::Borrowed::from_ptr(py, member) })),
                    Err(_) => {
                        for member in set.try_iter()? {
                            mark(&member?);
                        }
                    }
                }
            }
        }
        key.clear();
        for at in 0..fields.len() {
            key.push(present(slots[at].as_ref(), empty)? as u8 | bits[at]);
        }
        key.push(is_llm as u8);
        if is_llm {
            for at in 0..extras.len() {
                key.push(present(slots[extra_at + at].as_ref(), empty)? as u8);
            }
        }
        let id = match shape_ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = shape_ids.len();
                shape_ids.insert(key.clone(), id);
                shapes.append(PyBytes::new(py, &key))?;
                id
            }
        };
        ids.push(id);

        let (resource, resource_object) = match &read_fields {
            Some((resource, _, _)) => (*resource as i64, None),
            None => {
                let object = field(item.as_ref().unwrap_or(&none), at_index, 0, resource_name)?;
                (object.extract::<i64>()?, Some(object))
            }
        };
        let depth_value = slots[depth_at].clone();
        let (depth, depth_object) = match depth_value {
            Some(value) if value.is_exact_instance_of::<PyInt>() => match value.extract::<i64>() {
                Ok(small) => (Depth::Small(small), value),
                Err(_) => (Depth::Big(value.str()?.to_string()), value),
            },
            _ => (Depth::None, none.clone()),
        };
        let count_key = (resource, depth, id);
        match count_at.get(&count_key) {
            Some(at) => counts[*at].3 += 1,
            None => {
                count_at.insert(count_key, counts.len());
                let resource = match resource_object {
                    Some(object) => object,
                    None => resource.into_pyobject(py)?.into_any(),
                };
                counts.push((resource, depth_object, id, 1));
            }
        }
        let cost = slots[cost_at].clone().filter(|cost| !cost.is_none());
        if is_llm || cost.is_some() {
            let workflow = texts.number(slots[workflow_at].as_ref())?;
            if is_llm {
                let (start, end): (i128, i128) = match &read_fields {
                    Some((_, start, end)) => (*start, *end),
                    None => (
                        time_of(&field(item.as_ref().unwrap_or(&none), at_index, 1, start_name)?)?,
                        time_of(&field(item.as_ref().unwrap_or(&none), at_index, 2, end_name)?)?,
                    ),
                };
                let tally = (workflow, id, 0 < start && start <= end);
                match llm_at.get(&tally) {
                    Some(at) => llm_rows[*at].1 += 1,
                    None => {
                        llm_at.insert(tally, llm_rows.len());
                        llm_rows.push((tally, 1));
                    }
                }
            }
            if let Some(cost) = cost {
                let amount = cost_pico(&cost, pico)?;
                if !matches!(amount, Pico::None) {
                    dims.clear();
                    for at in 0..dimensions.len() {
                        dims.push(texts.number(slots[dim_at + at].as_ref())?);
                    }
                    let dims_id = match dims_at.get(dims.as_slice()) {
                        Some(id) => *id,
                        None => {
                            dims_at.insert(dims.clone(), dim_lists.len());
                            dim_lists.push(dims.clone());
                            dim_lists.len() - 1
                        }
                    };
                    let tally = (workflow, dims_id, noted(&repaired, &tenant_key)?);
                    let at = match spend_at.get(&tally) {
                        Some(at) => *at,
                        None => {
                            spend_at.insert(tally, spend_rows.len());
                            spend_rows.push((tally, Total::Small(0), 0));
                            spend_rows.len() - 1
                        }
                    };
                    let row = &mut spend_rows[at];
                    row.1.add(py, amount)?;
                    row.2 += 1;
                }
            }
        }

        // The schema stamp, as ViewBatch.set would write it (the caller keeps attrs in step).
        let stamped = match slots[schema_at].clone() {
            Some(value) => value.is(&schema) || value.eq(&schema)?,
            None => false,
        };
        if !stamped {
            match edits.get_item(&index)? {
                None => to_stamp.push(index),
                Some(own) if own.getattr(replace_name)?.is_none() => {
                    own.getattr(sets_name)?.cast_into::<PyList>()?.append(stamp)?;
                    appended.push(index);
                }
                Some(_) => slow.push(index),
            }
        }
    }
    let counted = PyList::empty(py);
    for (resource, depth, id, n) in counts {
        counted.append((resource, depth, id, n))?;
    }
    let llm = PyDict::new(py);
    for ((workflow, id, timed), n) in llm_rows {
        llm.set_item((texts.object(workflow, &none), id, timed), n)?;
    }
    let spend = PyDict::new(py);
    for ((workflow, dims_id, tenant), total, n) in spend_rows {
        let dims = PyTuple::new(py, dim_lists[dims_id].iter().map(|at| texts.object(*at, &none)))?;
        let row = PyList::new(py, [total.object(py)?, n.into_pyobject(py)?.into_any()])?;
        spend.set_item((texts.object(workflow, &none), dims, tenant), row)?;
    }
    let ids = PyList::new(py, ids)?;
    let (to_stamp, appended, slow) = (
        PyList::new(py, to_stamp)?,
        PyList::new(py, appended)?,
        PyList::new(py, slow)?,
    );
    Ok((ids, shapes, counted, llm, spend, to_stamp, appended, slow))
}

/// A span's current value of `key`, as api.py `attr_values_at` reads it (None when absent):
/// a made view's or read attrs' own, else the record's (the last occurrence stands).
fn current_value<'py>(
    py: Python<'py>,
    source: crate::view::Source<'_, 'py>,
    key: &Bound<'py, PyString>,
    text: &str,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match source {
        crate::view::Source::Dict { attrs, .. } => attrs.get_item(key),
        crate::view::Source::Record {
            rec, keys, mut maker, ..
        } => match crate::view::last_attr(py, rec, keys, text) {
            Some(value) => Ok(Some(maker.value(value)?)),
            None => Ok(None),
        },
    }
}

/// See `costctx.processors.envelope.missing.missing_groups` (same arguments, same result).
#[pyfunction]
pub fn missing_groups<'py>(
    py: Python<'py>,
    spans: &Bound<'py, PyAny>,
    indices: &Bound<'py, PyAny>,
    ids: &Bound<'py, PyAny>,
    missing: &Bound<'py, PyList>,
    key: &Bound<'py, PyString>,
    own: &Bound<'py, PyDict>,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyList>)> {
    let groups = PyDict::new(py);
    let slow = PyList::empty(py);
    // per shape id: its missing names (a tuple), or None
    let wanted: Vec<Option<Bound<'py, PyTuple>>> = missing
        .iter()
        .map(|item| {
            if item.is_none() {
                Ok(None)
            } else {
                Ok(Some(item.cast_into::<PyTuple>()?))
            }
        })
        .collect::<PyResult<_>>()?;
    let text = key.to_str()?;
    let list = spans.cast::<crate::view::SpanList>().ok();
    let mut reading = list.as_ref().map(|list| crate::view::Reading::new(py, list.get()));
    let mut ids = ids.try_iter()?;
    for index in indices.try_iter()? {
        let index = index?;
        let id: usize = ids
            .next()
            .ok_or_else(|| pyo3::exceptions::PyValueError::new_err("fewer ids than indices"))??
            .extract()?;
        let Some(Some(names)) = wanted.get(id) else {
            if id >= wanted.len() {
                return Err(pyo3::exceptions::PyIndexError::new_err("a shape id past `missing`"));
            }
            continue;
        };
        let at = index.extract::<usize>()?;
        let current = match reading.as_mut() {
            Some(reading) => current_value(py, reading.span(at)?, key, text)?,
            None => {
                let attrs = spans.get_item(at)?.getattr(pyo3::intern!(py, "attrs"))?;
                attrs.cast_into::<PyDict>()?.get_item(key)?
            }
        };
        let value: Bound<'py, PyTuple> = match current {
            None => names.clone(),
            Some(current) => {
                let array = current.cast_exact::<PyList>().ok();
                let mut items: Vec<Bound<'py, PyAny>> = Vec::new();
                if let Some(array) = &array {
                    for item in array.iter() {
                        if item.is_exact_instance_of::<PyString>() {
                            items.push(item);
                        }
                    }
                }
                let existing = items.len();
                for name in names.iter() {
                    let mut among = false;
                    for item in &items[..existing] {
                        if item.eq(&name)? {
                            among = true;
                            break;
                        }
                    }
                    if !among {
                        items.push(name);
                    }
                }
                if items.len() == existing && array.is_some() {
                    continue; // its array holds every name already
                }
                PyTuple::new(py, items)?
            }
        };
        if let Some(edit) = own.get_item(&index)? {
            if !edit.getattr(pyo3::intern!(py, "replace"))?.is_none() {
                slow.append(PyTuple::new(py, [index.clone(), value.into_any()])?)?;
                continue;
            }
        }
        match groups.get_item(&value)? {
            Some(found) => found.cast_into::<PyList>()?.append(&index)?,
            None => groups.set_item(&value, PyList::new(py, [&index])?)?,
        }
    }
    if ids.next().is_some() {
        return Err(pyo3::exceptions::PyValueError::new_err("more ids than indices"));
    }
    Ok((groups, slow))
}
