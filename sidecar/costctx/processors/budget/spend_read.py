"""A batch's model-call spans read, de-duplicated and summed per segment in one call: what the
budget processor's commit into the in-process store needs, with no per-span work left in Python.
In Python here (the fallback and the oracle) and in Rust (`costctx_native._core.read_spend`,
native/src/budget.rs) with the same result; the decisions (policies, the breaker, states) stay
in the processor, per group.

`read_spend(spans, indices, markers, READ_KEYS, now, skew, cap, seen, expiry, maxsize, make_room,
want_finished)` gives None, having changed nothing, when some model-call span needs the
per-span path (an envelope field that is not a string, a cost or a count past 64 bits, a
cost above the cap, a `budget.reservation_id` no sidecar could have issued); else

    (segments, releases, finished, duplicates, skewed)

- segments, in the order their first span comes: (fields, at, cost, tokens, steps, start,
  last, through, spans) for the spans of one group (the five envelope fields as stored, each
  a str or None) whose commit time falls in one UTC hour: the first span's commit time, the
  sums of micro-USD, tokens and spans, the first span's start (ms), the position of its last
  span among the batch's commits, the workflow's spend in this batch up to that span (every
  segment of the same workflow.id counted), and `spans`: (position, micro-USD) of each span
  as native-endian int64 pairs (array('q')), read only when the breaker must look per span;
- releases: (reservation id, segment number) of each span naming one, in batch order;
- finished: workflow.id of each root span (no parent) when `want_finished`, in batch order;
- duplicates: spans committed before (their resend key in `seen`), left out;
- skewed: spans whose commit time was moved into the clock skew the sidecar allows.

The reading follows the processor's per-span path exactly (tests/processors/budget/
test_budget_spend_read.py compares the three): commit time is the span's end (the sidecar's
clock when 0) moved into [now - skew, now + skew]; start is the span's start in ms (now when
0) moved into the hour before the commit; cost micro-USD round half to even (counters.
spent_micro); tokens input + output, ints only, within [0, MAX_TOKENS]. A span with a valid
trace and span id has the resend key hash((trace id, span id, micro, tokens, reservation id or
None)): present in `seen`, a duplicate; else added with `expiry` (`make_room()` first when
`seen` holds `maxsize`).
"""

from __future__ import annotations

from array import array

from costctx.budget.counters import MAX_TOKENS, MAX_USD, MICRO, spent_micro
from costctx.budget.ids import valid_reservation_id

try:
    from costctx_native._core import read_spend as native_read_spend  # type: ignore[import-not-found]
except ImportError:  # an older build, or no native extension: the Python reading serves
    native_read_spend = None
try:
    from costctx_native._core import read_roots as native_read_roots  # type: ignore[import-not-found]
except ImportError:
    native_read_roots = None

# The nine values read, in this order: the five envelope fields, cost, input and output tokens,
# the reservation id.
READ_KEYS = ("workflow.id", "workflow.name", "owner.tenant", "owner.feature", "policy.id", "cost.usd",
             "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "budget.reservation_id")
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)
_INT64 = 1 << 63


class _Segment:
    __slots__ = ("fields", "at", "cost", "tokens", "steps", "start", "last", "through", "spans")

    def __init__(self, fields: tuple, at: float, start: int) -> None:
        self.fields, self.at, self.start = fields, at, start
        self.cost = self.tokens = self.steps = self.last = self.through = 0
        self.spans = array("q")


def _read(span, attrs: dict, keys: tuple[str, ...], now: float, lo: float, hi: float, cap: int):
    """One model-call span -> (fields, micro, tokens, at, start ms, rid, skewed), or None."""
    values = tuple(map(attrs.get, keys))
    fields = values[:5]
    for value in fields:
        if value is not None and type(value) is not str:
            return None
    cost, tokens_in, tokens_out, rid = values[5:]
    kind = type(cost)
    if kind is int and not -_INT64 <= cost < _INT64:
        return None
    cost = cost if kind is float else float(cost) if kind is int else 0.0
    tokens = 0
    for count in (tokens_in, tokens_out):
        if type(count) is int:
            if not -_INT64 <= count < _INT64:
                return None
            tokens += count
    micro = round(cost * MICRO) if 0.0 < cost < MAX_USD else spent_micro(cost)
    tokens = min(max(tokens, 0), MAX_TOKENS)
    end_ns, start_ns = span.end, span.start
    at = end_ns / 1e9 if end_ns else now
    start_ms = start_ns // 1_000_000 if start_ns else int(now * 1000)
    skewed = not lo <= at <= hi
    if skewed:
        at = lo if at < lo else hi
    rid = (rid if type(rid) is str else "") or None
    if micro > cap or (rid is not None and not valid_reservation_id(rid)):
        return None
    at_ms = int(at * 1000)
    start_ms = min(max(start_ms, at_ms - 3_600_000), at_ms)
    return fields, micro, tokens, at, start_ms, rid, skewed


def read_spend(spans: list, indices, markers: frozenset[str], keys: tuple[str, ...], now: float, skew: float,
               cap: int, seen, expiry: float, maxsize: int, make_room, want_finished: bool):
    lo, hi = now - skew, now + skew
    read = []
    finished = []
    for index in indices:
        span = spans[index]
        attrs = span.attrs
        if want_finished and not span.parent_span_id:
            workflow_id = attrs.get(keys[0])
            if type(workflow_id) is str and workflow_id:
                finished.append(workflow_id)
        if attrs.keys().isdisjoint(markers):
            continue
        record = _read(span, attrs, keys, now, lo, hi, cap)
        if record is None:
            return None
        read.append((index, span, record))
    segments: dict[tuple, _Segment] = {}
    numbers: dict[tuple, int] = {}
    releases = []
    through: dict[str | None, int] = {}  # workflow.id -> its micro-USD so far in this batch
    duplicates = skewed = position = 0
    for index, span, (fields, micro, tokens, at, start_ms, rid, moved) in read:
        skewed += moved
        trace_id, span_id = span.trace_id, span.span_id
        if len(trace_id) == 16 and len(span_id) == 8 and trace_id != _ZERO_TRACE and span_id != _ZERO_SPAN:
            key = hash((trace_id, span_id, micro, tokens, rid))  # as the per-span path keys seen (seen.py)
            if key in seen:
                duplicates += 1
                continue
            if len(seen) >= maxsize:
                make_room()
            seen[key] = expiry
        slot = (fields, int(at // 3600))
        segment = segments.get(slot)
        if segment is None:
            segment = segments[slot] = _Segment(fields, at, start_ms)
            numbers[slot] = len(numbers)
        segment.cost += micro
        segment.tokens += tokens
        segment.steps += 1
        segment.last = position
        workflow_id = fields[0]
        spent = through[workflow_id] = through.get(workflow_id, 0) + micro
        segment.through = spent
        segment.spans.extend((position, micro, tokens, index))
        if rid is not None:
            releases.append((rid, numbers[slot]))
        position += 1
    out = [(s.fields, s.at, s.cost, s.tokens, s.steps, s.start, s.last, s.through, s.spans.tobytes())
           for s in segments.values()]
    return out, releases, finished, duplicates, skewed


def read_roots(spans, indices, key: str) -> list[str]:
    """The `key` (workflow.id) of each span of `indices` without a parent, when a non-empty str,
    in order: the workflows a batch finishes. The Rust one reads the native codec's lazy span
    list from its records where no view is made (the same answer)."""
    out = []
    for index in indices:
        span = spans[index]
        if not span.parent_span_id:
            value = span.attrs.get(key)
            if type(value) is str and value:
                out.append(value)
    return out
