//! Fuzz the native codec against prost (the protobuf crate, OTLP types in
//! costctx_native::oracle) on arbitrary bytes:
//! - whatever prost accepts, the scan accepts (but a tag longer than 5 bytes, which upb
//!   refuses), and the view agrees with prost's message;
//! - the scan rejects nothing that prost accepts, and accepts what prost rejects only where
//!   upb (the Python runtime the codec follows) is more lenient than prost: a known field
//!   with an unexpected wire type, which upb keeps as an unknown field, and a 10-byte varint
//!   whose last byte carries bits past 64, which upb ignores and prost refuses (found by
//!   this target; the Python differential tests check the same bytes against upb itself);
//! - encoding with no edits gives the input back byte for byte; encoding with edits gives
//!   bytes prost decodes to its own message with the same edits applied, and the scan
//!   accepts again;
//! - nothing panics (slices are checked: a panic here is an out-of-bounds read).
#![no_main]

use costctx_native::encode::{encode, AttrEdits, Plan, SetValue};
use costctx_native::oracle::{any_value, AnyValue, ExportTraceServiceRequest, KeyValue};
use costctx_native::scan::{scan, Scan, Value, Watched};
use costctx_native::wire::DecodeError;
use libfuzzer_sys::fuzz_target;
use prost::Message;

const WATCHED: [&[u8]; 4] = [b"k", b"service.name", b"gen_ai.request.model", b""];

fuzz_target!(|data: &[u8]| {
    let watched = Watched::new(WATCHED.to_vec());
    let ours = scan(data, &watched);
    let theirs = ExportTraceServiceRequest::decode(data);
    let (scanned, message) = match (ours, theirs) {
        (Ok(scanned), Ok(message)) => (scanned, message),
        (Err(_), Err(_)) => return,
        // upb refuses a tag longer than 5 bytes; prost reads it as any varint (found here).
        (Err(DecodeError("tag longer than 5 bytes")), Ok(_)) => return,
        (Err(err), Ok(_)) => panic!("scan rejects what prost accepts: {err:?}"),
        (Ok(scanned), Err(err)) => {
            let text = err.to_string();
            let upb_lenient = text.contains("invalid wire type") || text.contains("invalid varint");
            assert!(upb_lenient, "scan accepts what prost rejects: {text}");
            // Still: encoding must not panic and must scan again.
            let out = encode(data, &scanned, &Plan::new(&scanned, false)).expect("encode after scan");
            assert_eq!(out, data);
            return;
        }
    };
    compare_view(data, &scanned, &message);

    // No edits: the same bytes.
    let out = encode(data, &scanned, &Plan::new(&scanned, false)).expect("encode after scan");
    assert_eq!(out, data, "an edit-free encode changed the request");

    // Edits: rename k -> renamed, delete gen_ai.request.model, set k2 = 7 (append or replace),
    // remove every third span.
    let edits = AttrEdits {
        renames: vec![(b"k"[..].into(), b"renamed"[..].into())],
        deletes: vec![b"gen_ai.request.model"[..].into()],
        sets: vec![(b"k2"[..].into(), SetValue::scalar(vec![0x18, 0x07])), (b""[..].into(), SetValue::default())],
        replace: None,
    };
    let mut plan = Plan::new(&scanned, false);
    for i in 0..scanned.spans.len() {
        plan.span_edits[i] = Some((&edits).into());
        plan.keep[i] = i % 3 != 2;
    }
    for r in 0..scanned.resources.len() {
        plan.resource_edits[r] = Some((&edits).into());
    }
    let out = encode(data, &scanned, &plan).expect("encode after scan");
    let rescanned = scan(&out, &watched).expect("the encoder's output must scan");
    let mut expected = message.clone();
    apply(&mut expected);
    let got = ExportTraceServiceRequest::decode(out.as_slice()).expect("prost decodes the output");
    // Compared as prost's (canonical) encoding: NaN doubles compare unequal as values.
    assert_eq!(got.encode_to_vec(), expected.encode_to_vec(), "encoded edits differ from prost's");
    assert_eq!(rescanned.spans.len(), expected.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum::<usize>());
});

fn apply(request: &mut ExportTraceServiceRequest) {
    let mut i = 0;
    request.resource_spans.retain_mut(|rs| {
        if let Some(resource) = rs.resource.as_mut() {
            edit(&mut resource.attributes);
        } else {
            rs.resource = Some(Default::default());
            let resource = rs.resource.as_mut().unwrap();
            edit(&mut resource.attributes);
        }
        let mut dropped = 0;
        rs.scope_spans.retain_mut(|ss| {
            let had = ss.spans.len();
            ss.spans.retain_mut(|span| {
                let keep = i % 3 != 2;
                i += 1;
                if keep {
                    edit(&mut span.attributes);
                }
                keep
            });
            let keep = !(had > 0 && ss.spans.is_empty());
            if !keep {
                dropped += 1;
            }
            keep
        });
        !(dropped > 0 && rs.scope_spans.is_empty())
    });
}

/// The edits above on prost's message, with the codec's semantics: each acts on the last
/// occurrence of its key; k2 is set in place or appended; "" is set to EMPTY (no value).
fn edit(attributes: &mut Vec<KeyValue>) {
    if let Some(at) = attributes.iter().rposition(|kv| kv.key == "k") {
        attributes[at].key = "renamed".into();
    }
    if let Some(at) = attributes.iter().rposition(|kv| kv.key == "gen_ai.request.model") {
        attributes.remove(at);
    }
    let value = AnyValue { value: Some(any_value::Value::IntValue(7)) };
    match attributes.iter().rposition(|kv| kv.key == "k2") {
        Some(at) => attributes[at].value = Some(value),
        None => attributes.push(KeyValue { key: "k2".into(), value: Some(value), key_strindex: 0 }),
    }
    match attributes.iter().rposition(|kv| kv.key.is_empty()) {
        Some(at) => attributes[at].value = None,
        None => attributes.push(KeyValue { key: String::new(), value: None, key_strindex: 0 }),
    }
}

fn compare_view(raw: &[u8], scanned: &Scan, message: &ExportTraceServiceRequest) {
    assert_eq!(scanned.resources.len(), message.resource_spans.len());
    let mut spans = scanned.spans.iter();
    let mut scopes = scanned.scopes.iter();
    for (r, rs) in message.resource_spans.iter().enumerate() {
        let rec = &scanned.resources[r];
        let attributes = rs.resource.as_ref().map(|x| x.attributes.as_slice()).unwrap_or(&[]);
        let service = attributes.iter().rev().find(|kv| kv.key == "service.name").and_then(|kv| match &kv.value {
            Some(AnyValue { value: Some(any_value::Value::StringValue(s)) }) if !s.is_empty() => Some(s.as_bytes()),
            _ => None,
        });
        assert_eq!(rec.service.map(|s| s.get(raw)), service);
        compare_attrs(raw, &rec.attrs, attributes);
        assert_eq!(rec.schema_url.get(raw), rs.schema_url.as_bytes());
        for ss in &rs.scope_spans {
            let scope = scopes.next().expect("a scope");
            assert_eq!(scope.resource as usize, r);
            let (name, version) = ss.scope.as_ref().map(|s| (s.name.as_str(), s.version.as_str())).unwrap_or(("", ""));
            assert_eq!(scope.name.get(raw), name.as_bytes());
            assert_eq!(scope.version.get(raw), version.as_bytes());
            for span in &ss.spans {
                let rec = spans.next().expect("a span");
                assert_eq!(rec.trace_id.get(raw), span.trace_id.as_slice());
                assert_eq!(rec.span_id.get(raw), span.span_id.as_slice());
                assert_eq!(rec.parent_span_id.get(raw), span.parent_span_id.as_slice());
                assert_eq!((rec.start, rec.end), (span.start_time_unix_nano, span.end_time_unix_nano));
                assert_eq!(rec.attr_count as usize, span.attributes.len());
                assert_eq!(rec.event_count as usize, span.events.len());
                let links: Vec<(&[u8], &[u8])> = rec.links.iter().map(|(t, s)| (t.get(raw), s.get(raw))).collect();
                let want: Vec<(&[u8], &[u8])> = span.links.iter().map(|l| (l.trace_id.as_slice(), l.span_id.as_slice())).collect();
                assert_eq!(links, want);
                compare_attrs(raw, &rec.attrs, &span.attributes);
            }
        }
    }
    assert!(spans.next().is_none() && scopes.next().is_none());
}

fn compare_attrs(raw: &[u8], ours: &[(u16, Value)], theirs: &[KeyValue]) {
    let watched: Vec<&KeyValue> = theirs.iter().filter(|kv| WATCHED.contains(&kv.key.as_bytes())).collect();
    assert_eq!(ours.len(), watched.len());
    for ((id, value), kv) in ours.iter().zip(watched) {
        assert_eq!(WATCHED[*id as usize], kv.key.as_bytes());
        let empty = AnyValue::default();
        assert!(same_value(raw, value, kv.value.as_ref().unwrap_or(&empty)), "value of {:?}", kv.key);
    }
}

fn same_value(raw: &[u8], ours: &Value, theirs: &AnyValue) -> bool {
    use any_value::Value as V;
    match (ours, &theirs.value) {
        (Value::Empty, None) => true,
        (Value::Str(s), Some(V::StringValue(t))) => s.get(raw) == t.as_bytes(),
        (Value::Bool(a), Some(V::BoolValue(b))) => a == b,
        (Value::Int(a), Some(V::IntValue(b))) => a == b,
        (Value::Double(a), Some(V::DoubleValue(b))) => a.to_bits() == b.to_bits(),
        (Value::Bytes(s), Some(V::BytesValue(t))) => s.get(raw) == t.as_slice(),
        (Value::StrIndex(a), Some(V::StringValueStrindex(b))) => *a == *b as i64,
        (Value::Array(items), Some(V::ArrayValue(array))) => {
            items.len() == array.values.len() && items.iter().zip(&array.values).all(|(a, b)| same_value(raw, a, b))
        }
        (Value::KvList(pairs), Some(V::KvlistValue(list))) => {
            let empty = AnyValue::default();
            pairs.len() == list.values.len()
                && pairs.iter().zip(&list.values).all(|((k, a), kv)| {
                    k.get(raw) == kv.key.as_bytes() && same_value(raw, a, kv.value.as_ref().unwrap_or(&empty))
                })
        }
        _ => false,
    }
}
