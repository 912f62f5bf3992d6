"""bench/sidecar_wait.py's wait_ready (run.py's and memory_attacks.py's one copy) and run.py's
wait_drained, which says when it gives up instead of going on silently."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import run
from bench.sidecar_wait import Ready, wait_ready
from tests.support.process import free_port


class _Ready(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait(10)


def test_ready_when_readyz_answers(sleeper):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert wait_ready(sleeper, server.server_address[1], timeout=60) is Ready.READY
    finally:
        server.shutdown()
        server.server_close()


def test_exited_when_the_process_ends_first():
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert wait_ready(proc, free_port(), timeout=60) is Ready.EXITED
    assert proc.returncode == 3


def test_timeout_when_nothing_answers(sleeper):
    assert wait_ready(sleeper, free_port(), timeout=0.3) is Ready.TIMEOUT


def test_wait_drained_says_when_it_gives_up(capsys):
    sidecar = object.__new__(run.SidecarProcess)  # only its metric is read
    sidecar.metric = lambda name, **labels: 7.0
    assert sidecar.wait_drained(timeout=0.3) is False
    assert "7 still queued after 0s" in capsys.readouterr().err
    sidecar.metric = lambda name, **labels: 0.0
    assert sidecar.wait_drained(timeout=0.3) is True
