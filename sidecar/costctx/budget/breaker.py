"""The circuit breaker: a tenant spending too fast, or one workflow far above the typical
cost of its `workflow.name`, is blocked for a cool-down.

Observed from the committed spans; the trip itself is a flag in the store (with the
cool-down as its TTL), so every sidecar sharing the store blocks it.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Iterable

from costctx.budget import counters as c
from costctx.budget.config import BreakerConfig
from costctx.budget.metrics import BudgetMetrics
from costctx.budget.policy import Context, SpanSpend
from costctx.budget.store import CommitResult

log = logging.getLogger("costctx.budget")

# workflow.name comes from spans, so its cardinality is the client's: keep the rolling
# medians of this many names (the least recently seen is forgotten first).
MAX_WORKFLOW_NAMES = 10_000
# Workflows in progress remembered (the oldest is taken as finished past this).
MAX_RUNNING = 100_000


class RecentCosts:
    """One workflow.name's recent workflows: their spend in arrival order, and the same
    values kept sorted, so the median of the others is two index reads, not a sort."""

    __slots__ = ("by_workflow", "ordered")

    def __init__(self) -> None:
        self.by_workflow: OrderedDict[str, int] = OrderedDict()
        self.ordered: list[int] = []

    def median_without(self, workflow_id: str, min_samples: int) -> int | float | None:
        """statistics.median of every workflow's spend but this one's; None under min_samples."""
        ordered = self.ordered
        own = self.by_workflow.get(workflow_id)
        skip = bisect_left(ordered, own) if own is not None else len(ordered)  # one copy of own left out
        n = len(ordered) - (own is not None)
        if n < min_samples or n == 0:
            return None
        i = n // 2
        upper = ordered[i] if i < skip else ordered[i + 1]  # index i of the others
        if n % 2 == 1:
            return upper
        lower = ordered[i - 1] if i - 1 < skip else ordered[i]  # index i - 1 of the others
        return (lower + upper) / 2  # as statistics.median: the mean of the middle two

    def record(self, workflow_id: str, spent: int, window: int) -> None:
        by_workflow, ordered = self.by_workflow, self.ordered
        old = by_workflow.get(workflow_id)
        if old is not None:
            del ordered[bisect_left(ordered, old)]
        by_workflow[workflow_id] = spent
        by_workflow.move_to_end(workflow_id)
        insort(ordered, spent)
        while len(by_workflow) > window:
            _, value = by_workflow.popitem(last=False)
            del ordered[bisect_left(ordered, value)]


def breaker_keys(ctx: Context) -> list[str]:
    keys = [c.tenant_breaker_key(ctx.tenant)] if ctx.tenant else []
    if ctx.workflow_id:
        keys.append(c.workflow_breaker_key(ctx.workflow_id))
    return keys


class Breaker:
    def __init__(self, config: BreakerConfig, metrics: BudgetMetrics) -> None:
        self.config = config
        self.metrics = metrics
        # The window of the tenant spend-velocity counters the commits keep (None: off).
        self.velocity_window = config.velocity_window if config.tenant_usd_per_window else None
        # workflow.name -> recent workflows' spend (micro-USD), for the rolling median
        self._recent: OrderedDict[str, RecentCosts] = OrderedDict()
        # breaker keys this sidecar tripped -> until (epoch s), to stamp `tripped` without a read
        self._tripped_until: dict[str, float] = {}
        # Workflows in progress: id -> (workflow.name, spend so far, last seen), least recently
        # seen first. Only finished workflows make the median: a running total is partial,
        # and 20 identical workflows in progress must not look like outliers of each other.
        self._running: OrderedDict[str, tuple[str, int, float]] = OrderedDict()

    def _recent_of(self, workflow_name: str) -> RecentCosts:
        recent = self._recent.get(workflow_name)
        if recent is None:
            recent = self._recent[workflow_name] = RecentCosts()
            if len(self._recent) > MAX_WORKFLOW_NAMES:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(workflow_name)
        return recent

    # -- which workflows are finished ------------------------------------------------------
    def _note_running(self, workflow_id: str, workflow_name: str, spent: int, now: float) -> None:
        running = self._running
        running[workflow_id] = (workflow_name, spent, now)
        running.move_to_end(workflow_id)
        while len(running) > MAX_RUNNING:
            oldest = next(iter(running))
            self.finish(oldest)

    def finish(self, workflow_id: str) -> None:
        """The workflow is finished (its root span arrived, or it went idle): its total joins
        the median of its workflow.name."""
        self.finish_many((workflow_id,))

    def finish_many(self, workflow_ids: Iterable[str]) -> None:
        """`finish` for each of a batch's finished workflows, in order, in one call (the
        lookups bound once: a batch finishes ~10)."""
        pop = self._running.pop
        recents = self._recent
        window = self.config.median_window
        for workflow_id in workflow_ids:
            entry = pop(workflow_id, None)
            if entry is None:
                continue
            # _recent_of and RecentCosts.record inline: ~10 workflows finish per batch
            recent = recents.get(entry[0])
            if recent is None:
                recent = self._recent_of(entry[0])
            else:
                recents.move_to_end(entry[0])
            by_workflow, ordered = recent.by_workflow, recent.ordered
            old = by_workflow.get(workflow_id)
            if old is not None:
                del ordered[bisect_left(ordered, old)]
            spent = by_workflow[workflow_id] = entry[1]
            by_workflow.move_to_end(workflow_id)
            insort(ordered, spent)
            while len(by_workflow) > window:
                _, value = by_workflow.popitem(last=False)
                del ordered[bisect_left(ordered, value)]

    def finish_idle(self, now: float) -> None:
        """Workflows with no spend for `workflow_idle` are taken as finished (a root that never came)."""
        idle = self.config.workflow_idle
        running = self._running
        while running:
            workflow_id = next(iter(running))
            if now - running[workflow_id][2] < idle:
                return
            self.finish(workflow_id)

    def open_here(self, ctx: Context, now: float) -> bool:
        if not self._tripped_until:
            return False  # nothing tripped here: skip building the keys
        return any(self._tripped_until.get(key, 0.0) > now for key in breaker_keys(ctx))

    def observe(self, spend: SpanSpend, where: dict[str, int], result: CommitResult, now: float
                ) -> list[tuple[str, str, str]]:
        """After a span's commit: the trips it causes, (kind, breaker key, why), each once per cool-down."""
        values = result.values
        ctx = spend.ctx
        velocity = None
        if "velocity.current" in where:
            velocity = (values[where["velocity.current"]], values[where["velocity.previous"]])
        spent = values[where["workflow.cost_usd"]] if "workflow.cost_usd" in where else None
        trips = self.observe_values(ctx, spend.at, spent, velocity, self.typical(ctx), now)
        if spent is not None:
            self.note_running(ctx, spent, now)
        return trips

    def typical(self, ctx: Context) -> int | float | None:
        """The median spend of the other finished workflows of ctx's workflow.name (None: not
        enough of them, or the median rule is off); fixed while one batch is observed."""
        if not (self.config.workflow_median_multiple and ctx.workflow_id and ctx.workflow_name):
            return None
        # Kept sorted as workflows finish: O(log n), not a sort of up to median_window values.
        return self._recent_of(ctx.workflow_name).median_without(ctx.workflow_id, self.config.min_samples)

    def typical_many(self, ctxs: list[Context]) -> list[int | float | None]:
        """`typical` of each Context, in order, in one call (a batch's ~20 groups): the same
        medians, names made and recency touches. A workflow not among its name's finished ones
        (most: still running) is compared with all of them: that median is found once per
        name per call (the finished ones do not change meanwhile)."""
        config = self.config
        if not config.workflow_median_multiple:
            return [None] * len(ctxs)
        min_samples = config.min_samples
        recents = self._recent
        move_to_end = recents.move_to_end
        # the median of all of a name's workflows, by its RecentCosts (a name forgotten and
        # made again meanwhile is another object: never its old median)
        whole: dict[RecentCosts, int | float | None] = {}
        out: list[int | float | None] = []
        for ctx in ctxs:
            workflow_id, name = ctx.workflow_id, ctx.workflow_name
            if not (workflow_id and name):
                out.append(None)
                continue
            recent = recents.get(name)  # _recent_of inline
            if recent is None:
                recent = self._recent_of(name)
            else:
                move_to_end(name)
            if workflow_id in recent.by_workflow:
                out.append(recent.median_without(workflow_id, min_samples))
            elif recent in whole:
                out.append(whole[recent])
            else:
                out.append(whole.setdefault(recent, recent.median_without(workflow_id, min_samples)))
        return out

    def note_running(self, ctx: Context, spent: int, now: float) -> None:
        """The workflow's spend so far, after a batch's spans of it were observed."""
        if self.config.workflow_median_multiple and ctx.workflow_id and ctx.workflow_name:
            self._note_running(ctx.workflow_id, ctx.workflow_name, spent, now)

    def note_running_many(self, spends: Iterable[tuple[Context, int]], now: float) -> None:
        """`note_running` for each (Context, spend so far), in order, in one call (a batch notes
        each of its ~10 workflows)."""
        if not self.config.workflow_median_multiple:
            return
        running = self._running
        move_to_end = running.move_to_end
        for ctx, spent in spends:
            workflow_id, workflow_name = ctx.workflow_id, ctx.workflow_name
            if workflow_id and workflow_name:
                running[workflow_id] = (workflow_name, spent, now)  # _note_running inline
                move_to_end(workflow_id)
                while len(running) > MAX_RUNNING:
                    self.finish(next(iter(running)))

    def observe_values(self, ctx: Context, at: float, spent: int | None, velocity: tuple[int, int] | None,
                       typical: int | float | None, now: float) -> list[tuple[str, str, str]]:
        """The trips after one span: `spent` the workflow's spend after it, `velocity` the tenant's
        (current, previous) bucket, `typical` from `typical(ctx)`."""
        breaker = self.config
        trips = []
        if breaker.tenant_usd_per_window and velocity is not None:
            window = breaker.velocity_window
            current, previous = velocity
            # Sliding-window estimate from two fixed buckets: the previous one weighted
            # by how much of it still lies inside the window.
            overlap = 1.0 - (at % window) / window
            estimate = current + previous * overlap
            if estimate > c.usd_to_micro(breaker.tenant_usd_per_window):
                trips.append(("tenant_velocity", c.tenant_breaker_key(ctx.tenant),
                              f"tenant {ctx.tenant} spent ${estimate / c.MICRO:.4f} in {window:g}s"))
        if typical is not None and typical > 0 and spent is not None \
                and spent > breaker.workflow_median_multiple * typical:  # type: ignore[operator]
            trips.append(("workflow_median", c.workflow_breaker_key(ctx.workflow_id),
                          f"workflow {ctx.workflow_id} ({ctx.workflow_name}) cost ${spent / c.MICRO:.4f}, "
                          f"over {breaker.workflow_median_multiple:g}x the median ${typical / c.MICRO:.4f}"))
        if not trips:
            return trips  # the common case: nothing to trip, nothing to forget
        fresh = []
        for kind, key, why in trips:
            if self._tripped_until.get(key, 0.0) > now:
                continue  # already open: trip once per cool-down
            self._tripped_until[key] = now + breaker.cooldown
            self.metrics.breaker_trips.labels(kind).inc()
            log.warning("budget circuit breaker tripped (%s): %s; blocking for %gs", kind, why, breaker.cooldown)
            fresh.append((kind, key, why))
        if len(self._tripped_until) > 10_000:
            self._tripped_until = {k: v for k, v in self._tripped_until.items() if v > now}
        return fresh

