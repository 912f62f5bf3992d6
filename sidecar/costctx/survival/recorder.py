"""The one place processors record each (hop, field, outcome), per ../shared/ENVELOPE.md.

The `envelope` processor (last in the traces pipeline) tallies each batch in one pass over
its spans and hands the tallies over here once per batch. This module keeps the running
totals behind /survival, /metrics and the optional OTLP metrics push:

- outcomes per (hop, context field), and the smallest `workflow.hop_depth` seen per hop
  (the matrix is ordered by it);
- per `workflow.name`, over LLM spans, how often each of the ten readiness checks held,
  before and after repair;
- spend (`cost.usd`, summed exactly as integer pico-USD) per workflow and spend dimensions, and the
  part of it whose `owner.tenant` was filled by repair (unknown without it).

Every label-like value (hop, workflow, tenant, ...) goes through a BoundedLabel, so memory
and metric cardinality stay bounded whatever clients send.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from costctx.envelope import ENVELOPE, Envelope, ReadinessCheck
from costctx.survival.bounded import DEFAULT_MAX_LABEL_VALUES, OTHER, BoundedLabel

OUTCOMES = ("present", "renamed", "inherited", "missing", "conflict", "settled")
# Outcome codes, as the envelope processor writes them into a span's signature tuple.
PRESENT, RENAMED, INHERITED, MISSING, CONFLICT = range(5)
SURVIVED_BEFORE_REPAIR = frozenset((PRESENT, RENAMED))
SURVIVED_AFTER_REPAIR = frozenset((PRESENT, RENAMED, INHERITED))

DEFAULT_SPEND_DIMENSIONS = ("owner.tenant", "owner.feature")
DEFAULT_READINESS_WINDOW = 600.0
# The readiness window is kept as this many buckets, so old spans age out step by step.
READINESS_BUCKETS = 10
SPEND_ROWS_PER_LABEL_VALUE = 10
# Readiness verdicts kept per distinct (signature, usage) pair; bounds a hostile stream.
MAX_CACHED_VERDICTS = 4096
# Batch tallies are kept by signature and expanded into per-field counts when read (or past
# this many distinct keys): a signature recurs batch after batch, its expansion is 11 updates.
MAX_UNEXPANDED = 4096
TENANT_KEY = "owner.tenant"
POLICY_ID = "policy.id"
NO_POLICY = ("no budget policy is configured here, so only the application can set it "
             "(add processors.budget.policies, or ignore this check if you keep no budgets)")

# A span's signature: one outcome code per context field, in ENVELOPE.context_keys order
# (the envelope processor gives bytes, whose hash is cached; a tuple of ints reads the same).
Signature = tuple[int, ...] | bytes
# (hop, hop depth or None, signature) -> spans (a dict or a Counter)
SpanTally = dict
# (workflow.name or None, signature, usage presence tuple) -> LLM spans (a dict or a Counter)
LlmTally = dict
# (workflow.name or None, spend dimension values, owner.tenant repaired) -> [pico-USD, spans]
SpendTally = dict


def dimension_label(key: str) -> str:
    """A spend dimension's label name: `owner.tenant` -> `tenant`, `workflow.name` -> `workflow_name`."""
    if key.startswith("owner."):
        return key.removeprefix("owner.")
    return key.replace(".", "_")


def readiness_extra_keys(envelope: Envelope) -> tuple[str, ...]:
    """Keys the readiness checks read that are not context fields (usage and cost keys)."""
    context = set(envelope.context_keys)
    keys: list[str] = []
    for check in envelope.readiness_checks:
        for key in (*check.all_of, *check.any_of):
            if key not in context and key not in keys:
                keys.append(key)
    return tuple(keys)


@dataclass
class WorkflowReadiness:
    """Per workflow.name, over its LLM spans: how often each check held."""

    llm_spans: int = 0
    passed_after: Counter[int] = field(default_factory=Counter)  # check id -> spans
    passed_before: Counter[int] = field(default_factory=Counter)
    absent: Counter[str] = field(default_factory=Counter)  # field key -> spans without it after repair


@dataclass
class SpendRow:
    # Integer pico-USD (10^-12 dollars), the price processor's unit: sums stay exact.
    total: int = 0
    recovered: int = 0  # spans whose owner.tenant was repaired
    spans: int = 0
    settled: int = 0  # of `total`: spend moved here from another row when its context came late


@dataclass
class SurvivalSnapshot:
    """A consistent copy of the totals, for reports and metric scrapes."""

    fields: tuple[str, ...]
    hop_spans: dict[str, int]
    hop_depth: dict[str, int]
    counts: dict[tuple[str, str, str], int]
    readiness: dict[str, WorkflowReadiness]
    spend: dict[tuple[str, tuple[str, ...]], SpendRow]
    spend_dimensions: tuple[str, ...]
    thresholds: dict[str, float]
    readiness_window: float
    checks: tuple[ReadinessCheck, ...]
    # field -> why nothing here stamps it (said in a verdict that fails on it)
    unstamped: dict[str, str] = field(default_factory=dict)
    pending_spend: int = 0  # pico-USD forwarded without its context and not settled yet


class _CheckEvaluator:
    """Evaluates the readiness checks on a (signature, usage) pair, before and after repair."""

    def __init__(self, envelope: Envelope, extra_keys: tuple[str, ...]) -> None:
        self.checks = envelope.readiness_checks
        context_index = {key: i for i, key in enumerate(envelope.context_keys)}
        extra_index = {key: i for i, key in enumerate(extra_keys)}
        self._timestamp_index = len(extra_keys)  # the usage tuple ends with "timestamps valid"
        self._context_index = context_index
        self._extra_index = extra_index

    def field_present(self, key: str, sig: Signature, usage: tuple[bool, ...], after: bool) -> bool:
        i = self._context_index.get(key)
        if i is not None:
            return sig[i] in (SURVIVED_AFTER_REPAIR if after else SURVIVED_BEFORE_REPAIR)
        return usage[self._extra_index[key]]

    def holds(self, check: ReadinessCheck, sig: Signature, usage: tuple[bool, ...], after: bool) -> bool:
        if check.otlp == "timestamps":
            return usage[self._timestamp_index]
        if check.otlp == "forwarded":
            # The span is at the last processor and goes to the exporters from here.
            return True
        if check.all_of and not all(self.field_present(k, sig, usage, after) for k in check.all_of):
            return False
        return not check.any_of or any(self.field_present(k, sig, usage, after) for k in check.any_of)

    def check_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for c in self.checks for k in (*c.all_of, *c.any_of)))


class SurvivalRecorder:
    """Running totals of field survival, readiness and spend. Updated once per batch."""

    def __init__(self, envelope: Envelope = ENVELOPE, max_label_values: int = DEFAULT_MAX_LABEL_VALUES) -> None:
        self.envelope = envelope
        self.fields = envelope.context_keys
        # Fields nothing here stamps: until a budget processor with a policy says otherwise,
        # policy.id comes only from the application, and a verdict failing on it says so.
        self.unstamped: dict[str, str] = {POLICY_ID: NO_POLICY}
        self.extra_keys = readiness_extra_keys(envelope)
        self.max_label_values = max_label_values
        # Distinct (workflow, spend dimensions) rows kept; later combinations go to `other`.
        self.max_spend_rows = max_label_values * SPEND_ROWS_PER_LABEL_VALUE
        self.spend_rows_overflowed = 0
        self._evaluator = _CheckEvaluator(envelope, self.extra_keys)
        self._check_keys = self._evaluator.check_keys()
        # (signature, usage) -> (check ids held after repair, held before, keys absent after)
        self._verdicts: dict[tuple[Signature, tuple[bool, ...]], tuple[tuple, tuple, tuple]] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Counter], None]] = []
        self._hops = BoundedLabel("hop", max_label_values)
        self._workflows = BoundedLabel("workflow", max_label_values)
        self.thresholds: dict[str, float] = dict(envelope.readiness_thresholds)
        # Monotonic seconds; tests replace it to age readiness buckets without sleeping.
        self.clock: Callable[[], float] = time.monotonic
        # (bucket number, workflow -> readiness, LLM spans by (workflow, signature, usage) not
        # yet expanded into it) for the recent window, oldest first.
        self._readiness_buckets: deque[tuple[int, dict[str, WorkflowReadiness], Counter]] = deque()
        self.configure()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        # (hop, signature) -> spans not yet expanded into _counts (see _expand)
        self._by_signature: Counter[tuple[str, Signature]] = Counter()
        self._hop_spans: Counter[str] = Counter()
        self._hop_depth: dict[str, int] = {}
        self._spend: dict[tuple[str, tuple[str, ...]], SpendRow] = {}
        # Set by the `settle` processor: the spend still waiting for its context (pico-USD).
        self.pending_spend: Callable[[], int] = lambda: 0

    def configure(
        self,
        spend_dimensions: Iterable[str] = DEFAULT_SPEND_DIMENSIONS,
        thresholds: dict[str, float] | None = None,
        readiness_window: float = DEFAULT_READINESS_WINDOW,
    ) -> None:
        """Set by the envelope processor from its config, before any span arrives.

        The verdict is over the last `readiness_window` seconds (0: since start), so a route
        whose missing field starts arriving passes once the old spans age out."""
        self.readiness_window = readiness_window
        self._bucket_seconds = readiness_window / READINESS_BUCKETS if readiness_window > 0 else 0.0
        self.spend_dimensions = tuple(spend_dimensions)
        self._dimension_labels = tuple(BoundedLabel(d, self.max_label_values) for d in self.spend_dimensions)
        self._spend_by_raw: dict[tuple, SpendRow] = {}  # new labels: see _record_spend
        if thresholds:
            self.thresholds = dict(thresholds)

    def add_listener(self, listener: Callable[[Counter], None]) -> None:
        """Called with each batch's (hop, field, outcome) Counter."""
        self._listeners.append(listener)

    # -- recording (the event loop thread, once per batch) ---------------------------------
    def record_many(self, outcomes: Counter[tuple[str, str, str]]) -> None:
        """Add (hop, field, outcome) counts directly (callers without span signatures)."""
        with self._lock:
            self._expand()
            for (hop, key, outcome), n in outcomes.items():
                self._counts[(self._hops(hop), key, outcome)] += n
        for listener in self._listeners:
            listener(outcomes)

    def record_batch(self, spans: SpanTally, llm: LlmTally | None = None, spend: SpendTally | None = None) -> None:
        """Add one batch's tallies, as the envelope processor builds them."""
        listeners = self._listeners
        # Spans of one hop and signature at several depths: expanded into fields once, when
        # the counts are read (or now, for listeners that want this batch's outcomes).
        per_signature = Counter() if listeners else self._by_signature
        # A batch names a few hops many times: each labelled once (a kept value stays kept, so
        # asking again would give the same label with no other effect; a folded one is asked
        # each time, as it counts an overflow each time).
        labels: dict = {}
        with self._lock:
            hops, hop_spans, hop_depth = self._hops, self._hop_spans, self._hop_depth
            # (`get` then store, not a Counter's `+=`: a new key would call its __missing__)
            spans_of, found = hop_spans.get, per_signature.get
            for (raw_hop, depth, sig), n in spans.items():
                hop = labels.get(raw_hop)
                if hop is None:
                    hop = hops(raw_hop)
                    if hop != OTHER:
                        labels[raw_hop] = hop
                hop_spans[hop] = spans_of(hop, 0) + n
                if depth is not None and depth < hop_depth.get(hop, depth + 1):
                    hop_depth[hop] = depth
                key = (hop, sig)
                per_signature[key] = found(key, 0) + n
            if listeners:
                self._expand()
                outcomes = self._expanded(per_signature)
                self._counts.update(outcomes)
            elif len(per_signature) > MAX_UNEXPANDED:
                self._expand()
            if llm:
                self._record_readiness(llm)
            if spend:
                self._record_spend(spend)
        for listener in listeners:
            listener(outcomes)

    def _expanded(self, per_signature: Counter) -> Counter[tuple[str, str, str]]:
        outcomes: Counter[tuple[str, str, str]] = Counter()
        fields = self.fields
        for (hop, sig), n in per_signature.items():
            for key, code in zip(fields, sig, strict=True):
                outcomes[(hop, key, OUTCOMES[code])] += n
        return outcomes

    def _expand(self) -> None:
        """Fold the signature tallies into the per-field counts (holding the lock)."""
        if self._by_signature:
            self._counts.update(self._expanded(self._by_signature))
            self._by_signature.clear()

    def _current_bucket(self) -> int:
        """The bucket number for now; drops buckets that left the window."""
        if not self._bucket_seconds:
            return 0
        current = int(self.clock() // self._bucket_seconds)
        buckets = self._readiness_buckets
        while buckets and buckets[0][0] <= current - READINESS_BUCKETS:
            buckets.popleft()
        return current

    def _record_readiness(self, llm: LlmTally) -> None:
        current = self._current_bucket()
        buckets = self._readiness_buckets
        if not buckets or buckets[-1][0] != current:
            buckets.append((current, {}, Counter()))
        _, rows, pending = buckets[-1]
        workflows = self._workflows
        labels: dict = {}  # as in record_batch: each kept workflow labelled once per batch
        found = pending.get
        # Labelled now (which workflows keep their label depends on arrival order), expanded
        # into the rows when read.
        for (raw_workflow, sig, usage), n in llm.items():
            workflow = labels.get(raw_workflow)
            if workflow is None:
                workflow = workflows(raw_workflow)
                if workflow != OTHER:
                    labels[raw_workflow] = workflow
            key = (workflow, sig, usage)
            pending[key] = found(key, 0) + n
        if len(pending) > MAX_UNEXPANDED:
            self._expand_readiness(rows, pending)

    def _expand_readiness(self, rows: dict[str, WorkflowReadiness], pending: Counter) -> None:
        evaluator = self._evaluator
        keys = self._check_keys
        verdicts = self._verdicts
        for (workflow, sig, usage), n in pending.items():
            row = rows.get(workflow)
            if row is None:
                row = rows[workflow] = WorkflowReadiness()
            row.llm_spans += n
            verdict = verdicts.get((sig, usage))
            if verdict is None:
                # Few distinct (signature, usage) pairs recur batch after batch: evaluate
                # each once (the checks are fixed by the envelope), not once per batch.
                if len(verdicts) >= MAX_CACHED_VERDICTS:
                    verdicts.clear()
                verdict = verdicts[(sig, usage)] = (
                    tuple([c.id for c in evaluator.checks if evaluator.holds(c, sig, usage, after=True)]),
                    tuple([c.id for c in evaluator.checks if evaluator.holds(c, sig, usage, after=False)]),
                    tuple([k for k in keys if not evaluator.field_present(k, sig, usage, after=True)]),
                )
            passed_after, passed_before, absent = verdict
            for check_id in passed_after:
                row.passed_after[check_id] += n
            for check_id in passed_before:
                row.passed_before[check_id] += n
            for key in absent:
                row.absent[key] += n
        pending.clear()

    def _spend_row(self, raw_workflow: str | None, raw_dims: tuple[str, ...], spans: int = 0) -> SpendRow:
        labels = self._dimension_labels
        dims = tuple(label(value) for label, value in zip(labels, raw_dims, strict=True))
        key = (self._workflows(raw_workflow), dims)
        row = self._spend.get(key)
        if row is None:
            if len(self._spend) >= self.max_spend_rows:
                # Each label is bounded, but their product is not: past the joint bound,
                # new combinations are counted in one `other` row.
                self.spend_rows_overflowed += spans
                key = (OTHER, (OTHER,) * len(dims))
                row = self._spend.get(key)
            if row is None:
                row = self._spend[key] = SpendRow()
        return row

    def settle(self, hop: str, fields: Iterable[str], amount: int,
               spent_as: tuple[str | None, tuple[str, ...]], settled_as: tuple[str | None, tuple[str, ...]]) -> None:
        """A span's context came late: its spend moves from the row it was recorded under to
        the row of its settled context, and its missing fields become `settled` (one
        outcome per span and field: the `missing` count goes down by one each)."""
        with self._lock:
            self._expand()  # values would add up either way; this keeps the keys in first-seen order
            label = self._hops(hop)
            for key in fields:
                self._counts[(label, key, "missing")] -= 1
                self._counts[(label, key, "settled")] += 1
            if amount:
                source = self._spend_row(*spent_as)
                target = self._spend_row(*settled_as)
                if source is not target:
                    source.total -= amount
                    source.spans -= 1
                    target.total += amount
                    target.spans += 1
                    target.settled += amount

    def _folded(self) -> int:
        """Values and rows folded into `other` so far (a label lookup that folds counts one)."""
        return (self._workflows.overflowed + sum(label.overflowed for label in self._dimension_labels)
                + self.spend_rows_overflowed)

    def _record_spend(self, spend: SpendTally) -> None:
        # Raw (workflow, dimensions) -> row, for lookups that folded nothing: a kept label
        # value stays kept, so such a lookup gives the same row again with no other effect
        # (one that folded counts each time, so it is not cached).
        rows = self._spend_by_raw
        for (raw_workflow, raw_dims, tenant_repaired), (amount, spans) in spend.items():
            raw = (raw_workflow, raw_dims)
            row = rows.get(raw)
            if row is None:
                folded = self._folded()
                row = self._spend_row(raw_workflow, raw_dims, spans)
                if self._folded() == folded:
                    if len(rows) >= self.max_spend_rows:
                        rows.clear()  # bounded: many raw values can share a row (cut to 128)
                    rows[raw] = row
            row.total += amount
            row.spans += spans
            if tenant_repaired:
                row.recovered += amount

    # -- reading (any thread) --------------------------------------------------------------
    def snapshot_counts(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            self._expand()
            return dict(self._counts)

    # Kept for callers of the first version of this module.
    snapshot = snapshot_counts

    def policy_configured(self) -> None:
        """A budget policy is configured: the policy context check applies."""
        self.unstamped.pop(POLICY_ID, None)

    def label_overflows(self) -> dict[str, int]:
        """Per bounded label, how many values were folded into `other` so far."""
        with self._lock:
            labels = (self._hops, self._workflows, *self._dimension_labels)
            folded = {dimension_label(label.name): label.overflowed for label in labels}
            folded["spend_row"] = self.spend_rows_overflowed
            return folded

    def _readiness_in_window(self) -> dict[str, WorkflowReadiness]:
        self._current_bucket()
        merged: dict[str, WorkflowReadiness] = {}
        for _, rows, pending in self._readiness_buckets:
            if pending:
                self._expand_readiness(rows, pending)
            for workflow, r in rows.items():
                into = merged.get(workflow)
                if into is None:
                    into = merged[workflow] = WorkflowReadiness()
                into.llm_spans += r.llm_spans
                into.passed_after.update(r.passed_after)
                into.passed_before.update(r.passed_before)
                into.absent.update(r.absent)
        return merged

    def snapshot_all(self) -> SurvivalSnapshot:
        with self._lock:
            self._expand()
            return SurvivalSnapshot(
                fields=self.fields,
                hop_spans=dict(self._hop_spans),
                hop_depth=dict(self._hop_depth),
                counts=dict(self._counts),
                readiness=self._readiness_in_window(),
                spend={k: SpendRow(r.total, r.recovered, r.spans, r.settled) for k, r in self._spend.items()},
                spend_dimensions=self.spend_dimensions,
                thresholds=dict(self.thresholds),
                readiness_window=self.readiness_window,
                checks=self.envelope.readiness_checks,
                unstamped=dict(self.unstamped),
                pending_spend=self.pending_spend(),
            )
