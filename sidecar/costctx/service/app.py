"""The Sidecar: builds receivers, pipelines and exporters from config and runs them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from costctx.attribution.inprocess import InProcessShare
from costctx.component.host import Host
from costctx.component.processor import Processor
from costctx.exporters.otlp.exporter import QueuedExporter
from costctx.exporters.otlp.metrics import ExporterMetrics
from costctx.extensions.bearertokenauth.admin_auth import bearer_auth_guard
from costctx.extensions.bearertokenauth.grpc_auth import BearerAuthInterceptor
from costctx.extensions.bearertokenauth.metrics import auth_refused_requests
from costctx.extensions.bearertokenauth.tokens import BearerTokens
from costctx.extensions.budgetservice.service import grpc_handlers as budget_grpc_handlers
from costctx.pdata.signals import SIGNALS
from costctx.receivers.otlp.grpc import AdmissionInterceptor, otlp_grpc_handlers
from costctx.receivers.otlp.ingest import Ingest
from costctx.receivers.otlp.metrics import ReceiverMetrics
from costctx.service.admin import build_admin_server
from costctx.service.config import auth as auth_servers
from costctx.service.config.auth import server_authenticators
from costctx.service.config.model import SidecarConfig
from costctx.service.pipeline import PassThroughPipeline, TracesPipeline
from costctx.service.registry import processor_class, processor_type
from costctx.service.status import status_page
from costctx.survival.collector import SurvivalCollector
from costctx.survival.recorder import SurvivalRecorder
from costctx.survival.report import survival_report
from costctx.telemetry.metrics import SidecarMetrics
from costctx.transport.grpc_host import GrpcServerHost
from costctx.transport.tls import grpc_server_credentials, http_ssl_context

if TYPE_CHECKING:
    from costctx.service.telemetry_push import OtlpMetricsPush
    from costctx.transport.http_host import HttpServerHost

log = logging.getLogger("costctx")


class Sidecar:
    def __init__(self, config: SidecarConfig, in_process: InProcessShare | None = None) -> None:
        """`in_process`: stores shared with other sidecars of this process (see attribution/inprocess.py)."""
        self.config = config
        self.metrics = SidecarMetrics()
        self.survival = SurvivalRecorder(max_label_values=config.service.telemetry.metrics.max_label_values)
        # What components share (price book, spend ledger, budget engine), typed.
        self.host = Host(metrics=self.metrics, survival=self.survival, in_process=in_process)
        self._ready = False
        self._ticker: asyncio.Task | None = None
        self.metrics_push: OtlpMetricsPush | None = None

        pipelines = config.service.pipelines
        used = {name for p in pipelines.values() for name in p.exporters}
        exporter_metrics = ExporterMetrics(self.metrics)
        self.exporters = {
            name: QueuedExporter(name, config.exporters[name], exporter_metrics) for name in sorted(used)
        }

        self.traces: TracesPipeline | None = None
        if "traces" in pipelines:
            spec = pipelines["traces"]
            # Acknowledged spans a processor holds (inherit) are kept beside a persistent queue.
            storage = next((s for s in (config.exporters[n].sending_queue.storage for n in spec.exporters) if s), None)
            if storage is not None:
                self.host.hold_storage = (storage.directory, storage.fsync)
            self.traces = TracesPipeline(
                [self._build_processor(name) for name in spec.processors],
                [self.exporters[name] for name in spec.exporters],
                self.metrics,
            )
        passthrough = {
            signal: PassThroughPipeline(SIGNALS[signal], [self.exporters[n] for n in pipelines[signal].exporters])
            for signal in ("metrics", "logs")
            if signal in pipelines
        }
        self.ingest = Ingest(self.traces, passthrough, ReceiverMetrics(self.metrics),
                             max_items=config.receivers.otlp.max_items_per_request)
        if "logs" in passthrough:  # where the settle processor sends its attribution records
            self.host.logs_consumer = passthrough["logs"].consume
        # Processors that guard admission (memory_limiter) run before any request is accepted,
        # for every signal, in pipeline order.
        for processor in self.traces.processors if self.traces is not None else ():
            check = getattr(processor, "admission_check", None)
            if check is not None:
                self.ingest.admission_checks.append(check)

        protocols = config.receivers.otlp.protocols
        self.grpc: GrpcServerHost | None = None
        if protocols.grpc is not None:
            self.grpc = GrpcServerHost(protocols.grpc)
            self.grpc.add_handlers(otlp_grpc_handlers(self.ingest))
        self.http: HttpServerHost | None = None
        if protocols.http is not None:
            # The HTTP stack (aiohttp, ~9 MB of RSS) only with an HTTP receiver.
            from costctx.extensions.budgetservice.http import http_routes as budget_http_routes
            from costctx.receivers.otlp.http import build_otlp_http_app
            from costctx.transport.http_body import ROUTE_ADMISSION
            from costctx.transport.http_host import HttpServerHost

            self.http = HttpServerHost(
                protocols.http.endpoint, build_otlp_http_app(self.ingest, protocols.http), "OTLP/HTTP"
            )
            # Routes other components add (the budget check) pass the same admission checks.
            self.http.app[ROUTE_ADMISSION] = self.ingest.admit_route
        # Services processors provide on the same ports.
        for processor in self.traces.processors if self.traces is not None else ():
            if self.grpc is not None:
                self.grpc.add_handlers(processor.grpc_handlers())
            if self.http is not None:
                self.http.app.router.add_routes(processor.http_routes())
        # The budget check beside OTLP, answered by the budget engine (the first budget processor's).
        engine = self.host.budget_engine
        if engine is not None:
            if self.grpc is not None:
                self.grpc.add_handlers(budget_grpc_handlers(engine))
            if self.http is not None:
                self.http.app.router.add_routes(budget_http_routes(engine))
        # After the processors: the envelope processor configures the recorder's dimensions.
        self.metrics.registry.register(SurvivalCollector(self.survival))
        self.admin = build_admin_server(
            config.service.telemetry.metrics.address,
            self.metrics,
            self.readiness,
            lambda: survival_report(self.survival.snapshot_all()),
            status_page=lambda: status_page(self.survival, self.metrics.registry),
        )
        self.admin_app = self.admin  # its routes and guards (the name tests and tools use)
        self._secure_servers()
        if self.grpc is not None:
            # After auth: an unauthenticated call is refused as such, either way unread.
            self.grpc.interceptors.append(AdmissionInterceptor(self.ingest))
        if self.http is not None:
            from costctx.transport.http_errors import unreadable_body_is_a_bad_request

            self.http.app.middlewares.append(unreadable_body_is_a_bad_request)

    def _secure_servers(self) -> None:
        """TLS per receiver, and bearer-token auth per server as a whole (interceptor and
        middleware), so services other components register on these servers are covered too.
        Which authenticator guards which server: service/config/auth.py."""
        protocols = self.config.receivers.otlp.protocols
        if self.grpc is not None and protocols.grpc.tls is not None:
            self.grpc.credentials = grpc_server_credentials(protocols.grpc.tls)
        if self.http is not None and protocols.http.tls is not None:
            self.http.ssl_context = http_ssl_context(protocols.http.tls)
        authenticators = server_authenticators(self.config)
        if not any(authenticators.values()):
            return
        # One token source per extension, shared by the servers it checks.
        tokens = {name: BearerTokens(self.config.extensions[name]) for name in set(authenticators.values()) if name}
        refused = auth_refused_requests(self.metrics)
        grpc_auth, http_auth, admin_auth = (authenticators.get(s) for s in (auth_servers.GRPC, auth_servers.HTTP,
                                                                            auth_servers.ADMIN))
        if self.grpc is not None and grpc_auth:
            self.grpc.interceptors.append(
                BearerAuthInterceptor(tokens[grpc_auth], lambda _: refused.labels("grpc").inc())
            )
        if self.http is not None and http_auth:
            from costctx.extensions.bearertokenauth.http_auth import bearer_auth_middleware

            # First in the chain: refused before the body is read.
            self.http.app.middlewares.insert(
                0, bearer_auth_middleware(tokens[http_auth], on_refused=lambda _: refused.labels("http").inc())
            )
        if admin_auth:
            # Kubelet probes carry no token: /healthz and /readyz stay open; /metrics and the rest do not.
            self.admin.guards.append(
                bearer_auth_guard(
                    tokens[admin_auth], frozenset({"/healthz", "/readyz"}),
                    on_refused=lambda _: refused.labels("admin").inc(),
                )
            )

    def _build_processor(self, name: str) -> Processor:
        cls = processor_class(processor_type(name))
        return cls(name, self.config.processors[name], self.host)

    # -- state -----------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        if not self._ready:
            return False, "starting or stopping"
        if not self.exporters:
            return False, "no exporter configured"
        return True, "receivers listening, exporters configured"

    @property
    def grpc_port(self) -> int | None:
        return self.grpc.port if self.grpc else None

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http else None

    @property
    def admin_port(self) -> int | None:
        return self.admin.port

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.admin.start()
        if self.traces is not None:
            await self.traces.start()
        for exporter in self.exporters.values():
            await exporter.start()
        if self.grpc is not None:
            await self.grpc.start()
        if self.http is not None:
            await self.http.start()
        self._ticker = asyncio.create_task(self._tick_loop(), name="costctx-ticker")
        # Built last: every component has registered its metrics by now.
        if self.config.service.telemetry.metrics.otlp.enabled:
            # Imported only when pushing: the OpenTelemetry SDK and its exporters are ~3 MB of RSS.
            from costctx.service.telemetry_push import build_metrics_push

            self.metrics_push = build_metrics_push(self.config, self.metrics.registry)
        self._ready = True
        log.info(
            "costctx listening: grpc=%s http=%s telemetry=%s; exporting to %s",
            self.grpc_port,
            self.http_port,
            self.admin_port,
            ", ".join(e.sender.description for e in self.exporters.values()),
        )

    async def _tick_loop(self) -> None:
        interval = self.config.service.tick_interval
        while True:
            await asyncio.sleep(interval)
            if self.traces is not None:
                self.traces.tick(time.monotonic())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, release held spans, drain queues within `grace`, then close."""
        self._ready = False
        deadline = time.monotonic() + grace
        # Both receivers stop listening at once: closing one after the other's grace kept the
        # second accepting for up to a second after readiness went false.
        closing = [self.grpc.stop(grace=min(1.0, grace))] if self.grpc is not None else []
        if self.http is not None:
            closing.append(self.http.stop())
        await asyncio.gather(*closing)
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self.traces is not None:
            self.traces.shutdown()
        for exporter in self.exporters.values():
            drained = await exporter.drain(max(deadline - time.monotonic(), 0.0))
            if not drained:
                log.warning(
                    "exporter %s: %d batches still pending at the end of the grace period",
                    exporter.name,
                    exporter.pending(),
                )
        for exporter in self.exporters.values():
            await exporter.stop()
        if self.traces is not None:
            await self.traces.close()
        if self.metrics_push is not None:
            # The final push blocks on the network: off the event loop.
            await asyncio.get_running_loop().run_in_executor(None, self.metrics_push.shutdown)
        await self.admin.stop()
