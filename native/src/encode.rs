//! Encode: write a scanned request back with the processors' edits applied, in one pass,
//! fixing every enclosing length prefix. Untouched resources, scopes, spans and attributes
//! are copied as they arrived; only what an edit touches is re-encoded.
//!
//! For a canonical input (fields in number order, as SDKs write) the output is the bytes
//! protobuf would serialize for the edited message: a renamed key is written first in its
//! KeyValue, a replaced value right after the key, appended attributes right after the
//! last existing one (or where field 9/1 belongs when there is none).

use crate::scan::Scan;
use crate::schema::DEPTH_LIMIT;
use crate::wire::{close_len, open_len, write_len_field, write_tag, DecodeError, Reader, Result, Val, LEN};

/// Edits of one attribute list (a span's or a resource's). Values are AnyValue bodies,
/// already encoded.
#[derive(Clone, Debug, Default)]
pub struct AttrEdits {
    pub renames: Vec<(Vec<u8>, Vec<u8>)>,
    pub deletes: Vec<Vec<u8>>,
    pub sets: Vec<(Vec<u8>, Vec<u8>)>,
    /// The whole span re-encoded (spans only): the other fields are ignored.
    pub replace: Option<Vec<u8>>,
}

impl AttrEdits {
    fn is_noop(&self) -> bool {
        self.renames.is_empty() && self.deletes.is_empty() && self.sets.is_empty() && self.replace.is_none()
    }

    /// The key after renames (applied in order), or None when a delete drops it.
    fn final_key<'k>(&'k self, key: &'k [u8]) -> Option<&'k [u8]> {
        let mut key = key;
        for (old, new) in &self.renames {
            if key == old.as_slice() {
                key = new.as_slice();
            }
        }
        if self.deletes.iter().any(|d| d.as_slice() == key) {
            return None;
        }
        Some(key)
    }

    /// The value to set for `key` (the last one given wins).
    fn set_for(&self, key: &[u8]) -> Option<usize> {
        self.sets.iter().rposition(|(k, _)| k.as_slice() == key)
    }
}

/// Everything to apply to one scanned request.
pub struct Plan<'e> {
    /// Per span: an index into `edits`, or None.
    pub span_edits: Vec<Option<&'e AttrEdits>>,
    pub resource_edits: Vec<Option<&'e AttrEdits>>,
    /// Per span: written out or not.
    pub keep: Vec<bool>,
    /// extract: drop every scope and resource left without spans (encode drops only those
    /// emptied by removals).
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

    fn span_touched(&self, i: usize) -> bool {
        !self.keep[i] || self.span_edits[i].is_some()
    }

    fn range_touched(&self, first: u32, end: u32) -> bool {
        (first as usize..end as usize).any(|i| self.span_touched(i))
    }
}

pub fn encode(raw: &[u8], scan: &Scan, plan: &Plan) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 8 + 64);
    let mut reader = Reader::new(raw, DEPTH_LIMIT);
    let mut r = 0usize;
    while let Some(field) = reader.next()? {
        let (1, Val::Len(body)) = (field.num, field.val) else {
            out.extend_from_slice(field.raw);
            continue;
        };
        let rec = scan.resources.get(r).ok_or(DecodeError("request changed since scan"))?;
        let touched = plan.extract || plan.resource_edits[r].is_some() || plan.range_touched(rec.first_span, rec.spans_end);
        if !touched {
            out.extend_from_slice(field.raw);
        } else {
            let mark = out.len();
            let slot = open_len(&mut out, 1, body.len());
            if resource_spans(raw, scan, plan, r, body, &mut out)? {
                close_len(&mut out, slot);
            } else {
                out.truncate(mark);
            }
        }
        r += 1;
    }
    Ok(out)
}

/// Write one ResourceSpans body; false when it is left with no scope and must be dropped.
fn resource_spans(raw: &[u8], scan: &Scan, plan: &Plan, r: usize, body: &[u8], out: &mut Vec<u8>) -> Result<bool> {
    let rec = &scan.resources[r];
    let edits = plan.resource_edits[r].filter(|e| !e.is_noop());
    let mut present = Vec::new();
    if let Some(edits) = edits {
        present = sets_present_in_resource(body, edits)?;
        if rec.resource_fields == 0 && present.iter().any(|p| !p) {
            // No Resource at all: a new one, first (field 1), holding the appended keys.
            let slot = open_len(out, 1, 0);
            append_sets(edits, &present, 1, out);
            close_len(out, slot);
        }
    }
    let mut s = rec.first_scope as usize;
    let (mut kept, mut dropped) = (0u32, 0u32);
    let mut resource_seen = 0;
    let mut reader = Reader::new(body, DEPTH_LIMIT);
    while let Some(field) = reader.next()? {
        match (field.num, field.val) {
            (1, Val::Len(inner)) if edits.is_some() => {
                resource_seen += 1;
                let last = resource_seen == rec.resource_fields;
                let slot = open_len(out, 1, inner.len());
                attributes(inner, 1, edits.unwrap(), &present, last, out)?;
                close_len(out, slot);
            }
            (2, Val::Len(inner)) => {
                let scope = scan.scopes.get(s).ok_or(DecodeError("request changed since scan"))?;
                let has_spans = scope.spans_end > scope.first_span;
                if !plan.extract && !plan.range_touched(scope.first_span, scope.spans_end) {
                    out.extend_from_slice(field.raw);
                    kept += 1;
                } else {
                    let mark = out.len();
                    let slot = open_len(out, 2, inner.len());
                    let spans = scope_spans(raw, scan, plan, scope.first_span as usize, inner, out)?;
                    if spans == 0 && (plan.extract || has_spans) {
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
    Ok(!(kept == 0 && (plan.extract || dropped > 0)))
}

/// Write one ScopeSpans body; returns how many spans it kept.
fn scope_spans(raw: &[u8], scan: &Scan, plan: &Plan, first_span: usize, body: &[u8], out: &mut Vec<u8>) -> Result<u32> {
    let _ = (raw, scan);
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
                Some(edits) => match &edits.replace {
                    Some(span) => write_len_field(out, 2, span),
                    None => {
                        let present = sets_present(inner, 9, edits)?;
                        let slot = open_len(out, 2, inner.len());
                        attributes(inner, 9, edits, &present, true, out)?;
                        close_len(out, slot);
                    }
                },
            }
        }
        i += 1;
    }
    Ok(kept)
}

/// For each set, whether its key is present (after renames and deletes) in the attribute
/// field `attr_field` of `body`.
fn sets_present(body: &[u8], attr_field: u32, edits: &AttrEdits) -> Result<Vec<bool>> {
    let mut present = vec![false; edits.sets.len()];
    if edits.sets.is_empty() {
        return Ok(present);
    }
    mark_present(body, attr_field, edits, &mut present)?;
    Ok(present)
}

fn mark_present(body: &[u8], attr_field: u32, edits: &AttrEdits, present: &mut [bool]) -> Result<()> {
    let mut reader = Reader::new(body, DEPTH_LIMIT);
    while let Some(field) = reader.next()? {
        if let (n, Val::Len(kv)) = (field.num, field.val) {
            if n == attr_field {
                if let Some(key) = edits.final_key(kv_key(kv)?) {
                    for (j, (k, _)) in edits.sets.iter().enumerate() {
                        if k.as_slice() == key {
                            present[j] = true;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The same over every Resource occurrence of a ResourceSpans (protobuf merges them).
fn sets_present_in_resource(rs_body: &[u8], edits: &AttrEdits) -> Result<Vec<bool>> {
    let mut present = vec![false; edits.sets.len()];
    let mut reader = Reader::new(rs_body, DEPTH_LIMIT);
    while let Some(field) = reader.next()? {
        if let (1, Val::Len(resource)) = (field.num, field.val) {
            mark_present(resource, 1, edits, &mut present)?;
        }
    }
    Ok(present)
}

/// The key of a KeyValue body (last occurrence wins; "" when absent).
fn kv_key(kv: &[u8]) -> Result<&[u8]> {
    let mut key: &[u8] = b"";
    let mut reader = Reader::new(kv, DEPTH_LIMIT);
    while let Some(field) = reader.next()? {
        if let (1, Val::Len(k)) = (field.num, field.val) {
            key = k;
        }
    }
    Ok(key)
}

/// Write a message body whose attributes are field `attr_field`, with `edits` applied;
/// `append_here` says whether the keys not present are appended in this occurrence.
fn attributes(body: &[u8], attr_field: u32, edits: &AttrEdits, present: &[bool], append_here: bool, out: &mut Vec<u8>) -> Result<()> {
    let needs_append = append_here && present.iter().any(|p| !p);
    // Where appended attributes go: after the last attribute, else after the last field
    // numbered below the attribute field (the canonical position), else first.
    let mut insert_after: Option<usize> = None; // index of the field after which to append
    if needs_append {
        let mut last_attr = None;
        let mut last_lower = None;
        let mut reader = Reader::new(body, DEPTH_LIMIT);
        let mut idx = 0;
        while let Some(field) = reader.next()? {
            if field.num == attr_field && field.wire_type == LEN {
                last_attr = Some(idx);
            } else if field.num < attr_field {
                last_lower = Some(idx);
            }
            idx += 1;
        }
        insert_after = last_attr.or(last_lower);
        if insert_after.is_none() {
            append_sets(edits, present, attr_field, out);
        }
    }
    let mut reader = Reader::new(body, DEPTH_LIMIT);
    let mut idx = 0;
    while let Some(field) = reader.next()? {
        match (field.num == attr_field, field.val) {
            (true, Val::Len(kv)) => key_value(kv, field.raw, attr_field, edits, out)?,
            _ => out.extend_from_slice(field.raw),
        }
        if needs_append && insert_after == Some(idx) {
            append_sets(edits, present, attr_field, out);
        }
        idx += 1;
    }
    Ok(())
}

/// One attribute with renames, deletes and in-place sets applied.
fn key_value(kv: &[u8], raw_field: &[u8], attr_field: u32, edits: &AttrEdits, out: &mut Vec<u8>) -> Result<()> {
    let key = kv_key(kv)?;
    let Some(new_key) = edits.final_key(key) else {
        return Ok(()); // deleted
    };
    let set = edits.set_for(new_key);
    if set.is_none() && new_key == key {
        out.extend_from_slice(raw_field);
        return Ok(());
    }
    let slot = open_len(out, attr_field, kv.len());
    if !new_key.is_empty() {
        write_len_field(out, 1, new_key);
    }
    if let Some(j) = set {
        write_len_field(out, 2, &edits.sets[j].1);
    }
    let mut reader = Reader::new(kv, DEPTH_LIMIT);
    while let Some(field) = reader.next()? {
        match field.num {
            1 if field.wire_type == LEN => {}
            2 if field.wire_type == LEN && set.is_some() => {}
            _ => out.extend_from_slice(field.raw),
        }
    }
    close_len(out, slot);
    Ok(())
}

/// The attributes whose keys were not present, in the order the sets give them (a key set
/// twice appears once, with its last value).
fn append_sets(edits: &AttrEdits, present: &[bool], attr_field: u32, out: &mut Vec<u8>) {
    for (j, (key, _)) in edits.sets.iter().enumerate() {
        if present[j] || edits.sets[..j].iter().any(|(k, _)| k == key) {
            continue;
        }
        let value = &edits.sets[edits.set_for(key).unwrap()].1;
        let key_part = if key.is_empty() { 0 } else { 1 + crate::wire::varint_len(key.len() as u64) + key.len() };
        let body_len = key_part + 1 + crate::wire::varint_len(value.len() as u64) + value.len();
        write_tag(out, attr_field, LEN);
        crate::wire::write_varint(out, body_len as u64);
        if !key.is_empty() {
            write_len_field(out, 1, key);
        }
        write_len_field(out, 2, value);
    }
}
