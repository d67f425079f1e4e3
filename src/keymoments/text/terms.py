"""Terms of a text for theme naming: lower-cased words without stop words, and
character bigrams for Chinese and Japanese (which do not space their words).

>>> terms("O produto chegou atrasado e com defeito", "pt")
['produto', 'chegou', 'atrasado', 'defeito']
>>> terms("快递太慢了", "zh")
['快递', '递太', '太慢', '慢了']
"""

from __future__ import annotations

import re

__all__ = ["terms", "STOP_WORDS"]

_STOP = {
    "en": """a an the and or but if of to in on at for with from by as is are was were be been
        it its this that these those i me my we our you your he she they them their not no
        so very too just than then there here have has had do does did will would can could
        should about after before again all any also am because into more most only out over
        some such up what when which who why how one get got""",
    "pt": """a o as os um uma uns umas e ou mas se de do da dos das no na nos nas em por para
        com sem que é foi ser era são está estava muito muita muito mais menos já ainda eu me
        meu minha você ele ela eles elas nós isso isto esse essa este esta ao aos à às pelo
        pela pelos pelas não sim como quando também só bem tudo nada lo la lhe seu sua tem
        ter teve até sobre porque pois""",
    "es": """el la los las un una unos unas y o pero si de del al en por para con sin que es
        fue ser era son está muy más menos ya todavía yo me mi tu su lo le se no sí como
        cuando también solo bien todo nada este esta eso esto""",
    "fr": """le la les un une des et ou mais si de du au aux en par pour avec sans que qui est
        était être sont très plus moins déjà je me mon ma mes il elle ils elles nous vous
        ce cet cette ces ne pas oui comme quand aussi seulement bien tout rien sur y à""",
    "de": """der die das den dem des ein eine einen einem und oder aber wenn von zu im in am an
        auf für mit ohne dass ist war sein sind sehr mehr weniger schon ich mir mein meine
        er sie es wir ihr nicht ja wie als auch nur gut alles nichts noch bei nach""",
    "nl": """de het een en of maar als van te in op aan voor met zonder dat is was zijn zeer
        meer minder al ik mij mijn hij zij het wij jullie niet ja hoe wanneer ook alleen
        goed alles niets nog bij naar er door om wordt worden""",
}
STOP_WORDS: dict[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in _STOP.items()}
_ALL_STOP = frozenset().union(*STOP_WORDS.values())
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]+")


def terms(text: str | None, language: str | None = None) -> list[str]:
    """The content terms of ``text`` (stop words of ``language``, or of every
    known language when it is unknown, removed)."""
    if not text:
        return []
    low = text.lower()
    stop = STOP_WORDS.get(language or "", _ALL_STOP)
    out = [w for w in _WORD.findall(_CJK.sub(" ", low)) if w not in stop and len(w) > 2]
    for run in _CJK.findall(low):
        out.extend(run[i:i + 2] for i in range(len(run) - 1))
    return out
