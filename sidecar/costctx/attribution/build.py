"""Build the sidecar's one context registry from its config."""

from __future__ import annotations

from costctx.attribution.config import RegistryConfig
from costctx.attribution.inprocess import InProcessRegistryBackend
from costctx.attribution.registry import ContextRegistry, MemoryBackend, RedisBackend


def build_registry(config: RegistryConfig, in_process: InProcessRegistryBackend | None = None) -> ContextRegistry:
    """`in_process`: the store sidecars sharing this process use for `backend: memory`."""
    if config.backend == "memory" and in_process is not None:
        backend = in_process
    elif config.backend == "redis":
        backend = RedisBackend(config.redis.url, config.redis.key_prefix, config.redis.timeout,
                               config.redis.cluster)
    else:
        backend = MemoryBackend()
    return ContextRegistry(backend, config.ttl, config.max_entries)
