"""The memory store's commit: each change's value afterwards and each key's expiry, when one
op's changes repeat a key (its lookup is reused for consecutive changes of one key and TTL)."""

import pytest

from costctx.budget.memory import MemoryStore
from costctx.budget.store import SET_IF_ABSENT, CommitOp, KeyAdds


def test_consecutive_changes_of_one_key_keep_each_ttl_and_value():
    store = MemoryStore(clock=lambda: 1000.0)
    changes = [("wf|a", "usd", 5, 1_000), ("wf|a", "tok", 7, 1_000), ("t|x", "usd", 5, 0),
               ("wf|a", SET_IF_ABSENT + "start", 42, 1_000), ("wf|a", "usd", 1, 1_000), ("t|x", "usd", 2, 0),
               ("wf|b", "usd", 3, 1_000), ("wf|b", "tok", 4, 9_000)]
    [result] = store.commit_now([CommitOp(None, changes)])
    assert result.values == [5, 7, 5, 42, 6, 7, 3, 4]
    assert store.hashes == {"wf|a": {"usd": 6, "tok": 7, "start": 42}, "t|x": {"usd": 7},
                            "wf|b": {"usd": 3, "tok": 4}}
    # The last change of a key sets its expiry, even right after one of another TTL; a TTL
    # of 0 leaves a key without one.
    assert store.expires == {"wf|a": 1001.0, "wf|b": 1009.0}


def test_the_next_op_looks_its_keys_up_again():
    store = MemoryStore(clock=lambda: 1000.0)
    results = store.commit_now([CommitOp(None, [("wf|a", "usd", 5, 1_000)]),
                                CommitOp(None, [("wf|a", "usd", 3, 2_000), ("wf|b", "usd", 1, 2_000)])])
    assert [r.values for r in results] == [[5], [8, 1]]
    assert store.expires == {"wf|a": 1002.0, "wf|b": 1002.0}


def test_a_key_seen_earlier_in_the_call_takes_each_later_ttl():
    # The counter of a key is looked up once per call; its expiry still follows the last TTL
    # named for it, across ops (A, then B, then A again).
    store = MemoryStore(clock=lambda: 1000.0)
    results = store.commit_now([CommitOp(None, [("wf|a", "usd", 5, 1_000), ("t|x", "usd", 1, 4_000)]),
                                CommitOp(None, [("wf|a", "usd", 3, 2_000)]),
                                CommitOp(None, [("t|x", "usd", 2, 4_000), ("wf|a", "usd", 1, 1_000)])])
    assert [r.values for r in results] == [[5, 1], [8], [3, 9]]
    assert store.hashes == {"wf|a": {"usd": 9}, "t|x": {"usd": 3}}
    assert store.expires == {"wf|a": 1001.0, "t|x": 1004.0}


def _one_workflow_batch(store: MemoryStore, serial: int) -> None:
    store.apply_now([], {f"wf|{serial}": KeyAdds(60_000, {"usd": 1}), "t|acme|h": KeyAdds(7_200_000, {"usd": 1})})


def test_a_sweep_looks_only_at_what_expired_however_many_workflows_live():
    """A sidecar running for hours keeps a day of workflows: its periodic sweep must not pass
    over all of them (it did: a list of every key every 5 s)."""
    clock = [1000.0]
    store = MemoryStore(clock=lambda: clock[0])
    for serial in range(20_000):  # live workflows, none expired
        clock[0] += 0.001
        _one_workflow_batch(store, serial)
    before = store.sweep_visits
    store.sweep(clock[0])
    assert store.sweep_visits - before <= 2  # one look at each TTL's oldest key
    clock[0] += 30.0
    for serial in range(20_000, 20_010):
        _one_workflow_batch(store, serial)
    clock[0] = 1000.0 + 60.0 + 10.0  # the first ~10,000 workflows have expired
    before = store.sweep_visits
    store.sweep(clock[0])
    gone = 20_010 - sum(1 for key in store.hashes if key.startswith("wf|"))
    assert 9_000 < gone < 11_000
    assert store.sweep_visits - before <= gone + 2  # the expired, plus one live key per TTL
    assert "t|acme|h" in store.hashes and len(store.expires) == len(store.hashes)


def test_the_store_forgets_the_least_recently_touched_keys_past_its_bound():
    clock = [1000.0]
    store = MemoryStore(clock=lambda: clock[0], max_keys=100)
    for serial in range(1_000):
        clock[0] += 1.0
        _one_workflow_batch(store, serial)
        store.apply_now([], {"t|acme|h": KeyAdds(7_200_000, {"usd": 1})})  # touched by every batch
    assert len(store.hashes) == 100 and store.evicted_total == 901
    assert store.hashes["t|acme|h"] == {"usd": 2_000}  # kept: touched last, not first
    assert {f"wf|{serial}" for serial in range(901, 1_000)} <= store.hashes.keys()
    assert len(store.expires) == 100


def test_the_default_counter_bound_fits_a_sidecar_container():
    # The memory backend's bound, at the bytes a workflow counter really takes, must leave
    # room in the sidecar's 256Mi limit (k8s/base) for the other processors' caches.
    import tracemalloc

    store = MemoryStore(clock=lambda: 1_790_000_000.0)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(10_000):
            counter = store._hash(f"wf|acme|{{t}}|wf-{i:08d}", 86_400_000, 1_790_000_000.0)
            counter.extend([1_000_000 + i, 4_000 + i, 3])  # usd, tok, steps (counters.FIELDS)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    per_key = sum(d.size_diff for d in after.compare_to(before, "filename")) / 10_000
    assert 200 < per_key < 2_000  # measured ~400
    assert MemoryStore().max_keys * per_key < 64 * 2**20


def test_past_a_large_bound_a_chunk_of_the_least_recently_touched_goes_at_once():
    # max_keys 6,400: 100 keys leave together (one pass over the touch orders, not one per key).
    clock = [1000.0]
    store = MemoryStore(clock=lambda: clock[0], max_keys=6_400)
    for serial in range(10_000):
        clock[0] += 0.01
        _one_workflow_batch(store, serial)
    assert 6_300 <= len(store.hashes) <= 6_400 and store.evicted_total == 10_001 - len(store.hashes)
    assert store.hashes["t|acme|h"] == {"usd": 10_000}  # touched by every batch: never the oldest
    assert {f"wf|{serial}" for serial in range(10_000 - 6_299, 10_000)} <= store.hashes.keys()
    assert len(store.expires) == len(store.hashes) == sum(len(order) for order in store._by_ttl.values())


@pytest.mark.parametrize("path", ["apply_now", "apply_sums"])
def test_a_workflow_counter_costs_under_340_bytes_on_the_commit_paths(path):
    # The batch commit's paths, three fields (and the start on apply_sums'): ~384 and ~418
    # bytes per key with a dict per counter (184 bytes each); ~280 and ~322 with a list of the
    # fields' places (counters.FIELDS, 80-88 bytes), made at its size.
    import tracemalloc

    store = MemoryStore(clock=lambda: 1_790_000_000.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for b in range(100):
            keys = [f"wf|acme|{{t}}|wf-{b * 100 + i:08d}" for i in range(100)]
            if path == "apply_now":
                store.apply_now([], {key: KeyAdds(86_400_000, {"usd": 1_000_000 + i, "tok": 4_000 + i, "steps": 3})
                                     for i, key in enumerate(keys)})
            else:
                store.apply_sums([], {key: [86_400_000, 1_000_000 + i, 4_000 + i, 3, 1_790_000_000_000 + i]
                                      for i, key in enumerate(keys)})
        per_key = (tracemalloc.get_traced_memory()[0] - before) / 10_000
    finally:
        tracemalloc.stop()
    assert 200 < per_key < 340


def test_a_batch_adds_to_a_new_counter_and_to_one_it_finds_alike():
    # A new counter starts as the batch's sums (a copy: the caller's KeyAdds stays its own);
    # one found adds them; a field set when absent is set once, never added.
    store = MemoryStore(clock=lambda: 1000.0)
    first = KeyAdds(60_000, {"usd": 5, "tok": 3, "steps": 1}, {"start": 100})
    _, after = store.apply_now([], {"wf|a": first})
    assert after["wf|a"] == [5, 3, 1, 100]  # usd, tok, steps, start (counters.FIELDS)
    assert after["wf|a"] is not first.sums and first.sums == {"usd": 5, "tok": 3, "steps": 1}
    _, after = store.apply_now([], {"wf|a": KeyAdds(60_000, {"usd": 2, "tok": 1, "steps": 1}, {"start": 200})})
    assert after["wf|a"] == [7, 4, 2, 100]
    assert store.expires["wf|a"] == 1060.0


def _store_state(store: MemoryStore) -> tuple:
    return (store.hashes, store.expires, {ttl: list(order.items()) for ttl, order in store._by_ttl.items()},
            store.evicted_total, store.reservations)


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_apply_sums_leaves_what_apply_now_leaves_batch_after_batch(native, monkeypatch):
    # The plain batch commit's lists against KeyAdds: the same counters (their field order
    # too), expiries, touch order per TTL (what eviction reads), evictions past the bound and
    # reservations released or refused; with the native adds (add_sums) and their Python oracle.
    import random

    from costctx.budget import memory

    if native and memory.native_add_sums is None:
        pytest.skip("costctx_native not built")
    if not native:
        monkeypatch.setattr(memory, "native_add_sums", None)
    rng = random.Random(7)
    clock = [1000.0]
    stores = [MemoryStore(clock=lambda: clock[0], max_keys=40) for _ in range(2)]
    for store in stores:
        for n in range(3):
            store.reservations[f"r{n}"] = (2000.0, [], ("w1" if n else "w2", "acme"))
        for n in range(0, 60, 3):
            store.put_fields(f"wf|w{n}", {"usd_r": 5})  # made by a check: no amount, no start yet
            store.put_fields(f"wf|w{n + 1}", {})  # made by a check that only read it: no field at all
        store.put_fields("t|acme|h|1", {"usd_r": 2})  # a window a check holds an amount on
    for _ in range(30):
        clock[0] += rng.uniform(0, 5)
        sums: dict[str, list[int]] = {}
        for _ in range(rng.randrange(1, 12)):
            if rng.random() < 0.6:
                key, ttl = f"wf|w{rng.randrange(60)}", 86_400_000
                add = sums.setdefault(key, [ttl, 0, 0, 0, rng.randrange(1, 10**12)])
                add[1] += rng.randrange(0, 10**6) if rng.random() < 0.9 else 10**20
                add[2] += rng.randrange(0, 999)
                add[3] += 1
            else:
                key, ttl = f"t|acme|h|{rng.randrange(4)}", rng.choice([7_200_000, 0])
                add = sums.setdefault(key, [ttl, 0])
                add[1] += rng.randrange(0, 10**6)
        adds = {key: KeyAdds(add[0], {"usd": add[1]}) if len(add) == 2 else
                KeyAdds(add[0], {"usd": add[1], "tok": add[2], "steps": add[3]}, {"start": add[4]})
                for key, add in sums.items()}
        releases = [(f"r{rng.randrange(4)}", rng.choice([("w1", "acme"), ("w2", ""), None]))
                    for _ in range(rng.randrange(3))]
        got = stores[0].apply_sums(list(releases), {key: list(add) for key, add in sums.items()})
        want = stores[1].apply_now(list(releases), adds)
        assert got == want
        assert [list(counter) for counter in got[1].values()] == [list(counter) for counter in want[1].values()]
        assert _store_state(stores[0]) == _store_state(stores[1])
    assert stores[0].evicted_total  # the bound was passed: eviction order compared too


def test_a_counter_the_native_adds_make_is_nothing_for_the_gc_to_walk():
    # A list of ints is a container the cyclic GC tracks until told otherwise (a dict of ints
    # never was): 50,000 counters at the bound would be 50,000 more objects for every full
    # collection to walk. The native adds make them untracked; a counter they add to stays so.
    import gc

    from costctx.budget import memory

    if memory.native_add_sums is None:
        pytest.skip("costctx_native not built")
    store = MemoryStore(clock=lambda: 1000.0)
    sums = {"wf|a": [60_000, 5, 3, 1, 100], "t|acme|h": [7_200_000, 5]}
    _, after = store.apply_sums([], {key: list(add) for key, add in sums.items()})
    _, after = store.apply_sums([], {key: list(add) for key, add in sums.items()})
    assert after == {"wf|a": [10, 6, 2, 100], "t|acme|h": [10]}
    assert not any(gc.is_tracked(counter) for counter in store.counters.values())
