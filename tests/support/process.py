"""A sidecar in its own process (`python -m costctx run --config ...`), for kill and signal tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_fixed_ports(config: dict) -> dict:
    """Replace the port-0 endpoints of a test config with free fixed ports (a restart keeps them)."""
    protocols = config["receivers"]["otlp"]["protocols"]
    for proto in protocols.values():
        if proto is not None:
            proto["endpoint"] = f"127.0.0.1:{free_port()}"
    config["service"]["telemetry"]["metrics"]["address"] = f"127.0.0.1:{free_port()}"
    return config


class SidecarProcess:
    def __init__(self, config: dict, workdir: Path) -> None:
        self.config = config
        self.config_path = workdir / "costctx.yaml"
        self.log_path = workdir / "costctx.log"
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen | None = None

    def _port(self, endpoint: str) -> int:
        return int(endpoint.rsplit(":", 1)[1])

    @property
    def grpc_target(self) -> str:
        return self.config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]

    @property
    def admin_url(self) -> str:
        return "http://" + self.config["service"]["telemetry"]["metrics"]["address"]

    def start(self, timeout: float = 60.0, extra_args: tuple[str, ...] = ()) -> SidecarProcess:
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "costctx", "run", "--config", str(self.config_path), *extra_args],
            stdout=log,
            stderr=log,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(self.admin_url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"sidecar not ready: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metric(self, name: str, labels: dict[str, str] | None = None, headers: dict | None = None) -> float:
        """One sample from /metrics (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        request = urllib.request.Request(self.admin_url + "/metrics", headers=headers or {})
        with urllib.request.urlopen(request, timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                    total += sample.value
        return total

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
