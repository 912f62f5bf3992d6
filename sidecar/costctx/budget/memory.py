"""In-memory budget state: one sidecar's counters, reservations and breaker flags.

Runs on the sidecar's event loop thread only, so check-and-reserve is atomic by
construction (no await between reading and reserving).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from itertools import islice

from costctx.budget.counters import FIELDS, RESERVED_FIELD, SLOT, START
from costctx.budget.decision import CheckOutcome, CheckPlan, decide
from costctx.budget.store import SET_IF_ABSENT, CommitOp, CommitResult, KeyAdds, binding_admits

try:
    # apply_sums' per-key adds in one call (native/src/budget.rs); MemoryStore._add_sums is its oracle
    from costctx_native._core import add_list_sums as native_add_sums  # type: ignore[import-not-found]
except ImportError:  # an older build, or no native extension: the Python loop serves
    native_add_sums = None
_START = SLOT[START]


def field_of(counter: list, slot: int) -> int:
    """A counter's field at `slot` (counters.SLOT), 0 when absent (as HGET of a missing field)."""
    return (counter[slot] or 0) if slot < len(counter) else 0


def _put(counter: list, slot: int, value: int) -> None:
    """Set a counter's field at `slot`, the list grown to reach it (absent places None)."""
    if slot >= len(counter):
        counter.extend([None] * (slot + 1 - len(counter)))
    counter[slot] = value


def _put_if_absent(counter: list, slot: int, value: int) -> int:
    """dict.setdefault on a counter's field: its value, `value` set first when absent."""
    if slot < len(counter):
        found = counter[slot]
        if found is not None:
            return found
    _put(counter, slot, value)
    return value

# Counters kept at most (workflow, window and velocity keys): past this the least recently
# touched are forgotten first, so a sidecar that sees new workflows for days stays bounded.
# A workflow counter costs ~322 bytes (tracemalloc, apply_sums: the key string, its counter
# list of 4 places (88 bytes; its dict took 184, ~418 a key then) and their ints, its entry
# in `counters`, `expires` and its TTL's touch order; the expiry float is shared by a call's
# keys of one TTL), more deep at the bound with the dicts' slack (bench/memory_structures.py):
# 50,000 keys ~16-20 MB. Sized with the sidecar's other bounded tables to hold inside the
# pod's 256Mi limit at 10,000 spans/s once every table is full (README, "Memory at the
# bounds"); 100,000 took the sidecar over it with dict counters. At 10 new workflows/s a
# workflow idle for ~1.4 h is the first forgotten (its spend restarts at 0 on this pod;
# counted in evicted_total); a deployment that must keep more shares a Redis store.
MAX_KEYS = 50_000
# Keys forgotten at once when the bound is passed: one pass from the front of the touch orders
# (plain dicts skip the holes earlier deletions left, so one pass per key would be O(n)).
EVICT_FRACTION = 64


class MemoryStore:
    sync = True

    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = MAX_KEYS) -> None:
        self.clock = clock
        self.max_keys = max_keys
        # key -> its fields' values in the places of counters.FIELDS (None: absent), as long as
        # its last field present: a Redis hash's fields without a dict per key (see `hashes`).
        # The native adds (add_list_sums) make their counters untracked by the cyclic GC (ints
        # only: no cycle passes through one); a list made here in Python stays tracked.
        self.counters: dict[str, list[int | None]] = {}
        self.expires: dict[str, float] = {}          # key -> epoch seconds
        # Per TTL, the keys in the order they were last given it (key -> the expiry it was
        # given then): with one TTL, touch order is expiry order, so expiry and the size bound
        # look only at the front; never a pass over every key. A key given another TTL since
        # leaves a stale entry (its expiry no longer matches), dropped when reached.
        # Plain dicts (a touch moves a key to the end by pop and insert): ~40 bytes per key
        # where an OrderedDict's node took ~100 more; the front is read in one pass per sweep
        # or eviction, never one `next(iter())` per key (that skips the holes deletions leave).
        self._by_ttl: dict[int, dict[str, float]] = {}
        self.evicted_total = 0                       # keys forgotten by the size bound
        self.sweep_visits = 0                        # entries sweeps looked at (tests: work stays bounded)
        # reservation id -> (expiry, [(key, reserved field, amount)], (workflow, tenant) bound to)
        self.reservations: dict[str, tuple[float, list[tuple[str, str, int]], tuple[str, str]]] = {}
        self._expiry_heap: list[tuple[float, str]] = []
        self.flags: dict[str, float] = {}            # breaker key -> expiry
        self.expired_total = 0
        self._next_sweep = 0.0

    @property
    def hashes(self) -> dict[str, dict[str, int]]:
        """Every counter as the Redis hash it stands for, {field: value} of its fields present
        (in counters.FIELDS order): a copy, for tests and diagnostics."""
        return {key: {FIELDS[slot]: value for slot, value in enumerate(counter) if value is not None}
                for key, counter in self.counters.items()}

    def put_fields(self, key: str, fields: dict[str, int]) -> None:
        """Set fields of a counter (made when absent, no TTL): tests and tools seed state here."""
        counter = self.counters.setdefault(key, [])
        for name, value in fields.items():
            _put(counter, SLOT[name], value)

    # -- helpers ----------------------------------------------------------------------------
    def _hash(self, key: str, ttl_ms: int, now: float) -> list[int | None]:
        found = self.counters.get(key)
        if found is None:
            found = self.counters[key] = []
            if len(self.counters) > self.max_keys:
                self._evict()
        if ttl_ms:
            self._expire_at(key, ttl_ms, now + ttl_ms / 1000.0)
        return found

    def _expire_at(self, key: str, ttl_ms: int, expiry: float) -> None:
        self.expires[key] = expiry
        order = self._by_ttl.get(ttl_ms)
        if order is None:
            order = self._by_ttl[ttl_ms] = {}
        order.pop(key, None)
        order[key] = expiry  # touched last: at the end

    def _evict(self) -> None:
        """The size bound: forget the least recently touched keys, oldest touch first across the
        TTLs, down to `max_keys` less 1/EVICT_FRACTION of it, in one pass per TTL's order."""
        excess = len(self.counters) - self.max_keys + max(1, self.max_keys // EVICT_FRACTION) - 1
        if excess <= 0:
            return
        expires, hashes, by_ttl = self.expires, self.counters, self._by_ttl
        # Each TTL's `excess` oldest entries, and as many again for its stale ones (a key given
        # another TTL since): enough to find `excess` live keys in most cases; else another pass.
        candidates = []
        for ttl_ms, order in by_ttl.items():
            ttl_s = ttl_ms / 1000.0
            candidates.extend((expiry - ttl_s, ttl_ms, key, expiry)
                              for key, expiry in islice(order.items(), 2 * excess))
        if not candidates:
            return  # only keys without a TTL: nothing to order them by
        candidates.sort(key=lambda c: c[0])
        for _, ttl_ms, key, expiry in candidates:
            del by_ttl[ttl_ms][key]
            if expires.get(key) == expiry:
                del expires[key]
                if hashes.pop(key, None) is not None:
                    self.evicted_total += 1
                    excess -= 1
                    if excess <= 0:
                        return
        self._evict()  # the candidates were mostly stale: look further

    def _release(self, reservation_id: str) -> bool:
        entry = self.reservations.pop(reservation_id, None)
        if entry is None:
            return False
        for key, rfield, amount in entry[1]:
            counter = self.counters.get(key)
            if counter is not None:
                slot = SLOT[rfield]
                _put(counter, slot, field_of(counter, slot) - amount)
        return True

    def reap(self, now: float) -> int:
        """Release reservations past their expiry (never replaced by a priced span)."""
        released = 0
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expiry, rid = heapq.heappop(heap)
            entry = self.reservations.get(rid)
            if entry is not None and entry[0] == expiry and self._release(rid):
                released += 1
        self.expired_total += released
        return released

    def sweep(self, now: float) -> None:
        expires, hashes = self.expires, self.counters
        for order in self._by_ttl.values():
            done = []
            for key, expiry in order.items():  # one pass from the front
                self.sweep_visits += 1
                if expires.get(key) == expiry:
                    if expiry > now:
                        break  # the rest of this TTL's keys expire later
                    del expires[key]
                    hashes.pop(key, None)
                done.append(key)  # expired, or a stale entry (the key has another TTL now)
            for key in done:
                del order[key]
        for key in [k for k, e in self.flags.items() if e <= now]:
            del self.flags[key]

    # -- the operations ---------------------------------------------------------------------
    def check_now(self, plan: CheckPlan) -> CheckOutcome:
        now = self.clock()
        self.reap(now)
        now_ms = int(now * 1000)
        tripped = any(self.flags.get(k, 0.0) > now for k in plan.breaker_keys)
        values: list[tuple[int, int]] = []
        for dim in plan.dims:
            counter = self._hash(dim.key, dim.ttl_ms, now)
            if dim.elapsed:
                start = _put_if_absent(counter, _START, now_ms)
                values.append((max(now_ms - start, 0), 0))
            else:
                values.append((field_of(counter, SLOT[dim.field]), field_of(counter, SLOT[RESERVED_FIELD[dim.field]])))
        verdict, degraded = decide(plan.dims, values, plan.has_degraded, tripped)
        reserved = False
        if plan.reserve and verdict in ("allow", "degrade"):
            held = []
            for dim in plan.dims:
                amount = dim.degraded if degraded else dim.full
                if dim.elapsed or amount <= 0:
                    continue
                rfield = RESERVED_FIELD[dim.field]
                counter = self.counters[dim.key]
                slot = SLOT[rfield]
                _put(counter, slot, field_of(counter, slot) + amount)
                held.append((dim.key, rfield, amount))
            expiry = now + plan.reservation_ttl_ms / 1000.0
            self.reservations[plan.reservation_id] = (expiry, held, plan.binding)
            heapq.heappush(self._expiry_heap, (expiry, plan.reservation_id))
            reserved = True
        return CheckOutcome(verdict, degraded, values, reserved)

    def commit_now(self, ops: list[CommitOp]) -> list[CommitResult]:
        now = self.clock()
        results = []
        reservations = self.reservations
        touched: dict[str, tuple[list[int | None], int]] = {}  # key -> (its counter, the TTL last set)
        for op in ops:
            refused = released = False
            rid = op.reservation_id
            if rid:
                entry = reservations.get(rid)
                if entry is not None and op.binding is not None and not binding_admits(entry[2], op.binding):
                    refused = True  # made for another workflow or tenant: it waits for its own span
                else:
                    released = self._release(rid)
            values = []
            append = values.append
            last_key = last_ttl = counter = None
            for key, fld, amount, ttl_ms in op.changes:
                # self._hash inlined: this loop runs for every change of every priced span. A
                # span's workflow fields are consecutive changes of one key and TTL: looked up once.
                if key != last_key or ttl_ms != last_ttl:
                    last_key, last_ttl = key, ttl_ms
                    # The spans of one workflow, tenant or feature name the same keys: each
                    # (key, TTL) is looked up and its expiry set once per call (`now` is fixed).
                    found = touched.get(key)
                    if found is not None and found[1] == ttl_ms:
                        counter = found[0]
                    else:
                        counter = self._hash(key, ttl_ms, now)
                        touched[key] = (counter, ttl_ms)
                if fld[0] == SET_IF_ABSENT:
                    append(_put_if_absent(counter, SLOT[fld[1:]], amount))
                else:
                    slot = SLOT[fld]
                    value = field_of(counter, slot) + amount
                    _put(counter, slot, value)
                    append(value)
            results.append(CommitResult(released, values, refused=refused))
        return results

    def apply_now(self, releases: list[tuple[str, tuple[str, str] | None]], adds: dict[str, KeyAdds]
                  ) -> tuple[list[tuple[bool, bool]], dict[str, list[int | None]]]:
        """A batch's commit with its amounts summed per counter (see budget/batch_commit.py):
        first each span's reservation (id, its span's workflow and tenant), then each key's
        sums. -> ((released, refused) per release, each key's counter after: its fields in the
        places of counters.SLOT, read with `field_of`)."""
        now = self.clock()
        outcomes = self._release_bound(releases)
        # The counters themselves, not copies: the caller reads them before anything else runs.
        after: dict[str, list[int | None]] = {}
        hashes = self.counters
        expiry_of: dict[int, float] = {}  # one expiry float per TTL, shared by the call's keys
        for key, add in adds.items():
            # _hash inlined: this runs for every counter a batch touches.
            counter = hashes.get(key)
            if counter is None:
                # made at its size at once (a list grown place by place keeps spare room)
                counter = hashes[key] = [None] * (max(map(SLOT.__getitem__, (*add.sums, *add.if_absent)),
                                                      default=-1) + 1)
                if len(hashes) > self.max_keys:
                    self._evict()
            ttl_ms = add.ttl_ms
            if ttl_ms:
                self._touch(key, ttl_ms, now, expiry_of)
            for fld, amount in add.sums.items():
                slot = SLOT[fld]
                _put(counter, slot, field_of(counter, slot) + amount)
            for fld, amount in add.if_absent.items():
                _put_if_absent(counter, SLOT[fld], amount)
            after[key] = counter
        return outcomes, after

    def _release_bound(self, releases: list[tuple[str, tuple[str, str] | None]]) -> list[tuple[bool, bool]]:
        """Each (reservation id, its span's workflow and tenant): (released, refused)."""
        reservations = self.reservations
        outcomes = []
        for rid, binding in releases:
            entry = reservations.get(rid)
            if entry is not None and binding is not None and not binding_admits(entry[2], binding):
                outcomes.append((False, True))  # made for another workflow or tenant: left for its own span
            else:
                outcomes.append((self._release(rid), False))
        return outcomes

    def apply_sums(self, releases: list[tuple[str, tuple[str, str] | None]], sums: dict[str, list[int]]
                   ) -> tuple[list[tuple[bool, bool]], dict[str, list[int | None]]]:
        """apply_now for the plain batch commit (no policy, no velocity), its adds as bare lists:
        key -> [ttl ms, usd] (a window) or [ttl ms, usd, tokens, steps, start] (a workflow, its
        start set when absent). The same counters, expiries, touch order and eviction as
        apply_now given the same keys in the same order with KeyAdds of those sums: one list
        per key instead of a KeyAdds and its two dicts."""
        now = self.clock()
        outcomes = self._release_bound(releases) if releases else []
        if native_add_sums is not None:
            after = native_add_sums(self.counters, self.expires, self._by_ttl, sums, now, self.max_keys, self._evict)
        else:
            after = self._add_sums(sums, now)
        return outcomes, after

    def _touch(self, key: str, ttl_ms: int, now: float, expiry_of: dict[int, float]) -> None:
        """`key` expires `ttl_ms` after `now` and is touched last among its TTL's keys (the
        order eviction by age reads); one expiry float per TTL per call, kept in `expiry_of`."""
        expiry = expiry_of.get(ttl_ms)
        if expiry is None:
            expiry = expiry_of[ttl_ms] = now + ttl_ms / 1000.0
        self._expire_at(key, ttl_ms, expiry)

    def _add_sums(self, sums: dict[str, list[int]], now: float) -> dict[str, list[int | None]]:
        """apply_sums' adds, in Python: the oracle of the native one (`costctx_native._core.
        add_list_sums`, native/src/budget.rs), which serves when built."""
        after: dict[str, list[int | None]] = {}
        hashes = self.counters
        expiry_of: dict[int, float] = {}
        max_keys = self.max_keys
        for key, add in sums.items():
            counter = hashes.get(key)
            ttl_ms = add[0]
            if counter is None:
                # as apply_now: the batch's sums as they stand (usd, tok, steps, start: the
                # counters.FIELDS places)
                counter = hashes[key] = add[1:]
                if len(hashes) > max_keys:
                    self._evict()
            else:
                if len(counter) < len(add) - 1:  # made by a check with fewer fields
                    counter.extend([None] * (len(add) - 1 - len(counter)))
                counter[0] = (counter[0] or 0) + add[1]
                if len(add) != 2:
                    counter[1] = (counter[1] or 0) + add[2]
                    counter[2] = (counter[2] or 0) + add[3]
                    if counter[3] is None:
                        counter[3] = add[4]
            if ttl_ms:
                self._touch(key, ttl_ms, now, expiry_of)
            after[key] = counter
        return after

    def release_now(self, reservation_id: str) -> bool:
        return self._release(reservation_id)

    def trip_now(self, key: str, seconds: float, tag: str = "") -> None:
        self.flags[key] = self.clock() + seconds

    # -- the async interface both backends share ---------------------------------------------
    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def check(self, plan: CheckPlan) -> CheckOutcome:
        return self.check_now(plan)

    async def commit(self, ops: list[CommitOp]) -> list[CommitResult]:
        return self.commit_now(ops)

    async def release(self, reservation_id: str) -> bool:
        return self.release_now(reservation_id)

    async def trip(self, key: str, seconds: float, tag: str = "") -> None:
        self.trip_now(key, seconds)

    def tick(self, now: float) -> None:
        wall = self.clock()
        self.reap(wall)
        if wall >= self._next_sweep:  # a full pass over the keys, so not on every tick
            self.sweep(wall)
            self._next_sweep = wall + 5.0
