"""Does a table add up on this model? One small forward pass with the residual rebuilt at every block.

Inferred and user-declared tables are accepted only through this check, before any measurement:
the capture engine verifies again on real inputs, but a wrong guess must be refused at load time,
naming the block and the error, rather than surface as a failed check later.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from geomcheck.models.adapters.table import ArchitectureTable
from geomcheck.models.adapters.taps import TOLERANCE, Hooks, block_taps, relative_rms

PROBE_SHAPE = (2, 12)


@dataclass(frozen=True)
class ProbeResult:
    """The worst relative RMS error over the blocks; ``failure`` names the first block that broke."""

    ok: bool
    worst: float
    failure: str = ""


def probe_ids(model: nn.Module, seed: int = 0) -> torch.Tensor:
    vocab = int(model.get_input_embeddings().weight.shape[0])
    generator = torch.Generator().manual_seed(seed)
    low = min(3, vocab - 1)  # skip the usual special ids, which some models treat as padding
    return torch.randint(low, vocab, PROBE_SHAPE, generator=generator)


def probe(model: nn.Module, table: ArchitectureTable) -> ProbeResult:
    """Run ``model.base_model`` once and check resid_pre + attn_out (+ mlp_out) at every block."""
    base = model.base_model
    try:
        layout = block_taps(table, base)
    except (AttributeError, TypeError) as exc:
        return ProbeResult(False, float("inf"), f"the table does not fit the module tree ({exc})")
    scale = table.contribution_scale(model.config) or 1.0
    dtype = next(model.parameters()).dtype
    tolerance = TOLERANCE.get(dtype, 1e-2)
    seen: dict[tuple[int, str], torch.Tensor] = {}

    def keep(i: int, what: str):
        def tap(x: torch.Tensor) -> None:
            seen[(i, what)] = x.detach().float().clone()

        return tap

    hooks = Hooks()
    for i, taps in enumerate(layout):
        hooks.on_input(taps.block, keep(i, "pre"))
        hooks.on_output(taps.attn, keep(i, "attn"), scale=scale)
        hooks.on_output(taps.mlp, keep(i, "mlp"), scale=scale)
        if taps.mid is not None:
            hooks.on_input(taps.mid, keep(i, "mid"))
        hooks.on_output(taps.block, keep(i, "post"))
    ids = probe_ids(model).to(model.get_input_embeddings().weight.device)
    try:
        with hooks.installed(), torch.inference_mode():
            out = base(input_ids=ids, output_hidden_states=True, use_cache=False)
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as exc:
        return ProbeResult(False, float("inf"), f"the probe forward pass failed ({type(exc).__name__}: {str(exc)[:120]})")
    hidden = getattr(out, "hidden_states", None)
    worst = 0.0
    for i in range(len(layout)):
        missing = [w for w in ("pre", "attn", "mlp", "post") if (i, w) not in seen]
        if missing:
            return ProbeResult(False, float("inf"), f"block {i}: {', '.join(missing)} never ran")
        pre, attn, mlp, post = (seen[(i, w)] for w in ("pre", "attn", "mlp", "post"))
        if attn.numel() != pre.numel() or mlp.numel() != pre.numel() or post.numel() != pre.numel():
            return ProbeResult(False, float("inf"), f"block {i}: a contribution does not have the residual's shape")
        attn, mlp, post = attn.view(pre.shape), mlp.view(pre.shape), post.view(pre.shape)  # OPT flattens tokens
        checks = [("resid_pre + attn_out + mlp_out vs the block output", pre + attn + mlp, post)]
        if (i, "mid") in seen:
            checks.append(("resid_pre + attn_out vs resid_mid", pre + attn, seen[(i, "mid")]))
        if hidden is not None and len(hidden) == len(layout) + 1 and hidden[i + 1].shape == post.shape:
            target = hidden[i + 1].float()
            if i == len(layout) - 1 and float(relative_rms(post, target)) > tolerance:
                # transformers reports the last hidden state after the final norm
                final_norm = table.find(base, table.final_norm)
                with torch.inference_mode():
                    post = final_norm(post.to(dtype)).float() if final_norm is not None else post
            checks.append(("the block output vs the model's hidden_states", post, target))
        for what, rebuilt, target in checks:
            error = float(relative_rms(rebuilt, target))
            worst = max(worst, error) if error == error else float("inf")
            if not error <= tolerance:
                return ProbeResult(False, error, f"block {i}: relative RMS error {error:.3g} > {tolerance:g} ({what})")
    return ProbeResult(True, worst)
