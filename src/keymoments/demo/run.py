"""The main job on demo data: generate exports with planted truth, create a
workspace beside them, load every source, and write ``report.html``."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DemoSummary", "run_demo"]


@dataclass
class DemoSummary:
    """What the demo did, for the terminal."""

    directory: Path
    report: Path
    loads: list = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"demo workspace: {self.directory}"]
        for r in self.loads:
            out.append(f"  {r.source:<14} read {r.rows_read:>9,}  loaded {r.rows_loaded:>9,}  "
                       f"quarantined {r.rows_quarantined:>6,}  duplicate {r.rows_duplicate:>6,}  "
                       f"events {r.events_loaded:>9,}")
        out.append(f"  {self.totals.get('events', 0):,} events of {self.totals.get('people', 0):,} "
                   f"people in {self.seconds:.1f} s")
        out.append(f"open the report: {self.report}")
        return out


def run_demo(directory: str | Path, n_events: int = 20_000, seed: int = 7, fmt: str = "csv",
             ingest: Callable | None = None) -> DemoSummary:
    """Generate, load and report; ``directory`` is replaced if it holds an earlier demo."""
    from ..report import write_report
    from ..store.workspace import Workspace
    from .generator import generate_demo

    started = time.perf_counter()
    root = Path(directory)
    if root.exists() and (root / "truth.json").exists():
        shutil.rmtree(root)  # an earlier demo: start clean so the run is reproducible
    root.mkdir(parents=True, exist_ok=True)
    generate_demo(root, n_events=n_events, seed=seed, fmt=fmt)
    ws = Workspace.open(root)
    try:
        loads = [ingest(ws, name) if ingest else ws.ingest(name) for name in ws.config.sources]
        report = write_report(ws, root / "report.html")
        totals = {
            "events": ws.con.execute("SELECT count(*) FROM events").fetchone()[0],
            "people": ws.con.execute("SELECT count(*) FROM people").fetchone()[0],
        }
    finally:
        ws.close()
    return DemoSummary(root, report, loads, totals, time.perf_counter() - started)
