"""The demo's two-sidecar part: A and B on their own sidecars sharing a store: a Redis the demo
starts when redis-server is on PATH, one in-process store otherwise."""

from __future__ import annotations

import io
import re
import shutil

import pytest

from costctx.cli.demo_two import two_sidecars_section

# Real sidecars and a sink: the outer loop.
pytestmark = pytest.mark.e2e


def _assert_b_spend_on_a_workflow(text: str) -> None:
    in_band, late = re.findall(r"workflow (wf-\w+) \(", text)
    assert text.count(f"left B's sidecar with workflow.id={in_band} owner.tenant=acme") == 2
    assert text.count("left B's sidecar with workflow.id=- owner.tenant=-") == 2
    # B's sidecar settles B's late spend onto A's workflow, learned from the shared store.
    assert text.count(f"-> workflow.id={late} owner.tenant=acme settled_by=registry") == 2
    both, at_sink = re.search(r"both sidecars \$([0-9.]+); cost.usd at the sink \$([0-9.]+)", text).groups()
    assert both == at_sink and float(both) > 0
    assert "unknown tenant $0.000000" in text and "pending $0.000000" in text
    b_line = re.search(r"sidecar B: spend \$([0-9.]+), unknown tenant \$([0-9.]+), settled \$([0-9.]+)", text)
    assert float(b_line.group(1)) > 0 and float(b_line.group(3)) > 0


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_two_sidecar_demo_attributes_in_band_and_settles_the_late_workflow():
    out = io.StringIO()
    assert two_sidecars_section(out) == 0
    text = out.getvalue()
    assert re.search(r"sharing redis-server on 127\.0\.0\.1:\d+ \(started by the demo\)", text)
    _assert_b_spend_on_a_workflow(text)


def test_two_sidecar_demo_without_redis_server_shares_an_in_process_store(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server to find
    out = io.StringIO()
    assert two_sidecars_section(out) == 0
    text = out.getvalue()
    assert "sharing an in-process store (no redis-server on PATH)" in text
    assert "redis-server on 127.0.0.1" not in text
    _assert_b_spend_on_a_workflow(text)
