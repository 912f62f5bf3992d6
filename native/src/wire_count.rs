//! The receivers' count of an OTLP request's resource, scope and item blocks on the wire,
//! before anything is parsed: sidecar/costctx/pdata/wire_count.py's `over_limit` (the
//! fallback and the oracle) in Rust, with the same answer on every input. Every request
//! received runs it; in Python it cost ~50 us per 100-span request (0.5 us per span).
//!
//! All three OTLP export requests share one shape: field 1 of the request is a resource
//! block, field 2 of a resource block a scope block, field 2 of a scope block an item. Only
//! those three levels are walked, everything else skipped by its length; a fault in the wire
//! format answers "not over" (the parser says why), but only once the walk reaches it, as the
//! Python generators do: a limit passed before the fault still answers "over".

use pyo3::prelude::*;

struct Malformed;

/// A varint at data[pos..end] and the position after it. Up to 10 bytes as the Python reader
/// takes them (its integers are unbounded: u128 holds every value it can produce).
fn varint(data: &[u8], mut pos: usize, end: usize) -> Result<(u128, usize), Malformed> {
    let mut result: u128 = 0;
    let mut shift = 0u32;
    loop {
        if pos >= end || shift > 63 {
            return Err(Malformed);
        }
        let byte = data[pos];
        pos += 1;
        result |= u128::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok((result, pos));
        }
        shift += 7;
    }
}

enum Field {
    /// A length-delimited value: field number, start, end.
    Delimited(u128, usize, usize),
    /// Any other wire type: the position after it (may pass `end`: checked by the caller).
    Other(usize),
}

fn field(data: &[u8], pos: usize, end: usize) -> Result<Field, Malformed> {
    let (tag, pos) = varint(data, pos, end)?;
    match tag & 7 {
        2 => {
            let (length, start) = varint(data, pos, end)?;
            if start as u128 + length > end as u128 {
                return Err(Malformed);
            }
            Ok(Field::Delimited(tag >> 3, start, start + length as usize))
        }
        0 => Ok(Field::Other(varint(data, pos, end)?.1)),
        1 => Ok(Field::Other(pos + 8)),
        5 => Ok(Field::Other(pos + 4)),
        _ => Err(Malformed),
    }
}

/// Calls `each(start, end)` for every length-delimited field `number` of the message
/// data[start..end], in order, until it answers Some (returned). Malformed once the walk
/// reaches a fault: the fields before it were visited.
fn children<T>(
    data: &[u8],
    start: usize,
    end: usize,
    number: u128,
    mut each: impl FnMut(usize, usize) -> Result<Option<T>, Malformed>,
) -> Result<Option<T>, Malformed> {
    let mut pos = start;
    while pos < end {
        match field(data, pos, end)? {
            Field::Other(after) => pos = after,
            Field::Delimited(found, value_start, value_end) => {
                if found == number {
                    if let Some(answer) = each(value_start, value_end)? {
                        return Ok(Some(answer));
                    }
                }
                pos = value_end;
            }
        }
    }
    if pos > end {
        return Err(Malformed);
    }
    Ok(None)
}

fn walk(body: &[u8], max_items: u64) -> Result<Option<()>, Malformed> {
    let (mut blocks, mut items) = (0u64, 0u64);
    children(body, 0, body.len(), 1, |r_start, r_end| {
        blocks += 1;
        let scopes = children(body, r_start, r_end, 2, |s_start, s_end| {
            blocks += 1;
            let limit = max_items - items; // items <= max_items here
            let mut found = 0u64;
            children(body, s_start, s_end, 2, |_, _| {
                found += 1;
                Ok((found > limit).then_some(()))
            })?;
            items += found;
            Ok((items > max_items || blocks > max_items).then_some(()))
        })?;
        Ok((scopes.is_some() || blocks > max_items).then_some(()))
    })
}

/// True once the items, or the resource and scope blocks together, pass `max_items`; False
/// for a request within it and for one that is not valid protobuf (left to the parser).
#[pyfunction]
pub fn over_limit(py: Python<'_>, body: &[u8], max_items: u64) -> bool {
    py.detach(|| matches!(walk(body, max_items), Ok(Some(()))))
}
