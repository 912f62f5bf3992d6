//! Scan: validate a whole ExportTraceServiceRequest as upb would and collect, per resource,
//! scope and span, only what processors read. Strings are kept as byte ranges into the
//! request (already UTF-8 checked); values of watched keys are decoded.

use std::collections::HashMap;

use crate::fxhash::FxBuild;
use crate::schema::{check_utf8, child_depth, validate, Msg, DEPTH_LIMIT};
use crate::wire::{Reader, Result, Val, I64, LEN, VARINT};

/// A byte range of the request: (offset, length).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span32 {
    pub at: u32,
    pub len: u32,
}

impl Span32 {
    #[inline]
    pub fn of(raw: &[u8], part: &[u8]) -> Span32 {
        if part.is_empty() {
            return Span32::default();
        }
        Span32 {
            at: (part.as_ptr() as usize - raw.as_ptr() as usize) as u32,
            len: part.len() as u32,
        }
    }
    #[inline]
    pub fn get<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        &raw[self.at as usize..(self.at + self.len) as usize]
    }
}

/// A decoded AnyValue (strings and bytes as ranges into the request).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Empty,
    Str(Span32),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Span32),
    /// Lists boxed: a Value is 16 bytes, not 32 (a span's watched attributes are a vector of
    /// them, and lists are rare).
    Array(Box<Vec<Value>>),
    KvList(Box<Vec<(Span32, Value)>>),
    /// string_value_strindex (a profiles dictionary index): kept as its integer.
    StrIndex(i64),
}

/// Which keys processors watch: the key bytes, by id (the id is the index of its first
/// occurrence). Looked up once per attribute of every span: a hash table, not a scan of
/// the list (with ~80 watched keys the scan was a third of the native scan's time).
pub struct Watched<'w> {
    ids: HashMap<&'w [u8], u16, FxBuild>,
    max_len: usize,
}

impl<'w> Watched<'w> {
    pub fn new(keys: Vec<&'w [u8]>) -> Self {
        let max_len = keys.iter().map(|k| k.len()).max().unwrap_or(0);
        let mut ids = HashMap::with_capacity_and_hasher(keys.len(), FxBuild::default());
        for (i, key) in keys.into_iter().enumerate() {
            ids.entry(key).or_insert(i as u16);
        }
        Watched { ids, max_len }
    }
    #[inline]
    pub fn find(&self, key: &[u8]) -> Option<u16> {
        if key.len() > self.max_len || self.ids.is_empty() {
            return None;
        }
        self.ids.get(key).copied()
    }
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
pub struct ResourceRec {
    /// The last service.name attribute's value, if a string.
    pub service: Option<Span32>,
    pub service_seen: bool,
    pub schema_url: Span32,
    pub attrs: Vec<(u16, Value)>,
    pub first_scope: u32,
    pub scopes_end: u32,
    pub first_span: u32,
    pub spans_end: u32,
    /// How many times field 1 (resource) occurs: edits append in the last one.
    pub resource_fields: u32,
    /// The Resource message's encoded length (its occurrences summed).
    pub size: u32,
    /// Some watched key occurs more than once among its attributes.
    pub repeated: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ScopeRec {
    pub resource: u32,
    pub schema_url: Span32,
    pub name: Span32,
    pub version: Span32,
    pub first_span: u32,
    pub spans_end: u32,
}

#[derive(Clone, Debug, Default)]
pub struct SpanRec {
    pub trace_id: Span32,
    pub span_id: Span32,
    pub parent_span_id: Span32,
    pub start: u64,
    pub end: u64,
    pub resource: u32,
    pub scope: u32,
    pub attrs: Vec<(u16, Value)>,
    pub attr_count: u32,
    pub links: Vec<(Span32, Span32)>,
    pub event_count: u32,
    /// Span.kind as protobuf reads the enum (an int32).
    pub kind: i32,
    /// The span message body, for materialize.
    pub body: Span32,
    /// Watched keys on any of its events' attributes (ids, each once).
    pub event_keys: Vec<u16>,
    /// Some watched key occurs more than once among its attributes.
    pub repeated: bool,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub resources: Vec<ResourceRec>,
    pub scopes: Vec<ScopeRec>,
    pub spans: Vec<SpanRec>,
}

const SERVICE_NAME: &[u8] = b"service.name";

pub fn scan(raw: &[u8], watched: &Watched) -> Result<Scan> {
    // Ranges are 32-bit offsets (half the record size); protobuf refuses 2 GiB messages anyway.
    if raw.len() > i32::MAX as usize {
        return Err(crate::wire::DecodeError("request larger than 2 GiB"));
    }
    let mut out = Scan::default();
    let mut s = Scanner {
        raw,
        watched,
        out: &mut out,
        attrs: Vec::with_capacity(32),
    };
    let mut reader = Reader::new(raw, DEPTH_LIMIT);
    while let Some(field) = reader.next()? {
        if field.num == 1 && field.wire_type == LEN {
            s.resource_spans(field.len_body().unwrap(), child_depth(DEPTH_LIMIT)?)?;
        }
    }
    Ok(out)
}

struct Scanner<'a, 'w, 'o> {
    raw: &'a [u8],
    watched: &'w Watched<'w>,
    out: &'o mut Scan,
    /// A span's watched attributes as they are found, moved into its record at its end: one
    /// allocation of the exact size per span, where pushing into the record's own vector grew
    /// it two or three times (4, 8, 16 entries) and left up to half of it unused.
    attrs: Vec<(u16, Value)>,
}

/// One KeyValue: its key (last occurrence wins) and every occurrence of its value (protobuf
/// merges repeated occurrences of a message field, so all of them make the value).
struct Kv<'a> {
    key: &'a [u8],
    /// The first occurrence inline (almost always the only one): no allocation per attribute.
    value: Option<&'a [u8]>,
    more_values: Vec<&'a [u8]>,
}

impl<'a> Kv<'a> {
    fn values(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.value.into_iter().chain(self.more_values.iter().copied())
    }
}

impl<'a, 'w, 'o> Scanner<'a, 'w, 'o> {
    fn range(&self, part: &[u8]) -> Span32 {
        Span32::of(self.raw, part)
    }

    fn resource_spans(&mut self, body: &'a [u8], depth: i32) -> Result<()> {
        let r = self.out.resources.len() as u32;
        let mut rec = ResourceRec {
            first_scope: self.out.scopes.len() as u32,
            first_span: self.out.spans.len() as u32,
            ..Default::default()
        };
        self.out.resources.push(ResourceRec::default());
        let mut reader = Reader::new(body, depth);
        while let Some(field) = reader.next()? {
            let Val::Len(inner) = field.val else { continue };
            match field.num {
                1 => {
                    rec.resource_fields += 1;
                    rec.size += inner.len() as u32;
                    self.resource(inner, child_depth(depth)?, &mut rec)?;
                }
                2 => self.scope_spans(inner, child_depth(depth)?, r)?,
                3 => {
                    check_utf8(inner)?;
                    rec.schema_url = self.range(inner);
                }
                _ => {}
            }
        }
        rec.scopes_end = self.out.scopes.len() as u32;
        rec.spans_end = self.out.spans.len() as u32;
        self.out.resources[r as usize] = rec;
        Ok(())
    }

    fn resource(&mut self, body: &'a [u8], depth: i32, rec: &mut ResourceRec) -> Result<()> {
        let mut reader = Reader::new(body, depth);
        while let Some(field) = reader.next()? {
            let Val::Len(inner) = field.val else { continue };
            match field.num {
                1 => {
                    let kv = key_value(inner, child_depth(depth)?)?;
                    if kv.key == SERVICE_NAME {
                        rec.service_seen = true;
                        rec.service = match decode_any(self.raw, kv.values())? {
                            Value::Str(range) if range.len > 0 => Some(range),
                            _ => None,
                        };
                    }
                    if let Some(id) = self.watched.find(kv.key) {
                        let value = decode_any(self.raw, kv.values())?;
                        push_attr(&mut rec.attrs, &mut rec.repeated, id, value);
                    }
                }
                3 => validate(Msg::EntityRef, inner, child_depth(depth)?)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn scope_spans(&mut self, body: &'a [u8], depth: i32, r: u32) -> Result<()> {
        let s = self.out.scopes.len() as u32;
        let mut rec = ScopeRec {
            resource: r,
            first_span: self.out.spans.len() as u32,
            ..Default::default()
        };
        self.out.scopes.push(ScopeRec::default());
        let mut reader = Reader::new(body, depth);
        while let Some(field) = reader.next()? {
            let Val::Len(inner) = field.val else { continue };
            match field.num {
                1 => self.scope(inner, child_depth(depth)?, &mut rec)?,
                2 => self.span(inner, child_depth(depth)?, r, s)?,
                3 => {
                    check_utf8(inner)?;
                    rec.schema_url = self.range(inner);
                }
                _ => {}
            }
        }
        rec.spans_end = self.out.spans.len() as u32;
        self.out.scopes[s as usize] = rec;
        Ok(())
    }

    fn scope(&mut self, body: &'a [u8], depth: i32, rec: &mut ScopeRec) -> Result<()> {
        let mut reader = Reader::new(body, depth);
        while let Some(field) = reader.next()? {
            let Val::Len(inner) = field.val else { continue };
            match field.num {
                1 => {
                    check_utf8(inner)?;
                    rec.name = self.range(inner);
                }
                2 => {
                    check_utf8(inner)?;
                    rec.version = self.range(inner);
                }
                3 => validate(Msg::KeyValue, inner, child_depth(depth)?)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn span(&mut self, body: &'a [u8], depth: i32, r: u32, s: u32) -> Result<()> {
        let mut rec = SpanRec {
            resource: r,
            scope: s,
            body: self.range(body),
            ..Default::default()
        };
        self.attrs.clear(); // left over from a span whose scan failed
        let mut reader = Reader::new(body, depth);
        while let Some(field) = reader.next()? {
            match (field.num, field.val) {
                (1, Val::Len(inner)) => rec.trace_id = self.range(inner),
                (2, Val::Len(inner)) => rec.span_id = self.range(inner),
                (4, Val::Len(inner)) => rec.parent_span_id = self.range(inner),
                (3 | 5, Val::Len(inner)) => check_utf8(inner)?,
                (7, Val::I64(v)) => rec.start = v,
                (8, Val::I64(v)) => rec.end = v,
                (6, Val::Varint(v)) => rec.kind = v as i32,
                (9, Val::Len(inner)) => {
                    rec.attr_count += 1;
                    let kv = key_value(inner, child_depth(depth)?)?;
                    if let Some(id) = self.watched.find(kv.key) {
                        let value = decode_any(self.raw, kv.values())?;
                        push_attr(&mut self.attrs, &mut rec.repeated, id, value);
                    }
                }
                (11, Val::Len(inner)) => {
                    rec.event_count += 1;
                    validate(Msg::Event, inner, child_depth(depth)?)?;
                    if !self.watched.is_empty() {
                        self.event_keys(inner, depth, &mut rec.event_keys)?;
                    }
                }
                (13, Val::Len(inner)) => {
                    let link = self.link(inner, child_depth(depth)?)?;
                    rec.links.push(link);
                }
                (15, Val::Len(inner)) => validate(Msg::Status, inner, child_depth(depth)?)?,
                _ => {}
            }
        }
        rec.attrs = self.attrs.drain(..).collect();
        self.out.spans.push(rec);
        Ok(())
    }

    /// The watched keys of one (already validated) Event's attributes, added once each.
    fn event_keys(&self, body: &'a [u8], depth: i32, found: &mut Vec<u16>) -> Result<()> {
        let event_depth = child_depth(depth)?;
        let mut reader = Reader::new(body, event_depth);
        while let Some(field) = reader.next()? {
            if let (3, Val::Len(inner)) = (field.num, field.val) {
                let mut kv_reader = Reader::new(inner, child_depth(event_depth)?);
                let mut key: &[u8] = b"";
                while let Some(kv_field) = kv_reader.next()? {
                    if let (1, Val::Len(k)) = (kv_field.num, kv_field.val) {
                        key = k; // the last key field wins, as protobuf merges it
                    }
                }
                if let Some(id) = self.watched.find(key) {
                    if !found.contains(&id) {
                        found.push(id);
                    }
                }
            }
        }
        Ok(())
    }

    fn link(&mut self, body: &'a [u8], depth: i32) -> Result<(Span32, Span32)> {
        let (mut trace_id, mut span_id) = (Span32::default(), Span32::default());
        let mut reader = Reader::new(body, depth);
        while let Some(field) = reader.next()? {
            let Val::Len(inner) = field.val else { continue };
            match field.num {
                1 => trace_id = self.range(inner),
                2 => span_id = self.range(inner),
                3 => check_utf8(inner)?,
                4 => validate(Msg::KeyValue, inner, child_depth(depth)?)?,
                _ => {}
            }
        }
        Ok((trace_id, span_id))
    }
}

/// Record a watched attribute; a key seen before marks the record `repeated` (the view
/// keeps the last value, as a dict of the pairs in order would).
#[inline]
fn push_attr(attrs: &mut Vec<(u16, Value)>, repeated: &mut bool, id: u16, value: Value) {
    if attrs.iter().any(|(seen, _)| *seen == id) {
        *repeated = true;
    }
    attrs.push((id, value));
}

/// Validate one KeyValue and return its key and value occurrences.
fn key_value(body: &[u8], depth: i32) -> Result<Kv<'_>> {
    let mut kv = Kv {
        key: b"",
        value: None,
        more_values: Vec::new(),
    };
    let mut reader = Reader::new(body, depth);
    while let Some(field) = reader.next()? {
        let Val::Len(inner) = field.val else { continue };
        match field.num {
            1 => {
                check_utf8(inner)?;
                kv.key = inner;
            }
            2 => {
                validate(Msg::AnyValue, inner, child_depth(depth)?)?;
                if kv.value.is_none() {
                    kv.value = Some(inner);
                } else {
                    kv.more_values.push(inner);
                }
            }
            _ => {}
        }
    }
    Ok(kv)
}

/// Decode an AnyValue from the occurrences of its field (already validated), merging them
/// as protobuf does: the oneof's last case wins; a repeated array/kvlist case appends.
pub fn decode_any<'a>(raw: &[u8], occurrences: impl IntoIterator<Item = &'a [u8]>) -> Result<Value> {
    let mut value = Value::Empty;
    for body in occurrences {
        merge_any(raw, body, &mut value)?;
    }
    Ok(value)
}

fn merge_any(raw: &[u8], body: &[u8], value: &mut Value) -> Result<()> {
    let mut reader = Reader::new(body, DEPTH_LIMIT);
    while let Some(field) = reader.next()? {
        match (field.num, field.wire_type, field.val) {
            (1, LEN, Val::Len(inner)) => *value = Value::Str(Span32::of(raw, inner)),
            (2, VARINT, Val::Varint(v)) => *value = Value::Bool(v != 0),
            (3, VARINT, Val::Varint(v)) => *value = Value::Int(v as i64),
            (4, I64, Val::I64(v)) => *value = Value::Double(f64::from_bits(v)),
            (5, LEN, Val::Len(inner)) => {
                if !matches!(value, Value::Array(_)) {
                    *value = Value::Array(Box::default());
                }
                let Value::Array(items) = value else { unreachable!() };
                let mut array = Reader::new(inner, DEPTH_LIMIT);
                while let Some(item) = array.next()? {
                    if let (1, Val::Len(item_body)) = (item.num, item.val) {
                        items.push(decode_any(raw, [item_body])?);
                    }
                }
            }
            (6, LEN, Val::Len(inner)) => {
                if !matches!(value, Value::KvList(_)) {
                    *value = Value::KvList(Box::default());
                }
                let Value::KvList(pairs) = value else { unreachable!() };
                let mut list = Reader::new(inner, DEPTH_LIMIT);
                while let Some(item) = list.next()? {
                    if let (1, Val::Len(kv_body)) = (item.num, item.val) {
                        let kv = key_value(kv_body, DEPTH_LIMIT)?;
                        pairs.push((Span32::of(raw, kv.key), decode_any(raw, kv.values())?));
                    }
                }
            }
            (7, LEN, Val::Len(inner)) => *value = Value::Bytes(Span32::of(raw, inner)),
            (8, VARINT, Val::Varint(v)) => *value = Value::StrIndex(v as i32 as i64),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::write_len_field;

    fn kv(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_len_field(&mut out, 1, key);
        write_len_field(&mut out, 2, value);
        out
    }

    /// One resource, one scope, the given spans (each a list of KeyValue bodies).
    fn request(spans: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut scope = Vec::new();
        for attrs in spans {
            let mut span = Vec::new();
            write_len_field(&mut span, 1, &[1; 16]);
            write_len_field(&mut span, 2, &[2; 8]);
            for attr in attrs {
                write_len_field(&mut span, 9, attr);
            }
            write_len_field(&mut scope, 2, &span);
        }
        let mut resource = Vec::new();
        write_len_field(&mut resource, 2, &scope);
        let mut raw = Vec::new();
        write_len_field(&mut raw, 1, &resource);
        raw
    }

    #[test]
    fn a_value_is_two_words() {
        assert_eq!(std::mem::size_of::<Value>(), 16);
    }

    #[test]
    fn each_span_keeps_exactly_its_watched_attributes() {
        let keys: Vec<Vec<u8>> = (0..12).map(|i| format!("key.{i}").into_bytes()).collect();
        let watched = Watched::new(keys.iter().map(|k| k.as_slice()).collect());
        // AnyValue bodies: string_value (field 1), int_value (0x18: field 3), array_value
        // (field 5) of two strings.
        let string = |s: &[u8]| [&[0x0a, s.len() as u8][..], s].concat();
        let mut values = Vec::new();
        write_len_field(&mut values, 1, &string(b"a"));
        write_len_field(&mut values, 1, &string(b"b"));
        let mut array = Vec::new();
        write_len_field(&mut array, 5, &values);
        let spans: Vec<Vec<Vec<u8>>> = (0..5)
            .map(|n| {
                let mut attrs: Vec<Vec<u8>> = (0..n * 3).map(|i| kv(&keys[i % 12], &[0x18, i as u8])).collect();
                attrs.push(kv(b"not.watched", &string(b"x")));
                attrs.push(kv(&keys[11], &array));
                attrs
            })
            .collect();
        let raw = request(&spans);
        let scan = scan(&raw, &watched).unwrap();
        assert_eq!(scan.spans.len(), 5);
        for (n, rec) in scan.spans.iter().enumerate() {
            let mut want: Vec<(u16, Value)> = (0..n * 3).map(|i| ((i % 12) as u16, Value::Int(i as i64))).collect();
            let Value::Array(items) = &rec.attrs.last().unwrap().1 else {
                panic!("not a list")
            };
            assert_eq!(items.len(), 2);
            want.push((11, rec.attrs.last().unwrap().1.clone()));
            assert_eq!(rec.attrs, want);
            assert_eq!(rec.attrs.capacity(), rec.attrs.len(), "span {n}: sized exactly");
            assert_eq!(rec.attr_count as usize, n * 3 + 2);
            assert_eq!(rec.repeated, n * 3 >= 12, "span {n}");
        }
    }
}
