"""What a capture leaves behind: per-site streamed statistics, small enough to keep for any corpus size."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from geomcheck.capture.sites import Point, Site


@dataclass
class SiteStats:
    """Reductions of one site over every captured token.

    norms: (n_seq, seq_len) L2 norm of each token's vector.
    max_abs: (seq_len,) largest |component| seen at each position.
    position_sum: (seq_len, d) float64 sum over sequences, or None when not requested.
    samples: (n_samples, d) vectors at the capture's shared sample index, or None.
    nonfinite: count of token vectors holding NaN/inf; a property refuses to measure a site with any.
    group_max_abs: (n_groups, seq_len) max_abs within each sequence group, or None.
    group_position_sum: (n_groups, seq_len, d) float32 position sums within each sequence group, or None.

    The group arrays exist so that a measurement can be repeated with one group of sequences left
    out (the jackknife behind every standard error) without capturing again.
    """

    norms: np.ndarray
    max_abs: np.ndarray
    position_sum: np.ndarray | None = None
    samples: np.ndarray | None = None
    nonfinite: int = 0
    group_max_abs: np.ndarray | None = None
    group_position_sum: np.ndarray | None = None

    @property
    def position_mean(self) -> np.ndarray | None:
        if self.position_sum is None:
            return None
        return self.position_sum / self.norms.shape[0]


@dataclass(frozen=True)
class BlockVerification:
    """Worst relative RMS error of the reconstructed residual stream at one block over all batches."""

    block: int
    rms_error: float


@dataclass
class Activations:
    """Everything a property may read. Built by capture, or by tests from planted arrays."""

    model: str
    n_blocks: int
    hidden_size: int
    position_scheme: str
    tokens: np.ndarray
    bos: bool
    sites: Mapping[Site, SiteStats]  # a dict, or a lazy mapping in a jackknife replicate (``without_group``)
    sample_index: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    position_table: np.ndarray | None = None
    verification: list[BlockVerification] = field(default_factory=list)
    seed: int = 0
    input_description: str = ""
    groups: np.ndarray | None = None

    @property
    def n_groups(self) -> int:
        """Sequence groups the jackknife can leave out (0 when the capture kept no group statistics)."""
        return 0 if self.groups is None else int(len(np.unique(self.groups)))

    @property
    def n_sequences(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def length(self) -> int:
        return int(self.tokens.shape[1])

    def site(self, block: int | None, point: Point) -> SiteStats | None:
        return self.sites.get(Site(block, point))

    def block_stats(self, point: Point) -> dict[int, SiteStats]:
        """Stats of one point in every block that captured it, keyed by block index."""
        return {site.block: self.sites[site] for site in self.sites if site.point is point and site.block is not None}

    def without_group(self, group: int) -> Activations:
        """These activations with every sequence of ``group`` left out, as if it had never been captured.

        Statistics that cannot be taken apart (a site without group arrays) make the result raise
        ValueError, so a standard error is never computed from numbers that still hold the group.
        """
        if self.groups is None:
            raise ValueError("the capture kept no sequence groups")
        keep = self.groups != group
        if keep.all() or not keep.any():
            raise ValueError(f"group {group} is empty or holds every sequence")
        new_row = np.cumsum(keep) - 1
        in_sample = keep[self.sample_index[:, 0]] if len(self.sample_index) else np.zeros(0, dtype=bool)
        index = self.sample_index[in_sample].copy()
        index[:, 0] = new_row[index[:, 0]]
        if any(stats.group_max_abs is None or (stats.position_sum is not None and stats.group_position_sum is None)
               for stats in self.sites.values()):
            raise ValueError("a site kept no per-group statistics")
        others = np.unique(self.groups[keep])
        sites = _SitesWithout(self.sites, lambda stats: _drop_group(stats, keep, in_sample, group, others))
        return replace(self, tokens=self.tokens[keep], sites=sites, sample_index=index, groups=self.groups[keep])


class _SitesWithout(Mapping):
    """The sites of a jackknife replicate, each reduced when first read: a property reads a few of ~180."""

    def __init__(self, sites: Mapping[Site, SiteStats], drop) -> None:
        self._sites, self._drop, self._done = sites, drop, {}

    def __getitem__(self, site: Site) -> SiteStats:
        if site not in self._done:
            self._done[site] = self._drop(self._sites[site])
        return self._done[site]

    def __contains__(self, site: object) -> bool:
        return site in self._sites

    def __iter__(self):
        return iter(self._sites)

    def __len__(self) -> int:
        return len(self._sites)


def _drop_group(stats: SiteStats, keep: np.ndarray, in_sample: np.ndarray, group: int, others: np.ndarray) -> SiteStats:
    position_sum = None
    group_sum = None
    if stats.position_sum is not None:
        position_sum = stats.position_sum - stats.group_position_sum[group]
        group_sum = stats.group_position_sum
    return SiteStats(
        norms=stats.norms[keep],
        max_abs=stats.group_max_abs[others].max(axis=0),
        position_sum=position_sum,
        samples=None if stats.samples is None else stats.samples[in_sample],
        nonfinite=stats.nonfinite,
        group_max_abs=stats.group_max_abs,
        group_position_sum=group_sum,
    )


def sequence_groups(n_sequences: int, n_groups: int) -> np.ndarray:
    """Contiguous groups of sequences (neighbouring corpus chunks stay together, so their correlation counts)."""
    count = max(1, min(n_groups, n_sequences))
    return (np.arange(n_sequences) * count // max(n_sequences, 1)).astype(np.int64)


def grouped_stats(x: np.ndarray, groups: np.ndarray, *, means: bool = True, sample_index: np.ndarray | None = None) -> SiteStats:
    """SiteStats with group arrays from a full (n_seq, seq_len, d) array: planted activations in tests and tools."""
    count = int(groups.max()) + 1
    x32 = x.astype(np.float32)
    group_max = np.zeros((count, x.shape[1]), dtype=np.float32)
    group_sum = np.zeros((count, *x.shape[1:]), dtype=np.float32) if means else None
    for g in np.unique(groups):
        group_max[g] = np.abs(x32[groups == g]).max(axis=(0, 2))
        if group_sum is not None:
            group_sum[g] = x32[groups == g].sum(axis=0)
    samples = None if sample_index is None else x32[sample_index[:, 0], sample_index[:, 1]]
    return SiteStats(
        norms=np.linalg.norm(x32, axis=-1),
        max_abs=group_max.max(axis=0),
        position_sum=group_sum.astype(np.float64).sum(axis=0) if means else None,
        samples=samples,
        group_max_abs=group_max,
        group_position_sum=group_sum,
    )
