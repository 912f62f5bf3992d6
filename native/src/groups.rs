//! Group edits and span groups: the mechanical per-span work of a decision made once per
//! group of alike spans.
//!
//! `merge` expands one span's edits from its own and its groups' (api.py `_merge`, the
//! Python oracle): each group's renames, deletes and sets go right after the prefix of the
//! span's own lists that existed when the group was added. `group_spans` sorts scanned spans
//! into groups by their watched keys, the kind of each value and the string values of chosen
//! keys (api.py `span_groups`, the oracle): spans of one group get the same decision from a
//! policy that reads only those.

use std::collections::HashMap;

use crate::encode::AttrEdits;
use crate::kinds::kind_letter;
use crate::scan::{Scan, SpanRec, Value};

/// Where a group's edits go among a span's own: after this many of its renames, deletes, sets.
pub type Cut = (usize, usize, usize);

/// A span's effective edits: its own (if any) with each group's inserted at its cut, groups
/// in the order they were added (their cuts never decrease).
pub fn merge(own: Option<&AttrEdits>, groups: &[(&AttrEdits, Option<Cut>)]) -> AttrEdits {
    let empty = AttrEdits::default();
    let own = own.unwrap_or(&empty);
    let mut out = AttrEdits::default();
    let mut at: Cut = (0, 0, 0);
    for (group, cut) in groups {
        let cut = cut.unwrap_or(at);
        let cut = (
            cut.0.min(own.renames.len()),
            cut.1.min(own.deletes.len()),
            cut.2.min(own.sets.len()),
        );
        let cut = (cut.0.max(at.0), cut.1.max(at.1), cut.2.max(at.2));
        out.renames.extend_from_slice(&own.renames[at.0..cut.0]);
        out.deletes.extend_from_slice(&own.deletes[at.1..cut.1]);
        out.sets.extend_from_slice(&own.sets[at.2..cut.2]);
        out.renames.extend_from_slice(&group.renames);
        out.deletes.extend_from_slice(&group.deletes);
        out.sets.extend_from_slice(&group.sets);
        at = cut;
    }
    out.renames.extend_from_slice(&own.renames[at.0..]);
    out.deletes.extend_from_slice(&own.deletes[at.1..]);
    out.sets.extend_from_slice(&own.sets[at.2..]);
    out
}

/// Spans sorted into groups (each a list of span indices, ascending; groups in the order of
/// their first span) and the spans left loose (repeated watched keys, or watched keys on
/// events: a policy must look at those one by one). A group's key: per watched attribute in
/// the span's order, its key id, its value's kind letter and, when `by_value[id]` and the
/// value is a string, the string itself.
pub fn group_spans(raw: &[u8], scan: &Scan, by_value: &[bool]) -> (Vec<Vec<u32>>, Vec<u32>) {
    let mut groups: Vec<Vec<u32>> = Vec::new();
    let mut loose = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut key = Vec::with_capacity(64);
    for (i, span) in scan.spans.iter().enumerate() {
        if is_loose(span) {
            loose.push(i as u32);
            continue;
        }
        key.clear();
        span_key(raw, span, by_value, &mut key);
        match index.get(key.as_slice()) {
            Some(&g) => groups[g].push(i as u32),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push(vec![i as u32]);
            }
        }
    }
    (groups, loose)
}

/// Whether `group_spans` leaves a span loose: a watched key sent twice, or watched keys on events.
#[inline]
pub fn is_loose(span: &SpanRec) -> bool {
    span.repeated || !span.event_keys.is_empty()
}

/// A span's group key as `group_spans` groups by it, appended to `out`: per watched attribute
/// in the span's order, its key id, its value's kind letter and, when `by_value[id]` and the
/// value is a string, the string (its length first). Key ids name keys of one scan's watched
/// list only: compare keys of scans with the same list.
#[inline]
pub fn span_key(raw: &[u8], span: &SpanRec, by_value: &[bool], out: &mut Vec<u8>) {
    for (id, value) in &span.attrs {
        out.extend_from_slice(&id.to_le_bytes());
        out.push(kind_letter(value));
        if let Value::Str(range) = value {
            if by_value.get(*id as usize).copied().unwrap_or(false) {
                let text = range.get(raw);
                out.extend_from_slice(&(text.len() as u32).to_le_bytes());
                out.extend_from_slice(text);
            }
        }
    }
}

/// What a group's decision is keyed by (api.py `group_key`, the oracle): its first span's
/// SpanView.kinds and, sorted by key, the string values of its `by_value` keys. Spans of a
/// group share both (they are what `group_spans` groups by), so one decision kept under this
/// key holds for every group that has it, in any batch.
pub fn group_key<'k, 'r>(
    raw: &'r [u8],
    keys: &'k [Vec<u8>],
    attrs: &[(u16, Value)],
    by_value: &[bool],
) -> (Vec<u8>, Vec<(&'k [u8], &'r [u8])>) {
    let mut pairs: Vec<(&[u8], u8)> = attrs
        .iter()
        .map(|(id, v)| (keys[*id as usize].as_slice(), kind_letter(v)))
        .collect();
    let kinds = crate::kinds::canonical(&mut pairs);
    let mut values: Vec<(&'k [u8], &'r [u8])> = Vec::new();
    for (id, value) in attrs {
        if let Value::Str(range) = value {
            if by_value.get(*id as usize).copied().unwrap_or(false) {
                values.push((keys[*id as usize].as_slice(), range.get(raw)));
            }
        }
    }
    values.sort_unstable_by(|a, b| a.0.cmp(b.0));
    (kinds, values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::SetValue;

    fn edits(renames: &[(&str, &str)], sets: &[&str]) -> AttrEdits {
        AttrEdits {
            renames: renames
                .iter()
                .map(|(a, b)| (a.as_bytes().into(), b.as_bytes().into()))
                .collect(),
            deletes: Vec::new(),
            sets: sets
                .iter()
                .map(|k| (k.as_bytes().into(), SetValue::scalar(vec![])))
                .collect(),
            replace: None,
        }
    }

    fn set_keys(e: &AttrEdits) -> Vec<&[u8]> {
        e.sets.iter().map(|(k, _)| &k[..]).collect()
    }

    #[test]
    fn groups_go_where_they_were_added_among_a_spans_own_edits() {
        let own = edits(&[("x", "y")], &["a", "b", "c"]);
        let first = edits(&[("old", "new")], &["stamp"]);
        let second = edits(&[], &["schema"]);
        // first added before the span had edits, second after its first two sets
        let merged = merge(Some(&own), &[(&first, None), (&second, Some((1, 0, 2)))]);
        assert_eq!(set_keys(&merged), vec![&b"stamp"[..], b"a", b"b", b"schema", b"c"]);
        assert_eq!(&merged.renames[0].0[..], b"old");
        assert_eq!(&merged.renames[1].0[..], b"x");
        let alone = merge(None, &[(&first, None), (&second, None)]);
        assert_eq!(set_keys(&alone), vec![&b"stamp"[..], b"schema"]);
    }
}
