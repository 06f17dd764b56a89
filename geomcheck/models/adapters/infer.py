"""An adapter table guessed from the module tree, for model types no table knows.

The guess is a short list of candidate mappings read off the first block's children in the order
they run (found with one forward pass); the first candidate that passes residual verification on
a probe batch is the adapter. None passing is a refusal naming the block and the error, never a
half-right mapping: a wrong guess must not produce numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from geomcheck.models.adapters.probe import ProbeResult, probe, probe_ids
from geomcheck.models.adapters.table import (
    ArchitectureTable,
    BlockScheme,
    PositionScheme,
)
from geomcheck.models.adapters.taps import Hooks

ATTENTION_WORDS = ("attn", "attention", "self_att")
MLP_WORDS = ("mlp", "ffn", "feed_forward", "feedforward", "moe", "expert")


class InferenceRefused(ValueError):
    """No candidate mapping verified; the message says why in one line."""


@dataclass(frozen=True)
class _Tree:
    """What one forward pass revealed about the base model."""

    blocks: str
    order: tuple[str, ...]  # block 0's children in the order they were called
    norms: frozenset[str]
    embed: str
    final_norm: str | None
    pos_embed: str | None
    pos_offset: int
    positions: PositionScheme


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


def _layer_count(config: object) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        value = getattr(text, name, None)
        if isinstance(value, int):
            return value
    return None


def _block_list(base: nn.Module, config: object) -> str:
    expected = _layer_count(config)
    lists = [(name, m) for name, m in base.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if expected is not None:
        lists = [(name, m) for name, m in lists if len(m) == expected]
    if not lists:
        raise InferenceRefused(f"no list of {expected or 'repeated'} blocks found in {type(base).__name__}")
    name, blocks = max(lists, key=lambda item: sum(p.numel() for p in item[1].parameters()))
    kinds = sorted({type(b).__name__ for b in blocks})
    if len(kinds) > 1:
        raise InferenceRefused(f"{name} mixes block kinds ({', '.join(kinds)}): a hybrid stack has no single block layout")
    return name


def _call_order(model: nn.Module, block: nn.Module) -> tuple[str, ...]:
    order: list[str] = []
    hooks = Hooks()
    for name, child in block.named_children():
        if any(True for _ in child.parameters()):  # dropouts and activations hold no weights
            hooks.on_call(child, lambda name=name: order.append(name))
    try:
        with hooks.installed(), torch.inference_mode():
            model.base_model(input_ids=probe_ids(model).to(model.get_input_embeddings().weight.device), use_cache=False)
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise InferenceRefused(f"a forward pass failed ({type(exc).__name__}: {str(exc)[:120]})") from exc
    return tuple(dict.fromkeys(order))


def _read_tree(model: nn.Module) -> _Tree:
    base, config = model.base_model, model.config
    if getattr(config, "is_encoder_decoder", False):
        raise InferenceRefused("an encoder-decoder model: its decoder blocks read the encoder through cross-attention")
    blocks = _block_list(base, config)
    block0 = base.get_submodule(blocks)[0]
    names = {id(m): n for n, m in base.named_modules()}
    embed = names.get(id(model.get_input_embeddings()))
    if embed is None:
        raise InferenceRefused("the input embedding is not part of the base model")
    outside = [(n, m) for n, m in base.named_modules() if not n.startswith(blocks + ".") and n != blocks]
    final = [n for n, m in outside if _is_norm(m) and "emb" not in n]
    positional = [(n, m) for n, m in outside if "pos" in n.split(".")[-1] and isinstance(m, nn.Embedding)]
    pos_embed, offset = None, 0
    if positional:
        pos_embed, table = positional[0]
        limit = getattr(config, "max_position_embeddings", None)
        offset = max(0, table.num_embeddings - limit) if isinstance(limit, int) else 0
    positions: PositionScheme = "learned" if pos_embed else "none"
    if pos_embed is None and any("rotary" in n for n, _ in base.named_modules()):
        positions = "rotary"
    elif pos_embed is None and getattr(config, "alibi", False):
        positions = "alibi"
    return _Tree(
        blocks=blocks,
        order=_call_order(model, block0),
        norms=frozenset(n for n, m in block0.named_children() if _is_norm(m)),
        embed=embed,
        final_norm=final[-1] if final else None,
        pos_embed=pos_embed,
        pos_offset=offset,
        positions=positions,
    )


def _find(order: tuple[str, ...], norms: frozenset[str], words: tuple[str, ...]) -> int | None:
    for index, name in enumerate(order):
        if name not in norms and any(word in name.lower() for word in words):
            return index
    return None


def candidates(tree: _Tree, model_type: str, config: object) -> list[ArchitectureTable]:
    """Plausible mappings, most plausible first: plain pre-norm, sandwich, parallel, norm-after only."""
    order, norms = tree.order, tree.norms
    ia = _find(order, norms, ATTENTION_WORDS)
    im = _find(order, norms, MLP_WORDS)
    if im is None and "fc2" in order:
        im = order.index("fc2")
    if ia is None:
        raise InferenceRefused(f"block 0 has no attention-like child (children run: {', '.join(order) or 'none'})")
    if im is None:
        raise InferenceRefused(f"block 0 has no MLP-like child (children run: {', '.join(order)})")

    def norm_at(index: int) -> str | None:
        return order[index] if 0 <= index < len(order) and order[index] in norms else None

    before_attn, after_attn = norm_at(ia - 1), norm_at(ia + 1)
    before_mlp, after_mlp = norm_at(im - 1), norm_at(im + 1)
    if im > 0 and order[im - 1] == "fc1":
        before_mlp = norm_at(im - 2)
    scale = "residual_multiplier" if isinstance(getattr(config, "residual_multiplier", None), float) else None
    options: list[tuple[str | None, str, str | None, str, BlockScheme]] = [
        (before_attn, order[ia], before_mlp, order[im], "sequential"),
    ]
    if after_attn and after_attn != before_mlp:
        options.append((before_attn, after_attn, before_mlp, after_mlp or order[im], "sequential"))
    options.append((before_attn, order[ia], before_mlp if before_mlp != before_attn else None, order[im], "parallel"))
    if after_attn and after_mlp:
        options.append((None if before_attn in (after_attn, None) else before_attn, after_attn, None, after_mlp, "sequential"))
    tables = []
    for norm_attn, attn, norm_mlp, mlp, scheme in dict.fromkeys(options):
        mid = None if scheme == "parallel" or norm_mlp else order[im]
        tables.append(
            ArchitectureTable(
                family=model_type,
                model_types=(model_type,),
                blocks=tree.blocks,
                embed=tree.embed,
                final_norm=tree.final_norm,
                norm_attn=norm_attn,
                attn=attn,
                norm_mlp=norm_mlp,
                mlp=mlp,
                position_scheme=tree.positions,
                pos_embed=tree.pos_embed,
                pos_embed_offset=tree.pos_offset,
                scheme=scheme,
                resid_mid_at=mid,
                residual_scale=scale,
                origin="inferred",
                note=f"inferred from the module tree and verified on a probe batch: attn_out={attn}, mlp_out={mlp}",
            )
        )
    return tables


def infer_table(model: nn.Module) -> ArchitectureTable:
    """The first candidate mapping that verifies on a probe batch; InferenceRefused otherwise."""
    model_type = model.config.model_type
    tree = _read_tree(model)
    first: ProbeResult | None = None
    for table in candidates(tree, model_type, model.config):
        result = probe(model, table)
        if result.ok:
            return table
        first = first or result
    assert first is not None
    raise InferenceRefused(f"no inferred mapping verifies; the most plausible one fails at {first.failure}")
