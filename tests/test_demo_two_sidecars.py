"""The demo's two-sidecar part: A and B on their own sidecars sharing a Redis the demo starts."""

from __future__ import annotations

import io
import re
import shutil

import pytest

from costctx.cli.demo_two import two_sidecars_section

# Real sidecars and a sink: the outer loop.
pytestmark = pytest.mark.e2e


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_two_sidecar_demo_attributes_in_band_and_settles_the_late_workflow():
    out = io.StringIO()
    assert two_sidecars_section(out) == 0
    text = out.getvalue()
    assert "(started by the demo)" in text
    in_band, late = re.findall(r"workflow (wf-\w+) \(", text)
    assert text.count(f"left B's sidecar with workflow.id={in_band} owner.tenant=acme") == 2
    assert text.count("left B's sidecar with workflow.id=- owner.tenant=-") == 2
    assert text.count(f"-> workflow.id={late} owner.tenant=acme settled_by=registry") == 2
    both, at_sink = re.search(r"both sidecars \$([0-9.]+); cost.usd at the sink \$([0-9.]+)", text).groups()
    assert both == at_sink and float(both) > 0
    assert "unknown tenant $0.000000" in text and "pending $0.000000" in text
