"""Where a path leaves the designed journey: a small automaton over the steps.

Walking the path in order, an activity either is the current step again (when it
is repeatable), or a later step with only optional steps in between (the path moves
on), or ignored (``ignore``). Anything else is the first **deviation**, of one kind:

* ``skipped``: a later step, with required steps in between left out;
* ``loop_back``: an earlier step again (back to consideration after checkout);
* ``detour``: an activity that is no step at all;

and a path that ends before the last required step is ``incomplete``. A path with
none of these conforms. The check runs once per distinct variant (a few thousand
at most), never per journey, so it costs nothing next to counting the variants.

>>> from keymoments.config.paths import DesignedJourney
>>> d = DesignedJourney(name="t", steps=["a", "b*", "c", "d?", "e"])
>>> check(d, ["a", "b", "b", "c", "e"]).kind
'conforms'
>>> v = check(d, ["a", "c", "b", "c", "e"]); v.kind, v.position, v.activity, v.after, v.expected
('loop_back', 2, 'b', 'c', 'e')
>>> check(d, ["a", "e"]).kind, check(d, ["a", "e"]).expected
('skipped', 'c')
>>> check(d, ["a", "x"]).kind, check(d, ["a", "c"]).kind
('detour', 'incomplete')
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.paths import DesignedJourney

__all__ = ["Verdict", "check", "KINDS", "START"]

KINDS = ("conforms", "skipped", "loop_back", "detour", "incomplete")
#: ``after`` of a deviation before the first step was reached.
START = "(start)"


@dataclass(frozen=True)
class Verdict:
    """How one path compares with the design: ``kind`` (see :data:`KINDS`); for a
    deviation, its ``position`` in the path (0-based; the path's length when
    incomplete), the ``activity`` there, the step reached before it (``after``) and
    the next required step the design expected (``expected``)."""

    kind: str
    position: int | None = None
    activity: str | None = None
    after: str | None = None
    expected: str | None = None
    steps_reached: int = 0


def check(design: DesignedJourney, path: list[str], ignored: set[str] | None = None) -> Verdict:
    """The verdict on ``path`` (labels in journey order); ``ignored`` labels (and the
    design's ``ignore``) are skipped over."""
    steps = design.steps
    skip = set(design.ignore) | (ignored or set())
    n = len(steps)
    state = -1  # index of the last step reached

    def after() -> str:
        return steps[state].name if state >= 0 else START

    def expected(from_: int) -> str | None:
        return next((steps[k].name for k in range(from_, n) if not steps[k].optional), None)

    for i, a in enumerate(path):
        if a in skip:
            continue
        if state >= 0 and steps[state].repeatable and a in steps[state].events:
            continue
        j = state + 1
        while j < n and a not in steps[j].events and steps[j].optional:
            j += 1
        if j < n and a in steps[j].events:
            state = j
            continue
        later = [k for k in range(state + 1, n) if a in steps[k].events]
        earlier = [k for k in range(0, state + 1) if a in steps[k].events]
        if later:
            kind = "skipped"
        elif earlier:
            kind = "loop_back"
        else:
            kind = "detour"
        return Verdict(kind, i, a, after(), expected(state + 1), state + 1)
    missing = expected(state + 1)
    if missing is not None:
        return Verdict("incomplete", len(path), None, after(), missing, state + 1)
    return Verdict("conforms", steps_reached=state + 1)
