"""The ``keymoments`` command: each command on a small workspace, the one error
boundary, help for every command, and the installed console script for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from keymoments.cli import main

CONFIG = """\
name: cli
sources:
  web:
    path: web.csv
    identifiers: {device: device_id}
    channel: {value: web}
    event_type: event
    ts: ts
  crm:
    path: crm.csv
    identifiers: {customer_id: cid, email: email, device: device_id}
    channel: {value: crm}
    event_type: {value: account_created}
    ts: created
"""
WEB = """\
device_id,event,ts
dev-ana,page_view,2024-03-01T10:00:00Z
dev-ana,add_to_cart,2024-03-01T10:05:00Z
dev-bruno,page_view,2024-03-02T09:00:00Z
,page_view,2024-03-02T09:30:00Z
"""
CRM = """\
cid,email,device_id,created
C1,Ana@Example.com,dev-ana,2024-02-01T00:00:00Z
"""


@pytest.fixture
def runner():
    return CliRunner(env={"COLUMNS": "200", "KEYMOMENTS_WORKSPACE": None,
                          "KEYMOMENTS_DEBUG": None})


@pytest.fixture
def ws_dir(tmp_path, runner) -> Path:
    """A workspace created by 'keymoments init', with the exports mapped."""
    root = tmp_path / "shop"
    result = runner.invoke(main, ["init", str(root)])
    assert result.exit_code == 0, result.output
    (root / "keymoments.yaml").write_text(CONFIG, encoding="utf-8")
    (root / "web.csv").write_text(WEB, encoding="utf-8")
    (root / "crm.csv").write_text(CRM, encoding="utf-8")
    return root


def km(runner, ws_dir, *args):
    return runner.invoke(main, ["-w", str(ws_dir), *args])


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def assert_one_error_line(result, *fragments, code=1):
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:" if code == 1 else "internal error:")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_init(tmp_path, runner):
    root = tmp_path / "new"
    result = ok(runner.invoke(main, ["init", str(root), "--name", "acme"]))
    assert "created workspace" in result.stdout
    assert sorted(p.name for p in root.iterdir()) == ["keymoments.duckdb", "keymoments.yaml"]
    assert 'name: "acme"' in (root / "keymoments.yaml").read_text()
    again = runner.invoke(main, ["init", str(root)])
    assert_one_error_line(again, "already exists")


@pytest.mark.parametrize("name", ["2024", "shop #2", "Acme: EU", "two\nlines: x", "café ü",
                                  "del\x7f", "nel\x85"])
def test_init_keeps_any_name_as_written(tmp_path, runner, name):
    """The name was written into the YAML as it came: a folder named 2024 made an
    invalid config (a number), '#2' was cut off as a comment, a newline added keys."""
    root = tmp_path / "new"
    ok(runner.invoke(main, ["init", str(root), "--name", name]))
    import keymoments

    ws = keymoments.open(root)
    assert ws.config.name == name
    ws.close()


def test_ingest_table(runner, ws_dir):
    result = ok(km(runner, ws_dir, "ingest", "web"))
    out = result.stdout
    for header in ("source", "read", "loaded", "updated", "quarantined", "duplicate",
                   "events"):
        assert header in out
    row = next(line for line in out.splitlines() if " web " in line)
    numbers = [cell.strip() for cell in row.split("│")[2:8]]
    assert numbers == ["4", "3", "0", "1", "0", "3"]  # the blank device is quarantined
    assert "keymoments quarantine" in out


def test_ingest_json_all_sources(runner, ws_dir):
    result = ok(km(runner, ws_dir, "ingest", "--json"))
    reports = json.loads(result.stdout)
    got = {r["source"]: (r["rows_read"], r["rows_loaded"], r["rows_quarantined"],
                         r["rows_duplicate"], r["events_loaded"]) for r in reports}
    assert got == {"web": (4, 3, 1, 0, 3), "crm": (1, 1, 0, 0, 1)}
    again = json.loads(ok(km(runner, ws_dir, "ingest", "--json", "web")).stdout)
    assert (again[0]["rows_duplicate"], again[0]["events_loaded"]) == (3, 0)


def test_status_quarantine_person_events(runner, ws_dir):
    ok(km(runner, ws_dir, "ingest", "--json"))
    status = ok(km(runner, ws_dir, "status")).stdout
    counts = {}
    for line in status.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) == 2 and cells[1].isdigit():
            counts[cells[0]] = int(cells[1])
    assert counts["events"] == 4 and counts["people"] == 2 and counts["quarantine"] == 1
    assert counts["identifiers"] == 4  # dev-ana, dev-bruno, C1, ana@example.com

    quarantine = ok(km(runner, ws_dir, "quarantine")).stdout
    assert "│ web.csv " in quarantine  # relative to the workspace, not cut short
    assert "no identifier: every identifier (device_id) is empty" in " ".join(quarantine.split())
    [row] = [json.loads(line) for line in
             ok(km(runner, ws_dir, "quarantine", "--json")).stdout.splitlines()]
    assert (row["source"], row["line"], row["field"]) == ("web", 5, "identifiers")

    person = ok(km(runner, ws_dir, "person", "ana@example.com")).stdout
    assert "why these identifiers are one person" in person
    assert "account_created" in person and "add_to_cart" in person
    data = json.loads(ok(km(runner, ws_dir, "person", "dev-ana", "--json")).stdout)
    assert {i["identifier"] for i in data["identifiers"]} == {
        "customer_id:C1", "email:ana@example.com", "device:dev-ana"}
    assert len(data["why"]) == 2
    assert [e["event_type"] for e in data["timeline"]] == [
        "account_created", "page_view", "add_to_cart"]

    events = ok(km(runner, ws_dir, "events", "--person", "C1", "--limit", "2")).stdout
    assert events.count("│ " + data["person_id"]) == 2 and "add_to_cart" not in events
    everyone = ok(km(runner, ws_dir, "events")).stdout
    assert "dev-bruno" not in everyone and everyone.count("page_view") == 2


def test_config_check_and_show(runner, ws_dir):
    assert "is valid: 2 source(s)" in ok(km(runner, ws_dir, "config", "check")).stdout
    shown = json.loads(ok(km(runner, ws_dir, "config", "show")).stdout)
    assert shown["identity"]["phone_region"] == "US"  # a default, filled in
    assert shown["sources"]["web"]["identifiers"]["device"]["column"] == "device_id"
    # what a build uses: the built-in journey types and valence rules (read here from
    # the packaged files, the lists the build falls back to)
    from keymoments.valence.rules import default_rules
    from importlib import resources
    from ruamel.yaml import YAML
    packaged = YAML(typ="safe").load(resources.files("keymoments").joinpath(
        "defaults/journeys.yaml").read_text("utf-8"))["types"]
    assert [t["name"] for t in shown["journeys"]["types"]] == [t["name"] for t in packaged]
    assert [r["name"] for r in shown["valence"]["rules"]] == [r.name for r in default_rules()]
    assert shown["valence"]["rules"]
    (ws_dir / "keymoments.yaml").write_text(CONFIG + "    chanel: {value: x}\n")
    bad = km(runner, ws_dir, "config", "check")
    assert_one_error_line(bad, "keymoments.yaml:15: sources.crm.chanel: unknown key",
                          "did you mean 'channel'?")


def test_errors_print_one_line(runner, ws_dir, tmp_path):
    assert_one_error_line(km(runner, ws_dir, "ingest", "wbe"), "no source 'wbe'",
                          "did you mean 'web'?")
    assert_one_error_line(km(runner, tmp_path / "nowhere", "status"), "no workspace")
    ok(km(runner, ws_dir, "ingest", "--json"))
    assert_one_error_line(km(runner, ws_dir, "person", "nobody"), "no person")


def test_debug_lets_the_exception_through(runner, ws_dir):
    result = runner.invoke(main, ["--debug", "-w", str(ws_dir), "ingest", "wbe"])
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "NotFoundError"
    assert "error:" not in result.stderr


def test_unexpected_errors_exit_2(runner, ws_dir, monkeypatch):
    from keymoments.store.workspace import Workspace

    def broken(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Workspace, "status", broken)
    assert_one_error_line(km(runner, ws_dir, "status"), "RuntimeError: disk on fire",
                          "--debug", code=2)


def test_out_of_memory_is_a_clear_error_with_what_to_do(runner, ws_dir, monkeypatch):
    import duckdb

    from keymoments.store.workspace import Workspace

    def hungry(self, *a, **k):
        raise duckdb.OutOfMemoryException("failed to allocate data of size 16.0 MiB (2.7 GiB/2.7 GiB used)")

    monkeypatch.setattr(Workspace, "build", hungry)
    assert_one_error_line(km(runner, ws_dir, "build"), "out of memory", "2.7 GiB",
                          "memory_limit", "temp_directory", code=1)


def test_a_full_disk_is_a_clear_error_with_what_to_do(runner, ws_dir, monkeypatch):
    import duckdb

    from keymoments.store.workspace import Workspace

    def full(self, *a, **k):
        raise duckdb.IOException('Could not write file "x.duckdb.wal": No space left on device')

    monkeypatch.setattr(Workspace, "build", full)
    assert_one_error_line(km(runner, ws_dir, "build"), "the disk is full", "x.duckdb.wal",
                          "as it was before", "make room", code=1)


def all_commands(group: click.Group, path=()):
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from all_commands(command, (*path, name))


COMMANDS = list(all_commands(main))


def test_every_expected_command_exists():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"init", "ingest", "status", "quarantine", "person", "events", "config",
            "config check", "config show", "demo"} <= names


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_for_every_command(runner, path, command):
    assert (command.help or "").strip(), f"'keymoments {' '.join(path)}' has no description"
    result = ok(runner.invoke(main, [*path, "--help"]))
    assert result.stdout.startswith(f"Usage: main {' '.join(path)}")
    assert command.help.strip().split("\n")[0][:40] in " ".join(result.stdout.split())


def test_top_level_help_lists_every_command(runner):
    out = ok(runner.invoke(main, ["--help"])).stdout
    for name in main.commands:
        assert f"  {name} " in out


SCRIPT = Path(sys.executable).with_name("keymoments")


def test_installed_console_script(tmp_path):
    assert SCRIPT.exists(), "the keymoments console script is not installed"
    env = {"PATH": str(SCRIPT.parent) + ":/usr/bin:/bin", "COLUMNS": "200"}

    def run(*args):
        return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env,
                              timeout=60, cwd=tmp_path)

    made = run("init", "shop")
    assert made.returncode == 0, made.stderr
    (tmp_path / "shop" / "keymoments.yaml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "shop" / "web.csv").write_text(WEB, encoding="utf-8")
    loaded = run("-w", "shop", "ingest", "--json", "web")
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)[0]["events_loaded"] == 3

    failed = run("-w", "shop", "ingest", "wbe")
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("error: no source 'wbe'")
    assert "Traceback" not in failed.stderr and failed.stdout == ""

    debug = run("--debug", "-w", "shop", "ingest", "wbe")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "NotFoundError: no source 'wbe'" in debug.stderr


def test_json_output_is_strict_json_when_a_number_is_undefined(capsys):
    """A hazard rate of nobody or a rate of zero journeys is NaN; ``--json`` writes it
    as null, since a bare NaN is not JSON (strict readers such as ``jq`` refuse it)."""
    import pyarrow as pa

    from keymoments.insights.commands import _emit
    from keymoments.results import Result

    def strict(text):
        def refuse(name):
            raise ValueError(f"not JSON: {name}")
        return json.loads(text, parse_constant=refuse)

    _emit(Result(pa.table({"segment": ["a", "b"], "hazard_rate": [float("nan"), 0.5]}),
                 {"hr": float("inf"), "n": 2}), as_json=True)
    got = strict(capsys.readouterr().out)
    assert got == {"rows": [{"segment": "a", "hazard_rate": None},
                            {"segment": "b", "hazard_rate": 0.5}],
                   "meta": {"hr": None, "n": 2}}


def test_moments_of_a_journey_by_its_key_and_a_hint_for_a_misspelt_kind(runner, ws_dir):
    """`journeys` shows a journey's key (the order id) and id; `moments --journey`
    takes either. A kind that no moment has lists the kinds there are."""
    with open(ws_dir / "keymoments.yaml", "a", encoding="utf-8") as fh:
        fh.write("  orders:\n    path: orders.csv\n    identifiers: {customer_id: cid}\n"
                 "    event_type: event\n    ts: ts\n    refs: {order: order_id}\n")
    (ws_dir / "orders.csv").write_text(
        "cid,event,ts,order_id\nC1,order_placed,2024-03-03T10:00:00Z,O-1\n"
        "C1,order_delivered,2024-03-05T10:00:00Z,O-1\n", encoding="utf-8")
    ok(km(runner, ws_dir, "ingest"))
    ok(km(runner, ws_dir, "build"))
    rows = [json.loads(line) for line in
            ok(km(runner, ws_dir, "journeys", "--json")).stdout.splitlines()]
    order = [r for r in rows if r["journey_key"] == "O-1"]
    assert len(order) == 1 and order[0]["journey_type"] == "purchase"
    by_id = ok(km(runner, ws_dir, "moments", "--journey", order[0]["journey_id"])).stdout
    by_key = ok(km(runner, ws_dir, "moments", "--journey", "O-1")).stdout
    assert by_key == by_id and "purchase" in by_id and "(none)" not in by_id
    assert order[0]["journey_id"][:12] in ok(km(runner, ws_dir, "journeys")).stdout
    typo = ok(km(runner, ws_dir, "moments", "--kind", "purchse")).stdout
    assert "(none)" in typo and "did you mean 'purchase'?" in typo
    nothing = ok(km(runner, ws_dir, "journeys", "--type", "purchse")).stdout
    assert "did you mean 'purchase'?" in nothing and "(journey types here: " in nothing
    # the path commands refuse a journey type no journey has (not an empty result)
    for command in (["process-map"], ["variants"], ["export-log", str(ws_dir / "t.xes")]):
        assert_one_error_line(km(runner, ws_dir, *command, "--type", "purchse"),
                              "no journeys of type 'purchse'", "did you mean 'purchase'?",
                              "journey types here: ")
    assert not (ws_dir / "t.xes").exists()
    ok(km(runner, ws_dir, "process-map", "--type", "purchase"))
    import keymoments
    with keymoments.open(ws_dir, read_only=True) as ws:
        hint = keymoments.journeys(ws, status="done").meta["hint"]
    assert "no status 'done'" in hint and "(statuses here: " in hint


def test_an_ingest_that_quarantines_every_row_of_a_source_warns(runner, ws_dir):
    (ws_dir / "crm.csv").write_text(CRM.replace("2024-02-01T00:00:00Z", "yesterday"))
    result = ok(km(runner, ws_dir, "ingest"))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: every row of crm was quarantined: a format or mapping that "
                        "fits none of them? see 'keymoments quarantine'"]


def test_journeys_show_durations_in_days_hours_and_minutes(runner, ws_dir):
    ok(km(runner, ws_dir, "ingest"))
    ok(km(runner, ws_dir, "build"))
    out = ok(km(runner, ws_dir, "journeys", "--json")).stdout
    # Ana's account (one event), Bruno's page view (one), and Ana's visit: page
    # view at 10:00, add to cart at 10:05 (hand-computed: 300 s)
    assert sorted(json.loads(line)["duration_s"] for line in out.splitlines()) == [0, 0, 300]
    table = ok(km(runner, ws_dir, "journeys")).stdout
    assert " duration " in table.splitlines()[1] and "duration_s" not in table
    assert "5m" in table and "300" not in table
    assert table.count(" 0s ") == 2


def test_control_characters_from_the_data_are_written_out_not_sent(runner, ws_dir):
    """An event type holding an escape sequence (clear screen, then a hidden link) and
    a right-to-left override: the terminal receives their written form, not the
    characters it would act on; tables, person timelines and messages alike."""
    evil = "view\x1b[2J\x1b]8;;http://x.invalid\x07here\u202eexe"
    (ws_dir / "web.csv").write_text(f"device_id,event,ts\ndev-ana,{evil},2024-03-01T10:00:00Z\n",
                                    encoding="utf-8")
    ok(km(runner, ws_dir, "ingest", "web"))
    for args in (["events"], ["person", "dev-ana"]):
        out = ok(km(runner, ws_dir, *args)).output
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, args
        assert "view\\x1b[2J\\x1b]8;;http://x.invalid\\x07here\\u202eexe" in out, args
    missing = km(runner, ws_dir, "person", evil)
    assert missing.exit_code == 1 and "\x1b" not in missing.output
    assert "view\\x1b[2J" in missing.output


def test_ingest_of_every_source_says_what_loaded_before_one_failed(runner, ws_dir):
    """'ingest' loads web, then crm; crm's file is missing: web's load stands and is
    shown, and the error names the failed source and what was not loaded."""
    (ws_dir / "crm.csv").unlink()
    out = km(runner, ws_dir, "ingest")
    assert out.exit_code == 1
    row = next(line for line in out.stdout.splitlines() if " web " in line)
    assert [c.strip() for c in row.split("│")[2:8]] == ["4", "3", "0", "1", "0", "3"]
    assert_one_error_line(out, "source 'crm': ", "loaded before it: web; not loaded: crm")
    status = ok(km(runner, ws_dir, "status")).stdout
    assert any(line.split("│")[1:3] and line.split("│")[1].strip() == "events"
               and line.split("│")[2].strip() == "3" for line in status.splitlines())


@pytest.mark.parametrize("args, option", [
    (["churn", "--kind", "inactivity", "--inactive-days", "nan"], "--inactive-days"),
    (["churn", "--inactive-days", "-3"], "--inactive-days"),
    (["churn", "--horizon", "nan"], "--horizon"),
    (["churn", "--unit-days", "inf"], "--unit-days"),
    (["alive", "--horizon", "nan"], "--horizon"),
    (["alive", "--unit-days", "0"], "--unit-days"),
    (["metrics", "churn", "--inactive-days", "1e9"], "--inactive-days"),
    (["funnel", "--within-days", "nan"], "--within-days"),
    (["root-causes", "--within-days", "x"], "--within-days"),
])
def test_a_number_of_days_that_is_no_number_is_a_usage_error(runner, ws_dir, args, option):
    """NaN passes click's FloatRange (every comparison with it is false): such values
    gave a column of nan or a default's result; now the option is named, exit 2."""
    result = km(runner, ws_dir, *args)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.stderr
    assert "above 0" in result.stderr


def test_days_options_take_a_fraction_and_the_most_days():
    from keymoments.insights.commands import DAYS, POSITIVE
    from keymoments.sql import MAX_DAYS

    assert DAYS.convert("0.5", None, None) == 0.5
    assert DAYS.convert(str(MAX_DAYS), None, None) == MAX_DAYS
    assert POSITIVE.convert("1e9", None, None) == 1e9
