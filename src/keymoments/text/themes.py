"""Themes across languages: automatic clusters named by their top terms, beside
a taxonomy the user pins in config.

Automatic themes cluster the texts (k-means, k chosen by silhouette unless
given) on multilingual sentence embeddings when an encoder is given, so "chegou
atrasado" and "arrived late" share a theme; without one, on TF-IDF of the
texts' terms (themes then follow words, within a language). Each theme is named
by its most distinctive terms (class-based TF-IDF) in each of its languages, in
the original language: ``pt: atraso, prazo, entrega | en: late, delivery``.

Pinned themes match keywords per language (``{"delivery": {"pt": ["atras"],
"en": ["late"]}}``, or a plain list for every language); a keyword matches a
word that starts with it, or any substring for Chinese and Japanese.

>>> texts = ["entrega atrasada", "chegou atrasado, entrega demorou", "late delivery again",
...          "produto quebrado", "veio quebrado e com defeito", "broken product"]
>>> pinned = {"delivery": {"pt": ["atras", "demor"], "en": ["late"]}, "quality": ["quebr", "broken"]}
>>> [t for t in pinned_themes(texts, ["pt", "pt", "en", "pt", "pt", "en"], pinned)]
['delivery', 'delivery', 'delivery', 'quality', 'quality', 'quality']
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..results import Result
from .redact import redact
from .terms import terms

__all__ = ["ThemeSet", "find_themes", "pinned_themes", "Taxonomy"]

#: theme name -> keywords, per language or for all languages
Taxonomy = Mapping[str, "Mapping[str, Sequence[str]] | Sequence[str]"]


@dataclass
class ThemeSet:
    """``themes``: one row per automatic theme (``theme_id``, ``label``, ``terms``,
    ``n``, ``share``, ``languages``, ``example``); ``assignments``: one row per
    text (``text_id``, ``language``, ``theme_id``, ``label``, ``pinned_theme``)."""

    themes: Result
    assignments: Result


def pinned_themes(texts: Sequence[str | None], languages: Sequence[str | None],
                  taxonomy: Taxonomy) -> list[str | None]:
    """The first pinned theme whose keywords the text contains, else None."""
    out: list[str | None] = []
    compiled = []
    for name, spec in taxonomy.items():
        if isinstance(spec, Mapping):
            compiled.append((name, {k: [w.lower() for w in v] for k, v in spec.items()}, None))
        else:
            compiled.append((name, None, [w.lower() for w in spec]))
    for text, lang in zip(texts, languages):
        found = None
        if text:
            low = text.lower()
            words = low.split()
            for name, per_lang, every in compiled:
                keys = every if every is not None else (
                    per_lang.get(lang or "", []) if lang else sum(per_lang.values(), []))
                if any(_match(k, low, words) for k in keys):
                    found = name
                    break
        out.append(found)
    return out


def _match(key: str, low: str, words: list[str]) -> bool:
    if any("\u3040" <= ch <= "\u9fff" for ch in key) or " " in key:
        return key in low
    return any(w.strip(".,;:!?()\"'").startswith(key) for w in words)


def _vectors(texts: list[str], languages: list[str | None], embedder) -> np.ndarray:
    if embedder is not None:
        # sentence embeddings share a common direction; centring them lets k-means
        # see what differs between texts rather than what they all have
        Z = np.asarray(embedder.embed(texts), np.float64)
        Z = Z - Z.mean(axis=0) if len(Z) > 2 else Z
        norm = np.linalg.norm(Z, axis=1, keepdims=True)
        return Z / np.where(norm == 0, 1, norm)
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = [terms(t, lang) for t, lang in zip(texts, languages)]
    X = TfidfVectorizer(analyzer=lambda d: d, min_df=2 if len(docs) > 500 else 1,
                        sublinear_tf=True).fit_transform(docs)
    dims = max(2, min(100, X.shape[1] - 1, X.shape[0] - 1))
    Z = TruncatedSVD(dims, random_state=0).fit_transform(X)
    norm = np.linalg.norm(Z, axis=1, keepdims=True)
    return Z / np.where(norm == 0, 1, norm)


def _cluster(Z: np.ndarray, k: int | None, k_range: tuple[int, int], seed: int,
             weight: np.ndarray | None = None) -> np.ndarray:
    """k-means labels of the rows of ``Z`` (distinct texts, weighted by count)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    if len(Z) < 3:  # too few distinct texts to compare groupings: one theme
        return np.zeros(len(Z), dtype=int)
    if k is not None:
        return KMeans(min(k, len(Z)), n_init=10, random_state=seed).fit_predict(Z, sample_weight=weight)
    best, best_s = None, -2.0
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(Z), min(len(Z), 2000), replace=False)
    for kk in range(min(k_range[0], len(Z) - 1), min(k_range[1], len(Z) - 1) + 1):
        lab = KMeans(kk, n_init=5, random_state=seed).fit_predict(Z, sample_weight=weight)
        s = silhouette_score(Z[sample], lab[sample]) if len(set(lab[sample])) > 1 else -1
        if s > best_s:
            best, best_s = lab, s
    assert best is not None
    return best


def _names(docs: list[list[str]], languages: list[str | None], labels: np.ndarray,
           top: int) -> dict[int, tuple[str, str, str]]:
    """(label, per-language terms, languages) per cluster by class-based TF-IDF."""
    clusters = sorted(set(labels.tolist()))
    per_cluster = {c: Counter() for c in clusters}
    per_lang = {c: {} for c in clusters}
    for d, lang, c in zip(docs, languages, labels.tolist()):
        per_cluster[c].update(set(d))
        per_lang[c].setdefault(lang or "?", Counter()).update(set(d))
    total = Counter()
    for cnt in per_cluster.values():
        total.update(cnt)
    n_docs = max(1, len(docs))
    out = {}
    for c in clusters:
        sizes = Counter(lang or "?" for lang, cc in zip(languages, labels.tolist()) if cc == c)
        n = sum(sizes.values())
        parts, first = [], None
        for lang, m in sizes.most_common():
            if m < max(2, 0.1 * n):
                continue
            cnt = per_lang[c][lang]
            # how much more often the term is in this theme than overall, weighted by
            # how often it is in the theme: p(t|c) log(p(t|c) / p(t))
            score = {t: f / m * math.log((f / m) / (total[t] / n_docs))
                     for t, f in cnt.items() if f >= 2}
            best = [t for t, _ in sorted(score.items(), key=lambda x: (-x[1], x[0]))[:top]]
            if best:
                parts.append(f"{lang}: {', '.join(best)}")
                first = first or ", ".join(best[:3])
        langs = ", ".join(f"{lang} {m}" for lang, m in sizes.most_common())
        out[c] = (first or f"theme {c}", " | ".join(parts), langs)
    return out


def find_themes(texts: Sequence[str], languages: Sequence[str | None] | None = None,
                ids: Sequence[str] | None = None, *, embedder=None, k: int | None = None,
                k_range: tuple[int, int] = (5, 12), taxonomy: Taxonomy | None = None,
                top_terms: int = 5, seed: int = 0) -> ThemeSet:
    """Cluster ``texts`` into themes (see the module doc). Texts are redacted first.

    >>> texts = ["entrega atrasada de novo", "entrega atrasou muito", "atrasada a entrega",
    ...          "produto quebrado veio", "veio quebrado o produto", "quebrado produto"] * 3
    >>> ts = find_themes(texts, ["pt"] * 18, k=2)
    >>> sorted(r["label"] for r in ts.themes.to_pylist())
    ['entrega, atrasada, atrasou', 'produto, quebrado, veio']
    """
    texts = [redact(t) or "" for t in texts]
    languages = list(languages) if languages is not None else [None] * len(texts)
    ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
    # each distinct (text, language) is embedded and clustered once, weighted by count
    keys = list(zip(texts, languages))
    first: dict[tuple[str, str | None], int] = {}
    for key in keys:
        first.setdefault(key, len(first))
    uniq = list(first)
    weight = np.bincount([first[key] for key in keys], minlength=len(uniq)).astype(float)
    Zu = _vectors([t for t, _ in uniq], [lang for _, lang in uniq], embedder)
    labels_u = _cluster(Zu, k, k_range, seed, weight)
    index = np.array([first[key] for key in keys])
    Z, labels = Zu[index], labels_u[index]
    docs = [terms(t, lang) for t, lang in zip(texts, languages)]
    names = _names(docs, languages, labels, top_terms)
    pinned = pinned_themes(texts, languages, taxonomy) if taxonomy else [None] * len(texts)
    counts = Counter(labels.tolist())
    rows = []
    for c in sorted(counts, key=lambda c: (-counts[c], c)):
        members = np.flatnonzero(labels == c)
        centre = Z[members].mean(axis=0)
        example = texts[int(members[np.argmax(Z[members] @ centre)])]
        label, per_lang, langs = names[c]
        rows.append({"theme_id": int(c), "label": label, "terms": per_lang, "n": int(counts[c]),
                     "share": counts[c] / len(texts), "languages": langs, "example": example[:200]})
    themes = Result(pa.Table.from_pylist(rows), {
        "method": ("k-means on multilingual sentence embeddings" if embedder is not None
                   else "k-means on TF-IDF of terms (LSA)") + ", named by class-based TF-IDF",
        "k": len(counts), "n_texts": len(texts), "seed": seed})
    assignments = Result(pa.table({
        "text_id": pa.array(ids, pa.string()), "language": pa.array(languages, pa.string()),
        "theme_id": pa.array(labels.tolist(), pa.int64()),
        "label": pa.array([names[c][0] for c in labels.tolist()], pa.string()),
        "pinned_theme": pa.array(pinned, pa.string())}),
        {"n_pinned": sum(p is not None for p in pinned)})
    return ThemeSet(themes, assignments)
