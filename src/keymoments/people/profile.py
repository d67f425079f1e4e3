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
    """A stitched person: ``identifiers``, ``links`` (why) and ``timeline``: their
    events in time order, each with its journey (``journey_id``, ``journey_type``), its
    ``valence`` and ``valence_reason``, and ``moments``: the kinds of the journey
    moments at that event (``valley``, ``farewell``, ``purchase``...; the event's own
    ``moment`` column is the taxonomy's tag). Before a build these are empty."""

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
    timeline = con.execute("""
        SELECT e.*, j.journey_id, j.journey_type, j.valence, j.valence_reason,
               coalesce(m.moments, []) AS moments
        FROM events e
        LEFT JOIN journey_events j ON j.event_id = e.event_id AND j.person_id = e.person_id
        LEFT JOIN (SELECT event_id, list(kind ORDER BY kind) AS moments FROM moments
                   WHERE person_id = ? GROUP BY event_id) m ON m.event_id = e.event_id
        WHERE e.person_id = ? ORDER BY e.ts, e.event_id""", [pid, pid]).to_arrow_table()
    return PersonProfile(pid, Result(ids, {"person_id": pid}), Result(links, {"person_id": pid}),
                         Result(timeline, {"person": pid}))
