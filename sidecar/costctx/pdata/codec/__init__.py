"""The codec behind the batch view: `select_codec()` picks the native one when it imports."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from costctx.pdata.codec.api import Codec, CodecError

if TYPE_CHECKING:
    from costctx.pdata.codec.python import PythonCodec

log = logging.getLogger("costctx.codec")
CHOICES = ("auto", "python", "native")


def __getattr__(name: str) -> Any:
    # The Python codec parses with protobuf: imported when first used, so a sidecar on the
    # native codec does not load protobuf at start-up.
    if name == "PythonCodec":
        from costctx.pdata.codec.python import PythonCodec

        return PythonCodec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _python() -> Codec:
    from costctx.pdata.codec.python import PythonCodec

    return PythonCodec()


def _native() -> Codec:
    from costctx.pdata.codec import native

    if not native.AVAILABLE:
        raise ImportError("COSTCTX_CODEC=native, but the costctx_native extension is not installed")
    return native.NativeCodec()


def select_codec(choice: str | None = None) -> Codec:
    """COSTCTX_CODEC: `python`, `native` (fails if not installed) or `auto` (the default:
    native when `costctx_native` imports, else python)."""
    choice = (choice if choice is not None else os.environ.get("COSTCTX_CODEC", "auto")).strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"COSTCTX_CODEC must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "python":
        return _python()
    if choice == "native":
        return _native()
    try:
        return _native()
    except ImportError:
        return _python()


__all__ = ["Codec", "CodecError", "PythonCodec", "select_codec"]
