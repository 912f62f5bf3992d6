"""The `budget` processor: commits each model-call span's actual spend to the budget
counters (replacing the reservation its check made), stamps `policy.id` and
`budget.state`. Its engine (the host's `budget_engine`) answers the budget check, which the
service serves on the sidecar's gRPC and HTTP ports (extensions/budgetservice).

Runs after `price` (it reads `cost.usd`) and before `envelope`. With the Redis store a
batch is held for the one round trip that commits its spans, then released stamped.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from operator import itemgetter

from costctx.budget.batch_commit import RunningAt, RunningValues, Segment, SpendGroup, key_adds
from costctx.budget.counters import (
    MAX_TOKENS,
    MAX_USD,
    MICRO,
    SLOT,
    USD,
    spent_micro,
    spent_tokens,
    workflow_key,
)
from costctx.budget.engine import BudgetEngine, SpanVerdict
from costctx.budget.policy import Context, SpanSpend, _where, _window_keys_ttls
from costctx.budget.seen import COMMITTED_SPANS, SeenSpans, new_seen_spans
from costctx.budget.span_trust import CLOCK_SKEW, SpanTrust, resend_digest
from costctx.budget.store import StoreUnavailable
from costctx.component.host import Host
from costctx.component.processor import Processor
from costctx.envelope.keys import SPEND_TOTAL
from costctx.pdata.codec.api import EMPTY, spans_having
from costctx.pdata.view_batch import ViewBatch
from costctx.processors.budget.config import BudgetConfig
from costctx.processors.budget.metrics import budget_metrics
from costctx.processors.budget.spend_read import (
    READ_KEYS,
    native_read_roots,
    native_read_spend,
    read_roots,
    read_spend,
)

# What a model-call span's commit reads: the group's five envelope fields, then its amounts.
_READ = ("workflow.id", "workflow.name", "owner.tenant", "owner.feature", "policy.id", "cost.usd",
         "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "budget.reservation_id")
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)
# Stands for a non-string envelope value in a group's key (read as "", never a policy.id).
_OTHER = object()
# The committed spend's place in the memory store's counters (MemoryStore.apply_sums' `after`).
_USD = SLOT[USD]

COST_KEY = "cost.usd"
RESERVATION_KEY = "budget.reservation_id"
STATE_KEY = "budget.state"
POLICY_KEY = "policy.id"


def _windows_at(tenant: str, feature: str, hour: int) -> tuple:
    """The tenant's and the feature's window keys with their TTLs at UTC `hour` (int(epoch s //
    3600)), the tenant's first (policy.commit_changes' order)."""
    return ((_window_keys_ttls("t", tenant, hour) if tenant else ())
            + (_window_keys_ttls("f", feature, hour) if feature else ()))


class BudgetProcessor(Processor):
    type_name = "budget"
    config_model = BudgetConfig
    config: BudgetConfig
    on_view = True
    # Model calls are found by spans_having and read alone (views made for those only); the
    # finished workflows read from the records (read_roots).
    columnar = True

    def __init__(self, name: str, config: BudgetConfig, host: Host) -> None:
        super().__init__(name, config, host)
        self.metrics = budget_metrics(self.component_metrics())
        # Estimates come from the host's price book, which exists with or without a price processor.
        # Sidecars sharing a process (the demo) share one memory store, as pods share a Redis.
        shared_here = host.in_process.budget_store if host.in_process and config.backend == "memory" else None
        self.engine = BudgetEngine(config, self.metrics, host.price_book, store=shared_here)
        if host.budget_engine is None:
            host.budget_engine = self.engine
        if config.policies:
            host.survival.policy_configured()  # policy.id gets stamped: its readiness check applies
        # Read when a check arrives: `inherit` may build the registry after this processor.
        self.engine.context_registry = lambda: host.context_registry
        # A span is a model call when it has any of these keys: one C-speed set test per span.
        self._markers = frozenset(host.envelope.llm_span_markers) | {COST_KEY}
        # held batches (Redis store); released once, by their commit task or by shutdown
        self._held: dict[int, ViewBatch] = {}
        # Commit tasks still running: shutdown releases their batches but the tasks run on
        # until close() cancels them, before the store they use is closed.
        self._commits: set[asyncio.Task] = set()
        # Spans already committed (trace id + span id): an exporter that resends a batch
        # after a lost acknowledgement must not count its spend twice. Bound: budget/seen.py.
        # Keys are hash() ints with a store in this process (the native table holds those), the
        # shared store's resend digests (bytes) otherwise.
        self._committed = (new_seen_spans if self.engine.store.sync else SeenSpans)(maxsize=COMMITTED_SPANS, ttl=900)
        self._count_forgotten()
        # Untrusted spans are tallied per batch and counted once (a labelled increment costs ~3 us).
        self._untrusted: dict[str, int] = {}
        self._untrusted_children: dict[str, object] = {}
        self.trust = SpanTrust(config.max_call_usd, config.max_span_clock_skew, self.engine.book_micro,
                               self._tally_untrusted)
        # With the in-process store and no velocity counters, a batch commits per segment: its
        # spans read and summed in one call (spend_read.py, native with the native codec), the
        # breaker and budget.state decided per segment (_commit_segments).
        self._by_segment = self.engine.store.sync and self.engine.breaker.velocity_window is None

    # -- spans ----------------------------------------------------------------------------
    def watched_keys(self) -> frozenset[str]:
        return self._markers | {"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "retry.attempt",
                                "workflow.id", "workflow.name", "owner.tenant", "owner.feature", POLICY_KEY,
                                RESERVATION_KEY, STATE_KEY, SPEND_TOTAL}

    def _tally_untrusted(self, reason: str, spans: int) -> None:
        self._untrusted[reason] = self._untrusted.get(reason, 0) + spans

    def _count_untrusted(self) -> None:
        if self._untrusted:
            children = self._untrusted_children
            for reason, spans in self._untrusted.items():
                child = children.get(reason)
                if child is None:  # made on first use, looked up once (labels() costs ~3 us)
                    child = children[reason] = self.metrics.untrusted_spans.labels(reason)
                child.inc(spans)
            self._untrusted.clear()

    def _finished(self, batch: ViewBatch) -> list[str]:
        """Workflows whose root span (no parent) is in this batch: finished, for the breaker's median."""
        if not self.config.breaker.workflow_median_multiple:
            return []
        spans = batch.spans_as_read()
        if type(spans) is not list and native_read_roots is not None:  # the records, no view made
            return native_read_roots(spans, batch.indices(), "workflow.id")
        return read_roots(spans, batch.indices(), "workflow.id")

    def _calls(self, batch: ViewBatch) -> list[int] | range:
        """The batch's spans in visiting order, narrowed to model calls (a marker key) on the
        lazy list (spans_having: no view made for the others); every span of a list of views
        (the readers' own skip is that test)."""
        spans = batch.view.spans
        return batch.indices() if type(spans) is list else spans_having(spans, batch.indices(), self._markers)

    def _finish(self, workflows: list[str]) -> None:
        if workflows:
            self.engine.breaker.finish_many(workflows)

    def _count_forgotten(self) -> None:
        """What the bounded tables forget, read at scrape time (costctx_table_forgotten_total)."""
        cm = self.component_metrics()
        committed = self._committed
        cm.forgotten("budget_commit_once", "evicted", lambda: committed.evicted)
        cm.forgotten("budget_commit_once", "expired", lambda: committed.expired)
        store = self.engine.store
        if hasattr(store, "evicted_total"):  # the memory store (Redis expires keys itself)
            cm.forgotten("budget_store", "evicted", lambda: store.evicted_total)

    def process_view(self, batch: ViewBatch) -> ViewBatch | None:
        if self._by_segment and self._process_by_segment(batch):
            return batch
        view = batch.view
        finished = self._finished(batch)
        now = time.time()
        store = self.engine.store
        sync = store.sync
        trust = self.trust
        committed = self._committed
        markers = self._markers
        spans = view.spans
        skew = trust.max_clock_skew
        lo, hi, cap = now - skew, now + skew, trust.cap_micro
        groups: dict[tuple, SpendGroup] = {}
        # per model-call span, in batch order: (index, group, cost micro, tokens, start ms, end s, reservation id)
        records: list[tuple[int, SpendGroup, int, int, int, float, str | None]] = []
        keys: list[bytes | None] = []  # each record's resend key (the shared store commits it once)
        seen, expiry = committed.open_batch()
        maxsize = committed.maxsize
        duplicates = skewed = 0
        for index in self._calls(batch):
            span = spans[index]
            attrs = span.attrs
            if attrs.keys().isdisjoint(markers):
                continue  # not a model call: the common case, one set test
            values = tuple(map(attrs.get, _READ))  # one C loop for the nine reads
            # The envelope fields the counters are keyed by: one Context and policy per group.
            fields = values[:5]
            try:
                group = groups.get(fields)
            except TypeError:  # an array or kvlist value: a field the counters read as ""
                fields = tuple(v if type(v) is str or v is None or v is EMPTY else _OTHER for v in fields)
                group = groups.get(fields)
            if group is None:
                group = groups[fields] = self._group(fields)
            cost, tokens_in, tokens_out, rid = values[5:]
            kind = type(cost)
            cost = cost if kind is float else float(cost) if kind is int else 0.0
            tokens = (tokens_in if type(tokens_in) is int else 0) + (tokens_out if type(tokens_out) is int else 0)
            # A finite cost in (0, MAX_USD) is what spent_micro rounds directly; it handles the rest.
            micro = round(cost * MICRO) if 0.0 < cost < MAX_USD else spent_micro(cost)
            if not 0 <= tokens <= MAX_TOKENS:
                tokens = spent_tokens(tokens)
            end_ns, start_ns = span.end, span.start
            at = end_ns / 1e9 if end_ns else now
            start_ms = start_ns // 1_000_000 if start_ns else int(now * 1000)
            rid = (rid if type(rid) is str else "") or None
            # SpanTrust.vet, its clock rule inline (spans stamped by a skewed clock are common)
            if not lo <= at <= hi:
                at = lo if at < lo else hi
                if not skewed:  # its place among the reasons, as vet would tally it (metric order)
                    self._tally_untrusted(CLOCK_SKEW, 0)
                skewed += 1
            if rid is None and micro <= cap:
                at_ms = int(at * 1000)
                start_ms = min(max(start_ms, at_ms - 3_600_000), at_ms)
            else:
                spend = trust.vet(span, SpanSpend(group.ctx, micro, tokens, 1, start_ms, at, rid), now)
                micro, start_ms, at, rid = spend.cost_micro, spend.start_ms, spend.at, spend.reservation_id
            trace_id, span_id = span.trace_id, span.span_id  # span_identity inline
            if len(trace_id) == 16 and len(span_id) == 8 and trace_id != _ZERO_TRACE and span_id != _ZERO_SPAN:
                # In this process the hash of a tuple tells a resend as well as the digest the shared
                # store keys on, in ~90 bytes per remembered span instead of ~340 (budget/seen.py).
                span_key = (hash((trace_id, span_id, micro, tokens, rid)) if sync
                            else resend_digest(trace_id + span_id, micro, tokens, rid))
                if span_key in seen:
                    duplicates += 1
                    continue
                if len(seen) >= maxsize:
                    committed.make_room()
                seen[span_key] = expiry
                keys.append(None if sync else span_key)  # type: ignore[arg-type]
            else:
                keys.append(None)  # not valid ids: such spans cannot be told apart
            records.append((index, group, micro, tokens, start_ms, at, rid))
        if duplicates:
            self.metrics.duplicate_spans.inc(duplicates)
        if skewed:
            self._tally_untrusted(CLOCK_SKEW, skewed)
        self._count_untrusted()
        if not records:
            self._finish(finished)
            return batch
        if sync:
            self._commit_here(batch, records, now)
            self._finish(finished)  # after their spans were compared as running
            return batch
        spends = []
        for (_, group, micro, tokens, start_ms, at, rid), span_key in zip(records, keys, strict=True):
            spend = SpanSpend(group.ctx, micro, tokens, 1, start_ms, at, rid)
            spend.span_key = span_key  # committed once across sidecars (shared store), content included
            spends.append(spend)
        indices = [record[0] for record in records]
        ops, wheres = self.engine.plan_commits(spends)
        task = asyncio.get_running_loop().create_task(
            self._commit_remote(batch, indices, spends, ops, wheres, finished))
        self._held[id(batch)] = batch
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)
        return None

    def _process_by_segment(self, batch: ViewBatch) -> bool:
        """The batch read and summed in one call, then committed per segment; False (nothing
        changed) when some span needs the per-span path."""
        now = time.time()
        trust = self.trust
        committed = self._committed
        seen, expiry = committed.open_batch()
        read = native_read_spend if native_read_spend is not None and batch.codec.name == "native" else read_spend
        spans = batch.spans_as_read()
        # On the lazy list the model calls alone are read, the finished workflows from columns.
        lazy = type(spans) is not list
        out = read(spans, self._calls(batch), self._markers, READ_KEYS, now, trust.max_clock_skew,
                   trust.cap_micro, seen, expiry, committed.maxsize, committed.make_room,
                   bool(self.config.breaker.workflow_median_multiple) and not lazy)
        if out is None:
            return False
        segments, releases, finished, duplicates, skewed = out
        if lazy:
            finished = self._finished(batch)
        if duplicates:
            self.metrics.duplicate_spans.inc(duplicates)
        if skewed:
            self._tally_untrusted(CLOCK_SKEW, skewed)
        self._count_untrusted()
        if segments:
            self._commit_segments(batch, segments, releases, now)
        self._finish(finished)  # after their spans were compared as running
        return True

    def _commit_segments(self, batch: ViewBatch, read: list[tuple], releases: list[tuple[str, int]],
                         now: float) -> None:
        """The batch's segments (spend_read.read_spend) committed into the in-process store (no
        velocity counters): each counter's sum added at once (MemoryStore.apply_sums); the
        breaker's running totals from the workflow counter as it stood after each workflow's
        last span; budget.state per segment where a policy applies, per span only for a workflow
        some group may trip. With no policy configured (the default) and no hot workflow nothing
        after the sums reads a segment again: the fast path."""
        engine = self.engine
        breaker = engine.breaker
        workflow_ttl = int(engine.config.workflow_ttl * 1000)
        policies = bool(engine.config.policies)
        groups: dict[tuple, list] = {}  # fields -> its group (the layout: _policy_of)
        # (tenant, feature, hour) -> [their window keys with TTLs, the batch's cost on them]: a
        # batch's segments name a few tenants and features, so each set of keys is looked up
        # once and its counters get its summed cost once, after the loop.
        owners: dict[tuple, list] = {}
        # per segment, as `read` orders them: (its group, its windows)
        placed: list[tuple[list, tuple]] = []
        # key -> [ttl ms, usd] (a window) or [ttl ms, usd, tokens, steps, start] (a workflow),
        # in the order the segments first name them (apply_sums' order: the store's touch order)
        sums: dict[str, list[int]] = {}
        # workflow.id -> (its last span's position, that span's Context, its counter key)
        last_of: dict[str, tuple[int, Context, str]] = {}
        spans = 0
        for fields, at, cost, tokens, steps, start, last, _, _ in read:
            group = groups.get(fields)
            if group is None:  # most segments of a batch have fields of their own: made inline
                # Not the cached _workflow_key: a workflow is new to most batches, so the cache
                # would miss (and evict) once per segment, at 3x the cost of formatting it.
                workflow_id, workflow_name, tenant, feature, policy_id = fields
                ctx = Context(workflow_id or "", workflow_name or "", tenant or "", feature or "", policy_id or "", 0)
                group = groups[fields] = [ctx, None, workflow_key(workflow_id) if workflow_id else "", ctx.tenant,
                                          ctx.feature, None, False]
                if policies:
                    self._policy_of(group, fields)
            else:
                ctx = group[0]
            key, tenant, feature = group[2], group[3], group[4]
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
            if tenant or feature:
                owner = (tenant, feature, int(at // 3600))
                owned = owners.get(owner)
                if owned is None:
                    windows = _windows_at(tenant, feature, owner[2])
                    owners[owner] = [windows, cost]
                    for window, ttl in windows:  # its place in the order: named here first
                        if window not in sums:
                            sums[window] = [ttl, 0]
                else:
                    windows = owned[0]
                    owned[1] += cost
            else:
                windows = ()
            placed.append((group, windows))
            spans += steps
        for windows, cost in owners.values():
            for window, _ in windows:
                sums[window][1] += cost
        # the breaker's medians, in the order the groups came (as one call per group made them)
        for group, typical in zip(groups.values(), breaker.typical_many([group[0] for group in groups.values()]),
                                  strict=True):
            group[1] = typical
        bindings = [(rid, (placed[n][0][0].workflow_id, placed[n][0][0].tenant)) for rid, n in releases]
        outcomes, after = engine.store.apply_sums(bindings, sums)
        engine.count_commit(outcomes, spans)
        # The workflows some group may trip: its spend after its last span, the most any of its
        # spans saw, over the median rule's bound (typical is None with the rule off).
        multiple = breaker.config.workflow_median_multiple
        hot: set[str] = set()
        for (group, _), segment in zip(placed, read, strict=True):
            typical = group[1]
            if typical is not None and typical > 0 and group[2]:
                key = group[2]
                if after[key][_USD] - sums[key][1] + segment[7] > multiple * typical:
                    hot.add(group[0].workflow_id)
        trips = self._states_and_trips(batch, read, placed, sums, after, hot, now) if hot or policies else ()
        # as of each workflow's last span, in the order of those spans
        breaker.note_running_many([(ctx, after[key][_USD]) for _, ctx, key in sorted(last_of.values(),
                                                                                    key=itemgetter(0))], now)
        for key, tenant in trips:
            engine.store.trip_now(key, self.config.breaker.cooldown, tenant)

    def _states_and_trips(self, batch: ViewBatch, read: list[tuple], placed: list[tuple[list, tuple]],
                          sums: dict[str, list[int]], after: dict[str, dict[str, int]], hot: set[str],
                          now: float) -> list:
        """budget.state of the segments a policy applies to, decided per segment where no trip
        in this batch can reach them (only a hot workflow's breaker key trips here), per span
        with the median rule for the hot workflows' spans; their (policy, state) counted once.
        -> the trips, (breaker key, tenant)."""
        # per segment: (group, workflow key, last position, through, spans, windows)
        entries = [(group, group[2], segment[6], segment[7], segment[8], windows)
                   for (group, windows), segment in zip(placed, read, strict=True)]
        # (policy, state) -> [spans, the first one's position]: counted once per batch, in the
        # order the per-span path meets them (the order their series appear in)
        states: dict[tuple[str, str], list[int]] = {}
        # Each counter's running values, built only when some span's state or trip reads them.
        running: RunningAt | None = None
        for entry in entries:
            group = entry[0]
            if group[5] is not None and not (entry[1] and group[0].workflow_id in hot):
                if running is None:
                    running = RunningAt(entries, sums, after)
                self._segment_states(batch, entry, running, states, now)
        trips = []
        if hot:
            running = running if running is not None else RunningAt(entries, sums, after)
            trips = self._trips_per_span(batch, entries, hot, running, states, now)
        if states:
            self.engine.count_states({pair: tally[0] for pair, tally in sorted(states.items(),
                                                                                key=lambda item: item[1][1])})
        return trips

    def _segment_states(self, batch: ViewBatch, entry: tuple, running: RunningAt, states: dict,
                        now: float) -> None:
        """budget.state of a segment's spans: each counter only grows within the segment, so its
        state after the first span equals the one after the last only when every span has it."""
        group, key, _, _, packed, windows = entry
        ctx, policy, stamp_policy = group[0], group[5], group[6]
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
            if stamp_policy:
                batch.set_many(indices, POLICY_KEY, policy.id)
            batch.set_many(indices, STATE_KEY, first)
            return
        for i in range(0, len(spans), 4):  # it changes within the segment (a limit passed midway)
            state = state_of(policy, ctx, where, running.values(key, windows, spans[i]), now)
            self._stamp_state(batch, spans[i + 3], spans[i], group, state, states)

    @staticmethod
    def _stamp_state(batch: ViewBatch, index: int, position: int, group: list, state: str,
                     states: dict) -> None:
        policy_id = group[5].id
        tally = states.get((policy_id, state))
        if tally is None:
            states[(policy_id, state)] = [1, position]
        else:
            tally[0] += 1
            tally[1] = min(tally[1], position)
        if group[6]:
            batch.set(index, POLICY_KEY, policy_id)
        batch.set(index, STATE_KEY, state)

    def _trips_per_span(self, batch: ViewBatch, entries: list, hot: set[str], running: RunningAt, states: dict,
                        now: float) -> list:
        """The median rule per span, in batch order, for the workflows some group may trip (each
        span's running spend from the counter's value before the batch), and their spans'
        budget.state right after (a trip here is open for the spans after it)."""
        events = []  # (position, index in the view, entry)
        for entry in entries:
            if entry[1] and entry[0][0].workflow_id in hot:
                spans = array("q", entry[4])
                events += [(spans[i], spans[i + 3], entry) for i in range(0, len(spans), 4)]
        events.sort(key=lambda event: event[0])
        engine = self.engine
        observe = engine.breaker.observe_values
        trips = []
        for position, index, entry in events:
            group, key, windows = entry[0], entry[1], entry[5]
            ctx, typical, policy = group[0], group[1], group[5]
            if typical is not None:
                spent = running.value(key, USD, position)
                # `at` is read only with velocity counters (none here)
                observed = observe(ctx, now, spent, None, typical, now)
                trips += [(breaker_key, ctx.tenant) for _, breaker_key, _ in observed]
            if policy is not None:
                where = _where(True, bool(ctx.tenant), bool(ctx.feature), False)
                state = engine.state_of(policy, ctx, where, running.values(key, windows, position), now)
                self._stamp_state(batch, index, position, group, state, states)
        return trips

    def _policy_of(self, group: list, fields: tuple) -> None:
        """A segment group's policy, with policies configured: the one its fields match, and
        whether its spans get its policy.id (they carry none). A group is [Context, the
        breaker's typical spend (set once the batch's groups are known: Breaker.typical_many),
        workflow counter key, tenant, feature, policy or None, stamp policy.id]."""
        ctx = group[0]
        group[5] = self.engine.policies.match(ctx.policy_id, ctx.workflow_name)
        group[6] = fields[4] is None or fields[4] is EMPTY or fields[4] == ""

    def _group(self, fields: tuple) -> SpendGroup:
        workflow_id, workflow_name, tenant, feature, policy_id = (v if type(v) is str else "" for v in fields)
        # retry_attempt is left 0: nothing a commit does reads it (only a check does).
        ctx = Context(workflow_id, workflow_name, tenant, feature, policy_id, 0)
        policy = self.engine.policies.match(policy_id, workflow_name)
        stamp_policy = fields[4] is None or fields[4] is EMPTY or fields[4] == ""
        velocity = bool(self.engine.breaker.velocity_window and tenant)
        return SpendGroup(ctx, policy, stamp_policy, self.engine.breaker.typical(ctx), velocity)

    def _commit_here(self, batch: ViewBatch, records: list, now: float) -> None:
        """The memory store: the batch's amounts summed per counter and added at once; each
        span's breaker check and state from the counters as they stood right after it."""
        engine = self.engine
        config = engine.config
        velocity_window = engine.breaker.velocity_window
        releases = []
        segments: list[Segment] = []
        placed = []
        for _, group, micro, tokens, start_ms, at, rid in records:
            segment = group.segment(at, config.workflow_ttl, velocity_window, segments)
            segment.add(micro, tokens, start_ms)
            placed.append(segment)
            if rid is not None:
                releases.append((rid, (group.ctx.workflow_id, group.ctx.tenant)))
        adds = key_adds(segments)
        outcomes, after = engine.store.apply_now(releases, adds)
        engine.count_commit(outcomes, len(records))
        running = RunningValues(adds, after)
        breaker = engine.breaker
        observe = breaker.observe_values
        trips = []
        # (policy, state) -> [spans, the first one's position]: counted once per batch, in the
        # order the per-span path meets them (the order their series appear in)
        states: dict[tuple[str, str], list[int]] = {}
        noted: dict[str, tuple[Context, int]] = {}  # workflow -> (context, spend), last span last
        # Every counter's running value when some span reads more than its workflow's spend (a
        # policy's limits, the tenant's velocity): a tenant or feature counter is shared by groups.
        every = any(group.policy is not None or group.velocity for _, group, *_ in records)
        for (index, group, micro, tokens, _, at, _), segment in zip(records, placed, strict=True):
            ctx, policy = group.ctx, group.policy
            velocity = None
            if every:
                values = running.after_span(segment, micro, tokens)
                where = segment.where
                spent = values[where["workflow.cost_usd"]] if segment.workflow_key else None
                if "velocity.current" in where:
                    velocity = (values[where["velocity.current"]], values[where["velocity.previous"]])
            elif segment.workflow_key:
                spent = running.workflow_cost(segment, micro)
            else:
                spent = None
            if spent is not None:  # the breaker's running total: as of the workflow's last span
                noted.pop(ctx.workflow_id, None)
                noted[ctx.workflow_id] = (ctx, spent)
            if velocity is not None or (group.typical is not None and spent is not None):
                trips += [(key, ctx.tenant) for _, key, _ in observe(ctx, at, spent, velocity, group.typical, now)]
            if policy is not None:
                state = engine.state_of(policy, ctx, where, values, now)
                states[(policy.id, state)] = states.get((policy.id, state), 0) + 1
                if group.stamp_policy:
                    batch.set(index, POLICY_KEY, policy.id)
                batch.set(index, STATE_KEY, state)
        engine.count_states(states)
        for ctx, spent in noted.values():
            breaker.note_running(ctx, spent, now)
        for key, tenant in trips:
            engine.store.trip_now(key, self.config.breaker.cooldown, tenant)

    async def _commit_remote(self, batch, indices, spends, ops, wheres, finished=()) -> None:
        store = self.engine.store
        try:
            results = await store.commit(ops)
            verdicts, trips = self.engine.verdicts(spends, wheres, results)
            for _, key, tenant in trips:
                await store.trip(key, self.config.breaker.cooldown, tenant)
        except StoreUnavailable as exc:
            self.metrics.store_errors.labels("commit", "unstamped").inc()
            self.log.warning(
                "budget store unreachable; %d spans forwarded without their spend counted: %s", len(spends), exc
            )
            verdicts = [SpanVerdict(self._policy_id(s.ctx), None) for s in spends]
        except Exception:
            # A bug here must not lose spans: forward the batch unstamped, as the pipeline does.
            self.log.exception("budget commit failed; forwarding the batch unstamped")
            self.host.metrics.processor_errors.labels(self.name).inc()
            verdicts = [SpanVerdict(None, None) for _ in spends]
        self._finish(list(finished))
        if self._held.pop(id(batch), None) is None:
            return  # released unstamped by shutdown meanwhile
        self._stamp(batch, indices, verdicts)
        _stamp_shared_totals(batch, indices, verdicts)
        self.emit(batch)

    def _policy_id(self, ctx: Context) -> str | None:
        policy = self.engine.policies.match(ctx.policy_id, ctx.workflow_name)
        return policy.id if policy else None

    @staticmethod
    def _stamp(batch: ViewBatch, indices: list[int], verdicts: list[SpanVerdict]) -> None:
        spans = batch.view.spans
        for index, verdict in zip(indices, verdicts, strict=True):
            if verdict.policy_id:
                policy = spans[index].attrs.get(POLICY_KEY)
                if policy is None or policy is EMPTY or policy == "":
                    batch.set(index, POLICY_KEY, verdict.policy_id)
            if verdict.state:
                batch.set(index, STATE_KEY, verdict.state)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.engine.store.start()

    def tick(self, now: float) -> None:
        self.engine.store.tick(now)
        self.engine.count_expired()
        self.engine.breaker.finish_idle(time.time())

    def shutdown(self) -> None:
        held, self._held = self._held, {}
        for batch in held.values():
            self.emit(batch)  # unstamped rather than lost

    async def close(self) -> None:
        tasks = list(self._commits)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.engine.store.close()


def _stamp_shared_totals(batch: ViewBatch, indices: list[int], verdicts: list[SpanVerdict]) -> None:
    """workflow.spend_total_usd from the shared counter: the workflow's total over every
    sidecar (the price processor stamped this sidecar's share), at the counters' micro-USD."""
    for index, verdict in zip(indices, verdicts, strict=True):
        if verdict.workflow_micro is not None:
            batch.set(index, SPEND_TOTAL, verdict.workflow_micro / MICRO)
