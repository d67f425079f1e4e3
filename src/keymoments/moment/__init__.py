"""Moments: the first impression, peak, valley and farewell of each journey, the
business key moments it holds, and the remembered score."""

from .extract import extract_moments

__all__ = ["extract_moments"]
