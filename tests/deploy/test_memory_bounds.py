"""Hostile requests cannot grow a real `costctx run` toward the pod's memory limit (issue 16
item 4): each case runs the k8s base config in a subprocess and reads its peak RSS (the
kernel's high-water mark, psutil samples as a fallback). Bounds, not timings: the peak may
grow at most BOUND_MIB over the RSS before the attack, a small fraction of the 256 MiB limit
(before the fix the same cases peaked at 420 MiB to 1.9 GiB)."""

from __future__ import annotations

import pytest

from bench.memory_attacks import big_export_request, gzip_bomb, pod_memory_limit_mib, run_case

pytestmark = pytest.mark.e2e  # real `costctx run` subprocesses

# A few step buffers and a decoded 4 MiB request fit well inside this; any whole-body
# inflation (1.2 GB) or whole 56 MB message does not.
BOUND_MIB = 48


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb()


@pytest.fixture(scope="module")
def big() -> bytes:
    return big_export_request()


@pytest.mark.parametrize("case, answer", [
    ("gzip_bomb_traces", "413"),
    ("gzip_bomb_budget_x4", "413"),
    ("grpc_56mb", "RESOURCE_EXHAUSTED"),
    ("grpc_56mb_x4_no_token", "UNAUTHENTICATED"),
    ("http_56mb_x4_no_token", "401"),
    ("tiny_items_json", "413"),
    ("tiny_items_protobuf", "413"),
])
def test_peak_rss_stays_bounded(tmp_path, bomb, big, case, answer):
    result = run_case(case, tmp_path, bomb, big)
    assert set(result.answers) == {answer}, result
    assert result.alive, result
    assert result.peak_rss_mib - result.rss_before_mib < BOUND_MIB, result
    assert result.peak_rss_mib < pod_memory_limit_mib() / 2, result
