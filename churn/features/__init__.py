"""Behavioural features per customer as of a cutoff, labels, snapshots and segments."""
