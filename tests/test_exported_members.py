"""The public API is what ``keymoments.__all__`` says, and importing it does nothing
but import (as httpx's tests/test_exported_members.py)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap

import keymoments as km

PRIVATE_MEMBERS_EXPORTED = {"__version__"}


def test_all_public_names_are_exported():
    public = {
        name for name, value in vars(km).items()
        if (not name.startswith("_") or name in PRIVATE_MEMBERS_EXPORTED)
        and not inspect.ismodule(value)  # subpackages appear as attributes once imported
    }
    assert set(km.__all__) == public
    assert len(km.__all__) == len(set(km.__all__))


def test_every_exported_name_is_importable_and_documented():
    namespace: dict = {}
    exec("from keymoments import *", namespace)
    for name in km.__all__:
        assert name in namespace, name
        value = getattr(km, name)
        if callable(value):
            assert inspect.getdoc(value), f"keymoments.{name} has no docstring"


def test_version_matches_the_installed_metadata():
    from importlib.metadata import version

    assert km.__version__ == version("keymoments")


IMPORT_PROBE = textwrap.dedent("""
    import json, os, sys
    import duckdb

    opened = []
    real_connect = duckdb.connect
    def spy(*args, **kwargs):
        opened.append(repr(args))
        return real_connect(*args, **kwargs)
    duckdb.connect = spy

    import keymoments
    heavy = ["pandas", "polars", "ibis", "pyspark", "scipy", "sklearn", "torch",
             "transformers", "jinja2", "phonenumbers", "rich", "click"]
    print(json.dumps({
        "connections": opened,
        "heavy": sorted(m for m in heavy if m in sys.modules),
        "files": sorted(os.listdir(".")),
    }))
""")


def run_probe(cwd) -> dict:
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], cwd=cwd, capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_has_no_side_effects(tmp_path):
    probe = run_probe(tmp_path)
    assert probe == {"connections": [], "heavy": [], "files": []}
    assert list(tmp_path.iterdir()) == []


def test_import_does_not_read_config(tmp_path):
    # a broken keymoments.yaml in the current folder does not matter until it is opened
    (tmp_path / "keymoments.yaml").write_text("nmae: [\n", encoding="utf-8")
    probe = run_probe(tmp_path)
    assert probe["files"] == ["keymoments.yaml"] and probe["connections"] == []
