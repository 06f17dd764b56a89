"""Hooks into other libraries' training loops (transformers Trainer)."""
