"""Every config the tests build, recorded, so one test can check that `costctx validate` and
`costctx run` agree on each (tests/service/test_config_agreement.py).

`install()` (called by conftest.py before any test module imports the loader's names) wraps
`costctx.service.config.loader.build_config`: each call records the raw config and environment
it was given, then runs the real function unchanged."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Mapping
from typing import Any

from costctx.service.config import loader

RECORDED: dict[str, tuple[Any, dict[str, str]]] = {}
_real_build_config = loader.build_config


def _key(raw: Any, environ: Mapping[str, str]) -> str:
    return json.dumps([raw, dict(environ)], sort_keys=True, default=repr)


def _recording_build_config(raw: Any, environ: Mapping[str, str] | None = None):
    env = dict(os.environ if environ is None else environ)
    with contextlib.suppress(TypeError, ValueError):  # not JSON-shaped (a test of bad input)
        RECORDED.setdefault(_key(raw, env), (copy.deepcopy(raw), env))
    return _real_build_config(raw, environ)


def install() -> None:
    loader.build_config = _recording_build_config
