"""Inference: the model in the loop (registry, calibrated predictions, auto-accept)."""
