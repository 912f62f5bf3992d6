//! Encode: write a scanned request back with the processors' edits applied, in one pass,
//! fixing every enclosing length prefix. Untouched resources, scopes, spans and attributes
//! are copied as they arrived; only what an edit touches is re-encoded.
//!
//! For a canonical input (fields in number order, as SDKs write) the output is the bytes
//! protobuf would serialize for the edited message: a renamed key is written first in its
//! KeyValue, a replaced value right after the key, appended attributes right after the
//! last existing one (or where field 9/1 belongs when there is none).

use std::sync::Arc;

use crate::groups::Cut;
use crate::scan::Scan;
use crate::schema::DEPTH_LIMIT;
use crate::wire::{close_len, open_len, write_len_field, DecodeError, Reader, Result, Val, I64, LEN, VARINT};

/// Bytes shared between the edits of many spans (a key, an encoded value): the Python side
/// converts each distinct key and value object once per call, and a group's edits are merged
/// into every member's without copying them.
pub type Shared = Arc<[u8]>;

/// The longest body held inline: a string of up to 28 bytes with its tag and length (ids,
/// price sources such as "builtin@2026-11-01#1e63f433"; 22 made each of those an allocation).
pub const INLINE: usize = 30;

/// An encoded AnyValue body: short ones (every scalar but long strings and bytes) held
/// inline, so converting a span's values allocates nothing; longer ones shared.
#[derive(Clone, Debug)]
pub enum Body {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Shared),
}

impl Body {
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Body::Inline { len, bytes } => &bytes[..*len as usize],
            Body::Shared(shared) => shared,
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::Inline {
            len: 0,
            bytes: [0; INLINE],
        }
    }
}

impl From<&[u8]> for Body {
    fn from(data: &[u8]) -> Self {
        if data.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..data.len()].copy_from_slice(data);
            Body::Inline {
                len: data.len() as u8,
                bytes,
            }
        } else {
            Body::Shared(data.into())
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(data: Vec<u8>) -> Self {
        if data.len() <= INLINE {
            Body::from(data.as_slice())
        } else {
            Body::Shared(data.into())
        }
    }
}

/// A value to set: an AnyValue body already encoded.
#[derive(Clone, Debug, Default)]
pub struct SetValue {
    pub body: Body,
    /// false: the KeyValue gets no value field at all (EMPTY: `ClearField("value")`).
    pub present: bool,
    /// A scalar written into an existing AnyValue keeps that value's unknown fields (protobuf
    /// sets the oneof in place; a list or kvlist value is cleared first).
    pub keeps_unknown: bool,
}

impl SetValue {
    pub fn scalar(body: impl Into<Body>) -> Self {
        SetValue {
            body: body.into(),
            present: true,
            keeps_unknown: true,
        }
    }
}

/// Edits of one attribute list (a span's or a resource's), with the Python codec's
/// semantics: renames, then deletes, then sets, each acting on the last occurrence of its
/// key (the one the view reports); a set key not present is appended.
#[derive(Clone, Debug, Default)]
pub struct AttrEdits {
    pub renames: Vec<(Shared, Shared)>,
    pub deletes: Vec<Shared>,
    pub sets: Vec<(Shared, SetValue)>,
    /// The whole span re-encoded (spans only): the other fields are ignored.
    pub replace: Option<Vec<u8>>,
}

/// The edits of one call's attribute lists in one place (python.rs converts a batch's into
/// it): keys and values once each, every list's renames, deletes and sets as ids into them,
/// so a span's edits are three ranges, not vectors of its own (no allocation, no reference
/// count per set).
#[derive(Default)]
pub struct EditArena {
    pub keys: Vec<Box<[u8]>>,
    /// `fingerprint` of each key in `keys` (`push_key` keeps them in step): worked out once
    /// per distinct key of the call, not once per set.
    pub key_prints: Vec<u64>,
    pub values: Vec<SetValue>,
    pub renames: Vec<(u32, u32)>,
    pub deletes: Vec<u32>,
    pub sets: Vec<(u32, u32)>,
    pub replaces: Vec<Vec<u8>>,
}

impl EditArena {
    /// Add a key; its id.
    pub fn push_key(&mut self, key: &[u8]) -> u32 {
        self.keys.push(key.into());
        self.key_prints.push(fingerprint(key));
        self.keys.len() as u32 - 1
    }

    /// A span's effective edits: its own (if any) with each group's inserted at its cut,
    /// groups in the order they were added (groups.rs `merge`, the same rules, on ranges: the
    /// merged lists are copied to the arena's end).
    pub fn merge(&mut self, own: Option<&ArenaEdits>, groups: &[(ArenaEdits, Option<Cut>)]) -> ArenaEdits {
        let own = own.copied().unwrap_or_default();
        let len = |(start, end): (u32, u32)| (end - start) as usize;
        let from = |(start, _): (u32, u32), a: usize, b: usize| start as usize + a..start as usize + b;
        let whole = |(start, end): (u32, u32)| start as usize..end as usize;
        let start = (self.renames.len(), self.deletes.len(), self.sets.len());
        let mut at: Cut = (0, 0, 0);
        for (group, cut) in groups {
            let cut = cut.unwrap_or(at);
            let cut = (
                cut.0.min(len(own.renames)),
                cut.1.min(len(own.deletes)),
                cut.2.min(len(own.sets)),
            );
            let cut = (cut.0.max(at.0), cut.1.max(at.1), cut.2.max(at.2));
            self.renames.extend_from_within(from(own.renames, at.0, cut.0));
            self.deletes.extend_from_within(from(own.deletes, at.1, cut.1));
            self.sets.extend_from_within(from(own.sets, at.2, cut.2));
            self.renames.extend_from_within(whole(group.renames));
            self.deletes.extend_from_within(whole(group.deletes));
            self.sets.extend_from_within(whole(group.sets));
            at = cut;
        }
        self.renames
            .extend_from_within(from(own.renames, at.0, len(own.renames)));
        self.deletes
            .extend_from_within(from(own.deletes, at.1, len(own.deletes)));
        self.sets.extend_from_within(from(own.sets, at.2, len(own.sets)));
        ArenaEdits {
            renames: (start.0 as u32, self.renames.len() as u32),
            deletes: (start.1 as u32, self.deletes.len() as u32),
            sets: (start.2 as u32, self.sets.len() as u32),
            replace: None,
        }
    }
}

/// One list's edits in an `EditArena`: ranges of its renames, deletes and sets.
#[derive(Clone, Copy, Debug, Default)]
pub struct ArenaEdits {
    pub renames: (u32, u32),
    pub deletes: (u32, u32),
    pub sets: (u32, u32),
    /// The whole span re-encoded: index into `replaces`.
    pub replace: Option<u32>,
}

impl EditArena {
    /// `edits` as the encoder reads them (the arena no longer changes).
    pub fn get(&self, edits: &ArenaEdits) -> EditsRef<'_> {
        let range = |(start, end): (u32, u32)| start as usize..end as usize;
        EditsRef::Arena {
            keys: &self.keys,
            key_prints: &self.key_prints,
            values: &self.values,
            renames: &self.renames[range(edits.renames)],
            deletes: &self.deletes[range(edits.deletes)],
            sets: &self.sets[range(edits.sets)],
            replace: edits.replace.map(|at| self.replaces[at as usize].as_slice()),
        }
    }
}

/// One attribute list's edits as the encoder reads them: an `AttrEdits`, or ids into an arena.
#[derive(Clone, Copy)]
pub enum EditsRef<'a> {
    Owned(&'a AttrEdits),
    Arena {
        keys: &'a [Box<[u8]>],
        key_prints: &'a [u64],
        values: &'a [SetValue],
        renames: &'a [(u32, u32)],
        deletes: &'a [u32],
        sets: &'a [(u32, u32)],
        replace: Option<&'a [u8]>,
    },
}

impl<'a> From<&'a AttrEdits> for EditsRef<'a> {
    fn from(edits: &'a AttrEdits) -> Self {
        EditsRef::Owned(edits)
    }
}

impl<'a> EditsRef<'a> {
    #[inline]
    pub fn replace(&self) -> Option<&'a [u8]> {
        match *self {
            EditsRef::Owned(e) => e.replace.as_deref(),
            EditsRef::Arena { replace, .. } => replace,
        }
    }
    #[inline]
    fn renames_len(&self) -> usize {
        match *self {
            EditsRef::Owned(e) => e.renames.len(),
            EditsRef::Arena { renames, .. } => renames.len(),
        }
    }
    #[inline]
    fn rename(&self, i: usize) -> (&'a [u8], &'a [u8]) {
        match *self {
            EditsRef::Owned(e) => (&e.renames[i].0, &e.renames[i].1),
            EditsRef::Arena { keys, renames, .. } => {
                let (old, new) = renames[i];
                (&keys[old as usize], &keys[new as usize])
            }
        }
    }
    #[inline]
    fn deletes_len(&self) -> usize {
        match *self {
            EditsRef::Owned(e) => e.deletes.len(),
            EditsRef::Arena { deletes, .. } => deletes.len(),
        }
    }
    #[inline]
    fn delete(&self, i: usize) -> &'a [u8] {
        match *self {
            EditsRef::Owned(e) => &e.deletes[i],
            EditsRef::Arena { keys, deletes, .. } => &keys[deletes[i] as usize],
        }
    }
    #[inline]
    fn sets_len(&self) -> usize {
        match *self {
            EditsRef::Owned(e) => e.sets.len(),
            EditsRef::Arena { sets, .. } => sets.len(),
        }
    }
    #[inline]
    fn set_key(&self, i: usize) -> &'a [u8] {
        match *self {
            EditsRef::Owned(e) => &e.sets[i].0,
            EditsRef::Arena { keys, sets, .. } => &keys[sets[i].0 as usize],
        }
    }
    /// `fingerprint(self.set_key(i))`.
    #[inline]
    fn set_print(&self, i: usize) -> u64 {
        match *self {
            EditsRef::Owned(e) => fingerprint(&e.sets[i].0),
            EditsRef::Arena { key_prints, sets, .. } => key_prints[sets[i].0 as usize],
        }
    }
    #[inline]
    fn set_value(&self, i: usize) -> &'a SetValue {
        match *self {
            EditsRef::Owned(e) => &e.sets[i].1,
            EditsRef::Arena { values, sets, .. } => &values[sets[i].1 as usize],
        }
    }

    fn is_noop(&self) -> bool {
        self.renames_len() == 0 && self.deletes_len() == 0 && self.sets_len() == 0 && self.replace().is_none()
    }

    /// About the most these edits add to a list: each set may append a KeyValue (key and
    /// value, each with a tag and up to 5 length bytes), a rename may lengthen a key.
    fn added_bytes(&self) -> usize {
        if let Some(replace) = self.replace() {
            return replace.len();
        }
        let sets: usize = (0..self.sets_len())
            .map(|j| self.set_key(j).len() + self.set_value(j).body.as_slice().len() + 18)
            .sum();
        sets + (0..self.renames_len())
            .map(|i| self.rename(i).1.len() + 6)
            .sum::<usize>()
    }
}

/// What happens to each attribute of a list, and what is appended after it.
#[derive(Default)]
struct AttrPlan<'k> {
    /// Per attribute, in order: None to copy it as it is.
    actions: Vec<Option<Action<'k>>>,
    /// Appended attributes: key and index into `sets`.
    appended: Vec<(&'k [u8], usize)>,
}

#[derive(Clone, Copy)]
enum Action<'k> {
    Delete,
    /// Write with this key and, if given, the value of `sets[index]`.
    Rewrite(&'k [u8], Option<usize>),
}

/// The vectors a list's plan is worked out in, kept for the next list: a scope's spans each
/// allocated (and freed) seven of them.
#[derive(Default)]
struct PlanScratch<'k> {
    /// The list's keys (`attr_keys`), then what `plan_attrs` leaves in `plan`.
    keys: Vec<&'k [u8]>,
    current: Vec<&'k [u8]>,
    renamed: Vec<bool>,
    deleted: Vec<bool>,
    last: Vec<(&'k [u8], usize)>,
    set_of: Vec<Option<usize>>,
    /// `fingerprint` of each key in `current` (deleted ones never match: u64::MAX is no key's).
    prints: Vec<u64>,
    plan: AttrPlan<'k>,
}

impl PlanScratch<'_> {
    fn with_capacity(n: usize) -> Self {
        PlanScratch {
            keys: Vec::with_capacity(n),
            current: Vec::with_capacity(n),
            renamed: Vec::with_capacity(n),
            deleted: Vec::with_capacity(n),
            last: Vec::with_capacity(n),
            set_of: Vec::with_capacity(n),
            prints: Vec::with_capacity(n),
            plan: AttrPlan {
                actions: Vec::with_capacity(n),
                appended: Vec::with_capacity(n),
            },
        }
    }
}

/// A key's length and its first and last bytes in one word: unequal words, unequal keys, so
/// most keys a set is looked for among are passed over without comparing their bytes (many
/// share a prefix such as "owner." and a length).
#[inline]
fn fingerprint(key: &[u8]) -> u64 {
    let n = key.len();
    if n >= 8 {
        let head = u64::from_le_bytes(key[..8].try_into().unwrap_or([0; 8]));
        let tail = u64::from_le_bytes(key[n - 8..].try_into().unwrap_or([0; 8]));
        (head ^ tail.rotate_left(29) ^ (n as u64).rotate_left(56)) & (u64::MAX >> 1)
    } else {
        let mut word = [0u8; 8];
        word[..n].copy_from_slice(key);
        (u64::from_le_bytes(word) ^ (n as u64).rotate_left(56)) & (u64::MAX >> 1)
    }
}

/// A fingerprint's bit in a 64-bit mask of the fingerprints of a few keys: a clear bit, no
/// key there has it (the usual answer for a set key looked for among a span's attributes or
/// among the keys already appended: most sets append a key the span does not have).
#[inline]
fn mask_bit(print: u64) -> u64 {
    1 << (print.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
}

/// The renames, then the deletes, over `current` (the list's keys, renamed in place), marking
/// `renamed` and `deleted` by index, through `last` (key -> index of its last occurrence, one
/// entry per key, as the Python codec's dict; updated by renames).
fn rename_and_delete<'k>(
    current: &mut [&'k [u8]],
    renamed: &mut [bool],
    deleted: &mut [bool],
    last: &mut Vec<(&'k [u8], usize)>,
    edits: EditsRef<'k>,
) {
    last.clear();
    for (i, key) in current.iter().enumerate() {
        match last.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = i,
            None => last.push((key, i)),
        }
    }
    for r in 0..edits.renames_len() {
        let (old, new) = edits.rename(r);
        if let Some(pos) = last.iter().position(|(k, _)| *k == old) {
            let (_, at) = last.swap_remove(pos);
            current[at] = new;
            renamed[at] = true;
            match last.iter_mut().find(|(k, _)| *k == new) {
                Some(entry) => entry.1 = at,
                None => last.push((new, at)),
            }
        }
    }
    for d in 0..edits.deletes_len() {
        let key = edits.delete(d);
        if let Some((_, at)) = last.iter().find(|(k, _)| *k == key) {
            deleted[*at] = true;
        }
    }
}

/// Run the edits over the list's keys (`scratch.keys`) into `scratch.plan`, exactly as the
/// Python codec does on messages (its `last` map: key -> index of the last occurrence,
/// updated by renames). Lists are short, so small vectors searched linearly beat hashing.
fn plan_attrs<'k>(scratch: &mut PlanScratch<'k>, edits: EditsRef<'k>) {
    let PlanScratch {
        keys,
        current,
        renamed,
        deleted,
        last,
        set_of,
        prints,
        plan,
    } = scratch;
    let n = keys.len();
    current.clear();
    current.extend_from_slice(keys);
    renamed.clear();
    renamed.resize(n, false);
    deleted.clear();
    deleted.resize(n, false);
    if edits.renames_len() != 0 || edits.deletes_len() != 0 {
        rename_and_delete(current, renamed, deleted, last, edits);
    }
    set_of.clear();
    set_of.resize(n, None);
    let appended = &mut plan.appended;
    appended.clear();
    // Masks of the fingerprints of the list's keys (deleted ones left out) and of the keys
    // appended so far: only a set key whose bit is set is looked for.
    let (mut present, mut added) = (0u64, 0u64);
    if edits.sets_len() != 0 {
        prints.clear();
        prints.extend((0..n).map(|i| {
            if deleted[i] {
                u64::MAX
            } else {
                let print = fingerprint(current[i]);
                present |= mask_bit(print);
                print
            }
        }));
    }
    for j in 0..edits.sets_len() {
        let key = edits.set_key(j);
        let print = edits.set_print(j);
        let bit = mask_bit(print);
        let found = match present & bit {
            0 => None,
            _ => (0..n).rev().find(|&i| prints[i] == print && current[i] == key),
        };
        match found {
            Some(at) => set_of[at] = Some(j),
            None => match (added & bit != 0)
                .then(|| appended.iter_mut().find(|(k, _)| *k == key))
                .flatten()
            {
                Some(entry) => entry.1 = j,
                None => {
                    added |= bit;
                    appended.push((key, j));
                }
            },
        }
    }
    plan.actions.clear();
    plan.actions.extend((0..n).map(|i| {
        if deleted[i] {
            Some(Action::Delete)
        } else if renamed[i] || set_of[i].is_some() {
            Some(Action::Rewrite(current[i], set_of[i]))
        } else {
            None
        }
    }));
}

/// Everything to apply to one scanned request.
pub struct Plan<'e> {
    /// Per span: an index into `edits`, or None.
    pub span_edits: Vec<Option<EditsRef<'e>>>,
    pub resource_edits: Vec<Option<EditsRef<'e>>>,
    /// Per span: written out or not.
    pub keep: Vec<bool>,
    /// extract: start with no span kept (encode: every span kept). Either way only scopes
    /// and resources emptied here are dropped; ones that arrived empty stay.
    pub extract: bool,
}

impl<'e> Plan<'e> {
    pub fn new(scan: &Scan, extract: bool) -> Self {
        Plan {
            span_edits: vec![None; scan.spans.len()],
            resource_edits: vec![None; scan.resources.len()],
            keep: vec![!extract; scan.spans.len()],
            extract,
        }
    }

    /// Nothing to write differently: every span kept, no span or resource edits.
    pub fn untouched(&self) -> bool {
        !self.extract
            && self.keep.iter().all(|k| *k)
            && self.span_edits.iter().all(|e| e.is_none())
            && self.resource_edits.iter().all(|e| e.is_none())
    }

    fn span_touched(&self, i: usize) -> bool {
        !self.keep[i] || self.span_edits[i].is_some()
    }

    fn range_touched(&self, first: u32, end: u32) -> bool {
        (first as usize..end as usize).any(|i| self.span_touched(i))
    }
}

impl Plan<'_> {
    /// Room for `raw` with this plan's edits, so that what `encode` writes fits without growing
    /// (a growth of a ~100 kB buffer is a copy; past glibc's 128 KiB mmap threshold a fresh mapping).
    pub fn size_hint(&self, raw: &[u8]) -> usize {
        let edits = self.span_edits.iter().chain(&self.resource_edits).flatten();
        // Each edited span, scope and resource may also take up to 10 more length bytes.
        raw.len() + edits.map(|e| e.added_bytes() + 30).sum::<usize>() + 64
    }
}

pub fn encode(raw: &[u8], scan: &Scan, plan: &Plan) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(plan.size_hint(raw));
    encode_into(raw, scan, plan, &mut out)?;
    Ok(out)
}

/// `encode`, appended to `out` (several scanned requests written into one buffer).
pub fn encode_into(raw: &[u8], scan: &Scan, plan: &Plan, out: &mut Vec<u8>) -> Result<()> {
    // One scratch for every list of the request (one per scope grew its seven vectors again),
    // with room for a usual span's attributes and sets from the start (no growth by doubling).
    let mut scratch = PlanScratch::with_capacity(64);
    let mut reader = Reader::new(raw, DEPTH_LIMIT);
    let mut r = 0usize;
    while let Some(field) = reader.next()? {
        let (1, Val::Len(body)) = (field.num, field.val) else {
            out.extend_from_slice(field.raw);
            continue;
        };
        let rec = scan.resources.get(r).ok_or(DecodeError("request changed since scan"))?;
        let touched = plan.resource_edits[r].is_some() || plan.range_touched(rec.first_span, rec.spans_end);
        if !touched {
            out.extend_from_slice(field.raw);
        } else {
            let mark = out.len();
            let slot = open_len(out, 1, body.len());
            if resource_spans(scan, plan, r, body, &mut scratch, out)? {
                close_len(out, slot);
            } else {
                out.truncate(mark);
            }
        }
        r += 1;
    }
    Ok(())
}

/// Write one ResourceSpans body; false when it is left with no scope and must be dropped.
fn resource_spans<'k>(
    scan: &Scan,
    plan: &Plan<'k>,
    r: usize,
    body: &'k [u8],
    spans_scratch: &mut PlanScratch<'k>,
    out: &mut Vec<u8>,
) -> Result<bool> {
    let rec = &scan.resources[r];
    let edits = plan.resource_edits[r].filter(|e| !e.is_noop());
    // The Resource's attributes are every occurrence's (protobuf merges them): one plan
    // over all of them, appended attributes in the last occurrence (its own scratch: the plan
    // is read while the scopes' spans are planned).
    let mut scratch = PlanScratch::default();
    let mut insert_last = Insert::Nowhere;
    if let Some(edits) = edits {
        let mut resources = Vec::new();
        let mut reader = Reader::new(body, DEPTH_LIMIT);
        while let Some(field) = reader.next()? {
            if let (1, Val::Len(inner)) = (field.num, field.val) {
                resources.push(inner);
            }
        }
        insert_last = attr_keys(&resources, 1, &mut scratch.keys)?;
        plan_attrs(&mut scratch, edits);
        if rec.resource_fields == 0 && !scratch.plan.appended.is_empty() {
            // No Resource at all: a new one, first (field 1), holding the appended keys.
            let slot = open_len(out, 1, 0);
            append_attrs(edits, &scratch.plan, 1, out);
            close_len(out, slot);
        }
    }
    let attr_plan = &scratch.plan;
    let mut next_attr = 0usize;
    let mut s = rec.first_scope as usize;
    let (mut kept, mut dropped) = (0u32, 0u32);
    let mut resource_seen = 0;
    let mut reader = Reader::new(body, DEPTH_LIMIT);
    while let Some(field) = reader.next()? {
        match (field.num, field.val) {
            (1, Val::Len(inner)) if edits.is_some() => {
                resource_seen += 1;
                let insert = if resource_seen == rec.resource_fields {
                    insert_last
                } else {
                    Insert::Nowhere
                };
                let slot = open_len(out, 1, inner.len());
                attributes(inner, 1, edits.unwrap(), attr_plan, &mut next_attr, insert, out)?;
                close_len(out, slot);
            }
            (2, Val::Len(inner)) => {
                let scope = scan.scopes.get(s).ok_or(DecodeError("request changed since scan"))?;
                let has_spans = scope.spans_end > scope.first_span;
                if !plan.range_touched(scope.first_span, scope.spans_end) {
                    out.extend_from_slice(field.raw);
                    kept += 1;
                } else {
                    let mark = out.len();
                    let slot = open_len(out, 2, inner.len());
                    let spans = scope_spans(plan, scope.first_span as usize, inner, spans_scratch, out)?;
                    if spans == 0 && has_spans {
                        out.truncate(mark);
                        dropped += 1;
                    } else {
                        close_len(out, slot);
                        kept += 1;
                    }
                }
                s += 1;
            }
            _ => out.extend_from_slice(field.raw),
        }
    }
    Ok(!(kept == 0 && dropped > 0))
}

/// Write one ScopeSpans body; returns how many spans it kept.
fn scope_spans<'k>(
    plan: &Plan<'k>,
    first_span: usize,
    body: &'k [u8],
    scratch: &mut PlanScratch<'k>,
    out: &mut Vec<u8>,
) -> Result<u32> {
    let mut i = first_span;
    let mut kept = 0;
    let mut reader = Reader::new(body, DEPTH_LIMIT);
    while let Some(field) = reader.next()? {
        let (2, Val::Len(inner)) = (field.num, field.val) else {
            out.extend_from_slice(field.raw);
            continue;
        };
        if i >= plan.keep.len() {
            return Err(DecodeError("request changed since scan"));
        }
        if plan.keep[i] {
            kept += 1;
            match plan.span_edits[i] {
                None => out.extend_from_slice(field.raw),
                Some(edits) => match edits.replace() {
                    Some(span) => write_len_field(out, 2, span),
                    None => {
                        let insert = attr_keys(&[inner], 9, &mut scratch.keys)?;
                        plan_attrs(scratch, edits);
                        let slot = open_len(out, 2, inner.len());
                        attributes(inner, 9, edits, &scratch.plan, &mut 0, insert, out)?;
                        close_len(out, slot);
                    }
                },
            }
        }
        i += 1;
    }
    Ok(kept)
}

/// The keys of the attributes (field `attr_field`) of every message body given, in order, into
/// `keys` (cleared first); returns where in the last body appended attributes go (see `Insert`).
fn attr_keys<'a>(bodies: &[&'a [u8]], attr_field: u32, keys: &mut Vec<&'a [u8]>) -> Result<Insert> {
    keys.clear();
    let (mut last_attr, mut last_lower) = (None, None);
    for body in bodies {
        (last_attr, last_lower) = (None, None);
        let mut reader = Reader::new(body, DEPTH_LIMIT);
        let mut idx = 0;
        while let Some(field) = reader.next()? {
            if let (n, Val::Len(kv)) = (field.num, field.val) {
                if n == attr_field {
                    keys.push(kv_key(kv)?);
                    last_attr = Some(idx);
                }
            }
            if field.num < attr_field {
                last_lower = Some(idx);
            }
            idx += 1;
        }
    }
    Ok(Insert::After(last_attr.or(last_lower)))
}

/// Where appended attributes go in a body: nowhere (not the last occurrence), or after the
/// field at this index (None: first). After the last attribute, else after the last field
/// numbered below the attribute field (the canonical position), else first.
#[derive(Clone, Copy, PartialEq)]
enum Insert {
    Nowhere,
    After(Option<usize>),
}

/// The key of a KeyValue body (last occurrence wins; "" when absent).
#[inline]
fn kv_key(kv: &[u8]) -> Result<&[u8]> {
    // Fast path, the shape SDKs write: a short key, then one short value, nothing else.
    if let [0x0a, key_len, rest @ ..] = kv {
        let key_len = *key_len as usize;
        if key_len < 0x80 && rest.len() > key_len {
            let (key, after) = rest.split_at(key_len);
            if let [0x12, value_len, value @ ..] = after {
                if *value_len < 0x80 && value.len() == *value_len as usize {
                    return Ok(key);
                }
            }
        }
    }
    let mut key: &[u8] = b"";
    let mut reader = Reader::new(kv, DEPTH_LIMIT);
    while let Some(field) = reader.next()? {
        if let (1, Val::Len(k)) = (field.num, field.val) {
            key = k;
        }
    }
    Ok(key)
}

/// Write a message body whose attributes are field `attr_field`, following `plan` from
/// attribute number `*next`, appending where `insert` says.
fn attributes(
    body: &[u8],
    attr_field: u32,
    edits: EditsRef<'_>,
    plan: &AttrPlan,
    next: &mut usize,
    insert: Insert,
    out: &mut Vec<u8>,
) -> Result<()> {
    let insert_after = match insert {
        Insert::After(at) if !plan.appended.is_empty() => {
            if at.is_none() {
                append_attrs(edits, plan, attr_field, out);
            }
            at
        }
        _ => None,
    };
    let mut reader = Reader::new(body, DEPTH_LIMIT);
    let mut idx = 0;
    while let Some(field) = reader.next()? {
        match (field.num == attr_field, field.val) {
            (true, Val::Len(kv)) => {
                let action = plan.actions.get(*next).copied().flatten();
                *next += 1;
                match action {
                    None => out.extend_from_slice(field.raw),
                    Some(Action::Delete) => {}
                    Some(Action::Rewrite(key, set)) => {
                        key_value(kv, attr_field, key, set.map(|j| edits.set_value(j)), out)?
                    }
                }
            }
            _ => out.extend_from_slice(field.raw),
        }
        if insert_after == Some(idx) {
            append_attrs(edits, plan, attr_field, out);
        }
        idx += 1;
    }
    Ok(())
}

/// One attribute rewritten: its key first, then the value set (if any), then its other
/// fields as they were.
fn key_value(kv: &[u8], attr_field: u32, key: &[u8], set: Option<&SetValue>, out: &mut Vec<u8>) -> Result<()> {
    let slot = open_len(out, attr_field, kv.len());
    if !key.is_empty() {
        write_len_field(out, 1, key);
    }
    if let Some(value) = set {
        if value.present {
            let body = value.body.as_slice();
            let slot = open_len(out, 2, body.len());
            out.extend_from_slice(body);
            if value.keeps_unknown {
                old_value_unknowns(kv, out)?;
            }
            close_len(out, slot);
        }
    }
    let mut reader = Reader::new(kv, DEPTH_LIMIT);
    while let Some(field) = reader.next()? {
        match (field.num, field.wire_type) {
            (1, LEN) => {}
            (2, LEN) if set.is_some() => {}
            _ => out.extend_from_slice(field.raw),
        }
    }
    close_len(out, slot);
    Ok(())
}

/// The unknown fields of a KeyValue's old value (every occurrence), which protobuf keeps
/// when a scalar is written into it.
fn old_value_unknowns(kv: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut reader = Reader::new(kv, DEPTH_LIMIT);
    while let Some(field) = reader.next()? {
        let (2, Val::Len(value)) = (field.num, field.val) else {
            continue;
        };
        let mut inner = Reader::new(value, DEPTH_LIMIT);
        while let Some(f) = inner.next()? {
            let known = matches!(
                (f.num, f.wire_type),
                (1 | 5 | 6 | 7, LEN) | (2 | 3 | 8, VARINT) | (4, I64)
            );
            if !known {
                out.extend_from_slice(f.raw);
            }
        }
    }
    Ok(())
}

/// The appended attributes, in the order their keys were first set.
fn append_attrs(edits: EditsRef<'_>, plan: &AttrPlan, attr_field: u32, out: &mut Vec<u8>) {
    for (key, j) in &plan.appended {
        let value = edits.set_value(*j);
        let slot = open_len(out, attr_field, key.len() + value.body.as_slice().len() + 4);
        if !key.is_empty() {
            write_len_field(out, 1, key);
        }
        if value.present {
            write_len_field(out, 2, value.body.as_slice());
        }
        close_len(out, slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plan_attrs` as it was before the fingerprint masks (every set key looked for among
    /// the list's keys and the appended ones): the reference of the masked one. The renames
    /// and deletes are the same phase (`rename_and_delete`): the masks only change the sets'.
    fn plan_reference<'k>(
        keys: &[&'k [u8]],
        edits: EditsRef<'k>,
    ) -> (Vec<Option<(bool, &'k [u8], Option<usize>)>>, Vec<(&'k [u8], usize)>) {
        let n = keys.len();
        let mut current = keys.to_vec();
        let (mut renamed, mut deleted) = (vec![false; n], vec![false; n]);
        rename_and_delete(&mut current, &mut renamed, &mut deleted, &mut Vec::new(), edits);
        let mut set_of = vec![None; n];
        let mut appended: Vec<(&[u8], usize)> = Vec::new();
        for j in 0..edits.sets_len() {
            let key = edits.set_key(j);
            match (0..n).rev().find(|&i| !deleted[i] && current[i] == key) {
                Some(at) => set_of[at] = Some(j),
                None => match appended.iter_mut().find(|(k, _)| *k == key) {
                    Some(entry) => entry.1 = j,
                    None => appended.push((key, j)),
                },
            }
        }
        let actions = (0..n)
            .map(|i| {
                if deleted[i] {
                    Some((true, &b""[..], None))
                } else if renamed[i] || set_of[i].is_some() {
                    Some((false, current[i], set_of[i]))
                } else {
                    None
                }
            })
            .collect();
        (actions, appended)
    }

    /// xorshift64*: a fixed sequence, no dependency.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
    }

    #[test]
    fn plan_attrs_agrees_with_the_unmasked_plan() {
        // Keys alike in length and ends (the fingerprints' hard case), some repeated.
        let pool: Vec<Vec<u8>> = (0..40)
            .map(|i| match i % 4 {
                0 => format!("owner.{i:02}").into_bytes(),
                1 => format!("workflow.x{i:02}.id").into_bytes(),
                2 => format!("k{i}").into_bytes(),
                _ => format!("cost.{}.usd", "ab".repeat(i % 7)).into_bytes(),
            })
            .chain([b"".to_vec()])
            .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..4000 {
            let mut arena = EditArena::default();
            let ids: Vec<u32> = pool.iter().map(|k| arena.push_key(k)).collect();
            arena.values.push(SetValue::scalar(&b"\x0a\x01v"[..]));
            let span: usize = rng.below(12);
            let keys: Vec<&[u8]> = (0..span).map(|_| pool[rng.below(pool.len())].as_slice()).collect();
            let pick = |rng: &mut Rng| ids[rng.below(if round % 2 == 0 { 12 } else { pool.len() })];
            for _ in 0..rng.below(3) {
                let pair = (pick(&mut rng), pick(&mut rng));
                arena.renames.push(pair);
            }
            for _ in 0..rng.below(3) {
                let key = pick(&mut rng);
                arena.deletes.push(key);
            }
            for _ in 0..rng.below(14) {
                let key = pick(&mut rng);
                arena.sets.push((key, 0));
            }
            let edits = ArenaEdits {
                renames: (0, arena.renames.len() as u32),
                deletes: (0, arena.deletes.len() as u32),
                sets: (0, arena.sets.len() as u32),
                replace: None,
            };
            let edits = arena.get(&edits);
            let mut scratch = PlanScratch::default();
            scratch.keys.extend_from_slice(&keys);
            plan_attrs(&mut scratch, edits);
            let actions: Vec<_> = scratch
                .plan
                .actions
                .iter()
                .map(|a| match a {
                    None => None,
                    Some(Action::Delete) => Some((true, &b""[..], None)),
                    Some(Action::Rewrite(key, set)) => Some((false, *key, *set)),
                })
                .collect();
            let (want_actions, want_appended) = plan_reference(&keys, edits);
            assert_eq!(actions, want_actions, "round {round}");
            assert_eq!(scratch.plan.appended, want_appended, "round {round}");
        }
    }
}
