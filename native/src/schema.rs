//! The OTLP trace messages as the validator needs them: which length-delimited fields are
//! UTF-8 strings (proto3 `string`: upb refuses invalid UTF-8 there) and which are
//! sub-messages (walked recursively, against the nesting limit). Fields not listed are
//! `bytes`, scalars or unknown: protobuf keeps them without looking inside.

use crate::wire::{DecodeError, Reader, Result, Val, LEN};

/// protobuf's default recursion limit (upb: a sub-message or group below depth 100 fails).
pub const DEPTH_LIMIT: i32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KvList,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    Sub(Msg),
    Opaque,
}

/// What a length-delimited field `num` of `msg` holds.
#[inline]
pub fn len_kind(msg: Msg, num: u32) -> Kind {
    use Kind::*;
    use Msg::*;
    match (msg, num) {
        (Request, 1) => Sub(ResourceSpans),
        (ResourceSpans, 1) => Sub(Resource),
        (ResourceSpans, 2) => Sub(ScopeSpans),
        (ResourceSpans, 3) => Str,
        (Resource, 1) => Sub(KeyValue),
        (Resource, 3) => Sub(EntityRef),
        (EntityRef, 1..=4) => Str,
        (ScopeSpans, 1) => Sub(Scope),
        (ScopeSpans, 2) => Sub(Span),
        (ScopeSpans, 3) => Str,
        (Scope, 1 | 2) => Str,
        (Scope, 3) => Sub(KeyValue),
        (Span, 3 | 5) => Str,
        (Span, 9) => Sub(KeyValue),
        (Span, 11) => Sub(Event),
        (Span, 13) => Sub(Link),
        (Span, 15) => Sub(Status),
        (Event, 2) => Str,
        (Event, 3) => Sub(KeyValue),
        (Link, 3) => Str,
        (Link, 4) => Sub(KeyValue),
        (Status, 2) => Str,
        (KeyValue, 1) => Str,
        (KeyValue, 2) => Sub(AnyValue),
        (AnyValue, 1) => Str,
        (AnyValue, 5) => Sub(ArrayValue),
        (AnyValue, 6) => Sub(KvList),
        (ArrayValue, 1) => Sub(AnyValue),
        (KvList, 1) => Sub(KeyValue),
        _ => Opaque,
    }
}

#[inline]
pub fn check_utf8(bytes: &[u8]) -> Result<()> {
    // Keys and most values are ASCII: a word-at-a-time check before the full validator.
    if bytes.is_ascii() {
        return Ok(());
    }
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(_) => Err(DecodeError("invalid UTF-8 in a string field")),
    }
}

/// The budget a child of a message with budget `depth` gets; an error past the limit.
#[inline]
pub fn child_depth(depth: i32) -> Result<i32> {
    let child = depth - 1;
    if child < 0 {
        return Err(DecodeError("nesting too deep"));
    }
    Ok(child)
}

/// Validate a whole message body of type `msg`, entered with nesting budget `depth`.
pub fn validate(msg: Msg, body: &[u8], depth: i32) -> Result<()> {
    let mut reader = Reader::new(body, depth);
    while let Some(field) = reader.next()? {
        if field.wire_type != LEN {
            continue;
        }
        let Val::Len(inner) = field.val else { continue };
        match len_kind(msg, field.num) {
            Kind::Str => check_utf8(inner)?,
            Kind::Sub(sub) => validate(sub, inner, child_depth(depth)?)?,
            Kind::Opaque => {}
        }
    }
    Ok(())
}
