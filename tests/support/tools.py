"""System tools some tests need (promtool, prometheus, chromium): found, or skipped locally and
failed in CI, where .ci/run installs them and a skip would hide a test that never ran."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(*names: str, package: str) -> str:
    """The path of the first of `names` on PATH; else skip (fail when CI is set)."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    message = f"{' or '.join(names)} not installed (apt-get install {package}); .ci/run installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
