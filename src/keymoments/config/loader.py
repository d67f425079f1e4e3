"""Load ``keymoments.yaml``: parse with line numbers, apply ``KEYMOMENTS_*``
environment overrides, validate with the typed models, and turn validation errors
into messages naming the file, line and key, with the closest valid key.

Environment overrides use ``__`` between levels and YAML for the value (string
settings keep the text as given); an error in one names the variable:

>>> cfg = load_config_text("name: shop\\n", env={"KEYMOMENTS_IDENTITY__PHONE_REGION": "BR",
...                                              "KEYMOMENTS_IDENTITY__EMAIL_STRIP_PLUS": "yes"})
>>> cfg.identity.phone_region, cfg.identity.email_strip_plus
('BR', True)
>>> load_config_text("nmae: shop\\n", path="keymoments.yaml")
Traceback (most recent call last):
...
keymoments.errors.ConfigError: keymoments.yaml:1: nmae: unknown key (did you mean 'name'?)
"""

from __future__ import annotations

import difflib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ..errors import ConfigError
from .models import Config

__all__ = ["CONFIG_FILE", "load_config", "load_config_text", "ENV_PREFIX"]

CONFIG_FILE = "keymoments.yaml"
ENV_PREFIX = "KEYMOMENTS_"


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a ``keymoments.yaml`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", file=str(path),
                          hint="run 'keymoments init DIR' to create a workspace") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                          file=str(path)) from None
    return load_config_text(text, path=str(path), env=env)


def load_config_text(
    text: str, path: str = CONFIG_FILE, env: Mapping[str, str] | None = None
) -> Config:
    """Validate config given as YAML text (see :func:`load_config`)."""
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(io.StringIO(text))
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"not valid YAML: {problem}", file=path, line=line) from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("the top level must be a mapping of keys", file=path, line=1)
    overrides = _env_overrides(os.environ if env is None else env)
    plain = _to_plain(data)
    for keys, value, name in overrides:
        try:
            _set_path(plain, keys, value)
        except LookupError as exc:
            raise ConfigError(f"{'.'.join(keys)}: {exc.args[0]}",
                              file=f"environment variable {name}") from None
    try:
        return Config.model_validate(plain)
    except ValidationError as exc:
        if overrides:
            try:  # valid without the overrides: one of them is at fault
                Config.model_validate(_to_plain(data))
            except ValidationError:
                pass
            else:
                raise _explain(exc, data, path, overrides, blame_overrides=True) from None
        raise _explain(exc, data, path, overrides) from None


def _env_overrides(env: Mapping[str, str]) -> list[tuple[list[str], Any, str]]:
    """(key path, value, variable name) of each ``KEYMOMENTS_*`` config override. The
    value is read as YAML, except for string settings, which keep the text as given
    (``KEYMOMENTS_NAME=2024`` is the name '2024', not a number)."""
    yaml = YAML(typ="safe")
    found = []
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__") if k]
        if not keys or keys[0] not in Config.model_fields:
            continue  # other KEYMOMENTS_* variables (e.g. KEYMOMENTS_DEBUG) are not config
        if _members(_annotation_at(keys)) == [str]:
            value = raw
        else:
            try:
                value = yaml.load(raw)
            except YAMLError:
                value = raw
        found.append((keys, value, name))
    return found


def _set_path(data: dict, keys: list[str], value: Any) -> None:
    """Set ``keys`` (a path of mapping keys; a number picks an item of a list the
    file already has) to ``value``; a LookupError says why a path cannot be set.

    >>> d = {"journeys": {"types": [{"name": "a"}]}}
    >>> _set_path(d, ["journeys", "types", "0", "gap"], "1h"); d
    {'journeys': {'types': [{'name': 'a', 'gap': '1h'}]}}
    >>> _set_path(d, ["journeys", "types", "3", "gap"], "1h")
    Traceback (most recent call last):
    ...
    LookupError: journeys.types has 1 item in the file (items are numbered from 0)
    """
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                where = ".".join(keys[:i])
                raise LookupError(f"{where} has {len(node)} item{'s' * (len(node) != 1)} in "
                                  "the file (items are numbered from 0)")
            if last:
                node[int(key)] = value
                return
            node = node[int(key)]
            continue
        if last:
            node[key] = value
            return
        nxt = node.get(key)
        if not isinstance(nxt, (dict, list)):
            nxt = node[key] = {}
        node = nxt


def _to_plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_to_plain(v) for v in node]
    return node


def key_line(path: str | Path, key: str) -> int | None:
    r"""The line of ``key`` (dotted: ``sources.orders.agent``; a list index as a number)
    in the YAML file at ``path``, or of its deepest part written there; None when the
    file cannot be read. For errors found after loading (a mapped column missing from
    the data), which should still name the line.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "keymoments.yaml"
    >>> _ = p.write_text("sources:\n  orders:\n    path: o.csv\n    agent: clerk\n")
    >>> key_line(p, "sources.orders.agent"), key_line(p, "sources.orders.agent.column")
    (4, 4)
    """
    try:
        data = YAML(typ="rt").load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError):
        return None
    parts = tuple(int(p) if p.isdigit() else p for p in key.split("."))
    return _line_of(data, parts)


def _line_of(data: Any, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest key of ``loc`` present in the parsed YAML."""
    node, line = data, None
    for part in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, Mapping) and part in node:
                if lc is not None:
                    line = lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                if lc is not None:
                    line = lc.item(part)[0] + 1
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    return line


def _members(ann: Any) -> list[Any]:
    """The alternatives of an annotation (``X | Y | None`` -> ``[X, Y]``)."""
    import types
    import typing

    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(ann) if a is not type(None)]
    return [ann]


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _tag(ann: Any) -> str:
    """The tag pydantic puts in an error's ``loc`` for a union member."""
    name = ann.__name__ if isinstance(ann, type) else str(ann)
    return name.replace(" ", "")


def _step(ann: Any, part: Any) -> Any:
    """The annotation one level below ``ann`` at key or index ``part`` (None: unknown)."""
    import typing

    for member in _members(ann):
        if _is_model(member):
            field = member.model_fields.get(str(part))
            if field is not None:
                return field.annotation
        elif typing.get_origin(member) is dict and not isinstance(part, int):
            return typing.get_args(member)[1]
        elif typing.get_origin(member) is list and isinstance(part, int):
            return typing.get_args(member)[0]
    return None


def _user_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The key path the user wrote, from pydantic's ``loc``: walks the config models
    to drop the union-member tags pydantic inserts ('str', 'list[str]', 'FieldSpec',
    'function-after[...]') while keeping every key the user wrote, whatever its case."""
    ann: Any = Config
    path: list[Any] = []
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        members = _members(ann)
        if len(members) > 1 and isinstance(part, str):
            tagged = [m for m in members if _tag(m) == part.replace(" ", "")]
            if tagged:
                ann = tagged[0]
                continue
        path.append(part)
        ann = _step(ann, part) if ann is not None else None
    return tuple(path)


def _annotation_at(path: tuple[Any, ...] | list[Any]) -> Any:
    ann: Any = Config
    for part in path:
        if ann is None:
            return None
        ann = _step(ann, part)
    return ann


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model class whose fields the last element of ``loc`` (a key path
    from :func:`_user_path`) belongs to."""
    models = [m for m in _members(_annotation_at(loc[:-1])) if _is_model(m)]
    return models[0] if models else None


def _explain(exc: ValidationError, data: Any, path: str,
             overrides: list[tuple[list[str], Any, str]] = (),
             blame_overrides: bool = False) -> ConfigError:
    errors = exc.errors()
    # an unknown key is the surest sign of a typo (its 'field required' twin follows it)
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = _user_path(tuple(err["loc"]))
    key = ".".join(str(p) for p in loc) or "(top level)"
    line = _line_of(data, loc)
    where = path
    for keys, _, name in overrides:
        at = [str(p) for p in loc]
        # the override set this key or one around it; or (the file being valid without
        # the overrides) it set a key inside the object that failed
        if at[: len(keys)] == keys or (blame_overrides and keys[: len(at)] == at):
            where, line = f"environment variable {name}", None
            break
    hint = None
    if err["type"] == "extra_forbidden":
        model = _model_at(loc)
        valid = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6)
        if close:
            hint = f"did you mean {close[0]!r}?"
        elif valid:
            hint = "valid keys here: " + ", ".join(valid)
        message = "unknown key"
    else:
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error":
            choices = err.get("ctx", {}).get("expected", "")
            given = str(err.get("input"))
            opts = [c.strip().strip("'") for c in choices.replace(" or ", ",").split(",")]
            close = difflib.get_close_matches(given, [o for o in opts if o], n=1, cutoff=0.5)
            if close:
                hint = f"did you mean {close[0]!r}?"
    extra = len(errors) - 1
    if extra:
        more = f"and {extra} more problem{'s' if extra > 1 else ''}"
        if hint:
            hint = f"{hint} {more}"
        else:
            message += f" ({more})"
    return ConfigError(message, file=where, line=line, key=key, hint=hint)
