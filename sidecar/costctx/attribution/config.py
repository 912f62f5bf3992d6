"""Config of the shared context registry (the `registry:` section of `inherit`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from costctx.config.types import Duration, StrictModel


class RegistryRedisConfig(StrictModel):
    # Point it at the Redis the budgets use (`budget.redis.url`): one store per deployment.
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "{costctx}:registry:"
    timeout: Duration = 0.25
    # A Redis Cluster: keys are hash-tagged per trace (braces in key_prefix are dropped).
    cluster: bool = False


class RegistryConfig(StrictModel):
    # memory: this sidecar's own knowledge (single pod); redis: shared by every sidecar.
    backend: Literal["memory", "redis"] = "memory"
    redis: RegistryRedisConfig = Field(default_factory=RegistryRedisConfig)
    # How long a learned context is kept (locally and in Redis): the attribution window.
    ttl: Duration = 3600.0
    # Local cache in front of the store: the last max_entries / 2 to max_entries contexts learned
    # (a CLIENT/PRODUCER span or a budget check, or read from the store), each kept ttl / 2 to ttl;
    # ~250 bytes each with its fields, and as many traces at ~100 bytes. At 10,000 spans/s of the
    # bench workload (1 span in 5 learned, 1,000 traces/s) 50,000 is 25-50 s of history, ~17 MB
    # (100,000, ~35 MB, took the sidecar over its pod's 256Mi limit with every other table full:
    # README, "Memory at the bounds"); at 100 spans/s it is over an hour. A context no longer
    # held is a counted miss (the span keeps its own fields), never another trace's context.
    max_entries: PositiveInt = 50_000
