"""Data: feature and annotation readers, safe loading, the synthetic benchmark, statistics."""
