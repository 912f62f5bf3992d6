"""The tests' OTLP sink: the real `costctx sink`, waiting longer by default.

A wait only lasts its full deadline when what it waits for does not come: 30 s instead of the
sink's 10 s costs a passing test nothing and keeps a loaded two-core CI machine (other jobs
beside the suite) from failing one whose spans are merely slow to arrive."""

from __future__ import annotations

from costctx.cli.sink import OtlpSink

PATIENCE = 30.0


class PatientSink(OtlpSink):
    def wait_for_spans(self, count: int, timeout: float = PATIENCE) -> bool:
        return super().wait_for_spans(count, timeout)

    def wait_for_requests(self, signal: str, count: int, timeout: float = PATIENCE) -> bool:
        return super().wait_for_requests(signal, count, timeout)
