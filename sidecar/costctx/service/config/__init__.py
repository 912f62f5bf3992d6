"""Collector-shaped YAML config: receivers, processors, exporters, service."""

from costctx.service.config.loader import ConfigError, load_config, load_config_text
from costctx.service.config.model import SidecarConfig

__all__ = ["ConfigError", "SidecarConfig", "load_config", "load_config_text"]
