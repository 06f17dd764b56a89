"""A cheap fingerprint of a model's weights, recorded with a baseline so a reader can tell which weights it describes."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over every parameter's name, shape, dtype, sum and sum of squares (one pass, no copy to bytes).

    Not a cryptographic identity of the file: two different checkpoints with identical moments
    would collide, which no training run or damage produces. It costs one reduction per tensor.
    """
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            values = tensor.detach().double()
            moments = torch.stack([values.sum(), (values * values).sum()]).cpu().tolist() if values.numel() else [0.0, 0.0]
            digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|{moments[0]:.10e}|{moments[1]:.10e}\n".encode())
    return digest.hexdigest()[:16]
