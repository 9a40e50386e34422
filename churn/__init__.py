"""churn: which customers are slipping away, why, and what to do about each of them."""

__version__ = "0.1.0"
