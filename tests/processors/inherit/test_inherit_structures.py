"""The inherit processor's ancestor cache (one dict, per-source chunks of keys) against the
per-source ordered dicts it replaced, kept here as the reference model: same answers, sizes,
evictions and disputes over random puts, gets and clock steps."""

from __future__ import annotations

import random
from collections import Counter as CounterType
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costctx.processors.inherit.context_cache import (
    NO_CONTEXT,
    OTHER_SOURCES,
    ContextCache,
    Known,
    NativeContextCache,
    TraceValues,
    _AncestorTable,
    _disagree,
    _TraceVotes,
    _vote_key,
)


class ReferenceCache:
    """The ancestor cache before it became one dict with chunks (2e617da), in behaviour, but
    for one change: due entries are dropped at every read and write (`_drop_due`), as the new
    one does, rather than at the next tick only (until then they counted against the bound and
    could push out a live entry); and a span sent again keeps its entry's place and age (its
    fields taken when they agree) rather than moving to the end with a new age (a disputed one
    moved to the end with its old age, outliving it until the entries before it aged out)."""

    def __init__(self, max_entries: int, ttl: float, timer, max_sources: int) -> None:
        self.max_entries, self.ttl, self._timer, self._max_sources = max_entries, ttl, timer, max_sources
        self._parts: dict[str, OrderedDict] = {}
        self._where: dict[bytes, OrderedDict] = {}
        self._source_of: dict[int, str] = {}
        self.evicted: CounterType[str] = CounterType()
        self.disputed = 0

    def _drop_due(self) -> None:
        now = self._timer()
        if any(part and now >= next(iter(part.values()))[1] for part in self._parts.values()):
            self.expire()

    def get(self, key):
        self._drop_due()
        part = self._where.get(key)
        if part is None:
            return None
        known, expires = part[key]
        return None if self._timer() >= expires else known

    def put(self, key, known) -> None:
        self._drop_due()
        now = self._timer()
        where = self._where
        old_part = where.get(key)
        if old_part is not None:  # (changed, see above: in its place, with its age)
            old, expires = old_part[key]
            disputed = old is None or _disagree(old.fields, known.fields)
            self.disputed += disputed and old is not None
            old_part[key] = (None if disputed else known, expires)
            return
        part = self._partition(known.hop if known.fields else NO_CONTEXT)
        part[key] = (known, now + self.ttl)
        where[key] = part
        if len(where) > self.max_entries:
            self._evict(part)

    def _partition(self, source):
        part = self._parts.get(source)
        if part is None:
            if len(self._parts) >= self._max_sources + 1 and source not in (NO_CONTEXT, OTHER_SOURCES):
                return self._partition(OTHER_SOURCES)  # (fixed: asking again for OTHER recursed)
            part = self._parts[source] = OrderedDict()
            self._source_of[id(part)] = source
        return part

    def _evict(self, inserting) -> None:
        parts = self._parts
        victim = parts.get(NO_CONTEXT)
        if not victim:
            sizes = [p for p in parts.values() if p]
            fair = self.max_entries / max(len(sizes), 1)
            victim = inserting if len(inserting) >= fair else max(sizes, key=len)
        key, _ = victim.popitem(last=False)
        del self._where[key]
        self.evicted[self._source_of[id(victim)]] += 1

    def expire(self) -> None:
        now = self._timer()
        for source, part in list(self._parts.items()):
            while part:
                key = next(iter(part))
                if now < part[key][1]:
                    break
                del part[key]
                del self._where[key]
            if not part and source not in (NO_CONTEXT, OTHER_SOURCES):
                del self._parts[source]
                del self._source_of[id(part)]

    def __len__(self) -> int:
        return len(self._where)


def state(known: Known | None) -> tuple | None:
    """What a Known says, fields in their order (the order a child's repair is written in):
    the native table answers an equal Known, not always the object put."""
    if known is None:
        return None
    # The fallback is a set: its iteration order follows the string hashes (the process's hash
    # seed) and the order it was built in, so it is compared as a set.
    return tuple(known.fields.items()), type(known.depth), known.hop, known.depth, frozenset(known.fallback)


CACHES = [ContextCache] + ([NativeContextCache] if _AncestorTable is not None else [])


@pytest.mark.parametrize("cache_class", CACHES)
@pytest.mark.parametrize("seed", range(12))
def test_the_ancestor_cache_answers_as_the_reference_model(seed, cache_class):
    rng = random.Random(seed)
    clock = [100.0]
    timer = lambda: clock[0]  # noqa: E731
    max_entries, ttl, max_sources = rng.choice([(5, 3.0, 2), (20, 5.0, 3), (60, 2.0, 256)])
    cache = cache_class(max_entries, ttl, timer, max_sources=max_sources)
    model = ReferenceCache(max_entries, ttl, timer, max_sources)
    keys = [bytes([k]) * 24 for k in range(rng.choice([10, 40, 120]))]
    sources = ["a", "b", "c", "d", "e"]
    values = [{}, {"workflow.id": "w1"}, {"workflow.id": "w2"}, {"workflow.id": "w1", "owner.team": "t"}]
    knowns = [Known(fields, source, 0, frozenset()) for fields in values for source in sources]
    for _ in range(3000):
        op = rng.random()
        if op < 0.55:
            key, known = rng.choice(keys), rng.choice(knowns)
            if rng.random() < 0.5:
                cache.now = clock[0]  # as a batch does: puts at the batch's time
            cache.put(key, known)
            cache.now = None
            model.put(key, known)
            assert len(cache) == len(model)
        elif op < 0.85:
            key = rng.choice(keys)
            assert state(cache.get(key)) == state(model.get(key)), key
        elif op < 0.95:
            clock[0] += rng.choice([0.5, 1.0, 2.5])
        else:
            cache.expire()
            model.expire()
            assert len(cache) == len(model)
        assert cache.evicted == model.evicted and cache.disputed == model.disputed
        assert len(cache) <= max_entries
    cache.expire()
    model.expire()
    assert len(cache) == len(model)
    assert sorted(cache.sources) == sorted(model._parts)


@pytest.mark.parametrize("cache_class", CACHES)
def test_sources_past_the_limit_share_one_place_in_the_cache(cache_class):
    """More services than the cache has places for: the rest share `(other)` (this recursed
    without end once every place was taken, failing the batch)."""
    cache = cache_class(10, 60.0, lambda: 0.0, max_sources=2)
    for i, source in enumerate(["a", "b", "c", "d", "e"] * 4):
        cache.put(bytes([i]) * 24, Known({"workflow.id": "w"}, source, 0, frozenset()))
    assert len(cache) == 10 and set(cache.sources) == {"a", "b", "c", OTHER_SOURCES}  # 2 + NO_CONTEXT
    assert sum(cache.evicted.values()) == 10


# Keys as the network may send them: 24 bytes (16 + 8), shorter, longer (forged ids), empty.
_KEYS = [bytes([k]) * 24 for k in range(12)] + [b"", b"\x01" * 8, b"\x02" * 25, b"\x03" * 40, b"\x00" * 24]
_FIELDS = [{}, {"workflow.id": "w1"}, {"workflow.id": "w2"}, {"workflow.id": "w1", "owner.team": "t"},
           {"workflow.id": 1}, {"workflow.id": True}, {"owner.team": None}, {"owner.team": "t", "workflow.id": "w1"},
           {"workflow.id": "w\u00e9\U0001f600"},
           # One new text twice in a Known (other objects; a value equal to a hop): held once
           # per place, from the one read of the Known.
           {"workflow.id": "tt", "owner.team": "".join(["t", "t"]), "owner.user": "svc-3"}]
# (depth, fallback) of a Known: ints, None and a bool (kept as the object), trace-filled fields.
_SHAPES = [(0, frozenset()), (2, frozenset()), (None, frozenset()), (True, frozenset()),
           (1, frozenset({"workflow.id"})), (-(2**40), frozenset({"owner.team", "workflow.id"}))]
_cache_ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.integers(0, len(_KEYS) - 1), st.integers(0, len(_FIELDS) - 1),
              st.integers(0, 299), st.booleans(), st.integers(0, len(_SHAPES) - 1), st.booleans()),
    st.tuples(st.just("get"), st.integers(0, len(_KEYS) - 1)),
    st.tuples(st.just("tick"), st.sampled_from([0.5, 1.0, 2.5, 7.0])),
    st.tuples(st.just("expire")),
), max_size=300)


@pytest.mark.skipif(_AncestorTable is None, reason="costctx_native not built")
@settings(max_examples=150, deadline=None)
@given(ops=_cache_ops, bounds=st.sampled_from([(4, 3.0, 2), (12, 5.0, 3), (40, 2.0, 256), (6, 1.0, 300)]))
def test_the_native_table_is_the_python_cache(ops, bounds):
    """The native ancestor table against its oracle, op for op: same answers (equal Known
    objects, fields in the same order; native records when all strings), sizes, evictions
    per source, disputes and sources, up to 300 sources (past the 256 with a place of their
    own), forged key lengths, disputed resends, equal Known objects put apart."""
    max_entries, ttl, max_sources = bounds
    clock = [50.0]
    timer = lambda: clock[0]  # noqa: E731
    oracle = ContextCache(max_entries, ttl, timer, max_sources=max_sources)
    native = NativeContextCache(max_entries, ttl, timer, max_sources=max_sources)
    knowns: dict = {}
    for op in ops:
        if op[0] == "put":
            _, key, fields, source, batch_time, shape, fresh = op
            depth, fallback = _SHAPES[shape]
            known = Known(dict(_FIELDS[fields]), f"svc-{source}", depth, fallback)
            if not fresh:  # else an equal Known, another object (as siblings' decisions are)
                known = knowns.setdefault((fields, source, shape), known)
            for cache in (oracle, native):
                cache.now = clock[0] if batch_time else None
                cache.put(_KEYS[key], known)
                cache.now = None
        elif op[0] == "get":
            assert state(native.get(_KEYS[op[1]])) == state(oracle.get(_KEYS[op[1]]))
        elif op[0] == "tick":
            clock[0] += op[1]
        else:
            oracle.expire()
            native.expire()
        assert len(native) == len(oracle) <= max_entries
        assert native.evicted == oracle.evicted and native.disputed == oracle.disputed
        assert native.sources == oracle.sources
    oracle.expire_due(clock[0])
    native.expire_due(clock[0])
    assert [state(native.reader()(k)) for k in _KEYS] == [state(oracle.reader()(k)) for k in _KEYS]



# A batch of puts and reads at one time: (key, fields, source, shape, the batch's dict of those
# fields or a new one) per put; a read is (key,).
_batch_ops = st.lists(st.lists(st.one_of(
    st.tuples(st.integers(0, len(_KEYS) - 1), st.integers(0, len(_FIELDS) - 1), st.integers(0, 4),
              st.integers(0, len(_SHAPES) - 1), st.integers(0, 2)),
    st.tuples(st.integers(0, len(_KEYS) - 1)),
), min_size=1, max_size=30), min_size=1, max_size=8)


@pytest.mark.skipif(_AncestorTable is None, reason="costctx_native not built")
@settings(max_examples=150, deadline=None)
@given(batches=_batch_ops, bounds=st.sampled_from([(3, 3.0, 2), (5, 5.0, 3), (40, 2.0, 256)]))
def test_knowns_sharing_a_fields_dict_in_a_batch_are_put_as_the_python_cache_puts_them(batches, bounds):
    """Within a batch (one `now`), Knowns that share one fields dict with other hops, depths
    and fallbacks (a child that inherits everything takes its parent's dict) take their pairs
    from the record the dict was put with: the same answers as the oracle, also when that
    record went (evicted at a small bound) and its place holds another record since. A Known
    put again later in the batch (a shared decision, other puts between) is found by the
    object: the same answers, also when its record went meanwhile."""
    max_entries, ttl, max_sources = bounds
    clock = [50.0]
    timer = lambda: clock[0]  # noqa: E731
    oracle = ContextCache(max_entries, ttl, timer, max_sources=max_sources)
    native = NativeContextCache(max_entries, ttl, timer, max_sources=max_sources)
    for batch in batches:
        clock[0] += 1.0
        dicts: dict = {}
        knowns: dict = {}  # this batch's Known objects, by what they hold
        for cache in (oracle, native):
            cache.expire_due(clock[0])
            cache.now = clock[0]
        for op in batch:
            if len(op) == 1:
                assert state(native.reader()(_KEYS[op[0]])) == state(oracle.reader()(_KEYS[op[0]]))
                continue
            key, fields, source, shape, shared = op
            depth, fallback = _SHAPES[shape]
            held = dicts.setdefault(fields, dict(_FIELDS[fields])) if shared else dict(_FIELDS[fields])
            known = Known(held, f"svc-{source}", depth, fallback)
            if shared == 2:  # the object put before in this batch, if any
                known = knowns.setdefault((fields, source, shape), known)
            for cache in (oracle, native):
                cache.put(_KEYS[key], known)
            assert len(native) == len(oracle) <= max_entries
        for cache in (oracle, native):
            cache.now = None
        assert native.evicted == oracle.evicted and native.disputed == oracle.disputed
        assert [state(native.get(k)) for k in _KEYS] == [state(oracle.get(k)) for k in _KEYS]

@pytest.mark.skipif(_AncestorTable is None, reason="costctx_native not built")
def test_a_known_put_again_after_its_record_went_is_read_again():
    """A Known put earlier in the batch is found by the object only while its record is the
    one it stands for: here its record went (evicted at a bound of one) and its place holds
    another's, so the put reads it again and the table answers it, not the other."""
    cache = NativeContextCache(1, 10.0, lambda: 0.0)
    cache.now = 0.0
    first = Known({"workflow.id": "w1"}, "svc", 0, frozenset())
    cache.put(b"\x01" * 24, first)
    cache.put(b"\x02" * 24, Known({"workflow.id": "w2"}, "svc", 0, frozenset()))
    cache.put(b"\x03" * 24, Known({"workflow.id": "w3"}, "svc", 0, frozenset()))  # in first's place
    cache.put(b"\x04" * 24, first)
    assert state(cache.reader()(b"\x04" * 24)) == state(first)
    cache.now = None


@pytest.mark.skipif(_AncestorTable is None, reason="costctx_native not built")
def test_the_native_table_keeps_one_record_per_distinct_known():
    """Spans that left with equal fields (other dicts, other Known objects) share one native
    record; the record and its strings go when the last entry naming it does."""
    clock = [0.0]
    cache = NativeContextCache(100, 10.0, lambda: clock[0])
    table = cache._table
    fields = {"workflow.id": "w1", "owner.team": "t"}
    for i in range(50):
        cache.put(bytes([i]) * 24, Known(dict(fields), "svc", 1, frozenset()))
    assert len(cache) == 50 and table.records() == 1
    cache.put(b"\xff" * 24, Known({"owner.team": "t", "workflow.id": "w1"}, "svc", 1, frozenset()))  # other order
    assert table.records() == 2
    kept = Known({"workflow.id": 7}, "svc", 1, frozenset())  # not all strings: kept as the object
    cache.put(b"\xfe" * 24, kept)
    assert table.records() == 3 and cache.get(b"\xfe" * 24) is kept
    full = cache.nbytes
    clock[0] = 11.0
    cache.expire()
    assert len(cache) == 0 and table.records() == 0
    assert cache.nbytes < full


@pytest.mark.skipif(_AncestorTable is None, reason="costctx_native not built")
def test_within_a_batch_one_record_answers_one_object():
    """The processor's units are keyed by the parent's identity: two reads of one record in a
    batch (between two settings of `now`) answer the same object; equal after."""
    cache = NativeContextCache(100, 10.0, lambda: 0.0)
    cache.put(b"\x01" * 24, Known({"workflow.id": "w1"}, "svc", 0, frozenset({"workflow.id"})))
    cache.put(b"\x02" * 24, Known({"workflow.id": "w1"}, "svc", 0, frozenset({"workflow.id"})))
    cache.now = 0.0  # a batch starts: made again from the record
    read = cache.reader()
    first = read(b"\x01" * 24)
    assert first is read(b"\x02" * 24) is cache.get(b"\x01" * 24)
    assert state(first) == ((("workflow.id", "w1"),), int, "svc", 0, frozenset({"workflow.id"}))
    cache.now = None
    assert state(read(b"\x02" * 24)) == state(first)


_TRACE_IDS = [bytes([t]) * 16 for t in range(6)] + [b"", b"\x01" * 8, b"\x02" * 17]
_VOTE_FIELDS = ["workflow.id", "owner.tenant"]
_VOTE_VALUES = ["w1", "w2", "w\u00e9", 1, True, 1.0, [1, 2], {"a": 1}, None]
# Mostly a few traces and two string values (ties, majorities), sometimes any.
_trace = st.one_of(st.integers(0, 2), st.integers(0, len(_TRACE_IDS) - 1))
_value = st.one_of(st.integers(0, 1), st.integers(0, len(_VOTE_VALUES) - 1))
_vote_ops = st.lists(st.one_of(
    st.tuples(st.just("record"), _trace, st.integers(0, 1), _value, st.integers(1, 3), st.booleans()),
    st.tuples(st.just("lookup"), _trace, st.integers(0, 1)),
    st.tuples(st.just("record"), _trace, st.integers(0, 1), _value, st.integers(1, 3), st.booleans()),
    st.tuples(st.just("lookup"), _trace, st.integers(0, 1)),
    st.tuples(st.just("batch"), st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.5, 7.0])),
    st.tuples(st.just("expire"), st.sampled_from([0.0, 0.5, 2.5])),
), min_size=10, max_size=200)


@pytest.mark.skipif(_TraceVotes is None, reason="costctx_native not built")
@settings(max_examples=300, deadline=None)
@given(ops=_vote_ops, bounds=st.sampled_from([(3, 2.0), (5, 1.0), (50, 5.0)]))
def test_the_native_votes_are_the_python_trace_values(ops, bounds):
    """The native trace votes against TraceValues, op for op: the same answer to every lookup
    (the very value first carried), the same size, through batches (the clock steps between
    them, as the processor's do), ticks outside a batch, the bound (the oldest trace forgotten),
    ages, forged trace id lengths, values that are not strings (1, True and 1.0 vote apart)."""
    max_traces, ttl = bounds
    clock = [10.0]
    timer = lambda: clock[0]  # noqa: E731
    oracle = TraceValues(max_traces, ttl, timer)
    native = _TraceVotes(max_traces, ttl, timer, _vote_key)
    for op in ops:
        if op[0] == "record":
            _, trace, field, value, count, one = op
            for votes in (oracle, native):
                if one:
                    votes.record(_TRACE_IDS[trace], _VOTE_FIELDS[field], _VOTE_VALUES[value])
                else:
                    votes.record(_TRACE_IDS[trace], _VOTE_FIELDS[field], _VOTE_VALUES[value], count)
        elif op[0] == "lookup":
            expected = oracle.lookup(_TRACE_IDS[op[1]], _VOTE_FIELDS[op[2]])
            got = native.lookup(_TRACE_IDS[op[1]], _VOTE_FIELDS[op[2]])
            assert got is expected
        elif op[0] == "batch":
            clock[0] += op[1]
            oracle.new_batch()
            native.new_batch()
        else:
            clock[0] += op[1]
            oracle.expire()
            native.expire()
        assert len(native) == len(oracle) <= max_traces


@pytest.mark.skipif(_AncestorTable is None, reason="costctx_native not built")
def test_a_record_keeps_the_strings_it_shares_after_another_goes():
    """A new record holds every string it names, those already held by another record too:
    when that other record goes, this one still answers its content (read in a later batch,
    made again from the strings)."""
    clock = [0.0]
    cache = NativeContextCache(100, 10.0, lambda: clock[0])
    team = "".join(["te", "am"])  # another object than the literal below: found by its text
    cache.put(b"\x01" * 24, Known({"workflow.id": "w1", "owner.team": "team"}, "svc", 1, frozenset()))
    clock[0] = 5.0
    cache.put(b"\x02" * 24, Known({"workflow.id": "w2", "owner.team": team}, "svc", 2, frozenset()))
    clock[0] = 11.0
    cache.expire()  # the first record goes; its strings the second names stay
    assert len(cache) == 1 and cache._table.records() == 1
    cache.now = clock[0]  # a batch: the Known is made again from the record
    cache.put(b"\x03" * 24, Known({"workflow.id": "w3", "owner.team": "other"}, "svc2", 0, frozenset()))
    assert state(cache.get(b"\x02" * 24)) == state(Known({"workflow.id": "w2", "owner.team": "team"}, "svc", 2,
                                                        frozenset()))
    cache.now = None


@settings(max_examples=200, deadline=None)
@given(spans=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40), st.booleans(), st.booleans()),
                      min_size=1, max_size=12, unique_by=lambda s: s[1]))
def test_detaching_a_batch_s_held_spans_at_once_is_detach_then_account_each(spans):
    """Hold.detach_all(pending, payloads, notes) leaves the spans and the hold's byte counts as
    HeldSpan.detach then Hold.account for each did (a span no longer held counts no bytes)."""
    from costctx.pdata.codec.api import ResourceView
    from costctx.processors.inherit.hold import HeldSpan, Hold

    def held_spans() -> tuple[Hold, list[HeldSpan], list[bytes], dict]:
        hold = Hold(5.0)
        resource = ResourceView(service="svc", schema_url="", attrs={})
        pending, payloads, notes = [], [], {}
        for index, (trace, span, noted, removed) in enumerate(spans):
            trace_id, key = bytes([trace]) * 16, bytes([trace]) * 16 + bytes([span]) * 8
            held = HeldSpan(index, None, resource, trace_id, key, b"w" * 24, {})  # type: ignore[arg-type]
            assert hold.add(held, 0.0)
            if noted:
                notes[index] = {"repaired": {"owner.team"}}
            if removed:
                hold.remove(held)
            pending.append(held)
            payloads.append(bytes(span + 1))
        return hold, pending, payloads, notes

    oracle, expected, payloads, notes = held_spans()
    for held, payload in zip(expected, payloads, strict=True):
        held.detach(payload, notes.get(held.index))  # type: ignore[arg-type]
        oracle.account(held)
    hold, found, payloads, notes = held_spans()
    hold.detach_all(found, payloads, notes)
    fields = ("index", "payload", "notes", "nbytes")
    assert [[getattr(h, f) for f in fields] for h in found] == [[getattr(h, f) for f in fields] for h in expected]
    assert hold.nbytes == oracle.nbytes
    assert {t: trace.nbytes for t, trace in hold.traces.items()} == {
        t: trace.nbytes for t, trace in oracle.traces.items()}


@pytest.mark.skipif(_AncestorTable is None, reason="costctx_native not built")
def test_a_known_naming_a_str_subclass_is_kept_as_the_object():
    """The table finds the strings it holds by their address, without reading their type:
    an object of a str subclass, equal to a held text but not held itself, is still read,
    found not a str, and its Known kept as the object; a held text under a new object of
    exact str is found by its text (one record)."""
    class Text(str):
        pass

    cache = NativeContextCache(100, 10.0, lambda: 0.0)
    table = cache._table
    first = Known({"workflow.id": "w1", "owner.team": "t"}, "svc", 1, frozenset())
    cache.put(b"\x01" * 24, first)
    odd = Known({"workflow.id": Text("w1"), "owner.team": "t"}, "svc", 1, frozenset())
    cache.put(b"\x02" * 24, odd)
    odd_key = Known({Text("workflow.id"): "w1", "owner.team": "t"}, "svc", 1, frozenset())
    cache.put(b"\x03" * 24, odd_key)
    again = Known({"".join(["workflow", ".id"]): "".join(["w", "1"]), "owner.team": "t"}, "svc", 1, frozenset())
    cache.put(b"\x04" * 24, again)
    assert table.records() == 3  # first and again: one record; odd and odd_key: objects
    assert cache.get(b"\x02" * 24) is odd and cache.get(b"\x03" * 24) is odd_key
    assert type(next(iter(cache.get(b"\x03" * 24).fields))) is Text
    assert state(cache.get(b"\x04" * 24)) == state(first)
