"""The memory store's commit: each change's value afterwards and each key's expiry, when one
op's changes repeat a key (its lookup is reused for consecutive changes of one key and TTL)."""

from costctx.budget.memory import MemoryStore
from costctx.budget.store import SET_IF_ABSENT, CommitOp


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
