"""Personal data in free text is removed before it is stored, the load still adds up,
and loading the same file again finds every row a duplicate (ids come from the raw row).
The expected stored texts are written by hand."""

from __future__ import annotations

CONFIG = """
sources:
  notes:
    path: notes.csv
    identifiers: {{customer_id: id}}
    event_type: {{value: comment}}
    ts: when
    text: note
    {extra}
"""

CSV = (
    "id,when,note\n"
    "1,2024-01-01 10:00:00,mail me at ana.silva@gmail.com please\n"
    '2,2024-01-02 10:00:00,"ligue (11) 98765-4321, pedido 2 itens"\n'
    "3,2024-01-03 10:00:00,card 4111 1111 1111 1111 was charged twice\n"
    "4,2024-01-04 10:00:00,chegou atrasado\n"
    "5,2024-01-05 10:00:00,mail me at ana.silva@gmail.com please\n"
    "6,2024-01-06 10:00:00,\n"
)

REDACTED = {
    "1": "mail me at [email] please",
    "2": "ligue [phone], pedido 2 itens",
    "3": "card [card] was charged twice",
    "4": "chegou atrasado",
    "5": "mail me at [email] please",
    "6": None,
}


def stored(ws) -> dict[str, str | None]:
    rows = ws.con.execute(
        "SELECT identifiers['customer_id'], text FROM events").fetchall()
    return {ids[0] if isinstance(ids, list) else ids: text for ids, text in rows}


def test_text_is_redacted_before_it_is_stored(make_workspace):
    ws = make_workspace(CONFIG.format(extra=""), {"notes.csv": CSV})
    first = ws.ingest("notes")
    assert (first.rows_read, first.rows_loaded, first.rows_quarantined) == (6, 6, 0)
    assert stored(ws) == REDACTED
    again = ws.ingest("notes")
    assert (again.rows_loaded, again.rows_duplicate) == (0, 6)
    assert ws.con.execute("SELECT count(*) FROM events").fetchone()[0] == 6
    everything = " ".join(t for t in stored(ws).values() if t)
    for secret in ("ana.silva", "98765", "4111"):
        assert secret not in everything


def test_redaction_can_be_turned_off(make_workspace):
    ws = make_workspace(CONFIG.format(extra="redact_text: false"), {"notes.csv": CSV})
    ws.ingest("notes")
    assert stored(ws)["1"] == "mail me at ana.silva@gmail.com please"
    assert stored(ws)["3"] == "card 4111 1111 1111 1111 was charged twice"


def test_build_reports_text_scoring_progress_and_scores_redacted_text(make_workspace):
    ws = make_workspace(CONFIG.format(extra=""), {"notes.csv": CSV})
    ws.ingest("notes")
    calls = []
    report = ws.build(progress=lambda done, total: calls.append((done, total)))
    distinct = {t for t in REDACTED.values() if t}  # 4: rows 1 and 5 say the same
    assert report.texts_scored == len(distinct) == 4
    assert calls and calls[-1] == (4, 4)
    assert all(done <= total for done, total in calls)
    assert ws.con.execute("SELECT count(*) FROM text_scores").fetchone()[0] == 4
    reasons = " ".join(r or "" for (r,) in ws.con.execute(
        "SELECT valence_reason FROM journey_events").fetchall())
    assert "ana.silva" not in reasons and "4111" not in reasons
