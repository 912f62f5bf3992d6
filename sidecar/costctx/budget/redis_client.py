"""One way to reach the deployment's Redis, for the budget store and the context registry."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException, RedisError

# What a store call can fail with. AttributeError: redis-py's asyncio cluster client, when a
# connection it shares is reset under load, fails with `'NoneType' object has no attribute
# 'writelines'`; the caller gets the store-unavailable answer its policy says, not a crash.
# RedisClusterException: a cluster client that cannot reach any node (not a RedisError).
STORE_ERRORS = (TimeoutError, RedisError, OSError, AttributeError, RedisClusterException)


def redis_client(url: str, timeout: float, cluster: bool) -> Any:
    """A client of one Redis, or of a Redis Cluster (`url` names any node); timeouts bounded,
    no retry on a timeout: a store that is slow is answered as one that is down."""
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    return aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                   retry_on_timeout=False)


def untagged(prefix: str) -> str:
    """A key prefix without its hash-tag braces: on a cluster the caller tags each key itself."""
    return prefix.replace("{", "").replace("}", "")
