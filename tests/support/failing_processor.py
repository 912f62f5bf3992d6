"""A processor with a bug: it raises on any batch holding a span named `boom`. Registered only
by the tests that check what the pipeline does when a processor fails (nothing ships it)."""

from __future__ import annotations

from costctx.component.processor import Processor
from costctx.config.types import StrictModel
from costctx.pdata import TraceBatch


class FailingConfig(StrictModel):
    pass


class FailingProcessor(Processor):
    type_name = "failing"
    config_model = FailingConfig

    def process(self, batch: TraceBatch) -> TraceBatch:
        for resource_spans in batch.request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                if any(span.name == "boom" for span in scope_spans.spans):
                    raise RuntimeError("a processor bug")
        return batch
