"""Does a table add up on this model? One small forward pass with the residual rebuilt at every block.

Inferred and user-declared tables are accepted only through this check, before any measurement:
the capture engine verifies again on real inputs, but a wrong guess must be refused at load time,
naming the block and the error, rather than surface as a failed check later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from geomcheck.models.adapters.table import ArchitectureTable
from geomcheck.errors import VerificationError
from geomcheck.models.adapters.taps import TOLERANCE, Hooks, TokenShape, block_taps
from geomcheck.models.adapters.verify import ResidualCheck

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
    """Run ``model.base_model`` once with the residual check at every block (``verify.ResidualCheck``)."""
    base = model.base_model
    try:
        layout = block_taps(table, base)
    except (AttributeError, TypeError) as exc:
        return ProbeResult(False, float("inf"), f"the table does not fit the module tree ({exc})")
    scale = table.contribution_scale(model.config) or 1.0
    check = ResidualCheck(len(layout), TOLERANCE.get(next(model.parameters()).dtype, 1e-2))
    shape = TokenShape()
    hooks = Hooks(shape.restore)
    for i, taps in enumerate(layout):
        wired = check.taps(i, table.scheme == "parallel")
        hooks.on_input(taps.block, shape.remember, wired.resid_pre)
        hooks.on_output(taps.attn, wired.attn_out, scale=scale)
        if taps.mid is not None:
            hooks.on_input(taps.mid, wired.resid_mid)
        hooks.on_output(taps.mlp, wired.mlp_out, scale=scale)
        hooks.on_output(taps.block, wired.block_end)
        hooks.on_output(taps.block, wired.resid_post)
    ids = probe_ids(model).to(model.get_input_embeddings().weight.device)
    positions: list[torch.Tensor] = []
    if table.pos_embed is not None:
        try:
            table_module = table.resolve(base, table.pos_embed)
        except (AttributeError, TypeError) as exc:
            return ProbeResult(False, float("inf"), f"pos_embed {table.pos_embed!r} is not in the module tree ({exc})")
        hooks.on_call_with_input(table_module, positions.append)
    # Residual sums cannot tell attention from MLP (x + a + m adds up either way), and norms are not on
    # the residual path at all: a sequential block must also run its named modules in their order.
    order: list[tuple[int, str]] = []
    watchers = []
    if table.scheme == "sequential":
        for i, taps in enumerate(layout):
            for name, module in (("norm_attn", taps.norm_attn), ("attn", taps.attn), ("norm_mlp", taps.norm_mlp), ("mlp", taps.mlp)):
                if module is not None:
                    watchers.append(module.register_forward_hook(lambda *_, i=i, name=name: order.append((i, name))))
    try:
        with hooks.installed(), torch.inference_mode():
            out = base(input_ids=ids, output_hidden_states=True, use_cache=False)
            swapped = _out_of_order(order)
            if swapped is not None:
                block, early, late = swapped
                return ProbeResult(False, float("inf"), (
                    f"block {block}: the module named {early} ({getattr(table, early)!r}) runs before the one named {late} "
                    f"({getattr(table, late)!r}); a sequential block runs {' -> '.join(SEQUENTIAL_ORDER)}: are they swapped?"))
            if table.pos_embed is not None:
                wrong = _not_positions(positions, ids.shape[1], table.pos_embed_offset)
                if wrong:
                    return ProbeResult(False, float("inf"), f"pos_embed {table.pos_embed!r} {wrong}")
            for i in range(len(layout)):
                missing = check.missing(i)
                if missing:
                    return ProbeResult(False, float("inf"), f"block {i}: {', '.join(missing)} never ran")
            check.settle()
            hidden = getattr(out, "hidden_states", None)
            if hidden is not None:
                check.compare(hidden, table.find(base, table.final_norm))
    except VerificationError as exc:
        return ProbeResult(False, exc.rms_error, f"block {exc.block}: relative RMS error {exc.rms_error:.3g} > {exc.tolerance:g} ({exc.detail})")
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as exc:
        return ProbeResult(False, float("inf"), f"the probe forward pass failed ({type(exc).__name__}: {str(exc)[:120]})")
    finally:
        for watcher in watchers:
            watcher.remove()
    worst = float(np.nanmax(check.worst)) if len(check.worst) else 0.0
    return ProbeResult(True, worst)


SEQUENTIAL_ORDER = ("norm_attn", "attn", "norm_mlp", "mlp")


def _out_of_order(order: list[tuple[int, str]]) -> tuple[int, str, str] | None:
    """(block, the site that ran early, the site it should follow) for the first block whose named modules first
    finished out of the sequential order; None when every block kept it."""
    first: dict[int, dict[str, int]] = {}
    for position, (block, name) in enumerate(order):
        first.setdefault(block, {}).setdefault(name, position)
    for block, seen in sorted(first.items()):
        ranked = [name for name in SEQUENTIAL_ORDER if name in seen]
        for earlier, later in zip(ranked, ranked[1:]):
            if seen[later] < seen[earlier]:
                return block, later, earlier
    return None


def _not_positions(inputs: list[torch.Tensor], length: int, offset: int) -> str:
    """Why the position table's inputs were not the positions 0..length-1 (+ offset); empty when they were.

    The residual check cannot see a wrong ``pos_embed``: it is not on the residual path the check
    rebuilds. A table naming the token embedding there would make the helix check measure token
    embeddings, so the module must be seen looking up positions in the probe pass.
    """
    if not inputs:
        return "never ran in the probe pass"
    expected = torch.arange(offset, offset + length)
    for seen in inputs:
        if seen.dtype.is_floating_point or seen.shape[-1] != length:
            return f"was called with {tuple(seen.shape)} {seen.dtype} input, not {length} position ids"
        if not bool((seen.reshape(-1, length).cpu() == expected).all()):
            return "was called with ids that are not positions 0..n-1 (token ids? then it is the token embedding)"
    return ""
