//! Protobuf wire format over checked slices: varints, tags, and a field reader that skips
//! what it does not need. Every read is bounds-checked; nothing here panics on bad input.
//!
//! Semantics follow upb (the Python protobuf runtime this codec must agree with): a varint
//! is at most 10 bytes and the bits past 64 are ignored; a tag above u32::MAX, field number 0
//! or wire type 6/7 is malformed; an end-group outside a group is malformed; groups count
//! against the nesting limit like sub-messages.

pub const VARINT: u8 = 0;
pub const I64: u8 = 1;
pub const LEN: u8 = 2;
pub const SGROUP: u8 = 3;
pub const EGROUP: u8 = 4;
pub const I32: u8 = 5;

/// Why a request was refused. Static text: the error path never allocates per byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

pub type Result<T> = std::result::Result<T, DecodeError>;

#[inline]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let Some(&byte) = buf.get(*pos + i) else {
            return Err(DecodeError("truncated varint"));
        };
        value |= ((byte & 0x7f) as u64).wrapping_shl(7 * i as u32);
        if byte & 0x80 == 0 {
            *pos += i + 1;
            return Ok(value);
        }
    }
    Err(DecodeError("varint longer than 10 bytes"))
}

#[inline]
pub fn varint_len(mut value: u64) -> usize {
    let mut n = 1;
    while value >= 0x80 {
        value >>= 7;
        n += 1;
    }
    n
}

#[inline]
pub fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[inline]
pub fn write_tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    write_varint(out, ((field as u64) << 3) | wire_type as u64);
}

/// A length-delimited field: tag, length, body.
#[inline]
pub fn write_len_field(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    write_tag(out, field, LEN);
    write_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// Open a length-delimited field whose body is written next; `close_len` fixes the prefix.
/// A placeholder of `guess` bytes is reserved so the common case (same length class as the
/// input) needs no move.
#[inline]
pub fn open_len(out: &mut Vec<u8>, field: u32, guess: usize) -> (usize, usize) {
    write_tag(out, field, LEN);
    let width = varint_len(guess as u64);
    let at = out.len();
    out.resize(at + width, 0);
    (at, width)
}

#[inline]
pub fn close_len(out: &mut Vec<u8>, (at, width): (usize, usize)) {
    let body_start = at + width;
    let len = out.len() - body_start;
    let need = varint_len(len as u64);
    if need != width {
        // Move the body to fit the real prefix width (rare: the length crossed a 7-bit class).
        if need > width {
            let grow = need - width;
            out.resize(out.len() + grow, 0);
            out.copy_within(body_start..body_start + len, body_start + grow);
        } else {
            let shrink = width - need;
            out.copy_within(body_start..body_start + len, body_start - shrink);
            out.truncate(out.len() - shrink);
        }
    }
    let mut v = len as u64;
    let mut p = at;
    while v >= 0x80 {
        out[p] = (v as u8) | 0x80;
        v >>= 7;
        p += 1;
    }
    out[p] = v as u8;
}

#[derive(Clone, Copy, Debug)]
pub enum Val<'a> {
    Varint(u64),
    I64(u64),
    Len(&'a [u8]),
    I32(u32),
    Group,
}

#[derive(Clone, Copy, Debug)]
pub struct Field<'a> {
    pub num: u32,
    pub wire_type: u8,
    pub val: Val<'a>,
    /// The whole field (tag included) as it sits in the message, for verbatim copies.
    pub raw: &'a [u8],
}

impl<'a> Field<'a> {
    #[inline]
    pub fn len_body(&self) -> Option<&'a [u8]> {
        match self.val {
            Val::Len(body) => Some(body),
            _ => None,
        }
    }
}

/// Iterates the fields of one message body. `depth` is the nesting budget left for this
/// message's children (groups are skipped here and spend it).
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: i32,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(buf: &'a [u8], depth: i32) -> Self {
        Reader { buf, pos: 0, depth }
    }

    #[inline(always)]
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Field<'a>>> {
        let start = self.pos;
        let Some(&first) = self.buf.get(start) else {
            return Ok(None);
        };
        // Fast path: a one-byte tag and, for length-delimited fields, a one-byte length
        // (nearly every field of a span).
        if (8..0x80).contains(&first) {
            let (num, wire_type) = ((first >> 3) as u32, first & 7);
            if wire_type == LEN {
                if let Some(&len) = self.buf.get(start + 1) {
                    if len < 0x80 {
                        let body_start = start + 2;
                        let end = body_start + len as usize;
                        if end <= self.buf.len() {
                            self.pos = end;
                            let val = Val::Len(&self.buf[body_start..end]);
                            return Ok(Some(Field {
                                num,
                                wire_type,
                                val,
                                raw: &self.buf[start..end],
                            }));
                        }
                        return Err(DecodeError("length past the end of the message"));
                    }
                }
            }
        }
        self.next_slow(start)
    }

    #[inline(never)]
    fn next_slow(&mut self, start: usize) -> Result<Option<Field<'a>>> {
        let (num, wire_type) = read_tag(self.buf, &mut self.pos)?;
        let val = match wire_type {
            VARINT => Val::Varint(read_varint(self.buf, &mut self.pos)?),
            I64 => {
                let bytes = self.take(8)?;
                Val::I64(u64::from_le_bytes(bytes.try_into().unwrap()))
            }
            LEN => {
                let len = read_varint(self.buf, &mut self.pos)?;
                if len > (self.buf.len() - self.pos) as u64 {
                    return Err(DecodeError("length past the end of the message"));
                }
                Val::Len(self.take(len as usize)?)
            }
            I32 => {
                let bytes = self.take(4)?;
                Val::I32(u32::from_le_bytes(bytes.try_into().unwrap()))
            }
            SGROUP => {
                skip_group(self.buf, &mut self.pos, num, self.depth)?;
                Val::Group
            }
            _ => return Err(DecodeError("end-group outside a group")),
        };
        Ok(Some(Field {
            num,
            wire_type,
            val,
            raw: &self.buf[start..self.pos],
        }))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(DecodeError("length overflow"))?;
        let Some(bytes) = self.buf.get(self.pos..end) else {
            return Err(DecodeError("truncated field"));
        };
        self.pos = end;
        Ok(bytes)
    }
}

#[inline]
pub fn read_tag(buf: &[u8], pos: &mut usize) -> Result<(u32, u8)> {
    // A tag is a varint of at most 5 bytes (upb refuses a 6th byte even if the value fits).
    let mut tag: u64 = 0;
    let mut i = 0;
    loop {
        let Some(&byte) = buf.get(*pos + i) else {
            return Err(DecodeError("truncated tag"));
        };
        tag |= ((byte & 0x7f) as u64) << (7 * i);
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if i == 5 {
            return Err(DecodeError("tag longer than 5 bytes"));
        }
    }
    *pos += i;
    if tag > u32::MAX as u64 {
        return Err(DecodeError("tag out of range"));
    }
    let num = (tag >> 3) as u32;
    let wire_type = (tag & 7) as u8;
    if num == 0 {
        return Err(DecodeError("field number 0"));
    }
    if wire_type > 5 {
        return Err(DecodeError("invalid wire type"));
    }
    Ok((num, wire_type))
}

/// Skip an (unknown) group whose start tag was just read, up to its matching end tag.
fn skip_group(buf: &[u8], pos: &mut usize, num: u32, depth: i32) -> Result<()> {
    let depth = depth - 1;
    if depth < 0 {
        return Err(DecodeError("nesting too deep"));
    }
    loop {
        if *pos >= buf.len() {
            return Err(DecodeError("unterminated group"));
        }
        let (inner, wire_type) = read_tag(buf, pos)?;
        match wire_type {
            VARINT => {
                read_varint(buf, pos)?;
            }
            I64 => advance(buf, pos, 8)?,
            LEN => {
                let len = read_varint(buf, pos)?;
                if len > (buf.len() - *pos) as u64 {
                    return Err(DecodeError("length past the end of the message"));
                }
                advance(buf, pos, len as usize)?;
            }
            I32 => advance(buf, pos, 4)?,
            SGROUP => skip_group(buf, pos, inner, depth)?,
            _ => {
                return if inner == num {
                    Ok(())
                } else {
                    Err(DecodeError("mismatched end-group"))
                };
            }
        }
    }
}

#[inline]
fn advance(buf: &[u8], pos: &mut usize, n: usize) -> Result<()> {
    if buf.len() - *pos < n {
        return Err(DecodeError("truncated field"));
    }
    *pos += n;
    Ok(())
}
