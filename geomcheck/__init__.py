"""geomcheck: checks that can fail for the latent-space geometry of transformer language models."""

__version__ = "0.1.0"
