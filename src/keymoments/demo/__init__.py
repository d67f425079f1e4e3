"""A seeded demo shop: multichannel customer journeys written as the exports a company
keeps in silos (web analytics, orders, tickets, surveys, reviews, CRM), the
``keymoments.yaml`` mapping them, and the truth planted in them.

>>> from keymoments.demo import generate_demo, DemoTruth
"""

from .generator import generate_demo, write_flat_events_parquet
from .truth import DemoTruth

__all__ = ["generate_demo", "write_flat_events_parquet", "DemoTruth"]
