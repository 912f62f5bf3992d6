"""The sidecar started exactly as its container starts it: same command, same ConfigMap config.

The command line comes from the Dockerfile's ENTRYPOINT and the Deployment's args, the config
file is the one the kustomization turns into the mounted ConfigMap, and the environment is the
container's. Only what must differ on a test machine is overridden through the environment
variables the config file itself reads: the collector address (the test sink) and the listen
addresses (port 0 on loopback, read back from the start-up log line).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from prometheus_client.parser import text_string_to_metric_families

from costctx.cli.sink import OtlpSink
from costctx.service.config import load_config
from tests.support.deploy import (
    DOCKERFILE,
    K8S_BASE,
    deployment,
    dockerfile_exec_form,
    sidecar_container,
    sidecar_launch,
)
from tests.support.sdk import tracer_provider
from tests.support.sink import PatientSink

LISTENING = re.compile(r"costctx listening: grpc=(\d+) http=(\d+) telemetry=(\d+)")


class ContainerProcess:
    """`costctx run` in a subprocess, its stderr collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        # The suite's patience where a process starts: the wait ends at the line, and a loaded
        # two-core machine had printed nothing after 20 s.
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    match = pattern.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no line matching {pattern.pattern!r}; log:\n" + "\n".join(self.lines))
                self._changed.wait(min(remaining, 0.2))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


ADMIN_TOKEN = "admin-s3cret"


def http_get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric_total(text: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in (name, f"{name}_total")
    )


@pytest.fixture
def collector() -> Iterator[OtlpSink]:
    """The cluster's collector, played by a real OTLP gRPC server on loopback."""
    with PatientSink() as sink:
        yield sink


@pytest.fixture
def container(collector: OtlpSink, tmp_path) -> Iterator[tuple[ContainerProcess, dict[str, int], float]]:
    launch = sidecar_launch()
    # The Secret the Deployment mounts for the admin port's token, played by a file.
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(launch.env)  # the container's environment, as the kubelet sets it
    assert "COLLECTOR_ENDPOINT" in launch.env, "the Deployment should point the exporter at the collector"
    env.update(
        COLLECTOR_ENDPOINT=f"127.0.0.1:{collector.grpc_port}",
        COSTCTX_GRPC_ENDPOINT="127.0.0.1:0",
        COSTCTX_HTTP_ENDPOINT="127.0.0.1:0",
        # In the pod this is 0.0.0.0 for the kubelet's probes; tests stay on loopback.
        COSTCTX_TELEMETRY_ADDRESS="127.0.0.1:0",
        COSTCTX_ADMIN_TOKEN_FILE=str(token_file),
        PYTHONUNBUFFERED="1",
    )
    process = ContainerProcess(launch.argv, env)
    try:
        match = process.wait_for_line(LISTENING)
        ports = {"grpc": int(match.group(1)), "http": int(match.group(2)), "telemetry": int(match.group(3))}
        yield process, ports, launch.grace
    finally:
        process.kill()


def test_launch_follows_dockerfile_and_deployment() -> None:
    launch = sidecar_launch()
    assert launch.config_file == K8S_BASE / "sidecar.yaml"
    assert launch.argv[1:3] == ["run", "--config"]
    assert Path(launch.argv[3]) == launch.config_file
    # The drain budget must fit in the pod's grace period, or SIGKILL cuts the drain short.
    assert launch.grace < launch.termination_grace_period
    # The ConfigMap's config is valid once the container's environment is there.
    config = load_config(launch.config_file, environ=launch.env)
    assert config.exporters["otlp"].endpoint == launch.env["COLLECTOR_ENDPOINT"]
    # In the pod: receivers on the pod's loopback only, telemetry where the kubelet can probe it.
    protocols = config.receivers.otlp.protocols
    assert protocols.grpc.endpoint == "127.0.0.1:4317"
    assert protocols.http.endpoint == "127.0.0.1:4318"
    assert config.service.telemetry.metrics.address == "0.0.0.0:8888"


@pytest.mark.e2e
def test_sidecar_container_forwards_spans_and_drains_on_sigterm(container, collector: OtlpSink) -> None:
    process, ports, grace = container
    base = f"http://127.0.0.1:{ports['telemetry']}"

    # The probes the Deployment points at, open; the rest of the admin port needs the token.
    assert http_get(base + "/healthz")[0] == 200
    status, body = http_get(base + "/readyz")
    assert status == 200 and json.loads(body)["ready"] is True
    for path in ("/metrics", "/survival"):
        assert http_get(base + path)[0] == 401
        assert http_get(base + path, "wrong")[0] == 401
        assert http_get(base + path, ADMIN_TOKEN)[0] == 200

    # An application sending with the real OpenTelemetry SDK, over gRPC and over HTTP.
    grpc_app = tracer_provider(grpc_port=ports["grpc"], service="checkout")
    http_app = tracer_provider(http_port=ports["http"], service="checkout")
    for i in range(3):
        with grpc_app.get_tracer("app").start_as_current_span(f"grpc-{i}"):
            pass
    for i in range(2):
        with http_app.get_tracer("app").start_as_current_span(f"http-{i}"):
            pass
    assert grpc_app.force_flush(10_000) and http_app.force_flush(10_000)
    assert collector.wait_for_spans(5), process.log()
    spans = collector.spans()
    assert sorted(s.name for s in spans) == ["grpc-0", "grpc-1", "grpc-2", "http-0", "http-1"]
    # The ConfigMap's traces pipeline ran: the envelope processor stamped every span.
    assert all("costctx.schema" in s.attributes for s in spans)
    assert all(s.service == "checkout" for s in spans)

    # Spans still queued at SIGTERM are sent before the process exits: the collector refuses
    # the next batch (retryable), so it sits in the exporter's retry backoff when the
    # SIGTERM arrives, and must still reach the collector within the grace period.
    collector.refuse(1)
    with grpc_app.get_tracer("app").start_as_current_span("queued-at-sigterm"):
        pass
    assert grpc_app.force_flush(10_000)
    deadline = time.monotonic() + 60
    while metric_total(http_get(base + "/metrics", ADMIN_TOKEN)[1], "costctx_exporter_retries") < 1:
        assert time.monotonic() < deadline, "the refused batch was never retried:\n" + process.log()
        time.sleep(0.05)
    assert collector.span_count() == 5  # still held by the sidecar, not delivered yet

    process.proc.send_signal(signal.SIGTERM)
    returncode = process.proc.wait(timeout=grace + 5)
    assert returncode == 0, process.log()
    assert "queued-at-sigterm" in {s.name for s in collector.spans()}, process.log()
    assert "stopping (grace" in process.log()
    grpc_app.shutdown()
    http_app.shutdown()


def test_manifest_keeps_the_deployment_promises() -> None:
    """What the schemas cannot check: the sidecar's security, probes and wiring."""
    spec = deployment()["spec"]["template"]
    pod = spec["spec"]
    sidecar = sidecar_container(pod)
    telemetry_port = next(p["containerPort"] for p in sidecar["ports"] if p["name"] == "telemetry")

    assert pod["securityContext"]["runAsNonRoot"] is True
    security = sidecar["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/readyz")):
        assert sidecar[probe]["httpGet"] == {"path": path, "port": "telemetry"}, probe
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(sidecar["resources"][kind]), kind

    annotations = spec["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == telemetry_port

    # The admin port listens on the pod IP, so it is guarded by a token from a mounted Secret.
    launch = sidecar_launch()
    config = load_config(launch.config_file, environ=launch.env)
    assert config.service.telemetry.metrics.address.startswith("0.0.0.0:")
    authenticator = config.service.telemetry.metrics.auth.authenticator
    token_path = PurePosixPath(config.extensions[authenticator].filename)
    mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    (volume,) = [name for name in secrets if PurePosixPath(mounts.get(name, "/nowhere")) == token_path.parent]
    assert token_path.name in [item["path"] for item in secrets[volume]["items"]]

    # The memory limiter must refuse data before the kubelet OOM-kills the container.
    launch = sidecar_launch()
    config = load_config(launch.config_file, environ=launch.env)
    limiters = [c for name, c in config.processors.items() if name.split("/")[0] == "memory_limiter"]
    memory_limit = sidecar["resources"]["limits"]["memory"]
    assert memory_limit.endswith("Mi")
    assert limiters, "the ConfigMap should configure a memory_limiter"
    for limiter in limiters:
        assert limiter.limit_mib < int(memory_limit.removesuffix("Mi"))

    grpc_port = next(p["containerPort"] for p in sidecar["ports"] if p["name"] == "otlp-grpc")
    for app in pod["containers"]:
        env = {e["name"]: e.get("value") for e in app.get("env", [])}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://127.0.0.1:{grpc_port}", app["name"]


def test_dockerfile_keeps_the_image_promises() -> None:
    """What hadolint does not require: the runtime stage's user, ports, probe and signal."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    runtime = text.rsplit("\nFROM ", 1)[1]  # the final stage
    assert runtime.count("\nFROM ") == 0 and text.count("\nFROM ") >= 2, "expected a multi-stage build"
    user = re.search(r"^USER (\d+)(?::(\d+))?$", runtime, re.M)
    assert user and int(user.group(1)) != 0, "the runtime stage should run as a numeric non-root uid"
    sidecar = sidecar_container(deployment()["spec"]["template"]["spec"])
    assert int(user.group(1)) == sidecar["securityContext"]["runAsUser"]
    assert re.search(r"^EXPOSE 4317 4318 8888$", runtime, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", runtime, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", runtime, re.M)
    assert dockerfile_exec_form("ENTRYPOINT") == ["costctx", "run"]
    # The default config baked into the image sits where the ConfigMap is mounted over it.
    config_path = dockerfile_exec_form("CMD")[1]
    assert re.search(rf"^COPY k8s/base/sidecar.yaml {re.escape(config_path)}$", runtime, re.M)
