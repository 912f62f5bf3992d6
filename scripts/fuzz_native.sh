#!/usr/bin/env bash
# Fuzz the native codec (native/fuzz, target scan_encode) against prost for a bounded time.
#   scripts/fuzz_native.sh [SECONDS]        (default 300)
# Seeds: the bench workload's requests and a few edge cases, written by Python (costctx and
# its bench must import: run from the project's virtual environment).
# cargo fuzz needs a nightly compiler for its sanitizer flags: `cargo +nightly` when rustup
# has one, otherwise the stable compiler with RUSTC_BOOTSTRAP=1 (accepts the same -Z flags).
# Findings land in native/fuzz/artifacts/scan_encode/; the final stats line gives the
# number of executions.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SECONDS_TO_RUN=${1:-300}

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    FUZZ=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    FUZZ=(cargo fuzz)
fi

CORPUS=native/fuzz/corpus/scan_encode
mkdir -p "$CORPUS"
python - "$CORPUS" <<'PY' || echo "fuzz_native: no seeds written (activate costctx's environment); fuzzing from the corpus as it is" >&2
import sys
from pathlib import Path

from bench.requests import build_request
from bench.workload import WorkloadSpec, build_requests

out = Path(sys.argv[1])
seeds = build_requests(WorkloadSpec(batches=3, spans_per_batch=8))
seeds.append(build_request([{"k": "v", "gen_ai.request.model": "gpt-4o", "n": [1, "a", 2.5]}], 3))
seeds.append(b"")
for i, raw in enumerate(seeds):
    (out / f"seed-{i}").write_bytes(raw)
PY

cd native/fuzz
"${FUZZ[@]}" run scan_encode "corpus/scan_encode" -- \
    -max_total_time="$SECONDS_TO_RUN" -max_len=16384 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
