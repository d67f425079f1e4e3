"""How values read for a person: durations in days, hours and minutes, and text
from the data made safe to print on a terminal.

Tables and JSON keep seconds (``duration_s``); the CLI and labels show them this
way.
"""

from __future__ import annotations

import math
import re

__all__ = ["duration", "printable"]

# C0 controls but tab and new line, DEL, C1 controls, and the bidirectional
# overrides and isolates (text that reads differently than it is stored)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    r"""``text`` with the characters a terminal would act on (escape sequences that
    clear the screen, change colours or title, or hide a link) written out as
    ``\xNN`` / ``\uNNNN``; tabs and new lines stay.

    >>> print(printable("ok\x1b[2Jgone and\nnext \u202eevil"))
    ok\x1b[2Jgone and
    next \u202eevil
    """
    return _CONTROL.sub(lambda m: (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                   else f"\\u{ord(m.group()):04x}"), text)


_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration(seconds: float | None) -> str:
    """``seconds`` in its largest unit and the next one (left out when zero), cut to
    whole units.

    >>> [duration(s) for s in (0, 45.4, 750, 3 * 3600 + 300, 2 * 86400 + 4 * 3600 + 59)]
    ['0s', '45s', '12m 30s', '3h 5m', '2d 4h']
    >>> duration(86400), duration(3605), duration(None), duration(float("nan")), duration(-90)
    ('1d', '1h', '-', '-', '-1m 30s')
    >>> duration(float("inf"))
    '-'
    """
    if seconds is None or not math.isfinite(seconds):
        return "-"
    sign, left = ("-" if seconds < 0 else ""), round(abs(seconds))
    for i, (unit, size) in enumerate(_UNITS):
        if left >= size or unit == "s":
            text = f"{left // size}{unit}"
            if unit != "s":  # and the next unit, when it is not zero
                small, small_size = _UNITS[i + 1]
                rest = left % size // small_size
                text += f" {rest}{small}" if rest else ""
            return sign + text
    raise AssertionError("unreachable")
