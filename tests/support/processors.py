"""One processor on its own, outside a sidecar: for tests that drive `process` directly."""

from __future__ import annotations

from typing import Any

from costctx.component.host import Host
from costctx.component.processor import Processor
from costctx.service.registry import processor_class, processor_type
from costctx.survival.recorder import SurvivalRecorder
from costctx.telemetry.metrics import SidecarMetrics


def standalone_processor(name: str, config: Any = None, **options: Any) -> Processor:
    """The processor `name` (e.g. "price", "inherit/b") with its own metrics registry and survival
    recorder (`processor.context`); `config` is its config model or options to validate."""
    cls = processor_class(processor_type(name))
    if config is None:
        config = cls.config_model.model_validate(options)
    context = Host(metrics=SidecarMetrics(), survival=SurvivalRecorder())
    return cls(name, config, context)
