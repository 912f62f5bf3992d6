"""Each workflow's running spend as this sidecar has seen it: bounded and age-limited.

Shared through the component host as `host.spend_ledger`. Amounts are exact pico-USD ints:

    ledger.add("wf-1", pico)   -> the new running total (this amount included)
    ledger.add("wf-1", pico, span_key=trace_id + span_id)
                               -> the same, but a span seen before (a client resending a batch
                                  after a timeout) is not counted twice
    ledger.add_batch([("wf-1", pico, key), ...])
                               -> each one's new running total, in order: `add` for a batch,
                                  with one clock reading and one expiry pass
    ledger.total("wf-1")       -> the running total, 0 for a workflow not seen (or expired)

A workflow is kept at least `ttl` seconds after its last priced span and forgotten by 2 x
`ttl`; when more than `maxsize` workflows are live, the least recently updated half goes
first (counted in `evicted`): a bound on memory, never on the spans already stamped.

Layout, for memory (the tables fill within minutes at 10,000 spans/s, bench/memory_structures.py):
- totals: two generations of plain dicts `workflow id -> pico` (the young one takes every
  update; an update of an old entry moves it to the young one). The young one becomes the old
  one when it holds `maxsize / 2` workflows or is `ttl` old; the old one is then dropped whole.
  ~150 bytes per workflow (its id string, an int, a slot) instead of ~260 with an
  OrderedDict's node and a (total, time) tuple; no per-entry work on expiry.
- dedupe: budget/seen.py's SeenSpans (generations of one dict, one float per batch) keyed by
  `hash((workflow id, span key))`, ~90 bytes per span instead of ~170. The workflow id is in
  the key so a span seen under one workflow never hides a span of another: a forgotten or
  colliding entry can count a resend twice for its own workflow, never move spend from one
  tenant's workflow to another's. Totals are keyed by the id itself, never a hash of it.
Neither table holds containers the cyclic GC tracks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping

from costctx.budget.seen import SeenSpans, new_seen_spans

try:
    from costctx_native._core import add_spend as native_add_spend  # type: ignore[import-not-found]
except ImportError:  # built without the extension (or an older build): add_spend below
    native_add_spend = None


def add_spend(entries: list[tuple[str, int, bytes | None]], seen: MutableMapping | None, expiry: float | None,
              dedupe_size: int, make_room: Callable[[], None], young: dict[str, int], old: dict[str, int],
              cap: int, rotate: Callable[[], tuple[dict[str, int], dict[str, int]]]) -> tuple[list[int], int]:
    """SpendLedger.add_batch's loop over its entries (the fallback and the oracle of the Rust
    one): -> (each entry's running total, duplicates). A span key already in `seen` (by
    hash((workflow id, span key))) adds nothing; else it is added with `expiry`, `make_room()`
    first when `seen` holds `dedupe_size`. A workflow new to the young generation is taken from
    the old one (or 0); `rotate()` first when the young one holds `cap` workflows, which gives
    the new (young, old)."""
    out = []
    duplicates = 0
    for workflow_id, pico, span_key in entries:
        if span_key is not None and seen is not None:
            key = hash((workflow_id, span_key))
            if key in seen:  # seen within the window (a little longer, never shorter)
                duplicates += 1
                total = young.get(workflow_id)
                out.append(old.get(workflow_id, 0) if total is None else total)
                continue
            if len(seen) >= dedupe_size:
                make_room()
            seen[key] = expiry
        total = young.get(workflow_id)
        if total is None:
            total = old.pop(workflow_id, 0)  # taken before a rotation drops the old generation
            if len(young) >= cap:
                young, old = rotate()
        total = young[workflow_id] = total + pico
        out.append(total)
    return out, duplicates


class SpendLedger:
    def __init__(self, maxsize: int = 100_000, ttl: float = 6 * 3600.0,
                 timer: Callable[[], float] = time.monotonic,
                 dedupe_size: int = 50_000, dedupe_window: float = 300.0) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._timer = timer
        # workflow id -> total pico-USD: updates go to the young generation.
        self._young: dict[str, int] = {}
        self._old: dict[str, int] = {}
        self._young_cap = max(1, maxsize // 2)
        self._young_since = timer()
        # Spans counted recently, by hash((workflow id, trace id + span id)): OTLP clients retry whole batches.
        self.dedupe_size = dedupe_size
        self.dedupe_window = dedupe_window
        self._seen = new_seen_spans(max(1, dedupe_size), dedupe_window if dedupe_window > 0 else 1.0, timer,
                                   name="spend ledger dedupe set")
        self.evicted = 0     # workflows dropped by the size bound
        self.expired = 0     # workflows dropped by age
        self.duplicates = 0  # spans not counted twice

    def add(self, workflow_id: str, pico: int, span_key: bytes | None = None) -> int:
        return self.add_batch([(workflow_id, pico, span_key)])[0]

    def add_batch(self, entries: list[tuple[str, int, bytes | None]], native: bool = False) -> list[int]:
        """`add` for each (workflow id, pico, span key), in order, at one clock reading: the
        same totals, duplicates and bounds as one `add` each, for one call per batch instead
        of three per span. `native`: the entries' loop in Rust (`add_spend`, native/src/price.rs)
        when the extension is built, with the same result as `add_spend` here."""
        now = self._timer()
        self._age(now)
        seen = expiry = None
        if self.dedupe_size and self.dedupe_window:
            seen, expiry = self._seen.open_batch()

        def rotate() -> tuple[dict[str, int], dict[str, int]]:
            self._rotate(now, by_size=True)
            return self._young, self._old

        add = native_add_spend if native and native_add_spend is not None else add_spend
        out, duplicates = add(entries, seen, expiry, self.dedupe_size, self._seen.make_room, self._young, self._old,
                              self._young_cap, rotate)
        self.duplicates += duplicates
        return out

    @property
    def dedupe_table(self) -> SeenSpans:
        """The dedupe window's table (its `evicted` / `expired` counts are exported as metrics)."""
        return self._seen

    def total(self, workflow_id: str) -> int:
        self._age(self._timer())
        total = self._young.get(workflow_id)
        return self._old.get(workflow_id, 0) if total is None else total

    def totals(self) -> dict[str, int]:
        """Every live workflow's running total (a copy: tests and diagnostics)."""
        self._age(self._timer())
        return {**self._old, **self._young}

    def __len__(self) -> int:
        self._age(self._timer())
        return len(self._young) + len(self._old)

    def _age(self, now: float) -> None:
        # The old generation's entries were last updated before the young one began: once that
        # is ttl ago they have all aged out, and the young one becomes the old one.
        if now - self._young_since >= self.ttl:
            self._rotate(now, by_size=False)

    def _rotate(self, now: float, by_size: bool) -> None:
        dropped = len(self._old)
        if by_size:
            self.evicted += dropped
        else:
            self.expired += dropped
        self._old, self._young = self._young, {}
        self._young_since = now
