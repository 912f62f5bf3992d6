"""Start a real sidecar on free loopback ports, exporting to a real sink."""

from __future__ import annotations

import copy
from typing import Any

from costctx.service.config.loader import build_config
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS
from costctx.service.runner import SidecarThread


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def sidecar_config(
    sink_port: int,
    processors: list[str] | None = None,
    exporter: str = "otlp",
    sink_http_port: int | None = None,
    processor_config: dict | None = None,
    **overrides: Any,
) -> dict:
    """A config dict: receivers and telemetry on port 0, fast retries, exporting to the sink.

    `processors` names the traces pipeline (defaults if None); `processor_config` gives
    sections for them by name; other keyword arguments deep-merge into the config.
    """
    names = list(DEFAULT_TRACE_PROCESSORS) if processors is None else processors
    if exporter == "otlphttp":
        exporter_section = {"endpoint": f"http://127.0.0.1:{sink_http_port}"}
    else:
        exporter_section = {"endpoint": f"127.0.0.1:{sink_port}", "insecure": True}
    exporter_section.update(
        {
            "timeout": "2s",
            "retry_on_failure": {"initial_interval": "50ms", "max_interval": "200ms", "max_elapsed_time": "30s"},
        }
    )
    config = {
        "receivers": {
            "otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}}
        },
        "processors": {name: (processor_config or {}).get(name) for name in names},
        "exporters": {exporter: exporter_section},
        "service": {
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": names, "exporters": [exporter]},
                "metrics": {"receivers": ["otlp"], "exporters": [exporter]},
                "logs": {"receivers": ["otlp"], "exporters": [exporter]},
            },
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
            "tick_interval": "20ms",
        },
    }
    return deep_merge(config, overrides)


def start_sidecar(config: dict) -> SidecarThread:
    runner = SidecarThread(build_config(config, environ={}))
    runner.start()
    return runner


def token_auth(token_file) -> dict:
    """Config overrides for one `bearertokenauth` (from `token_file`) guarding every server."""
    return {"extensions": {"bearertokenauth": {"filename": str(token_file)}},
            "service": {"extensions": ["bearertokenauth"]}}
