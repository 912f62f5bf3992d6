"""bench/e2e_part.py --repeat: the headline of each window, by mode, read from run.py's JSON."""

from __future__ import annotations

from bench.e2e_part import headlines, summarize


def test_headlines_by_part_and_mode():
    rate = {"full": {"cpu_pct_per_10k_delivered": 47.0, "cpu_pct": 47.5}, "off": {"cpu_pct_per_10k_delivered": 8.0},
            "full_vs_off_cpu": 5.9, "collector_ceiling": {"cpu_pct": 20.0}}
    assert headlines("rate", rate) == {"full": 47.0, "off": 8.0}
    latency = {"added_p99_ms_full": 3.8, "added_p50_ms_full": 2.5, "added_p99_ms_off": None, "full": {"p99": 9.0}}
    assert headlines("latency", latency) == {"full": 3.8}
    assert headlines("saturation", {"full": {"spans_per_s": 37000.0}, "full_vs_off": 0.5}) == {"full": 37000.0}


def test_summary_gives_each_window_then_least_median_most(capsys):
    summarize("rate", [{"full": {"cpu_pct_per_10k_delivered": v}} for v in (50.0, 47.0, 52.0)])
    assert capsys.readouterr().out.strip() == (
        "full: % of a core per 10k delivered: 50.00, 47.00, 52.00 (least 47.00, median 50.00, most 52.00)")
