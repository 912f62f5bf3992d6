"""What a batch's spans teach the context registry, planned in one call per batch, in Python
here and in Rust (`costctx_native._core.learn_plan`, native/src/inherit_learn.rs) with the
same result: this is the fallback and the oracle.

`learning` holds the batch's spans carrying workflow.id in the order they were decided:
(span, own) for a span, (spans, own) for spans alike (a list), `own` their fields. Each
trace is learned once (its first span's fields; with that span's id when it is a CLIENT or
PRODUCER span, the parent a remote child names): a step (trace id, span id or None, own).
The CLIENT and PRODUCER spans (ids non-empty) of traces learned already form runs of one
fields dict, in order: a step (keys, own), keys trace id + span id. `learned` (the traces
learned this batch) gains every trace learned.
"""

from __future__ import annotations

from typing import Any

try:
    from costctx_native._core import learn_plan as native_learn_plan
except ImportError:  # built without the extension
    native_learn_plan = None

# Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_PRODUCER (trace.proto's numbers: protobuf not imported for two ints)
REMOTE_PARENT_KINDS = (3, 4)


def learn_plan(learning: list[tuple], learned: set[bytes]) -> list[tuple]:
    """The registry's steps for `learning`, in order: see the module docstring."""
    plan: list[tuple] = []
    keys: list[bytes] = []  # spans of learned traces carrying `keys_own`, in order
    keys_own: Any = None
    remote_kinds = REMOTE_PARENT_KINDS
    for spans, own in learning:
        for span in spans if type(spans) is list else (spans,):
            trace_id = span.trace_id
            remote = span.kind in remote_kinds
            if trace_id in learned:
                if remote and trace_id and span.span_id:
                    if own is not keys_own:
                        if keys:
                            plan.append((keys, keys_own))
                            keys = []
                        keys_own = own
                    keys.append(trace_id + span.span_id)
                continue
            if keys:  # registered before this trace is, as they were decided
                plan.append((keys, keys_own))
                keys = []
            learned.add(trace_id)
            plan.append((trace_id, span.span_id if remote else None, own))
    if keys:
        plan.append((keys, keys_own))
    return plan
