"""Hyperparameter search: search spaces (spaces.py) and the Ray Tune driver (tuner.py)."""
