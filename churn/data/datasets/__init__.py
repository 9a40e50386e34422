"""Data sets in the churn data contract: the Complete Journey grocery data and a synthetic generator."""

from churn.data.datasets import complete_journey, synthetic

__all__ = ["complete_journey", "synthetic"]
