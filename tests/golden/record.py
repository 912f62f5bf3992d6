"""Rewrite the golden files from the current pipeline: `python -m tests.golden.record [--redraw]`.

Only when the pipeline's output is meant to change (say why in the commit); `--redraw` also
draws the generated requests afresh."""

from __future__ import annotations

import sys

from tests.golden import harness, inputs


def main(argv: list[str]) -> None:
    if "--redraw" in argv or not inputs.GENERATED.exists():
        inputs.write_generated(inputs.draw_generated())
    harness.dump(harness.run(inputs.workload_requests()), harness.DATA / "workload.json.gz")
    harness.dump(harness.run(inputs.generated_requests()), harness.DATA / "generated.json.gz")


if __name__ == "__main__":
    main(sys.argv[1:])
