"""costctx's native OTLP codec (Rust, PyO3): the compiled module is `costctx_native._core`.

Use it through `costctx.pdata.codec.native.NativeCodec`; this package only re-exports.
"""

from pkgutil import extend_path

# Running from the source tree (pytest's pythonpath puts sidecar/ first) must still find the
# extension a non-editable install put in site-packages: search every costctx_native folder.
__path__ = extend_path(__path__, __name__)

from ._core import Core, Layout  # noqa: E402

__all__ = ["Core", "Layout"]
