"""Text sentiment: the scorer interface and a small default.

A scorer turns texts (with their language when known) into a valence in [-1, 1]
and a confidence in [0, 1]. The default :class:`LexiconScorer` counts polar words
from small hand-written lexicons in a few languages; it is a placeholder that the
multilingual scorer replaces, and it says so in its ``name``. Scores are cached
per text hash in the ``text_scores`` table, so each distinct text is scored once.

>>> s = LexiconScorer()
>>> [round(v, 2) for v, _ in s.score(["非常满意，推荐", "届かない、最悪"], ["zh", "ja"])]
[1.0, -1.0]
>>> [round(v, 2) for v, _ in s.score(["great service, thank you", "chegou atrasado e quebrado",
...                                    "the box"], ["en", "pt", "en"])]
[1.0, -1.0, 0.0]
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

__all__ = ["TextScorer", "LexiconScorer", "get_scorer"]


@runtime_checkable
class TextScorer(Protocol):
    """What a text sentiment scorer provides."""

    name: str

    def score(self, texts: list[str], languages: list[str | None]) -> list[tuple[float, float]]:
        """(valence in [-1, 1], confidence in [0, 1]) for each text."""
        ...


_POSITIVE = """
good great excellent perfect fast love loved amazing happy helpful thanks thank recommend
easy friendly quick satisfied awesome wonderful best nice smooth
bom boa ótimo otimo ótima excelente perfeito rápido rapido rápida adorei recomendo
obrigado obrigada satisfeito satisfeita feliz lindo top gostei amei parabéns parabens
maravilhoso maravilhosa
bueno buena excelente perfecto rápido rapido encantó gracias recomiendo fácil amable
bon bonne excellent parfait rapide merci recommande facile aimable satisfait génial
gut super schnell toll danke empfehle einfach freundlich zufrieden perfekt
goed snel prima tevreden vriendelijk bedankt
""".split()
_NEGATIVE = """
bad terrible awful slow late broken never worst rude angry disappointed problem wrong
missing damaged refund waited waiting hate useless poor cancel cancelled unacceptable
ruim péssimo pessimo péssima atrasado atrasou atraso quebrado quebrada nunca pior
demorou demora errado faltando defeito defeituoso avariado problema não nao cancelado
insatisfeito
malo mala terrible tarde roto nunca peor lento problema decepcionado
mauvais mauvaise terrible retard cassé jamais pire lent problème déçu
schlecht langsam spät kaputt nie schlimmste problem enttäuscht
slecht traag laat kapot nooit probleem boos klacht
""".split()
# Chinese and Japanese do not space their words: these match as substrings
_CJK_POSITIVE = ("满意", "喜欢", "很好", "不错", "推荐", "谢谢", "完美", "快", "棒", "好评", "热情",
                 "満足", "良い", "よかった", "最高", "ありがとう", "おすすめ", "素晴らしい", "丁寧",
                 "早く", "気に入")
_CJK_NEGATIVE = ("差", "慢", "坏", "失望", "退款", "投诉", "没收到", "错", "假货", "浪费", "烂",
                 "最悪", "壊れ", "遅", "届かない", "届きません", "返金", "がっかり", "悪い", "不良",
                 "故障", "失礼", "無駄", "偽物", "ひどい")
#: words that turn the polar word after them (within :data:`_SCOPE` words, not past a
#: punctuation mark) into its opposite: "not good", "não fiquei satisfeito", "nunca
#: tive problema"; English contractions split at the apostrophe ("didn" of "didn't")
_NEGATORS = {
    "not", "no", "never", "without", "didn", "don", "doesn", "isn", "wasn", "weren",
    "won", "wouldn", "couldn", "hasn", "haven", "hadn", "aren", "shouldn", "cannot",
    "não", "nao", "nunca", "nem", "sem", "jamais",
    "nada", "ni", "sin", "jamás",
    "pas", "sans",
    "nicht", "kein", "keine", "keinen", "nie", "ohne",
    "niet", "geen", "nooit", "zonder",
}
_SCOPE = 3
_TOKEN = re.compile(r"\w+|[.!?;:,/]", re.UNICODE)  # a slash ends a clause too
_CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


class LexiconScorer:
    """Counts positive and negative words (English, Portuguese, Spanish, French,
    German, Dutch; a few Chinese and Japanese ones as substrings). A negator turns
    the first polar word within three words after it, in the same clause, into its
    opposite ("não fiquei satisfeito" is negative, "nunca tive problema" positive);
    a negator that is a negative word itself ("nunca", "never") counts as negative
    when it turns nothing ("nunca chegou"). Confidence grows with the number of polar
    words found.

    >>> s = LexiconScorer()
    >>> [v for v, _ in s.score(["não fiquei satisfeito com o material",
    ...                         "nunca tive problema, chegou rápido", "nunca chegou",
    ...                         "not bad. terrible"], [None] * 4)]
    [-1.0, 1.0, -1.0, 0.0]

    A slash ends a clause: the negator before it turns nothing after it.

    >>> [v for v, _ in s.score(["ikf niet / te laat verwerkt"], ["nl"])]
    [-1.0]
    """

    name = "lexicon-v4"

    def __init__(self) -> None:
        self._pos = set(_POSITIVE) - _NEGATORS
        self._neg = set(_NEGATIVE) - _NEGATORS
        self._neg_negators = set(_NEGATIVE) & _NEGATORS  # nunca, never, nie, nooit...

    def _counts(self, text: str) -> tuple[int, int]:
        pos = neg = 0
        negator, left = None, 0  # the negator in force, and the words left in its scope
        for t in _TOKEN.findall(text.lower()):
            punctuation = not (t[0].isalnum() or t[0] == "_")
            if punctuation or t in _NEGATORS:
                # the negator before turned nothing: a negative one counts on its own
                neg += negator in self._neg_negators
                negator, left = (None, 0) if punctuation else (t, _SCOPE)
                continue
            polar = 1 if t in self._pos else (-1 if t in self._neg else 0)
            if negator is not None:
                left -= 1
                if polar:
                    polar, negator = -polar, None
                elif not left:
                    neg += negator in self._neg_negators
                    negator = None
            pos, neg = pos + (polar > 0), neg + (polar < 0)
        return pos, neg + (negator in self._neg_negators)

    def score(self, texts: list[str], languages: list[str | None]) -> list[tuple[float, float]]:
        out = []
        for text in texts:
            pos, neg = self._counts(text or "")
            if _CJK.search(text or ""):
                neg_hits = [w for w in _CJK_NEGATIVE if w in text]
                pos += sum(1 for w in _CJK_POSITIVE if w in text
                           and not any(w in n for n in neg_hits))
                neg += len(neg_hits)
            total = pos + neg
            if total == 0:
                out.append((0.0, 0.0))
            else:
                out.append(((pos - neg) / total, min(1.0, total / 3)))
        return out


def get_scorer(name: str) -> TextScorer:
    """The scorer named in config (``valence.text_scorer``): ``lexicon``, or one of
    the names :func:`keymoments.text.scorers.load_scorer` knows (``multilingual``,
    ``dir:PATH``, ``module:attribute``)."""
    if name == "lexicon":
        return LexiconScorer()
    from ..text.scorers import load_scorer

    return load_scorer(name)
