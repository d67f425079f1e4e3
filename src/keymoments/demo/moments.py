"""The planted peak-end model: each journey's first, peak (best), valley (worst) and
end valences, and the remembered score the demo's surveys are drawn from.

>>> key = np.array([0, 0, 0, 1])
>>> ts = np.array([10, 20, 30, 5])
>>> val = np.array([0.1, -0.8, 0.6, 0.3])
>>> m = journey_moments(key, ts, val)
>>> m.key.tolist(), m.first.tolist(), m.valley.tolist(), m.end.tolist(), m.valley_at.tolist()
([0, 1], [0.1, 0.3], [-0.8, 0.3], [0.6, 0.3], [1, 3])
>>> round(float(remembered(m, WEIGHTS)[0]), 3)
0.16
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WEIGHTS", "Moments", "journey_moments", "run_moments", "remembered", "to_scale"]

#: Planted weights of the remembered score: first impression, peak (best), valley (worst)
#: and end valences. They sum to more than 1: the score is clipped to [-1, 1].
WEIGHTS = {"first": 0.2, "peak": 0.4, "valley": 0.5, "end": 0.5}


@dataclass
class Moments:
    """Per journey: moment valences, where the valley is, the span and event count."""

    key: np.ndarray
    first: np.ndarray
    peak: np.ndarray
    valley: np.ndarray
    end: np.ndarray
    valley_at: np.ndarray  #: index (into the input arrays) of the worst event
    start_ts: np.ndarray
    end_ts: np.ndarray
    count: np.ndarray


def run_moments(starts: np.ndarray, ts: np.ndarray, valence: np.ndarray) -> Moments:
    """Moments of journeys stored as consecutive runs (starting at ``starts``) of events
    already in time order. The valley is the earliest event with the lowest valence."""
    n = len(ts)
    count = np.diff(np.r_[starts, n])
    ends = starts + count - 1
    valley = np.minimum.reduceat(valence, starts) if n else valence[:0]
    lowest = np.flatnonzero(valence == np.repeat(valley, count))
    group = np.repeat(np.arange(len(starts)), count)[lowest]
    valley_at = lowest[np.r_[True, group[1:] != group[:-1]]] if len(lowest) else lowest
    return Moments(
        key=np.arange(len(starts)),
        first=valence[starts],
        peak=np.maximum.reduceat(valence, starts) if n else valence[:0],
        valley=valley,
        end=valence[ends],
        valley_at=valley_at,
        start_ts=ts[starts],
        end_ts=ts[ends],
        count=count,
    )


def journey_moments(key: np.ndarray, ts: np.ndarray, valence: np.ndarray) -> Moments:
    """Moments of the journeys ``key`` (events with ``key < 0`` are ignored), events
    ordered by time, then by their position in the input."""
    idx = np.flatnonzero(key >= 0)
    k, t = key[idx], ts[idx]
    if len(idx) == 0:
        z = np.zeros(0, dtype=np.int64)
        return Moments(z, z * 1.0, z * 1.0, z * 1.0, z * 1.0, z, z, z, z)
    lo = int(t.min())
    span = int(t.max()) - lo + 1
    if int(k.max()) < (2**62) // span:  # one integer sort key: faster than lexsort
        order = idx[np.argsort(k * span + (t - lo), kind="stable")]
    else:  # pragma: no cover - needs a time span of centuries
        order = idx[np.lexsort((t, k))]
    ks = key[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    m = run_moments(starts, ts[order], valence[order])
    m.key = ks[starts]
    m.valley_at = order[m.valley_at]
    return m


def remembered(m: Moments, weights: dict[str, float]) -> np.ndarray:
    """The remembered score: the weighted sum of the four moments, clipped to [-1, 1]."""
    total = (
        weights["first"] * m.first
        + weights["peak"] * m.peak
        + weights["valley"] * m.valley
        + weights["end"] * m.end
    )
    return np.clip(total, -1.0, 1.0)


def to_scale(r: np.ndarray, low: int, high: int) -> np.ndarray:
    """A score in [-1, 1] on a ``low``..``high`` rating scale: ``low + rint((high-low)*(r+1)/2)``.

    >>> to_scale(np.array([-1.0, 0.0, 1.0]), 0, 10).tolist()
    [0, 5, 10]
    """
    return (low + np.rint((high - low) * (np.clip(r, -1, 1) + 1) / 2)).astype(np.int64)
