"""Short customer comments for the demo's surveys and reviews, in five languages.

Each comment has a language and a topic: ``positive`` (about an order), ``thanks``
(about a support contact), ``neutral``, or a negative topic naming what went wrong
(``delivery``, ``support``, ``payment``, ``generic``).
A few contain commas, quotes or a line break, as real free text does.

>>> COMMENTS["pt"]["delivery"][0]
'O pacote chegou dias depois da data prometida.'
>>> pool, start, count = comment_pool()
>>> pool[start[1, TOPICS.index("positive")]].startswith("Ótimo")
True
"""

from __future__ import annotations

import numpy as np

__all__ = ["LANGUAGES", "TOPICS", "COMMENTS", "comment_pool", "pick_comments"]

LANGUAGES = ("en", "pt", "es", "fr", "de")
TOPICS = ("positive", "thanks", "neutral", "delivery", "support", "payment", "generic")

COMMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "positive": (
            "Great service, the order arrived early!",
            "Everything went smoothly. Will buy again.",
            "Very happy with the product and the quick delivery.",
        ),
        "thanks": (
            "The agent was friendly and solved it in minutes, thanks!",
            "Quick answer, problem solved.",
            "Super helpful support, thank you.",
        ),
        "neutral": (
            "It was ok.",
            "Fine, nothing special.",
            "Delivery took a while, but the product is fine.",
            "Average experience, as expected.",
        ),
        "delivery": (
            "My package arrived days after the promised date.",
            "Late delivery again, and no update from the carrier.",
            'Tracking said "delivered" but it came two days later.',
            "The order was late, I needed it for a birthday.",
        ),
        "support": (
            "I waited forever for someone to answer the chat.",
            "Transferred three times, nobody could help.",
            "Support was slow and the first reply was useless.",
            "Had to call after two chats went nowhere.\nVery frustrating.",
        ),
        "payment": (
            "Payment failed twice, had to use another card.",
            "Checkout kept rejecting my card, annoying.",
            "Payment error, I almost gave up on the order.",
        ),
        "generic": (
            "Not happy, won't order again.",
            "Poor experience overall.",
            "Disappointed, I expected better.",
        ),
    },
    "pt": {
        "positive": (
            "Ótimo atendimento, o pedido chegou antes do prazo!",
            "Tudo certo, vou comprar de novo.",
            "Muito satisfeita com o produto e a entrega rápida.",
        ),
        "thanks": (
            "O atendente foi simpático e resolveu em minutos, obrigado!",
            "Resposta rápida, problema resolvido.",
            "Atendimento muito prestativo, obrigada.",
        ),
        "neutral": (
            "Foi ok.",
            "Normal, nada de especial.",
            "A entrega demorou um pouco, mas o produto é bom.",
            "Experiência razoável.",
        ),
        "delivery": (
            "O pacote chegou dias depois da data prometida.",
            "Entrega atrasada de novo, sem nenhuma atualização da transportadora.",
            'O rastreio dizia "entregue", mas só chegou dois dias depois.',
            "Meu pedido atrasou, eu precisava dele para um aniversário.",
        ),
        "support": (
            "Esperei muito tempo para alguém responder no chat.",
            "Fui transferido três vezes e ninguém ajudou.",
            "O atendimento foi lento e a primeira resposta não serviu para nada.",
            "Tive que ligar depois de dois chats sem solução.",
        ),
        "payment": (
            "O pagamento falhou duas vezes, tive que usar outro cartão.",
            "O checkout recusava meu cartão, muito chato.",
            "Erro no pagamento, quase desisti da compra.",
        ),
        "generic": (
            "Não gostei, não compro mais.",
            "Experiência ruim no geral.",
            "Decepcionado, esperava mais.",
        ),
    },
    "es": {
        "positive": (
            "¡Excelente servicio, el pedido llegó antes de lo previsto!",
            "Todo perfecto, volveré a comprar.",
            "Muy contenta con el producto y la entrega rápida.",
        ),
        "thanks": (
            "El agente fue amable y lo resolvió en minutos, ¡gracias!",
            "Respuesta rápida, problema resuelto.",
            "Soporte muy útil, gracias.",
        ),
        "neutral": (
            "Estuvo bien.",
            "Normal, nada especial.",
            "La entrega tardó un poco, pero el producto está bien.",
            "Experiencia correcta.",
        ),
        "delivery": (
            "El paquete llegó días después de la fecha prometida.",
            "Otra vez entrega tardía y sin noticias de la empresa de transporte.",
            'El seguimiento decía "entregado", pero llegó dos días después.',
            "Mi pedido llegó tarde, lo necesitaba para un cumpleaños.",
        ),
        "support": (
            "Esperé muchísimo a que alguien contestara el chat.",
            "Me transfirieron tres veces y nadie me ayudó.",
            "El soporte fue lento y la primera respuesta no sirvió de nada.",
            "Tuve que llamar después de dos chats sin solución.\nMuy frustrante.",
        ),
        "payment": (
            "El pago falló dos veces, tuve que usar otra tarjeta.",
            "El checkout rechazaba mi tarjeta, muy molesto.",
            "Error en el pago, casi abandono la compra.",
        ),
        "generic": (
            "No me gustó, no vuelvo a comprar.",
            "Mala experiencia en general.",
            "Decepcionado, esperaba más.",
        ),
    },
    "fr": {
        "positive": (
            "Service excellent, la commande est arrivée en avance !",
            "Tout s'est bien passé, je recommanderai.",
            "Très contente du produit et de la livraison rapide.",
        ),
        "thanks": (
            "L'agent était aimable et a réglé le problème en quelques minutes, merci !",
            "Réponse rapide, problème résolu.",
            "Support très serviable, merci.",
        ),
        "neutral": (
            "C'était correct.",
            "Bien, sans plus.",
            "La livraison a pris du temps, mais le produit est bien.",
            "Expérience moyenne.",
        ),
        "delivery": (
            "Mon colis est arrivé plusieurs jours après la date promise.",
            "Encore une livraison en retard, et aucune nouvelle du transporteur.",
            'Le suivi indiquait "livré", mais il est arrivé deux jours plus tard.',
            "Commande en retard, j'en avais besoin pour un anniversaire.",
        ),
        "support": (
            "J'ai attendu une éternité qu'on me réponde sur le chat.",
            "Transféré trois fois, personne n'a pu m'aider.",
            "Le support était lent et la première réponse inutile.",
            "J'ai dû appeler après deux chats sans solution.",
        ),
        "payment": (
            "Le paiement a échoué deux fois, j'ai dû utiliser une autre carte.",
            "Le paiement refusait ma carte, très agaçant.",
            "Erreur de paiement, j'ai failli abandonner.",
        ),
        "generic": (
            "Pas satisfait, je ne commanderai plus.",
            "Mauvaise expérience dans l'ensemble.",
            "Déçu, je m'attendais à mieux.",
        ),
    },
    "de": {
        "positive": (
            "Toller Service, die Bestellung kam früher als erwartet!",
            "Alles lief reibungslos, gerne wieder.",
            "Sehr zufrieden mit dem Produkt und der schnellen Lieferung.",
        ),
        "thanks": (
            "Der Mitarbeiter war freundlich und hat es in Minuten gelöst, danke!",
            "Schnelle Antwort, Problem gelöst.",
            "Sehr hilfsbereiter Support, vielen Dank.",
        ),
        "neutral": (
            "War ok.",
            "Gut, nichts Besonderes.",
            "Die Lieferung hat etwas gedauert, aber das Produkt ist gut.",
            "Durchschnittliche Erfahrung.",
        ),
        "delivery": (
            "Mein Paket kam Tage nach dem versprochenen Termin.",
            "Wieder verspätete Lieferung, und keine Info vom Paketdienst.",
            'Laut Sendungsverfolgung "zugestellt", kam aber zwei Tage später.',
            "Die Bestellung kam zu spät, ich brauchte sie für einen Geburtstag.",
        ),
        "support": (
            "Ich habe ewig gewartet, bis jemand im Chat geantwortet hat.",
            "Dreimal weitergeleitet, niemand konnte helfen.",
            "Der Support war langsam und die erste Antwort nutzlos.",
            "Musste nach zwei erfolglosen Chats anrufen.",
        ),
        "payment": (
            "Die Zahlung ist zweimal fehlgeschlagen, ich musste eine andere Karte nehmen.",
            "Der Checkout hat meine Karte ständig abgelehnt, nervig.",
            "Zahlungsfehler, fast hätte ich abgebrochen.",
        ),
        "generic": (
            "Nicht zufrieden, ich bestelle nicht wieder.",
            "Insgesamt eine schlechte Erfahrung.",
            "Enttäuscht, ich hatte mehr erwartet.",
        ),
    },
}


def comment_pool() -> tuple[list[str], np.ndarray, np.ndarray]:
    """All comments as one list, with ``start[lang, topic]`` and ``count[lang, topic]``
    giving each (language, topic) group's slice of it."""
    pool: list[str] = []
    start = np.zeros((len(LANGUAGES), len(TOPICS)), dtype=np.int64)
    count = np.zeros_like(start)
    for i, lang in enumerate(LANGUAGES):
        for j, topic in enumerate(TOPICS):
            texts = COMMENTS[lang][topic]
            start[i, j], count[i, j] = len(pool), len(texts)
            pool.extend(texts)
    return pool, start, count


def pick_comments(rng: np.random.Generator, lang: np.ndarray, topic: np.ndarray) -> np.ndarray:
    """For each (language code, topic code) pair, the pool index of a random comment.

    >>> rng = np.random.default_rng(0)
    >>> pool, _, _ = comment_pool()
    >>> neutral = TOPICS.index("neutral")
    >>> pool[pick_comments(rng, np.array([0]), np.array([neutral]))[0]] in COMMENTS["en"]["neutral"]
    True
    """
    _, start, count = comment_pool()
    n = count[lang, topic]
    return start[lang, topic] + (rng.random(len(lang)) * n).astype(np.int64)
