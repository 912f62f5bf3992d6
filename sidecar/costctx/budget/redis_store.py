"""Budget state in Redis, shared by every sidecar of a deployment.

Check-and-reserve and commit are Lua scripts, so each is atomic on the server: two
sidecars can never both pass on the same remaining budget. Time is Redis's clock
(`TIME` in the script), one clock for all sidecars.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import resources

from costctx.budget.config import RedisConfig
from costctx.budget.decision import ALLOW, BLOCK, DEGRADE, TRIPPED, CheckOutcome, CheckPlan
from costctx.budget.redis_client import STORE_ERRORS, redis_client, untagged
from costctx.budget.store import CommitOp, CommitResult, StoreUnavailable, reservation_tag

log = logging.getLogger("costctx.budget")
_VERDICTS = {1: ALLOW, 2: DEGRADE, 3: BLOCK, 4: TRIPPED}
INDEX_KEY = "rsv-expiry"


def _script(name: str) -> str:
    lua = resources.files("costctx.budget").joinpath("lua")
    return lua.joinpath("release.lua").read_text(encoding="utf-8") + lua.joinpath(name).read_text(encoding="utf-8")


class RedisStore:
    sync = False

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.prefix = config.key_prefix
        self.cluster = config.cluster
        # On a cluster, `<prefix>{<tenant>}:<key>`: the tenant is the hash tag (see _key).
        self.base = untagged(config.key_prefix)
        self.client = redis_client(config.url, config.timeout, config.cluster)
        # register_script runs EVALSHA and loads the script on NOSCRIPT (e.g. after a restart).
        self._check = self.client.register_script(_script("check.lua"))
        self._commit = self.client.register_script(_script("commit.lua"))
        self.expired_total = 0

    def _prefix(self, tag: str) -> str:
        """Where a check's or commit's keys live: the one prefix, or on a cluster the tenant's slot."""
        if not self.cluster:
            return self.prefix
        return f"{self.base}{{{tag or '_'}}}:"

    def _key(self, relative: str, tag: str = "") -> str:
        return self._prefix(tag) + relative

    async def start(self) -> None:
        if not self.cluster:
            return  # connect lazily: a store down at start-up is the same case as one down later
        # A cluster client learns the slot map on first use; learning it here, before the
        # receivers listen, keeps 64 first calls from racing its initialisation.
        try:
            await self.client.initialize()
        except STORE_ERRORS as exc:
            log.warning("redis cluster not reachable at start (%s); the first calls will retry", exc)

    async def close(self) -> None:
        await self.client.aclose()

    async def check(self, plan: CheckPlan) -> CheckOutcome:
        prefix = self._prefix(plan.tag)
        keys = [prefix + INDEX_KEY, prefix + f"r|{plan.reservation_id}"]
        keys += [prefix + k for k in plan.breaker_keys]
        keys += [prefix + d.key for d in plan.dims]
        args: list[object] = [
            len(plan.breaker_keys), len(plan.dims), int(plan.reserve), int(plan.has_degraded),
            plan.reservation_ttl_ms, plan.reservation_id, prefix,
        ]
        for d in plan.dims:
            args += [d.field, d.hard, d.soft, d.full, d.degraded, d.ttl_ms, int(d.elapsed)]
        args += list(plan.binding)
        try:
            out = await self._check(keys=keys, args=args)
        except STORE_ERRORS as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self.expired_total += int(out[3])
        flat = [int(v) for v in out[4:]]
        values = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        return CheckOutcome(_VERDICTS[int(out[0])], bool(out[1]), values, bool(out[2]))

    def _commit_call(self, op: CommitOp, client) -> object:
        rid = op.reservation_id or ""
        prefix = self._prefix(op.tag)
        reservation_key = prefix + f"r|{rid}"
        once = op.once_key is not None and op.once_ttl_ms > 0
        keys = [prefix + INDEX_KEY, reservation_key, prefix + op.once_key if once else reservation_key]
        keys += [prefix + c[0] for c in op.changes]
        binding = op.binding
        args: list[object] = [rid, prefix, op.once_ttl_ms if once else 0, int(binding is not None),
                              *(binding or ("", ""))]
        for _, field, amount, ttl_ms in op.changes:
            args += [field, int(amount), int(ttl_ms)]
        return self._commit(keys=keys, args=args, client=client)

    def _cluster_ops(self, ops: list[CommitOp]) -> tuple[list[CommitOp], list[CommitOp]]:
        """On a cluster a span's changes go to its tenant's slot; a reservation made under
        another tenant (the span's tenant differs from the check's) is released on its own."""
        out, releases = [], []
        for op in ops:
            tag = reservation_tag(op.reservation_id)
            if op.reservation_id and tag is None:
                tag = op.tag
            if op.reservation_id and tag != op.tag:
                releases.append(CommitOp(op.reservation_id, tag=tag))
                op = CommitOp(None, op.changes, op.once_key, op.once_ttl_ms, op.tag)
            out.append(op)
        return out, releases

    async def commit(self, ops: list[CommitOp]) -> list[CommitResult]:
        if not ops:
            return []
        if self.cluster:
            ops, releases = self._cluster_ops(ops)
            if releases:
                try:
                    await asyncio.gather(*(self._commit_call(op, self.client) for op in releases))
                except STORE_ERRORS as exc:
                    raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        try:
            if self.cluster:
                # Each span's script runs on its tenant's node; concurrently, not one by one.
                outs = await asyncio.gather(*(self._commit_call(op, self.client) for op in ops))
            else:
                # One round trip for a whole batch of spans; each script is atomic on its own.
                async with self.client.pipeline(transaction=False) as pipe:
                    for op in ops:
                        await self._commit_call(op, pipe)  # queues the EVALSHA in the pipeline
                    outs = await pipe.execute()
        except STORE_ERRORS as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        # First value: 1 released, +2 committed before (duplicate), +4 refused (another workflow's).
        return [CommitResult(bool(int(out[0]) & 1), [int(v) for v in out[1:]], bool(int(out[0]) & 2),
                             bool(int(out[0]) & 4)) for out in outs]

    async def release(self, reservation_id: str) -> bool:
        tag = reservation_tag(reservation_id) or ""
        return (await self.commit([CommitOp(reservation_id, tag=tag)]))[0].released

    async def trip(self, key: str, seconds: float, tag: str = "") -> None:
        try:
            await self.client.set(self._key(key, tag), b"1", px=max(int(seconds * 1000), 1))
        except STORE_ERRORS as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def tick(self, now: float) -> None:
        pass  # expired reservations are reaped inside the check script
