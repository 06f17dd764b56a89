"""The shape of an adapter: where each capture point lives in one architecture family's module tree."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from torch import nn

PositionScheme = Literal["learned", "rotary", "alibi", "sinusoidal", "none"]
BlockScheme = Literal["sequential", "parallel"]
TableOrigin = Literal["builtin", "entry point", "user", "inferred"]
ModulePath = str | tuple[str, ...]


def _alternatives(path: ModulePath) -> tuple[str, ...]:
    return (path,) if isinstance(path, str) else tuple(path)


@dataclass(frozen=True)
class ArchitectureTable:
    """Attribute paths, relative to the Hugging Face base model (``model.base_model``) or to one block.

    Adding an architecture means writing one of these; nothing else in geomcheck knows module names.
    ``attn`` and ``mlp`` name the modules whose outputs are *added to the residual stream*: the
    attention itself in a plain pre-norm block, the post-sublayer norm in a sandwich block (Gemma 2,
    OLMo-2), the second projection where the MLP is loose Linear layers (OPT's ``fc2``). A path may
    be a tuple of alternatives, the first one present wins (Falcon's ``ln_attn`` / ``input_layernorm``).
    ``resid_mid_at`` names the module whose *input* is the residual between the two sublayers (the
    MLP's norm by default). Config-dependent parts (``parallel_when``, ``alibi_when``,
    ``residual_scale``, ``refuse_when``) are settled once per model by :meth:`for_config`.
    """

    family: str
    model_types: tuple[str, ...]
    blocks: ModulePath
    embed: ModulePath
    final_norm: ModulePath | None
    norm_attn: ModulePath | None
    attn: ModulePath
    norm_mlp: ModulePath | None
    mlp: ModulePath
    position_scheme: PositionScheme
    pos_embed: ModulePath | None = None
    prepend_bos: bool = True
    scheme: BlockScheme = "sequential"
    resid_mid_at: ModulePath | None = None
    # Config attribute multiplying both contributions before the add (Granite's residual_multiplier).
    residual_scale: str | None = None
    # Rows of the position table before position 0 (OPT, BioGPT and XGLM offset positions by 2).
    pos_embed_offset: int = 0
    # Config attributes of which any true value makes the block parallel (Falcon, GPT-NeoX).
    parallel_when: tuple[str, ...] = ()
    # Config attributes of which any true value means ALiBi instead of ``position_scheme`` (Falcon).
    alibi_when: tuple[str, ...] = ()
    # (config attribute, value, why) triples: a config with that value cannot be captured.
    refuse_when: tuple[tuple[str, object, str], ...] = ()
    origin: TableOrigin = "builtin"
    note: str = ""

    def resolve(self, root: nn.Module, path: ModulePath) -> nn.Module:
        found = self.find(root, path)
        if found is None:
            raise AttributeError(f"{type(root).__name__} has no module {' or '.join(_alternatives(path))}")
        return found

    def find(self, root: nn.Module, path: ModulePath | None) -> nn.Module | None:
        """The first alternative of ``path`` present under ``root``, or None."""
        for option in _alternatives(path) if path is not None else ():
            module = root
            for part in option.split("."):
                module = getattr(module, part, None)
                if module is None:
                    break
            if isinstance(module, nn.Module):
                return module
        return None

    def block_modules(self, base: nn.Module) -> list[nn.Module]:
        return list(self.resolve(base, self.blocks))

    def for_config(self, config: object) -> ArchitectureTable:
        """This table with config-dependent choices made; a refused config raises ValueError(why)."""
        for attribute, value, why in self.refuse_when:
            if getattr(config, attribute, None) == value:
                raise ValueError(f"{attribute}={value!r}: {why}")
        scheme = "parallel" if any(getattr(config, a, False) for a in self.parallel_when) else self.scheme
        positions = "alibi" if any(getattr(config, a, False) for a in self.alibi_when) else self.position_scheme
        return replace(self, scheme=scheme, position_scheme=positions, parallel_when=(), alibi_when=(), refuse_when=())

    def contribution_scale(self, config: object) -> float | None:
        if self.residual_scale is None:
            return None
        value = float(getattr(config, self.residual_scale))
        return None if value == 1.0 else value

    def mid_module(self, block: nn.Module) -> nn.Module | None:
        """The module whose input is resid_mid; None in a parallel block, where no such point exists."""
        if self.scheme == "parallel":
            return None
        return self.find(block, self.resid_mid_at if self.resid_mid_at is not None else self.norm_mlp)

    @property
    def block_kind(self) -> str:
        """The block scheme in the words of docs/architectures.md."""
        if self.scheme == "parallel":
            return "parallel"
        post_norm = "norm" in " ".join(_alternatives(self.attn))
        kind = ("norm-after-only" if self.norm_attn is None else "sandwich-norm") if post_norm else "sequential pre-norm"
        if self.parallel_when:
            kind += f" (parallel when config.{' or '.join(self.parallel_when)})"
        if self.residual_scale:
            kind += f", contributions scaled by config.{self.residual_scale}"
        return kind

    def describe(self) -> str:
        """One line for `geomcheck models` / `sites`: family, block scheme, positions, where the table came from."""
        text = f"family {self.family}: {self.block_kind} blocks, {self.position_scheme} positions, adapter {self.origin}"
        return text + (f" ({self.note})" if self.note else "")
