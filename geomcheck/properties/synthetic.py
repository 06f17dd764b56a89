"""Activations built from planted numpy arrays, reduced the way capture reduces a model's.

Every property declares a planted case (``PropertyDef.planted``) built from these: structure it must
see, beside noise it must not. They live in the package, not the tests, so a property shipped by
another package can declare its own and be held to the same conformance suite.
"""

from __future__ import annotations

import numpy as np

from geomcheck.capture.activations import Activations, SiteStats
from geomcheck.capture.hooks import sample_index
from geomcheck.capture.sites import Point, Site


def site_stats(x: np.ndarray, index: np.ndarray, *, means: bool = True, samples: bool = True) -> SiteStats:
    """Reduce a full (N, T, d) array the way capture does."""
    return SiteStats(
        norms=np.linalg.norm(x, axis=-1).astype(np.float32),
        max_abs=np.abs(x).max(axis=(0, 2)).astype(np.float32),
        position_sum=x.astype(np.float64).sum(axis=0) if means else None,
        samples=x[index[:, 0], index[:, 1]].astype(np.float32) if samples else None,
    )


def build_activations(
    resid: np.ndarray,
    *,
    attn: np.ndarray | None = None,
    mlp: np.ndarray | None = None,
    final: np.ndarray | None = None,
    tokens: np.ndarray | None = None,
    bos: bool = True,
    position_table: np.ndarray | None = None,
    samples: int = 256,
    seed: int = 0,
) -> Activations:
    """Activations from full arrays: resid/attn/mlp are (blocks, N, T, d); final is (N, T, d).

    attn and mlp default to resid (every site must exist for the properties that read it); final
    defaults to the last block's resid_post scaled to unit RMS per token, like a final RMSNorm.
    """
    n_blocks, n_seq, length, width = resid.shape
    index = sample_index(n_seq, length, samples, seed)
    attn = resid if attn is None else attn
    mlp = resid if mlp is None else mlp
    if final is None:
        last = resid[-1]
        rms = np.sqrt((last**2).mean(axis=-1, keepdims=True))
        final = np.divide(last, rms, out=np.zeros_like(last), where=rms > 0)
    sites: dict[Site, SiteStats] = {Site(None, Point.FINAL_NORM): site_stats(final, index)}
    for b in range(n_blocks):
        sites[Site(b, Point.RESID_POST)] = site_stats(resid[b], index)
        sites[Site(b, Point.ATTN_OUT)] = site_stats(attn[b], index, means=False)
        sites[Site(b, Point.MLP_OUT)] = site_stats(mlp[b], index, means=False)
    if tokens is None:
        tokens = np.arange(n_seq * length, dtype=np.int64).reshape(n_seq, length)
    return Activations(
        model="synthetic",
        n_blocks=n_blocks,
        hidden_size=width,
        position_scheme="learned" if position_table is not None else "rotary",
        tokens=tokens,
        bos=bos,
        sites=sites,
        sample_index=index,
        position_table=position_table,
        seed=seed,
    )


def noise(rng: np.random.Generator, blocks: int = 4, n: int = 8, t: int = 64, d: int = 16) -> np.ndarray:
    return rng.standard_normal((blocks, n, t, d))
