"""Waits on a sidecar process the bench scripts start: each a condition with a deadline.

Shared by bench/run.py and bench/memory_attacks.py (they had a copy each). Each wait ends as
soon as its condition holds, so the deadline is generous: only what never comes waits all of
it, and on a loaded two-core machine a sidecar's start-up took over 30 s.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from enum import Enum

READY_S = 180.0  # a sidecar process answering /readyz
READY_POLL_S = 0.1


class Ready(Enum):
    READY = "ready"  # /readyz answered 200
    EXITED = "exited"  # the process ended first
    TIMEOUT = "timeout"  # neither, within the deadline


def wait_ready(proc: subprocess.Popen, admin_port: int, timeout: float = READY_S) -> Ready:
    """Poll http://127.0.0.1:<admin_port>/readyz until it answers 200, the process exits, or
    `timeout` seconds pass; the caller decides what each outcome means (stop, retry, raise)."""
    url = f"http://127.0.0.1:{admin_port}/readyz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return Ready.EXITED
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as answer:
            if answer.status == 200:
                return Ready.READY
        time.sleep(READY_POLL_S)
    return Ready.EXITED if proc.poll() is not None else Ready.TIMEOUT
