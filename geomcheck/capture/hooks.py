"""Forward hooks that stream each selected site into preallocated reducers, and verify the residual stream.

Memory is fixed by (sequences x positions) for norms plus (positions x width) per mean and
(samples x width) per sampled site, all allocated before the first batch; per-batch activations
are dropped as soon as the hooks have reduced them. Logits are never computed.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from geomcheck.capture.activations import (
    Activations,
    BlockVerification,
    SiteStats,
    sequence_groups,
)
from geomcheck.capture.inputs import TokenBatch
from geomcheck.capture.sites import BLOCK_POINTS, Point, Site, all_sites, select_sites
from geomcheck.models.adapters import ArchitectureTable
from geomcheck.models.adapters.taps import TOLERANCE, Hooks, Tap, TokenShape, block_taps
from geomcheck.models.adapters.verify import NO_TAPS, ResidualCheck
from geomcheck.models.loader import LoadedModel

VERIFY_TOKENS = 32  # length of the one-sequence pass compared with the model's hidden_states
# The architecture tables whose hooks were checked against each model's hidden_states in this process
# (a pass costs about one read of the weights: ~2-4 % of a small capture on the CPU, so it is paid once
# per model and table, not per capture).
_MAPPING_VERIFIED: weakref.WeakKeyDictionary[nn.Module, set[ArchitectureTable]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class CapturePlan:
    """Which sites to hook and which reducers to keep; patterns are globs over site names."""

    sites: tuple[str, ...] = ("*",)
    position_means: tuple[str, ...] = ("embed", "blocks.*.resid_post", "final_norm")
    sampled: tuple[str, ...] = ("embed", "blocks.*.attn_out", "blocks.*.mlp_out", "blocks.*.resid_post", "final_norm")
    samples: int = 512
    skip_first_positions_in_samples: int = 0
    batch_size: int = 8
    verify: bool = True
    progress: bool | None = None
    seed: int = 0
    groups: int = 8  # sequence groups for the jackknife standard errors (see geomcheck.gate.uncertainty)

    def covers(self, samples: tuple[str, ...], position_means: tuple[str, ...]) -> bool:
        """Whether this plan keeps samples and per-position means at these site patterns."""
        return set(samples) <= set(self.sampled) and set(position_means) <= set(self.position_means)


def model_sites(loaded: LoadedModel) -> list[Site]:
    points = block_points(loaded.table, loaded.table.block_modules(loaded.base)[0])
    return all_sites(loaded.n_blocks, learned_positions=loaded.table.pos_embed is not None, block_points=points)


def block_points(table: ArchitectureTable, block: nn.Module) -> tuple[Point, ...]:
    """The block sites this table's scheme offers, judged on the first block's modules."""
    present = {
        Point.NORM_ATTN: table.find(block, table.norm_attn) is not None,
        Point.RESID_MID: table.mid_module(block) is not None,
        Point.NORM_MLP: table.find(block, table.norm_mlp) is not None,
    }
    return tuple(point for point in BLOCK_POINTS if present.get(point, True))


def _matching(available: list[Site], patterns: tuple[str, ...]) -> set[Site]:
    """Like select_sites, but a reducer pattern may legitimately miss (e.g. final_norm not selected)."""
    import fnmatch

    return {s for s in available if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)}


def sample_index(n_seq: int, length: int, count: int, seed: int, skip_first: int = 0) -> np.ndarray:
    """A seeded choice of (sequence, position) tokens shared by every sampled site, sorted by sequence.

    Sharing one index means an attention-output sample and an MLP-output sample come from the same
    tokens, so a probe between them cannot separate on which tokens were drawn.
    """
    positions = np.arange(skip_first, length)
    grid = np.stack(np.meshgrid(np.arange(n_seq), positions, indexing="ij"), axis=-1).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    if count < len(grid):
        grid = grid[np.sort(rng.choice(len(grid), size=count, replace=False))]
    return grid.astype(np.int64)


class _Reducer:
    """Streams one site's activations into SiteStats.

    On the CPU the reductions are host memory already and are folded in inside the hook, so nothing is
    held until the batch ends. On an accelerator nothing inside the hook reads a tensor on the host:
    each result goes to its final place in the host arrays through a ``_HostSink`` (a side stream
    copying into pinned memory on CUDA), so the device neither waits mid-pass nor keeps a batch's
    results until the batch ends; a sequence group's position sum stays on the device until its last
    sequence has passed and then travels once.
    """

    def __init__(self, stats: SiteStats, index: np.ndarray, groups: np.ndarray, sink: _HostSink | None = None) -> None:
        self.stats = stats
        self.index = index
        self.groups = groups
        self.sink = sink
        self.group_end = np.searchsorted(groups, np.arange(int(groups.max()) + 1), side="right") if len(groups) else groups
        self.rows: slice | None = None
        self.spans: list[tuple[int, int, int]] = []
        self.sample_at: torch.Tensor | None = None
        self.sample_span = slice(0, 0)
        self.open_sums: dict[int, torch.Tensor] = {}
        # Accelerator path only: each token's largest |component|, reduced to group maxima after the run.
        self.peaks = sink.host_array((len(groups), stats.norms.shape[1])) if sink is not None else None

    def start_batch(self, rows: slice | None, device: torch.device | None = None) -> None:
        """Get ready for the rows of the next forward pass; ``None`` ignores a pass (verification only)."""
        self.rows = rows
        self.sample_at = None
        if rows is None:
            return
        self.spans = _group_spans(self.groups, rows)
        if self.stats.samples is not None:
            in_batch = np.flatnonzero((self.index[:, 0] >= rows.start) & (self.index[:, 0] < rows.stop))
            if len(in_batch):
                # Rows of the batch flattened to (tokens, width); the index is sorted by sequence, so this
                # batch's samples are one contiguous run of the samples array. Moved to the device here,
                # outside the forward pass: a copy from the host inside a hook would wait.
                flat = (self.index[in_batch, 0] - rows.start) * self.stats.norms.shape[1] + self.index[in_batch, 1]
                self.sample_at = torch.from_numpy(flat).to(device)
                self.sample_span = slice(int(in_batch[0]), int(in_batch[-1]) + 1)

    def update(self, x: torch.Tensor) -> None:
        """Inside the hook: as few passes over the batch as give every statistic."""
        if self.rows is None:
            return
        x = x.detach()
        if x.shape[0] == 1 and self.rows.stop - self.rows.start > 1:
            x = x.expand(self.rows.stop - self.rows.start, -1, -1)  # shared position embeddings
        if self.sample_at is not None and self.sample_at.device != x.device:
            self.sample_at = self.sample_at.to(x.device)  # a later shard of a dispatched model
        if folds_in_hook(x.device):
            self._fold(x)
        else:
            self._send(x)

    def _first_rows(self, group: int, lo: int) -> bool:
        """Whether this batch's span of ``group`` starts the group (its sum is written, not added to)."""
        return self.rows.start + lo == 0 or self.groups[self.rows.start + lo - 1] != group

    def _fold(self, x: torch.Tensor) -> None:
        """CPU: reduce straight into the host arrays (``out=`` where torch allows it: no temporaries)."""
        if x.dtype != torch.float32:
            x = x.float()
        stats, rows = self.stats, self.rows
        norms = stats.norms[rows]
        torch.linalg.vector_norm(x, dim=-1, out=torch.from_numpy(norms))
        # Largest |component| as max(amax, -amin) over the contiguous last axis: two cheap reductions
        # (the CPU's inf-norm kernel is over ten times slower) and no temporary the size of x.
        peaks = torch.maximum(x.amax(dim=-1), x.amin(dim=-1).neg()).numpy()
        written = []
        for group, lo, hi in self.spans:
            np.maximum(stats.group_max_abs[group], peaks[lo:hi].max(axis=0), out=stats.group_max_abs[group])
            if stats.group_position_sum is not None:
                # Per sequence group (contiguous rows), so the jackknife can leave a group out later.
                target = torch.from_numpy(stats.group_position_sum[group])
                if self._first_rows(group, lo):
                    torch.sum(x[lo:hi], dim=0, out=target)
                else:
                    target.add_(x[lo:hi].sum(dim=0))
                written.append(stats.group_position_sum[group])
        if self.sample_at is not None:
            samples = stats.samples[self.sample_span]
            torch.index_select(x.reshape(-1, x.shape[-1]), 0, self.sample_at, out=torch.from_numpy(samples))
            written.append(samples)
        bad = int(np.count_nonzero(~np.isfinite(norms)))  # tokens whose vector holds NaN/inf
        if bad:  # the site is invalid anyway; keep its statistics finite for the report
            stats.nonfinite += bad
            for array in (norms, stats.group_max_abs, *written):
                np.nan_to_num(array, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def _send(self, x: torch.Tensor) -> None:
        """Accelerator: reduce on the device without a float32 copy of x; results travel without a wait."""
        sink, rows, stats = self.sink, self.rows, self.stats
        sink.send(torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32), stats.norms[rows])
        sink.send(torch.linalg.vector_norm(x, ord=float("inf"), dim=-1, dtype=torch.float32), self.peaks[rows])
        if stats.group_position_sum is not None:
            for group, lo, hi in self.spans:
                partial = x[lo:hi].sum(dim=0, dtype=torch.float32)
                total = partial if self._first_rows(group, lo) else self.open_sums.pop(group).add_(partial)
                if rows.start + hi == self.group_end[group]:  # the group's last sequence: its sum is final
                    sink.send(total, stats.group_position_sum[group])
                else:
                    self.open_sums[group] = total
        if self.sample_at is not None:
            picked = x.reshape(-1, x.shape[-1]).index_select(0, self.sample_at)
            sink.send(picked.float(), stats.samples[self.sample_span])

    def finish(self) -> None:
        """After the last batch, with the sink drained: what the accelerator path leaves to the host."""
        if self.peaks is None:
            return
        stats = self.stats
        bad = int(np.count_nonzero(~np.isfinite(stats.norms)))
        stats.nonfinite += bad
        arrays = [stats.norms, self.peaks] + [a for a in (stats.samples, stats.group_position_sum) if a is not None]
        if bad:  # the site is invalid anyway; keep its statistics finite for the report
            for array in arrays:
                np.nan_to_num(array, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        for group in range(len(stats.group_max_abs)):
            stats.group_max_abs[group] = self.peaks[self.groups == group].max(axis=0)
        self.peaks = None


def folds_in_hook(device: torch.device) -> bool:
    """Whether a reducer folds its results in inside the hook: on the CPU there is no transfer to wait for."""
    return device.type == "cpu"


class _HostSink:
    """Moves an accelerator's results into host arrays without making the host or the device wait.

    On CUDA the copies run on a side stream into pinned host memory: the forward pass goes on while
    they travel, and the caching allocator keeps each result's device memory until its copy is done
    (``record_stream``). Elsewhere (other accelerators, and the CPU when tests take this path) a copy
    is a plain one. ``drain`` is the one wait, after the last batch.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def host_array(self, shape: tuple[int, ...]) -> np.ndarray:
        """Uninitialised float32 host memory (every element is written by a send): pinned where copies are asynchronous."""
        if self.stream is not None:
            try:
                return torch.empty(shape, dtype=torch.float32, pin_memory=True).numpy()
            except RuntimeError:  # no page-locked memory left: pageable copies still work, more slowly
                pass
        return np.empty(shape, dtype=np.float32)

    def send(self, tensor: torch.Tensor, destination: np.ndarray) -> None:
        target = torch.from_numpy(destination)
        if self.stream is None:
            target.copy_(tensor)
            return
        self.stream.wait_stream(torch.cuda.current_stream(self.device))  # after the kernels that made it
        with torch.cuda.stream(self.stream):
            target.copy_(tensor, non_blocking=True)
        tensor.record_stream(self.stream)

    def drain(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()


def flush_to_host(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """Host copies of ``tensors`` with one device-to-host transfer (none when they already live on the CPU)."""
    if not tensors:
        return []
    if all(t.device.type == "cpu" for t in tensors):
        return [t.numpy() for t in tensors]
    target = tensors[0].device
    flat = torch.cat([t.reshape(-1).float().to(target) for t in tensors]).cpu().numpy()
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset : offset + t.numel()].reshape(tuple(t.shape)))
        offset += t.numel()
    return out


def _group_spans(groups: np.ndarray, rows: slice) -> list[tuple[int, int, int]]:
    """(group, first, end) row ranges within a batch, relative to the batch; groups are contiguous."""
    ids = groups[rows]
    cuts = [0, *(np.flatnonzero(np.diff(ids)) + 1).tolist(), len(ids)]
    return [(int(ids[a]), a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def capture(loaded: LoadedModel, batch: TokenBatch, plan: CapturePlan | None = None) -> Activations:
    """Run the model over ``batch`` once, reducing every selected site; verify the residual stream."""
    plan = plan or CapturePlan()
    available = model_sites(loaded)
    selected = select_sites(available, list(plan.sites))
    means = _matching(selected, plan.position_means)
    sampled = _matching(selected, plan.sampled)
    n_seq, length = batch.ids.shape
    index = sample_index(n_seq, length, plan.samples, plan.seed, plan.skip_first_positions_in_samples)
    groups = sequence_groups(n_seq, plan.groups)
    n_groups = int(groups.max()) + 1
    width = loaded.hidden_size
    device = loaded.input_device  # the embedding's device: the first shard of a dispatched model
    sink = None if folds_in_hook(device) else _HostSink(device)
    # Every element of these is written once per capture (a group's sum by its first rows, then added
    # to), so they start uninitialised: pinned memory on CUDA, so the copies from the device need not wait.
    host = sink.host_array if sink is not None else (lambda shape: np.empty(shape, dtype=np.float32))
    stats = {
        site: SiteStats(
            norms=host((n_seq, length)),
            max_abs=np.zeros(length, dtype=np.float32),
            samples=host((len(index), width)) if site in sampled else None,
            group_max_abs=np.zeros((n_groups, length), dtype=np.float32),
            group_position_sum=host((n_groups, length, width)) if site in means else None,
        )
        for site in selected
    }
    reducers = {site: _Reducer(s, index, groups, sink) for site, s in stats.items()}
    dtype = next(loaded.model.parameters()).dtype
    verifier = ResidualCheck(loaded.n_blocks, TOLERANCE.get(dtype, 1e-2)) if plan.verify else None
    hooks = _install_hooks(loaded, reducers, verifier)
    ids = torch.from_numpy(batch.ids)
    try:
        if verifier is not None and mapping_check_pending(loaded, plan):
            _verify_against_hidden_states(loaded, ids[:1, :VERIFY_TOKENS].to(device), reducers, verifier)
            _MAPPING_VERIFIED.setdefault(loaded.model, set()).add(loaded.table)
        starts = range(0, n_seq, plan.batch_size)
        # tqdm's disable=None shows the bar only on an interactive terminal.
        disable = None if plan.progress is None else not plan.progress
        for start in tqdm(starts, desc=f"capture {loaded.ref.text}", unit="batch", disable=disable):
            rows = slice(start, min(start + plan.batch_size, n_seq))
            for reducer in reducers.values():
                reducer.start_batch(rows, device)
            with torch.inference_mode():
                loaded.base(input_ids=ids[rows].to(device), use_cache=False)
            if verifier is not None:
                verifier.settle()
        if sink is not None:
            sink.drain()
    finally:
        hooks.remove()
    for reducer in reducers.values():
        reducer.finish()
    position_table = None
    if loaded.table.pos_embed is not None and loaded.table.position_scheme == "learned":
        weight = loaded.table.resolve(loaded.base, loaded.table.pos_embed).weight
        position_table = weight[loaded.table.pos_embed_offset :].detach().float().cpu().numpy().copy()
    for site_stats in stats.values():  # totals from the group partials, summed in float64
        site_stats.max_abs = site_stats.group_max_abs.max(axis=0)
        if site_stats.group_position_sum is not None:
            site_stats.position_sum = site_stats.group_position_sum.sum(axis=0, dtype=np.float64)
    verification = [BlockVerification(i, float(e)) for i, e in enumerate(verifier.worst)] if verifier else []
    return Activations(
        model=loaded.ref.text,
        n_blocks=loaded.n_blocks,
        hidden_size=width,
        position_scheme=loaded.table.position_scheme,
        tokens=batch.ids,
        bos=batch.bos,
        sites=stats,
        sample_index=index,
        position_table=position_table,
        verification=verification,
        seed=plan.seed,
        input_description=batch.description,
        groups=groups,
    )


def mapping_check_pending(loaded: LoadedModel, plan: CapturePlan) -> bool:
    """Whether the next capture of this model starts with the short hidden_states pass (progress counts it)."""
    return plan.verify and loaded.table not in _MAPPING_VERIFIED.get(loaded.model, ())


def _verify_against_hidden_states(loaded: LoadedModel, ids: torch.Tensor, reducers: dict[Site, _Reducer], verifier: ResidualCheck) -> None:
    """One short pass that the reducers ignore: the hooks' rebuilt residual stream against ``hidden_states``."""
    for reducer in reducers.values():
        reducer.start_batch(None)
    with torch.inference_mode():
        out = loaded.base(input_ids=ids, output_hidden_states=True, use_cache=False)
        verifier.settle()
        verifier.compare(out.hidden_states, loaded.table.find(loaded.base, loaded.table.final_norm))


def _install_hooks(loaded: LoadedModel, reducers: dict[Site, _Reducer], verifier: ResidualCheck | None) -> Hooks:
    """Hook only what selected sites or verification need (the table of places: ``taps.block_taps``)."""
    table, base = loaded.table, loaded.base
    shape = TokenShape()
    hooks = Hooks(shape.restore)

    def feed(site: Site) -> Tap | None:
        reducer = reducers.get(site)
        return reducer.update if reducer else None

    scale = table.contribution_scale(loaded.model.config)  # a sublayer's output as added to the residual
    if table.pos_embed is not None:
        hooks.on_output(table.resolve(base, table.pos_embed), feed(Site(None, Point.POS_EMBED)))
    final_norm = table.find(base, table.final_norm)
    if final_norm is not None:
        hooks.on_output(final_norm, feed(Site(None, Point.FINAL_NORM)))
    for i, taps in enumerate(block_taps(table, base)):
        check = verifier.taps(i, table.scheme == "parallel") if verifier else NO_TAPS
        hooks.on_input(taps.block, shape.remember, feed(Site(None, Point.EMBED)) if i == 0 else None, check.resid_pre)
        if taps.norm_attn is not None:
            hooks.on_output(taps.norm_attn, feed(Site(i, Point.NORM_ATTN)))
        hooks.on_output(taps.attn, feed(Site(i, Point.ATTN_OUT)), check.attn_out, scale=scale)
        if taps.mid is not None:
            hooks.on_input(taps.mid, feed(Site(i, Point.RESID_MID)), check.resid_mid)
        if taps.norm_mlp is not None:
            hooks.on_output(taps.norm_mlp, feed(Site(i, Point.NORM_MLP)))
        hooks.on_output(taps.mlp, feed(Site(i, Point.MLP_OUT)), check.mlp_out, scale=scale)
        hooks.on_output(taps.block, check.block_end)
        hooks.on_output(taps.block, feed(Site(i, Point.RESID_POST)), check.resid_post)
    return hooks
