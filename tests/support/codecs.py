"""The codecs a differential test runs on: the Python one always, the native one when built."""

from __future__ import annotations

from costctx.pdata.codec.native import AVAILABLE as NATIVE_AVAILABLE
from costctx.pdata.codec.python import PythonCodec


def available_codecs() -> list:
    found: list = [PythonCodec()]
    if NATIVE_AVAILABLE:
        from costctx.pdata.codec.native import NativeCodec

        found.append(NativeCodec())
    return found
