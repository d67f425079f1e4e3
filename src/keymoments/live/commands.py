"""CLI commands of the live service: ``serve``, ``actions list|replay|effect``,
``keys create|revoke|list`` (registered on the ``keymoments`` group by
:func:`register`). The store has one writer at a time: while ``keymoments serve``
runs, manage keys and replays through its API (``/v1/keys``, ``/v1/actions/replay``).
"""

from __future__ import annotations

import click

from ..options import limit_option, sql_limit
from ..results import json_text

__all__ = ["register"]


def register(main: click.Group) -> None:
    """Add the live commands to ``main``."""
    from ..cli import _print_result, _workspace, console

    @main.command()
    @click.option("--host", help="Address to listen on (default: service.host).")
    @click.option("--port", type=int, help="Port (default: service.port).")
    @click.option("--log-level", default="warning", show_default=True,
                  type=click.Choice(["critical", "error", "warning", "info", "debug"]))
    @click.pass_context
    def serve(ctx: click.Context, host: str | None, port: int | None, log_level: str) -> None:
        """Run the REST service on the workspace (needs keymoments[serve])."""
        from .service import serve as run

        run(ctx.obj["workspace"], host, port, log_level)

    @main.group()
    def actions() -> None:
        """Actions decided by the rules: list, replay, effect."""

    @actions.command("list")
    @click.option("--status", help="pending, delivered, failed, held_out or suppressed.")
    @click.option("--rule", help="Only this rule.")
    @click.option("--person", help="Only this person's (id or any identifier).")
    @limit_option(50)
    @click.option("--json", "as_json", is_flag=True, help="JSON lines output.")
    @click.pass_context
    def actions_list(ctx, status, rule, person, limit, as_json) -> None:
        """List actions in the outbox with their delivery state."""
        from .outbox import list_actions

        with _workspace(ctx, read_only=True) as ws:
            r = list_actions(ws, status=status, rule=rule, person=person,
                             limit=sql_limit(limit))
        if as_json:
            for row in r.to_pylist()[: limit or None]:
                click.echo(json_text(row))
            return
        console.print("actions: " + ", ".join(f"{k} {v}" for k, v in r.meta["counts"].items()))
        _print_result(r, ["action_id", "rule", "kind", "person_id", "language", "status",
                          "attempts", "reason"], limit=limit, counted=False)

    @actions.command("replay")
    @click.argument("action_ids", nargs=-1)
    @click.option("--failed", is_flag=True, help="Replay every failed action.")
    @click.pass_context
    def actions_replay(ctx, action_ids, failed) -> None:
        """Queue actions for delivery again (by id, or --failed); the next
        'keymoments serve' delivers them with their original idempotency key."""
        from .outbox import replay

        with _workspace(ctx) as ws:
            n = replay(ws, list(action_ids) or None, status="failed" if failed else None)
        console.print(f"{n} action(s) queued for delivery again")

    @actions.command("effect")
    @click.option("--outcome", default="churned", show_default=True,
                  type=click.Choice(["churned", "repurchased", "feedback"]))
    @click.pass_context
    def actions_effect(ctx, outcome) -> None:
        """Per rule: outcome of treated versus held-out persons (each counted once, in
        the arm of the rule's first decision on them), with 95% intervals."""
        from .effect import action_effect

        with _workspace(ctx, read_only=True) as ws:
            r = action_effect(ws, outcome)
        _print_result(r, shown={c: (lambda v: "" if v is None else f"{v:.3f}")
                               for c in ("treated_rate", "treated_low", "treated_high",
                                         "holdout_rate", "holdout_low", "holdout_high",
                                         "difference", "diff_low", "diff_high")})
        if len(r) and r.meta["hint"]:
            console.print(r.meta["hint"], markup=False)

    @main.group()
    def keys() -> None:
        """API keys of the service: create, revoke, list."""

    @keys.command("create")
    @click.argument("name")
    @click.option("--scope", "scopes", multiple=True, default=("read",), show_default=True,
                  type=click.Choice(["read", "write", "admin"]), help="Repeat for several.")
    @click.pass_context
    def keys_create(ctx, name, scopes) -> None:
        """Create an API key; its token is printed once."""
        from .auth import create_key

        with _workspace(ctx) as ws:
            key = create_key(ws, name, list(scopes))
        console.print(f"key {key.key_id} ({', '.join(key.scopes)}); keep this token, it is not "
                      "shown again:")
        click.echo(key.token)

    @keys.command("revoke")
    @click.argument("key_id")
    @click.pass_context
    def keys_revoke(ctx, key_id) -> None:
        """Revoke an API key by its id."""
        from .auth import revoke_key

        with _workspace(ctx) as ws:
            revoke_key(ws, key_id)
        console.print(f"revoked {key_id}")

    @keys.command("list")
    @click.pass_context
    def keys_list(ctx) -> None:
        """List API keys (ids, names, scopes; never secrets)."""
        from ..results import Result
        from .auth import list_keys

        import pyarrow as pa

        with _workspace(ctx, read_only=True) as ws:
            found = list_keys(ws)
        _print_result(Result(pa.Table.from_pylist(found)) if found else Result(pa.table({})))
