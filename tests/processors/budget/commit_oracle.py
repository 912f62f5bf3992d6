"""Today's (33ec060) per-segment commit of the budget processor, kept verbatim as the oracle of
the one commit body that replaced it: `_commit_plain` (no policy configured) and
`_commit_segments` (policies), with the helpers they called and `RunningAt` as it read
KeyAdds. `install(processor)` makes a processor commit through them."""

# ruff: noqa: E501
from __future__ import annotations

import types
from array import array
from bisect import bisect_right
from itertools import accumulate
from operator import itemgetter

from costctx.budget import counters as c
from costctx.budget.batch_commit import SpendGroup
from costctx.budget.counters import START, STEPS, TOKENS, USD, workflow_key
from costctx.budget.policy import Context, _where, _window_keys_ttls
from costctx.budget.store import KeyAdds
from costctx.pdata.codec.api import EMPTY
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.budget.processor import POLICY_KEY, STATE_KEY


def _by_field(after: dict[str, list]) -> dict[str, dict[str, int]]:
    """The store's counters after a commit as {field: value}, as these bodies read them."""
    return {key: {c.FIELDS[slot]: value for slot, value in enumerate(counter) if value is not None}
            for key, counter in after.items()}


def _windows_of(tenant: str, feature: str, at: float) -> tuple:
    """The tenant's and the feature's hourly window keys with their TTLs at time `at` (empty
    when the segment has neither)."""
    if not (tenant or feature):
        return ()
    hour = int(at // 3600)
    return ((_window_keys_ttls("t", tenant, hour) if tenant else ())
            + (_window_keys_ttls("f", feature, hour) if feature else ()))


class RunningAt:
    """RunningValues for a batch committed per segment (processors/budget/spend_read.py): a
    counter's value right after the span at a position in the batch, from the value after the
    batch minus what the batch added, plus what the spans up to that position added. Each
    counter's series (positions, running cost and tokens) is built on first use from the
    segments that add to it: `placed` entries (group, workflow key, _, _, spans, windows), spans
    as (position, micro-USD, tokens, index) int64 quadruples."""

    __slots__ = ("_after", "_adds", "_members", "_series")

    def __init__(self, placed: list[tuple], adds: dict[str, KeyAdds], after: dict[str, dict[str, int]]) -> None:
        self._after, self._adds = after, adds
        self._members: dict[str, list[bytes]] = {}
        for _, key, _, _, packed, windows in placed:
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
        before = self._after[key][field] - self._adds[key].sums[field]
        if not spans:
            return before
        return before + (cost[spans - 1] if field == c.USD else tokens[spans - 1] if field == c.TOKENS else spans)

    def values(self, workflow_key: str, windows: tuple, position: int) -> list[int]:
        """The values policy.commit_changes' layout names (its `where`), right after the span."""
        values = []
        if workflow_key:
            values += [self.value(workflow_key, c.USD, position), self.value(workflow_key, c.TOKENS, position),
                       self.value(workflow_key, c.STEPS, position), self._after[workflow_key][c.START]]
        values += [self.value(window, c.USD, position) for window, _ in windows]
        return values


class OldCommit:
    """The methods, bound to a processor by install()."""

    def _commit_plain(self, batch: ViewBatch, read: list[tuple], releases: list[tuple[str, int]],
                      now: float) -> None:
        """_commit_segments with no policy configured (no budget.state to decide), per distinct
        envelope fields and per counter, not per segment object: one Context, breaker median
        and workflow key per fields; each counter's sums as one list (MemoryStore.apply_sums,
        not a KeyAdds with two dicts); the breaker's running totals per workflow. A workflow
        some group may trip takes _commit_segments' per-span way (its entries built then)."""
        engine = self.engine
        breaker = engine.breaker
        workflow_ttl = int(engine.config.workflow_ttl * 1000)
        typical_of = breaker.typical
        # fields -> (Context, typical, workflow key, tenant, feature)
        groups: dict[tuple, tuple] = {}
        # per segment: (its group, windows), as `read` orders them
        placed: list[tuple[tuple, tuple]] = []
        # key -> [ttl ms, usd] (a window) or [ttl ms, usd, tokens, steps, start] (a workflow),
        # in the order the segments first name them (apply_now's order)
        sums: dict[str, list[int]] = {}
        # workflow.id -> (its last span's position, that span's Context, its counter key)
        last_of: dict[str, tuple[int, Context, str]] = {}
        spans = 0
        for fields, at, cost, tokens, steps, start, last, _, _ in read:
            group = groups.get(fields)
            if group is None:
                workflow_id, workflow_name, tenant, feature, policy_id = fields
                ctx = Context(workflow_id or "", workflow_name or "", tenant or "", feature or "", policy_id or "", 0)
                # Not the cached _workflow_key: a workflow is new to most batches (see _commit_segments).
                group = groups[fields] = (ctx, typical_of(ctx), workflow_key(workflow_id) if workflow_id else "",
                                          tenant, feature)
            ctx, _, key, tenant, feature = group
            if key:
                add = sums.get(key)
                if add is None:
                    sums[key] = [workflow_ttl, cost, tokens, steps, start]
                else:
                    add[1] += cost
                    add[2] += tokens
                    add[3] += steps
                found = last_of.get(ctx.workflow_id)
                if found is None or last > found[0]:
                    last_of[ctx.workflow_id] = (last, ctx, key)
            windows = _windows_of(tenant, feature, at)
            for window, ttl in windows:
                add = sums.get(window)
                if add is None:
                    sums[window] = [ttl, cost]
                else:
                    add[1] += cost
            placed.append((group, windows))
            spans += steps
        bindings = [(rid, (placed[n][0][0].workflow_id, placed[n][0][0].tenant)) for rid, n in releases]
        outcomes, after = engine.store.apply_sums(bindings, sums)
        after = _by_field(after)  # the store's counters are lists of places now (counters.SLOT)
        engine.count_commit(outcomes, spans)
        multiple = breaker.config.workflow_median_multiple
        hot: set[str] = set()
        for (group, _), segment in zip(placed, read, strict=True):
            typical = group[1]
            if typical is not None and typical > 0 and group[2]:
                key = group[2]
                if after[key][USD] - sums[key][1] + segment[7] > multiple * typical:
                    hot.add(group[0].workflow_id)
        trips = self._old_trips_plain(batch, read, placed, sums, after, hot, now) if hot else ()
        # as of each workflow's last span, in the order of those spans
        breaker.note_running_many([(ctx, after[key][USD]) for _, ctx, key in sorted(last_of.values(),
                                                                                    key=itemgetter(0))], now)
        for key, tenant in trips:
            engine.store.trip_now(key, self.config.breaker.cooldown, tenant)

    def _trips_plain(self, batch: ViewBatch, read: list[tuple], placed: list[tuple[tuple, tuple]],
                     sums: dict[str, list[int]], after: dict[str, dict[str, int]], hot: set[str],
                     now: float) -> list:
        """_trips_per_span on _commit_plain's segments: its entries and adds as _commit_segments
        builds them (one SpendGroup per fields), for the rare batch with a hot workflow."""
        spend_groups: dict[int, SpendGroup] = {}
        entries = []
        for (group, windows), segment in zip(placed, read, strict=True):
            spend_group = spend_groups.get(id(group))
            if spend_group is None:
                spend_group = spend_groups[id(group)] = SpendGroup(group[0], None, False, group[1], False)
            entries.append((spend_group, group[2], segment[6], segment[7], segment[8], windows))
        adds = {key: KeyAdds(add[0], {USD: add[1]} if len(add) == 2 else
                             {USD: add[1], TOKENS: add[2], STEPS: add[3]}) for key, add in sums.items()}
        return self._old_trips_per_span(batch, entries, hot, RunningAt(entries, adds, after), {}, now)

    def _commit_segments(self, batch: ViewBatch, read: list[tuple], releases: list[tuple[str, int]],
                         now: float) -> None:
        """_commit_here for a batch read per segment (no policy, no velocity): each counter's sum
        added at once (the layout of batch_commit.key_adds, without its Segment objects); the
        breaker's running totals from the workflow counter as it stood after each group's last
        span, per span only for a workflow some group may trip."""
        engine = self.engine
        workflow_ttl = int(engine.config.workflow_ttl * 1000)
        groups: dict[tuple, SpendGroup] = {}
        placed: list[tuple[SpendGroup, str, int, int, bytes, tuple]] = []
        adds: dict[str, KeyAdds] = {}
        spans = 0
        make_group = self._old_group if engine.config.policies else self._old_plain_group
        for fields, at, cost, tokens, steps, start, last, through, packed in read:
            group = groups.get(fields)
            if group is None:
                group = groups[fields] = make_group(fields)
            ctx = group.ctx
            # Not the cached _workflow_key: a workflow's spans make one segment per batch, so the
            # cache would miss (and evict) once per segment, at 3x the cost of formatting it.
            key = workflow_key(ctx.workflow_id) if ctx.workflow_id else ""
            if key:
                add = adds.get(key)
                if add is None:
                    adds[key] = KeyAdds(workflow_ttl, {USD: cost, TOKENS: tokens, STEPS: steps}, {START: start})
                else:
                    sums = add.sums
                    sums[USD] += cost
                    sums[TOKENS] += tokens
                    sums[STEPS] += steps
            tenant, feature = ctx.tenant, ctx.feature
            windows = _windows_of(tenant, feature, at)
            for window, ttl in windows:
                add = adds.get(window)
                if add is None:
                    adds[window] = KeyAdds(ttl, {USD: cost})
                else:
                    add.sums[USD] += cost
            placed.append((group, key, last, through, packed, windows))
            spans += steps
        bindings = [(rid, (placed[n][0].ctx.workflow_id, placed[n][0].ctx.tenant)) for rid, n in releases]
        outcomes, after = engine.store.apply_now(bindings, adds)
        after = _by_field(after)  # the store's counters are lists of places now (counters.SLOT)
        engine.count_commit(outcomes, spans)
        breaker = engine.breaker
        multiple = breaker.config.workflow_median_multiple
        # workflow.id -> (its last span's position, that span's Context, its counter key); the
        # workflows some group may trip (its spend after its last span, the most any of its
        # spans saw, over the median rule's bound)
        last_of: dict[str, tuple[int, Context, str]] = {}
        hot: set[str] = set()
        for group, key, last, through, _, _ in placed:
            if not key:
                continue
            ctx = group.ctx
            found = last_of.get(ctx.workflow_id)
            if found is None or last > found[0]:
                last_of[ctx.workflow_id] = (last, ctx, key)
            typical = group.typical
            if typical is not None and typical > 0:
                before = after[key][USD] - adds[key].sums[USD]
                if before + through > multiple * typical:
                    hot.add(ctx.workflow_id)
        # (policy, state) -> [spans, the first one's position]: counted once per batch, in the
        # order the per-span path meets them (the order their series appear in)
        states: dict[tuple[str, str], list[int]] = {}
        # Each counter's running values, built only when some span's state or trip reads them
        # (no policy and no hot workflow, the common case: nothing reads them).
        running: RunningAt | None = None
        # budget.state of the segments no trip in this batch can reach (only a hot workflow's
        # breaker key trips here): decided per segment; the hot ones' per span, with their trips
        for entry in placed:
            if entry[0].policy is not None and not (entry[1] and entry[0].ctx.workflow_id in hot):
                if running is None:
                    running = RunningAt(placed, adds, after)
                self._old_segment_states(batch, entry, running, states, now)
        trips = []
        if hot:
            running = running if running is not None else RunningAt(placed, adds, after)
            trips = self._old_trips_per_span(batch, placed, hot, running, states, now)
        if states:
            engine.count_states({pair: tally[0] for pair, tally in sorted(states.items(), key=lambda item: item[1][1])})
        for _, ctx, key in sorted(last_of.values(), key=lambda item: item[0]):
            breaker.note_running(ctx, after[key][USD], now)  # as of the workflow's last span
        for key, tenant in trips:
            engine.store.trip_now(key, self.config.breaker.cooldown, tenant)

    def _segment_states(self, batch: ViewBatch, entry: tuple, running: RunningAt, states: dict,
                        now: float) -> None:
        """budget.state of a segment's spans: each counter only grows within the segment, so its
        state after the first span equals the one after the last only when every span has it."""
        group, key, _, _, packed, windows = entry
        policy, ctx = group.policy, group.ctx
        where = _where(bool(key), bool(ctx.tenant), bool(ctx.feature), False)
        spans = array("q", packed)
        state_of = self.engine.state_of
        first = state_of(policy, ctx, where, running.values(key, windows, spans[0]), now)
        last = state_of(policy, ctx, where, running.values(key, windows, spans[-4]), now)
        if first == last:  # one value for every span: one group edit each, not one edit per span
            indices = spans[3::4].tolist()
            pair = (policy.id, first)
            tally = states.get(pair)
            if tally is None:
                states[pair] = [len(indices), spans[0]]
            else:
                tally[0] += len(indices)
                tally[1] = min(tally[1], spans[0])
            if group.stamp_policy:
                batch.set_many(indices, POLICY_KEY, policy.id)
            batch.set_many(indices, STATE_KEY, first)
            return
        for i in range(0, len(spans), 4):  # it changes within the segment (a limit passed midway)
            state = state_of(policy, ctx, where, running.values(key, windows, spans[i]), now)
            self._old_stamp_state(batch, spans[i + 3], spans[i], group, state, states)

    @staticmethod
    def _stamp_state(batch: ViewBatch, index: int, position: int, group: SpendGroup, state: str,
                     states: dict) -> None:
        policy_id = group.policy.id
        tally = states.get((policy_id, state))
        if tally is None:
            states[(policy_id, state)] = [1, position]
        else:
            tally[0] += 1
            tally[1] = min(tally[1], position)
        if group.stamp_policy:
            batch.set(index, POLICY_KEY, policy_id)
        batch.set(index, STATE_KEY, state)

    def _trips_per_span(self, batch: ViewBatch, placed: list, hot: set[str], running: RunningAt, states: dict,
                        now: float) -> list:
        """The median rule per span, in batch order, for the workflows some group may trip (each
        span's running spend from the counter's value before the batch), and their spans'
        budget.state right after (a trip here is open for the spans after it)."""
        events = []  # (position, index in the view, entry)
        for entry in placed:
            if entry[1] and entry[0].ctx.workflow_id in hot:
                spans = array("q", entry[4])
                events += [(spans[i], spans[i + 3], entry) for i in range(0, len(spans), 4)]
        events.sort(key=lambda event: event[0])
        engine = self.engine
        observe = engine.breaker.observe_values
        trips = []
        for position, index, entry in events:
            group, key, windows = entry[0], entry[1], entry[5]
            ctx = group.ctx
            if group.typical is not None:
                spent = running.value(key, USD, position)
                # `at` is read only with velocity counters (none here)
                observed = observe(ctx, now, spent, None, group.typical, now)
                trips += [(breaker_key, ctx.tenant) for _, breaker_key, _ in observed]
            if group.policy is not None:
                where = _where(True, bool(ctx.tenant), bool(ctx.feature), False)
                state = engine.state_of(group.policy, ctx, where, running.values(key, windows, position), now)
                self._old_stamp_state(batch, index, position, group, state, states)
        return trips

    def _plain_group(self, fields: tuple) -> SpendGroup:
        """_group with no policy configured and no velocity counters (fields: str or None)."""
        workflow_id, workflow_name, tenant, feature, policy_id = fields
        ctx = Context(workflow_id or "", workflow_name or "", tenant or "", feature or "", policy_id or "", 0)
        return SpendGroup(ctx, None, False, self.engine.breaker.typical(ctx), False)

    def _group(self, fields: tuple) -> SpendGroup:
        workflow_id, workflow_name, tenant, feature, policy_id = (v if type(v) is str else "" for v in fields)
        # retry_attempt is left 0: nothing a commit does reads it (only a check does).
        ctx = Context(workflow_id, workflow_name, tenant, feature, policy_id, 0)
        policy = self.engine.policies.match(policy_id, workflow_name)
        stamp_policy = fields[4] is None or fields[4] is EMPTY or fields[4] == ""
        velocity = bool(self.engine.breaker.velocity_window and tenant)
        return SpendGroup(ctx, policy, stamp_policy, self.engine.breaker.typical(ctx), velocity)


_NAMES = ("_commit_plain", "_trips_plain", "_commit_segments", "_segment_states", "_stamp_state",
          "_trips_per_span", "_plain_group", "_group")


def install(processor) -> None:
    """The processor's per-segment commit is today's: _commit_plain without policies, else
    _commit_segments (both bound to the processor under private names)."""
    for name in _NAMES:
        member = OldCommit.__dict__[name]
        if isinstance(member, staticmethod):
            setattr(processor, "_old" + name, member.__func__)
        else:
            setattr(processor, "_old" + name, types.MethodType(member, processor))

    def commit(batch, read, releases, now):
        if processor.engine.config.policies:
            return processor._old_commit_segments(batch, read, releases, now)
        return processor._old_commit_plain(batch, read, releases, now)

    processor._commit_segments = commit
