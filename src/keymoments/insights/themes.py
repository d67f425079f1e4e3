"""Text themes: what customers write about, for root causes when text is available.

A theme is a regular expression over lower-cased text. The defaults cover the
usual root causes of complaints and low reviews (late delivery, delivery in
general, product, refund and payment, customer service, price) with word stems in English, Portuguese,
Spanish, French, German and Dutch; pass your own mapping to replace them. They
are keyword themes, transparent and cheap, not a topic model: read a theme's
example texts before acting on it.

>>> import re
>>> bool(re.search(DEFAULT_THEMES["delivery"], "o produto não chegou no prazo"))
True
>>> bool(re.search(DEFAULT_THEMES["delivery"], "great product"))
False
>>> bool(re.search(DEFAULT_THEMES["late_delivery"], "passou do prazo e não chegou"))
True
"""

from __future__ import annotations

from ..sql import literal

__all__ = ["DEFAULT_THEMES", "theme_sql"]

DEFAULT_THEMES: dict[str, str] = {
    "late_delivery": (r"\blate\b|delay|not (yet )?(arrived|received|delivered)|never (arrived|came)|"
                      r"atras|não (chegou|recebi|foi entregue)|nao (chegou|recebi|foi entregue)|"
                      r"ainda não|fora do prazo|passou do prazo|após o prazo|depois do prazo|"
                      r"retras|no (ha )?llegado|en retard|pas reçu|verspät|nicht angekommen|"
                      r"te laat|niet (ontvangen|geleverd)"),
    "delivery": (r"deliver|shipping|shipment|courier|parcel|arriv|late|delay|"
                 r"entreg|prazo|atras|cheg|receb|frete|correio|envio|envío|llegó|retras|"
                 r"livr|colis|retard|liefer|versand|paket|bezorg|geleverd|levering|pakket"),
    "product": (r"defect|broken|damag|quality|wrong item|faulty|"
                r"defeit|quebrad|danificad|qualidade|errad|falsific|"
                r"roto|calidad|cassé|qualité|kaputt|qualität|kapot|kwaliteit"),
    "refund_payment": (r"refund|charge|payment|paid twice|invoice|"
                       r"reembols|estorno|pagamento|cobran|boleto|devolu|"
                       r"rembours|paiement|erstatt|zahlung|terugbetal|betaling"),
    "service": (r"support|agent|rude|no answer|no reply|customer service|"
                r"atendimento|resposta|contato|sac\b|"
                r"servicio|atención|service client|kundendienst|klantenservice"),
    "price": r"price|expensive|overpriced|preço|caro\b|precio|prix|preis|prijs|duur",
}


def theme_sql(themes: dict[str, str], text: str = "e.text") -> list[tuple[str, str]]:
    """(theme, SQL condition) pairs; DuckDB ``regexp_matches`` (Spark: ``rlike``)."""
    out = []
    for name, pattern in themes.items():
        out.append((name, f"regexp_matches(lower({text}), {literal(pattern)})"))
    return out
