"""A real three-node Redis Cluster on loopback (no replicas), for the cluster tests."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, both below 65536."""
    while True:
        port = random.randint(20_000, 50_000)
        if _free(port) and _free(port + 10_000):
            return port


def _cluster_ok(port: int) -> bool:
    try:
        out = subprocess.run(["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "cluster_state:ok" in out


def _slots(port: int) -> str:
    """The node's view of the slot map (every node must agree before clients start)."""
    out = subprocess.run(["redis-cli", "-p", str(port), "cluster", "slots"], capture_output=True, text=True,
                         timeout=5).stdout
    return "\n".join(sorted(line for line in out.splitlines() if line.strip()))


def redis_cluster_fixture(workdir: Path) -> Iterator[list[int]]:
    """Three `redis-server --cluster-enabled yes` joined by `redis-cli --cluster create`;
    yields their ports."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        message = "redis-server / redis-cli not installed; .ci/run installs them"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    ports = [cluster_port() for _ in range(3)]
    procs = []
    try:
        for port in ports:
            node = workdir / str(port)
            node.mkdir()
            procs.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(node / "nodes.conf"), "--save", "", "--appendonly", "no",
                 "--dir", str(node)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while not all(subprocess.run([cli, "-p", str(p), "ping"], capture_output=True, text=True).stdout.strip()
                      == "PONG" for p in ports):
            if time.monotonic() > deadline:
                pytest.fail("redis cluster nodes did not start")
            time.sleep(0.05)
        subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + 60
        while not (all(_cluster_ok(p) for p in ports) and len({_slots(p) for p in ports}) == 1):
            if time.monotonic() > deadline:
                pytest.fail("redis cluster did not reach cluster_state:ok with one slot map")
            time.sleep(0.1)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def node_of(ports: list[int], key: str) -> int:
    """The port of the node that serves `key`'s slot."""
    import redis
    from redis.crc import key_slot

    slot = key_slot(key.encode())
    for start, end, master, *_ in redis.Redis(port=ports[0]).execute_command("CLUSTER SLOTS"):
        if int(start) <= slot <= int(end):
            return int(master[1])
    raise LookupError(slot)
