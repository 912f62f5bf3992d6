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
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFrozenSet, PyInt, PyString, PyType};
use pyo3::{ffi, Borrowed};

use crate::fxhash::FxBuild;
use crate::slots::SlotLayout;

/// Known's slots in a SlotLayout made of ["fields", "hop", "depth", "fallback"], by place.
const FIELDS: usize = 0;
const HOP: usize = 1;
const DEPTH: usize = 2;
const FALLBACK: usize = 3;

/// `known.<name at>`: at its offset when `slots` has the layout, else getattr.
fn known_attr<'py>(slots: &Option<SlotLayout>, known: &Bound<'py, PyAny>, at: usize) -> PyResult<Bound<'py, PyAny>> {
    match slots {
        Some(slots) => slots.get(known, at),
        None => known.getattr(["fields", "hop", "depth", "fallback"][at]),
    }
}

pub type Slot = u32;
/// An entry that repairs nothing (two spans under its ids disagreed).
pub const DISPUTED: Slot = u32::MAX;
const ABSENT: u32 = u32::MAX;
/// Aliases kept at most (a caller that never marks batches: forgotten then).
const MAX_ALIASES: usize = 4096;

/// A hasher for keys that are already hashes (Python's str hash: SipHash with the process's
/// random key, cached in the string object): passed through, not hashed again.
#[derive(Default, Clone, Copy)]
struct Hashed(u64);

impl Hasher for Hashed {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8) | byte as u64; // not used: keys are written as one u64
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Distinct strings, each with how many records name it.
#[derive(Default)]
struct Strs {
    objects: Vec<Option<(Py<PyString>, u32)>>,
    hashes: Vec<u64>, // by place: Python's hash of the text
    free: Vec<u32>,
    /// Python's hash of the text -> its place; texts whose hash another text took first are
    /// in `collided`, by text (SipHash: randomized, so collisions are chance, not chosen).
    index: HashMap<u64, u32, BuildHasherDefault<Hashed>>,
    collided: HashMap<Box<str>, u32>,
    /// The address of each string object held in `objects` -> its place: a Known made from
    /// a record, and the dicts of the spans that inherit from it, hold these very objects
    /// (and field names are the config's), so most strings are found without reading their
    /// text. Only addresses of objects held here (alive, so never reused): Fx is enough.
    by_address: HashMap<usize, u32, FxBuild>,
    /// Other objects of a held text met in this batch (the scan makes one object per
    /// distinct text per batch), held until the batch ends so their addresses stay theirs.
    aliases: Vec<(Py<PyString>, u32)>,
}

impl Strs {
    fn find(&mut self, text: &Bound<'_, PyString>) -> PyResult<u32> {
        if let Some(&at) = self.by_address.get(&(text.as_ptr() as usize)) {
            return Ok(at);
        }
        let hash = text.hash()? as u64;
        let Some(&first) = self.index.get(&hash) else {
            return Ok(ABSENT);
        };
        let held = self.objects[first as usize].as_ref().unwrap().0.bind(text.py());
        let at = if held.to_str()? == text.to_str()? {
            first
        } else {
            match self.collided.get(text.to_str()?) {
                Some(&at) => at,
                None => return Ok(ABSENT),
            }
        };
        if self.aliases.len() >= MAX_ALIASES {
            self.forget_aliases();
        }
        self.aliases.push((text.clone().unbind(), at));
        self.by_address.insert(text.as_ptr() as usize, at);
        Ok(at)
    }

    fn forget_aliases(&mut self) {
        for (text, at) in self.aliases.drain(..) {
            let address = text.as_ptr() as usize;
            if self.by_address.get(&address) == Some(&at) {
                self.by_address.remove(&address);
            }
        }
    }

    /// One more record names the string at `at`.
    fn hold(&mut self, at: u32) {
        self.objects[at as usize].as_mut().unwrap().1 += 1;
    }

    /// A place for a string `find` did not find, named by one record.
    fn add(&mut self, text: &Bound<'_, PyString>) -> PyResult<u32> {
        let entry = Some((text.clone().unbind(), 1));
        let hash = text.hash()? as u64;
        let at = match self.free.pop() {
            Some(at) => {
                self.objects[at as usize] = entry;
                self.hashes[at as usize] = hash;
                at
            }
            None => {
                self.objects.push(entry);
                self.hashes.push(hash);
                (self.objects.len() - 1) as u32
            }
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = self.index.entry(hash) {
            slot.insert(at);
        } else {
            self.collided.insert(text.to_str()?.into(), at);
        }
        self.by_address.insert(text.as_ptr() as usize, at);
        Ok(at)
    }

    fn release(&mut self, py: Python<'_>, at: u32) {
        let entry = self.objects[at as usize].as_mut().unwrap();
        entry.1 -= 1;
        if entry.1 > 0 {
            return;
        }
        let (text, _) = self.objects[at as usize].take().unwrap();
        let text = text.bind(py);
        self.by_address.remove(&(text.as_ptr() as usize));
        if !self.aliases.is_empty() {
            let by_address = &mut self.by_address;
            self.aliases.retain(|(alias, of)| {
                if *of == at {
                    by_address.remove(&(alias.as_ptr() as usize));
                }
                *of != at
            });
        }
        let hash = self.hashes[at as usize];
        if self.index.get(&hash) == Some(&at) {
            self.index.remove(&hash);
        } else if let Ok(content) = text.to_str() {
            self.collided.remove(content);
        }
        self.free.push(at);
    }

    fn hash(&self, at: u32) -> u64 {
        self.hashes[at as usize]
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

/// A content's field, value pairs: what follows the hop, the depth's words and the fallback.
fn pairs_of(content: &[u32]) -> &[u32] {
    &content[5 + content[4] as usize..]
}

struct Record {
    body: Body,
    refs: u32,
    /// The Known made (or put) for it in the current batch.
    made: Option<Py<PyAny>>,
    hash: u64,
    /// Which record this is among those that held its place (`Records::births` when placed;
    /// 32 bits fill the record's padding: `fields_of` lives one batch, far fewer placements
    /// than would wrap it).
    born: u32,
}

/// What `walk` does with each string of a Known: its place (ABSENT: not held yet).
trait Places {
    /// `text`: a borrowed reference to an object the Known holds (alive while it is walked:
    /// no Python code runs meanwhile). None: not a str.
    fn place(&mut self, py: Python<'_>, text: *mut ffi::PyObject) -> PyResult<Option<u32>>;
}

/// The one pass over a Known: find each string (the record may exist: nothing is held
/// yet), and keep the strings' addresses in order, so a new record holds its strings without
/// reading the Known a second time (within `intern`: the Known holds them meanwhile).
struct Find<'a> {
    strs: &'a mut Strs,
    texts: &'a mut Vec<usize>,
}

impl Places for Find<'_> {
    fn place(&mut self, py: Python<'_>, text: *mut ffi::PyObject) -> PyResult<Option<u32>> {
        self.texts.push(text as usize);
        // A string held here is found by its address, without reading the object (no
        // reference taken, no type read: the span's strings are scattered in memory).
        if let Some(&at) = self.strs.by_address.get(&(text as usize)) {
            return Ok(Some(at));
        }
        // SAFETY: a live object the Known holds (see `place`), borrowed for this call.
        let text = unsafe { Borrowed::from_ptr(py, text) };
        let Ok(text) = text.cast_exact::<PyString>() else {
            return Ok(None);
        };
        Ok(Some(self.strs.find(&text)?))
    }
}

fn push_str(out: &mut Vec<u32>, places: &mut impl Places, text: &Bound<'_, PyAny>) -> PyResult<bool> {
    match places.place(text.py(), text.as_ptr())? {
        Some(at) => {
            out.push(at);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// A Known's content into `out` (the layout of Body::Content) up to its fields (hop, depth,
/// fallback; `walk_fields` or another record's pairs follow); false when some part is not of
/// the plain types (kept as the object then). Read once per put: a new record's strings are
/// held from the objects `Find` kept (nothing runs Python code in between).
fn walk_head(
    slots: &Option<SlotLayout>,
    known: &Bound<'_, PyAny>,
    places: &mut impl Places,
    out: &mut Vec<u32>,
) -> PyResult<bool> {
    out.clear();
    if !push_str(out, places, &known_attr(slots, known, HOP)?)? {
        return Ok(false);
    }
    let depth = known_attr(slots, known, DEPTH)?;
    if depth.is_none() {
        out.extend_from_slice(&[0, 0, 0]);
    } else {
        let Ok(depth) = depth.cast_exact::<PyInt>() else {
            return Ok(false); // a bool or an int subclass: kept as the object
        };
        let Ok(depth) = depth.extract::<i64>() else {
            return Ok(false);
        };
        let bits = depth as u64;
        out.extend_from_slice(&[1, bits as u32, (bits >> 32) as u32]);
    }
    let fallback = known_attr(slots, known, FALLBACK)?;
    let Ok(fallback) = fallback.cast_into_exact::<PyFrozenSet>() else {
        return Ok(false);
    };
    out.push(fallback.len() as u32);
    for field in fallback.iter() {
        if !push_str(out, places, &field)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A Known's fields into `out` after its head (`walk_head`): per pair, field then value;
/// false when some key or value is not a str.
fn walk_fields(fields: &Bound<'_, PyDict>, places: &mut impl Places, out: &mut Vec<u32>) -> PyResult<bool> {
    let py = fields.py();
    let (mut at, mut field, mut value): (ffi::Py_ssize_t, *mut ffi::PyObject, *mut ffi::PyObject) =
        (0, std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: the dict is alive (the Known holds it) and not changed while walked (no Python
    // code runs); PyDict_Next gives borrowed references, alive while the dict holds them.
    while unsafe { ffi::PyDict_Next(fields.as_ptr(), &mut at, &mut field, &mut value) } != 0 {
        for text in [field, value] {
            match places.place(py, text)? {
                Some(place) => out.push(place),
                None => return Ok(false),
            }
        }
    }
    Ok(true)
}

/// The distinct records the table's entries name, with how many entries name each.
#[derive(Default)]
pub struct Records {
    records: Vec<Option<Record>>,
    free: Vec<Slot>,
    /// A record's hash (`hash_of`) -> its place; records whose hash another took first are
    /// in `collided`, by content (SipHash).
    by_hash: HashMap<u64, Slot, BuildHasherDefault<Hashed>>,
    collided: HashMap<Arc<[u32]>, Slot>,
    strs: Strs,
    scratch: Vec<u32>, // a Known's content, read at each put
    texts: Vec<usize>, // its strings' addresses, in the order of their places in `scratch`
    /// The last Known put and its place: siblings are put one after another with one
    /// object, so most puts skip reading it. Cleared when the place is freed.
    last: Option<(Py<PyAny>, Slot)>,
    made: Vec<Slot>, // records with a Known made in this batch
    /// The Known objects standing for records in this batch (`made`), by address -> place:
    /// a decision shared by spans not put one after another (`last` misses) is found
    /// without reading it again. Valid while that record's `made` is the object (held).
    by_made: HashMap<usize, Slot, FxBuild>,
    /// The class Known objects are made with; None: every Known is kept as the object.
    known_class: Option<Py<PyAny>>,
    /// Known's slots (fields, hop, depth, fallback) at their offsets (crate::slots), when the
    /// class's instances keep them so; None: read through getattr.
    slots: Option<SlotLayout>,
    /// In this batch, a fields dict put or made -> a record whose content holds its pairs
    /// (and that record's `born`: its place may be another record's since). Many Knowns of a
    /// batch share a fields dict (a child that inherits everything takes its parent's; spans
    /// alike share their own): a put takes the pairs' places from that record rather than
    /// reading the dict and finding each string again. The dict is held, so its address stays
    /// its own; fields dicts are never mutated (Known.fields).
    fields_of: HashMap<usize, (Py<PyDict>, Slot, u32), FxBuild>,
    births: u32,
}

/// Fields dicts remembered at most per batch (`fields_of`; past it, forgotten).
const MAX_FIELDS_OF: usize = 4096;

impl Records {
    pub fn new(py: Python<'_>, known_class: Option<Py<PyAny>>) -> PyResult<Self> {
        let slots = match known_class.as_ref().map(|class| class.bind(py).cast::<PyType>()) {
            Some(Ok(class)) => SlotLayout::of(py, class, &["fields", "hop", "depth", "fallback"])?,
            _ => None,
        };
        Ok(Records {
            known_class,
            slots,
            ..Records::default()
        })
    }

    /// `known.fields` (the Known's slot when the class keeps it at an offset).
    pub fn fields_of<'py>(&self, known: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        known_attr(&self.slots, known, FIELDS)
    }

    /// `known.hop`.
    pub fn hop_of<'py>(&self, known: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        known_attr(&self.slots, known, HOP)
    }

    fn place(&mut self, mut record: Record) -> Slot {
        self.births = self.births.wrapping_add(1);
        record.born = self.births;
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
        if let Some(&slot) = self.by_made.get(&(known.as_ptr() as usize)) {
            if let Some(record) = self.records[slot as usize].as_mut() {
                if record.made.as_ref().is_some_and(|made| made.as_ptr() == known.as_ptr()) {
                    record.refs += 1;
                    self.last = Some((known.clone().unbind(), slot));
                    return Ok(slot);
                }
            }
        }
        let mut content = std::mem::take(&mut self.scratch);
        let mut texts = std::mem::take(&mut self.texts);
        texts.clear();
        let mut fields_dict: Option<Bound<'_, PyDict>> = None;
        let plain = self.known_class.is_some() && {
            let mut find = Find {
                strs: &mut self.strs,
                texts: &mut texts,
            };
            walk_head(&self.slots, known, &mut find, &mut content)? && {
                let fields = known_attr(&self.slots, known, FIELDS)?;
                match fields.cast_into_exact::<PyDict>() {
                    Err(_) => false,
                    Ok(fields) => {
                        let held = self
                            .fields_of
                            .get(&(fields.as_ptr() as usize))
                            .and_then(|(_, slot, born)| match &self.records[*slot as usize] {
                                Some(Record {
                                    body: Body::Content(body),
                                    born: now,
                                    ..
                                }) if now == born => Some(body.clone()),
                                _ => None,
                            });
                        let plain = match held {
                            // its pairs' places, held by that record: no text read again
                            Some(body) => {
                                content.extend_from_slice(pairs_of(&body));
                                true
                            }
                            None => walk_fields(&fields, &mut find, &mut content)?,
                        };
                        fields_dict = Some(fields);
                        plain
                    }
                }
            }
        };
        let slot = if !plain {
            self.place(Record {
                body: Body::Object(known.clone().unbind()),
                refs: 1,
                made: None,
                hash: 0,
                born: 0,
            })
        } else {
            // A string never seen: no record has it.
            let hash = if content.contains(&ABSENT) {
                None
            } else {
                Some(self.hash_of(&content))
            };
            match hash.and_then(|hash| self.find(hash, &content)) {
                Some(slot) => {
                    let record = self.records[slot as usize].as_mut().unwrap();
                    record.refs += 1;
                    if record.made.is_none() {
                        // The object put stands for the record in this batch.
                        record.made = Some(known.clone().unbind());
                        self.made.push(slot);
                        self.by_made.insert(known.as_ptr() as usize, slot);
                    }
                    slot
                }
                None => {
                    // Every string held once more: those found above by their place, the
                    // others added from the texts kept in order (a new text met twice in
                    // one Known is added once: found by its address the second time).
                    // Texts were kept for every string read; pairs taken from another record
                    // (fields_of) were not read, and are all held already (never ABSENT).
                    for (n, at) in string_places_of(content.len()).enumerate() {
                        if content[at] != ABSENT {
                            self.strs.hold(content[at]);
                            continue;
                        }
                        // SAFETY: a str (`Find` read its type: it was not held) the Known
                        // holds, borrowed while it is put.
                        let text = unsafe { Borrowed::from_ptr(py, texts[n] as *mut ffi::PyObject) };
                        let text = text.cast_exact::<PyString>()?;
                        content[at] = match self.strs.find(&text)? {
                            ABSENT => self.strs.add(&text)?,
                            found => {
                                self.strs.hold(found);
                                found
                            }
                        };
                    }
                    let hash = self.hash_of(&content);
                    let body: Arc<[u32]> = content.as_slice().into();
                    // The object put stands for the record in this batch.
                    let slot = self.place(Record {
                        body: Body::Content(body.clone()),
                        refs: 1,
                        made: Some(known.clone().unbind()),
                        hash,
                        born: 0,
                    });
                    self.made.push(slot);
                    self.by_made.insert(known.as_ptr() as usize, slot);
                    if let std::collections::hash_map::Entry::Vacant(entry) = self.by_hash.entry(hash) {
                        entry.insert(slot);
                    } else {
                        self.collided.insert(body, slot);
                    }
                    slot
                }
            }
        };
        texts.clear();
        self.texts = texts;
        self.scratch = content;
        if let (true, Some(fields)) = (plain, fields_dict) {
            self.remember_fields(fields, slot);
        }
        self.last = Some((known.clone().unbind(), slot));
        Ok(slot)
    }

    /// `fields` is the fields dict of a Known whose record is at `slot` (see `fields_of`).
    fn remember_fields(&mut self, fields: Bound<'_, PyDict>, slot: Slot) {
        let Some(record) = &self.records[slot as usize] else {
            return;
        };
        let born = record.born;
        if self.fields_of.len() >= MAX_FIELDS_OF {
            self.fields_of.clear();
        }
        self.fields_of
            .entry(fields.as_ptr() as usize)
            .or_insert_with(|| (fields.unbind(), slot, born));
    }

    /// A record's hash from its strings' Python hashes (SipHash with the process's random
    /// key, kept per string) and its other words, combined as Fx does.
    fn hash_of(&self, content: &[u32]) -> u64 {
        let mut hash: u64 = content.len() as u64;
        let mut mix = |word: u64| hash = (hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        mix(self.strs.hash(content[0]));
        for &word in &content[1..5] {
            mix(word as u64);
        }
        for &at in &content[5..] {
            mix(self.strs.hash(at));
        }
        hash
    }

    fn find(&self, hash: u64, content: &[u32]) -> Option<Slot> {
        let slot = *self.by_hash.get(&hash)?;
        match &self.records[slot as usize].as_ref().unwrap().body {
            Body::Content(held) if **held == *content => Some(slot),
            _ => self.collided.get(content).copied(),
        }
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
            if self.by_hash.get(&record.hash) == Some(&slot) {
                self.by_hash.remove(&record.hash);
            } else {
                self.collided.remove(&content);
            }
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
        for pair in pairs_of(&content).chunks_exact(2) {
            fields.set_item(strs.get(py, pair[0]), strs.get(py, pair[1]))?;
        }
        let class = self.known_class.as_ref().expect("content records need the class");
        let known = class.bind(py).call1((&fields, hop, depth, fallback))?.unbind();
        self.remember_fields(fields, slot);
        self.records[slot as usize].as_mut().unwrap().made = Some(known.clone_ref(py));
        self.made.push(slot);
        self.by_made.insert(known.as_ptr() as usize, slot);
        Ok(Some(known))
    }

    /// A batch starts: the Known objects made for the last one are dropped (the records
    /// stay); a read makes them again.
    pub fn forget_made(&mut self) {
        self.by_made.clear();
        self.strs.forget_aliases();
        self.fields_of.clear();
        for slot in self.made.drain(..) {
            if let Some(record) = self.records[slot as usize].as_mut() {
                record.made = None;
            }
        }
    }

    pub fn clear(&mut self) {
        self.by_made.clear();
        self.records.clear();
        self.free.clear();
        self.by_hash.clear();
        self.collided.clear();
        self.strs = Strs::default();
        self.last = None;
        self.made.clear();
        self.fields_of.clear();
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
        let texts: usize = self.strs.collided.keys().map(|k| k.len()).sum();
        fn map_bytes(capacity: usize, slot: usize) -> usize {
            capacity * 8 / 7 * (slot + 1)
        }
        self.records.capacity() * std::mem::size_of::<Option<Record>>()
            + self.free.capacity() * 4
            + self.scratch.capacity() * 4
            + self.texts.capacity() * 8
            + self.strs.hashes.capacity() * 8
            + map_bytes(self.by_hash.capacity(), std::mem::size_of::<(u64, Slot)>())
            + map_bytes(self.collided.capacity(), std::mem::size_of::<(Arc<[u32]>, Slot)>())
            + content
            + self.strs.objects.capacity() * std::mem::size_of::<Option<(Py<PyString>, u32)>>()
            + self.strs.free.capacity() * 4
            + map_bytes(self.strs.index.capacity(), std::mem::size_of::<(u64, u32)>())
            + map_bytes(self.strs.collided.capacity(), std::mem::size_of::<(Box<str>, u32)>())
            + map_bytes(self.strs.by_address.capacity(), std::mem::size_of::<(usize, u32)>())
            + map_bytes(self.by_made.capacity(), std::mem::size_of::<(usize, Slot)>())
            + map_bytes(
                self.fields_of.capacity(),
                std::mem::size_of::<(usize, (Py<PyDict>, Slot, u32))>(),
            )
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
            .chain(self.fields_of.values().map(|(fields, _, _)| fields.as_any()))
    }

    pub fn strings(&self) -> impl Iterator<Item = &Py<PyString>> {
        let held = self.strs.objects.iter().flatten().map(|(text, _)| text);
        held.chain(self.strs.aliases.iter().map(|(text, _)| text))
    }
}

/// The places in a record's content that name strings (all but the depth's three words
/// and the fallback's count).
fn string_places(content: &[u32]) -> impl Iterator<Item = usize> + '_ {
    string_places_of(content.len())
}

fn string_places_of(len: usize) -> impl Iterator<Item = usize> {
    std::iter::once(0).chain(5..len)
}
