"""The recorder keeps batch tallies by signature and expands them into per-field counts and
readiness rows when read: what it reports must be what expanding every batch at once gives."""

from __future__ import annotations

import random
from collections import Counter

from costctx.survival import recorder as recorder_module
from costctx.survival.recorder import OUTCOMES, SurvivalRecorder


def _batches(rng: random.Random, fields: int, extra: int, count: int):
    for _ in range(count):
        spans, llm = Counter(), Counter()
        for _ in range(rng.randint(1, 30)):
            sig = tuple(rng.choice((0, 0, 0, 1, 2, 3, 4)) for _ in range(fields))
            spans[(rng.choice(("agent", "tools")), rng.choice((None, 0, 1)), sig)] += rng.randint(1, 5)
            if rng.random() < 0.5:
                usage = tuple(rng.random() < 0.8 for _ in range(extra + 1))
                llm[(rng.choice(("research", None)), sig, usage)] += rng.randint(1, 3)
        yield spans, llm


def _expected_counts(batches, fields) -> Counter:
    expected: Counter = Counter()
    for spans, _ in batches:
        for (hop, _, sig), n in spans.items():
            for key, code in zip(fields, sig, strict=True):
                expected[(hop, key, OUTCOMES[code])] += n
    return expected


def test_counts_and_readiness_read_between_batches_are_the_eager_expansion():
    lazy, eager = SurvivalRecorder(), SurvivalRecorder()
    per_batch: list[Counter] = []
    eager.add_listener(per_batch.append)  # a listener makes the recorder expand every batch
    batches = list(_batches(random.Random(7), len(lazy.fields), len(lazy.extra_keys), 60))
    for i, (spans, llm) in enumerate(batches):
        lazy.record_batch(spans, llm)
        eager.record_batch(spans, llm)
        if i % 7 == 6:  # reads in between: what was expanded stays, later batches add to it
            assert lazy.snapshot_counts() == +_expected_counts(batches[: i + 1], lazy.fields)
    assert lazy.snapshot_counts() == eager.snapshot_counts() == +_expected_counts(batches, lazy.fields)
    assert sum(per_batch, Counter()) == _expected_counts(batches, lazy.fields)
    readiness = lazy.snapshot_all().readiness
    assert readiness == eager.snapshot_all().readiness
    assert sum(r.llm_spans for r in readiness.values()) == sum(sum(llm.values()) for _, llm in batches)


def test_unread_tallies_stay_bounded(monkeypatch):
    monkeypatch.setattr(recorder_module, "MAX_UNEXPANDED", 50)
    recorder = SurvivalRecorder()
    batches = list(_batches(random.Random(11), len(recorder.fields), len(recorder.extra_keys), 80))
    for spans, llm in batches:
        recorder.record_batch(spans, llm)
        assert len(recorder._by_signature) <= 50 + len(spans)
        assert all(len(pending) <= 50 + len(llm) for _, _, pending in recorder._readiness_buckets)
    assert recorder.snapshot_counts() == +_expected_counts(batches, recorder.fields)


def test_spend_rows_and_folded_counts_are_the_uncached_lookups_batch_after_batch():
    # A raw (workflow, dimensions) is looked up once and its row reused, but only when the
    # lookup folded nothing: values past a label's bound, and rows past the joint bound, are
    # counted every time they arrive, as the first lookup counted them.
    rng = random.Random(3)
    cached, plain = SurvivalRecorder(max_label_values=3), SurvivalRecorder(max_label_values=3)
    dims = len(cached.spend_dimensions)
    for _ in range(40):
        spend = {}
        for _ in range(rng.randint(1, 12)):
            key = (rng.choice(("a", "b", "c", "d", "e", None, "")),
                   tuple(rng.choice(("x", "y", "z", "w", None)) for _ in range(dims)), rng.random() < 0.3)
            row = spend.setdefault(key, [0, 0])
            row[0] += rng.randint(1, 10**12)
            row[1] += 1
        cached.record_batch(Counter(), None, spend)
        plain._spend_by_raw.clear()  # every lookup uncached
        plain.record_batch(Counter(), None, spend)
    assert cached.label_overflows() == plain.label_overflows()
    assert cached.label_overflows()["workflow"] > 0 and cached.label_overflows()["spend_row"] > 0
    assert cached.snapshot_counts() == plain.snapshot_counts()
    assert {k: vars(r) for k, r in cached._spend.items()} == {k: vars(r) for k, r in plain._spend.items()}


def test_hops_and_workflows_labelled_once_per_batch_count_each_fold_as_asked_each_time():
    # record_batch labels each kept hop and workflow once per batch; a value folded into
    # `other` is still asked (and counted) once per tally key, as a lookup per key did.
    recorder = SurvivalRecorder(max_label_values=2)
    sig = (0,) * len(recorder.fields)
    other = tuple(1 for _ in recorder.fields)
    usage = (True,) * (len(recorder.extra_keys) + 1)
    spans = Counter({("a", 0, sig): 1, ("a", 1, sig): 2, ("b", 0, sig): 1, ("c", 0, sig): 3, ("c", 1, other): 1,
                     ("d", None, sig): 1})
    llm = Counter({("w1", sig, usage): 1, ("w1", other, usage): 1, ("w2", sig, usage): 1, ("w3", sig, usage): 2,
                   ("w3", other, usage): 1})
    for _ in range(2):
        recorder.record_batch(spans, llm)
    folded = recorder.label_overflows()
    assert folded["hop"] == 2 * 3 and folded["workflow"] == 2 * 2  # c twice, d once; w3 twice
    snapshot = recorder.snapshot_all()
    assert snapshot.hop_spans == {"a": 6, "b": 2, "other": 10}
    assert snapshot.readiness["other"].llm_spans == 6 and snapshot.readiness["w1"].llm_spans == 4


def _as_bytes(spans: Counter, llm: Counter) -> tuple[Counter, Counter]:
    """The same tallies with each signature as bytes (what the envelope processor gives)."""
    return (Counter({(hop, depth, bytes(sig)): n for (hop, depth, sig), n in spans.items()}),
            Counter({(workflow, bytes(sig), usage): n for (workflow, sig, usage), n in llm.items()}))


def test_signatures_as_bytes_count_and_read_as_tuples():
    """Signatures as bytes (hash cached) or tuples of codes: the same matrix and readiness,
    with or without listeners, and when a recorder is fed both kinds."""
    rng = random.Random(13)
    as_tuples, as_bytes, mixed = SurvivalRecorder(), SurvivalRecorder(), SurvivalRecorder()
    heard: list[Counter] = []
    as_bytes.add_listener(heard.append)
    batches = list(_batches(rng, len(as_tuples.fields), len(as_tuples.extra_keys), 40))
    for i, (spans, llm) in enumerate(batches):
        as_tuples.record_batch(spans, llm)
        as_bytes.record_batch(*_as_bytes(spans, llm))
        mixed.record_batch(*(_as_bytes(spans, llm) if i % 2 else (spans, llm)))
    expected = +_expected_counts(batches, as_tuples.fields)
    assert as_tuples.snapshot_counts() == as_bytes.snapshot_counts() == mixed.snapshot_counts() == expected
    assert sum(heard, Counter()) == _expected_counts(batches, as_tuples.fields)
    readiness = as_tuples.snapshot_all().readiness
    assert readiness == as_bytes.snapshot_all().readiness == mixed.snapshot_all().readiness
    assert sum(r.llm_spans for r in readiness.values()) == sum(sum(llm.values()) for _, llm in batches)
