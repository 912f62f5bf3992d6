//! The walker-vs-prost comparison behind the codec's design: time, per span, a prost decode
//! (owned structs, every string allocated), prost decode + encode, the hand-written walker's
//! scan, and scan + encode with an edit on every span, over request files given as
//! arguments (each a serialized ExportTraceServiceRequest; bench/codec_bench.py writes them).
//!
//! cargo run --release --features oracle --example compare_prost -- FILE...
//!
//! On a loaded machine wall time is noise; instruction counts are not. With MODE set (none,
//! prost, prost_encode, scan, scan_encode) it runs that case once and prints nothing, for
//! `valgrind --tool=callgrind`: subtract MODE=none and divide by the span count.

use std::time::Instant;

use costctx_native::encode::{encode, AttrEdits, Plan, SetValue};
use costctx_native::oracle::ExportTraceServiceRequest;
use costctx_native::scan::{scan, Watched};
use prost::Message;

fn per_span(label: &str, spans: usize, rounds: usize, mut f: impl FnMut()) {
    // Best of 5 runs of `rounds` passes: the least disturbed by other work on the machine.
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..rounds {
            f();
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!("{label:<34} {:>8.3} us/span", best / (rounds * spans) as f64 * 1e6);
}

fn main() {
    let requests: Vec<Vec<u8>> = std::env::args()
        .skip(1)
        .map(|p| std::fs::read(p).expect("read request"))
        .collect();
    assert!(!requests.is_empty(), "give request files");
    let keys: Vec<&[u8]> = vec![
        b"gen_ai.request.model",
        b"gen_ai.system",
        b"costctx.workflow.id",
        b"service.name",
    ];
    let watched = Watched::new(keys);
    let edits = AttrEdits {
        sets: vec![(
            b"costctx.cost_usd"[..].into(),
            SetValue::scalar(vec![0x21, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]),
        )],
        ..Default::default()
    };
    if let Ok(mode) = std::env::var("MODE") {
        for r in &requests {
            match mode.as_str() {
                "prost" => drop(std::hint::black_box(
                    ExportTraceServiceRequest::decode(r.as_slice()).unwrap(),
                )),
                "prost_encode" => drop(std::hint::black_box(
                    ExportTraceServiceRequest::decode(r.as_slice()).unwrap().encode_to_vec(),
                )),
                "scan" => drop(std::hint::black_box(scan(r, &watched).unwrap())),
                "scan_encode" => {
                    let s = scan(r, &watched).unwrap();
                    let mut plan = Plan::new(&s, false);
                    for slot in plan.span_edits.iter_mut() {
                        *slot = Some((&edits).into());
                    }
                    drop(std::hint::black_box(encode(r, &s, &plan).unwrap()));
                }
                _ => {}
            }
        }
        return;
    }
    let spans: usize = requests.iter().map(|r| scan(r, &watched).unwrap().spans.len()).sum();
    println!("{} requests, {spans} spans; best of 5", requests.len());
    let rounds = 20;
    per_span("prost decode", spans, rounds, || {
        for r in &requests {
            std::hint::black_box(ExportTraceServiceRequest::decode(r.as_slice()).unwrap());
        }
    });
    per_span("prost decode + encode", spans, rounds, || {
        for r in &requests {
            let m = ExportTraceServiceRequest::decode(r.as_slice()).unwrap();
            std::hint::black_box(m.encode_to_vec());
        }
    });
    per_span("walker scan", spans, rounds, || {
        for r in &requests {
            std::hint::black_box(scan(r, &watched).unwrap());
        }
    });
    per_span("walker scan + encode (1 set/span)", spans, rounds, || {
        for r in &requests {
            let s = scan(r, &watched).unwrap();
            let mut plan = Plan::new(&s, false);
            for slot in plan.span_edits.iter_mut() {
                *slot = Some((&edits).into());
            }
            std::hint::black_box(encode(r, &s, &plan).unwrap());
        }
    });
}
