"""The wall-clock helpers the time-sensitive tests rely on (tests/support/wall_clock.py): window
starts at the awkward instants, the wait that keeps a test inside one window, the shifted clock."""

from __future__ import annotations

import time

import pytest

import costctx.budget.engine
from costctx.budget.counters import window_key
from tests.support.wall_clock import (
    clear_of_window_starts,
    parse_wall_clock,
    shifted_wall_clock,
    window_start_after,
    window_starts_between,
)

MONTH_END = parse_wall_clock("2026-11-30T23:59:59.9Z")


def test_window_starts_at_a_month_and_a_year_end():
    assert window_start_after(MONTH_END, "hour") == parse_wall_clock("2026-12-01T00:00:00")
    assert window_start_after(MONTH_END, "month") == parse_wall_clock("2026-12-01T00:00:00")
    assert window_start_after(parse_wall_clock("2026-12-31T12:00"), "month") == parse_wall_clock("2027-01-01")
    assert window_start_after(parse_wall_clock("2028-02-28T23:00"), "day") == parse_wall_clock("2028-02-29")
    # A start exactly now is not "after" it: the next one is.
    assert window_start_after(parse_wall_clock("2026-12-01"), "day") == parse_wall_clock("2026-12-02")
    assert window_starts_between(parse_wall_clock("2026-11-30T12:00"), parse_wall_clock("2026-12-01T00:00"),
                                 ("day", "month")) == [parse_wall_clock("2026-12-01")]
    assert not window_starts_between(parse_wall_clock("2026-11-30T01:00"), parse_wall_clock("2026-11-30T23:00"),
                                     ("day", "month"))


class SteppedClock:
    def __init__(self, now: float) -> None:
        self.now, self.slept = now, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(("at", "ahead", "behind", "resumes_after"), [
    ("2026-11-30T23:59:59.9", 60, 0, "2026-12-01T00:00:00"),       # a tenth of a second before a month
    ("2026-11-30T23:59:00", 120, 0, "2026-12-01T00:00:00"),
    ("2026-11-30T00:00:00", 60, 0, None),                           # just past a start: nothing ahead
    ("2026-12-01T00:04:00", 60, 300, "2026-12-01T00:05:00"),        # commits may land 300 s back
    ("2026-11-29T12:00:00", 60, 300, None),
])
def test_clear_of_window_starts_waits_only_near_a_start(at, ahead, behind, resumes_after):
    clock = SteppedClock(parse_wall_clock(at))
    resumed = clear_of_window_starts(ahead, behind, clock=clock, sleep=clock.sleep)
    if resumes_after is None:
        assert clock.slept == [] and resumed == parse_wall_clock(at)
    else:
        assert parse_wall_clock(resumes_after) < resumed < parse_wall_clock(resumes_after) + 0.01
        assert not window_starts_between(resumed - behind, resumed + ahead, ("day", "month"))


def test_a_shifted_clock_reaches_the_sidecar_and_not_the_real_time_module():
    real, before = time.time(), costctx.budget.engine.time
    # Shifted to 2 s before the month's end, not 0.1 s: the clock runs on while the shift is put
    # in place, and a loaded machine took the second read past midnight (key 20261201).
    start = MONTH_END - 2
    with shifted_wall_clock(start):
        # The sidecar's budget engine reads the shifted clock (the window keys it builds)...
        assert start <= costctx.budget.engine.time.time() < start + 5
        assert window_key("t", "a", "day", costctx.budget.engine.time.time()).endswith("20261130")
        # ...while libraries outside the shifted packages (gRPC's deadlines) keep the real one.
        import time as real_time_module
        assert real_time_module.time() - real < 60
    assert costctx.budget.engine.time is before  # given back on the way out
