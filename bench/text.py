"""Text enrichment: accuracy per language and throughput per scorer.

    python bench/text.py accuracy            # sentiment and language-ID accuracy per language
    python bench/text.py throughput --n 1000 # texts/s of each step on real reviews

Accuracy data: the Portuguese marketplace reviews (``../shared/data/olist-sample``,
every review with a comment; CC BY-NC-SA, read in place, never shipped or trained on)
and the hand-written reviews of ``tests/data/text/reviews.tsv`` (en, es, fr, de, ja,
zh; held out from the head's training). Metrics against the star rating: binary
accuracy (1-2 vs 4-5 stars; predicted positive when valence > 0), 3-class macro-F1
(1-2 / 3 / 4-5 against valence < -1/3 / between / > 1/3), Spearman rho of valence
and stars. Throughput is measured on the first ``--n`` review texts, cold (no
cache), and the cache's effect is the share of distinct texts among all.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from keymoments.text.language import LanguageDetector  # noqa: E402
from keymoments.text.redact import redact_texts  # noqa: E402
from keymoments.text.scorers import load_scorer  # noqa: E402
from keymoments.text.sentiment import load_seed  # noqa: E402

OLIST = ROOT.parent / "shared/data/olist-sample/olist_order_reviews_dataset.csv"
REVIEWS = ROOT / "tests/data/text/reviews.tsv"


def olist_reviews() -> list[tuple[str, int]]:
    with open(OLIST, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["review_comment_message"].strip()]
    return [(" ".join(x for x in (r["review_comment_title"].strip(),
                                  r["review_comment_message"].strip()) if x),
             int(r["review_score"])) for r in rows]


def own_reviews() -> list[tuple[str, int, str]]:
    out = []
    for line in REVIEWS.read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            lang, stars, text = line.split("\t")
            out.append((text, int(stars), lang))
    return out


def sentiment_metrics(valence: np.ndarray, stars: np.ndarray) -> dict:
    b = stars != 3
    true3 = np.where(stars < 3, 0, np.where(stars == 3, 1, 2))
    pred3 = np.where(valence < -1 / 3, 0, np.where(valence > 1 / 3, 2, 1))
    return {"n": int(len(stars)),
            "binary_accuracy": round(float(((valence[b] > 0) == (stars[b] > 3)).mean()), 3),
            "macro_f1_3class": round(float(f1_score(true3, pred3, average="macro")), 3),
            "spearman": round(float(spearmanr(valence, stars).statistic), 3)}


def accuracy(scorers: list[str]) -> dict:
    data: dict[str, list[tuple[str, int]]] = {"pt": olist_reviews()}
    for text, stars, lang in own_reviews():
        data.setdefault(lang, []).append((text, stars))
    out: dict = {"sentiment": {}, "language_id": {}}
    for name in scorers:
        scorer = load_scorer(name)
        for lang, rows in data.items():
            t = time.perf_counter()
            v = np.array([s for s, _ in scorer.score([x for x, _ in rows], [lang] * len(rows))])
            m = sentiment_metrics(v, np.array([s for _, s in rows]))
            m["seconds"] = round(time.perf_counter() - t, 1)
            out["sentiment"].setdefault(name, {})[lang] = m
            print(name, lang, m, flush=True)
    # language identification on short texts: every labelled text we have
    texts = [(t, lang) for lang, rows in data.items() for t, _ in rows]
    texts += [(t, lang) for lang, _, t in load_seed()]
    det = LanguageDetector()
    found = det.detect([t for t, _ in texts])
    for lang in sorted({g for _, g in texts}):
        idx = [i for i, (_, g) in enumerate(texts) if g == lang]
        ok = sum(found[i][0] == lang for i in idx)
        chars = np.median([len(texts[i][0]) for i in idx])
        out["language_id"][lang] = {"n": len(idx), "accuracy": round(ok / len(idx), 3),
                                    "median_chars": float(chars)}
        print("langid", lang, out["language_id"][lang], flush=True)
    return out


def throughput(n: int, scorers: list[str]) -> dict:
    texts = [t for t, _ in olist_reviews()][:n]
    out: dict = {"n": len(texts), "load_average_before": os.getloadavg()[0]}

    def timed(label, fn):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall = time.perf_counter() - t
        out[label] = {"seconds": round(wall, 2), "cpu_seconds": round(time.process_time() - c, 2),
                      "texts_per_s": round(len(texts) / wall, 1)}
        print(label, out[label], flush=True)

    timed("redaction", lambda: redact_texts(texts))
    det = LanguageDetector()
    det.detect(["warm up"])
    timed("language_id", lambda: det.detect(texts))
    for name in scorers:
        scorer = load_scorer(name)
        scorer.score(["warm up"], [None])
        timed(f"sentiment:{name}", lambda: scorer.score(texts, [None] * len(texts)))
    all_texts = [t for t, _ in olist_reviews()]
    out["distinct_text_share"] = round(len(set(all_texts)) / len(all_texts), 3)
    # the cache by text hash: each text three times over; the first pass scores each
    # distinct text once, the second finds them all scored
    import duckdb
    from types import SimpleNamespace

    from keymoments.store.schema import _create
    from keymoments.valence.cache import update_text_scores
    for name in scorers:
        con = duckdb.connect()
        con.execute("CREATE TABLE events (text VARCHAR, language VARCHAR)")
        con.executemany("INSERT INTO events VALUES (?, NULL)", [[t] for t in texts * 3])
        con.execute(_create("text_scores"))
        ws = SimpleNamespace(con=con)
        scorer = load_scorer(name)
        for label in ("first", "cached"):
            t = time.perf_counter()
            scored = update_text_scores(ws, scorer)
            wall = time.perf_counter() - t
            out[f"cache:{name}:{label}"] = {"events": 3 * len(texts), "scored": scored,
                                            "seconds": round(wall, 2),
                                            "events_per_s": round(3 * len(texts) / wall, 1)}
            print(f"cache:{name}:{label}", out[f"cache:{name}:{label}"], flush=True)
    out["load_average_after"] = os.getloadavg()[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["accuracy", "throughput"])
    ap.add_argument("--n", type=int, default=1000, help="texts for the throughput run")
    ap.add_argument("--scorers", nargs="+", default=["lexicon", "multilingual"])
    args = ap.parse_args()
    result = accuracy(args.scorers) if args.what == "accuracy" else throughput(args.n, args.scorers)
    out = ROOT / "bench/out"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"text-{args.what}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
