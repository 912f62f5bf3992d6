"""Regenerate the checked-in Python code for proto/costctx/v1/*.proto.

protoc writes `from costctx.v1 import ...`; the generated modules live in this package,
so those imports are rewritten to `from costctx.proto_gen.costctx.v1 import ...` (the
same fix-up protoletariat makes), keeping the generated `costctx.v1` out of the `costctx` package root.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PROTO_ROOT = REPO / "proto"
PROTOS = ("costctx/v1/envelope.proto", "costctx/v1/budget.proto")
PACKAGE = "costctx.proto_gen"
_IMPORT = re.compile(r"^from costctx\.v1 import ", re.MULTILINE)


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc  # only needed to regenerate: the `test` extra

    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{PROTO_ROOT}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}", *PROTOS]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    written = sorted(p for p in (out_dir / "costctx" / "v1").glob("*.py*"))
    for path in written:
        text = path.read_text(encoding="utf-8")
        path.write_text(_IMPORT.sub(f"from {PACKAGE}.costctx.v1 import ", text), encoding="utf-8")
    for package in (out_dir / "costctx", out_dir / "costctx" / "v1"):
        (package / "__init__.py").touch()
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for path in generate(target):
        print(path)
