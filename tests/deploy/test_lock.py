"""requirements.lock holds for every supported interpreter (scripts/check_lock.py): a lock
resolved for one patch release only (no async-timeout for Python < 3.11.3) is refused."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

ROOT = REPO
CHECK = ROOT / "scripts" / "check_lock.py"
LOCK = ROOT / "requirements.lock"


def check(lock: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(lock)], capture_output=True, text=True, timeout=60)


def test_the_lock_holds_for_every_supported_python():
    result = check(LOCK)
    assert result.returncode == 0, result.stderr
    assert "3.11.2" in result.stdout
    assert re.search(r"^async-timeout==\S+ ; python_full_version < '3\.11\.3'", LOCK.read_text(), re.M)


def test_a_lock_for_one_patch_release_is_refused(tmp_path):
    # The lock as pip-compile on Python 3.11.7 wrote it: without async-timeout.
    text = re.sub(r"^async-timeout==.*?(?=^\S)", "", LOCK.read_text(), flags=re.M | re.S)
    assert "async-timeout" not in text.split("# via redis")[0][-200:]
    stale = tmp_path / "requirements.lock"
    stale.write_text(text)
    result = check(stale)
    assert result.returncode == 1
    assert "redis needs async-timeout" in result.stderr and "3.11.2" in result.stderr
