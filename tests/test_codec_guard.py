"""tests/support/codec_guard.py: what counts as a test using the environment's codec (which keeps
a file listed in .ci/python-codec-skip honest), and the list itself."""

from __future__ import annotations

import subprocess
import sys
import threading

from costctx.pdata.codec import select_codec
from tests.support import codec_guard
from tests.support.paths import REPO

VARIABLE = codec_guard.VARIABLE


def test_reading_the_sessions_choice_counts(monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    with codec_guard.Watch(None) as watch:
        select_codec()
    assert watch.uses and VARIABLE in watch.uses[0]


def test_a_choice_the_test_pins_does_not_count(monkeypatch):
    monkeypatch.setenv(VARIABLE, "python")
    with codec_guard.Watch(None) as watch:
        assert select_codec().name == "python"
        select_codec("python")
    assert watch.uses == []


def test_a_thread_an_earlier_test_left_running_does_not_count(monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    go, done = threading.Event(), threading.Event()

    def leftover():
        go.wait(30)
        select_codec()
        done.set()

    thread = threading.Thread(target=leftover, daemon=True)
    thread.start()
    with codec_guard.Watch(None) as watch:
        go.set()
        assert done.wait(30)
        started = threading.Thread(target=select_codec)
        started.start()
        started.join(30)
    assert len(watch.uses) == 1  # the thread started inside the watch, not the leftover


def test_other_variables_do_not_count(monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    with codec_guard.Watch(None) as watch:
        _ = dict(__import__("os").environ)
    assert watch.uses == []


def test_a_python_child_inheriting_the_choice_counts(monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    with codec_guard.Watch(None) as watch:
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert len(watch.uses) == 1 and "Python child" in watch.uses[0]


def test_a_pinned_or_non_python_child_does_not_count(monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    with codec_guard.Watch(None) as watch:
        subprocess.run([sys.executable, "-c", "pass"], check=True, env={VARIABLE: "native"})
        subprocess.run(["true"], check=True)
    assert watch.uses == []


def test_which_children_could_run_costctx(tmp_path):
    plain, importing = tmp_path / "plain.py", tmp_path / "importing.py"
    plain.write_text("import json\nprint('costctx is only named here')\n")
    importing.write_text("import sys\nfrom costctx.pdata.codec import select_codec\n")
    may = codec_guard._may_run_costctx
    assert may([sys.executable, "-m", "costctx", "run"]) and may([sys.executable, "-c", "pass"])
    assert may(["costctx", "run"]) and may([sys.executable, str(importing)]) and may(f"python {importing}")
    assert not may([sys.executable, str(plain), "--check"]) and not may([str(plain)])
    assert not may([sys.executable, str(REPO / "scripts" / "check_lock.py")])
    assert not may(["bash", "-c", "python -m costctx"]) and not may(["promtool", "check", "rules"])


def test_the_watch_undoes_its_patches(monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    with codec_guard.Watch(None):
        pass
    with codec_guard.Watch(None) as outer:
        select_codec()
    assert len(outer.uses) == 1  # one wrapper, not two stacked


def test_skip_list_parses_paths_and_directories():
    listed = codec_guard.skip_list("# why\ntests/deploy/test_lock.py  # a reason\n\ntests/pricing/\n")
    assert listed == ["tests/deploy/test_lock.py", "tests/pricing"]
    assert codec_guard.is_listed(REPO / "tests" / "pricing" / "test_pricing.py", listed)
    assert codec_guard.is_listed(REPO / "tests" / "deploy" / "test_lock.py", listed)
    assert not codec_guard.is_listed(REPO / "tests" / "deploy" / "test_dashboard.py", listed)
    assert not codec_guard.is_listed(REPO / "tests" / "pricingx.py", listed)
