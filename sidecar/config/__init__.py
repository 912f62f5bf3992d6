"""Collector-shaped YAML config: receivers, processors, exporters, service."""

from sidecar.config.loader import ConfigError, load_config, load_config_text
from sidecar.config.model import SidecarConfig

__all__ = ["ConfigError", "SidecarConfig", "load_config", "load_config_text"]
