"""The text analyses over a built workspace: languages, themes attached to
valley moments, language service quality and rating/text disagreements.

Each reads the workspace tables through Ibis (``events``, ``journey_events``,
``moments``), runs the per-text models in Python on the distinct texts, and
returns typed results. Texts are redacted before any model or result sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from ..engine import backend
from ..results import Result
from .disagreement import disagreements
from .language import DEFAULT_LANGUAGES, LanguageDetector, preferred_languages
from .quality import LanguageQuality, language_service_quality
from .themes import ThemeSet, find_themes

if TYPE_CHECKING:
    from ..store.workspace import Workspace

__all__ = ["feedback_texts", "person_languages", "language_quality", "feedback_themes",
           "FeedbackThemes", "rating_text_disagreements"]

#: below this detection confidence a text takes its event's language, when it has one
MIN_CONFIDENCE = 0.5


def _detector(ws: Workspace) -> LanguageDetector:
    return LanguageDetector(ws.config.text.languages or DEFAULT_LANGUAGES)


def feedback_texts(ws: Workspace) -> pa.Table:
    """Events with their journey, valence, explicit preferred language and text."""
    b = backend(ws)
    e, je = b.table("events"), b.table("journey_events")
    j = e.left_join(je.select(je.event_id, _jid=je.journey_id, _v=je.valence, _vt=je.v_text),
                    e.event_id == je.event_id)
    return j.select(event_id=j.event_id, person_id=j.person_id, ts=j.ts, text=j.text,
                    language=j.language, rating=j.rating, rating_scale=j.rating_scale,
                    journey_id=j._jid, valence=j._v, v_text=j._vt,
                    preferred_language=j.attributes.get("preferred_language")).to_pyarrow()


def person_languages(ws: Workspace) -> Result:
    """Each person's preferred language (explicit attribute, else most written)."""
    return preferred_languages(feedback_texts(ws), _detector(ws))


def language_quality(ws: Workspace) -> LanguageQuality:
    """CSAT, NPS and valence by the customer's language; contacts served in another
    language and the effect on journey valence."""
    rows = feedback_texts(ws)
    pref = person_languages(ws).data
    lookup = dict(zip(pref.column("person_id").to_pylist(),
                      pref.column("preferred_language").to_pylist()))
    people = rows.column("person_id").to_pylist()
    rows = rows.set_column(rows.column_names.index("preferred_language"), "preferred_language",
                           pa.array([lookup.get(p) for p in people], pa.string()))
    return language_service_quality(rows)


@dataclass
class FeedbackThemes:
    """``themes``/``assignments`` as :class:`~keymoments.text.themes.ThemeSet`;
    ``valleys``: per theme (automatic and pinned), the mean valence of its texts'
    events (praise and complaint read apart: a theme of "prazo" catches "antes do
    prazo" too), how many valley moments carry a text of that theme, their mean
    valence and the theme's lift among valleys (share of valley texts / share of all
    texts)."""

    themes: Result
    assignments: Result
    valleys: Result


def feedback_themes(ws: Workspace, embedder=None, k: int | None = None) -> FeedbackThemes:
    """Themes of the workspace's texts (one per distinct event text), the pinned
    taxonomy of ``text.themes`` beside them, attached to valley moments."""
    rows = feedback_texts(ws)
    rows = rows.filter(pc.invert(pc.is_null(rows.column("text"))))
    texts = rows.column("text").to_pylist()
    # the detected language; when detection is unsure (a word or two: 'Top', 'otimo'),
    # the event's own language if it has one (which may be the contact's, not the
    # text's: a confident detection wins)
    given = rows.column("language").to_pylist()
    langs = [lang if conf >= MIN_CONFIDENCE or not g else g
             for (lang, conf), g in zip(_detector(ws).detect(texts), given)]
    ts: ThemeSet = find_themes(texts, langs, rows.column("event_id").to_pylist(),
                               embedder=embedder, k=k or ws.config.text.n_themes,
                               taxonomy=ws.config.text.themes or None)
    b = backend(ws)
    m = b.table("moments")
    valley_ids = set(m.filter(m.kind == "valley").select("event_id").to_pyarrow()
                     .column("event_id").to_pylist())
    valence = dict(zip(rows.column("event_id").to_pylist(), rows.column("valence").to_pylist()))
    a = ts.assignments.data.to_pylist()
    n_all, n_val = len(a), sum(r["text_id"] in valley_ids for r in a)
    out = []
    for kind, key in (("automatic", "label"), ("pinned", "pinned_theme")):
        names = sorted({r[key] for r in a if r[key] is not None})
        for name in names:
            members = [r for r in a if r[key] == name]
            in_valleys = [r for r in members if r["text_id"] in valley_ids]
            vals = [valence[r["text_id"]] for r in in_valleys if valence[r["text_id"]] is not None]
            every = [valence[r["text_id"]] for r in members if valence[r["text_id"]] is not None]
            share_all = len(members) / n_all if n_all else 0.0
            share_val = len(in_valleys) / n_val if n_val else 0.0
            out.append({"theme": name, "kind": kind, "texts": len(members),
                        "mean_valence": sum(every) / len(every) if every else None,
                        "valleys": len(in_valleys),
                        "valley_valence": sum(vals) / len(vals) if vals else None,
                        "lift": share_val / share_all if share_all and n_val else None})
    out.sort(key=lambda r: (-r["valleys"], r["kind"], r["theme"]))
    valleys = Result(pa.Table.from_pylist(out, schema=pa.schema([
        ("theme", pa.string()), ("kind", pa.string()), ("texts", pa.int64()),
        ("mean_valence", pa.float64()), ("valleys", pa.int64()), ("valley_valence", pa.float64()), ("lift", pa.float64())])),
        {"n_texts": n_all, "n_valley_texts": n_val,
         "hint": None if n_val or not n_all else (
             "no valley moment has a text (the valleys are events without one, such as "
             "deliveries, and a review is the journey's feedback, not a moment): the themes "
             "above are over every text; 'keymoments root-causes' ranks them against the "
             "feedback"),
         "method": "valley moments whose event text falls in the theme; lift = share among "
                   "valley texts / share among all texts"})
    return FeedbackThemes(ts.themes, ts.assignments, valleys)


def rating_text_disagreements(ws: Workspace, min_strength: float = 0.3) -> Result:
    """Events whose rating and text disagree (see :mod:`keymoments.text.disagreement`)."""
    je = backend(ws).table("journey_events")
    return disagreements(je.select("event_id", "journey_id", "person_id", "ts", "v_feedback",
                                   "v_text", "valence_reason"), min_strength)

