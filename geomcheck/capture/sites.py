"""Capture-site names: parsed once into a frozen value, formatted back for people, selected by glob."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from enum import Enum

from geomcheck.errors import SiteError


class Point(str, Enum):
    """Where in the forward pass a site sits; block points repeat in every block, in this order."""

    EMBED = "embed"
    POS_EMBED = "pos_embed"
    NORM_ATTN = "norm_attn"
    ATTN_OUT = "attn_out"
    RESID_MID = "resid_mid"
    NORM_MLP = "norm_mlp"
    MLP_OUT = "mlp_out"
    RESID_POST = "resid_post"
    FINAL_NORM = "final_norm"

    @property
    def in_block(self) -> bool:
        return self in BLOCK_POINTS


BLOCK_POINTS: tuple[Point, ...] = (
    Point.NORM_ATTN,
    Point.ATTN_OUT,
    Point.RESID_MID,
    Point.NORM_MLP,
    Point.MLP_OUT,
    Point.RESID_POST,
)

_BLOCK_SITE = re.compile(r"blocks\.(\d+)\.([a-z_]+)")


@dataclass(frozen=True, order=True)
class Site:
    """A capture point: ``block`` is None for the model-level points (embed, pos_embed, final_norm)."""

    block: int | None
    point: Point

    def __post_init__(self) -> None:
        if self.point.in_block != (self.block is not None):
            raise SiteError(f"point {self.point.value!r} {'needs' if self.point.in_block else 'takes no'} block index")

    @property
    def name(self) -> str:
        if self.block is None:
            return self.point.value
        return f"blocks.{self.block}.{self.point.value}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> Site:
        match = _BLOCK_SITE.fullmatch(name)
        try:
            if match:
                return cls(int(match.group(1)), Point(match.group(2)))
            return cls(None, Point(name))
        except (ValueError, SiteError):
            valid = ", ".join(p.value for p in Point if not p.in_block)
            per_block = ", ".join(p.value for p in BLOCK_POINTS)
            raise SiteError(
                f"unknown site {name!r}; sites are {valid} or blocks.<i>.<point> with point one of {per_block}"
            ) from None


def all_sites(n_blocks: int, *, learned_positions: bool, block_points: tuple[Point, ...] = BLOCK_POINTS) -> list[Site]:
    """Every site a model offers, in forward-pass order.

    ``block_points`` is what the block scheme offers (docs/architectures.md): a parallel block has
    no resid_mid, a block without pre-sublayer norms (OLMo-2) has no norm_attn / norm_mlp.
    """
    sites = [Site(None, Point.EMBED)]
    if learned_positions:
        sites.append(Site(None, Point.POS_EMBED))
    for block in range(n_blocks):
        sites.extend(Site(block, point) for point in block_points)
    sites.append(Site(None, Point.FINAL_NORM))
    return sites


def select_sites(available: list[Site], patterns: list[str] | tuple[str, ...]) -> list[Site]:
    """Sites matching any glob pattern, in forward-pass order; a pattern that matches nothing is an error.

    Silently ignoring a typo like ``blocks.*.atn_out`` would make a check measure nothing, so every
    pattern must earn at least one site.
    """
    chosen: set[Site] = set()
    for pattern in patterns:
        hits = {site for site in available if fnmatch.fnmatchcase(site.name, pattern)}
        if not hits:
            raise SiteError(
                f"site pattern {pattern!r} matches no site of this model "
                f"({len(available)} sites, from {available[0].name} to {available[-1].name}); "
                "see `geomcheck sites --model REF`"
            )
        chosen |= hits
    return [site for site in available if site in chosen]
