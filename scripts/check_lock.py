"""Fail when requirements.lock (what the Docker image installs) no longer covers pyproject.toml.

The image installs only what the lock pins (with hashes) and then costctx with --no-deps, so
a dependency added to pyproject.toml but not re-locked would be missing at run time. This
checks every direct runtime and build dependency offline; pip itself checks the transitive
ones when it installs the lock with --require-hashes.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
RELOCK = "scripts/lock.sh (pip-compile --generate-hashes ... pyproject.toml)"


def locked_versions(lock_text: str) -> dict[str, str]:
    pins = {}
    for line in lock_text.splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def main() -> int:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = locked_versions((ROOT / "requirements.lock").read_text(encoding="utf-8"))
    wanted = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]
    problems = []
    for text in wanted:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"python_version": "3.11"}):
            continue
        version = pins.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name} is not in requirements.lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"requirements.lock pins {requirement.name}=={version}, outside {requirement.specifier}")
    if problems:
        print("requirements.lock is stale:\n  " + "\n  ".join(problems), file=sys.stderr)
        print(f"re-lock: {RELOCK}", file=sys.stderr)
        return 1
    print(f"requirements.lock covers pyproject.toml ({len(wanted)} direct requirements, {len(pins)} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
