"""`costctx survival --watch`: redraws the matrix every few seconds, as `watch` would, from a
real sidecar, as a real `costctx` subprocess."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.support.ops_workload import HOPS, send_ops_workload
from tests.support.process import free_port

CLEAR = "\x1b[H\x1b[2J"


# A suite started in the background (`cmd &` from a script) runs with SIGINT ignored, and a child
# inherits that: Python then installs no KeyboardInterrupt handler and Ctrl-C is lost. The child
# restores it itself before running `costctx`: a preexec_fn would make subprocess fork() instead of
# vfork(), and gRPC's (1.81+) fork handler then restarts its poller in the child, where close_fds
# closes the poller's epoll fd: "epoll_wait error: Bad file descriptor" and SIGABRT before exec,
# in about 1 in 20 children once this process has used gRPC (grpc/grpc#43055).
COSTCTX_WITH_CTRL_C = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('costctx', run_name='__main__', alter_sys=True)"
)


def costctx(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", COSTCTX_WITH_CTRL_C, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_watch_redraws_the_matrix(sink, make_sidecar):
    runner = make_sidecar()
    send_ops_workload(runner.sidecar.grpc_port)
    # The workload's four spans through the pipeline (inherit holds some up to its 1 s wait), so the
    # counters hold them: waited for, not a fixed second a loaded machine may need more than.
    assert sink.wait_for_spans(4)
    url = f"127.0.0.1:{runner.sidecar.admin_port}"
    proc = costctx("survival", "--url", url, "--watch", "0.2", "--count", "3", "--spend")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    screens = out.split(CLEAR)[1:]
    assert len(screens) == 3
    for screen in screens:
        assert screen.startswith(f"Every 0.2s: costctx survival http://{url}/survival")
        header = next(line for line in screen.splitlines() if line.strip().startswith("field"))
        assert header.split()[1:] == list(HOPS)
        assert "Spend by workflow and tenant" in screen


def test_watch_keeps_going_when_the_sidecar_is_down_and_stops_on_ctrl_c():
    port = free_port()
    proc = costctx("survival", "--url", f"127.0.0.1:{port}", "--watch", "0.1")
    # Interrupt once it has drawn twice (it flushes each screen), not after a fixed time: under
    # load a SIGINT sent before start-up finished found no handler yet.
    seen = ""
    assert proc.stdout is not None
    while seen.count(CLEAR) < 3:  # the third CLEAR: the second screen is whole
        chunk = proc.stdout.read(1)
        assert chunk, f"exited early: {proc.wait(30)} {proc.stderr.read() if proc.stderr else ''}"
        seen += chunk
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    out = seen + out
    assert proc.returncode == 0, err
    screens = out.split(CLEAR)[1:]
    assert len(screens) >= 2  # it redrew rather than exiting on the first failure
    assert f"cannot read http://127.0.0.1:{port}/survival" in screens[0]
    assert "Traceback" not in err


def test_watch_refuses_json_and_a_non_positive_interval():
    proc = costctx("survival", "--watch", "--json")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "--json" in err
    proc = costctx("survival", "--watch", "0")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "positive" in err
