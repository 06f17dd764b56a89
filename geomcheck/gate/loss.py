"""What a change costs the model: next-token loss on the gate's own token ids, paired.

A gate's power means little without the cost of what it misses. Geometry is measured on the
blocks; the damage that matters is what the model then predicts. Both are taken on the same token
ids here, so a damaged copy and the clean model are compared sequence by sequence (paired), and the
standard error of the change is that of the per-sequence differences, far below the spread of the
losses themselves. geomcheck needs the LM head only for this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from geomcheck.models.loader import LoadedModel


def sequence_losses(loaded: LoadedModel, ids: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Mean next-token cross-entropy (nats) of each row of ``ids``, predicting positions 1..T-1 from their prefixes."""
    model = loaded.model
    device = loaded.input_device
    losses = np.empty(len(ids))
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            rows = torch.from_numpy(np.ascontiguousarray(ids[start : start + batch_size])).to(device)
            logits = model(input_ids=rows, use_cache=False).logits[:, :-1].float()
            targets = rows[:, 1:].to(logits.device)
            per_token = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
            losses[start : start + len(rows)] = per_token.view(len(rows), -1).mean(dim=1).double().cpu().numpy()
    return losses


@dataclass(frozen=True)
class LossChange:
    """Mean loss of the clean and the changed model on the same sequences, and the relative change with its SE."""

    clean: float
    changed: float
    relative: float  # (changed - clean) / clean
    relative_se: float
    sequences: int

    def describe(self) -> str:
        if not math.isfinite(self.relative):
            return f"next-token loss {self.changed:.4g} nats vs {self.clean:.4g} (not finite)"
        return f"next-token loss {100 * self.relative:+.2f} % ± {100 * self.relative_se:.2f} ({self.changed:.4g} vs {self.clean:.4g} nats)"


def loss_change(clean: np.ndarray, changed: np.ndarray) -> LossChange:
    """The paired relative change of mean loss; its SE from the per-sequence differences (delta method on the ratio)."""
    if clean.shape != changed.shape or len(clean) < 2:
        raise ValueError(f"paired losses need the same sequences, at least two: got {clean.shape} and {changed.shape}")
    base, new = float(clean.mean()), float(changed.mean())
    if not (math.isfinite(new) and base > 0):
        return LossChange(base, new, math.inf if not math.isfinite(new) else math.nan, math.nan, len(clean))
    difference = changed - clean
    se = float(difference.std(ddof=1) / math.sqrt(len(difference)))
    return LossChange(base, new, (new - base) / base, se / base, len(clean))
