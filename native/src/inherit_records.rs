//! The values inherit's ancestor table (ancestors.rs) keeps per entry, as native records: an
//! entry is a 4-byte place in `Records`, one record per distinct Known content (fields in
//! their order, hop, depth, fallback in its order), every string in it a place in `Strs`,
//! one per distinct string. A Known object is made again from its record when the table is
//! read (`known`), once per record per batch (`forget_made`): within a batch, spans asking
//! for one ancestor get one object, as the processor's units (keyed by the parent's
//! identity) need. Spans of a workflow mostly leave with equal fields, so the table keeps a
//! few records per workflow rather than a Known and a fields dict per span.
//!
//! A Known that is not all strings (a value of another type from the registry or a sender,
//! a depth that is not an int) is kept as the object itself, by identity, as before.
//! The Python class this mirrors is `ContextCache` (which keeps the objects): its answers
//! are equal in every attribute, and in the fields' order, to the ones the table gives.
//! Strings and records come off the network: SipHash (std's RandomState), never a fixed hash.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFrozenSet, PyInt, PyString};

pub type Slot = u32;
/// An entry that repairs nothing (two spans under its ids disagreed).
pub const DISPUTED: Slot = u32::MAX;
const ABSENT: u32 = u32::MAX;

/// Distinct strings, each with how many records name it.
#[derive(Default)]
struct Strs {
    objects: Vec<Option<(Py<PyString>, u32)>>,
    free: Vec<u32>,
    index: HashMap<Box<str>, u32>,
}

impl Strs {
    fn find(&self, text: &str) -> u32 {
        self.index.get(text).copied().unwrap_or(ABSENT)
    }

    fn intern(&mut self, text: &Bound<'_, PyString>) -> PyResult<u32> {
        let content = text.to_str()?;
        if let Some(&at) = self.index.get(content) {
            self.objects[at as usize].as_mut().unwrap().1 += 1;
            return Ok(at);
        }
        let entry = Some((text.clone().unbind(), 1));
        let at = match self.free.pop() {
            Some(at) => {
                self.objects[at as usize] = entry;
                at
            }
            None => {
                self.objects.push(entry);
                (self.objects.len() - 1) as u32
            }
        };
        self.index.insert(content.into(), at);
        Ok(at)
    }

    fn release(&mut self, py: Python<'_>, at: u32) {
        let entry = self.objects[at as usize].as_mut().unwrap();
        entry.1 -= 1;
        if entry.1 > 0 {
            return;
        }
        let (text, _) = self.objects[at as usize].take().unwrap();
        if let Ok(content) = text.bind(py).to_str() {
            self.index.remove(content);
        }
        self.free.push(at);
    }

    fn get<'py>(&self, py: Python<'py>, at: u32) -> &Bound<'py, PyString> {
        self.objects[at as usize].as_ref().unwrap().0.bind(py)
    }
}

enum Body {
    /// [hop, depth tag (0: None), depth low, depth high, fallback count, fallback...,
    /// then field, value per field]: places in `Strs`, but for the depth's words.
    Content(Arc<[u32]>),
    Object(Py<PyAny>),
}

struct Record {
    body: Body,
    refs: u32,
    /// The Known made (or put) for it in the current batch.
    made: Option<Py<PyAny>>,
}

/// A Known's parts read for its content (the strings not yet interned).
struct Parts<'py> {
    content: Vec<u32>,
    strings: Vec<(usize, Bound<'py, PyString>)>, // (place in content, the string)
}

fn push_str<'py>(parts: &mut Parts<'py>, strs: &Strs, text: Bound<'py, PyAny>) -> PyResult<bool> {
    let Ok(text) = text.cast_into_exact::<PyString>() else {
        return Ok(false);
    };
    let at = strs.find(text.to_str()?);
    parts.strings.push((parts.content.len(), text));
    parts.content.push(at);
    Ok(true)
}

fn read_parts<'py>(py: Python<'py>, strs: &Strs, known: &Bound<'py, PyAny>) -> PyResult<Option<Parts<'py>>> {
    let mut parts = Parts {
        content: Vec::with_capacity(32),
        strings: Vec::with_capacity(24),
    };
    if !push_str(&mut parts, strs, known.getattr(pyo3::intern!(py, "hop"))?)? {
        return Ok(None);
    }
    let depth = known.getattr(pyo3::intern!(py, "depth"))?;
    if depth.is_none() {
        parts.content.extend_from_slice(&[0, 0, 0]);
    } else {
        let Ok(depth) = depth.cast_exact::<PyInt>() else {
            return Ok(None); // a bool or an int subclass: kept as the object
        };
        let Ok(depth) = depth.extract::<i64>() else {
            return Ok(None);
        };
        let bits = depth as u64;
        parts.content.extend_from_slice(&[1, bits as u32, (bits >> 32) as u32]);
    }
    let fallback = known.getattr(pyo3::intern!(py, "fallback"))?;
    let Ok(fallback) = fallback.cast_into_exact::<PyFrozenSet>() else {
        return Ok(None);
    };
    parts.content.push(fallback.len() as u32);
    for field in fallback.iter() {
        if !push_str(&mut parts, strs, field)? {
            return Ok(None);
        }
    }
    let fields = known.getattr(pyo3::intern!(py, "fields"))?;
    let Ok(fields) = fields.cast_into_exact::<PyDict>() else {
        return Ok(None);
    };
    for (field, value) in fields.iter() {
        if !push_str(&mut parts, strs, field)? || !push_str(&mut parts, strs, value)? {
            return Ok(None);
        }
    }
    Ok(Some(parts))
}

/// The distinct records the table's entries name, with how many entries name each.
#[derive(Default)]
pub struct Records {
    records: Vec<Option<Record>>,
    free: Vec<Slot>,
    by_content: HashMap<Arc<[u32]>, Slot>,
    strs: Strs,
    /// The last Known put and its place: siblings are put one after another with one
    /// object, so most puts skip reading it. Cleared when the place is freed.
    last: Option<(Py<PyAny>, Slot)>,
    made: Vec<Slot>, // records with a Known made in this batch
    /// The class Known objects are made with; None: every Known is kept as the object.
    known_class: Option<Py<PyAny>>,
}

impl Records {
    pub fn new(known_class: Option<Py<PyAny>>) -> Self {
        Records {
            known_class,
            ..Records::default()
        }
    }

    fn place(&mut self, record: Record) -> Slot {
        match self.free.pop() {
            Some(slot) => {
                self.records[slot as usize] = Some(record);
                slot
            }
            None => {
                self.records.push(Some(record));
                (self.records.len() - 1) as Slot
            }
        }
    }

    /// A place for `known` (one more entry names it).
    pub fn intern(&mut self, py: Python<'_>, known: &Bound<'_, PyAny>) -> PyResult<Slot> {
        if let Some((last, slot)) = &self.last {
            if last.bind(py).is(known) {
                let slot = *slot;
                self.records[slot as usize].as_mut().unwrap().refs += 1;
                return Ok(slot);
            }
        }
        let parts = match self.known_class {
            Some(_) => read_parts(py, &self.strs, known)?,
            None => None,
        };
        let slot = match parts {
            None => self.place(Record {
                body: Body::Object(known.clone().unbind()),
                refs: 1,
                made: None,
            }),
            Some(parts) => {
                let found = if parts.content.contains(&ABSENT) {
                    None // a string never seen: no record has it
                } else {
                    self.by_content.get(parts.content.as_slice()).copied()
                };
                match found {
                    Some(slot) => {
                        let record = self.records[slot as usize].as_mut().unwrap();
                        record.refs += 1;
                        if record.made.is_none() {
                            // The object put stands for the record in this batch.
                            record.made = Some(known.clone().unbind());
                            self.made.push(slot);
                        }
                        slot
                    }
                    None => {
                        let mut content = parts.content;
                        for (at, text) in &parts.strings {
                            content[*at] = self.strs.intern(text)?;
                        }
                        let content: Arc<[u32]> = content.into();
                        // The object put stands for the record in this batch.
                        let slot = self.place(Record {
                            body: Body::Content(content.clone()),
                            refs: 1,
                            made: Some(known.clone().unbind()),
                        });
                        self.made.push(slot);
                        self.by_content.insert(content, slot);
                        slot
                    }
                }
            }
        };
        self.last = Some((known.clone().unbind(), slot));
        Ok(slot)
    }

    /// One entry fewer names the record at `slot` (DISPUTED: none).
    pub fn release(&mut self, py: Python<'_>, slot: Slot) {
        if slot == DISPUTED {
            return;
        }
        let record = self.records[slot as usize].as_mut().unwrap();
        record.refs -= 1;
        if record.refs > 0 {
            return;
        }
        let record = self.records[slot as usize].take().unwrap();
        if let Body::Content(content) = record.body {
            self.by_content.remove(&content);
            for at in string_places(&content) {
                self.strs.release(py, content[at]);
            }
        }
        if self.last.as_ref().is_some_and(|(_, s)| *s == slot) {
            self.last = None;
        }
        self.free.push(slot);
    }

    /// The Known of the record at `slot` (None: DISPUTED), made once per batch.
    pub fn known(&mut self, py: Python<'_>, slot: Slot) -> PyResult<Option<Py<PyAny>>> {
        if slot == DISPUTED {
            return Ok(None);
        }
        let record = self.records[slot as usize].as_ref().unwrap();
        if let Some(made) = &record.made {
            return Ok(Some(made.clone_ref(py)));
        }
        let content = match &record.body {
            Body::Object(known) => return Ok(Some(known.clone_ref(py))),
            Body::Content(content) => content.clone(),
        };
        let strs = &self.strs;
        let hop = strs.get(py, content[0]);
        let depth: Bound<'_, PyAny> = if content[1] == 0 {
            py.None().into_bound(py)
        } else {
            let bits = content[2] as u64 | ((content[3] as u64) << 32);
            (bits as i64).into_pyobject(py)?.into_any()
        };
        let count = content[4] as usize;
        let fallback = PyFrozenSet::new(py, content[5..5 + count].iter().map(|&at| strs.get(py, at)))?;
        let fields = PyDict::new(py);
        for pair in content[5 + count..].chunks_exact(2) {
            fields.set_item(strs.get(py, pair[0]), strs.get(py, pair[1]))?;
        }
        let class = self.known_class.as_ref().expect("content records need the class");
        let known = class.bind(py).call1((fields, hop, depth, fallback))?.unbind();
        self.records[slot as usize].as_mut().unwrap().made = Some(known.clone_ref(py));
        self.made.push(slot);
        Ok(Some(known))
    }

    /// A batch starts: the Known objects made for the last one are dropped (the records
    /// stay); a read makes them again.
    pub fn forget_made(&mut self) {
        for slot in self.made.drain(..) {
            if let Some(record) = self.records[slot as usize].as_mut() {
                record.made = None;
            }
        }
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.free.clear();
        self.by_content.clear();
        self.strs = Strs::default();
        self.last = None;
        self.made.clear();
    }

    /// Distinct records held (for tests and the memory figures).
    pub fn count(&self) -> usize {
        self.records.len() - self.free.len()
    }

    /// Bytes held natively: records, their content, the maps (the string objects are
    /// Python's: tracemalloc counts them where they were made).
    pub fn nbytes(&self) -> usize {
        let content: usize = self
            .records
            .iter()
            .flatten()
            .map(|r| match &r.body {
                Body::Content(c) => c.len() * 4 + 16,
                Body::Object(_) => 0,
            })
            .sum();
        let texts: usize = self.strs.index.keys().map(|k| k.len()).sum();
        fn map_bytes(capacity: usize, slot: usize) -> usize {
            capacity * 8 / 7 * (slot + 1)
        }
        self.records.capacity() * std::mem::size_of::<Option<Record>>()
            + self.free.capacity() * 4
            + map_bytes(self.by_content.capacity(), std::mem::size_of::<(Arc<[u32]>, Slot)>())
            + content
            + self.strs.objects.capacity() * std::mem::size_of::<Option<(Py<PyString>, u32)>>()
            + self.strs.free.capacity() * 4
            + map_bytes(self.strs.index.capacity(), std::mem::size_of::<(Box<str>, u32)>())
            + texts
    }

    /// Every Python object held, for the garbage collector and memory walks.
    pub fn objects(&self) -> impl Iterator<Item = &Py<PyAny>> {
        let records = self.records.iter().flatten().flat_map(|r| {
            let body = match &r.body {
                Body::Object(known) => Some(known),
                Body::Content(_) => None,
            };
            body.into_iter().chain(r.made.iter())
        });
        records
            .chain(self.last.iter().map(|(known, _)| known))
            .chain(self.known_class.iter())
    }

    pub fn strings(&self) -> impl Iterator<Item = &Py<PyString>> {
        self.strs.objects.iter().flatten().map(|(text, _)| text)
    }
}

/// The places in a record's content that name strings (all but the depth's three words).
fn string_places(content: &[u32]) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(5..content.len())
}
