"""costctx's native OTLP codec (Rust, PyO3): the compiled module is `costctx_native._core`.

Use it through `costctx.pdata.codec.native.NativeCodec` (also reachable here as
`costctx_native.NativeCodec`, for `select_codec`); importing this package fails with
ImportError when the extension was not built, which is how callers fall back to Python.
"""

from pkgutil import extend_path

# Running from the source tree (pytest's pythonpath puts sidecar/ first) must still find the
# extension a non-editable install put in site-packages: search every costctx_native folder.
__path__ = extend_path(__path__, __name__)

from ._core import Core, Layout  # noqa: E402

__all__ = ["Core", "Layout", "NativeCodec"]


def __getattr__(name: str):
    # Lazy: the adapter lives in costctx (it returns costctx's view classes).
    if name == "NativeCodec":
        from costctx.pdata.codec.native import NativeCodec

        return NativeCodec
    raise AttributeError(name)
