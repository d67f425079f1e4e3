"""The setup script's guard: a .venv linked from another checkout is not repointed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _checkout(path: Path) -> Path:
    (path / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts/setup.sh", path / "scripts/setup.sh")
    (path / "src/keymoments").mkdir(parents=True)
    return path


def _fake_venv(path: Path, keymoments_dir: Path) -> Path:
    """An environment whose python says its keymoments is in ``keymoments_dir`` and
    records any other call (an install) in ``calls``."""
    (path / "bin").mkdir(parents=True)
    python = path / "bin/python"
    python.write_text("#!/bin/sh\n"
                      f'case "$*" in *keymoments.__file__*) echo "{keymoments_dir}";;\n'
                      f'  *) echo "$*" >> "{path}/calls";; esac\n', encoding="utf-8")
    python.chmod(0o755)
    return path


def test_setup_refuses_a_venv_linked_from_another_checkout(tmp_path):
    other = _checkout(tmp_path / "other")
    venv = _fake_venv(tmp_path / "other-venv", (other / "src/keymoments").resolve())
    mine = _checkout(tmp_path / "mine")
    os.symlink(venv, mine / ".venv")
    run = subprocess.run(["bash", "scripts/setup.sh"], cwd=mine, capture_output=True, text=True)
    assert run.returncode == 1
    assert "Remove the link (rm .venv)" in run.stderr
    assert str(other / "src/keymoments") in run.stderr
    assert not (venv / "calls").exists()  # nothing was installed into it


def test_setup_goes_on_with_a_linked_venv_of_this_checkout(tmp_path):
    mine = _checkout(tmp_path / "mine")
    venv = _fake_venv(tmp_path / "venv", (mine / "src/keymoments").resolve())
    os.symlink(venv, mine / ".venv")
    run = subprocess.run(["bash", "scripts/setup.sh"], cwd=mine, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "-m pip install" in (venv / "calls").read_text()
