#!/usr/bin/env bash
# Regenerate requirements.lock (what the Docker image installs, with sha256 hashes) from
# pyproject.toml: runtime dependencies plus the build backend, for Python 3.11.
# Run it after changing pyproject.toml's dependencies; scripts/check_lock.py fails until then.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LOCK_VENV:-/tmp/costctx-lock-venv}
[ -x "$VENV/bin/pip-compile" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet pip-tools==7.6.2; }
export CUSTOM_COMPILE_COMMAND="scripts/lock.sh"
"$VENV/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras --build-deps-for wheel \
  --no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml
echo "requirements.lock: $(grep -c '==' requirements.lock) pins"
