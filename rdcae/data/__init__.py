"""Data sources, patch sampling and the DataModule."""
