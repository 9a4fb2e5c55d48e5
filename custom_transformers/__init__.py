"""Transformers used inside the shipped pipeline.

The pickle stores only the *name* of each class (``custom_transformers.cabin.CabinDeck``), not
its code, so this package must be importable wherever ``pipeline.pickle`` is loaded: in the
notebooks and in the service.
"""

from custom_transformers.cabin import CabinDeck
from custom_transformers.dates import DateParts

__all__ = ["CabinDeck", "DateParts"]
