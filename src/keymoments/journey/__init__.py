"""Journeys: events grouped into goal-directed runs of one person."""

from .query import journeys, moment_summary, moments

__all__ = ["journeys", "moments", "moment_summary"]
