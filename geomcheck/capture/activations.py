"""What a capture leaves behind: per-site streamed statistics, small enough to keep for any corpus size."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geomcheck.capture.sites import Point, Site


@dataclass
class SiteStats:
    """Reductions of one site over every captured token.

    norms: (n_seq, seq_len) L2 norm of each token's vector.
    max_abs: (seq_len,) largest |component| seen at each position.
    position_sum: (seq_len, d) float64 sum over sequences, or None when not requested.
    samples: (n_samples, d) vectors at the capture's shared sample index, or None.
    nonfinite: count of NaN/inf components seen; a property refuses to measure a site with any.
    """

    norms: np.ndarray
    max_abs: np.ndarray
    position_sum: np.ndarray | None = None
    samples: np.ndarray | None = None
    nonfinite: int = 0

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
    sites: dict[Site, SiteStats]
    sample_index: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    position_table: np.ndarray | None = None
    verification: list[BlockVerification] = field(default_factory=list)
    seed: int = 0
    input_description: str = ""

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
        return {site.block: stats for site, stats in self.sites.items() if site.point is point and site.block is not None}
