"""The service's browsable API reference at ``/docs``: one self-contained page
rendered from its OpenAPI spec (FastAPI's own pages load Swagger UI or ReDoc from a
CDN; nothing here is fetched from elsewhere)."""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, select_autoescape

__all__ = ["docs_page"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ info.title }} API</title>
<style>
 body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 960px; padding: 0 1rem;
        color: #1d232b; }
 code, pre { font: 13px/1.4 ui-monospace, monospace; } pre { background: #f5f7f9; padding: .6rem;
        overflow-x: auto; } .op { border-top: 1px solid #dde3ea; padding: .6rem 0; }
 .m { display: inline-block; min-width: 4rem; font-weight: 700; } .muted { color: #66707c; }
 table { border-collapse: collapse; } td, th { text-align: left; padding: .2rem .6rem .2rem 0;
        vertical-align: top; }
</style></head><body>
<h1>{{ info.title }} API <span class="muted">v{{ info.version }}</span></h1>
<p>{{ info.description }}</p>
<p class="muted">The machine-readable spec: <a href="/openapi.json">/openapi.json</a>.
Authenticate with <code>Authorization: Bearer km_...</code> (or <code>X-API-Key</code>);
send bodies as <code>Content-Type: application/json</code>.</p>
{% for op in ops %}
<div class="op" id="{{ op.id }}">
<h2><span class="m">{{ op.method }}</span><code>{{ op.path }}</code></h2>
{% if op.summary %}<p><b>{{ op.summary }}</b></p>{% endif %}
{% if op.description %}<p>{{ op.description }}</p>{% endif %}
{% if op.params %}<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th></tr>
{% for p in op.params %}<tr><td><code>{{ p.name }}</code></td><td>{{ p.where }}</td>
<td>{{ p.type }}</td><td>{{ "yes" if p.required else "" }}</td></tr>{% endfor %}</table>{% endif %}
{% if op.body %}<p>Body: <code>{{ op.body }}</code> (<a href="#schema-{{ op.body }}">schema</a>)</p>
{% endif %}
</div>
{% endfor %}
<h2>Schemas</h2>
{% for name, schema in schemas %}<h3 id="schema-{{ name }}">{{ name }}</h3>
<pre>{{ schema }}</pre>{% endfor %}
</body></html>
"""


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(map(str, schema["enum"]))
    return str(schema.get("type", "any"))


def docs_page(spec: dict[str, Any]) -> str:
    """The HTML reference of an OpenAPI ``spec``; every text from the spec escaped.

    >>> spec = {"info": {"title": "t", "version": "1", "description": "<b>x</b>"},
    ...         "paths": {"/v1/a": {"get": {"summary": "A", "parameters": [
    ...             {"name": "n", "in": "query", "schema": {"type": "integer"}}]}}}}
    >>> page = docs_page(spec)
    >>> "&lt;b&gt;x&lt;/b&gt;" in page, "<code>/v1/a</code>" in page, "<script" in page
    (True, True, False)
    """
    ops = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            body = (op.get("requestBody", {}).get("content", {}).get("application/json", {})
                    .get("schema"))
            ops.append({
                "method": method.upper(), "path": path, "id": op.get("operationId", ""),
                "summary": op.get("summary", ""), "description": op.get("description", ""),
                "params": [{"name": p["name"], "where": p.get("in", ""),
                            "type": _type(p.get("schema", {})), "required": p.get("required")}
                           for p in op.get("parameters", [])],
                "body": _type(body) if body else None})
    schemas = [(name, json.dumps(s, indent=2))
               for name, s in spec.get("components", {}).get("schemas", {}).items()]
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(_PAGE).render(info=spec.get("info", {}), ops=ops, schemas=schemas)
