"""Payload templates (action rules): a JSON-like structure whose strings are Jinja templates.

Templates render in Jinja's sandbox (no attribute access to internals, no
``eval``); the JSON document is built from the rendered strings, so a value
with quotes or braces cannot break out of its field:

>>> render_payload({"text": "Hi {{ person.id }}", "n": 3, "tags": ["{{ language }}"]},
...                {"person": {"id": 'p"1'}, "language": "pt"})
{'text': 'Hi p"1', 'n': 3, 'tags': ['pt']}
>>> check_templates({"x": "{{ oops"})
Traceback (most recent call last):
...
ValueError: template 'x': unexpected end of template, expected 'end of print statement'.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["render_payload", "check_templates"]


@lru_cache(maxsize=1)
def _env():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # autoescape off: the output is a JSON string value, not HTML
    return ImmutableSandboxedEnvironment(autoescape=False)


@lru_cache(maxsize=512)
def _compile(text: str):
    return _env().from_string(text)


def _walk(node: Any, fn, path: str) -> Any:
    if isinstance(node, dict):
        return {str(k): _walk(v, fn, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, fn, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str):
        return fn(node, path)
    return node


def check_templates(payload: Any) -> None:
    """Raise ``ValueError`` naming the field of the first template that does not compile."""
    from jinja2 import TemplateSyntaxError

    def check(text: str, path: str) -> str:
        try:
            _compile(text)
        except TemplateSyntaxError as exc:
            raise ValueError(f"template {path!r}: {exc.message}") from None
        return text

    _walk(payload, check, "")


def render_payload(payload: Any, context: dict[str, Any]) -> Any:
    """``payload`` with every string rendered against ``context``."""
    return _walk(payload, lambda text, _: _compile(text).render(**context), "")
