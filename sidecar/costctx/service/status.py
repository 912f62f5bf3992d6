"""The admin port's status page (GET / and /status): survival, readiness, spend, budgets, health."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from costctx.survival.html import render_status_page
from costctx.survival.recorder import SurvivalRecorder
from costctx.survival.report import survival_report
from costctx.telemetry.health import budget_summary, pipeline_health

REFRESH_SECONDS = 5


def status_page(recorder: SurvivalRecorder, registry: CollectorRegistry) -> str:
    return render_status_page(
        survival_report(recorder.snapshot_all()),
        pipeline_health(registry),
        budget_summary(registry),
        refresh_seconds=REFRESH_SECONDS,
    )
