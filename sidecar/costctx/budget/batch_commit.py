"""A batch's commit with its amounts summed per counter, not one change list per span.

The spans of one batch name few counters (a workflow's, its tenant's and feature's windows,
the tenant's velocity buckets), so the store adds each counter's sum once; each span's own
view of the counters (what the breaker and its `budget.state` read: the values right after
that span, in batch order) is rebuilt from the store's values after the batch minus what the
later spans added. Spans are grouped by the envelope fields the counters are keyed by
(`SpendGroup`), and within a group by the hour and velocity bucket their windows fall in
(`Segment`); the change layout of a segment is the one `policy.commit_changes` gives a span.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from itertools import accumulate

from costctx.budget import counters as c
from costctx.budget.policy import Context, _velocity_keys, _where, _window_keys_ttls, _workflow_key
from costctx.budget.store import KeyAdds

# What a change adds, per span: its cost, its tokens, one step, its start (set once), nothing.
COST, TOKENS, STEPS, START, ZERO = range(5)


class Segment:
    """The spans of one group whose windows fall in one UTC hour and velocity bucket: one
    change layout, and their amounts summed."""

    __slots__ = ("workflow_key", "workflow_ttl", "windows", "velocity", "where", "_changes",
                 "cost", "tokens", "steps", "start")

    def __init__(self, ctx: Context, at: float, workflow_ttl_s: float, velocity_window_s: float | None) -> None:
        workflow_id, tenant, feature = ctx.workflow_id, ctx.tenant, ctx.feature
        self.workflow_key = _workflow_key(workflow_id) if workflow_id else ""
        self.workflow_ttl = int(workflow_ttl_s * 1000)
        hour = int(at // 3600)
        # (key, ttl ms) of the tenant's then the feature's windows (cached per owner and hour)
        self.windows = ((_window_keys_ttls("t", tenant, hour) if tenant else ())
                        + (_window_keys_ttls("f", feature, hour) if feature else ()))
        # the tenant's (current, previous) velocity bucket keys and their ttl, when kept
        self.velocity: tuple[str, str, int] | None = None
        if velocity_window_s and tenant:
            current, previous = _velocity_keys(tenant, int(at // velocity_window_s))
            self.velocity = (current, previous, int(velocity_window_s * 3000))
        self.where = _where(bool(workflow_id), bool(tenant), bool(feature), self.velocity is not None)
        self._changes: tuple[tuple[str, str, int], ...] | None = None
        self.cost = self.tokens = self.steps = 0
        self.start: int | None = None  # the first span's start (the workflow's, when absent)

    @property
    def changes(self) -> tuple[tuple[str, str, int], ...]:
        """(key, field, what it adds) in policy.commit_changes's order (the order of `where`)."""
        if self._changes is None:
            changes: list[tuple[str, str, int]] = []
            key = self.workflow_key
            if key:
                changes += [(key, c.USD, COST), (key, c.TOKENS, TOKENS), (key, c.STEPS, STEPS), (key, c.START, START)]
            changes += [(key, c.USD, COST) for key, _ in self.windows]
            if self.velocity is not None:
                changes += [(self.velocity[0], c.USD, COST), (self.velocity[1], c.USD, ZERO)]
            self._changes = tuple(changes)
        return self._changes

    def add(self, cost: int, tokens: int, start_ms: int) -> None:
        self.cost += cost
        self.tokens += tokens
        self.steps += 1
        if self.start is None:
            self.start = start_ms


class SpendGroup:
    """A batch's model-call spans with the same envelope fields: one Context, one policy
    match, one median of the breaker, and their segments."""

    __slots__ = ("ctx", "policy", "stamp_policy", "typical", "velocity", "_segments", "_last")

    def __init__(self, ctx: Context, policy, stamp_policy: bool, typical: int | float | None,
                 velocity: bool = False) -> None:
        self.ctx = ctx
        self.policy = policy                # the PolicyConfig its spans match, or None
        self.stamp_policy = stamp_policy    # its spans carry no policy.id: stamp the policy's
        self.typical = typical              # Breaker.typical(ctx) as the batch began
        self.velocity = velocity            # the tenant's velocity counters are kept
        self._segments: dict[tuple[int, int], Segment] = {}
        self._last: tuple[int, int, Segment] | None = None

    def segment(self, at: float, workflow_ttl_s: float, velocity_window_s: float | None,
                created: list[Segment]) -> Segment:
        """The segment of a span ending at `at` (appended to `created` when new)."""
        hour = int(at // 3600)
        bucket = int(at // velocity_window_s) if self.velocity else 0  # type: ignore[operator]
        last = self._last
        if last is not None and last[0] == hour and last[1] == bucket:
            return last[2]
        found = self._segments.get((hour, bucket))
        if found is None:
            found = self._segments[(hour, bucket)] = Segment(self.ctx, at, workflow_ttl_s, velocity_window_s)
            created.append(found)
        self._last = (hour, bucket, found)
        return found


def key_adds(segments: list[Segment]) -> dict[str, KeyAdds]:
    """Every segment's sums, per counter key (segments sharing a key add up; the first
    segment's start is the one set when absent, as the first span's would be)."""
    adds: dict[str, KeyAdds] = {}
    usd = c.USD
    for segment in segments:
        cost = segment.cost
        key = segment.workflow_key
        if key:
            add = adds.get(key)
            if add is None:
                adds[key] = KeyAdds(segment.workflow_ttl, {usd: cost, c.TOKENS: segment.tokens, c.STEPS: segment.steps},
                                    {c.START: segment.start})  # type: ignore[dict-item]
            else:
                sums = add.sums
                sums[usd] += cost
                sums[c.TOKENS] += segment.tokens
                sums[c.STEPS] += segment.steps
        for key, ttl in segment.windows:
            add = adds.get(key)
            if add is None:
                adds[key] = KeyAdds(ttl, {usd: cost})
            else:
                add.sums[usd] += cost
        if segment.velocity is not None:
            current, previous, ttl = segment.velocity
            for key, amount in ((current, cost), (previous, 0)):  # the previous bucket: kept, added nothing
                add = adds.get(key)
                if add is None:
                    adds[key] = KeyAdds(ttl, {usd: amount})
                else:
                    add.sums[usd] += amount
    return adds


class RunningValues:
    """Each counter's value as the spans of the batch reach it, in batch order: starts at the
    value before the batch (the value after it minus the batch's sum) and adds each span's."""

    __slots__ = ("_running", "_after", "_adds")

    def __init__(self, adds: dict[str, KeyAdds], after: dict[str, list]) -> None:
        self._running: dict[tuple[str, str], int] = {}
        self._after = after
        self._adds = adds

    def _before(self, key: str, field: str) -> int:
        return self._after[key][c.SLOT[field]] - self._adds[key].sums[field]

    def after_span(self, segment: Segment, cost: int, tokens: int) -> list[int]:
        """The values of `segment.changes` right after a span adding (cost, tokens, 1 step)."""
        running = self._running
        amounts = (cost, tokens, 1, 0, 0)
        values = []
        for key, field, what in segment.changes:
            if what == START:
                values.append(self._after[key][c.SLOT[field]])  # set once, before any span read it
                continue
            slot = (key, field)
            value = running.get(slot)
            if value is None:
                value = self._before(key, field)
            value = running[slot] = value + amounts[what]
            values.append(value)
        return values

    def workflow_cost(self, segment: Segment, cost: int) -> int:
        """Only the workflow's spend after a span (what the breaker's median compares)."""
        slot = (segment.workflow_key, c.USD)
        value = self._running.get(slot)
        if value is None:
            value = self._before(segment.workflow_key, c.USD)
        value = self._running[slot] = value + cost
        return value



class RunningAt:
    """RunningValues for a batch committed per segment (processors/budget/spend_read.py): a
    counter's value right after the span at a position in the batch, from the value after the
    batch minus what the batch added, plus what the spans up to that position added. Each
    counter's series (positions, running cost and tokens) is built on first use from the
    segments that add to it: entries (group, workflow key, _, _, spans, windows), spans as
    (position, micro-USD, tokens, index) int64 quadruples; what the batch added per key as
    MemoryStore.apply_sums takes it ([ttl ms, usd] or [ttl ms, usd, tokens, steps, start])."""

    __slots__ = ("_after", "_sums", "_members", "_series")

    def __init__(self, entries: list[tuple], sums: dict[str, list[int]], after: dict[str, list]) -> None:
        self._after, self._sums = after, sums
        self._members: dict[str, list[bytes]] = {}
        for _, key, _, _, packed, windows in entries:
            for name in ((key,) if key else ()) + tuple(window for window, _ in windows):
                self._members.setdefault(name, []).append(packed)
        self._series: dict[str, tuple[list[int], list[int], list[int]]] = {}

    def _of(self, key: str) -> tuple[list[int], list[int], list[int]]:
        found = self._series.get(key)
        if found is None:
            rows = []
            for packed in self._members[key]:
                spans = array("q", packed)
                rows += [(spans[i], spans[i + 1], spans[i + 2]) for i in range(0, len(spans), 4)]
            rows.sort()
            found = self._series[key] = ([row[0] for row in rows], list(accumulate(row[1] for row in rows)),
                                         list(accumulate(row[2] for row in rows)))
        return found

    def value(self, key: str, field: str, position: int) -> int:
        """`field` (usd, tok or steps) of counter `key` right after the span at `position`."""
        positions, cost, tokens = self._of(key)
        spans = bisect_right(positions, position)  # the batch's spans on this counter up to it
        before = self._after[key][c.SLOT[field]] - self._sums[key][_SLOT[field]]
        if not spans:
            return before
        return before + (cost[spans - 1] if field == c.USD else tokens[spans - 1] if field == c.TOKENS else spans)

    def values(self, workflow_key: str, windows: tuple, position: int) -> list[int]:
        """The values policy.commit_changes' layout names (its `where`), right after the span."""
        values = []
        if workflow_key:
            values += [self.value(workflow_key, c.USD, position), self.value(workflow_key, c.TOKENS, position),
                       self.value(workflow_key, c.STEPS, position), self._after[workflow_key][c.SLOT[c.START]]]
        values += [self.value(window, c.USD, position) for window, _ in windows]
        return values


# A field's place in a key's apply_sums list (after its TTL).
_SLOT = {c.USD: 1, c.TOKENS: 2, c.STEPS: 3}
