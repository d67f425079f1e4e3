"""The main job on demo data: generate exports with planted truth, create a
workspace beside them, load every source, build journeys and moments, learn the
remembered score, and write ``report.html``."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KeymomentsError

__all__ = ["DemoSummary", "run_demo"]


@dataclass
class DemoSummary:
    """What the demo did, for the terminal."""

    directory: Path
    report: Path
    loads: list = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    remembered: str = ""
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"demo workspace: {self.directory}",
               f"  {'source':<14}{'rows read':>11}{'loaded':>9}{'quarantined':>13}"
               f"{'duplicate':>11}{'events':>9}"]
        for r in self.loads:
            out.append(f"  {r.source:<14}{r.rows_read:>11,}{r.rows_loaded:>9,}"
                       f"{r.rows_quarantined:>13,}{r.rows_duplicate:>11,}{r.events_loaded:>9,}")
        t = self.totals
        out.append(f"  {t.get('events', 0):,} events, {t.get('people', 0):,} people, "
                   f"{t.get('journeys', 0):,} journeys, {t.get('moments', 0):,} moments "
                   f"in {self.seconds:.1f} s")
        if self.remembered:
            out.append(f"  remembered score: {self.remembered}")
        out.append("  (a row of a wide export, such as an order with its payment and delivery, "
                   "can give several events)")
        out.append(f"open the report: {self.report.resolve().as_uri()}")
        return out


def _demo_file(name: str) -> bool:
    """Whether a demo run writes a file of this name (exports in any format, its
    config, store, truth and report; the store's WAL and spill)."""
    from .files import EXTENSIONS
    from .generator import CONFIG_NAME
    from .mapping import source_mappings

    exports = {Path(m["path"]).name for ext in set(EXTENSIONS.values())
               for m in source_mappings(ext).values()}
    made = {CONFIG_NAME, "truth.json", "truth_journeys.parquet", "report.html",
            "keymoments.duckdb", "keymoments.duckdb.wal", "spill"}
    return name in exports or name in made or (name.startswith(".") and name.endswith(".tmp"))


def run_demo(directory: str | Path, n_events: int = 20_000, seed: int = 7, fmt: str = "csv",
             ingest: Callable | None = None) -> DemoSummary:
    """Generate, load, build and report; ``directory`` is replaced if it holds an
    earlier demo."""
    from ..report import report_sections, write_report
    from ..store.workspace import Workspace
    from .generator import generate_demo

    started = time.perf_counter()
    root = Path(directory)
    if root.exists() and (root / "truth.json").exists():
        # an earlier demo: start clean so the run is reproducible, unless the folder
        # also holds something the demo did not write
        others = sorted(p.name for p in root.iterdir() if not _demo_file(p.name))
        if others:
            raise KeymomentsError(
                f"{root} holds an earlier demo and other files ({', '.join(others[:5])}): "
                "the demo replaces its folder, so choose another one or move them")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    generate_demo(root, n_events=n_events, seed=seed, fmt=fmt)
    ws = Workspace.open(root)
    try:
        loads = [ingest(ws, name) if ingest else ws.ingest(name) for name in ws.config.sources]
        built = ws.build()
        remembered = ""
        try:
            model = ws.fit_remembered("feedback", n_boot=100)
            best = model.scores_[model.best_]
            remembered = (f"best model: {model.best_} (R2 {best.score:.2f}, "
                          f"95% {best.low:.2f} to {best.high:.2f}; peak-end "
                          f"{model.scores_['peak_end'].score:.2f}, mean {model.scores_['mean'].score:.2f})")
        except KeymomentsError as exc:
            remembered = f"not fitted: {exc}"
        report = write_report(ws, root / "report.html", extra={"sections": report_sections(ws)})
        totals = {
            "events": ws.con.execute("SELECT count(*) FROM events").fetchone()[0],
            "people": ws.con.execute("SELECT count(*) FROM people").fetchone()[0],
            "journeys": built.journeys,
            "moments": built.moments,
        }
    finally:
        ws.close()
    return DemoSummary(root, report, loads, totals, remembered, time.perf_counter() - started)
