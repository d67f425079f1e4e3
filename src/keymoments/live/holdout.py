"""Deterministic holdout: who gets no action, so the action's effect can be measured.

A person is held out of a rule when the hash of the rule name and the person id,
read as a number in [0, 1), falls below the rule's share. The draw needs no state,
is the same on every run and machine, and is independent across rules.

>>> holdout_draw("recover_valley", "p-1") == holdout_draw("recover_valley", "p-1")
True
>>> 0 <= holdout_draw("recover_valley", "p-1") < 1
True
>>> sum(is_held_out("r", f"p-{i}", 0.1) for i in range(10000))
965
"""

from __future__ import annotations

import hashlib

__all__ = ["holdout_draw", "is_held_out"]


def holdout_draw(rule: str, person_id: str) -> float:
    """A uniform number in [0, 1) fixed by the rule and the person."""
    digest = hashlib.sha256(f"holdout\x1f{rule}\x1f{person_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_held_out(rule: str, person_id: str, share: float) -> bool:
    """Whether the person is in the rule's holdout of ``share``."""
    return holdout_draw(rule, person_id) < share
