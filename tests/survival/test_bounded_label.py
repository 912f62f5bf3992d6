"""BoundedLabel: the first N distinct values kept, the rest `other`; no value is `unknown`."""

from costctx.survival.bounded import MAX_VALUE_LENGTH, OTHER, UNKNOWN, BoundedLabel


def test_first_values_kept_then_other():
    label = BoundedLabel("tenant", 2)
    assert [label(v) for v in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]
    assert label.overflowed == 2 and len(label) == 2


def test_missing_values_are_unknown_and_do_not_count():
    label = BoundedLabel("tenant", 1)
    assert label(None) == label("") == label(UNKNOWN) == UNKNOWN
    assert label("x") == "x" and label("y") == OTHER


def test_long_values_are_cut():
    label = BoundedLabel("hop", 5)
    assert label("s" * 10_000) == "s" * MAX_VALUE_LENGTH
    assert label("s" * 20_000) == "s" * MAX_VALUE_LENGTH and len(label) == 1
