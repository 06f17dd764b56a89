"""Synthetic Activations built from planted numpy arrays, and one planted-vs-noise case per property."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def transformed(acts: Activations, matrix: np.ndarray) -> Activations:
    """The same activations with every vector multiplied by ``matrix`` (an orthogonal map times a scale)."""
    scale = float(np.linalg.norm(matrix[:, 0]))
    sites = {
        site: SiteStats(
            norms=(s.norms * scale).astype(np.float32),
            max_abs=s.max_abs * scale,
            position_sum=None if s.position_sum is None else s.position_sum @ matrix.T,
            samples=None if s.samples is None else (s.samples.astype(np.float64) @ matrix.T).astype(np.float32),
            nonfinite=s.nonfinite,
        )
        for site, s in acts.sites.items()
    }
    table = None if acts.position_table is None else acts.position_table @ matrix.T
    return Activations(
        model=acts.model,
        n_blocks=acts.n_blocks,
        hidden_size=acts.hidden_size,
        position_scheme=acts.position_scheme,
        tokens=acts.tokens,
        bos=acts.bos,
        sites=sites,
        sample_index=acts.sample_index,
        position_table=table,
        seed=acts.seed,
    )


def noise(rng: np.random.Generator, blocks: int = 4, n: int = 8, t: int = 64, d: int = 16) -> np.ndarray:
    return rng.standard_normal((blocks, n, t, d))


def separated_sites(seed: int, separation: float, blocks: int = 4, n: int = 8, t: int = 64, d: int = 16) -> Activations:
    """attn_out and mlp_out clouds centred at +/- separation along one shared axis."""
    rng = np.random.default_rng(seed)
    axis = np.zeros(d)
    axis[0] = separation
    attn = noise(rng, blocks, n, t, d) + axis
    mlp = noise(rng, blocks, n, t, d) - axis
    return build_activations(noise(rng, blocks, n, t, d) + 5, attn=attn, mlp=mlp, samples=512, seed=seed)


def first_position_outlier(seed: int, ratio: float, blocks: int = 3, n: int = 6, t: int = 32, d: int = 16) -> Activations:
    """Unit-norm tokens everywhere except position 0, whose norm is ``ratio``."""
    rng = np.random.default_rng(seed)
    x = noise(rng, blocks, n, t, d)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    x[:, :, 0] *= ratio
    return build_activations(x, seed=seed)


def helix_table(seed: int, cycles: float, noise_level: float, rows: int = 256, d: int = 24) -> np.ndarray:
    """A position table tracing a helix (two sinusoid pairs and a ramp) in a random 5-dim subspace."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows) / rows
    curve = np.column_stack(
        [
            3 * np.cos(2 * np.pi * cycles * t),
            3 * np.sin(2 * np.pi * cycles * t),
            1.5 * np.cos(4 * np.pi * cycles * t),
            1.5 * np.sin(4 * np.pi * cycles * t),
            t,
        ]
    )
    basis = np.linalg.qr(rng.standard_normal((d, 5)))[0]
    return curve @ basis.T + noise_level * rng.standard_normal((rows, d))


def with_table(table: np.ndarray, seed: int) -> Activations:
    rng = np.random.default_rng(seed)
    resid = noise(rng, 2, 4, table.shape[0], table.shape[1]) + table
    return build_activations(resid, position_table=table, bos=False, seed=seed)


def positional(seed: int, strength: float, blocks: int = 3, n: int = 8, t: int = 64, d: int = 16) -> Activations:
    """Tokens = a smooth per-position curve times ``strength`` plus unit noise."""
    rng = np.random.default_rng(seed)
    phase = np.linspace(0, np.pi, t)
    curve = np.zeros((t, d))
    curve[:, 0], curve[:, 1] = np.cos(phase), np.sin(phase)
    return build_activations(noise(rng, blocks, n, t, d) + strength * curve, seed=seed)


def growing(seed: int, growth: float, blocks: int = 6, n: int = 4, t: int = 32, d: int = 16) -> Activations:
    """Block b scaled by growth**b."""
    rng = np.random.default_rng(seed)
    scale = growth ** np.arange(blocks)
    return build_activations(noise(rng, blocks, n, t, d) * scale[:, None, None, None], seed=seed)


def repeated(seed: int, converging: bool, blocks: int = 3, n: int = 6, t: int = 64, d: int = 16) -> Activations:
    """One repeated token after BOS; converging tokens drift from their own state to the BOS state."""
    rng = np.random.default_rng(seed)
    x = noise(rng, blocks, n, t, d)
    bos_state = rng.standard_normal((blocks, 1, 1, d)) * 3
    x[:, :, :1] = bos_state
    if converging:
        weight = np.linspace(0, 1, t - 1)[None, None, :, None]
        x[:, :, 1:] = (1 - weight) * x[:, :, 1:] + weight * bos_state
    tokens = np.repeat(rng.integers(10, 500, size=(n, 1)), t, axis=1)
    tokens[:, 0] = 1
    return build_activations(x, tokens=tokens, seed=seed)


@dataclass(frozen=True)
class Planted:
    """Activations with a property's structure planted, noise without it, and which way the metric moves."""

    build: Callable[[int, bool], Activations]
    metric: str
    higher_when_planted: bool


PLANTED: dict[str, Planted] = {
    "attn_mlp_separation": Planted(lambda s, p: separated_sites(s, 3.0 if p else 0.0), "probe_pca_accuracy", True),
    "first_position_norm": Planted(lambda s, p: first_position_outlier(s, 50.0 if p else 1.0), "ratio", True),
    "positional_helix": Planted(
        lambda s, p: with_table(helix_table(s, 1.5, 0.05) if p else np.random.default_rng(s).standard_normal((256, 24)), s),
        "helix_residual",
        False,
    ),
    "sequence_structure": Planted(lambda s, p: positional(s, 3.0 if p else 0.0), "position_variance_share", True),
    "layer_norm_growth": Planted(lambda s, p: growing(s, 1.5 if p else 1.0), "growth_ratio", True),
    "repeated_token_convergence": Planted(lambda s, p: repeated(s, p), "convergence_rho", True),
}
