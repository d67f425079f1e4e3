"""One person's profile: identifiers, the links that joined them (with the event
that joined each pair), and their timeline across channels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..results import Result

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["PersonProfile", "person_profile"]


@dataclass(frozen=True)
class PersonProfile:
    """A stitched person: ``identifiers``, ``links`` (why) and ``timeline`` (events)."""

    person_id: str
    identifiers: Result
    links: Result
    timeline: Result

    def explain(self) -> list[str]:
        """Sentences saying why each pair of identifiers belongs to this person."""
        return [
            f"{r['a']} and {r['b']} appeared together on {r['event_type']} "
            f"({r['source']}, {r['ts']:%Y-%m-%d %H:%M} UTC, event {r['event_id'][:12]})"
            for r in self.links.to_pylist()
        ]


def person_profile(ws: Workspace, key: str) -> PersonProfile:
    """The profile of the person with id or identifier ``key``."""
    pid = ws.resolve_person(key)
    con = ws.con
    ids = con.execute(
        "SELECT identifier, kind, value, first_seen FROM identifiers WHERE person_id = ? "
        "ORDER BY identifier", [pid]).to_arrow_table()
    links = con.execute("""
        SELECT l.a, l.b, l.event_id, l.source, l.ts, e.event_type
        FROM identity_links l JOIN identifiers i ON i.identifier = l.a
        LEFT JOIN events e ON e.event_id = l.event_id
        WHERE i.person_id = ? ORDER BY l.ts, l.a, l.b""", [pid]).to_arrow_table()
    timeline = ws.events(person=pid)
    return PersonProfile(pid, Result(ids, {"person_id": pid}), Result(links, {"person_id": pid}),
                         timeline)
