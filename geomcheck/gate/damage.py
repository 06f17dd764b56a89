"""Deliberately damaged copies of a loaded checkpoint, to show which damage the checks and baselines catch.

Every builder is a pure function: it deep-copies the model, damages the copy (seeded where random)
and returns a new LoadedModel that keeps the original ``ref``, so a GeomSession that runs it under
another name (``GeomSession.add_model``) compares it with the clean checkpoint's baseline.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from geomcheck.models.loader import LoadedModel
from geomcheck.spec.schema import Inputs, Spec

NOISE_SCALES = (0.01, 0.03, 0.1, 0.3)


@dataclass(frozen=True)
class Variant:
    """One named damage: ``build`` turns a clean LoadedModel into a damaged copy."""

    name: str
    description: str
    build: Callable[[LoadedModel], LoadedModel]


def copy_model(loaded: LoadedModel, what: str) -> LoadedModel:
    model = copy.deepcopy(loaded.model)
    model.eval()
    return dataclasses.replace(loaded, model=model, source=f"{loaded.source}, damaged: {what}", notes=[*loaded.notes, f"damaged: {what}"])


def _check_block(loaded: LoadedModel, block: int, parameter: str, function: str) -> None:
    if not 0 <= block < loaded.n_blocks:
        raise ValueError(f"The {parameter!r} parameter of {function} must be a block index in [0, {loaded.n_blocks - 1}]. Got {block!r} instead.")


def swap_blocks(loaded: LoadedModel, first: int, second: int) -> LoadedModel:
    """Blocks ``first`` and ``second`` exchange places in the stack (weights intact, order wrong)."""
    _check_block(loaded, first, "first", "swap_blocks")
    _check_block(loaded, second, "second", "swap_blocks")
    if first == second:
        raise ValueError(f"The 'second' parameter of swap_blocks must differ from 'first'. Got {second!r} for both instead.")
    damaged = copy_model(loaded, f"blocks {first} and {second} swapped")
    blocks = damaged.table.resolve(damaged.base, damaged.table.blocks)  # the ModuleList itself, not a copy
    blocks[first], blocks[second] = blocks[second], blocks[first]
    return damaged


def add_noise(loaded: LoadedModel, scale: float, seed: int = 0) -> LoadedModel:
    """Every weight tensor gets Gaussian noise of standard deviation ``scale`` x that tensor's own std.

    A tensor whose values are all equal (std 0, e.g. an untrained norm) gets ``scale`` x its mean
    absolute value instead; tied tensors (embedding and LM head) are perturbed once.
    """
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"The 'scale' parameter of add_noise must be a number > 0. Got {scale!r} instead.")
    damaged = copy_model(loaded, f"Gaussian noise at {scale:g} x each tensor's std (seed {seed})")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in damaged.model.parameters():
            values = parameter.detach().float()
            spread = float(values.std()) if values.numel() > 1 else 0.0
            spread = spread or float(values.abs().mean())
            noise = torch.randn(parameter.shape, generator=generator) * (scale * spread)
            parameter.add_(noise.to(device=parameter.device, dtype=parameter.dtype))
    return damaged


def reinit_block(loaded: LoadedModel, block: int, seed: int = 0) -> LoadedModel:
    """Block ``block`` back to random init: matrices N(0, initializer_range), norm weights 1, biases 0."""
    _check_block(loaded, block, "block", "reinit_block")
    damaged = copy_model(loaded, f"block {block} re-initialised (seed {seed})")
    std = float(getattr(damaged.model.config, "initializer_range", 0.02) or 0.02)
    generator = torch.Generator().manual_seed(seed)
    target = damaged.table.block_modules(damaged.base)[block]
    with torch.no_grad():
        for name, parameter in target.named_parameters():
            if parameter.ndim >= 2:
                fresh = torch.randn(parameter.shape, generator=generator) * std
            elif name.endswith("bias"):
                fresh = torch.zeros(parameter.shape)
            else:
                fresh = torch.ones(parameter.shape)
            parameter.copy_(fresh.to(device=parameter.device, dtype=parameter.dtype))
    return damaged


def remove_final_norm(loaded: LoadedModel) -> LoadedModel:
    """The final norm before the LM head replaced by ``nn.Identity``."""
    damaged = copy_model(loaded, "final norm removed")
    path = damaged.table.final_norm
    parent_path, _, attribute = path.rpartition(".")
    parent = damaged.table.resolve(damaged.base, parent_path) if parent_path else damaged.base
    setattr(parent, attribute, nn.Identity())
    return damaged


def standard_variants(n_blocks: int, seed: int = 0, noise_scales: tuple[float, ...] = NOISE_SCALES) -> tuple[Variant, ...]:
    """The damages of docs/gating.md for a model of ``n_blocks`` blocks: swap, noise, re-init, no final norm."""
    middle = n_blocks // 2
    variants = [Variant(f"swap-{middle - 1}-{middle}", f"blocks {middle - 1} and {middle} swapped",
                        lambda lm: swap_blocks(lm, middle - 1, middle))]
    variants += [Variant(f"noise-{scale:g}", f"Gaussian noise, {scale:g} x each tensor's std",
                         lambda lm, scale=scale: add_noise(lm, scale, seed)) for scale in noise_scales]
    variants.append(Variant(f"reinit-{middle}", f"block {middle} re-initialised", lambda lm: reinit_block(lm, middle, seed)))
    variants.append(Variant("no-final-norm", "final norm replaced by nn.Identity", remove_final_norm))
    return tuple(variants)


def reduce_inputs(spec: Spec, sequences: int, tokens: int) -> Spec:
    """``spec`` with every input set (the spec's and each check's own) capped at ``sequences`` x ``tokens``."""
    for name, value in (("sequences", sequences), ("tokens", tokens)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"The {name!r} parameter of reduce_inputs must be an int >= 1. Got {value!r} instead.")

    def capped(inputs: Inputs | None, base_sequences: int, base_tokens: int) -> Inputs:
        current = inputs or Inputs()
        return current.model_copy(update={"sequences": min(sequences, current.sequences or base_sequences),
                                          "tokens": min(tokens, current.tokens or base_tokens)})

    base = spec.base_inputs()
    checks = tuple(check.model_copy(update={"inputs": capped(check.inputs, base.sequences, base.tokens)}) for check in spec.checks)
    return spec.model_copy(update={"inputs": capped(spec.inputs, base.sequences, base.tokens), "checks": checks})
