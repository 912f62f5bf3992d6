"""The admission rules are one rule set: the memory store (Python) and the Redis store (Lua)
give the same verdict, the same values and leave the same reservations, on random cases."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

from costctx.budget.counters import RESERVED_FIELD, START
from costctx.budget.decision import CheckPlan, Dim
from costctx.budget.memory import MemoryStore
from costctx.budget.redis_store import RedisStore
from costctx.processors.budget.config import RedisConfig


def random_case(rng: random.Random) -> tuple[CheckPlan, list[tuple[int, int]], bool]:
    dims, values = [], []
    for i in range(rng.randint(1, 5)):
        if rng.random() < 0.15:
            limit = 60_000
            # elapsed far from the thresholds, so the two clocks' skew cannot matter
            elapsed = rng.choice([1_000, 30_000, 55_000, 120_000])
            dims.append(Dim(f"d{i}", "seconds", f"k{i}", START, limit, limit, int(limit * 0.8), 0, 0, 60_000,
                            elapsed=True))
            values.append((elapsed, 0))
            continue
        field = rng.choice(["usd", "tok", "steps", "fl"])
        limit = rng.choice([1, 3, 10, 1_000_000])
        hard = int(limit * rng.choice([1.0, 1.0, 1.2]))
        soft = int(limit * rng.choice([0.5, 0.8, 1.0]))
        full = rng.choice([0, 1, limit // 10, limit // 3])
        degraded = rng.choice([full, full // 2, 0])
        # Around the thresholds: the edges are where the two implementations could differ.
        committed = max(rng.choice([0, 0, hard // 4, hard // 2, soft - full, hard - full, hard - 1, hard, hard + 1]), 0)
        reserved = rng.choice([0, 0, 0, 1, full, hard // 4])
        dims.append(Dim(f"d{i}", "usd", f"k{i}", field, limit, hard, soft, full, degraded, 60_000))
        values.append((committed, reserved))
    tripped = rng.random() < 0.1
    plan = CheckPlan(dims, ["brk"] if tripped else [], reserve=rng.random() < 0.8,
                     has_degraded=rng.random() < 0.5, reservation_id=uuid.uuid4().hex, reservation_ttl_ms=60_000)
    return plan, values, tripped


def test_memory_and_redis_decide_alike(redis_url):
    import redis

    sync = redis.Redis.from_url(redis_url)
    rng = random.Random(20261123)

    async def run() -> None:
        for case in range(300):
            plan, values, tripped = random_case(rng)
            prefix = f"{{k{uuid.uuid4().hex[:8]}}}:"
            remote = RedisStore(RedisConfig(url=redis_url, key_prefix=prefix, timeout=5.0))  # not 250 ms: loaded CI
            local = MemoryStore()
            now_ms = int(time.time() * 1000)
            for dim, (committed, reserved) in zip(plan.dims, values, strict=True):
                if dim.elapsed:
                    start = now_ms - committed
                    sync.hset(prefix + dim.key, START, start)
                    local.put_fields(dim.key, {START: start})
                else:
                    rfield = RESERVED_FIELD[dim.field]
                    sync.hset(prefix + dim.key, mapping={dim.field: committed, rfield: reserved})
                    local.put_fields(dim.key, {dim.field: committed, rfield: reserved})
            if tripped:
                sync.set(prefix + "brk", 1, px=60_000)
                local.flags["brk"] = time.time() + 60
            before_ms = time.time() * 1000
            got_local = local.check_now(plan)
            got_remote = await remote.check(plan)
            # The two elapsed readings (this clock, then Redis's TIME) lie within this span.
            between_ms = time.time() * 1000 - before_ms
            where = f"case {case}: {plan} {values}"
            assert (got_local.verdict, got_local.degraded, got_local.reserved) == \
                   (got_remote.verdict, got_remote.degraded, got_remote.reserved), where
            for dim, lv, rv in zip(plan.dims, got_local.values, got_remote.values, strict=True):
                if dim.elapsed:
                    assert abs(lv[0] - rv[0]) <= between_ms + 2, where  # +2: whole-ms rounding
                else:
                    assert lv == rv, where
            # The same reservations are left behind.
            for dim in plan.dims:
                if not dim.elapsed:
                    rfield = RESERVED_FIELD[dim.field]
                    assert int(sync.hget(prefix + dim.key, rfield) or 0) == local.hashes[dim.key].get(rfield, 0), where
            await remote.close()

    asyncio.run(run())
    sync.close()


def test_a_lapsed_reservation_is_given_back_however_late_it_is_reaped(redis_url):
    """A reservation's hash lives until a check reaps it or a span commits it. It used to have
    a TTL of its own (reservation_ttl + 60 s): a reaper that came later than that (no check in
    the deployment for a minute, or a backlog of lapsed reservations over the 64 a check
    reaps) found nothing to give back, and the held amount stayed in the counters for their
    whole TTL (32 days for a month window)."""
    import redis

    sync = redis.Redis.from_url(redis_url)
    prefix = f"{{lapse{uuid.uuid4().hex[:8]}}}:"
    store = RedisStore(RedisConfig(url=redis_url, key_prefix=prefix, timeout=5.0))  # not 250 ms: loaded CI

    def plan(reserve: bool) -> CheckPlan:
        dim = Dim("tenant.month_usd", "usd", "t|acme|m|202611", "usd", 1_000, 1_000, 800, 600, 600, 60_000)
        return CheckPlan([dim], reserve=reserve, reservation_id=uuid.uuid4().hex, reservation_ttl_ms=100)

    async def run() -> None:
        held = plan(reserve=True)
        assert (await store.check(held)).reserved
        # Nothing but the reaper removes it: "a minute without checks" cannot lose it.
        assert sync.pttl(prefix + "r|" + held.reservation_id) == -1
        await asyncio.sleep(0.3)  # the call never reported: its hold lapses
        after = await store.check(plan(reserve=False))
        assert after.values == [(0, 0)] and after.verdict == "allow"
        assert store.expired_total == 1
        assert not sync.exists(prefix + "r|" + held.reservation_id)
        await store.close()

    asyncio.run(run())
    sync.close()


def test_a_reservation_holds_until_its_ttl_and_not_a_tick_longer():
    """The memory store on an injected clock: the hold lapses exactly at its expiry."""
    start = 1_024.0  # binary-exact times: the boundary compares equal
    now = [start]
    store = MemoryStore(clock=lambda: now[0])
    dim = Dim("workflow.cost_usd", "usd", "wf", "usd", 1_000_000, 1_000_000, 800_000, full=600_000)

    def check(reservation_id: str):
        return store.check_now(CheckPlan([dim], reservation_id=reservation_id, reservation_ttl_ms=250))

    assert check("first").verdict == "allow"
    now[0] = start + 0.249
    assert check("second").verdict == "block"  # 0.6 held + 0.6 > 1.0
    assert store.expired_total == 0
    now[0] = start + 0.25
    third = check("third")
    assert third.verdict == "allow" and third.values == [(0, 0)]  # the first hold lapsed
    assert store.expired_total == 1


def test_memory_and_redis_leave_the_same_counters_through_checks_commits_and_releases(redis_url):
    """The memory store keeps a counter as a list of its fields' places (counters.SLOT), grown
    as fields come and None where absent; Redis keeps a hash. After the same random sequence of
    checks that reserve, commits that add (a start set only when absent) and release, and
    explicit releases, on a few keys shared by them, each key holds the same fields and values
    in both (a field is absent in one exactly when it is in the other), and every call answered
    alike."""
    import redis

    from costctx.budget.store import SET_IF_ABSENT, CommitOp

    sync = redis.Redis.from_url(redis_url)
    rng = random.Random(20261201)
    keys = ["wf|a", "wf|b", "t|acme|h", "v|acme|7"]
    fields = ["usd", "tok", "steps", "fl"]

    async def run() -> None:
        for case in range(25):
            prefix = f"{{c{uuid.uuid4().hex[:8]}}}:"
            remote = RedisStore(RedisConfig(url=redis_url, key_prefix=prefix, timeout=5.0))  # not 250 ms: loaded CI
            local = MemoryStore()
            held: list[str] = []
            for step in range(rng.randint(5, 30)):
                where = f"case {case} step {step}"
                roll = rng.random()
                if roll < 0.4:
                    dims = [Dim(f"d{i}", "usd", rng.choice(keys), rng.choice(fields), 10**6, 10**6, 8 * 10**5,
                                rng.choice([0, 1, 7, 500]), 0, 60_000) for i in range(rng.randint(1, 3))]
                    plan = CheckPlan(dims, reserve=rng.random() < 0.8, reservation_id=uuid.uuid4().hex,
                                     reservation_ttl_ms=60_000)
                    got_local, got_remote = local.check_now(plan), await remote.check(plan)
                    assert (got_local.verdict, got_local.values, got_local.reserved) == \
                           (got_remote.verdict, got_remote.values, got_remote.reserved), where
                    if got_local.reserved:
                        held.append(plan.reservation_id)
                elif roll < 0.85:
                    changes = []
                    for _ in range(rng.randint(1, 5)):
                        key = rng.choice(keys)
                        if rng.random() < 0.2:
                            changes.append((key, SET_IF_ABSENT + START, rng.randrange(1, 10**12), 86_400_000))
                        else:
                            changes.append((key, rng.choice(["usd", "tok", "steps"]), rng.randrange(0, 10**6),
                                            rng.choice([86_400_000, 7_200_000])))
                    rid = held.pop(rng.randrange(len(held))) if held and rng.random() < 0.6 else None
                    ops = [CommitOp(rid, changes)]
                    got_local, got_remote = local.commit_now(ops), await remote.commit(ops)
                    assert [(r.released, r.values) for r in got_local] == \
                           [(r.released, r.values) for r in got_remote], where
                elif held:
                    rid = held.pop(rng.randrange(len(held)))
                    assert local.release_now(rid) == await remote.release(rid), where
            for key in keys:
                stored = {name.decode(): int(value) for name, value in sync.hgetall(prefix + key).items()}
                assert local.hashes.get(key, {}) == stored, f"case {case}: {key}"
            await remote.close()

    asyncio.run(run())
    sync.close()
