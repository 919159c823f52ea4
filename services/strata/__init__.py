"""Strata: a governed, active-learning data-labeling pipeline."""

__version__ = "0.1.0"
