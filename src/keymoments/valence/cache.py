"""Score every distinct event text once and keep the scores by text hash.

The text of each event is hashed (md5 of its UTF-8 bytes, as the engine's
``hexdigest('md5')``); texts whose hash has no score from the current scorer
are scored in batches and added to ``text_scores``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..sql import ident, literal
from .text import TextScorer

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["update_text_scores", "text_hash"]

BATCH = 5000


def text_hash(text: str) -> str:
    """The hash texts are cached under.

    >>> text_hash("obrigado")
    'f5491d72610965dd0a287c1ab1025c0f'
    """
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def update_text_scores(ws: Workspace, scorer: TextScorer,
                       progress: Callable[[int, int], None] | None = None,
                       events: str = "events") -> int:
    """Score the texts not yet scored by ``scorer``; returns how many were scored.

    Scores are written after each batch (``scorer.progress_batch`` texts, else
    5,000), so an interrupted run resumes where it stopped, and ``progress(done,
    total)`` is called after each. ``events``: the table whose texts are scored (the
    live service passes the few events it updates)."""
    con = ws.con
    todo = con.execute(f"""
        SELECT md5(text) AS h, any_value(text) AS text, any_value(language) AS language
        FROM {ident(events)} e WHERE text IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM text_scores s WHERE s.text_hash = md5(e.text)
                          AND s.scorer = {literal(scorer.name)})
        GROUP BY 1 ORDER BY 1
    """).to_arrow_table().to_pylist()
    name = literal(scorer.name)
    batch = int(getattr(scorer, "progress_batch", BATCH))  # slow scorers report more often
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        scores = scorer.score([r["text"] for r in chunk], [r["language"] for r in chunk])
        # written out, not bound or registered: either makes DuckDB or pyarrow import
        # pandas (~0.8 s), which a build needs nowhere else
        rows = ", ".join(f"({literal(r['h'])}, {name}, {_number(v)}, {_number(c)}, now())"
                         for r, (v, c) in zip(chunk, scores))
        con.execute(f"INSERT INTO text_scores VALUES {rows}")
        if progress:
            progress(min(start + batch, len(todo)), len(todo))
    return len(todo)


def _number(value) -> str:
    """A score as a SQL literal; a scorer's NaN or infinity is no score (NULL)."""
    value = float(value)
    return literal(value) if math.isfinite(value) else "NULL"
