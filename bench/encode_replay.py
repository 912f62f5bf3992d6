#!/usr/bin/env python
"""What the codec's encode costs on the batches the pipeline really leaves with.

    COSTCTX_CODEC=native|python python bench/encode_replay.py [--passes 8] [--repeat 20] [--complete]
        [--requests 20] [--free] [--census]

Runs the bench workload (100 spans/batch, +4 attributes) through every processor in process,
keeps the last `--requests` batches' views and edits as they reach `ViewBatch.payload` (edits of
every processor, groups, appended held spans), then encodes them again and again: per pass,
`--repeat` times each batch, in CPU time of this process; prints each pass's us per span and the
least. The loop to run while changing the encoder (the sidecar's encode phase, bench/cpu_account.py,
varies with everything else on the machine; this does not run the processors while it times).
`--requests 200 --repeat 1`: a pass touches what run.py's pool of 20,000 spans does (the tables and
the request bytes outgrow the caches), the cost the live sidecar sees.

--census: instead, what the edits handed to encode are: per span, the sets (own and groups'), by
key prefix; how many distinct key, value and pair objects a batch has.

--free: instead, what releasing each batch costs right after it left (its objects still in the
caches, as in the pipeline), in parts: the own edits' sets lists, the rest of the edits (SpanEdits
objects, groups), the span list (views made), the notes, the rest of the view (resources,
scopes, layout); per part the least us/span over `--passes` passes of 20 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inprocess import build_stage, fresh_ids, time_pipeline  # noqa: E402
from bench.workload import WorkloadSpec, build_requests  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402


async def captured_batches(complete: bool, keep: int = 20) -> tuple[object, list[tuple[object, object, int]]]:
    """The codec and the last `keep` batches' (view, edits, spans) as the pipeline encoded them."""
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=keep))
    stage = await build_stage(list(DEFAULT_TRACE_PROCESSORS))
    codec = stage.pipeline.codec
    seen: list[tuple[object, object, int]] = []
    encode = codec.encode

    def capture(view, edits):
        seen.append((view, edits, len(view.spans) - len(edits.removed)))
        return encode(view, edits)

    codec.encode = capture  # the pipeline's payload() calls encode_last where a codec has it
    codec.encode_last = capture
    try:
        for cycle in range(3 if keep <= 20 else 2):  # later passes: the stateful processors' steady state
            time_pipeline(stage, fresh_ids(pool, 10 + cycle))
    finally:
        del codec.encode
        if "encode_last" in vars(codec):
            del codec.encode_last
    stage.pipeline.shutdown()
    return codec, seen[-keep:]


def census(batches: list[tuple[object, object, int]]) -> None:
    """Print what the edits of `batches` are: sets per span by key prefix (own, groups'), and
    per batch the distinct key, value and (key, value) objects and sets lists."""
    from collections import Counter

    def prefix(key: str) -> str:
        return ".".join(key.split(".")[:2])

    def shares(counts: Counter) -> str:
        return ", ".join(f"{k} {c / spans:.2f}" for k, c in counts.most_common())

    own_sets, group_sets, spans = Counter(), Counter(), 0
    keys, values, pairs, lists, set_count, group_lists = 0, 0, 0, 0, 0, 0
    for view, edits, _ in batches:
        spans += len(view.spans)
        k, v, p, ls = set(), set(), set(), set()
        for item in edits.spans.values():
            if item.replace is not None:
                own_sets["(replace)"] += 1
                continue
            ls.add(id(item.sets))
            for pair in item.sets:
                key, value = pair
                own_sets[prefix(key)] += 1
                k.add(id(key)), v.add(id(value)), p.add((id(key), id(value)))
                set_count += 1
        for group in edits.groups:
            group_lists += 1
            for key, value in group.edits.sets:
                group_sets[prefix(key)] += len(group.spans)
                k.add(id(key)), v.add(id(value)), p.add((id(key), id(value)))
        keys, values, pairs, lists = keys + len(k), values + len(v), pairs + len(p), lists + len(ls)
    n = len(batches)
    print(f"{n} batches, {spans / n:.0f} spans each; own sets {set_count / spans:.2f}/span in "
          f"{lists / n:.0f} lists/batch; group edits {group_lists / n:.1f}/batch")
    print("own sets per span by key prefix: " + shares(own_sets))
    print("group sets per span by key prefix: " + shares(group_sets))
    print(f"distinct per batch: keys {keys / n:.0f}, values {values / n:.0f}, (key, value) pairs {pairs / n:.0f}")


async def freeing(complete: bool, passes: int, requests: int = 20) -> dict[str, float]:
    """Per part, the least CPU us/span to release a batch's objects as it leaves the pipeline."""
    pool = build_requests(WorkloadSpec(spans_per_batch=100, extra_attrs=4, complete=complete, batches=requests))
    stage = await build_stage(list(DEFAULT_TRACE_PROCESSORS))
    parts = ("sets", "edits", "spans", "notes", "view")
    spent = dict.fromkeys(parts, 0.0)
    counted = [0]
    pipeline = stage.pipeline
    consume = pipeline.consume
    clock = time.process_time

    def released(batch) -> None:
        consume(batch)
        view = batch._view
        if view is None:
            return
        counted[0] += len(view.spans)
        t0 = clock()
        for edits in batch.edits.spans.values():
            edits.sets = None
        t1 = clock()
        batch.edits = None
        t2 = clock()
        view.spans = None
        t3 = clock()
        batch.notes = None
        t4 = clock()
        batch._view = view = None
        t5 = clock()
        for name, start, end in zip(parts, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5), strict=True):
            spent[name] += end - start

    pipeline.consume = released
    time_pipeline(stage, fresh_ids(pool, 9))  # warm: the stateful processors' steady state
    least = dict.fromkeys(parts, float("inf"))
    for cycle in range(passes):
        for name in parts:
            spent[name] = 0.0
        counted[0] = 0
        time_pipeline(stage, fresh_ids(pool, 10 + cycle))
        for name in parts:
            least[name] = min(least[name], spent[name] / counted[0] * 1e6)
    del pipeline.consume
    stage.pipeline.shutdown()
    return least


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=20, help="encodes of each batch per pass")
    parser.add_argument("--complete", action="store_true", help="complete spans (no hold) instead of the mix")
    parser.add_argument("--requests", type=int, default=20, help="batches kept and encoded per pass (the pool)")
    parser.add_argument("--free", action="store_true", help="instead: the cost of releasing batches that left")
    parser.add_argument("--census", action="store_true", help="instead: what the edits handed to encode are")
    args = parser.parse_args(argv)
    if args.free:
        least = asyncio.run(freeing(args.complete, args.passes, args.requests))
        print("freeing a batch that left, least us/span: " + ", ".join(f"{k} {v:.3f}" for k, v in least.items())
              + f" (sum {sum(least.values()):.3f})")
        return 0
    codec, batches = asyncio.run(captured_batches(args.complete, args.requests))
    if args.census:
        census(batches)
        return 0
    spans = sum(n for _, _, n in batches) * args.repeat
    figures = []
    for _ in range(args.passes):
        started = time.process_time()
        for _ in range(args.repeat):
            for view, edits, _ in batches:
                codec.encode(view, edits)
        figures.append((time.process_time() - started) / spans * 1e6)
    print(f"{codec.name} encode, us/span: " + ", ".join(f"{f:.3f}" for f in figures) + f" (least {min(figures):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
