"""The UTC wall clock in tests: budget windows start at whole hours, days and months, so a test
that spends and then reads a window's counter must not run across the start of a window.

`clear_of_window_starts` waits (at most `ahead` + `behind` seconds, and only when one is that
close) until no window starts near now. `shifted_wall_clock` runs code as if the UTC clock
read a chosen instant (time.time and time.time_ns move on from it; time.monotonic is left
alone, so timeouts stay real): the suite's `COSTCTX_TEST_WALL_CLOCK` option (tests/conftest.py)
starts every test at e.g. 23:59:59.9 UTC on a month's last day, to prove a test holds there.
It reaches code in this process only: `costctx run` subprocesses keep the real clock."""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

HOUR, DAY = 3600, 86400
WINDOWS = ("hour", "day", "month")


def window_start_after(at: float, window: str) -> float:
    """The first instant after `at` (epoch seconds) at which a UTC `window` starts."""
    if window == "hour":
        return (at // HOUR + 1) * HOUR
    if window == "day":
        return (at // DAY + 1) * DAY
    if window == "month":
        moment = datetime.fromtimestamp(at, tz=UTC)
        year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        return datetime(year, month, 1, tzinfo=UTC).timestamp()
    raise ValueError(f"unknown window {window!r} (known: {', '.join(WINDOWS)})")


def window_starts_between(start: float, end: float, windows: Iterable[str]) -> list[float]:
    """The instants in (start, end] at which one of `windows` starts, in order."""
    found = set()
    for window in windows:
        at = window_start_after(start, window)
        while at <= end:
            found.add(at)
            at = window_start_after(at, window)
    return sorted(found)


def clear_of_window_starts(ahead: float, behind: float = 0.0, windows: Iterable[str] = ("day", "month"),
                           clock: Callable[[], float] | None = None,
                           sleep: Callable[[float], None] = time.sleep) -> float:
    """Return once no window starts within `behind` seconds before now or `ahead` seconds after;
    the instant returned is then. `ahead` bounds how long the caller's test runs; `behind`,
    how far into the past it lets the sidecar move a span's commit. Sleeps only near a start."""
    windows = tuple(windows)
    read = clock or (lambda: time.time())  # looked up per call: a shifted clock applies
    while True:
        now = read()
        starts = window_starts_between(now - behind, now + ahead, windows)
        if not starts:
            return now
        # Wait until the latest of them lies `behind` seconds in the past.
        sleep(starts[-1] + behind - now + 0.001)


# Whose clock a shift moves: the sidecar, the tests, the OpenTelemetry SDK (span timestamps).
# Not gRPC's: its core turns time.time() into deadlines against the real clock (a server hangs).
SHIFTED_PACKAGES = ("costctx", "tests", "opentelemetry.sdk")


class _ShiftedTime(types.ModuleType):
    """The time module, but time() and time_ns() read real time plus a fixed offset."""

    def __init__(self, offset_ns: int) -> None:
        super().__init__("time")
        self._offset_ns = offset_ns

    def time_ns(self) -> int:
        return _real_time_ns() + self._offset_ns

    def time(self) -> float:
        return self.time_ns() / 1e9

    def __getattr__(self, name: str):
        return getattr(_real_time_module, name)


_real_time_module, _real_time, _real_time_ns = time, time.time, time.time_ns


def _import_the_sidecar() -> None:
    """Every costctx module, now: the registry imports components when a config names them,
    and a module imported inside the shift would keep the real clock."""
    import costctx

    root = Path(costctx.__file__).parent  # walked as files: some packages have no __init__.py
    for path in sorted(root.rglob("*.py")):
        parts = ("costctx", *path.relative_to(root).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name not in sys.modules and parts[-1] != "__main__":
            with contextlib.suppress(Exception):  # an optional part (a missing extra) stays unimported
                importlib.import_module(name)


@contextmanager
def shifted_wall_clock(start: float) -> Iterator[float]:
    """Inside: the wall clock of SHIFTED_PACKAGES' modules reads `start` plus the real time
    elapsed since entry (their `time` module, and any time()/time_ns() they imported by name)."""
    _import_the_sidecar()
    shifted = _ShiftedTime(round(start * 1e9) - _real_time_ns())
    replaced: list[tuple[object, str, object]] = []
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(SHIFTED_PACKAGES):
            continue
        for attribute, value in list(vars(module).items()):
            if attribute.startswith("_real_"):
                continue  # this module's own handles on the real clock
            outer = getattr(value, "__self__", None)  # an enclosing shift's time()/time_ns()
            if value is _real_time_module or isinstance(value, _ShiftedTime):
                new = shifted
            elif value is _real_time or (isinstance(outer, _ShiftedTime) and value.__name__ == "time"):
                new = shifted.time
            elif value is _real_time_ns or (isinstance(outer, _ShiftedTime) and value.__name__ == "time_ns"):
                new = shifted.time_ns
            else:
                continue
            replaced.append((module, attribute, value))
            setattr(module, attribute, new)
    try:
        yield start
    finally:
        for module, attribute, value in reversed(replaced):
            setattr(module, attribute, value)


def parse_wall_clock(text: str) -> float:
    """`2026-11-30T23:59:59.9Z` (UTC; the Z may be omitted) -> epoch seconds."""
    moment = datetime.fromisoformat(text.strip().removesuffix("Z").removesuffix("z"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
