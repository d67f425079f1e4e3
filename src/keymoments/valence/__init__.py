"""Valence: every event's experience score in [-1, 1] and the reason for it."""

from .feedback import rating_valence
from .text import LexiconScorer, TextScorer
from .score import score_events

__all__ = ["rating_valence", "LexiconScorer", "TextScorer", "score_events"]
