"""Sources: readers of exports and the mapping of their rows to canonical events."""
