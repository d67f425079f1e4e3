"""The docs cannot drift from the code (after datasette's ``tests/test_docs.py``).

The generated references (``docs/config.md``, ``docs/schema.md``, ``docs/cli.md``)
must equal what ``keymoments.config.reference`` renders now; every config key,
CLI command, table and column must be in them; every relative link in the README
and the docs must point at a file (and heading) that exists.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import click
import pytest
from pydantic import BaseModel

from keymoments.cli import main as cli_main
from keymoments.config.loader import load_config_text
from keymoments.config.models import Config
from keymoments.config.reference import DOCS
from keymoments.store.schema import COLUMN_DOCS

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


def _read(name: str) -> str:
    path = ROOT / name
    assert path.is_file(), f"{name} is missing"
    return path.read_text(encoding="utf-8")


def _sections(text: str, level: str) -> dict[str, str]:
    """Heading -> its body, for headings of exactly ``level`` (e.g. '###')."""
    parts = re.split(r"^(#{1,6}) (.+)$", text, flags=re.M)
    return {parts[i + 1].strip(): parts[i + 2]
            for i in range(1, len(parts) - 2, 3) if parts[i] == level}


@pytest.mark.parametrize("kind", sorted(DOCS))
def test_generated_docs_are_current(kind):
    render, path = DOCS[kind]
    committed = _read(path)
    assert committed == render(), (
        f"{path} is out of date with the code; regenerate it with\n"
        f"    python -m keymoments.config.reference {kind} > {path}"
    )


def _config_models() -> dict[type[BaseModel], None]:
    """Every model reachable from Config (walked here, independently of reference.py)."""
    found: dict[type[BaseModel], None] = {}

    def visit(ann) -> None:
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if ann not in found:
                found[ann] = None
                for info in ann.model_fields.values():
                    visit(info.annotation)
            return
        for arg in typing.get_args(ann):
            visit(arg)

    visit(Config)
    return found


def test_every_config_key_is_documented():
    sections = _sections(_read("docs/config.md"), "###")
    missing = []
    for model in _config_models():
        body = sections.get(model.__name__)
        if body is None:
            missing.append(f"section '### {model.__name__}'")
            continue
        missing += [f"{model.__name__}.{key}" for key in model.model_fields
                    if f"| `{key}` |" not in body]
    assert not missing, f"not in docs/config.md: {', '.join(missing)}"


def test_config_doc_examples_are_valid():
    yaml_blocks = re.findall(r"```yaml\n(.*?)```", _read("docs/config.md"), flags=re.S)
    assert yaml_blocks
    for block in yaml_blocks:
        load_config_text(block, path="docs/config.md", env={})


def test_env_override_claims_hold():
    """What docs/config.md says about KEYMOMENTS_* overrides."""
    from keymoments.errors import ConfigError

    cfg = load_config_text("name: shop\n", env={"KEYMOMENTS_NAME": "2024",
                                                "KEYMOMENTS_TAXONOMY__USE_DEFAULTS": "false",
                                                "KEYMOMENTS_DEBUG": "1"})
    assert (cfg.name, cfg.taxonomy.use_defaults) == ("2024", False)
    with pytest.raises(ConfigError, match="KEYMOMENTS_IDENTITY__PHONE_REGIN"):
        load_config_text("name: shop\n", env={"KEYMOMENTS_IDENTITY__PHONE_REGIN": "BR"})


def test_default_taxonomy_is_listed():
    from keymoments.taxonomy import default_taxonomy

    text = _read("docs/config.md")
    tax = default_taxonomy()
    assert all(f"| `{name}` |" in text for name in tax.event_types)
    assert all(p.match.replace("|", "\\|") in text for p in tax.patterns)


def _commands(cmd: click.Command, name: str = "keymoments"):
    yield name
    if isinstance(cmd, click.Group):
        for sub_name, sub in cmd.commands.items():
            yield from _commands(sub, f"{name} {sub_name}")


def test_every_cli_command_is_documented():
    headings = set(_sections(_read("docs/cli.md"), "##"))
    missing = [name for name in _commands(cli_main) if name not in headings]
    assert not missing, (
        f"commands missing from docs/cli.md: {', '.join(missing)}; regenerate it with\n"
        "    python -m keymoments.config.reference cli > docs/cli.md"
    )


def test_every_table_and_column_is_documented():
    sections = _sections(_read("docs/schema.md"), "###")
    missing = []
    for table, columns in COLUMN_DOCS.items():
        body = sections.get(table)
        if body is None:
            missing.append(f"table {table}")
            continue
        missing += [f"{table}.{col}" for col in columns if f"| `{col}` |" not in body]
    assert not missing, f"not in docs/schema.md: {', '.join(missing)}"


def test_concepts_describe_every_event_field():
    text = _read("docs/concepts.md")
    missing = [col for col in COLUMN_DOCS["events"] if f"`{col}`" not in text]
    assert not missing, f"event fields not described in docs/concepts.md: {', '.join(missing)}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    for heading in re.findall(r"^#{1,6} (.+)$", _strip_fences(text), flags=re.M):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        anchors.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return anchors


def _strip_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _strip_code(text: str) -> str:
    return re.sub(r"`[^`\n]*`", "", _strip_fences(text))


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    text = doc.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _strip_code(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            broken.append(f"{target} (no file {dest})")
        elif fragment and dest.suffix == ".md":
            if fragment not in _anchors(dest.read_text(encoding="utf-8")):
                broken.append(f"{target} (no heading #{fragment} in {dest.name})")
    assert not broken, f"broken links in {doc.relative_to(ROOT)}: {'; '.join(broken)}"
