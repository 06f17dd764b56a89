"""Does a table add up on this model? One small forward pass with the residual rebuilt at every block.

Inferred and user-declared tables are accepted only through this check, before any measurement:
the capture engine verifies again on real inputs, but a wrong guess must be refused at load time,
naming the block and the error, rather than surface as a failed check later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from geomcheck.models.adapters.table import ArchitectureTable

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 5e-3}
PROBE_SHAPE = (2, 12)


@dataclass(frozen=True)
class ProbeResult:
    """The worst relative RMS error over the blocks; ``failure`` names the first block that broke."""

    ok: bool
    worst: float
    failure: str = ""


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _relative_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = float(torch.linalg.vector_norm(b.float())) or 1.0
    return float(torch.linalg.vector_norm(a.float() - b.float())) / scale


def probe_ids(model: nn.Module, seed: int = 0) -> torch.Tensor:
    vocab = int(model.get_input_embeddings().weight.shape[0])
    generator = torch.Generator().manual_seed(seed)
    low = min(3, vocab - 1)  # skip the usual special ids, which some models treat as padding
    return torch.randint(low, vocab, PROBE_SHAPE, generator=generator)


def probe(model: nn.Module, table: ArchitectureTable) -> ProbeResult:
    """Run ``model.base_model`` once and check resid_pre + attn_out (+ mlp_out) at every block."""
    base = model.base_model
    try:
        blocks = table.block_modules(base)
        layout = [(b, table.resolve(b, table.attn), table.resolve(b, table.mlp), table.mid_module(b)) for b in blocks]
    except (AttributeError, TypeError) as exc:
        return ProbeResult(False, float("inf"), f"the table does not fit the module tree ({exc})")
    scale = table.contribution_scale(model.config) or 1.0
    dtype = next(model.parameters()).dtype
    tolerance = TOLERANCE.get(dtype, 1e-2)
    seen: dict[tuple[int, str], torch.Tensor] = {}
    handles = []

    def keep(i: int, what: str, of_input: bool, times: float = 1.0):
        def hook(module: nn.Module, args: tuple, kwargs_or_output: Any, output: Any = None) -> None:
            if of_input:
                x = args[0] if args else kwargs_or_output["hidden_states"]
            else:
                x = _first(kwargs_or_output)
            seen[(i, what)] = x.detach().float().clone() * times

        return hook

    for i, (block, attn, mlp, mid) in enumerate(layout):
        handles.append(block.register_forward_pre_hook(keep(i, "pre", True), with_kwargs=True))
        handles.append(attn.register_forward_hook(keep(i, "attn", False, scale)))
        handles.append(mlp.register_forward_hook(keep(i, "mlp", False, scale)))
        if mid is not None:
            handles.append(mid.register_forward_pre_hook(keep(i, "mid", True), with_kwargs=True))
        handles.append(block.register_forward_hook(keep(i, "post", False)))
    ids = probe_ids(model).to(model.get_input_embeddings().weight.device)
    try:
        with torch.inference_mode():
            out = base(input_ids=ids, output_hidden_states=True, use_cache=False)
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as exc:
        return ProbeResult(False, float("inf"), f"the probe forward pass failed ({type(exc).__name__}: {str(exc)[:120]})")
    finally:
        for handle in handles:
            handle.remove()
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
            if i == len(layout) - 1 and _relative_rms(post, target) > tolerance:
                # transformers reports the last hidden state after the final norm
                final_norm = table.find(base, table.final_norm)
                with torch.inference_mode():
                    post = final_norm(post.to(dtype)).float() if final_norm is not None else post
            checks.append(("the block output vs the model's hidden_states", post, target))
        for what, rebuilt, target in checks:
            error = _relative_rms(rebuilt, target)
            worst = max(worst, error) if error == error else float("inf")
            if not error <= tolerance:
                return ProbeResult(False, error, f"block {i}: relative RMS error {error:.3g} > {tolerance:g} ({what})")
    return ProbeResult(True, worst)
