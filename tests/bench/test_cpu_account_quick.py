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
    # Page faults by thread and by phase (each phase's own, none negative).
    assert "main" in result["thread_faults_per_100_spans"]
    assert all(n >= 0 for n in result["faults_per_100_spans"].values())


def test_cpu_account_in_process_times_the_same_phases_with_and_without_a_gap(tmp_path):
    out = tmp_path / "inproc.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "cpu_account.py"), "--in-process", "--gaps-ms", "0,1,spin1",
                    "--rounds", "1", "--json", str(out)], check=True, capture_output=True, timeout=300, cwd=REPO)
    results = json.loads(out.read_text())
    assert set(results) == {"0 ms", "1 ms", "1 ms spun"}
    for gap in results.values():
        assert {"processor: inherit", "encode (ViewBatch.payload)", "receive: ingest, metrics",
                "freeing the request's batch"} <= gap["phases"].keys()
        phases = sum(gap["phases"].values())
        # The phases are part of the total: equal up to float rounding when nothing ran between them.
        assert gap["total"] >= phases * (1 - 1e-9) and phases > 0


def test_encode_replay_times_the_pipelines_own_batches():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "encode_replay.py"), "--passes", "1", "--repeat", "1"],
                          check=True, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert "encode, us/span:" in done.stdout
