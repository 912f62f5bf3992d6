"""The pipeline's output against the golden files recorded before the batch-view rewrite.

Same spans per step (attribute order aside), same partial-success answers, same metrics,
same survival counts and report, on the bench workload and on 2,400 generated requests.
To re-record on purpose: `python -m tests.golden.record` (and say why in the commit)."""

from __future__ import annotations

import difflib

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.golden import harness, inputs


def _describe(spans: list[bytes]) -> str:
    return "\n".join(str(ExportTraceServiceRequest.FromString(s)) for s in spans[:2])


def assert_same(golden: dict, current: dict) -> None:
    assert [s["step"] for s in current["steps"]] == [s["step"] for s in golden["steps"]]
    for want, got in zip(golden["steps"], current["steps"], strict=True):
        assert got["rejected"] == want["rejected"], want["step"]
        if got["spans"] != want["spans"]:
            missing = [s for s in want["spans"] if s not in got["spans"]]
            extra = [s for s in got["spans"] if s not in want["spans"]]
            pytest.fail(f"{want['step']}: {len(want['spans'])} spans recorded, {len(got['spans'])} now\n"
                        f"recorded, not produced:\n{_describe(missing)}\nproduced, not recorded:\n{_describe(extra)}")
    if current["metrics"] != golden["metrics"]:
        diff = difflib.unified_diff(golden["metrics"].splitlines(), current["metrics"].splitlines(), lineterm="")
        pytest.fail("metrics differ:\n" + "\n".join(list(diff)[:60]))
    assert current["survival_counts"] == golden["survival_counts"]
    assert current["survival_report"] == golden["survival_report"]


def test_no_processor_fails_on_the_golden_inputs():
    for name in ("workload", "generated"):
        metrics = harness.load(harness.DATA / f"{name}.json.gz")["metrics"]
        assert not [line for line in metrics.splitlines() if line.startswith("costctx_processor_errors_total{")]


def test_the_golden_inputs_cover_what_they_claim():
    generated = inputs.generated_requests()
    assert len(generated) >= 2_000
    golden = harness.load(harness.DATA / "workload.json.gz")
    metrics = golden["metrics"]
    # held and released spans, priced spans, resends seen as duplicates, renames of old keys
    for needle in ('costctx_inherit_held_spans_total{processor="inherit"}',
                   "costctx_budget_duplicate_spans_total", "costctx_normalize_renamed_total"):
        line = next(line for line in metrics.splitlines() if line.startswith(needle))
        assert float(line.rsplit(" ", 1)[1]) > 0, line


@pytest.mark.parametrize("name", ["workload", "generated"])
def test_pipeline_output_matches_the_golden_files(name):
    requests = inputs.workload_requests() if name == "workload" else inputs.generated_requests()
    golden = harness.load(harness.DATA / f"{name}.json.gz")
    assert_same(golden, harness.run(requests))
