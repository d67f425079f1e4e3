"""Load ``keymoments.yaml``: parse with line numbers, apply ``KEYMOMENTS_*``
environment overrides, validate with the typed models, and turn validation errors
into messages naming the file, line and key, with the closest valid key.

Environment overrides use ``__`` between levels and YAML for the value:

>>> import os
>>> cfg = load_config_text("name: shop\\n", env={"KEYMOMENTS_IDENTITY__PHONE_REGION": "BR"})
>>> cfg.identity.phone_region
'BR'
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
                          hint="run 'keymoments init DIR' to create a workspace")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path))
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
        raise ConfigError(f"not valid YAML: {problem}", file=path, line=line)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("the top level must be a mapping of keys", file=path, line=1)
    overrides = _env_overrides(os.environ if env is None else env)
    plain = _to_plain(data)
    for keys, value in overrides:
        _set_path(plain, keys, value)
    try:
        return Config.model_validate(plain)
    except ValidationError as exc:
        raise _explain(exc, data, path) from None


def _env_overrides(env: Mapping[str, str]) -> list[tuple[list[str], Any]]:
    yaml = YAML(typ="safe")
    found = []
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__") if k]
        if not keys or keys[0] not in Config.model_fields:
            continue  # other KEYMOMENTS_* variables (e.g. KEYMOMENTS_DEBUG) are not config
        try:
            value = yaml.load(raw)
        except YAMLError:
            value = raw
        found.append((keys, value))
    return found


def _set_path(data: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        nxt = data.get(key)
        if not isinstance(nxt, dict):
            nxt = data[key] = {}
        data = nxt
    data[keys[-1]] = value


def _to_plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_to_plain(v) for v in node]
    return node


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


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model class whose fields the last element of ``loc`` belongs to."""
    import typing

    model: Any = Config
    for part in loc[:-1]:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            # a key of a dict[str, Model]: stay on the dict's value model
            continue
        ann = field.annotation
        model = _unwrap(ann, typing)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(ann: Any, typing: Any) -> Any:
    for _ in range(4):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann
        if not args:
            return ann
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        ann = models[0] if models else args[-1]
    return ann


def _explain(exc: ValidationError, data: Any, path: str) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # pydantic adds union-member tags (e.g. 'str', 'FieldSpec') into loc; drop them
    loc = tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper()))
    key = ".".join(str(p) for p in loc) or "(top level)"
    line = _line_of(data, loc)
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
    extra = len(exc.errors()) - 1
    if extra:
        message += f" (and {extra} more problem{'s' if extra > 1 else ''})"
    return ConfigError(message, file=path, line=line, key=key, hint=hint)
