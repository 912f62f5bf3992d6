#!/usr/bin/env python
"""The sidecar benchmark: every figure beside its baseline, measured in one run.

Starts a sink, the sidecar and a load generator as separate processes on this machine and
measures, each against a baseline from the same run:

1. saturation throughput (spans/s): every default processor on vs the same sidecar with
   `processors: []`; the sink alone is measured too, to show it is not the bottleneck;
2. CPU (% of one core) and peak RSS of the sidecar process at a fixed 10,000 spans/s, with
   processors on and off, beside the OpenTelemetry Collector testbed's ceiling for that
   load (20% of a core, 100 MB);
3. added latency (p50, p99) of an export call through the sidecar vs straight to the sink,
   at 5,000 spans/s, with spans that carry their whole context (nothing is held);
4. in-process throughput of the processor stage vs protobuf parse + serialize (the floor);
5. how each grows with batch size and with attributes per span;
6. two sidecars sharing a Redis (full run, or `--two-sidecars` alone): CPU per span of B's
   sidecar when B's spans carry only `traceparent` (their parents registered by A's sidecar),
   with the context registry on vs off (`backend: memory`), in the same run.

The codec is a dimension of figures 1-4: with every processor on, each is measured with the
native codec (`full`, the default when built) and with the Python one (`full_python`:
COSTCTX_CODEC=python in the sidecar's environment), side by side with their ratio. With no
processors (`off`) no batch is scanned or encoded, so the codec does not matter there and it
is measured once.

Prints a table and writes JSON (`--json`). `--quick` runs tiny versions of every figure
(CI keeps the script working with it; its numbers mean nothing).

    python bench/run.py [--quick | --two-sidecars] [--json bench/results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import inprocess  # noqa: E402
from bench.sidecar_wait import READY_S, Ready, wait_ready  # noqa: E402
from bench.sink_server import read_stats  # noqa: E402
from bench.workload import WorkloadSpec, build_requests, write_pool  # noqa: E402
from costctx.service.registry import DEFAULT_TRACE_PROCESSORS  # noqa: E402

PY = sys.executable
COLLECTOR_CEILING = {"cpu_pct": 20.0, "rss_mb": 100.0, "rate": 10_000,
                     "source": "opentelemetry-collector-contrib testbed/tests/trace_test.go, OTLP gRPC, no gzip"}
TARGETS = {"inprocess_full_vs_floor_min": 0.40, "cpu_pct_at_10k_max": 40.0, "peak_rss_mb_at_10k_max": 100.0,
           "added_p99_ms_at_5k_max": 5.0}
# Issue 15 (the native codec), at the default point with the native codec: processors in
# process, the sidecar at 10,000 spans/s offered (the Collector testbed's figure), added p99
# at 5,000 spans/s, and saturation against the Python codec's in the same run.
TARGETS_NATIVE = {"processor_us_per_span_max": 10.0, "cpu_pct_at_10k_max": 20.0, "peak_rss_mb_at_10k_max": 100.0,
                  "added_p99_ms_at_5k_max": 5.0, "saturation_vs_python_min": 5.0}
# Deadlines of waits on a condition, generous: each wait ends as soon as its condition holds,
# so only what never comes (a sidecar that never starts, a window nothing is delivered in)
# waits all of it; on a loaded two-core machine a sidecar's start-up took over 30 s.
DRAINED_S = 30.0  # the exporter's queue emptied between figures (wait_drained)
DELIVERED_S = 120.0  # a window past its planned end, for its first span delivered (wait_delivered)


def available_codecs() -> list[str]:
    """The codecs to measure, the default first: native (when built) and python."""
    from costctx.pdata.codec import native

    return ["native", "python"] if native.AVAILABLE else ["python"]


def full_modes(plan: Plan) -> dict[str, tuple[list[str], str | None]]:
    """Pipeline modes of the end-to-end figures: name -> (processors, COSTCTX_CODEC). `off` runs
    with the default codec (it never scans); `full` every processor on with the first codec,
    `full_<codec>` with each other one."""
    modes: dict[str, tuple[list[str], str | None]] = {"off": ([], None)}
    for i, codec in enumerate(plan.codecs):
        modes["full" if i == 0 else f"full_{codec}"] = (list(DEFAULT_TRACE_PROCESSORS), codec)
    return modes


def other_codec_modes(plan: Plan) -> list[str]:
    return [f"full_{codec}" for codec in plan.codecs[1:]]


@dataclass
class Plan:
    quick: bool
    default_batch: int = 100
    default_attrs: int = 4
    batch_sizes: list[int] = field(default_factory=lambda: [10, 100, 512])
    attr_counts: list[int] = field(default_factory=lambda: [0, 4, 16, 48])
    pool_spans: int = 20_000
    saturation_s: float = 8.0
    rate_s: float = 10.0
    warmup_s: float = 2.0
    concurrency: int = 8
    cpu_rate: float = 10_000.0
    latency_rate: float = 5_000.0
    low_latency_rate: float = 1_000.0
    inprocess_rounds: int = 5
    inprocess_spans: int = 6_000  # per round; the full pipeline runs at a few thousand spans/s
    e2e_sweep: bool = True
    two_sidecars: bool = True  # needs redis-server on PATH; skipped by --quick
    two_traces: int = 4_000  # A's CLIENT spans; B's pool is two_traces x two_fanout spans
    two_fanout: int = 5
    two_rate: float = 1_000.0  # B's spans/s: one the full pipeline keeps up with on a loaded machine
    codecs: list[str] = field(default_factory=lambda: available_codecs())  # the default first

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> Plan:
        if args.quick:
            return cls(quick=True, batch_sizes=[20, 100], attr_counts=[0, 4], pool_spans=1_000, inprocess_spans=1_000,
                       saturation_s=1.5, rate_s=1.5, warmup_s=0.5, cpu_rate=2_000.0, latency_rate=1_000.0,
                       low_latency_rate=500.0, inprocess_rounds=2, e2e_sweep=False, two_sidecars=False)
        plan = cls(quick=False)
        if args.duration:
            plan.saturation_s = plan.rate_s = args.duration
        if args.no_sweep:
            plan.e2e_sweep = False
        return plan

    def points(self, sweep: bool) -> list[tuple[int, int]]:
        """(spans per batch, extra attributes per span); the default point first."""
        default = (self.default_batch, self.default_attrs)
        if not sweep:
            return [default]
        out = [default]
        out += [(b, self.default_attrs) for b in self.batch_sizes if (b, self.default_attrs) not in out]
        out += [(self.default_batch, a) for a in self.attr_counts if (self.default_batch, a) not in out]
        return out


# -- processes -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class SinkProcess:
    def __init__(self, workdir: Path) -> None:
        self.log = (workdir / "sink.log").open("w")
        self.proc = subprocess.Popen([PY, str(REPO / "bench" / "sink_server.py")], stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, cwd=REPO)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"sink did not start; see {workdir / 'sink.log'}")
        self.port = json.loads(line)["port"]
        self.target = f"127.0.0.1:{self.port}"
        self.ps = psutil.Process(self.proc.pid)

    def requests(self) -> int:
        return read_stats(self.target)["requests"]

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


class SidecarProcess:
    """`python -m costctx run --config <generated yaml>`, exporting to the sink."""

    command = [PY, "-m", "costctx"]  # bench/memory_profile.py runs it under its probe instead

    def __init__(self, workdir: Path, name: str, processors: list[str], sink_port: int,
                 settings: dict | None = None, codec: str | None = None) -> None:
        self.grpc_port, self.admin_port = free_port(), free_port()
        self.codec = codec
        config = sidecar_config(processors, sink_port, self.grpc_port, self.admin_port, settings)
        path = workdir / f"sidecar-{name}.yaml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.log_path = workdir / f"sidecar-{name}.log"
        self.log = self.log_path.open("w")
        # The codec as an operator picks it: COSTCTX_CODEC in the sidecar's environment.
        env = os.environ | ({"COSTCTX_CODEC": codec} if codec else {})
        self.proc = subprocess.Popen([*self.command, "run", "--config", str(path), "--grace", "5"],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        self.ps = psutil.Process(self.proc.pid)
        self.target = f"127.0.0.1:{self.grpc_port}"
        self._wait_ready()
        if codec and self.metric("costctx_codec_info", codec=codec) != 1:
            stop_process(self.proc)
            raise RuntimeError(f"sidecar {name} does not run the {codec} codec; see {self.log_path}")

    def _wait_ready(self, timeout: float = READY_S) -> None:
        outcome = wait_ready(self.proc, self.admin_port, timeout)
        if outcome is Ready.EXITED:
            raise RuntimeError(f"sidecar exited with {self.proc.returncode}; see {self.log_path}")
        if outcome is Ready.TIMEOUT:
            stop_process(self.proc)
            raise RuntimeError(f"sidecar not ready after {timeout}s; see {self.log_path}")

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            match = re.match(r"([^{\s]+)(?:\{(.*)\})?\s+(\S+)$", line)
            if not match or match.group(1) != name:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(match.group(3))
        return total

    def forwarded(self) -> float:
        return self.metric("costctx_exporter_sent_items_total", signal="traces")

    def wait_drained(self, timeout: float = DRAINED_S) -> bool:
        """Until the exporter's queue is empty (the next figure starts on an idle sidecar); says
        so on stderr when it gives up, since the next figure then starts with a backlog."""
        deadline = time.monotonic() + timeout
        while (left := self.metric("costctx_exporter_queue_size")) > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        if left <= 0:
            return True
        log(f"wait_drained: {left:.0f} still queued after {timeout:.0f}s; the next figure starts with them")
        return False

    def peak_rss_mb(self) -> float:
        """VmHWM: the most resident memory the process ever had (Linux)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return self.ps.memory_info().rss / 2**20

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def start_sidecar(workdir: Path, name: str, processors: list[str], sink_port: int,
                  settings: dict | None = None, codec: str | None = None) -> SidecarProcess:
    """Start a sidecar; once more on failure (a free port picked here may be taken meanwhile).
    `settings`: processor name -> its config (default config for the others); `codec`: its
    COSTCTX_CODEC (None: the default)."""
    try:
        return SidecarProcess(workdir, name, processors, sink_port, settings, codec)
    except RuntimeError as exc:
        log(f"sidecar {name} failed to start ({exc}); retrying once")
        return SidecarProcess(workdir, f"{name}-retry", processors, sink_port, settings, codec)


def sidecar_config(processors: list[str], sink_port: int, grpc_port: int, admin_port: int,
                   settings: dict | None = None) -> dict:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}}},
        "processors": {name: (settings or {}).get(name) for name in processors},
        "exporters": {
            "otlp": {
                "endpoint": f"127.0.0.1:{sink_port}",
                "insecure": True,
                # As the Collector testbed's 20%-of-a-core figure: OTLP gRPC without gzip.
                "compression": "none",
                "timeout": "10s",
                # Queued requests leave merged (up to 2,048 spans or 200 ms after the first), as the
                # Collector testbed's figure runs with its batch processor.
                "sending_queue": {"num_consumers": 10, "queue_size": 1000,
                                  "batch": {"flush_timeout": "200ms", "min_size": 2048}},
                "retry_on_failure": {"initial_interval": "50ms", "max_interval": "500ms"},
            }
        },
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": processors, "exporters": ["otlp"]}},
            "telemetry": {"metrics": {"address": f"127.0.0.1:{admin_port}"}, "logs": {"level": "warn"}},
        },
    }


# -- measuring a window of load ------------------------------------------------------------
def cpu_seconds(ps: psutil.Process) -> float:
    t = ps.cpu_times()
    return t.user + t.system


def machine_busy() -> tuple[float, float]:
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return sum(t) - idle, sum(t)


class Window:
    """Counters read at the start and end of the measurement window, plus an RSS sampler."""

    def __init__(self, probes: dict[str, Callable[[], float]], rss_of: psutil.Process | None) -> None:
        self.probes = probes
        self.rss_of = rss_of
        self.before: dict[str, float] = {}
        self.after: dict[str, float] = {}
        self.rss_max = 0.0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def open(self) -> None:
        busy, total = machine_busy()
        self.before = {name: probe() for name, probe in self.probes.items()} | {"_busy": busy, "_total": total}
        self.before["_t"] = time.monotonic()
        if self.rss_of is not None:
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()

    def close(self) -> None:
        self.after = {"_t": time.monotonic()}
        busy, total = machine_busy()
        self.after |= {name: probe() for name, probe in self.probes.items()} | {"_busy": busy, "_total": total}
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            with contextlib.suppress(psutil.Error):
                self.rss_max = max(self.rss_max, self.rss_of.memory_info().rss / 2**20)

    @property
    def seconds(self) -> float:
        return self.after["_t"] - self.before["_t"]

    def delta(self, name: str) -> float:
        return self.after[name] - self.before[name]

    def moved(self, *names: str) -> bool:
        """Whether each probe `names` has counted something since the window opened."""
        return all(self.probes[name]() > self.before[name] for name in names)

    def rate(self, name: str) -> float:
        return self.delta(name) / self.seconds

    def machine_busy_pct(self) -> float:
        """How busy the whole machine was (all processes, all cores), in % of all cores."""
        total = self.delta("_total")
        return 100.0 * self.delta("_busy") / total if total > 0 else 0.0


_cycle = [0]


def run_load(mode: str, target: str, pool: Path, plan: Plan, window: Window, *, duration: float,
             rate: float | None = None, workdir: Path, delivered: Callable[[], bool] | None = None) -> dict:
    """Run the load generator; open the window after warm-up, close it just before the end, or
    later when `delivered()` (e.g. the sidecar forwarded a span in the window) is not true yet:
    a starved sidecar on a loaded machine may deliver nothing in a quick run's ~1 s window,
    and a figure per span delivered needs one. Held open until it is, up to DELIVERED_S more
    (the figures are over the window's real length); on a quiet machine it closes on time."""
    _cycle[0] += 1000  # each run sends workflows no earlier run sent
    cmd = [PY, str(REPO / "bench" / "loadgen.py"), mode, "--target", target, "--pool", str(pool),
           "--duration", str(duration), "--warmup", str(plan.warmup_s), "--concurrency", str(plan.concurrency),
           "--cycle-offset", str(_cycle[0])]
    if rate is not None:
        cmd += ["--rate", str(rate)]
    with (workdir / "loadgen.log").open("a") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
        started = proc.stdout.readline()
        if not started:
            proc.wait()
            raise RuntimeError(f"load generator failed; see {workdir / 'loadgen.log'}")
        t0 = time.monotonic()
        loadgen_ps = psutil.Process(proc.pid)
        # The load generator's own CPU: at 100% of a core it, not the sidecar, is the limit.
        window.probes["loadgen_cpu"] = lambda: cpu_seconds(loadgen_ps)
        time.sleep(plan.warmup_s)
        window.open()
        time.sleep(max(0.0, t0 + duration - time.monotonic() - 0.05))
        if delivered is not None:
            wait_delivered(delivered)
        window.close()
        out, _ = proc.communicate(timeout=duration + 60)
    return json.loads(out.strip().splitlines()[-1])


def wait_delivered(delivered: Callable[[], bool], timeout: float = DELIVERED_S) -> None:
    deadline = time.monotonic() + timeout
    while not delivered() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not delivered():
        log(f"nothing delivered in the window after {timeout:.0f} s more")


# -- the figures ---------------------------------------------------------------------------
@dataclass
class Pools:
    workdir: Path
    plan: Plan
    _cache: dict[tuple[int, int, bool], Path] = field(default_factory=dict)
    _bytes: dict[tuple[int, int, bool], list[bytes]] = field(default_factory=dict)

    def path(self, batch: int, attrs: int, complete: bool = False) -> Path:
        key = (batch, attrs, complete)
        if key not in self._cache:
            spec = WorkloadSpec(spans_per_batch=batch, extra_attrs=attrs, complete=complete,
                                batches=max(20, self.plan.pool_spans // batch))
            requests = build_requests(spec)
            path = self.workdir / f"pool-{'c' if complete else 'm'}-b{batch}-a{attrs}.bin"
            write_pool(path, requests, batch, spec)
            self._cache[key] = path
            self._bytes[key] = requests
        return self._cache[key]

    def requests(self, batch: int, attrs: int, complete: bool = False) -> list[bytes]:
        self.path(batch, attrs, complete)
        return self._bytes[(batch, attrs, complete)]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sink_alone(sink: SinkProcess, pools: Pools, plan: Plan, workdir: Path) -> dict:
    batch = plan.default_batch
    window = Window({"requests": sink.requests, "sink_cpu": lambda: cpu_seconds(sink.ps)}, None)
    run_load("saturate", sink.target, pools.path(batch, plan.default_attrs), plan, window,
             duration=plan.saturation_s, workdir=workdir, delivered=lambda: window.moved("requests"))
    return {"spans_per_batch": batch, "spans_per_s": window.rate("requests") * batch,
            "sink_cpu_pct": 100 * window.rate("sink_cpu"), "loadgen_cpu_pct": 100 * window.rate("loadgen_cpu"),
            "machine_busy_pct": window.machine_busy_pct()}


def saturation(sink: SinkProcess, pools: Pools, plan: Plan, workdir: Path) -> dict:
    points = plan.points(plan.e2e_sweep)
    results: dict[tuple[int, int], dict] = {p: {} for p in points}
    for mode, (processors, codec) in full_modes(plan).items():
        sidecar = start_sidecar(workdir, f"saturate-{mode}", processors, sink.port, codec=codec)
        try:
            for batch, attrs in points:
                log(f"saturation: processors {mode} ({codec or 'default'} codec), batch {batch}, attrs +{attrs}")
                window = Window({"forwarded": sidecar.forwarded, "cpu": lambda s=sidecar: cpu_seconds(s.ps),
                                 "sink_cpu": lambda: cpu_seconds(sink.ps)}, None)
                load = run_load("saturate", sidecar.target, pools.path(batch, attrs), plan, window,
                                duration=plan.saturation_s, workdir=workdir,
                                delivered=lambda w=window: w.moved("forwarded"))
                results[(batch, attrs)][mode] = {
                    "spans_per_s": window.rate("forwarded"),
                    "accepted_spans_per_s": load["spans_per_s"],
                    "refused_requests": load["requests_refused"],
                    "sidecar_cpu_pct": 100 * window.rate("cpu"),
                    "sink_cpu_pct": 100 * window.rate("sink_cpu"),
                    "loadgen_cpu_pct": 100 * window.rate("loadgen_cpu"),
                    "machine_busy_pct": window.machine_busy_pct(),
                }
                sidecar.wait_drained()
        finally:
            sidecar.stop()
    rows = []
    for (batch, attrs), r in results.items():
        off = r.get("off", {}).get("spans_per_s")  # e2e_part.py measures processors off only with --off
        row = {"spans_per_batch": batch, "extra_attrs": attrs, **r,
               "full_vs_off": r["full"]["spans_per_s"] / off if off else None}
        for other in other_codec_modes(plan):  # how many times the other codec's throughput
            row[f"full_vs_{other}"] = ratio(r["full"]["spans_per_s"], r[other]["spans_per_s"])
        rows.append(row)
    return {"default": rows[0], "sweep": rows, "codecs": plan.codecs}


def fixed_rate_cost(sink: SinkProcess, pools: Pools, plan: Plan, workdir: Path) -> dict:
    """CPU and peak RSS of a fresh sidecar process per (point, mode) at plan.cpu_rate spans/s."""
    rows = []
    for batch, attrs in plan.points(plan.e2e_sweep):
        row: dict = {"spans_per_batch": batch, "extra_attrs": attrs, "rate": plan.cpu_rate}
        for mode, (processors, codec) in full_modes(plan).items():
            log(f"cpu/rss at {plan.cpu_rate:.0f} spans/s: processors {mode} ({codec or 'default'} codec), "
                f"batch {batch}, attrs +{attrs}")
            sidecar = start_sidecar(workdir, f"rate-{mode}-b{batch}-a{attrs}", processors, sink.port, codec=codec)
            try:
                # Before any load: what start-up costs, apart from what traffic adds.
                start_rss_mb = sidecar.ps.memory_info().rss / 2**20
                window = Window({"forwarded": sidecar.forwarded, "cpu": lambda s=sidecar: cpu_seconds(s.ps)},
                                sidecar.ps)
                load = run_load("rate", sidecar.target, pools.path(batch, attrs), plan, window,
                                duration=plan.rate_s, rate=plan.cpu_rate, workdir=workdir,
                                delivered=lambda w=window: w.moved("forwarded"))
                delivered = window.rate("forwarded")
                row[mode] = {
                    "cpu_pct": 100 * window.rate("cpu"),
                    # CPU per span delivered, scaled to 10,000 spans/s: comparable even when the
                    # sidecar could not keep up with the offered rate or was starved of CPU.
                    "cpu_pct_per_10k_delivered": 100 * window.rate("cpu") * 10_000 / delivered if delivered else None,
                    "peak_rss_mb": sidecar.peak_rss_mb(),
                    "start_rss_mb": start_rss_mb,
                    "window_max_rss_mb": window.rss_max,
                    "achieved_spans_per_s": delivered,
                    "late_sends": load["late_sends"],
                    "refused_requests": load["requests_refused"],
                    "machine_busy_pct": window.machine_busy_pct(),
                }
            finally:
                sidecar.stop()
        off = row.get("off")  # absent when bench/e2e_part.py runs without --off
        row["full_vs_off_cpu"] = row["full"]["cpu_pct"] / off["cpu_pct"] if off and off["cpu_pct"] else None
        for other in other_codec_modes(plan):  # the other codec's CPU per span delivered, as a multiple
            row[f"{other}_vs_full_cpu"] = ratio(row[other]["cpu_pct_per_10k_delivered"],
                                                row["full"]["cpu_pct_per_10k_delivered"])
        row["collector_ceiling"] = COLLECTOR_CEILING
        rows.append(row)
    return {"default": rows[0], "sweep": rows}


def latency(sink: SinkProcess, pools: Pools, plan: Plan, workdir: Path, rate: float,
            points: list[tuple[int, int]], duration: float | None = None) -> dict:
    """Export-call latency at `rate` spans/s, direct to the sink and through the sidecar."""
    rows: dict[tuple[int, int], dict] = {p: {"spans_per_batch": p[0], "extra_attrs": p[1], "rate": rate}
                                         for p in points}

    def one(target: str, batch: int, attrs: int, sidecar: SidecarProcess | None = None) -> dict:
        probes = {"cpu": lambda: cpu_seconds(sidecar.ps)} if sidecar is not None else {}
        window = Window(probes, None)
        load = run_load("rate", target, pools.path(batch, attrs, complete=True), plan, window,
                        duration=duration or plan.rate_s, rate=rate, workdir=workdir)
        out = {**load["latency_ms"], "achieved_spans_per_s": load["spans_per_s"],
               "late_sends": load["late_sends"], "machine_busy_pct": window.machine_busy_pct()}
        if sidecar is not None:
            out["sidecar_cpu_pct"] = 100 * window.rate("cpu")
            out["sidecar_peak_rss_mb"] = sidecar.peak_rss_mb()  # lifetime peak, this point and those before
        return out

    for batch, attrs in points:
        log(f"latency at {rate:.0f} spans/s: direct to the sink, batch {batch}, attrs +{attrs}")
        rows[(batch, attrs)]["direct"] = one(sink.target, batch, attrs)
    modes = full_modes(plan)
    for mode, (processors, codec) in modes.items():
        sidecar = start_sidecar(workdir, f"latency-{mode}-{rate:.0f}", processors, sink.port, codec=codec)
        try:
            for batch, attrs in points:
                log(f"latency at {rate:.0f} spans/s: processors {mode}, batch {batch}, attrs +{attrs}")
                rows[(batch, attrs)][mode] = one(sidecar.target, batch, attrs, sidecar)
        finally:
            sidecar.stop()
    out = []
    for row in rows.values():
        for mode in modes:
            for q in ("p50", "p99"):
                mine, base = row[mode][q], row["direct"][q]
                row[f"added_{q}_ms_{mode}"] = mine - base if mine is not None and base is not None else None
        out.append(row)
    return {"default": out[0], "sweep": out}


def in_process(pools: Pools, plan: Plan) -> dict:
    import asyncio

    rows = []
    for i, (batch, attrs) in enumerate(plan.points(True)):
        log(f"in-process: batch {batch}, attrs +{attrs}")
        requests = pools.requests(batch, attrs)[: max(1, plan.inprocess_spans // batch)]
        result = asyncio.run(inprocess.measure(requests, batch, list(DEFAULT_TRACE_PROCESSORS),
                                               plan.inprocess_rounds, cycle_base=50_000 + i * 100,
                                               codecs=plan.codecs))
        rows.append({"extra_attrs": attrs, **result})
    # The same default point with spans that arrive with their whole context: nothing to
    # repair or hold, the cheapest case a well-instrumented service gives the sidecar.
    batch, attrs = plan.points(False)[0]
    log(f"in-process: complete spans, batch {batch}, attrs +{attrs}")
    requests = pools.requests(batch, attrs, complete=True)[: max(1, plan.inprocess_spans // batch)]
    complete = asyncio.run(inprocess.measure(requests, batch, list(DEFAULT_TRACE_PROCESSORS),
                                             plan.inprocess_rounds, cycle_base=60_000, codecs=plan.codecs))
    return {"default": rows[0], "sweep": rows, "complete_spans": {"extra_attrs": attrs, **complete}}


# -- 6. two sidecars sharing a Redis -------------------------------------------------------
@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str | None]:
    """A redis-server on a free loopback port (its URL), or None when none is on PATH."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    import redis

    port = free_port()
    with (workdir / "redis.log").open("w") as out:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no"], stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 15
            while True:
                try:
                    redis.Redis.from_url(url, socket_timeout=0.5).ping()
                    break
                except redis.RedisError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"redis-server did not start; see {workdir / 'redis.log'}") from None
                    time.sleep(0.05)
            yield url
        finally:
            stop_process(proc)


def send_all(target: str, requests: list[bytes]) -> None:
    """Export each request once, in order (A's side: its spans register the contexts)."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                     request_serializer=None, response_deserializer=None)
        for body in requests:
            export(body, timeout=10)


def two_sidecars(sink: SinkProcess, plan: Plan, workdir: Path) -> dict:
    """CPU per span of B's sidecar, B's spans carrying only `traceparent`: registry on vs off."""
    from bench import two_sidecar_workload

    batch = plan.default_batch
    with redis_server(workdir) as url:
        if url is None:
            log("two sidecars: skipped (no redis-server on PATH)")
            return {"skipped": "no redis-server on PATH"}
        a_requests, b_requests = two_sidecar_workload.build(plan.two_traces, plan.two_fanout, batch)
        b_pool = workdir / "pool-two-sidecars-b.bin"
        write_pool(b_pool, b_requests, batch)
        b_spans = plan.two_traces * plan.two_fanout
        passes = int(plan.two_rate * plan.rate_s // b_spans) + 2  # passes over B's pool the run may make
        registries = {"off": {"backend": "memory"},
                      "on": {"backend": "redis", "redis": {"url": url, "key_prefix": "{bench}:registry:"}}}
        out: dict = {"rate": plan.two_rate, "spans_per_batch": batch, "fanout": plan.two_fanout,
                     "redis": url.rsplit("/", 1)[0]}
        for mode, registry in registries.items():
            settings = {"inherit": {"registry": registry}}
            side_a = start_sidecar(workdir, f"two-{mode}-a", list(DEFAULT_TRACE_PROCESSORS), sink.port, settings)
            side_b = start_sidecar(workdir, f"two-{mode}-b", list(DEFAULT_TRACE_PROCESSORS), sink.port, settings)
            try:
                first = _cycle[0] + 1000  # the cycle run_load gives B's first pass
                log(f"two sidecars, registry {mode}: A registers {passes} x {plan.two_traces} contexts")
                for cycle in range(first, first + passes):
                    send_all(side_a.target, two_sidecar_workload.a_requests_for_cycle(a_requests, cycle))
                side_a.wait_drained()
                deadline = time.monotonic() + READY_S  # every context in the store before B asks
                while time.monotonic() < deadline and side_a.metric("costctx_registry_pending_writes") > 0:
                    time.sleep(0.1)
                log(f"two sidecars, registry {mode}: B at {plan.two_rate:.0f} spans/s, traceparent only")
                window = Window({"forwarded": side_b.forwarded, "cpu": lambda s=side_b: cpu_seconds(s.ps),
                                 "remote_hits": lambda s=side_b: s.metric("costctx_registry_lookups_total",
                                                                          result="remote"),
                                 "misses": lambda s=side_b: s.metric("costctx_registry_lookups_total",
                                                                     result="miss"),
                                 "round_trips": lambda s=side_b: s.metric("costctx_registry_round_trips_total")},
                                side_b.ps)
                # B's spans delivered, and (registry on) their parents found in the store
                found = ("forwarded", "remote_hits") if mode == "on" else ("forwarded",)
                load = run_load("rate", side_b.target, b_pool, plan, window, duration=plan.rate_s,
                                rate=plan.two_rate, workdir=workdir, delivered=lambda w=window, f=found: w.moved(*f))
                forwarded = window.delta("forwarded")
                out[mode] = {
                    "b_cpu_us_per_span": 1e6 * window.delta("cpu") / forwarded if forwarded else None,
                    "b_cpu_pct": 100 * window.rate("cpu"),
                    "b_delivered_spans_per_s": window.rate("forwarded"),
                    "b_registry_remote_hits": window.delta("remote_hits"),
                    "b_registry_misses": window.delta("misses"),
                    "b_registry_round_trips": window.delta("round_trips"),
                    "b_peak_rss_mb": side_b.peak_rss_mb(),
                    "late_sends": load["late_sends"],
                    "refused_requests": load["requests_refused"],
                    "machine_busy_pct": window.machine_busy_pct(),
                }
            finally:
                side_b.stop()
                side_a.stop()
        on, off = out["on"]["b_cpu_us_per_span"], out["off"]["b_cpu_us_per_span"]
        out["on_vs_off"] = on / off if on and off else None
        out["added_us_per_span"] = on - off if on is not None and off is not None else None
        return out


# -- report --------------------------------------------------------------------------------
def machine_info() -> dict:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import google.protobuf
    import grpc
    from google.protobuf.internal import api_implementation

    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "grpcio": grpc.__version__, "protobuf": google.protobuf.__version__,
            "protobuf_backend": api_implementation.Type(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}


def check_targets(results: dict) -> dict:
    ip = results["inprocess"]["default"]["full_vs_floor"]
    cost = results["cpu_rss_at_rate"]["default"]["full"]
    lat = results["latency"]["default"]["added_p99_ms_full"]
    quick = results["quick"]
    return {
        "inprocess_full_vs_floor": {"value": ip, "target": f">= {TARGETS['inprocess_full_vs_floor_min']}",
                                    "met": ip >= TARGETS["inprocess_full_vs_floor_min"]},
        # CPU per 10,000 spans/s actually delivered: the raw CPU % at the offered rate flatters
        # a sidecar that could not keep up (it delivered less and so did less work).
        "cpu_pct_at_10k": {"value": cost["cpu_pct_per_10k_delivered"], "target": f"< {TARGETS['cpu_pct_at_10k_max']}",
                           "met": None if quick or cost["cpu_pct_per_10k_delivered"] is None
                           else cost["cpu_pct_per_10k_delivered"] < TARGETS["cpu_pct_at_10k_max"]},
        "peak_rss_mb_at_10k": {"value": cost["peak_rss_mb"], "target": f"< {TARGETS['peak_rss_mb_at_10k_max']}",
                               "met": None if quick else cost["peak_rss_mb"] < TARGETS["peak_rss_mb_at_10k_max"]},
        "added_p99_ms_at_5k": {"value": lat, "target": f"< {TARGETS['added_p99_ms_at_5k_max']}",
                               "met": None if quick or lat is None else lat < TARGETS["added_p99_ms_at_5k_max"]},
    } | check_native_targets(results)


def check_native_targets(results: dict) -> dict:
    """Issue 15's targets, each for the native codec at the default point (none without it)."""
    if "native" not in results["codecs"]:
        return {}
    quick = results["quick"]
    t = TARGETS_NATIVE

    def verdict(value: float | None, ok: Callable[[float], bool]) -> bool | None:
        return None if quick or value is None else ok(value)

    proc = results["inprocess"]["default"]["by_codec"]["native"]["processor_us_per_span"]
    cost = results["cpu_rss_at_rate"]["default"]["full"]
    lat = results["latency"]["default"]["added_p99_ms_full"]
    sat = results["saturation"]["default"]
    sat_ratio = sat.get("full_vs_full_python")
    return {
        "native_processor_us_per_span": {"value": proc, "target": f"<= {t['processor_us_per_span_max']}",
                                         "met": verdict(proc, lambda v: v <= t["processor_us_per_span_max"])},
        "native_cpu_pct_at_10k": {"value": cost["cpu_pct_per_10k_delivered"],
                                  "target": f"<= {t['cpu_pct_at_10k_max']}",
                                  "met": verdict(cost["cpu_pct_per_10k_delivered"],
                                                 lambda v: v <= t["cpu_pct_at_10k_max"])},
        "native_peak_rss_mb_at_10k": {"value": cost["peak_rss_mb"], "target": f"< {t['peak_rss_mb_at_10k_max']}",
                                      "met": verdict(cost["peak_rss_mb"], lambda v: v < t["peak_rss_mb_at_10k_max"])},
        "native_added_p99_ms_at_5k": {"value": lat, "target": f"< {t['added_p99_ms_at_5k_max']}",
                                      "met": verdict(lat, lambda v: v < t["added_p99_ms_at_5k_max"])},
        # "today's" saturation: the same sidecar with the Python codec, in this run
        "native_saturation_vs_python": {"value": sat_ratio, "target": f">= {t['saturation_vs_python_min']}",
                                        "met": verdict(sat_ratio, lambda v: v >= t["saturation_vs_python_min"])},
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def print_table(results: dict, out=sys.stdout) -> None:
    w = out.write
    m = results["machine"]
    w(f"\ncostctx benchmark ({'QUICK: numbers mean nothing' if results['quick'] else 'full'}) on {m['nproc']} x "
      f"{m['cpu_model']}, Python {m['python']}, protobuf {m['protobuf']} ({m['protobuf_backend']})\n")
    w(f"codecs (processors on): {', '.join(results['codecs'])}, figures 1-4 'full' with {results['codecs'][0]}\n")
    w(f"processors on: {', '.join(results['processors_full'])}; machine load avg at start/end: "
      f"{results['load']['loadavg_start']} / {results['load']['loadavg_end']}\n\n")
    s = results["saturation"]
    w("1. Saturation throughput (spans/s delivered to the sink)\n")
    w(f"   sink alone: {fmt(results['sink_alone']['spans_per_s'], 0)} (sink CPU "
      f"{fmt(results['sink_alone']['sink_cpu_pct'])}%)\n")
    w(f"   {'batch':>6} {'attrs':>6} {'off':>10} {'full':>10} {'full/off':>9} {'sink CPU%':>10}\n")
    for r in s["sweep"]:
        w(f"   {r['spans_per_batch']:>6} {'+' + str(r['extra_attrs']):>6} {fmt(r['off']['spans_per_s'], 0):>10} "
          f"{fmt(r['full']['spans_per_s'], 0):>10} {fmt(r['full_vs_off'], 2):>9} "
          f"{fmt(r['full']['sink_cpu_pct']):>10}\n")
    c = results["cpu_rss_at_rate"]
    w(f"\n2. Sidecar process at a fixed {fmt(c['default']['rate'], 0)} spans/s "
      f"(Collector testbed ceiling: {COLLECTOR_CEILING['cpu_pct']:.0f}% CPU, {COLLECTOR_CEILING['rss_mb']:.0f} MB)\n")
    w(f"   {'batch':>6} {'attrs':>6} {'CPU% off':>9} {'CPU% full':>10} {'full/off':>9} {'peakMB off':>11} "
      f"{'peakMB full':>12} {'achieved':>9} {'CPU%/10k off':>13} {'CPU%/10k full':>14}\n")
    for r in c["sweep"]:
        w(f"   {r['spans_per_batch']:>6} {'+' + str(r['extra_attrs']):>6} {fmt(r['off']['cpu_pct']):>9} "
          f"{fmt(r['full']['cpu_pct']):>10} {fmt(r['full_vs_off_cpu'], 2):>9} {fmt(r['off']['peak_rss_mb']):>11} "
          f"{fmt(r['full']['peak_rss_mb']):>12} {fmt(r['full']['achieved_spans_per_s'], 0):>9} "
          f"{fmt(r['off']['cpu_pct_per_10k_delivered']):>13} {fmt(r['full']['cpu_pct_per_10k_delivered']):>14}\n")
    for key in ("latency", "latency_low_rate"):
        print_latency(results[key], w)
    print_inprocess(results, w)
    print_codecs(results, w)
    if "two_sidecars" in results:
        print_two_sidecars(results["two_sidecars"], w)
    w("\nTargets:\n")
    for name, t in results["targets"].items():
        met = {True: "met", False: "NOT met", None: "n/a (quick)"}[t["met"]]
        w(f"   {name}: {fmt(t['value'], 2)} (target {t['target']}): {met}\n")
    w(f"\nelapsed {results['elapsed_s']:.0f}s\n")


def codec_tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """Figures 1-4 with every processor on, the default codec beside each other one, per point:
    (title, header, rows). Empty when only one codec was measured."""
    codecs = results["codecs"]
    if len(codecs) < 2:
        return []
    first, tables = codecs[0], []
    for other in codecs[1:]:
        mode = f"full_{other}"
        rows = [[str(r["spans_per_batch"]), f"+{r['extra_attrs']}", fmt(r["full"]["spans_per_s"], 0),
                 fmt(r[mode]["spans_per_s"], 0), fmt(r[f"full_vs_{mode}"], 2),
                 f"{fmt(r['full']['sidecar_cpu_pct'])} / {fmt(r[mode]['sidecar_cpu_pct'])}"]
                for r in results["saturation"]["sweep"]]
        tables.append((f"1. Saturation, every processor on: {first} vs {other} codec (spans/s delivered)",
                       ["spans/batch", "extra attrs", first, other, f"{first}/{other}",
                        f"sidecar CPU % {first} / {other}"], rows))
        rows = [[str(r["spans_per_batch"]), f"+{r['extra_attrs']}",
                 fmt(r["full"]["cpu_pct"]), fmt(r[mode]["cpu_pct"]),
                 fmt(r["full"]["cpu_pct_per_10k_delivered"]), fmt(r[mode]["cpu_pct_per_10k_delivered"]),
                 fmt(r[f"{mode}_vs_full_cpu"], 2), fmt(r["full"]["peak_rss_mb"]), fmt(r[mode]["peak_rss_mb"]),
                 f"{fmt(r['full']['achieved_spans_per_s'], 0)} / {fmt(r[mode]['achieved_spans_per_s'], 0)}"]
                for r in results["cpu_rss_at_rate"]["sweep"]]
        tables.append((f"2. Sidecar at {fmt(results['cpu_rss_at_rate']['default']['rate'], 0)} spans/s offered, "
                       f"every processor on: {first} vs {other} codec",
                       ["spans/batch", "extra attrs", f"CPU % {first}", f"CPU % {other}",
                        f"CPU % per 10k delivered, {first}", other, f"{other}/{first}",
                        f"peak RSS MB {first}", other, f"delivered spans/s {first} / {other}"], rows))
        for key in ("latency", "latency_low_rate"):
            lat = results[key]
            rows = [[str(r["spans_per_batch"]), f"+{r['extra_attrs']}",
                     f"{fmt(r['added_p50_ms_full'], 2)} / {fmt(r['added_p99_ms_full'], 2)}",
                     f"{fmt(r[f'added_p50_ms_{mode}'], 2)} / {fmt(r[f'added_p99_ms_{mode}'], 2)}",
                     f"{fmt(r['full'].get('sidecar_cpu_pct'))} / {fmt(r[mode].get('sidecar_cpu_pct'))}"]
                    for r in lat["sweep"]]
            tables.append((f"3. Added export-call latency at {fmt(lat['default']['rate'], 0)} spans/s, ms, every "
                           f"processor on: {first} vs {other} codec",
                           ["spans/batch", "extra attrs", f"added p50 / p99 {first}", f"added p50 / p99 {other}",
                            f"sidecar CPU % {first} / {other}"], rows))
        ip = results["inprocess"]
        rows = []
        for label, r in [*((None, r) for r in ip["sweep"]), ("complete", ip["complete_spans"])]:
            a, b = r["by_codec"][first], r["by_codec"][other]
            rows.append([f"{r['spans_per_batch']}" + (" (complete)" if label else ""), f"+{r['extra_attrs']}",
                         fmt(r["floor_spans_per_s"], 0), fmt(a["full_spans_per_s"], 0), fmt(b["full_spans_per_s"], 0),
                         fmt(a["full_vs_floor"], 3), fmt(b["full_vs_floor"], 3), fmt(a["processor_us_per_span"], 1),
                         fmt(b["processor_us_per_span"], 1),
                         fmt(ratio(b["processor_us_per_span"], a["processor_us_per_span"]), 2)])
        tables.append((f"4. In process, every processor on: {first} vs {other} codec beside the floor "
                       "(spans/s of CPU time)",
                       ["spans/batch", "extra attrs", "floor", first, other, f"{first}/floor", f"{other}/floor",
                        f"processors us/span {first}", other, f"{other}/{first}"], rows))
        each = [f"{name} {a:.1f} / {ip['default']['by_codec'][other]['processor_us_per_span_each'][name]:.1f}"
                for name, a in ip["default"]["by_codec"][first]["processor_us_per_span_each"].items()]
        tables.append((f"4. CPU us/span per processor at the default point, {first} / {other}",
                       ["per processor"], [[", ".join(each)]]))
    return tables


def print_codecs(results: dict, w) -> None:
    for title, header, rows in codec_tables(results):
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        w(f"\n{title}\n")
        if len(header) == 1:
            w("   " + "\n   ".join(row[0] for row in rows) + "\n")
            continue
        w("   " + " ".join(h.rjust(n) for h, n in zip(header, widths, strict=True)) + "\n")
        for row in rows:
            w("   " + " ".join(c.rjust(n) for c, n in zip(row, widths, strict=True)) + "\n")


def markdown_codecs(results: dict) -> list[str]:
    lines: list[str] = []
    for title, header, rows in codec_tables(results):
        if len(header) == 1:  # a line of figures, not a table
            lines += [f"{title}: " + "; ".join(row[0] for row in rows) + ".", ""]
            continue
        lines += [f"### {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
    return lines


def print_latency(lat: dict, w) -> None:
    w(f"\n3. Export-call latency at {fmt(lat['default']['rate'], 0)} spans/s, ms (complete spans, nothing held)\n")
    w(f"   {'batch':>6} {'attrs':>6} {'direct p50/p99':>16} {'off p50/p99':>14} {'full p50/p99':>14} "
      f"{'added p50/p99 (full)':>21} {'CPU% full':>10}\n")
    for r in lat["sweep"]:
        w(f"   {r['spans_per_batch']:>6} {'+' + str(r['extra_attrs']):>6} "
          f"{fmt(r['direct']['p50'], 2) + '/' + fmt(r['direct']['p99'], 2):>16} "
          f"{fmt(r['off']['p50'], 2) + '/' + fmt(r['off']['p99'], 2):>14} "
          f"{fmt(r['full']['p50'], 2) + '/' + fmt(r['full']['p99'], 2):>14} "
          f"{fmt(r['added_p50_ms_full'], 2) + '/' + fmt(r['added_p99_ms_full'], 2):>21} "
          f"{fmt(r['full'].get('sidecar_cpu_pct')):>10}\n")


def print_inprocess(results: dict, w) -> None:
    ip = results["inprocess"]
    w("\n4. In-process throughput (spans/s): parse+serialize floor vs pipeline without / with processors\n")
    w(f"   {'batch':>6} {'attrs':>6} {'floor':>10} {'off':>10} {'full':>10} {'full/floor':>11} "
      f"{'proc us/span':>13}\n")
    for r in ip["sweep"]:
        w(f"   {r['spans_per_batch']:>6} {'+' + str(r['extra_attrs']):>6} {fmt(r['floor_spans_per_s'], 0):>10} "
          f"{fmt(r['off_spans_per_s'], 0):>10} {fmt(r['full_spans_per_s'], 0):>10} {fmt(r['full_vs_floor'], 2):>11} "
          f"{fmt(r['processor_us_per_span'], 2):>13}\n")
    each = ip["default"]["processor_us_per_span_each"]
    w("   CPU us/span per processor (default point): " + ", ".join(f"{k} {v:.1f}" for k, v in each.items()) + "\n")
    c = ip["complete_spans"]
    w(f"   spans arriving complete (nothing to repair): full {fmt(c['full_spans_per_s'], 0)} spans/s, "
      f"full/floor {fmt(c['full_vs_floor'], 3)}, {fmt(c['processor_us_per_span'], 1)} us/span; per processor: "
      + ", ".join(f"{k} {v:.1f}" for k, v in c["processor_us_per_span_each"].items()) + "\n")


def markdown(results: dict) -> str:
    """The figures as Markdown tables, for BENCHMARKS.md."""
    lines: list[str] = []
    add = lines.append
    m = results["machine"]
    add(f"Measured {results['started_utc']} with `{results['command']}` ({results['elapsed_s']:.0f} s) on "
        f"{m['nproc']} x {m['cpu_model']}, {m['memory_gb']} GB, Python {m['python']}, grpcio {m['grpcio']}, "
        f"protobuf {m['protobuf']} ({m['protobuf_backend']}). Processors on: {', '.join(results['processors_full'])}; "
        f"codecs {', '.join(results['codecs'])} (the tables' \"on\" column: {results['codecs'][0]}). "
        f"Load average at start {results['load']['loadavg_start']}, at end {results['load']['loadavg_end']}; "
        f"whole machine busy (median over the windows) {results['load']['median_machine_busy_pct']:.0f}% of both "
        "cores, our processes included.")
    add("")
    sa = results["sink_alone"]
    add(f"### 1. Saturation throughput, spans/s delivered to the sink (sink alone: {sa['spans_per_s']:,.0f} at "
        f"{sa['sink_cpu_pct']:.0f}% of a core, load generator at {sa['loadgen_cpu_pct']:.0f}%)")
    add("")
    add("| spans/batch | extra attrs | processors off | all on | on/off | sidecar CPU % off / on | "
        "sink CPU % off / on | load generator CPU % off / on |")
    add("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results["saturation"]["sweep"]:
        off, on = r["off"], r["full"]
        add(f"| {r['spans_per_batch']} | +{r['extra_attrs']} | {fmt(off['spans_per_s'], 0)} | "
            f"{fmt(on['spans_per_s'], 0)} | {fmt(r['full_vs_off'], 3)} | {fmt(off['sidecar_cpu_pct'])} / "
            f"{fmt(on['sidecar_cpu_pct'])} | {fmt(off['sink_cpu_pct'])} / {fmt(on['sink_cpu_pct'])} | "
            f"{fmt(off['loadgen_cpu_pct'])} / {fmt(on['loadgen_cpu_pct'])} |")
    add("")
    c = results["cpu_rss_at_rate"]
    add(f"### 2. Sidecar process at a fixed {c['default']['rate']:,.0f} spans/s offered (Collector testbed ceiling "
        f"at 10,000 spans/s: {COLLECTOR_CEILING['cpu_pct']:.0f}% of a core, {COLLECTOR_CEILING['rss_mb']:.0f} MB)")
    add("")
    add("| spans/batch | extra attrs | CPU % off | CPU % on | on/off | peak RSS MB off | peak RSS MB on | "
        "delivered spans/s off | delivered spans/s on | CPU % per 10k delivered, off | on |")
    add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in c["sweep"]:
        add(f"| {r['spans_per_batch']} | +{r['extra_attrs']} | {fmt(r['off']['cpu_pct'])} | "
            f"{fmt(r['full']['cpu_pct'])} | {fmt(r['full_vs_off_cpu'], 2)} | {fmt(r['off']['peak_rss_mb'])} | "
            f"{fmt(r['full']['peak_rss_mb'])} | "
            f"{fmt(r['off']['achieved_spans_per_s'], 0)} | {fmt(r['full']['achieved_spans_per_s'], 0)} | "
            f"{fmt(r['off']['cpu_pct_per_10k_delivered'])} | {fmt(r['full']['cpu_pct_per_10k_delivered'])} |")
    add("")
    d = c["default"]
    add(f"RSS right after start-up, before any load (default point): off {fmt(d['off'].get('start_rss_mb'))} MB, "
        f"on {fmt(d['full'].get('start_rss_mb'))} MB; the rest of the peak is what {fmt(c['default']['rate'], 0)} "
        "spans/s added during the run (bench/memory_profile.py and bench/memory_structures.py say what).")
    add("")
    for key in ("latency", "latency_low_rate"):
        lat = results[key]
        add(f"### 3. Export-call latency at {lat['default']['rate']:,.0f} spans/s offered, ms (every span carries "
            "its context: nothing is held)")
        add("")
        add("| spans/batch | extra attrs | direct p50 / p99 | off p50 / p99 | on p50 / p99 | added p50 / p99 (off) | "
            "added p50 / p99 (on) | sidecar CPU % (on) | sidecar peak RSS MB (on) |")
        add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in lat["sweep"]:
            add(f"| {r['spans_per_batch']} | +{r['extra_attrs']} | "
                f"{fmt(r['direct']['p50'], 2)} / {fmt(r['direct']['p99'], 2)} | "
                f"{fmt(r['off']['p50'], 2)} / {fmt(r['off']['p99'], 2)} | {fmt(r['full']['p50'], 2)} / "
                f"{fmt(r['full']['p99'], 2)} | {fmt(r['added_p50_ms_off'], 2)} / {fmt(r['added_p99_ms_off'], 2)} | "
                f"{fmt(r['added_p50_ms_full'], 2)} / {fmt(r['added_p99_ms_full'], 2)} | "
                f"{fmt(r['full'].get('sidecar_cpu_pct'))} | {fmt(r['full'].get('sidecar_peak_rss_mb'))} |")
        add("")
    add("### 4. In-process throughput, spans/s of CPU time: parse + serialize floor vs the pipeline")
    add("")
    add("| spans/batch | extra attrs | floor | pipeline, no processors | all on | on/floor | processors us/span |")
    add("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results["inprocess"]["sweep"]:
        add(f"| {r['spans_per_batch']} | +{r['extra_attrs']} | {fmt(r['floor_spans_per_s'], 0)} | "
            f"{fmt(r['off_spans_per_s'], 0)} | {fmt(r['full_spans_per_s'], 0)} | {fmt(r['full_vs_floor'], 3)} | "
            f"{fmt(r['processor_us_per_span'], 1)} |")
    add("")
    each = results["inprocess"]["default"]["processor_us_per_span_each"]
    add("CPU microseconds per span in each processor (default point, in pipeline order; the first one's share "
        "includes building the shared span index): " + ", ".join(f"`{k}` {v:.1f}" for k, v in each.items()) + ".")
    add("")
    c = results["inprocess"]["complete_spans"]
    add(f"Spans that arrive with their whole context (nothing to repair or hold), default point: floor "
        f"{fmt(c['floor_spans_per_s'], 0)}, all on {fmt(c['full_spans_per_s'], 0)} spans/s, on/floor "
        f"{fmt(c['full_vs_floor'], 3)}, {fmt(c['processor_us_per_span'], 1)} us/span; per processor: "
        + ", ".join(f"`{k}` {v:.1f}" for k, v in c["processor_us_per_span_each"].items()) + ".")
    add("")
    lines.extend(markdown_codecs(results))
    if "two_sidecars" in results:
        lines.extend(markdown_two_sidecars(results["two_sidecars"]))
    add("### Targets")
    add("")
    add("| figure | measured | target | met |")
    add("|---|---:|---|---|")
    for name, t in results["targets"].items():
        add(f"| {name} | {fmt(t['value'], 2)} | {t['target']} | {t['met']} |")
    return "\n".join(lines) + "\n"


def print_two_sidecars(two: dict, w) -> None:
    w("\n6. Two sidecars sharing a Redis: B's spans carry only traceparent (parents registered by A)\n")
    if "skipped" in two:
        w(f"   skipped: {two['skipped']}\n")
        return
    w(f"   at {fmt(two['rate'], 0)} spans/s offered to B, {two['spans_per_batch']} spans/batch\n")
    w(f"   {'registry':>9} {'B CPU us/span':>14} {'B CPU%':>7} {'delivered':>10} {'remote hits':>12} "
      f"{'round trips':>12} {'peak MB':>8}\n")
    for mode in ("off", "on"):
        r = two[mode]
        w(f"   {mode:>9} {fmt(r['b_cpu_us_per_span']):>14} {fmt(r['b_cpu_pct']):>7} "
          f"{fmt(r['b_delivered_spans_per_s'], 0):>10} {fmt(r['b_registry_remote_hits'], 0):>12} "
          f"{fmt(r['b_registry_round_trips'], 0):>12} {fmt(r['b_peak_rss_mb']):>8}\n")
    w(f"   on/off {fmt(two['on_vs_off'], 2)}, added {fmt(two['added_us_per_span'])} us of B's CPU per span\n")


def markdown_two_sidecars(two: dict) -> list[str]:
    lines = ["### 6. Two sidecars sharing a Redis: the context registry's cost per span", ""]
    if "skipped" in two:
        return lines + [f"Skipped: {two['skipped']}.", ""]
    lines += [f"B's sidecar at {two['rate']:,.0f} spans/s offered, {two['spans_per_batch']} spans/batch; B's spans "
              "carry only `traceparent`, their parent (A's CLIENT span) registered by A's sidecar. Registry off: "
              "`backend: memory` on both (B holds each span for `wait_duration` and releases it unrepaired).", "",
              "| registry | B CPU us/span | B CPU % | delivered spans/s | remote hits | round trips | B peak RSS MB |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for mode in ("off", "on"):
        r = two[mode]
        lines.append(f"| {mode} | {fmt(r['b_cpu_us_per_span'])} | {fmt(r['b_cpu_pct'])} | "
                     f"{fmt(r['b_delivered_spans_per_s'], 0)} | {fmt(r['b_registry_remote_hits'], 0)} | "
                     f"{fmt(r['b_registry_round_trips'], 0)} | {fmt(r['b_peak_rss_mb'])} |")
    lines += ["", f"on/off {fmt(two['on_vs_off'], 2)}; added {fmt(two['added_us_per_span'])} us of B's CPU per span.",
              ""]
    return lines


def two_sidecars_only(plan: Plan, args: argparse.Namespace, argv: list[str] | None) -> int:
    """`--two-sidecars`: figure 6 alone, with its own sink."""
    plan.two_sidecars = True
    command = " ".join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    with workspace(args.workdir) as workdir:
        sink = SinkProcess(workdir)
        try:
            two = two_sidecars(sink, plan, workdir)
        finally:
            sink.stop()
    two |= {"command": command, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
    print_two_sidecars(two, sys.stdout.write)
    if args.json:
        Path(args.json).write_text(json.dumps({"two_sidecars": two}, indent=2))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(markdown_two_sidecars(two)) + "\n")
    return 0


@contextlib.contextmanager
def workspace(keep: str | None) -> Iterator[Path]:
    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="costctx-bench-") as tmp:
            yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny runs of every figure (CI), numbers mean nothing")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--duration", type=float, help="seconds per end-to-end measurement (default 8-12)")
    parser.add_argument("--no-sweep", action="store_true", help="end-to-end figures at the default point only")
    parser.add_argument("--workdir", help="keep configs, pools and process logs here")
    parser.add_argument("--markdown", help="write the figures as Markdown tables here (for BENCHMARKS.md)")
    parser.add_argument("--two-sidecars", action="store_true",
                        help="only figure 6: two sidecars sharing a Redis, context registry on vs off")
    args = parser.parse_args(argv)
    plan = Plan.for_args(args)
    if args.two_sidecars:
        return two_sidecars_only(plan, args, argv)
    started = time.monotonic()
    results: dict = {
        "quick": plan.quick,
        "command": " ".join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "load": {"loadavg_start": [round(x, 2) for x in os.getloadavg()]},
        "processors_full": list(DEFAULT_TRACE_PROCESSORS),
        "codecs": plan.codecs,  # figures 1-4 with every processor on, once per codec; the default first
        "targets_aimed": TARGETS,
        "targets_aimed_native": TARGETS_NATIVE,
    }
    with workspace(args.workdir) as workdir:
        pools = Pools(workdir, plan)
        log("building workloads")
        for batch, attrs in plan.points(True):
            pools.path(batch, attrs)
        results["inprocess"] = in_process(pools, plan)
        sink = SinkProcess(workdir)
        try:
            log("sink alone")
            results["sink_alone"] = sink_alone(sink, pools, plan, workdir)
            results["saturation"] = saturation(sink, pools, plan, workdir)
            results["cpu_rss_at_rate"] = fixed_rate_cost(sink, pools, plan, workdir)
            results["latency"] = latency(sink, pools, plan, workdir, plan.latency_rate, plan.points(plan.e2e_sweep))
            # The same at a rate the full pipeline keeps up with: processing time without queueing.
            # Twice as long: at 10 calls/s a p99 needs more than a few dozen calls.
            results["latency_low_rate"] = latency(sink, pools, plan, workdir, plan.low_latency_rate, plan.points(False),
                                                  duration=2 * plan.rate_s)
            if plan.two_sidecars:
                results["two_sidecars"] = two_sidecars(sink, plan, workdir)
        finally:
            sink.stop()
    results["load"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["load"]["median_machine_busy_pct"] = statistics.median(
        r[m]["machine_busy_pct"] for key in ("saturation", "cpu_rss_at_rate", "latency")
        for r in results[key]["sweep"] for m in ("off", "full"))
    results["elapsed_s"] = time.monotonic() - started
    results["targets"] = check_targets(results)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
