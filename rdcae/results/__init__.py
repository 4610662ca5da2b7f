"""What a run leaves for a person: its figures (figures.py) and its metrics, summary and
TensorBoard hyperparameters (summary.py)."""
