"""The residual check: each block's output rebuilt from its input plus what attention and the MLP added.

Two places run it: the adapter probe (one short pass, to accept or refuse a table before anything is
measured) and capture (every batch, so a table that fits the probe but not real inputs still fails
loudly). Both wire the same taps from ``ResidualCheck.taps`` into their ``Hooks`` and read the same
verdict, so the arithmetic, the tolerance and the wording of a failure exist once.

Inside a hook nothing is read back to the host: each error is queued as a 0-d tensor, and ``settle``
moves a pass's errors in one transfer after the pass. On a GPU a host read inside a hook would stall
the pass once per block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from geomcheck.errors import VerificationError
from geomcheck.models.adapters.taps import Tap, relative_rms


@dataclass(frozen=True)
class CheckTaps:
    """Where a block's verification reads; ``None`` where capture need not hook for it.

    ``block_end`` is only set for parallel blocks: their MLP may run before their attention, and Falcon
    adds the attention output into the MLP's output in place, so the sum is rebuilt when the block returns.
    """

    resid_pre: Tap | None = None
    attn_out: Tap | None = None
    resid_mid: Tap | None = None
    mlp_out: Tap | None = None
    block_end: Tap | None = None
    resid_post: Tap | None = None


NO_TAPS = CheckTaps()


class ResidualCheck:
    """Rebuilds each block's output from its parts and compares, for the first sequence of each pass.

    A wrong hook shows on any sequence, and rebuilding all of them would cost a tenth of the forward
    pass and twice the hidden states' memory. ``compare`` then holds the rebuilt outputs against the
    model's own ``hidden_states`` once, which proves the resid_post hook reads what transformers reports.
    """

    def __init__(self, n_blocks: int, tolerance: float) -> None:
        self.tolerance = tolerance
        self.resid_pre: dict[int, torch.Tensor] = {}
        self.attn: dict[int, torch.Tensor] = {}
        self.reconstructed: dict[int, torch.Tensor] = {}
        self.worst = np.zeros(n_blocks)
        self.keep_for_hidden_states = True
        self.unverifiable: set[int] = set()
        self.pending: list[tuple[int, torch.Tensor, str]] = []
        self._parallel_mlp: dict[int, torch.Tensor] = {}
        self._ran: set[tuple[int, str]] = set()

    def taps(self, block: int, parallel: bool) -> CheckTaps:
        """The taps for one block; ``parallel`` for blocks whose attention and MLP both read resid_pre."""
        def note(what: str, then: Callable[[torch.Tensor], None]) -> Tap:
            def tap(x: torch.Tensor) -> None:
                self._ran.add((block, what))
                then(x)

            return tap

        if parallel:
            mlp = note("mlp", lambda x: self._parallel_mlp.__setitem__(block, self._rows(x).clone()))
            end: Tap | None = lambda _x: self.finish_block(block, self._parallel_mlp.pop(block))  # noqa: E731
        else:
            mlp, end = note("mlp", lambda x: self.finish_block(block, x)), None
        return CheckTaps(
            resid_pre=note("pre", lambda x: self.record_resid_pre(block, x)),
            attn_out=note("attn", lambda x: self.record_attn(block, x)),
            resid_mid=lambda x: self.record_mid(block, x),
            mlp_out=mlp,
            block_end=end,
            resid_post=note("post", lambda x: self.block_output(block, x)),
        )

    def missing(self, block: int) -> list[str]:
        """The parts of ``block`` whose hooks never ran in the last pass (a table naming the wrong modules)."""
        return [what for what in ("pre", "attn", "mlp", "post") if (block, what) not in self._ran]

    @staticmethod
    def _rows(x: torch.Tensor) -> torch.Tensor:
        return x.detach()[:1]

    def _queue(self, block: int, error: torch.Tensor, what: str) -> None:
        self.pending.append((block, error, what))

    def record_resid_pre(self, block: int, resid_pre: torch.Tensor) -> None:
        self.resid_pre[block] = self._rows(resid_pre)

    def record_attn(self, block: int, attn_out: torch.Tensor) -> None:
        self.attn[block] = self._rows(attn_out)

    def record_mid(self, block: int, resid_mid: torch.Tensor) -> None:
        if block in self.resid_pre and block in self.attn:
            self._queue(block, relative_rms(self.resid_pre[block] + self.attn[block], self._rows(resid_mid)), "resid_pre + attn_out vs resid_mid")

    def finish_block(self, block: int, mlp_out: torch.Tensor) -> None:
        pre, attn = self.resid_pre.pop(block, None), self.attn.pop(block, None)
        if pre is None or attn is None:
            return  # ``missing`` names the part that never ran
        mlp = self._rows(mlp_out)
        if mlp.numel() != pre.numel() or attn.numel() != pre.numel():
            raise VerificationError(block, float("inf"), self.tolerance, "a contribution does not have the residual's shape")
        self.reconstructed[block] = pre + attn.view(pre.shape) + mlp.view(pre.shape)

    def block_output(self, block: int, resid_post: torch.Tensor) -> None:
        rebuilt = self.reconstructed.get(block) if self.keep_for_hidden_states else self.reconstructed.pop(block, None)
        if rebuilt is not None:
            self._queue(block, relative_rms(rebuilt, self._rows(resid_post).view(rebuilt.shape)), "resid_pre + attn_out + mlp_out vs the block output")

    def settle(self) -> None:
        """After a pass: its queued errors to the host in one transfer, then judged (VerificationError)."""
        queued, self.pending = self.pending, []
        self._ran.clear()
        if not queued:
            return
        first = queued[0][1].device
        errors = torch.stack([error.float().to(first) for _, error, _ in queued]).cpu().tolist()
        for (block, _, what), error in zip(queued, errors):
            self.record(block, error, what)

    def record(self, block: int, error: float, what: str) -> None:
        if block in self.unverifiable:
            return
        if not np.isfinite(error):
            # NaN/inf in the block's parts (bad weights, an overflow) leave nothing to compare: not a
            # capture fault. The sites count the values and the properties reading them turn the count
            # into an invalid measurement, so only the checks that read this block fail.
            self.unverifiable.add(block)
            self.worst[block] = np.nan
            return
        self.worst[block] = max(self.worst[block], error)
        if not error <= self.tolerance:
            raise VerificationError(block, error, self.tolerance, what)

    def compare(self, hidden_states: tuple[torch.Tensor, ...], final_norm: nn.Module | None) -> None:
        """The rebuilt outputs against ``hidden_states``; transformers stores the last one after the final norm."""
        last = len(self.worst) - 1
        for block, rebuilt in sorted(self.reconstructed.items()):
            if block + 1 >= len(hidden_states):
                raise VerificationError(block, float("inf"), self.tolerance, f"the model reports {len(hidden_states) - 1} blocks' hidden_states, the table {last + 1}")
            target = self._rows(hidden_states[block + 1])
            if target.numel() != rebuilt.numel():
                continue  # a model whose hidden_states are not the blocks' outputs: the hooks' check stands alone
            target = target.view(rebuilt.shape)
            error = float(relative_rms(rebuilt, target))  # after the forward pass: a host read is fine here
            if block == last and error > self.tolerance and final_norm is not None:
                # ``forward`` rather than a call, so capture's own final_norm hook does not record this pass.
                error = float(relative_rms(final_norm.forward(rebuilt.to(target.dtype)), target))
            self.record(block, error, "reconstructed resid_post vs the model's hidden_states")
        self.reconstructed.clear()
        self.keep_for_hidden_states = False
