"""Shared fixtures: the real data folder, and small workspaces built from YAML."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KEYMOMENTS_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"the shared real data sets are expected at {DATA}")
    return DATA


@pytest.fixture
def make_workspace(tmp_path):
    """make_workspace(yaml_text, files={name: bytes|str}) -> open Workspace."""
    import keymoments as km

    opened = []

    def make(config: str, files: dict[str, bytes | str] | None = None, folder: str = "ws"):
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        for name, content in (files or {}).items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content, encoding="utf-8")
            else:
                path.write_bytes(content)
        (root / "keymoments.yaml").write_text(config, encoding="utf-8")
        ws = km.open(root)
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        try:
            ws.close()
        except Exception:
            pass


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for every cross-engine test (one JVM start per run)."""
    import sys
    import tempfile

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (SparkSession.builder.master("local[2]").appName("keymoments-tests")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.warehouse.dir", tempfile.mkdtemp(prefix="km-spark-"))
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.memory", "2g")
               .config("spark.sql.session.timeZone", "UTC")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
