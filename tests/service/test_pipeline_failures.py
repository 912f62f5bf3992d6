"""README: a processor that fails on a batch is logged and counted, and the batch goes on
unprocessed by it (the processors after it still run), so no acknowledged span is lost."""

from __future__ import annotations

import logging

from costctx.service import registry
from tests.support.otlp import TRACE_METHOD, grpc_call, traces_request


def test_a_failing_processor_is_counted_and_its_batch_forwarded(make_sidecar, sink, monkeypatch, caplog):
    monkeypatch.setitem(registry.PROCESSOR_TYPES, "failing", "tests.support.failing_processor:FailingProcessor")
    runner = make_sidecar(processors=["failing", "envelope"])
    errors = runner.sidecar.metrics.registry.get_sample_value

    def sent(name: str) -> None:
        request = traces_request(2)
        request.resource_spans[0].scope_spans[0].spans[0].name = name
        assert grpc_call(runner.sidecar.grpc_port, TRACE_METHOD, request.SerializeToString())[1] is None

    with caplog.at_level(logging.ERROR, logger="costctx"):
        sent("boom")
        assert sink.wait_for_spans(2)
    # Both spans arrived, and the envelope processor after the failing one stamped them.
    assert sorted(s.name for s in sink.spans())[0] == "boom"
    assert all("costctx.schema" in s.attributes for s in sink.spans())
    assert errors("costctx_processor_errors_total", {"processor": "failing"}) == 1
    assert "processor failing failed; forwarding the batch without it" in caplog.text
    sent("fine")
    assert sink.wait_for_spans(4)
    assert errors("costctx_processor_errors_total", {"processor": "failing"}) == 1  # only the failed batch
    assert not errors("costctx_processor_errors_total", {"processor": "envelope"})
