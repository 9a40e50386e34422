"""What people open: list files, the history warehouse and the analyst report."""
