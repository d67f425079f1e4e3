"""Shared vocabulary and the strict base of every config model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["STAGES", "KEY_MOMENTS", "RATING_SCALES", "LANGUAGE_TAG", "Strict",
           "require_unique_names"]

#: Journey stages an event can belong to, in funnel order.
STAGES = (
    "awareness",
    "consideration",
    "purchase",
    "onboarding",
    "usage",
    "support",
    "feedback",
    "loyalty",
    "churn",
)

#: Business key moments an event can mark.
KEY_MOMENTS = (
    "first_interaction",
    "purchase",
    "support",
    "resolution",
    "post_purchase",
    "feedback",
    "repeat_purchase",
    "loyalty",
)

#: a language code as the events table keeps it: ISO 639 (``en``, ``pt``), optionally
#: with a region or script (``pt-BR``, ``zh_Hant``); anything else is quarantined, as it
#: would go into a webhook's ``Content-Language`` header
LANGUAGE_TAG = r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*"

#: Built-in rating scales: name -> (min, max).
RATING_SCALES: dict[str, tuple[float, float]] = {
    "csat5": (1, 5),
    "nps10": (0, 10),
    "ces7": (1, 7),
    "stars5": (1, 5),
}


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, not silently ignored; a
    number is finite (YAML's ``.nan`` and ``.inf`` are refused: they reached queries)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def require_unique_names(items, what: str):
    """``items`` unchanged if their ``name`` values are unique, else a ValueError naming
    the repeated ones (for list-of-named-models validators).

    >>> from types import SimpleNamespace as N
    >>> require_unique_names([N(name="a"), N(name="b"), N(name="a")], "rule")
    Traceback (most recent call last):
    ...
    ValueError: rule names must be unique: a
    """
    if items is not None:
        names = [item.name for item in items]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{what} names must be unique: {', '.join(dup)}")
    return items
