"""A straightforward pandas implementation of keymoments's journeys and moments for
the bench export (``bench/_data.py``), as a data engineer would write it: one
DataFrame, ``sort_values``, ``groupby`` and ``shift``. The engine benchmark
(``bench/engine.py``) times it next to keymoments and checks, on the 1M data, that
it assigns events to the same journeys.

What it does, with keymoments's semantics for this data (its default journey
types, taxonomy, valence rules and moment definitions):

* **dedupe**: exact repeated rows dropped (keymoments drops events with the same
  content hash);
* **person**: ``customer_id``, else the lower-cased e-mail's ``customer_id`` (from
  rows that carry both), else the e-mail: one hop of stitching, which is all this
  export needs (every e-mail belongs to one customer id);
* **stage**: a dict of the export's event types (keymoments's taxonomy, written out);
* **journeys**: an event with a ticket id is in the ``issue_resolution`` journey of
  (person, ticket); else with an order id in the ``purchase`` journey of (person,
  order); else in the person's ``visit`` journey, cut after more than 30 minutes of
  inactivity. ``seq`` is the position by time (ties: file order; keymoments breaks
  ties by event id);
* **valence**: the rating on its csat5 scale (neutral 3), the two default rules that
  fire on this data (``repeat_contact``: another ticket within 7 days, -0.4;
  ``first_contact_resolution``: a resolution without transfer/reopen, 0.6, else
  0.2) and the comment's sentiment (keymoments's lexicon scorer applied to the
  distinct comments, confidence > 0), weighted 1 / 1 / 0.5 and clipped to [-1, 1].
  **Skipped**: the other default rules (expectation gaps, waits, constants for
  payment_failed, transferred, reopened, cancelled, refund_granted, loyalty_joined),
  which cannot fire on this export (no promised times, no wait measures, none of
  those event types), and the valence reasons (text);
* **journeys table**: type, key, person, start, end, events,
  channel switches, has start/end event, outcome (first rated feedback) valence,
  first/peak/valley/end/mean valence of the moment candidates, the number of
  distinct channels (keymoments keeps their sorted list), status (completed,
  abandoned, stalled at the type's p90 completed duration, open). **Skipped**: the
  repurchase and churn outcomes and the trend;
* **moments**: first impression, peak, valley and farewell of each journey among
  the scored events before the first feedback, outside the feedback stage (ties:
  earliest); repeat purchases: a purchase is a ``purchase`` journey holding a
  purchase event (an event the taxonomy tags ``purchase``: ``order_placed`` here;
  most of this export's order journeys hold only a delivery, a refund or a review),
  and every purchase after the person's first (by its first purchase event: time,
  then file order; keymoments breaks ties by event id) is one, at that event.
  **Skipped**: the other business moments (first tagged event per key moment, first
  interaction).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

GAP_S = 30 * 60  # catch-all inactivity gap
REPEAT_WINDOW_S = 7 * 86400
STAGE = {  # keymoments's default taxonomy, for this export's event types
    "page_view": "consideration", "add_to_cart": "consideration", "store_visit": "consideration",
    "order_placed": "purchase", "order_shipped": "purchase", "order_delivered": "purchase",
    "review_posted": "feedback", "survey_response": "feedback",
    "ticket_opened": "support", "ticket_resolved": "support", "call_started": "support",
    "call_ended": "support", "chat_started": "support", "chat_message": "support",
}
END = {"issue_resolution": ["ticket_resolved", "ticket_closed"],
       "purchase": ["order_delivered", "order_cancelled", "order_returned"]}
START = {"issue_resolution": ["ticket_opened"], "purchase": ["order_placed", "checkout_started"]}
ABANDON_S = {"issue_resolution": 30 * 86400, "purchase": 60 * 86400}
PURCHASE_EVENTS = ["order_placed"]  # the export's event types tagged purchase (a purchase)


def run(path: str, timings: dict[str, float] | None = None) -> dict[str, pd.DataFrame]:
    """Journey events, journeys and moments of the export at ``path``; fills
    ``timings`` with seconds per step."""
    t = {} if timings is None else timings
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        t[name] = now - clock
        clock = now

    # ---- read and dedupe
    df = pd.read_parquet(path)
    lap("read")
    df = df.drop_duplicates()
    df["row"] = df.index  # row number in the file (for comparisons)
    email = df["email"].str.strip().str.lower()
    known = df["customer_id"].notna() & email.notna()
    email_to_cust = (pd.DataFrame({"email": email[known], "cust": df.loc[known, "customer_id"]})
                     .drop_duplicates("email").set_index("email")["cust"])
    df["person"] = df["customer_id"].fillna(email.map(email_to_cust)).fillna("email:" + email)
    df["stage"] = df["event_type"].map(STAGE)
    lap("dedupe_person")

    # ---- journeys
    df["jtype"] = np.where(df["ticket_id"].notna(), "issue_resolution",
                           np.where(df["order_id"].notna(), "purchase", "visit"))
    df["jkey"] = df["ticket_id"].fillna(df["order_id"]).fillna("")
    df = df.sort_values(["person", "jtype", "jkey", "ts"], kind="stable", ignore_index=True)
    same = ((df["person"] == df["person"].shift()) & (df["jtype"] == df["jtype"].shift())
            & (df["jkey"] == df["jkey"].shift()))
    gap = (df["ts"] - df["ts"].shift()).dt.total_seconds()
    new = ~same | ((df["jtype"] == "visit") & (gap > GAP_S))
    df["journey"] = new.cumsum()
    df["seq"] = df.groupby("journey").cumcount()
    # a feedback event's channel (a survey) is no step on another channel
    channel = df["channel"].where(df["stage"] != "feedback")
    prev_channel = channel.shift()
    df["channel_switch"] = (~new & channel.notna() & prev_channel.notna()
                            & (channel != prev_channel)).astype("int64")
    lap("journeys_assign")

    # ---- valence
    df["v_feedback"] = ((df["rating"].astype("float64") - 3) / 2).clip(-1, 1)
    contacts = df[df["event_type"].isin(["ticket_opened", "complaint"])].sort_values(
        ["person", "ts"], kind="stable")
    since = (contacts["ts"] - contacts.groupby("person")["ts"].shift()).dt.total_seconds()
    repeat = pd.Series(np.where(since <= REPEAT_WINDOW_S, -0.4, np.nan), index=contacts.index)
    # a resolution after a transfer or reopening, or after an earlier resolution of
    # the same journey, is not first-contact
    resolution = df["event_type"].isin(["ticket_resolved", "Resolve ticket"])
    interrupted = df["event_type"].isin(["transferred", "ticket_reopened", "Require upgrade"])
    interrupted = (interrupted | resolution).astype("int64").groupby(df["journey"]).cumsum() \
        - resolution.astype("int64") > 0
    fcr = pd.Series(np.where(interrupted, 0.2, 0.6), index=df.index).where(resolution)
    rules = pd.DataFrame({"repeat": repeat.reindex(df.index), "fcr": fcr})
    df["v_rules"] = rules.mean(axis=1)  # the rules that fired, averaged
    from keymoments.valence.text import LexiconScorer

    texts = df["comment"].dropna().unique().tolist()
    scores = LexiconScorer().score(texts, [None] * len(texts))
    text_v = {s: v for s, (v, c) in zip(texts, scores) if c > 0}
    df["v_text"] = df["comment"].map(text_v).astype("float64")
    w = {"v_feedback": 1.0, "v_rules": 1.0, "v_text": 0.5}
    num = sum(df[c].fillna(0) * k for c, k in w.items())
    den = sum(df[c].notna() * k for c, k in w.items())
    df["valence"] = (num / den.where(den > 0)).clip(-1, 1)
    lap("valence")

    # ---- moments: the journey's scored events, not feedback
    is_fb = df["stage"].eq("feedback")
    whole = df[df["valence"].notna() & ~is_fb]
    gm = whole.groupby("journey")
    # (idxmin / idxmax: the first, the earliest, of ties)
    moment_ix = {"first_impression": gm["seq"].idxmin(), "farewell": gm["seq"].idxmax(),
                 "peak": gm["valence"].idxmax(), "valley": gm["valence"].idxmin()}
    # repeat purchases: each purchase's first purchase event, all but the person's first
    buys = df[(df["jtype"] == "purchase") & df["event_type"].isin(PURCHASE_EVENTS)]
    buys = buys.loc[buys.groupby("journey")["seq"].idxmin()].sort_values(
        ["person", "ts", "row"], kind="stable")
    moment_ix["repeat_purchase"] = buys.index[buys.groupby("person").cumcount().to_numpy() > 0]
    moments = pd.concat([df.loc[ix, ["journey", "jtype", "person", "row", "ts", "event_type",
                                     "stage", "channel", "agent", "valence"]].assign(kind=k)
                         for k, ix in moment_ix.items()], ignore_index=True)
    # the remembered score's inputs: the same, before the first rated feedback
    first_fb = (df["seq"].where(is_fb & df["v_feedback"].notna())
                .groupby(df["journey"]).transform("min"))
    cand = whole[first_fb.loc[whole.index].isna() | (whole["seq"] < first_fb.loc[whole.index])]
    g = cand.groupby("journey")
    picks = {"first_impression": g["seq"].idxmin(), "farewell": g["seq"].idxmax()}
    lap("moments")

    # ---- journeys table
    df["is_end"] = False
    df["is_start"] = False
    for jt in END:
        df["is_end"] |= (df["jtype"] == jt) & df["event_type"].isin(END[jt])
        df["is_start"] |= (df["jtype"] == jt) & df["event_type"].isin(START[jt])
    jg = df.groupby("journey")
    journeys = jg.agg(journey_type=("jtype", "first"), journey_key=("jkey", "first"),
                      person=("person", "first"), start_ts=("ts", "min"), end_ts=("ts", "max"),
                      n_events=("ts", "size"), channel_switches=("channel_switch", "sum"),
                      has_start=("is_start", "any"), has_end=("is_end", "any"),
                      n_channels=("channel", "nunique"))
    outcome = df[is_fb & df["v_feedback"].notna()].groupby("journey")["v_feedback"].first()
    journeys["outcome_valence"] = outcome
    journeys["first_v"] = df.loc[picks["first_impression"], "valence"].set_axis(picks["first_impression"].index)
    journeys["end_v"] = df.loc[picks["farewell"], "valence"].set_axis(picks["farewell"].index)
    journeys["peak_v"] = g["valence"].max()
    journeys["valley_v"] = g["valence"].min()
    journeys["mean_v"] = g["valence"].mean()
    journeys["n_valenced"] = g.size().reindex(journeys.index, fill_value=0)
    as_of = df["ts"].max()
    journeys["duration_s"] = (journeys["end_ts"] - journeys["start_ts"]).dt.total_seconds()
    idle = (as_of - journeys["end_ts"]).dt.total_seconds()
    p90 = journeys[journeys["has_end"]].groupby("journey_type")["duration_s"].quantile(0.9)
    stall = journeys["journey_type"].map(p90)
    abandon = journeys["journey_type"].map(ABANDON_S).fillna(GAP_S)
    visit = journeys["journey_type"] == "visit"
    journeys["status"] = np.select(
        [journeys["has_end"], visit & (idle > GAP_S), visit, idle > abandon,
         stall.notna() & (idle > stall)],
        ["completed", "completed", "open", "abandoned", "stalled"], default="open")
    lap("journeys_table")
    return {"events": df, "journeys": journeys, "moments": moments}
