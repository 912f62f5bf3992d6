"""Peak RSS of a real `costctx run` under the memory attacks of issue 16 (item 4), beside the
pod's memory limit (k8s/base/deployment.yaml).

Each case starts a fresh sidecar with the k8s base's config (k8s/base/sidecar.yaml: its
memory_limiter, processors and budget routes), sends the attack, and reads the process's
peak RSS: the kernel's high-water mark (VmHWM in /proc/<pid>/status, exact), and the largest
of psutil samples every 5 ms while the attack runs. Cases:

  gzip_bomb_traces      one 1.2 MB gzip body inflating to ~1.2 GB on /v1/traces
  gzip_bomb_budget_x4   four of them at once on /v1/budget/check
  grpc_56mb             one 56 MB gRPC Export (default max_recv_msg_size_mib)
  grpc_56mb_x4_no_token four 56 MB Exports without a token, with bearertokenauth on and
                        max_recv_msg_size_mib raised to 64 (the refusal must not read them)
  http_56mb_x4_no_token the same on /v1/traces, max_request_body_size raised to 64 MiB
  tiny_items_json       4 MiB of OTLP/JSON made of empty objects (1.4M of them)
  tiny_items_protobuf   4 MiB of protobuf made of empty spans (2M of them in one scope)

Usage: python bench/memory_attacks.py [--case NAME ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.sidecar_wait import READY_S, Ready, wait_ready  # noqa: E402

BASE_CONFIG = REPO / "k8s" / "base" / "sidecar.yaml"
TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MiB = 1024 * 1024
TOKEN = "memory-attack-token"


def pod_memory_limit_mib() -> int:
    """The sidecar container's memory limit in the k8s base (e.g. 256Mi)."""
    docs = yaml.safe_load_all((REPO / "k8s" / "base" / "deployment.yaml").read_text())
    for doc in docs:
        if doc and doc.get("kind") == "Deployment":
            for container in doc["spec"]["template"]["spec"].get("initContainers", []):
                if container.get("restartPolicy") == "Always":
                    limit = container["resources"]["limits"]["memory"]
                    assert limit.endswith("Mi"), limit
                    return int(limit[:-2])
    raise AssertionError("no sidecar container in k8s/base/deployment.yaml")


def gzip_bomb(inflated: int = 1200 * MiB) -> bytes:
    """About 1.2 MB of gzip that inflates to `inflated` zero bytes, built in steps."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    parts = [compressor.compress(block) for _ in range(inflated // MiB)]
    parts.append(compressor.flush())
    return b"".join(parts)


def big_export_request(size: int = 56 * 1000 * 1000) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), "big"
    attribute = span.attributes.add()
    attribute.key, attribute.value.string_value = "blob", "x" * size
    return request.SerializeToString()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _vm_hwm(pid: int) -> int:
    """The process's peak RSS so far (Linux); 0 where /proc has no VmHWM."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sidecar:
    """`costctx run` with the k8s base config, on free loopback ports, exporting nowhere useful
    (the attacks never reach the exporter)."""

    def __init__(self, workdir: Path, auth: bool = False, raise_limits: bool = False) -> None:
        config = yaml.safe_load(BASE_CONFIG.read_text())
        grpc_config = config["receivers"]["otlp"]["protocols"]["grpc"]
        http_config = config["receivers"]["otlp"]["protocols"]["http"]
        if raise_limits:
            grpc_config["max_recv_msg_size_mib"] = 64
            http_config["max_request_body_size"] = 64 * MiB
        if auth:
            config.setdefault("extensions", {})["bearertokenauth/otlp"] = {"token": TOKEN}
            config["service"].setdefault("extensions", []).append("bearertokenauth/otlp")
            grpc_config["auth"] = http_config["auth"] = {"authenticator": "bearertokenauth/otlp"}
        path = workdir / "sidecar.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "costctx.log"
        # A free port is picked, released, then bound by the child: another job on the machine
        # may take it in between. Such a start is retried on fresh ports, a few times.
        for attempt in range(3):
            self._start(path, workdir)
            try:
                self._wait_ready()
                return
            except RuntimeError:
                if attempt == 2 or "already in use" not in self.log():
                    raise
                self._log.close()

    def _start(self, path: Path, workdir: Path) -> None:
        self.grpc_port, self.http_port, self.admin_port = _free_port(), _free_port(), _free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "COLLECTOR_ENDPOINT": f"127.0.0.1:{_free_port()}",
            "COSTCTX_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "COSTCTX_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "COSTCTX_TELEMETRY_ADDRESS": f"127.0.0.1:{self.admin_port}",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(admin_token_env(workdir))
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "costctx", "run", "--config", str(path)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=workdir)

    def _wait_ready(self, timeout: float = READY_S) -> None:
        outcome = wait_ready(self.proc, self.admin_port, timeout)
        if outcome is Ready.EXITED:
            raise RuntimeError(f"costctx exited {self.proc.returncode}: {self.log()}")
        if outcome is Ready.TIMEOUT:
            raise TimeoutError(self.log())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def admin_token_env(workdir: Path) -> dict[str, str]:
    """The k8s base protects the admin port with a token file; give it one."""
    token_file = workdir / "admin-token"
    token_file.write_text("admin-token\n")
    return {"COSTCTX_ADMIN_TOKEN_FILE": str(token_file)}


class PeakSampler:
    """The largest RSS psutil sees every 5 ms while running."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.005)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Result:
    case: str
    answers: list[str]
    rss_before_mib: float
    peak_rss_mib: float  # the kernel's high-water mark (VmHWM), else the sampled peak
    sampled_peak_mib: float
    pod_limit_mib: int
    alive: bool  # the sidecar still answers /healthz after the attack


def _post(url: str, body: bytes, content_type: str, encoding: str = "gzip") -> str:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type, "Content-Encoding": encoding})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return str(answer.status)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except OSError as error:
        return f"error: {error}"


def _grpc_export(port: int, body: bytes, metadata: tuple = ()) -> str:
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = channel.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
        try:
            call(body, timeout=60, metadata=metadata)
            return "OK"
        except grpc.RpcError as error:
            return error.code().name


CASES = ("gzip_bomb_traces", "gzip_bomb_budget_x4", "grpc_56mb", "grpc_56mb_x4_no_token", "http_56mb_x4_no_token",
         "tiny_items_json", "tiny_items_protobuf")


def tiny_items_json(size: int = 4 * MiB) -> bytes:
    return b'{"resourceSpans":[' + b",".join([b"{}"] * (size // 3 - 20)) + b"]}"


def tiny_items_protobuf(size: int = 4 * MiB) -> bytes:
    """One resource, one scope, empty spans (ScopeSpans field 2, length 0) up to `size`."""
    from google.protobuf.internal.encoder import _VarintBytes

    spans = b"\x12\x00" * (size // 2 - 100)
    scope = b"\x12" + _VarintBytes(len(spans)) + spans
    return b"\x0a" + _VarintBytes(len(scope)) + scope


def run_case(case: str, workdir: Path, bomb: bytes | None = None, big: bytes | None = None) -> Result:
    auth = case.endswith("_no_token")
    sidecar = Sidecar(workdir, auth=auth, raise_limits=auth)
    try:
        before = psutil.Process(sidecar.proc.pid).memory_info().rss
        http = f"http://127.0.0.1:{sidecar.http_port}"
        with PeakSampler(sidecar.proc.pid) as sampler:
            if case == "gzip_bomb_traces":
                answers = [_post(http + "/v1/traces", bomb or gzip_bomb(), "application/x-protobuf")]
            elif case == "gzip_bomb_budget_x4":
                body = bomb or gzip_bomb()
                with ThreadPoolExecutor(4) as pool:
                    answers = list(pool.map(lambda _: _post(http + "/v1/budget/check", body, "application/json"),
                                            range(4)))
            elif case == "grpc_56mb":
                answers = [_grpc_export(sidecar.grpc_port, big or big_export_request())]
            elif case == "grpc_56mb_x4_no_token":
                body = big or big_export_request()
                with ThreadPoolExecutor(4) as pool:
                    answers = list(pool.map(lambda _: _grpc_export(sidecar.grpc_port, body), range(4)))
            elif case == "tiny_items_json":
                answers = [_post(http + "/v1/traces", tiny_items_json(), "application/json", "identity")]
            elif case == "tiny_items_protobuf":
                answers = [_post(http + "/v1/traces", tiny_items_protobuf(), "application/x-protobuf", "identity")]
            elif case == "http_56mb_x4_no_token":
                body = big or big_export_request()
                with ThreadPoolExecutor(4) as pool:
                    answers = list(pool.map(
                        lambda _: _post(http + "/v1/traces", body, "application/x-protobuf", "identity"), range(4)))
            else:
                raise ValueError(f"unknown case {case!r}")
            time.sleep(0.2)  # let a late allocation show
        hwm = _vm_hwm(sidecar.proc.pid)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{sidecar.admin_port}/healthz", timeout=5) as answer:
                alive = answer.status == 200
        except OSError:
            alive = False
        return Result(case, answers, round(before / MiB, 1), round((hwm or sampler.peak) / MiB, 1),
                      round(sampler.peak / MiB, 1), pod_memory_limit_mib(), alive)
    finally:
        sidecar.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", choices=CASES)
    parser.add_argument("--json")
    args = parser.parse_args()
    bomb, big = gzip_bomb(), big_export_request()
    print(f"gzip bomb: {len(bomb) / 1e6:.2f} MB inflating to 1200 MiB; gRPC request: {len(big) / 1e6:.1f} MB")
    results = []
    for case in args.case or CASES:
        with tempfile.TemporaryDirectory() as tmp:
            result = run_case(case, Path(tmp), bomb, big)
        results.append(result)
        print(f"{case:24s} answers={','.join(result.answers):28s} rss before {result.rss_before_mib:6.1f} MiB  "
              f"peak {result.peak_rss_mib:6.1f} MiB (sampled {result.sampled_peak_mib:6.1f})  "
              f"pod limit {result.pod_limit_mib} MiB  alive={result.alive}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
