"""Survey answers and reviews, drawn from each journey's remembered score.

A minority answers (the silent majority does not), the very happy and the very
unhappy a bit more often. The answer is the remembered score plus noise, on the
survey's scale; the comment, in the customer's language, is praise, neutral, or about
the journey's worst moment (late delivery, support, payment).

>>> topic(np.array([0.9, 0.0, -0.8]), np.array([-1, -1, ET["order_delivered"]]), "order").tolist()
[0, 2, 3]
"""

from __future__ import annotations

import numpy as np

from .blocks import Block, cat
from .comments import TOPICS, pick_comments
from .moments import to_scale
from .params import DAY, ET, HOUR, SCALES, SURVEYS, ShopParams

__all__ = ["answer_surveys", "write_reviews", "topic"]


def topic(r_obs: np.ndarray, valley_type: np.ndarray, about: str) -> np.ndarray:
    """Comment topic: praise (of an order, or thanks for support), neutral, or the
    negative topic of the journey's worst moment."""
    negative = np.select(
        [valley_type == ET["order_delivered"], valley_type == ET["payment_failed"],
         valley_type >= ET["ticket_opened"]],
        [TOPICS.index("delivery"), TOPICS.index("payment"), TOPICS.index("support")],
        default=TOPICS.index("generic"),
    )  # fmt: skip
    praise = TOPICS.index("positive" if about == "order" else "thanks")
    neutral = TOPICS.index("neutral")
    return np.where(r_obs > 0.25, praise, np.where(r_obs >= -0.15, neutral, negative))


def answer_surveys(
    rng: np.random.Generator, p: ShopParams, o: Block, t: Block, lang: np.ndarray
) -> Block:
    """Survey answers about orders (CSAT or NPS) and tickets (CSAT or CES). Records on
    ``o`` and ``t`` which journeys answered (``survey``, ``score``, ``survey_ts``)."""
    blocks = []
    for journeys, about, eligible, types, csat_share, delay, sd in (
        (o, "order", (o["delivered"] >= 0) | (o["cancelled"] >= 0), (0, 1), p.csat_share_orders,
         (HOUR, 3 * DAY), np.full(len(o["order"]), p.noise_sd)),
        (t, "ticket", np.ones(len(t["ticket"]), bool), (0, 2), p.csat_share_tickets, (300, DAY),
         np.where(t["inconsistent"], p.inconsistent_noise_sd, p.noise_sd)),
    ):  # fmt: skip
        n = len(journeys[about])
        r = journeys["remembered"]
        answer = eligible & (rng.random(n) < p.survey_base + p.survey_extremity * np.abs(r))
        kind = np.where(rng.random(n) < csat_share, types[0], types[1])
        r_obs = np.clip(r + rng.normal(0, 1, n) * sd, -1, 1)
        low, high = np.array([SCALES[s] for s in SURVEYS])[kind].T
        score = low + np.rint((high - low) * (r_obs + 1) / 2).astype(np.int64)
        ts = journeys["journey_end"] + rng.integers(*delay, n)
        says = rng.random(n) < p.comment_share
        about_what = topic(r_obs, journeys["valley_type"], about)
        comment = np.where(says, pick_comments(rng, lang[journeys["cust"]], about_what), -1)
        journeys["survey"] = np.where(answer, kind, -1)
        journeys["score"] = np.where(answer, score, -1)
        journeys["survey_ts"] = np.where(answer, ts, -1)
        a = np.flatnonzero(answer)
        none = np.full(len(a), -1)
        blocks.append({
            "kind": kind[a], "ts": ts[a], "cust": journeys["cust"][a],
            "order": journeys[about][a] if about == "order" else none,
            "ticket": journeys[about][a] if about == "ticket" else none,
            "score": score[a], "comment": comment[a],
        })  # fmt: skip
    return cat(blocks)


def write_reviews(rng: np.random.Generator, p: ShopParams, o: Block, lang: np.ndarray) -> Block:
    """Reviews of delivered orders: the delighted and the angry write more often."""
    r = o["remembered"]
    n = len(r)
    likely = p.review_base + p.review_extremity * np.abs(r)
    writes = (o["delivered"] >= 0) & (rng.random(n) < likely)
    r_obs = np.clip(r + rng.normal(0, p.noise_sd, n), -1, 1)
    stars = to_scale(r_obs, *SCALES["stars"])
    ts = o["journey_end"] + rng.integers(DAY, 10 * DAY, n)
    comment = pick_comments(rng, lang[o["cust"]], topic(r_obs, o["valley_type"], "order"))
    w = np.flatnonzero(writes)
    return {"order": o["order"][w], "cust": o["cust"][w], "ts": ts[w], "stars": stars[w],
            "comment": comment[w]}  # fmt: skip
