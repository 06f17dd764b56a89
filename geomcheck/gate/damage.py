"""Deliberately damaged copies of a loaded checkpoint, to show which damage the checks and baselines catch.

Every builder is a pure function: it deep-copies the model, damages the copy (seeded where random)
and returns a new LoadedModel that keeps the original ``ref``, so a GeomSession that runs it under
another name (``GeomSession.add_model``) compares it with the clean checkpoint's baseline.
"""

from __future__ import annotations

import copy
import dataclasses
import math
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


def _check_pair(loaded: LoadedModel, first: int, second: int, function: str) -> None:
    _check_block(loaded, first, "first", function)
    _check_block(loaded, second, "second", function)
    if first == second:
        raise ValueError(f"The 'second' parameter of {function} must differ from 'first'. Got {second!r} for both instead.")


def swap_blocks(loaded: LoadedModel, first: int, second: int) -> LoadedModel:
    """Blocks ``first`` and ``second`` exchange places in the stack (weights intact, order wrong)."""
    _check_pair(loaded, first, second, "swap_blocks")
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


def _modules_with(loaded: LoadedModel, attribute: str) -> list[nn.Module]:
    return [module for module in loaded.model.modules() if hasattr(module, attribute)]


def rotary_base(loaded: LoadedModel, factor: float) -> LoadedModel:
    """The rotary base multiplied by ``factor``: a converter that read ``rope_theta`` from the wrong field.

    Every rotary module's inverse frequencies ``base^(-2i/d)`` are raised to ``log(factor * base) / log(base)``,
    which is the table a model built with the other base would hold; the config is updated to match.
    """
    if not (isinstance(factor, (int, float)) and factor > 0 and factor != 1):
        raise ValueError(f"The 'factor' parameter of rotary_base must be a number > 0 other than 1. Got {factor!r} instead.")
    damaged = copy_model(loaded, f"rotary base x {factor:g}")
    config = damaged.model.config
    parameters = getattr(config, "rope_parameters", None)
    base = float(parameters.get("rope_theta") if isinstance(parameters, dict) and parameters.get("rope_theta") else getattr(config, "rope_theta", 10000.0))
    rotary = _modules_with(damaged, "inv_freq")
    if not rotary:
        raise ValueError(f"{loaded.ref.text} has no rotary embedding (no module holds 'inv_freq')")
    power = math.log(base * factor) / math.log(base)
    with torch.no_grad():
        for module in rotary:
            for name in ("inv_freq", "original_inv_freq"):
                table = getattr(module, name, None)
                if isinstance(table, torch.Tensor):
                    table.copy_(table.double().pow(power).to(table.dtype))
    if isinstance(parameters, dict):
        parameters["rope_theta"] = base * factor
    elif hasattr(config, "rope_theta"):
        config.rope_theta = base * factor
    return damaged


def norm_epsilon(loaded: LoadedModel, epsilon: float) -> LoadedModel:
    """Every norm's epsilon set to ``epsilon``: a config field mistranslated by a converter (1e-5 read as 1e-2)."""
    if not (isinstance(epsilon, (int, float)) and epsilon > 0):
        raise ValueError(f"The 'epsilon' parameter of norm_epsilon must be a number > 0. Got {epsilon!r} instead.")
    damaged = copy_model(loaded, f"norm epsilon {epsilon:g}")
    changed = 0
    for module in damaged.model.modules():
        for attribute in ("variance_epsilon", "eps", "epsilon"):
            if isinstance(getattr(module, attribute, None), float) and "norm" in type(module).__name__.lower():
                setattr(module, attribute, float(epsilon))
                changed += 1
    if not changed:
        raise ValueError(f"{loaded.ref.text} has no norm module with an epsilon attribute")
    return damaged


def _attention(loaded: LoadedModel, block: int) -> nn.Module:
    return loaded.table.resolve(loaded.table.block_modules(loaded.base)[block], loaded.table.attn)


def _projection(attention: nn.Module, names: tuple[str, ...], what: str) -> nn.Linear:
    for name in names:
        module = getattr(attention, name, None)
        if isinstance(module, nn.Linear):
            return module
    raise ValueError(f"the attention module ({type(attention).__name__}) has no {what} projection named {' or '.join(names)}")


QUERY, KEY, OUTPUT = ("q_proj", "query"), ("k_proj", "key"), ("o_proj", "out_proj", "dense")


def swap_query_key(loaded: LoadedModel, first: int, second: int) -> LoadedModel:
    """The query and key projections of blocks ``first`` and ``second`` exchanged (a shard map off by some blocks)."""
    _check_pair(loaded, first, second, "swap_query_key")
    damaged = copy_model(loaded, f"query and key projections of blocks {first} and {second} swapped")
    a, b = _attention(damaged, first), _attention(damaged, second)
    with torch.no_grad():
        for names, what in ((QUERY, "query"), (KEY, "key")):
            x, y = _projection(a, names, what), _projection(b, names, what)
            kept = x.weight.detach().clone()
            x.weight.copy_(y.weight)
            y.weight.copy_(kept)
            if x.bias is not None and y.bias is not None:
                kept = x.bias.detach().clone()
                x.bias.copy_(y.bias)
                y.bias.copy_(kept)
    return damaged


def transpose_output(loaded: LoadedModel, blocks: tuple[int, ...]) -> LoadedModel:
    """The attention output projection of each of ``blocks`` transposed (a Conv1D / Linear layout mix-up)."""
    for block in blocks:
        _check_block(loaded, block, "blocks", "transpose_output")
    damaged = copy_model(loaded, f"attention output projection transposed in block(s) {', '.join(map(str, blocks))}")
    with torch.no_grad():
        for block in blocks:
            projection = _projection(_attention(damaged, block), OUTPUT, "output")
            if projection.weight.shape[0] != projection.weight.shape[1]:
                raise ValueError(f"block {block}'s output projection is not square ({tuple(projection.weight.shape)}): it cannot be transposed in place")
            projection.weight.copy_(projection.weight.detach().T.clone())
    return damaged


def drop_biases(loaded: LoadedModel) -> LoadedModel:
    """Every bias of every block zeroed: a converter that did not map the bias tensors (Qwen2's q/k/v biases)."""
    damaged = copy_model(loaded, "block biases dropped")
    dropped = 0
    with torch.no_grad():
        for block in damaged.table.block_modules(damaged.base):
            for name, parameter in block.named_parameters():
                if name.endswith("bias") and parameter.ndim == 1:
                    parameter.zero_()
                    dropped += 1
    if not dropped:
        raise ValueError(f"{loaded.ref.text}'s blocks have no biases to drop")
    return damaged


def reset_norms(loaded: LoadedModel, block: int) -> LoadedModel:
    """Block ``block``'s norm weights back to ones: norm tensors that a converter skipped."""
    _check_block(loaded, block, "block", "reset_norms")
    damaged = copy_model(loaded, f"block {block}'s norm weights reset to 1")
    with torch.no_grad():
        for module in damaged.table.block_modules(damaged.base)[block].modules():
            weight = getattr(module, "weight", None)
            if "norm" in type(module).__name__.lower() and isinstance(weight, torch.Tensor):
                weight.fill_(1.0)
                if isinstance(getattr(module, "bias", None), torch.Tensor):
                    module.bias.zero_()
    return damaged


def corrupt_block(loaded: LoadedModel, block: int, fraction: float, seed: int = 0) -> LoadedModel:
    """A ``fraction`` of block ``block``'s matrix entries replaced by draws of the same std: a damaged shard."""
    _check_block(loaded, block, "block", "corrupt_block")
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ValueError(f"The 'fraction' parameter of corrupt_block must be a number in (0, 1]. Got {fraction!r} instead.")
    damaged = copy_model(loaded, f"{fraction:g} of block {block}'s weights corrupted (seed {seed})")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in damaged.table.block_modules(damaged.base)[block].parameters():
            if parameter.ndim < 2:
                continue
            values = parameter.detach().float().cpu()
            hit = torch.rand(values.shape, generator=generator) < fraction
            fresh = torch.randn(values.shape, generator=generator) * float(values.std())
            parameter.copy_(torch.where(hit, fresh, values).to(device=parameter.device, dtype=parameter.dtype))
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
