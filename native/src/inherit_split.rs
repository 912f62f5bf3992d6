//! inherit's split of an extracted request into one-span requests (each with its resource,
//! scope and schema URLs), on the wire bytes, in one call per batch. The Python equivalent,
//! the fallback and the oracle, is `costctx.processors.inherit.split.python_one_span_requests`:
//! the same walk, field by field, with the same result on a codec's output (valid protobuf).
//! On bytes that are not (a length or fixed field past its message's end, a truncated
//! varint, a group) this raises ValueError, as the Python walk does for a truncated varint
//! and a group (it reads lengths past the end as cut short: such bytes never reach it).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

fn malformed(why: &str) -> PyErr {
    PyValueError::new_err(format!("not a codec's output: {why}"))
}

/// A varint as the Python walk reads it (pdata/wire_count.read_varint: at most 10 bytes).
fn varint(buf: &[u8], pos: &mut usize, end: usize) -> PyResult<u64> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        if *pos >= end || shift > 63 {
            return Err(malformed("truncated varint"));
        }
        let byte = buf[*pos];
        *pos += 1;
        value |= ((byte & 0x7f) as u64).wrapping_shl(shift);
        if byte < 0x80 {
            return Ok(value);
        }
        shift += 7;
    }
}

/// One field: (number, start of its tag, start of its value, end), as split.py's `_fields`
/// yields it (a varint's value is empty; a fixed field's value is the whole field).
struct Field {
    num: u64,
    start: usize,
    value_at: usize,
    end: usize,
}

fn fields(buf: &[u8], mut pos: usize, end: usize) -> PyResult<Vec<Field>> {
    let mut out = Vec::new();
    while pos < end {
        out.push(fields_one(buf, &mut pos, end)?);
    }
    Ok(out)
}

/// The fields of a message before and after its `inner` fields, and the `inner` ones.
fn around(raw: &[u8], at: usize, end: usize, inner: u64) -> PyResult<(Vec<u8>, Vec<u8>, Vec<Field>)> {
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut found = Vec::new();
    for field in fields(raw, at, end)? {
        if field.num == inner {
            found.push(field);
        } else if found.is_empty() {
            before.extend_from_slice(&raw[field.start..field.end]);
        } else {
            after.extend_from_slice(&raw[field.start..field.end]);
        }
    }
    Ok((before, after, found))
}

/// trace id + span id of the span at raw[at..end] (the first of each; the walk stops there).
fn ids(raw: &[u8], mut pos: usize, end: usize) -> PyResult<Vec<u8>> {
    let mut trace: Option<&[u8]> = None;
    let mut span: Option<&[u8]> = None;
    // The Python walk reads field by field and stops once both are found: a bad field
    // after them is never read. So here, one field at a time too.
    while pos < end && (trace.is_none() || span.is_none()) {
        let next = fields_one(raw, &mut pos, end)?;
        match next.num {
            1 => trace = Some(&raw[next.value_at..next.end]), // a repeated one: the last
            2 => span = Some(&raw[next.value_at..next.end]),
            _ => {}
        }
    }
    let mut key = trace.unwrap_or(&[]).to_vec();
    key.extend_from_slice(span.unwrap_or(&[]));
    Ok(key)
}

/// The next field of raw[pos..end] (what `fields` makes of it), pos moved past it.
fn fields_one(raw: &[u8], pos: &mut usize, end: usize) -> PyResult<Field> {
    let start = *pos;
    let tag = varint(raw, pos, end)?;
    let num = tag >> 3;
    match tag & 7 {
        0 => {
            varint(raw, pos, end)?;
            Ok(Field {
                num,
                start,
                value_at: *pos,
                end: *pos,
            })
        }
        2 => {
            let length = varint(raw, pos, end)?;
            let value_at = *pos;
            let value_end = value_at
                .checked_add(usize::try_from(length).map_err(|_| malformed("length"))?)
                .filter(|&e| e <= end)
                .ok_or_else(|| malformed("length past the end"))?;
            *pos = value_end;
            Ok(Field {
                num,
                start,
                value_at,
                end: value_end,
            })
        }
        wire @ (1 | 5) => {
            *pos += if wire == 1 { 8 } else { 4 };
            if *pos > end {
                return Err(malformed("fixed field past the end"));
            }
            Ok(Field {
                num,
                start,
                value_at: start,
                end: *pos,
            })
        }
        _ => Err(malformed("unexpected wire type")),
    }
}

fn wrap(out: &mut Vec<u8>, field: u64, body_len: usize) {
    crate::wire::write_varint(out, (field << 3) | 2);
    crate::wire::write_varint(out, body_len as u64);
}

/// See `costctx.processors.inherit.split.python_one_span_requests`: (trace id + span id,
/// one-span request) per span of `raw`, in request order.
#[pyfunction]
pub fn one_span_requests<'py>(py: Python<'py>, raw: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyList>> {
    let raw = raw.as_bytes();
    let out = PyList::empty(py);
    for rs in fields(raw, 0, raw.len())? {
        if rs.num != 1 {
            continue; // resource_spans only
        }
        let (rs_before, rs_after, scopes) = around(raw, rs.value_at, rs.end, 2)?;
        for scope in scopes {
            let (ss_before, ss_after, spans) = around(raw, scope.value_at, scope.end, 2)?;
            for span in spans {
                let span_raw = &raw[span.start..span.end];
                let scope_len = ss_before.len() + span_raw.len() + ss_after.len();
                let mut scope_spans = Vec::with_capacity(scope_len + 12);
                wrap(&mut scope_spans, 2, scope_len);
                scope_spans.extend_from_slice(&ss_before);
                scope_spans.extend_from_slice(span_raw);
                scope_spans.extend_from_slice(&ss_after);
                let rs_len = rs_before.len() + scope_spans.len() + rs_after.len();
                let mut request = Vec::with_capacity(rs_len + 12);
                wrap(&mut request, 1, rs_len);
                request.extend_from_slice(&rs_before);
                request.extend_from_slice(&scope_spans);
                request.extend_from_slice(&rs_after);
                let key = ids(raw, span.value_at, span.end)?;
                let pair = PyTuple::new(py, [PyBytes::new(py, &key), PyBytes::new(py, &request)])?;
                out.append(pair)?;
            }
        }
    }
    Ok(out)
}
