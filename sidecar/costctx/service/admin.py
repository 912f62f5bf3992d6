"""Routes on the internal telemetry port (default 127.0.0.1:8888)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from costctx.telemetry.metrics import SidecarMetrics


def build_admin_app(
    metrics: SidecarMetrics,
    is_ready: Callable[[], tuple[bool, str]],
    survival_report: Callable[[], dict[str, Any]] | None = None,
    status_page: Callable[[], str] | None = None,
) -> web.Application:
    app = web.Application()

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready, reason = is_ready()
        return web.json_response({"ready": ready, "reason": reason}, status=200 if ready else 503)

    async def prometheus(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def survival(_: web.Request) -> web.Response:
        # The field-survival matrix, readiness verdicts and spend (sidecar/costctx/survival/report.py).
        return web.json_response(survival_report() if survival_report else {})

    async def status(_: web.Request) -> web.Response:
        # The human view (service/status.py); behind the same auth as /metrics.
        return web.Response(text=status_page() if status_page else "", content_type="text/html")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    if survival_report is not None:
        app.router.add_get("/survival", survival)
    if status_page is not None:
        app.router.add_get("/", status)
        app.router.add_get("/status", status)
    return app
