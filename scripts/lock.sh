#!/usr/bin/env bash
# Regenerate requirements.lock (what the Docker image installs, with sha256 hashes) from
# pyproject.toml: runtime dependencies plus the build backend, for every supported Python
# (>= 3.11): a universal resolution, so a dependency needed only on some interpreters carries
# an environment marker (redis needs async-timeout below Python 3.11.3; Debian bookworm's
# python3 is 3.11.2) instead of being missing there.
# Run it after changing pyproject.toml's dependencies; scripts/check_lock.py fails until then.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LOCK_VENV:-/tmp/costctx-lock-venv}
[ -x "$VENV/bin/uv" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet uv==0.13.8; }
build_requires=$(mktemp)
trap 'rm -f "$build_requires"' EXIT
python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
  >"$build_requires"
"$VENV/bin/uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
  --custom-compile-command "scripts/lock.sh" --output-file requirements.lock pyproject.toml "$build_requires"
# The temporary file's name is not part of the lock.
sed -i "s|$build_requires|build-system.requires|g" requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) pins"
