"""The `debug` exporter's config section."""

from __future__ import annotations

from typing import Literal

from costctx.exporters.otlp.config import ExporterCommonConfig


class DebugExporterConfig(ExporterCommonConfig):
    """`exporters: debug:` logs each batch instead of sending it (the Collector's debug exporter):
    `basic` a count per batch, `normal` a line per span, `detailed` the whole request."""

    verbosity: Literal["basic", "normal", "detailed"] = "basic"
