"""The taxonomy: stages and key moments of event types, user entries over defaults,
exact names before patterns, patterns in order; expected labels are written by hand."""

from __future__ import annotations

import re

import pytest

from keymoments.config import STAGES, Taxonomy
from keymoments.config.models import KEY_MOMENTS
from keymoments.taxonomy import default_taxonomy, resolve_taxonomy


def taxonomy(**user) -> Taxonomy:
    return Taxonomy.model_validate(user)


def test_defaults():
    tax = resolve_taxonomy(Taxonomy())
    assert tax.lookup("order_placed") == ("purchase", "purchase")
    assert tax.lookup("ticket_resolved") == ("support", "resolution")
    assert tax.lookup("page_view") == ("consideration", None)
    assert tax.lookup("Resolve ticket") == ("support", "resolution")  # by pattern
    assert tax.lookup("zzz") == (None, None)


def test_default_file_is_valid():
    base = default_taxonomy()
    assert len(base.event_types) > 20 and len(base.patterns) > 5
    for entry in [*base.event_types.values(), *base.patterns]:
        assert entry.stage in (*STAGES, None) and entry.moment in (*KEY_MOMENTS, None)
    for pattern in base.patterns:
        re.compile(pattern.match)


def test_user_entries_override_defaults():
    tax = resolve_taxonomy(taxonomy(event_types={
        "order_placed": {"stage": "loyalty", "moment": "repeat_purchase"},
        "quote_sent": {"stage": "consideration"},
    }))
    assert tax.lookup("order_placed") == ("loyalty", "repeat_purchase")
    assert tax.lookup("quote_sent") == ("consideration", None)
    assert tax.lookup("ticket_opened") == ("support", "support")  # other defaults stay


def test_patterns_in_order_user_patterns_first():
    tax = resolve_taxonomy(taxonomy(patterns=[
        {"match": "refund", "stage": "support", "moment": "resolution"},
        {"match": "refund|return", "stage": "churn"},
        {"match": "^ticket", "stage": "feedback"},
    ]))
    assert tax.lookup("refund_issued") == ("support", "resolution")  # first of two matches
    assert tax.lookup("return_label_printed") == ("churn", None)
    assert tax.lookup("TICKET escalated") == ("feedback", None)  # case-insensitive, before
    # the default pattern 'ticket' (support)
    assert tax.lookup("ticket_opened") == ("support", "support")  # exact names still win


def test_use_defaults_false():
    tax = resolve_taxonomy(taxonomy(use_defaults=False,
                                    event_types={"Compra": {"stage": "purchase",
                                                            "moment": "purchase"}}))
    assert tax.lookup("Compra") == ("purchase", "purchase")
    assert tax.lookup("order_placed") == (None, None)
    assert tax.lookup("Resolve ticket") == (None, None)


@pytest.mark.parametrize("event_type, expected", [
    # short words must not match inside other words
    ("payment_success", ("purchase", "purchase")),  # not 'ces' -> feedback
    ("order_processed", ("purchase", "purchase")),
    ("process_started", (None, None)),
    ("message_read", (None, None)),  # not 'ad' -> awareness
    ("uploaded_document", (None, None)),
    ("entregado", (None, None)),
    ("membership_renewed", ("loyalty", "loyalty")),  # not 'ship' -> delivery
    ("showcase_viewed", ("consideration", None)),  # not 'case' -> support
    # ...but still match as words, in snake, spaced and camel case
    ("Ad Click", ("awareness", "first_interaction")),
    ("google_ads", ("awareness", "first_interaction")),
    ("clickAd", ("awareness", "first_interaction")),
    ("NPS answered", ("feedback", "feedback")),
    ("npsScore", ("feedback", "feedback")),
    ("surveyNps", ("feedback", "feedback")),
    ("OrderShipped", ("purchase", "post_purchase")),
    ("shipment_delayed", ("purchase", "post_purchase")),
    ("newCase", ("support", "support")),
    ("case_opened", ("support", "support")),
    # a failed or abandoned purchase step: purchase stage, no purchase event
    ("payment_declined", ("purchase", None)),
    ("checkout_abandoned", ("purchase", None)),
    ("Purchase Failed", ("purchase", None)),
    ("failedPayment", ("purchase", None)),
    ("order_rejected", ("purchase", None)),
    ("order_placed", ("purchase", "purchase")),
    ("login_failed", (None, None)),
    # an account's creation is onboarding, its closing churn, anything else of it neither
    ("account_created", ("onboarding", "first_interaction")),
    ("createAccount", ("onboarding", "first_interaction")),
    ("new_account", ("onboarding", "first_interaction")),
    ("account_opened", ("onboarding", "first_interaction")),
    ("account_closed", ("churn", None)),
    ("AccountDeleted", ("churn", None)),
    ("account_snapshot", (None, None)),
    ("account_login", (None, None)),
])
def test_default_patterns_match_words_not_fragments(event_type, expected):
    assert resolve_taxonomy(Taxonomy()).lookup(event_type) == expected


WS_YAML = """\
name: tax
taxonomy:
  event_types:
    Refund Requested: {stage: support, moment: support}
  patterns:
    - {match: "^vip", stage: loyalty, moment: loyalty}
sources:
  log:
    path: log.csv
    identifiers: {customer_id: cid}
    event_type: what
    ts: ts
  survey:
    path: survey.csv
    identifiers: {customer_id: cid}
    event_type: {value: order_placed}
    stage: {value: Feedback}
    ts: ts
"""

LOG = """\
cid,what,ts
1,order_placed,2024-01-01T00:00:00Z
1,Refund Requested,2024-01-02T00:00:00Z
1,vip_upgrade,2024-01-03T00:00:00Z
1,Resolve ticket,2024-01-04T00:00:00Z
1,zzz,2024-01-05T00:00:00Z
"""


def test_stage_and_moment_are_filled_at_ingest(make_workspace):
    ws = make_workspace(WS_YAML, {"log.csv": LOG,
                                  "survey.csv": "cid,ts\n1,2024-01-06T00:00:00Z\n"})
    ws.ingest("log")
    ws.ingest("survey")
    rows = ws.con.execute(
        "SELECT event_type, stage, moment, source FROM events ORDER BY ts").fetchall()
    assert rows == [
        ("order_placed", "purchase", "purchase", "log"),
        ("Refund Requested", "support", "support", "log"),  # workspace entry
        ("vip_upgrade", "loyalty", "loyalty", "log"),  # workspace pattern
        ("Resolve ticket", "support", "resolution", "log"),  # default pattern
        ("zzz", None, None, "log"),
        # the mapping's stage wins over the taxonomy's; the moment still comes from it
        ("order_placed", "feedback", "purchase", "survey"),
    ]
