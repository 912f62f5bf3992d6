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
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")
# Interpreters the lock must hold for (requires-python >= 3.11): Debian bookworm's 3.11.2, the
# 3.11.3 boundary redis's async-timeout marker draws, and later minor versions.
PYTHONS = ("3.11.0", "3.11.2", "3.11.3", "3.11.14", "3.12.0", "3.13.0", "3.14.0")
RELOCK = "scripts/lock.sh (uv pip compile --universal --generate-hashes ... pyproject.toml)"


def locked_versions(lock_text: str) -> dict[str, str]:
    return {name: version for name, (version, _) in locked_pins(lock_text).items()}


def locked_pins(lock_text: str) -> dict[str, tuple[str, Marker | None]]:
    """name -> (version, the environment marker the pin applies under, if any)."""
    pins = {}
    for line in lock_text.splitlines():
        match = PIN.match(line)
        if match:
            marker = Marker(match.group(3)) if match.group(3) else None
            pins[canonicalize_name(match.group(1))] = (match.group(2), marker)
    return pins


def environment(python: str) -> dict[str, str]:
    env = default_environment()
    env.update(python_version=".".join(python.split(".")[:2]), python_full_version=python,
               implementation_version=python)
    return env


def transitive_gaps(pins: dict[str, tuple[str, Marker | None]]) -> tuple[list[str], int]:
    """For each supported interpreter, every requirement of a pinned package (read from the
    installed distribution's metadata, when the installed version is the pinned one) that
    applies there must itself be pinned for that interpreter. Returns (problems, checked)."""
    problems: list[str] = []
    checked = 0
    for name, (version, _) in pins.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version != version:
            continue
        checked += 1
        for text in dist.requires or []:
            requirement = Requirement(text)
            missing_on = []
            for python in PYTHONS:
                env = environment(python)
                if requirement.marker is not None and not requirement.marker.evaluate({**env, "extra": ""}):
                    continue
                pin = pins.get(canonicalize_name(requirement.name))
                if pin is None or (pin[1] is not None and not pin[1].evaluate(env)):
                    missing_on.append(python)
            if missing_on:
                problems.append(f"{name} needs {requirement} on Python {', '.join(missing_on)}: not locked for it")
    return problems, checked


def main(lock_path: Path = ROOT / "requirements.lock") -> int:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    lock = locked_pins(lock_path.read_text(encoding="utf-8"))
    pins = {name: version for name, (version, _) in lock.items()}
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
    gaps, checked = transitive_gaps(lock)
    problems += gaps
    if problems:
        print("requirements.lock is stale:\n  " + "\n  ".join(problems), file=sys.stderr)
        print(f"re-lock: {RELOCK}", file=sys.stderr)
        return 1
    print(f"requirements.lock covers pyproject.toml ({len(wanted)} direct requirements, {len(pins)} pins) "
          f"on Python {', '.join(PYTHONS)} (requirements of {checked} installed pins checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "requirements.lock"))
