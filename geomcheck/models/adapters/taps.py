"""Where each site of a block lives in the module tree, one hook installer, and the residual check's arithmetic.

Three places hook a model: capture (every batch), the adapter probe (one pass, to accept a table) and
table inference (to see the order in which a block's children run). They read the same places, so
the site -> module table is written here once (``block_taps``), hooks are installed and removed one
way (``Hooks``), and the residual stream is rebuilt and compared with one tolerance and one error
measure (``TOLERANCE``, ``relative_rms``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from geomcheck.models.adapters.table import ArchitectureTable

# The rebuilt residual stream (resid_pre + attn_out + mlp_out) against the block's own output, as a
# relative RMS error: exact sums give ~1e-7 in float32; a wrong table gives errors of order 1.
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 5e-3}

Tap = Callable[[torch.Tensor], None]


@dataclass(frozen=True)
class BlockTaps:
    """The modules of one block whose inputs or outputs are sites.

    ``block``: resid_pre is its input, resid_post its output. ``attn`` / ``mlp``: their outputs are what
    the block adds to the residual (times the table's contribution scale). ``mid``: its input is
    resid_mid, where the table has one. ``norm_attn`` / ``norm_mlp``: their outputs, where present.
    """

    block: nn.Module
    attn: nn.Module
    mlp: nn.Module
    mid: nn.Module | None
    norm_attn: nn.Module | None
    norm_mlp: nn.Module | None


def block_taps(table: ArchitectureTable, base: nn.Module) -> list[BlockTaps]:
    """Every block's taps; AttributeError or TypeError when the table does not fit the module tree."""
    return [
        BlockTaps(block, table.resolve(block, table.attn), table.resolve(block, table.mlp), table.mid_module(block),
                  table.find(block, table.norm_attn), table.find(block, table.norm_mlp))
        for block in table.block_modules(base)
    ]


def first_tensor(output: Any) -> torch.Tensor:
    """A module's main output: the hidden states, where a module returns them with attention weights or caches."""
    return output[0] if isinstance(output, (tuple, list)) else output


def hidden_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """A block's (or norm's) hidden-state input, given positionally or as ``hidden_states=``."""
    return args[0] if args else kwargs["hidden_states"]


def relative_rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMS(a - b) / RMS(b) as a 0-d float32 tensor on b's device (no host read: safe inside a hook)."""
    target = b.float()
    scale = torch.linalg.vector_norm(target)
    return torch.linalg.vector_norm(a.float().to(b.device) - target) / torch.where(scale > 0, scale, torch.ones_like(scale))


class TokenShape:
    """Restores (sequences, positions, width) inside a block whose MLP flattens tokens to (tokens, width).

    ``remember`` taps each block's input; ``restore`` is the ``Hooks`` shape function. OPT-style MLPs
    see 2-D inputs, and every reader of a site expects the block's own leading shape.
    """

    def __init__(self) -> None:
        self._lead: torch.Size = torch.Size()

    def remember(self, x: torch.Tensor) -> None:
        self._lead = x.shape[:-1]

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*self._lead, x.shape[-1]) if x.dim() == 2 and len(self._lead) == 2 else x


class Hooks:
    """Forward hooks on modules, each calling its taps in order, removed together.

    ``shape`` may reshape what a tap sees (capture restores (sequences, positions, width) for models
    that flatten tokens in their MLP).
    """

    def __init__(self, shape: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self._handles: list = []
        self._shape = shape or (lambda x: x)

    def on_input(self, module: nn.Module, *taps: Tap | None) -> None:
        live = [tap for tap in taps if tap is not None]
        if live:
            def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
                x = self._shape(hidden_input(args, kwargs))
                for tap in live:
                    tap(x)

            self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def on_output(self, module: nn.Module, *taps: Tap | None, scale: float | None = None) -> None:
        live = [tap for tap in taps if tap is not None]
        if live:
            def hook(_module: nn.Module, _args: tuple, output: Any) -> None:
                x = self._shape(first_tensor(output))
                if scale is not None:
                    x = x * scale
                for tap in live:
                    tap(x)

            self._handles.append(module.register_forward_hook(hook))

    def on_call_with_input(self, module: nn.Module, take: Callable[[torch.Tensor], None]) -> None:
        """``take(first input)`` each time ``module`` is about to run, unshaped (ids, not hidden states)."""
        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            first = args[0] if args else next(iter(kwargs.values()), None)
            if isinstance(first, torch.Tensor):
                take(first.detach())

        self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def on_call(self, module: nn.Module, note: Callable[[], None]) -> None:
        """``note()`` each time ``module`` is about to run, without reading its inputs (table inference's call order)."""
        self._handles.append(module.register_forward_pre_hook(lambda _module, _args: note()))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @contextmanager
    def installed(self) -> Iterator[Hooks]:
        try:
            yield self
        finally:
            self.remove()
