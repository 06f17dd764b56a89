"""How big a model a config.json asks for, stated before anything is built from it.

A committed config.json is as hostile as any other file in a pull request: ``num_hidden_layers:
100000`` used to hang a run for minutes while transformers built blocks, and ``hidden_size: 1e6`` ended
in a MemoryError after a minute. The sizes are read here first: each must be a whole number in a sane
range, and the weights they imply (a standard estimate: attention and MLP matrices per block, embedding
and head) must fit the memory of the device they would be built on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

# Far beyond any released decoder (LLaMA-3-405B: 126 blocks, width 16384, MLP 53248, vocab 128256).
LIMITS = {"num_hidden_layers": 1_024, "hidden_size": 65_536, "intermediate_size": 524_288, "vocab_size": 4_194_304,
          "num_attention_heads": 1_024, "max_position_embeddings": 16_777_216}
ALIASES = {"num_hidden_layers": ("n_layer", "num_layers"), "hidden_size": ("n_embd", "d_model"),
           "intermediate_size": ("n_inner", "ffn_dim"), "num_attention_heads": ("n_head",)}
BYTES = {torch.float32: 4, torch.bfloat16: 2, torch.float16: 2}


@dataclass(frozen=True)
class SizeEstimate:
    parameters: int
    bytes: int

    def describe(self) -> str:
        return f"about {self.parameters / 1e9:.3g} billion parameters, {self.bytes / 2**30:.3g} GiB of weights"


MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few kB; a multi-megabyte one is refused unread


def read_config(path: Path) -> tuple[dict | None, str | None]:
    """config.json as a mapping read with a size cap, or why it cannot be read (transformers is not asked yet)."""
    from geomcheck.safe_read import UnsafeReadError, read_capped

    if not path.exists():
        return None, None  # a layout without one: transformers says what is missing
    try:
        raw = read_capped(path, MAX_CONFIG_BYTES, "config.json")
    except (UnsafeReadError, OSError) as exc:
        return None, f"cannot be read ({exc})"
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except RecursionError:
        return None, "is nested too deeply to read"
    except ValueError as exc:
        return None, f"is not valid JSON ({exc})"
    if not isinstance(data, dict):
        return None, f"holds a {type(data).__name__}, not a JSON object"
    return data, None


def config_problem(config: object) -> str | None:
    """Why the config's sizes cannot be right, or None: a size that is not a whole number or is out of range.

    ``config``: a transformers config or config.json's mapping (its ``text_config`` is checked too).
    """
    if isinstance(config, dict):
        for field, limit in LIMITS.items():
            if field in config and config[field] is None:
                return f"{field} is null; it must be a whole number in [1, {limit:,}]"
        nested = config.get("text_config")
        found = config_problem(_Fields(nested)) if isinstance(nested, dict) else None
        return found or config_problem(_Fields(config))
    for name, limit in LIMITS.items():
        for field in (name, *ALIASES.get(name, ())):
            value = getattr(config, field, None)
            if value is None or isinstance(value, (list, tuple)):
                continue  # per-block lists (a few architectures) are the model's own business
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                return f"{field} is {value!r}; it must be a whole number in [1, {limit:,}]"
    return None


class _Fields:
    """A mapping read like a config object (``getattr``)."""

    def __init__(self, data: dict) -> None:
        self._data = data

    def __getattr__(self, name: str) -> object:
        return self._data.get(name)


def _size(config: object, name: str) -> int | None:
    for field in (name, *ALIASES.get(name, ())):
        value = getattr(config, field, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def estimate(config: object, dtype: torch.dtype) -> SizeEstimate | None:
    """Weights a decoder of this config holds: 4 d^2 + 3 d f per block, the embedding and the head (untied)."""
    width, depth = _size(config, "hidden_size"), _size(config, "num_hidden_layers")
    if width is None or depth is None:
        return None
    mlp = _size(config, "intermediate_size") or 4 * width
    vocab = _size(config, "vocab_size") or 0
    parameters = depth * (4 * width * width + 3 * width * mlp) + 2 * vocab * width
    return SizeEstimate(parameters, parameters * BYTES.get(dtype, 4))


def memory_of(device: str) -> int | None:
    """Bytes of memory the weights would be built in: the GPU's, or the machine's RAM (None when unknown)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        return int(torch.cuda.get_device_properties(index).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None
