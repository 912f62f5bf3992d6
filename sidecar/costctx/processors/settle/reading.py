"""The settle processor's per-span reading, in one call per batch: which spans carry their
trace's context and which may need remembering. In Python here (the fallback and the oracle)
and in Rust (`costctx_native._core.read_settle`, native/src/settle.rs) with the same result;
what a span's cost is and whether it is remembered stay in the processor.

`read_settle(spans, indices, workflow_key, tenant_key, cost_key, want_context, traces=None)`
gives, over the spans of `indices` in order (`spans`: views; or, with `traces` a trace id
per span index, rows (workflow, tenant, cost) of each span's values by index, None where
absent: the native codec's columns, no view made; the Rust one also reads the native codec's
lazy span list itself, its records where no view is made):
- context: {trace id: index of the trace's first span whose `workflow_key` and `tenant_key`
  are both non-empty strings} when `want_context`, else {};
- pending: indices of the other spans whose `cost_key` is there and not None, in order.
"""

from __future__ import annotations

try:
    from costctx_native._core import read_settle as native_read_settle  # type: ignore[import-not-found]
except ImportError:  # built without the extension (or an older build): the Python one below
    native_read_settle = None


def read_settle(spans: list, indices, workflow_key: str, tenant_key: str, cost_key: str,
                want_context: bool, traces: list[bytes] | None = None) -> tuple[dict[bytes, int], list[int]]:
    context: dict[bytes, int] = {}
    pending: list[int] = []
    if traces is not None:  # rows (workflow, tenant, cost) and the trace id column
        for index in indices:
            workflow, tenant, cost = spans[index]
            if type(workflow) is str and workflow and type(tenant) is str and tenant:
                if want_context:
                    context.setdefault(traces[index], index)
            elif cost is not None:
                pending.append(index)
        return context, pending
    for index in indices:
        span = spans[index]
        get = span.attrs.get
        # Most spans carry both fields or no cost: two dict probes each, no call.
        workflow, tenant = get(workflow_key), get(tenant_key)
        if type(workflow) is str and workflow and type(tenant) is str and tenant:
            if want_context:
                context.setdefault(span.trace_id, index)
        elif get(cost_key) is not None:
            pending.append(index)
    return context, pending
