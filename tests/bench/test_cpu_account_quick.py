"""bench/cpu_account.py keeps working (a tiny run: numbers mean nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_cpu_account_splits_a_running_sidecars_cpu_by_phase(tmp_path):
    out = tmp_path / "cpu.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "cpu_account.py"), "--mode", "on", "--rate", "2000",
                    "--duration", "3.5", "--json", str(out)], check=True, capture_output=True, timeout=300, cwd=REPO)
    [result] = json.loads(out.read_text())
    assert result["delivered_spans_per_s"] > 0 and result["threads_us_per_span"]["main"] > 0
    phases = result["phases_us_per_span"]
    # Every processor of the defaults, the scan and the encode were timed inside the sidecar.
    assert {"processor: inherit", "processor: price", "scan (or check, processors off)",
            "encode (ViewBatch.payload)"} <= phases.keys()
    assert all(us >= 0 for us in phases.values()) and result["calls"]["processor: inherit"] > 0
