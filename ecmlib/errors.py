"""The package's own error type for bad input data (its own module, so that both the data
readers and the safe loaders can raise it without importing each other)."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data; the message names the file (or folder) and the problem."""
