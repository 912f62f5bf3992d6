"""Routes on the internal telemetry port (default 127.0.0.1:8888)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from costctx.telemetry.metrics import SidecarMetrics
from costctx.transport.admin_http import AdminRequest, AdminResponse, AdminServer

JSON = "application/json; charset=utf-8"


def _json(data: Any, status: int = 200) -> AdminResponse:
    return AdminResponse(status, json.dumps(data).encode(), JSON)


def build_admin_server(
    endpoint: str,
    metrics: SidecarMetrics,
    is_ready: Callable[[], tuple[bool, str]],
    survival_report: Callable[[], dict[str, Any]] | None = None,
    status_page: Callable[[], str] | None = None,
) -> AdminServer:
    server = AdminServer(endpoint, "telemetry")

    def healthz(_: AdminRequest) -> AdminResponse:
        return _json({"status": "ok"})

    def readyz(_: AdminRequest) -> AdminResponse:
        ready, reason = is_ready()
        return _json({"ready": ready, "reason": reason}, 200 if ready else 503)

    def prometheus(_: AdminRequest) -> AdminResponse:
        return AdminResponse(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)

    def survival(_: AdminRequest) -> AdminResponse:
        # The field-survival matrix, readiness verdicts and spend (sidecar/costctx/survival/report.py).
        return _json(survival_report() if survival_report else {})

    def status(_: AdminRequest) -> AdminResponse:
        # The human view (service/status.py); behind the same auth as /metrics.
        return AdminResponse(200, (status_page() if status_page else "").encode(), "text/html; charset=utf-8")

    server.add_get("/healthz", healthz)
    server.add_get("/readyz", readyz)
    server.add_get("/metrics", prometheus)
    if survival_report is not None:
        server.add_get("/survival", survival)
    if status_page is not None:
        server.add_get("/", status)
        server.add_get("/status", status)
    return server
