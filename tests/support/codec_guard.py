"""The test files CI's second run (COSTCTX_CODEC=python) leaves out must stay codec-free.

`.ci/python-codec-skip` lists them: files that never let the environment's codec choice reach
the code they test, so running them again on the Python codec proves nothing new. Whenever one
of them runs with COSTCTX_CODEC unset (CI's first run, on the native codec), `Watch` records each way the choice could
reach it, and tests/conftest.py fails the test that does it: the file then belongs in the second
run again (take it off the list). The ways, as the codec is chosen (costctx.pdata.codec):
- in process: COSTCTX_CODEC read from os.environ while it still holds the session's value (a
  test that sets it itself has pinned its codec, whatever the run's environment says);
- a child process that could run costctx (`costctx`, `python -m ...`, `python -c ...`, a script
  importing costctx or bench) started without COSTCTX_CODEC pinned in its environment: it
  inherits the run's. Other children (bash, promtool, a script importing neither) are not watched.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from tests.support.paths import REPO

SKIP_FILE = REPO / ".ci" / "python-codec-skip"
VARIABLE = "COSTCTX_CODEC"


def skip_list(text: str | None = None) -> list[str]:
    """The listed paths (relative to the repository; a file or a directory), comments dropped."""
    if text is None:
        text = SKIP_FILE.read_text(encoding="utf-8") if SKIP_FILE.exists() else ""
    paths = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [p.rstrip("/") for p in paths if p]


def is_listed(path: Path, listed: list[str]) -> bool:
    try:
        rel = path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return False
    return any(rel == p or rel.startswith(p + "/") for p in listed)


IMPORTS_COSTCTX = re.compile(r"^\s*(from|import)\s+(costctx|bench)\b", re.MULTILINE)


def _may_run_costctx(args) -> bool:
    """A child that could pick a codec: `costctx`, or Python running anything but a script that
    imports neither costctx nor bench (scripts/check_lock.py, say): `-m`, `-c` and such count."""
    argv = os.fsdecode(args).split() if isinstance(args, (str, bytes)) else [os.fsdecode(a) for a in args]
    if not argv:
        return False
    name = os.path.basename(argv[0])
    if name == "costctx":
        return True
    if argv[0] == sys.executable or name.startswith("python"):
        argv = argv[1:]
    elif not name.endswith(".py"):
        return False  # bash, git, promtool, redis-server: their children are not watched
    script = next((a for a in argv if not a.startswith("-")), None) if argv and not argv[0].startswith("-") else None
    if script is None or not script.endswith(".py") or not os.path.isfile(script):
        return True
    with open(script, encoding="utf-8", errors="replace") as f:
        return IMPORTS_COSTCTX.search(f.read()) is not None


class Watch:
    """While entered: each way the session's codec choice reaches the test (see the module's doc)."""

    def __init__(self, session_value: str | None) -> None:
        self.session_value = session_value  # COSTCTX_CODEC as the session started
        self.uses: list[str] = []

    def __enter__(self) -> Watch:
        self._getitem = getitem = os._Environ.__getitem__
        self._popen_init = popen_init = subprocess.Popen.__init__
        watch = self
        # Threads an earlier test left running (a sidecar still stopping) are not this test's.
        earlier = set(threading.enumerate()) - {threading.main_thread()}

        def current() -> str | None:
            try:
                return getitem(os.environ, VARIABLE)
            except KeyError:
                return None

        def watched_getitem(environ, key):
            if (key == VARIABLE and environ is os.environ and threading.current_thread() not in earlier
                    and current() == watch.session_value):
                watch.uses.append(f"read {VARIABLE} from the environment (not set by the test)")
            return getitem(environ, key)

        def watched_init(popen, *args, **kwargs):
            command, env = (args[0] if args else kwargs.get("args")), kwargs.get("env")
            inherited = (env.get(VARIABLE) if env is not None else current()) == watch.session_value
            if inherited and threading.current_thread() not in earlier and _may_run_costctx(command):
                watch.uses.append(f"started a Python child without {VARIABLE} pinned: {str(command)[:160]}")
            popen_init(popen, *args, **kwargs)

        os._Environ.__getitem__ = watched_getitem
        subprocess.Popen.__init__ = watched_init
        return self

    def __exit__(self, *exc) -> None:
        os._Environ.__getitem__ = self._getitem
        subprocess.Popen.__init__ = self._popen_init
