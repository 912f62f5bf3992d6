"""bench/memory_structures.py and bench/memory_profile.py keep working (tiny runs: numbers mean nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_memory_structures_names_the_processors_structures(tmp_path):
    out = tmp_path / "structures.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "memory_structures.py"), "--checkpoints", "20000",
                    "--json", str(out)], check=True, capture_output=True, timeout=300, cwd=REPO)
    [result] = json.loads(out.read_text())
    found = {r["structure"]: r for r in result["structures"]}
    assert result["spans_fed"] == 20_000
    registry = [r for name, r in found.items() if name.endswith("context_registry._cache._young")]
    assert registry and registry[0]["entries"] > 0 and registry[0]["bytes"] > 0
    assert any(name.startswith("inherit.cache") for name in found)


def test_memory_profile_reads_a_running_sidecar(tmp_path):
    out = tmp_path / "profile.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "memory_profile.py"), "--rate", "2000", "--duration", "3",
                    "--frames", "1", "--workdir", str(tmp_path / "w"), "--json", str(out)],
                   check=True, capture_output=True, timeout=300, cwd=REPO)
    result = json.loads(out.read_text())
    for moment in ("after_start", "after_load", "after_load_twice"):
        assert result[moment]["rss_mb"] > 0 and result[moment]["peak_mb"] >= result[moment]["rss_mb"] * 0.9
    assert result["after_load"]["delivered_spans_per_s"] > 0
    queued = result["after_load"]["queued_requests"]  # the exporters' requests still alive, read in the sidecar
    assert queued["items"] >= 0 and queued["payload_bytes"] >= 0
    assert result["growth_first"]["lines"]  # tracemalloc's growth by file:line
