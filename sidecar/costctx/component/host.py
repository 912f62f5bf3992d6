"""What the sidecar hands every component: typed, instead of a dict of services by string key.

The host owns what several components share:
- `metrics`: the sidecar's registry; `component_metrics(kind, id)` builds a component's metrics
  (every family once per registry, labelled by component id);
- `survival`: the field-survival recorder the envelope processor reports into;
- `price_book`: the one book model calls are priced from. The host owns it, so a budget check's
  estimate does not depend on a `price` processor being configured: without one it is the
  builtin table; the first `price` processor of the pipeline loads its own sources into it;
- `spend_ledger`: the workflows' running spend, kept by the first `price` processor;
- `budget_engine`: the budget engine, set by the first `budget` processor;
- `context_registry`: the shared context registry (a slot; unset until a component sets it);
- `logs_consumer`: the logs pipeline's entry (payload, items), for records a processor emits
  (the settle processor's attribution records); None without a logs pipeline;
- `in_process`: state shared with other sidecars of this process (the demo without a Redis):
  used in place of this sidecar's own memory budget store and registry; None: its own.
- `hold_storage`: (directory, fsync) of the traces pipeline's persistent queue, where processors
  keep the acknowledged spans they hold (inherit); None with an in-memory queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from costctx.attribution.inprocess import InProcessShare
from costctx.budget.engine import BudgetEngine
from costctx.envelope import ENVELOPE, Envelope
from costctx.pricing.book import PriceBookHandle, builtin_book
from costctx.pricing.ledger import SpendLedger
from costctx.survival.recorder import SurvivalRecorder
from costctx.telemetry.metrics import ComponentMetrics, SidecarMetrics


@dataclass
class Host:
    metrics: SidecarMetrics = field(default_factory=SidecarMetrics)
    survival: SurvivalRecorder = field(default_factory=SurvivalRecorder)
    envelope: Envelope = ENVELOPE
    spend_ledger: SpendLedger | None = None
    budget_engine: BudgetEngine | None = None
    context_registry: Any = None
    logs_consumer: Callable[[bytes, int], None] | None = None
    in_process: InProcessShare | None = None
    hold_storage: tuple[str, str] | None = None
    _price_book: PriceBookHandle | None = field(default=None, init=False, repr=False)
    _price_book_owner: str | None = field(default=None, init=False, repr=False)

    def component_metrics(self, kind_label: str, component_id: str) -> ComponentMetrics:
        """`kind_label` names the label ("processor", "exporter"), `component_id` its value ("budget/b")."""
        return ComponentMetrics(self.metrics, kind_label, component_id)

    @property
    def price_book(self) -> PriceBookHandle:
        """The shared handle; the builtin table until a `price` processor claims it (built on first use)."""
        if self._price_book is None:
            self._price_book = PriceBookHandle(builtin_book())
        return self._price_book

    def claim_price_book(self, component_id: str) -> PriceBookHandle | None:
        """The shared handle for the first `price` processor to ask (it swaps its book in, now and on
        reload); None for later ones, which keep a book of their own."""
        if self._price_book_owner is not None:
            return None
        self._price_book_owner = component_id
        return self.price_book
