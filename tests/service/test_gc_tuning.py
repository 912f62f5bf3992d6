"""The sidecar process tunes the cyclic garbage collector once started (see sidecar/costctx/service/gc_tuning.py)."""

from __future__ import annotations

import gc

from costctx.service.gc_tuning import THRESHOLDS, tune_for_throughput


def test_tuning_freezes_startup_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_for_throughput()
        assert gc.get_threshold() == THRESHOLDS
        assert THRESHOLDS[0] > before[0]  # the young generation is collected less often
        assert gc.get_freeze_count() > 0  # start-up objects moved out of the collector's scans
        # Cycles made afterwards are still collected.
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)

