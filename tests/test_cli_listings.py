"""Listings on the command line and their Python twins, checked against the stored
tables read with pandas: limits (0 for all, a negative one refused, "more" said), the
moment summary's filters, groups and both ends, one person's timeline with journeys,
valences and moment marks, and output cut by the reader (``| head``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import keymoments as km
from keymoments.cli import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from keymoments.demo import generate_demo

    root = tmp_path_factory.mktemp("listings") / "demo"
    generate_demo(root, n_events=2500, seed=5)
    with km.open(root) as ws:
        ws.ingest()
        ws.build()
    return root


def run(demo, *args):
    result = CliRunner(env={"COLUMNS": "250"}).invoke(main, ["-w", str(demo), *args])
    return result


def frame(demo, sql):
    with km.open(demo, read_only=True) as ws:
        return ws.con.execute(sql).df()


@pytest.mark.parametrize("command", [["journeys"], ["moments"], ["events"], ["quarantine"],
                                     ["moments", "--summary"], ["person", "x"],
                                     ["actions", "list"], ["variants"]])
def test_a_negative_limit_is_a_usage_error(demo, command):
    """It reached SQL's LIMIT: 'internal error: BinderException'."""
    result = run(demo, *command, "--limit", "-1")
    assert result.exit_code == 2 and "internal error" not in result.output
    assert "Invalid value for '--limit': -1 is not in the range x>=0" in result.output


def test_journeys_limit_zero_is_all_and_a_cut_listing_says_there_are_more(demo):
    n = int(frame(demo, "SELECT count(*) AS n FROM journeys")["n"][0])
    assert n > 3
    every = [json.loads(line) for line in run(demo, "journeys", "--json", "--limit", "0")
             .stdout.splitlines()]
    assert len(every) == n
    three = [json.loads(line) for line in run(demo, "journeys", "--json", "--limit", "3")
             .stdout.splitlines()]
    assert three == every[:3]
    shown = run(demo, "journeys", "--limit", "3").stdout
    assert "... more: --limit 0 shows all" in shown
    assert "... more" not in run(demo, "journeys", "--limit", str(n)).stdout


def test_the_summary_filters_by_kind_and_type_and_groups_as_asked(demo):
    m = frame(demo, "SELECT * FROM moments")
    with km.open(demo, read_only=True) as ws:
        got = ws.moment_summary(("channel",), kind="valley", journey_type="purchase").to_pandas()
        typo = ws.moment_summary(kind="vally")
    want = (m[(m.kind == "valley") & (m.journey_type == "purchase")]
            .groupby("channel", dropna=False)
            .agg(n=("valence", "size"), n_valenced=("valence", "count"),
                 mean_valence=("valence", "mean")).reset_index())
    assert len(want) > 1
    got = got.set_index("channel").sort_index()
    want = want.set_index("channel").sort_index()
    assert list(got.index) == list(want.index)
    assert (got.n == want.n).all() and (got.n_valenced == want.n_valenced).all()
    assert got.mean_valence.values == pytest.approx(want.mean_valence.values)
    assert len(typo) == 0 and "did you mean 'valley'?" in typo.meta["hint"]
    # the command line: --kind and --by were ignored (every kind, kind/stage/channel)
    out = run(demo, "moments", "--summary", "--kind", "valley", "--by", "channel",
              "--type", "purchase", "--limit", "0").stdout
    header = next(line for line in out.splitlines() if "mean_valence" in line)
    assert "channel" in header and "kind" not in header and "stage" not in header
    assert sum(1 for line in out.splitlines() if line.startswith("│")) == len(want)


def test_the_summary_over_its_limit_shows_both_ends(demo):
    with km.open(demo, read_only=True) as ws:
        rows = ws.moment_summary().to_pylist()
    scored = [r for r in rows if r["mean_valence"] is not None]
    assert len(scored) > 6
    out = run(demo, "moments", "--summary", "--limit", "4").stdout
    # (named by their order: "most negative" read wrong where every mean is above 0)
    assert "lowest mean valence" in out and "highest mean valence" in out
    assert f"... {len(scored) - 4:,} in between" in out
    best, worst = scored[-1], scored[0]
    assert f"{best['mean_valence']:.4g}"[:5] in out.split("highest mean valence", 1)[1]
    assert f"{worst['mean_valence']:.4g}"[:5] in out.split("highest mean valence", 1)[0]


def test_summary_with_journey_or_by_without_summary_are_usage_errors(demo):
    assert run(demo, "moments", "--summary", "--journey", "x").exit_code == 2
    assert run(demo, "moments", "--by", "channel").exit_code == 2


def test_the_python_timeline_carries_journeys_valences_and_moment_marks(demo):
    """What the command line shows is one call in Python (docs/concepts.md): the
    timeline had only the events' columns; the marks were joined in the CLI."""
    busiest = frame(demo, "SELECT person_id, count(*) n FROM moments GROUP BY 1 "
                          "ORDER BY 2 DESC, 1 LIMIT 1")["person_id"][0]
    with km.open(demo, read_only=True) as ws:
        timeline = ws.person(busiest).timeline.to_pandas()
    events = frame(demo, f"SELECT event_id, ts FROM events WHERE person_id = '{busiest}'")
    je = frame(demo, f"SELECT event_id, journey_id, journey_type, valence, valence_reason "
                     f"FROM journey_events WHERE person_id = '{busiest}'")
    marks = frame(demo, f"SELECT event_id, kind FROM moments WHERE person_id = '{busiest}'")
    assert sorted(timeline.event_id) == sorted(events.event_id)
    assert list(timeline.ts) == sorted(timeline.ts)
    want = je.set_index("event_id")
    for r in timeline.itertuples():
        assert r.journey_id == want.journey_id[r.event_id]
        assert r.journey_type == want.journey_type[r.event_id]
        v = want.valence[r.event_id]
        assert (r.valence is None or r.valence != r.valence) == (v is None or v != v)
        assert sorted(r.moments) == sorted(marks[marks.event_id == r.event_id].kind)
    assert sum(len(m) for m in timeline.moments) == len(marks) > 0
    # and the command line shows them, cut at its limit with a notice
    out = run(demo, "person", busiest, "--limit", "2").stdout
    assert f"... {len(timeline) - 2:,} more events" in out
    doc = json.loads(run(demo, "person", busiest, "--json").stdout)
    assert len(doc["timeline"]) == len(timeline)
    assert sorted(k for e in doc["timeline"] for k in e["moments"]) == sorted(marks.kind)


def test_output_cut_by_the_reader_is_no_internal_error(demo):
    script = Path(sys.executable).parent / "keymoments"
    cut = subprocess.run(f"set -o pipefail; '{script}' -w '{demo}' journeys --json --limit 0 "
                         "| head -1", shell=True, capture_output=True, text=True, timeout=120,
                         executable="/bin/bash")
    assert json.loads(cut.stdout)["journey_id"]
    assert "internal error" not in cut.stderr and "Traceback" not in cut.stderr, cut.stderr
    assert cut.returncode == 141
    # a table: rich writes it in one go, and handled a broken pipe itself with exit 1
    # (called directly: how soon a pipe breaks under one big write depends on the
    # system's pipe buffer)
    table = subprocess.run([sys.executable, "-c", "from keymoments.cli import console; "
                            "console.print('x'); console.on_broken_pipe()"],
                           capture_output=True, text=True, timeout=60)
    assert table.returncode == 141 and table.stderr == "" and table.stdout == "x\n"


def test_variants_limit_zero_lists_them_all(demo):
    """It read SQL's LIMIT 0: '128 variants: (none)'."""
    out = run(demo, "variants", "--limit", "0").stdout
    n = int(out.split(" variants", 1)[0].split()[-1].replace(",", ""))
    assert n > 3 and sum(1 for line in out.splitlines() if line.startswith("│")) >= n
    cut = run(demo, "variants", "--limit", "2").stdout
    assert f"... {n - 2:,} more: --limit 0 shows all" in cut
    # JSON lines honour the limit as the table does (and as journeys --json does)
    assert len(run(demo, "variants", "--json", "--limit", "2").stdout.splitlines()) == 2
    assert len(run(demo, "variants", "--json", "--limit", "0").stdout.splitlines()) == n
