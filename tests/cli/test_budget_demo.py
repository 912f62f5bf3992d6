"""The demo's agent loop: priced by the price processor, degraded at the soft threshold,
stopped at the hard one, and the counter agrees with the priced spans."""

from __future__ import annotations

import io
import re

from costctx.cli.budget_demo import demo_section
from costctx.cli.demo import run_demo


def test_agent_loop_degrades_then_stops_cleanly():
    out = io.StringIO()
    assert run_demo(out, extra_sections=[demo_section]) == 0
    text = out.getvalue()
    section = text[text.index("budget: agent loop"):]
    decisions = re.findall(r"step\s+\d+ (ALLOW|DEGRADE|BLOCK)\s+(\S+)", section)
    kinds = [d for d, _ in decisions]
    assert kinds[0] == "ALLOW" and kinds[-1] == "BLOCK" and "DEGRADE" in kinds
    first_degrade = kinds.index("DEGRADE")
    assert all(k == "ALLOW" for k in kinds[:first_degrade])
    assert all(k == "DEGRADE" for k in kinds[first_degrade:-1])  # once degraded, never back up
    assert {m for d, m in decisions if d == "DEGRADE"} == {"claude-haiku-4-5"}
    assert "stopped cleanly" in section
    priced, counted = re.search(r"\$(\d+\.\d+) priced on the spans; the budget counter says \$(\d+\.\d+) spent",
                                section).groups()
    assert priced == counted and 0.2 < float(priced) <= 0.25
    assert "$0.0000 reserved" in section
