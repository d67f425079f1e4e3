"""A model that predicts, when a contact ends, whether the customer's next contact
will be on another channel (a switch), from the journey so far: the contact's
channel, whether it was resolved, its length, transfers, reopenings and valence, and
the contact before it (its channel, resolution, same subject).

Logistic regression (scikit-learn), scored on held-out customers (a seeded group
split, so no customer is in both parts), against the majority-class baseline.

>>> rows = [{"person_id": f"p{i}", "channel": "chat" if i % 2 else "phone",
...          "resolved": i % 3 != 0, "n_events": 3, "transfers": 0, "reopens": 0,
...          "mean_valence": 0.1, "min_valence": -0.2, "has_prev": False,
...          "prev_channel": None, "prev_resolved": None, "prev_same_subject": False,
...          "switch": i % 3 == 0} for i in range(60)]
>>> fit_switch_model(pa.Table.from_pylist(rows)).meta["accuracy"]
1.0
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..results import Result

__all__ = ["fit_switch_model", "switch_features", "MIN_CONTACTS"]

#: Fewer contacts (or switches) than this and no model is fitted.
MIN_CONTACTS = 30


def switch_features(contacts: pa.Table, channels: list[str] | None = None
                    ) -> tuple[np.ndarray, list[str], list[str]]:
    """The feature matrix, the feature names and the channels one-hot encoded."""
    d = contacts.to_pydict()
    n = contacts.num_rows
    channels = channels or sorted({c for c in d["channel"] if c is not None})

    def col(name, fill=0.0):
        return np.array([fill if v is None else float(v) for v in d[name]], dtype=float)

    feats = {
        "resolved": col("resolved"), "log_events": np.log1p(col("n_events")),
        "transfers": col("transfers"), "reopens": col("reopens"),
        "mean_valence": col("mean_valence"), "min_valence": col("min_valence"),
        "has_prev": col("has_prev"), "prev_resolved": col("prev_resolved"),
        "prev_same_subject": col("prev_same_subject"),
    }
    # unresolved contacts in a row, ending with this one (0, 1 or 2)
    unresolved = 1 - feats["resolved"]
    feats["unresolved_streak"] = unresolved * (1 + feats["has_prev"] * (1 - feats["prev_resolved"]))
    for ch in channels:
        feats[f"channel={ch}"] = np.array([c == ch for c in d["channel"]], dtype=float)
        feats[f"prev_channel={ch}"] = np.array([c == ch for c in d["prev_channel"]], dtype=float)
    names = list(feats)
    X = np.column_stack([feats[k] for k in names]) if n else np.zeros((0, len(names)))
    return X, names, channels


def fit_switch_model(contacts: pa.Table, seed: int = 0, test_share: float = 0.3) -> Result | None:
    """Fit and score the switch model on ``contacts`` (see :func:`contacts_expr`);
    None when there are too few contacts or switches to learn from."""
    y = np.array(contacts.column("switch").to_pylist(), dtype=bool) if contacts.num_rows else None
    if y is None or len(y) < MIN_CONTACTS or y.sum() < 5 or (~y).sum() < 5:
        return None
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import GroupShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, names, _ = switch_features(contacts)
    groups = np.array(contacts.column("person_id").to_pylist(), dtype=object)
    split = GroupShuffleSplit(n_splits=1, test_size=test_share, random_state=seed)
    train, test = next(split.split(X, y, groups))
    if len(set(y[train])) < 2 or len(test) == 0:
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0))
    model.fit(X[train], y[train])
    pred = model.predict(X[test])
    prob = model.predict_proba(X[test])[:, 1]
    majority = bool(y[train].mean() >= 0.5)
    coefs = model[-1].coef_[0]
    table = pa.table({"feature": names, "coefficient": coefs.astype(float)})
    order = np.argsort(-np.abs(coefs))
    table = table.take(pa.array(order))
    auc = float(roc_auc_score(y[test], prob)) if len(set(y[test])) == 2 else None
    meta = {
        "method": "logistic regression on standardised features; held-out customers "
                  f"({test_share:.0%}, seed {seed}, grouped by person)",
        "n_train": int(len(train)), "n_test": int(len(test)),
        "switch_rate_test": float(y[test].mean()),
        "accuracy": float((pred == y[test]).mean()),
        "baseline_accuracy": float((y[test] == majority).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y[test], pred)),
        "auc": auc,
    }
    return Result(table, meta)
