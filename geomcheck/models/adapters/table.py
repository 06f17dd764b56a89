"""The shape of an adapter: where each capture point lives in one architecture family's module tree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

PositionScheme = Literal["learned", "rotary"]


@dataclass(frozen=True)
class ArchitectureTable:
    """Attribute paths, relative to the Hugging Face base model (``model.base_model``) or to one block.

    Adding an architecture means writing one of these; nothing else in geomcheck knows module names.
    """

    family: str
    model_types: tuple[str, ...]
    blocks: str
    embed: str
    final_norm: str
    norm_attn: str
    attn: str
    norm_mlp: str
    mlp: str
    position_scheme: PositionScheme
    pos_embed: str | None = None
    prepend_bos: bool = True

    def resolve(self, root: nn.Module, path: str) -> nn.Module:
        module = root
        for part in path.split("."):
            module = getattr(module, part)
        return module

    def block_modules(self, base: nn.Module) -> list[nn.Module]:
        return list(self.resolve(base, self.blocks))
