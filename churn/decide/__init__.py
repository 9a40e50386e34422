"""Daily decisions: scoring, the quality gate, the win-back policy and outcome measurement."""
