"""Gating a checkpoint: baselines, the drift test, side-by-side comparison and planted damage."""
