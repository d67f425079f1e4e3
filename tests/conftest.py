"""Shared fixtures: the real data folder, and small workspaces built from YAML."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
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


def _kill_load_at(root: Path, source: str, point: str, wait: float = 300) -> None:
    """Start ``ingest(source)`` of the workspace ``root`` in a child process that stops
    at the fault point ``point`` (``KEYMOMENTS_FAULT``, see ``sources.ingest._fault``);
    kill it with SIGKILL once it is there (``wait`` seconds at most to get there)."""
    env = {**os.environ, "KEYMOMENTS_FAULT": f"{point}:{wait * 2}"}
    code = f"import keymoments as km; km.open({str(root)!r}).ingest({source!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    reached = threading.Event()
    seen: list[str] = []

    def watch() -> None:
        for line in proc.stderr:
            seen.append(line)
            if line.strip() == f"keymoments-fault: {point}":
                reached.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        deadline_hit = not reached.wait(wait)
        if deadline_hit or proc.poll() is not None:
            pytest.fail(f"the load never reached {point} (exit {proc.poll()}):\n{''.join(seen)}")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(wait) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        watcher.join(10)


@pytest.fixture
def kill_load_at():
    """``kill_load_at(root, source, point, wait=300)``: a load killed at a fault point."""
    return _kill_load_at
