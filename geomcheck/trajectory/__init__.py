"""Geometry over a training run: every checkpoint measured on identical inputs, cached, and one trajectory report."""

from geomcheck.trajectory.discover import Checkpoint, NoCheckpointsError, discover
from geomcheck.trajectory.records import CheckpointRecord, CheckPoint, history

__all__ = ["Checkpoint", "CheckPoint", "CheckpointRecord", "NoCheckpointsError", "discover", "history"]
