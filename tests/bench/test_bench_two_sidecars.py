"""`bench/run.py --two-sidecars` keeps working: B's sidecar finds A's registered parents in the
shared Redis with the registry on, and none with it off. No timing assertions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.support.paths import REPO

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")]


def test_two_sidecar_point_measures_registry_on_against_off(tmp_path) -> None:
    out = tmp_path / "two.json"
    # A hang guard (run.py holds B's window open until B delivered a span with a parent found):
    # generous, four sidecars start on a possibly loaded machine.
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--two-sidecars", "--quick",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "6. Two sidecars sharing a Redis" in proc.stdout
    two = json.loads(out.read_text())["two_sidecars"]
    on, off = two["on"], two["off"]
    assert on["b_registry_remote_hits"] > 0 and on["b_registry_round_trips"] > 0
    assert on["b_registry_misses"] == 0  # every parent was registered by A first
    assert off["b_registry_remote_hits"] == 0 and off["b_registry_round_trips"] == 0
    for mode in (on, off):
        assert mode["b_cpu_us_per_span"] > 0 and mode["b_delivered_spans_per_s"] > 0
    assert two["on_vs_off"] > 0
