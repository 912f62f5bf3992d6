"""`costctx validate` and `costctx run` agree: a config validate accepts starts, one it refuses
does not. Checked on every config the other tests built (recorded by tests/support/config_record.py;
this module runs last) and on a small corpus here that covers every registered component type
twice, which is also run through the real command line."""

from __future__ import annotations

import asyncio
import copy
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from costctx.cli.main import file_problems
from costctx.service.app import Sidecar
from costctx.service.config.loader import ConfigError
from costctx.service.registry import EXPORTER_TYPES, PROCESSOR_TYPES
from tests.service.test_lifecycle import MINIMAL_SECTIONS
from tests.support import config_record
from tests.support.sidecar import sidecar_config

pytestmark = [pytest.mark.runs_last, pytest.mark.e2e]

SINK = 4317  # exporters are never reached: nothing is sent while a config is tried
MISSING_FILE = "/nonexistent/costctx-test/secret"


def corpus() -> dict[str, dict]:
    every_type = [n for t in sorted(PROCESSOR_TYPES) for n in (t, f"{t}/b")]
    sections = {n: MINIMAL_SECTIONS.get(n.split("/")[0]) for n in every_type}
    both_exporters = sidecar_config(SINK, processors=[])
    both_exporters["exporters"]["otlphttp/b"] = {"endpoint": "http://127.0.0.1:4318"}
    both_exporters["exporters"]["debug/c"] = {"verbosity": "detailed"}
    both_exporters["service"]["pipelines"]["traces"]["exporters"] = ["otlp", "otlphttp/b", "debug/c"]
    assert {name.split("/")[0] for name in both_exporters["exporters"]} == set(EXPORTER_TYPES)
    return {
        "defaults": sidecar_config(SINK),
        "every processor type twice": sidecar_config(SINK, processors=every_type, processor_config=sections),
        "every exporter type": both_exporters,
        "auth by a named instance": sidecar_config(
            SINK, processors=[], extensions={"bearertokenauth/prod": {"token": "t"}},
            service={"extensions": ["bearertokenauth/prod"]}),
        "auth instances named by their servers": sidecar_config(
            SINK, processors=[],
            extensions={"bearertokenauth": {"token": "t"}, "bearertokenauth/admin": {"token": "u"}},
            service={"extensions": ["bearertokenauth", "bearertokenauth/admin"],
                     "telemetry": {"metrics": {"auth": {"authenticator": "bearertokenauth/admin"}}}}),
        "refused: auth configured but not enabled": sidecar_config(
            SINK, processors=[], extensions={"bearertokenauth/prod": {"token": "t"}}),
        "refused: two auth instances no server names": sidecar_config(
            SINK, processors=[], extensions={"bearertokenauth": {"token": "t"}, "bearertokenauth/b": {"token": "u"}},
            service={"extensions": ["bearertokenauth", "bearertokenauth/b"]}),
        "refused: unknown processor type": sidecar_config(SINK, processors=["sample"]),
        "refused: token file missing": sidecar_config(
            SINK, processors=[], extensions={"bearertokenauth": {"filename": MISSING_FILE}},
            service={"extensions": ["bearertokenauth"]}),
        "refused: receiver certificate missing": sidecar_config(SINK, processors=[], receivers={"otlp": {
            "protocols": {"grpc": {"tls": {"cert_file": MISSING_FILE, "key_file": MISSING_FILE}}}}}),
        "refused: memory_limiter without its limit": sidecar_config(SINK, processors=["memory_limiter"]),
    }


def on_free_ports(raw: Any) -> Any:
    """The same config with every listening port 0 (tests that ran before may still hold theirs, and
    the defaults 4317/4318/8888 may be taken on a shared machine) and exporter ports one value, so
    configs differing only in their sink's port are tried once."""
    if not isinstance(raw, dict) or not raw:
        return raw
    raw = copy.deepcopy(raw)
    receivers = raw.get("receivers")
    if receivers is None:
        raw["receivers"] = {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"},
                                                   "http": {"endpoint": "127.0.0.1:0"}}}}
    elif isinstance(receivers, dict) and isinstance(receivers.get("otlp"), dict):
        protocols = receivers["otlp"].get("protocols")
        if isinstance(protocols, dict):
            for name, proto in list(protocols.items()):
                if proto is None:
                    protocols[name] = proto = {}
                if isinstance(proto, dict):
                    proto["endpoint"] = "127.0.0.1:0"
    service = raw.get("service")
    if isinstance(service, dict):
        telemetry = service.setdefault("telemetry", {})
        if isinstance(telemetry, dict):
            metrics = telemetry.setdefault("metrics", {})
            if isinstance(metrics, dict):
                metrics["address"] = "127.0.0.1:0"
    for section in (raw.get("exporters") or {}).values() if isinstance(raw.get("exporters"), dict) else ():
        if isinstance(section, dict) and isinstance(section.get("endpoint"), str):
            section["endpoint"] = re.sub(r":\d+(?=/|$)", ":9", section["endpoint"])
    return raw


def validates(raw: Any, environ: dict[str, str]) -> tuple[bool, Any]:
    """What `costctx validate` decides: the loader, then the files the config names."""
    try:
        config = config_record._real_build_config(raw, environ)
    except ConfigError as exc:
        return False, exc
    problems = file_problems(config)
    return (False, problems) if problems else (True, config)


async def _start_and_stop(config) -> None:
    sidecar = Sidecar(config)
    await sidecar.start()
    await sidecar.stop(grace=0.5)


def listening_on_free_ports(config) -> None:
    """The built config's listening ports set to 0. on_free_ports cannot reach what a raw config
    leaves to the defaults (the empty config a run without a file records has no section to edit):
    without this it bound 127.0.0.1:8888, 4317 and 4318, and failed whenever another job on the
    machine held one ("validate accepts, run fails ... Address already in use")."""
    protocols = config.receivers.otlp.protocols
    for proto in (protocols.grpc, protocols.http):
        if proto is not None:
            proto.endpoint = re.sub(r":\d+$", ":0", proto.endpoint)
    metrics = config.service.telemetry.metrics
    metrics.address = re.sub(r":\d+$", ":0", metrics.address)


def runs(config) -> str | None:
    """What `costctx run` does with a validated config: build, start, stop. None, or why it failed."""
    listening_on_free_ports(config)
    try:
        asyncio.run(_start_and_stop(config))
    except Exception as exc:
        return repr(exc)
    return None


def test_validate_and_run_agree_on_every_config_the_tests_used() -> None:
    tried: dict[str, tuple[Any, dict[str, str]]] = {}
    for raw, environ in [*config_record.RECORDED.values(), *((c, {}) for c in corpus().values())]:
        raw = on_free_ports(raw)
        tried.setdefault(config_record._key(raw, environ), (raw, environ))
    disagreements = []
    accepted = 0
    for raw, environ in tried.values():
        ok, config = validates(raw, environ)
        if not ok:
            continue  # `costctx run` loads through the same loader: it refuses with the same message
        accepted += 1
        failure = runs(config)
        if failure is not None:
            disagreements.append(f"validate accepts, run fails with {failure}: {raw}")
    assert accepted >= len([k for k in corpus() if not k.startswith("refused")])
    assert disagreements == []


def _cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "costctx", *args], capture_output=True, text=True, timeout=timeout)


def _run_until_listening(path: Path, timeout: float = 30.0) -> tuple[bool, int | None, str]:
    """`costctx run`: (listened, exit code if it exited, its log); stopped with SIGTERM once it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "costctx", "run", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log_lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break  # exited
        log_lines.append(line)
        if "costctx listening" in line:
            proc.terminate()
            proc.wait(timeout=timeout)
            return True, None, "".join(log_lines)
    code = proc.wait(timeout=timeout)
    return False, code, "".join(log_lines)


def test_validate_names_the_key_of_a_file_run_could_not_read() -> None:
    ok, problems = validates(on_free_ports(corpus()["refused: token file missing"]), {})
    assert not ok and problems == [
        f"extensions.bearertokenauth.filename: bearertokenauth: cannot read {MISSING_FILE}: No such file or directory"
    ]
    ok, problems = validates(on_free_ports(corpus()["refused: receiver certificate missing"]), {})
    assert not ok and problems == [
        f"receivers.otlp.protocols.grpc.tls.{key}: cannot read {MISSING_FILE}: No such file or directory"
        for key in ("cert_file", "key_file")
    ]


@pytest.mark.parametrize("name", sorted(corpus()))
def test_the_commands_agree(name: str, tmp_path: Path) -> None:
    path = tmp_path / "costctx.yaml"
    path.write_text(yaml.safe_dump(on_free_ports(corpus()[name])))
    validate = _cli("validate", "--config", str(path))
    listened, code, log = _run_until_listening(path)
    assert validate.returncode in (0, 2), validate.stderr
    if validate.returncode == 0:
        assert listened, f"validate accepted, run did not start (exit {code}):\n{log}"
    else:
        assert not listened and code == 2, log
        assert validate.stderr.strip() == log.strip()  # the same message, naming the same key
    assert name.startswith("refused") == (validate.returncode == 2)
