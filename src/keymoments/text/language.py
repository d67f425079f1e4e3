"""Language identification and each person's preferred language.

Texts are identified with the naive-Bayes model that ships inside ``py3langid``
(BSD-3-Clause; no download), restricted to a set of candidate languages: the
full 97-language set confuses short Portuguese with Galician and short Spanish
with Catalan, while a company knows which languages its customers write in.
Texts with fewer than three letters get no language, nor texts the model cannot
place (probability under :data:`MIN_PROBABILITY`: 'Bom' alone is equally likely in
every candidate language).

>>> d = LanguageDetector()
>>> [lang for lang, _ in d.detect(["Chegou antes do prazo, adorei", "Arrived late and broken",
...                                  "質問があります", "快递太慢了", "ok", "Bom"])]
['pt', 'en', 'ja', 'zh', None, None]

A person's preferred language is the explicit one when a source gives it
(``attributes['preferred_language']``, the latest wins), else the language they
write in most (ties go to the language of their latest text).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import pyarrow as pa

from ..results import Result

__all__ = ["LanguageDetector", "detect_languages", "preferred_languages", "DEFAULT_LANGUAGES"]

#: The candidate languages by default: the languages most customer feedback is
#: written in. Pass your own list to :class:`LanguageDetector` to widen it.
DEFAULT_LANGUAGES = ("en", "pt", "es", "fr", "de", "it", "nl", "ja", "zh", "ko", "ru", "pl",
                     "tr", "ar", "sv", "da", "no", "fi", "cs", "el", "he", "hi", "id", "vi", "th",
                     "uk", "ro", "hu")
#: below this probability a text gets no language (the model cannot tell)
MIN_PROBABILITY = 0.1
_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)
_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u4e00-\u9fff]")


@lru_cache(maxsize=4)
def _model(candidates: tuple[str, ...] | None) -> Any:
    """The py3langid model restricted to ``candidates``, loaded once per set."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    if candidates:
        model.set_languages(list(candidates))
    return model


class LanguageDetector:
    """Identifies the language of texts among ``candidates`` (ISO 639-1 codes)."""

    def __init__(self, candidates: Sequence[str] | None = DEFAULT_LANGUAGES) -> None:
        self.candidates = tuple(candidates) if candidates else None
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            self._model = _model(self.candidates)
        return self._model

    def detect(self, texts: Iterable[str | None]) -> list[tuple[str | None, float]]:
        """(language or None, probability) for each text."""
        model = self._load()
        out: list[tuple[str | None, float]] = []
        for text in texts:
            if not text or len(_LETTERS.findall(text)) < 3:
                out.append((None, 0.0))
                continue
            lang, prob = model.classify(text)
            # Japanese written mostly in kanji can read as Chinese: kana decide
            if lang == "zh" and _KANA.search(text) and (not self.candidates or "ja" in self.candidates):
                lang = "ja"
            elif lang == "ja" and _HAN.search(text) and not _KANA.search(text) and (
                    not self.candidates or "zh" in self.candidates):
                lang = "zh"
            # a near-uniform answer is no answer: 'Bom' alone scores 1/28 for every
            # candidate, and the first of them (Arabic) came out
            out.append((str(lang) if prob >= MIN_PROBABILITY else None, float(prob)))
        return out


_DEFAULT: LanguageDetector | None = None


def detect_languages(texts: Iterable[str | None],
                     candidates: Sequence[str] | None = None) -> list[str | None]:
    """The language of each text (a shared detector over the default candidates
    unless ``candidates`` is given).

    >>> detect_languages(["Das Paket kam kaputt an", "Le colis est arrivé cassé", None])
    ['de', 'fr', None]
    """
    global _DEFAULT
    if candidates is not None:
        detector = LanguageDetector(candidates)
    else:
        if _DEFAULT is None:
            _DEFAULT = LanguageDetector()
        detector = _DEFAULT
    return [lang for lang, _ in detector.detect(texts)]


def preferred_languages(rows: pa.Table, detector: LanguageDetector | None = None) -> Result:
    """Each person's preferred language from their events.

    ``rows`` has ``person_id``, ``ts`` and ``text``, and optionally
    ``preferred_language`` (an explicit value from a source, e.g. the events'
    ``attributes['preferred_language']``) and ``language`` (the language a source
    gives for the event: a text's declared language is taken as it is, and only the
    texts without one are identified, so a two-word review mapped as Portuguese does
    not count as Arabic). Returns ``person_id``,
    ``preferred_language``, ``basis`` ('explicit' or 'written'), ``n_texts`` and
    ``share`` (of their identified texts in that language).

    >>> import datetime as dt
    >>> t = [dt.datetime(2024, 1, d) for d in (1, 2, 3, 4)]
    >>> rows = pa.table({"person_id": ["a", "a", "b", "b"], "ts": t,
    ...     "text": ["obrigado pela ajuda", "muito obrigado, chegou", "thanks a lot", None],
    ...     "preferred_language": [None, None, None, "fr"]})
    >>> r = preferred_languages(rows)
    >>> [(x["person_id"], x["preferred_language"], x["basis"]) for x in r.to_pylist()]
    [('a', 'pt', 'written'), ('b', 'fr', 'explicit')]
    >>> short = pa.table({"person_id": ["c", "c"], "ts": t[:2], "text": ["Bom", "Recebi"]})
    >>> detect_languages(short.column("text").to_pylist())  # too short: none, or a wrong one
    [None, 'tr']
    >>> short = short.append_column("language", pa.array(["pt", "PT"]))
    >>> preferred_languages(short).to_pylist()[0]["preferred_language"]
    'pt'
    """
    detector = detector or LanguageDetector()
    data = rows.sort_by([("person_id", "ascending"), ("ts", "ascending")]).to_pylist()
    declared = [str(r["language"]).lower() if r.get("language") and r["text"] else None
                for r in data]
    found = iter(detector.detect([r["text"] for r, d in zip(data, declared) if d is None]))
    langs = [(d, 1.0) if d is not None else next(found) for d in declared]
    explicit: dict[str, str] = {}
    written: dict[str, list[str]] = {}
    for r, (lang, _) in zip(data, langs):
        p = r["person_id"]
        if p is None:
            continue
        written.setdefault(p, [])
        if r.get("preferred_language"):
            explicit[p] = str(r["preferred_language"]).lower()
        if lang:
            written[p].append(lang)
    out: dict[str, list[Any]] = {k: [] for k in
                                 ("person_id", "preferred_language", "basis", "n_texts", "share")}
    for p, seen in written.items():
        counts = Counter(seen)
        if p in explicit:
            lang, basis = explicit[p], "explicit"
        elif counts:
            top = max(counts.values())
            lang = next(x for x in reversed(seen) if counts[x] == top)
            basis = "written"
        else:
            continue
        out["person_id"].append(p)
        out["preferred_language"].append(lang)
        out["basis"].append(basis)
        out["n_texts"].append(len(seen))
        out["share"].append(counts[lang] / len(seen) if seen else None)
    table = pa.table(out, schema=pa.schema([("person_id", pa.string()),
                                            ("preferred_language", pa.string()),
                                            ("basis", pa.string()), ("n_texts", pa.int64()),
                                            ("share", pa.float64())]))
    return Result(table, {"method": "explicit attribute, else the most written language "
                          "(py3langid over the candidate languages)",
                          "n_people": table.num_rows,
                          "candidates": list(detector.candidates or [])})
