"""`.ci/run`'s set-up, run as it is: two runs on one machine must not share (and delete) a venv."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support import codec_guard
from tests.support.paths import REPO

CI_RUN = REPO / ".ci" / "run"


def run_venv_setup(tmp_path: Path) -> str:
    """The script up to creating the venv (with `true` as the Python), then where the venv is
    and whether it exists while the run lasts; the EXIT trap runs as the shell ends."""
    text = CI_RUN.read_text(encoding="utf-8")
    end = text.index('"$PY" -m venv "$VENV"') + len('"$PY" -m venv "$VENV"')
    script = text[:end] + '\necho "$VENV"; test -d "$VENV" && echo present\n'
    env = {k: v for k, v in os.environ.items() if k != "CI_VENV"} | {"PYTHON": "true", "TMPDIR": str(tmp_path)}
    result = subprocess.run(["bash", "-c", script, str(CI_RUN)], capture_output=True, text=True, env=env,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    venv, present = result.stdout.split()
    assert present == "present"
    return venv


def test_each_ci_run_has_its_own_venv_removed_on_exit(tmp_path):
    first, second = run_venv_setup(tmp_path), run_venv_setup(tmp_path)
    assert first != second
    assert not Path(first).exists() and not Path(second).exists()


# What a file naming these is doing (comparing codecs, starting a sidecar, the golden outputs) is
# what the Python-codec run is for: none of them belongs on .ci/python-codec-skip.
CODEC_WORDS = ("available_codecs", "PythonCodec", "NativeCodec", "select_codec", "COSTCTX_CODEC", "codecs",
               "make_sidecar", "start_sidecar", "SidecarProcess", "SidecarThread", "golden")


def test_the_python_codec_runs_skip_list_names_real_codec_free_files():
    listed = codec_guard.skip_list()
    assert listed, "the list is read by .ci/run and tests/conftest.py"
    for path in listed:
        file = REPO / path
        assert file.is_file() and file.name.startswith("test_"), path
        text = file.read_text(encoding="utf-8") if file != Path(__file__) else ""  # this file lists the words
        named = [word for word in CODEC_WORDS if word in text]
        assert not named, f"{path} names {named}: it belongs in CI's Python-codec run"


def test_the_python_codec_run_leaves_out_what_the_list_names():
    text = CI_RUN.read_text(encoding="utf-8")
    assert "done < .ci/python-codec-skip" in text and '--ignore=$path' in text
    assert 'COSTCTX_CODEC=python python -m pytest' in text and '"${SKIPPED[@]}"' in text
