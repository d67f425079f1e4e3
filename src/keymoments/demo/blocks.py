"""Column blocks (a dict of equal-length numpy arrays) and the few array tricks the
simulation is built from.

>>> owner, slot, pos = expand(np.array([[1, 2], [0, 1]]))
>>> owner.tolist(), slot.tolist(), pos.tolist()
([0, 0, 0, 1], [0, 1, 1, 1], [0, 1, 2, 0])
>>> within(np.array([3, 1]), np.array([0, 5, 7, 0])).tolist()
[0, 5, 12, 0]
"""

from __future__ import annotations

import numpy as np

__all__ = ["Block", "cat", "take", "within", "expand", "renumber"]

#: A table as columns: name -> numpy array, all of one length.
Block = dict[str, np.ndarray]


def cat(blocks: list[Block]) -> Block:
    """Stack blocks with the same columns."""
    if not blocks:
        return {}
    if len(blocks) == 1:
        return dict(blocks[0])
    return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}


def take(block: Block, rows: np.ndarray) -> Block:
    """The rows ``rows`` (a mask or indices) of every column."""
    return {k: v[rows] for k, v in block.items()}


def within(counts: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Offset of each item from its group's first item, given the gap before each item
    (groups are consecutive runs of ``counts`` items, each at least one long)."""
    cs = np.cumsum(gaps)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    return cs - cs[first]


def expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items from an (owners, slots) count matrix, owner by owner and slot by slot:
    each item's owner row, slot, and position within its owner."""
    n, slots = counts.shape
    per_owner = counts.sum(1)
    owner = np.repeat(np.arange(n), per_owner)
    slot = np.repeat(np.tile(np.arange(slots, dtype=np.int8), n), counts.ravel())
    pos = np.arange(len(owner)) - np.repeat(np.cumsum(per_owner) - per_owner, per_owner)
    return owner, slot, pos


def renumber(keep: np.ndarray) -> np.ndarray:
    """Old index -> new index among the kept rows (-1 for dropped ones)."""
    return np.where(keep, np.cumsum(keep) - 1, -1)
