"""One resolver for every model reference (alias, hub id, directory, .gguf, ``random:``) and the loader."""

from __future__ import annotations

import json
import os
import pickle
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from safetensors import SafetensorError
from torch import nn

from geomcheck.errors import ModelLoadError
from geomcheck.models import gguf_cache
from geomcheck.models.adapters import ArchitectureTable, adapter_for, check_model_type
from geomcheck.models.gguf_header import check_gguf_architecture
from geomcheck.models.refs import (  # noqa: F401  (re-exported: resolving needs no torch, see refs)
    HUB_ALIASES,
    PACKAGED,
    QWEN_PARTS,
    RANDOM_PREFIX,
    LoadOptions,
    ModelRef,
    PackagedGGUF,
    RefKind,
    resolve,
)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
AUTO_DEVICE = "auto"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A loaded causal LM with what capture needs to drive it."""

    ref: ModelRef
    model: nn.Module
    tokenizer: object
    table: ArchitectureTable
    source: str
    load_seconds: float
    seed: int
    notes: list[str] = field(default_factory=list)

    @property
    def base(self) -> nn.Module:
        """The decoder stack without the LM head: capture never needs logits."""
        return self.model.base_model

    @property
    def input_device(self) -> torch.device:
        """Where token ids go: the device of the input embedding, which is the first shard of a dispatched model."""
        return self.model.get_input_embeddings().weight.device

    @property
    def n_blocks(self) -> int:
        return len(self.table.block_modules(self.base))

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def context_length(self) -> int:
        config = self.model.config
        return int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions"))

    @property
    def learned_positions(self) -> bool:
        return self.table.position_scheme == "learned"

    @property
    def bos_token_id(self) -> int | None:
        token = getattr(self.tokenizer, "bos_token_id", None)
        return token if token is not None else getattr(self.model.config, "bos_token_id", None)

    @property
    def bos(self) -> BosDefault:
        """Whether inputs start with BOS when a spec does not say, and why (from the tokenizer)."""
        return bos_default(self.tokenizer, self.bos_token_id, self.table.prepend_bos)

    @property
    def default_bos(self) -> bool:
        return self.bos.prepend

    def config_summary(self) -> dict[str, object]:
        return {
            "model_type": self.model.config.model_type,
            "family": self.table.family,
            "block_scheme": self.table.scheme,
            "adapter": self.table.origin,
            "blocks": self.n_blocks,
            "hidden_size": self.hidden_size,
            "position_scheme": self.table.position_scheme,
            "context_length": self.context_length,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
        }


@dataclass(frozen=True)
class BosDefault:
    """The BOS choice for inputs that do not set ``bos``, with the evidence it came from."""

    prepend: bool
    why: str


BOS_PROBE_TEXT = "The quick brown fox"


def bos_default(tokenizer: object, bos_token_id: int | None, family_default: bool) -> BosDefault:
    """Prepend BOS exactly when the model's own tokenizer does.

    Position-0 geometry depends on it: a model trained without BOS keeps its attention sink on the
    first text token, and a BOS it never saw in training moves the outlier elsewhere (measured on
    Qwen2.5: position-0 ratio 37-77x without, 0.7-1.5x with ``<|endoftext|>`` in front). The
    tokenizer's behaviour on a probe string decides; ``add_bos_token`` is reported with it. Only a
    model without a tokenizer falls back to the architecture family's habit.
    """
    if tokenizer is None or not callable(tokenizer):
        return BosDefault(family_default, f"no tokenizer; the {'LLaMA' if family_default else 'GPT-2'}-style family default")
    if bos_token_id is None:
        return BosDefault(False, "the tokenizer and config define no BOS token")
    try:
        ids = list(tokenizer(BOS_PROBE_TEXT, add_special_tokens=True)["input_ids"])
    except (TypeError, KeyError, ValueError) as exc:
        return BosDefault(family_default, f"the tokenizer could not encode a probe ({type(exc).__name__}); family default")
    declared = getattr(tokenizer, "add_bos_token", None)
    flag = f", add_bos_token={declared}" if isinstance(declared, bool) else ""
    if ids and ids[0] == bos_token_id:
        return BosDefault(True, f"the tokenizer adds BOS (id {bos_token_id}) when encoding{flag}")
    return BosDefault(False, f"the tokenizer adds no BOS when encoding{flag}")


def load(ref: ModelRef | str, options: LoadOptions | None = None) -> LoadedModel:
    """Load weights (or a seeded random-init twin) and tokenizer; every failure is a ModelLoadError."""
    from transformers import AutoModelForCausalLM

    ref = resolve(ref) if isinstance(ref, str) else ref
    options = options or LoadOptions()
    if not sys.stderr.isatty():
        # Per-tensor loading bars are noise in CI logs and pytest output; geomcheck prints its own progress.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if options.dtype not in DTYPES:
        raise ModelLoadError(ref.text, f"unknown dtype {options.dtype!r}", f"use one of: {', '.join(DTYPES)}")
    started = time.perf_counter()
    directory, source = _local_directory(ref, options)
    _check_config_file(ref, directory)
    kwargs = _loading_kwargs(ref, directory, options)
    tokenizer = _load_tokenizer(ref, directory, options)
    config = _load_config(ref, directory, options)
    _check_size(ref, directory, config, options)
    if not ref.random_init:
        _check_weight_files(ref, directory)
    check_model_type(config.model_type, config)  # refuse encoders and the like before any weights load
    if options.device == AUTO_DEVICE:
        kwargs["device_map"] = AUTO_DEVICE
    try:
        if ref.random_init:
            torch.manual_seed(options.seed)
            # Drawn where it will run: initialising a 1B twin on the CPU and copying it took ~33 s before an
            # H200 saw it. A device's generator differs from the CPU's, so a twin is reproducible per device.
            with torch.device(options.device if options.device not in ("cpu", AUTO_DEVICE) else "cpu"):
                model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[options.dtype])
            source = f"random init (seed {options.seed}) of the config of {source}"
            if options.device == AUTO_DEVICE:
                model = _dispatch(model)
        else:
            model, info = AutoModelForCausalLM.from_pretrained(directory, dtype=DTYPES[options.dtype], output_loading_info=True, **kwargs)
    except pickle.UnpicklingError:
        raise _refused_pickle(ref, directory) from None  # torch's own text suggests weights_only=False: never
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        if "weights_only" in str(exc):
            raise _refused_pickle(ref, directory) from None
        raise ModelLoadError(ref.text, f"loading weights from {directory} failed ({_first_line(exc)})", "check the checkpoint files") from exc
    unexpected: list[str] = []
    if not ref.random_init:
        unexpected = _weights_held(ref, directory, info)
    model.eval()
    if options.device not in ("cpu", AUTO_DEVICE):
        model.to(options.device)
    table = adapter_for(model, adapter_files=options.adapters)
    loaded = LoadedModel(ref, model, tokenizer, table, source, time.perf_counter() - started, options.seed)
    loaded.notes.extend(adapter_notes(table))
    if unexpected:
        loaded.notes.append(f"the checkpoint holds {len(unexpected)} tensor(s) the architecture does not use: {_listed(unexpected)}")
    loaded.notes.append(bos_note(loaded))
    if options.device == AUTO_DEVICE:
        if not getattr(model, "hf_device_map", None):
            # transformers 5 records no map when everything landed on one device; say which one.
            model.hf_device_map = {"": str(next(model.parameters()).device)}
        loaded.notes.append(f"device_map auto: {placement_summary(model)}")
    return loaded


def _weights_held(ref: ModelRef, directory: str, info: dict) -> list[str]:
    """Refuse a checkpoint that does not hold its weights; return the tensors it holds beyond them.

    transformers fills any weight missing from the files with fresh random values and says so only in a
    log line: a checkpoint whose tensors are misnamed would be measured, and gated, as a random twin.
    Weights the architecture ties (the LM head to the embedding) are not counted missing by transformers.
    """
    missing, mismatched = sorted(info.get("missing_keys") or ()), sorted(str(k) for k in info.get("mismatched_keys") or ())
    if missing or mismatched:
        problem = (f"{len(missing)} weight(s) missing from the checkpoint files ({_listed(missing)})" if missing else
                   f"{len(mismatched)} weight(s) of the wrong shape ({_listed(mismatched)})")
        raise ModelLoadError(ref.text, f"{problem} in {directory}; transformers would fill them with random values",
                             "check that the files belong to this config.json (names and shapes), or re-save the checkpoint")
    return sorted(info.get("unexpected_keys") or ())


def _listed(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def bos_note(loaded: LoadedModel) -> str:
    bos = loaded.bos
    return f"inputs {'start with' if bos.prepend else 'have no'} BOS unless a spec sets bos: {bos.why}"


def adapter_notes(table: ArchitectureTable) -> list[str]:
    """What every output should say about an adapter geomcheck did not ship (inferred or user-declared)."""
    if table.origin == "builtin":
        return []
    return [f"adapter {table.origin}: {table.describe()}"]


def from_model(model: nn.Module, text: str, *, tokenizer: object = None, seed: int = 0, adapters: tuple[Path, ...] = ()) -> LoadedModel:
    """Wrap a model already in memory (tests, benchmarks), choosing its adapter exactly as ``load`` does."""
    model.eval()
    table = adapter_for(model, adapter_files=adapters)
    ref = ModelRef(text, "hub", text.removeprefix(RANDOM_PREFIX), text.startswith(RANDOM_PREFIX))
    loaded = LoadedModel(ref, model, tokenizer, table, "in memory", 0.0, seed)
    loaded.notes.extend(adapter_notes(table))
    return loaded


def _dispatch(model: nn.Module) -> nn.Module:
    """Shard a model built in CPU memory across the available devices, as ``device_map="auto"`` would."""
    from accelerate import dispatch_model, infer_auto_device_map

    device_map = infer_auto_device_map(model, no_split_module_classes=list(getattr(model, "_no_split_modules", None) or []))
    return dispatch_model(model, device_map=device_map)


def placement_summary(model: nn.Module) -> str:
    """Which devices hold how many top-level modules of a dispatched model, e.g. ``cuda:0 (15), cuda:1 (17)``."""
    device_map = getattr(model, "hf_device_map", None) or {}
    counts: dict[str, int] = {}
    for device in device_map.values():
        name = f"cuda:{device}" if isinstance(device, int) else str(device)
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{name} ({count} module{'s' if count != 1 else ''})" for name, count in counts.items()) or "no device map"


def _local_directory(ref: ModelRef, options: LoadOptions) -> tuple[str, str]:
    """A directory in Hugging Face layout holding the model, and a description of where it came from."""
    if ref.kind == "packaged":
        packaged = PACKAGED[ref.target]
        path = packaged.materialize(options.cache_dir)
        if path is None:
            raise ModelLoadError(ref.text, f"the package {packaged.package} is not installed", packaged.install)
        check_gguf_architecture(path)
        return str(gguf_cache.dequantized_directory(path, options.cache_dir)), f"{path} (package {packaged.package})"
    if ref.kind == "gguf":
        check_gguf_architecture(Path(ref.target))  # from the header: refuse before dequantizing
        return str(gguf_cache.dequantized_directory(Path(ref.target), options.cache_dir)), ref.target
    if ref.kind == "directory":
        return ref.target, ref.target
    return _hub_snapshot(ref), f"Hugging Face Hub {ref.target}"


def _hub_snapshot(ref: ModelRef) -> str:
    """The local snapshot of a hub model, downloading only when the Hub is reachable."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
    try:
        return snapshot_download(ref.target, allow_patterns=patterns, local_files_only=True)
    except (LocalEntryNotFoundError, OSError):
        pass
    remedy = (
        f"on a machine with internet run `hf download {ref.target}` (it fills the Hugging Face cache), "
        "or pass a local directory or .gguf file; `geomcheck models` lists what is available offline"
    )
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ModelLoadError(ref.text, f"{ref.target} is not in the local Hugging Face cache, and HF_HUB_OFFLINE is set, "
                             "so nothing is downloaded", remedy)
    if not _hub_reachable():
        raise ModelLoadError(ref.text, f"{ref.target} is not in the local Hugging Face cache and the Hub is unreachable", remedy)
    try:
        return snapshot_download(ref.target, allow_patterns=patterns)
    except (HfHubHTTPError, OSError) as exc:
        raise ModelLoadError(ref.text, f"downloading {ref.target} failed ({_first_line(exc)})", remedy) from exc


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick connect test, so an offline machine fails in milliseconds instead of minutes of retries."""
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _loading_kwargs(ref: ModelRef, directory: str, options: LoadOptions) -> dict[str, object]:
    """Refuse pickle-only checkpoints and remote code unless the user opted in (both can run code)."""
    files = os.listdir(directory)
    config_path = Path(directory) / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(ref.text, f"{directory} has no config.json", "pass a directory saved with save_pretrained")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(ref.text, f"{config_path} is not valid JSON (line {exc.lineno})", "repair or re-export the checkpoint") from exc
    if "auto_map" in config and not options.trust_remote_code:
        raise ModelLoadError(
            ref.text,
            f"{config_path} asks to run the checkpoint's own Python code (auto_map)",
            "review that code, then opt in with --geom-trust-remote-code",
        )
    if any(name.endswith(".safetensors") for name in files) or ref.random_init:
        return {"use_safetensors": not ref.random_init or None, "trust_remote_code": options.trust_remote_code}
    pickled = sorted(name for name in files if name.endswith(PICKLE_SUFFIXES))
    if not pickled:
        raise ModelLoadError(ref.text, f"{directory} holds no weight files", "add model.safetensors to the directory")
    if not options.allow_pickle:
        raise ModelLoadError(
            ref.text,
            f"{Path(directory) / pickled[0]} is a pickle-based checkpoint, which can run code when loaded",
            "convert it to safetensors, or opt in with --geom-allow-pickle (loaded with weights_only=True)",
        )
    # transformers loads .bin files through torch.load(weights_only=True).
    return {"use_safetensors": False, "trust_remote_code": options.trust_remote_code}


def preflight(ref: ModelRef | str, options: LoadOptions | None = None) -> ModelRef:
    """Refuse what ``load`` would refuse without reading weights: missing files, an offline hub id, an unknown
    model type, a truncated safetensors header; a pytest run reports it once per model, before any check runs.

    A GGUF file is checked from its header only (dequantizing is the expensive part of loading it).
    """
    ref = resolve(ref) if isinstance(ref, str) else ref
    options = options or LoadOptions()
    if ref.kind in ("packaged", "gguf"):
        path = PACKAGED[ref.target].materialize(options.cache_dir) if ref.kind == "packaged" else Path(ref.target)
        if path is None:
            packaged = PACKAGED[ref.target]
            raise ModelLoadError(ref.text, f"the package {packaged.package} is not installed", packaged.install)
        check_gguf_architecture(path)
        return ref
    directory, _ = _local_directory(ref, options)
    _check_config_file(ref, directory)
    _loading_kwargs(ref, directory, options)
    _load_tokenizer(ref, directory, options)
    config = _load_config(ref, directory, options)
    _check_size(ref, directory, config, options)
    check_model_type(config.model_type, config)
    if not ref.random_init:
        _check_weight_files(ref, directory)
    return ref


def _check_config_file(ref: ModelRef, directory: str) -> None:
    """config.json read by geomcheck first, capped, and its sizes checked, before transformers builds anything from it."""
    from geomcheck.models.config_size import config_problem, read_config

    path = Path(directory) / "config.json"
    data, unreadable = read_config(path)
    problem = unreadable or (config_problem(data) if data is not None else None)
    if problem:
        raise ModelLoadError(ref.text, f"{path} {problem}" if unreadable else f"{path}: {problem}",
                             "correct config.json; save_pretrained writes a small JSON object with whole-number sizes")


def _check_size(ref: ModelRef, directory: str, config: object, options: LoadOptions) -> None:
    """Refuse sizes no model has, and weights that cannot fit where they would be built, before building anything."""
    from geomcheck.models.config_size import config_problem, estimate, memory_of

    config_path = Path(directory) / "config.json"
    problem = config_problem(config)
    if problem:
        raise ModelLoadError(ref.text, f"{config_path}: {problem}", "correct config.json; save_pretrained writes whole numbers")
    size = estimate(config, DTYPES.get(options.dtype, torch.float32))
    device = "cpu" if options.device == AUTO_DEVICE else options.device
    memory = memory_of(device)
    if size is not None and memory is not None and size.bytes > memory:
        raise ModelLoadError(ref.text, f"{config_path} describes {size.describe()}, more than the {memory / 2**30:.3g} GiB of {device} memory",
                             "check num_hidden_layers, hidden_size and vocab_size in config.json, or use --dtype bfloat16 or "
                             "--device auto to spread a real model over the devices")


def _load_config(ref: ModelRef, directory: str, options: LoadOptions) -> object:
    """The transformers config; a model type it does not know, or none, is one line naming config.json."""
    import transformers
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(directory, trust_remote_code=options.trust_remote_code)
    except (ValueError, KeyError):
        config_path = Path(directory) / "config.json"
        try:
            model_type = json.loads(config_path.read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            model_type = None
        if not model_type:
            raise ModelLoadError(ref.text, f"{config_path} has no model_type", 'add "model_type" (e.g. "llama") to it; '
                                 "save_pretrained always writes one") from None
        raise ModelLoadError(
            ref.text,
            f"{config_path} names model_type {str(model_type)[:60]!r}, which transformers {transformers.__version__} does not know",
            "correct model_type, or upgrade transformers if the architecture is newer than it",
        ) from None


def _check_weight_files(ref: ModelRef, directory: str) -> None:
    """Read each safetensors header (no tensor data), so a truncated or corrupt file is named before loading."""
    from safetensors import safe_open

    for path in sorted(Path(directory).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(
                ref.text,
                f"{path} is truncated or corrupt ({_first_line(exc)})",
                "download or export it again (save_pretrained writes complete files); do not edit it by hand",
            ) from None


def _refused_pickle(ref: ModelRef, directory: str) -> ModelLoadError:
    pickled = sorted(name for name in os.listdir(directory) if name.endswith(PICKLE_SUFFIXES))
    where = Path(directory) / pickled[0] if pickled else Path(directory)
    return ModelLoadError(
        ref.text,
        f"{where} holds pickled Python objects beyond plain tensors, which the safe loader refuses because "
        "loading them could run code",
        "do not load this file; get the weights as safetensors from a source you trust",
    )


def _load_tokenizer(ref: ModelRef, directory: str, options: LoadOptions) -> object:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory, trust_remote_code=options.trust_remote_code)
    except RecursionError:
        raise ModelLoadError(ref.text, f"no usable tokenizer in {directory} (tokenizer.json is nested too deeply to read)",
                             "save the tokenizer next to the weights") from None
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(ref.text, f"no usable tokenizer in {directory} ({_first_line(exc)})", "save the tokenizer next to the weights") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def availability() -> list[tuple[str, str, str]]:
    """(alias, target, status) for every alias, without loading anything."""
    from huggingface_hub import try_to_load_from_cache

    rows = []
    for alias, packaged in PACKAGED.items():
        installed = packaged.installed()
        parts = getattr(packaged, "parts", None)
        source = f"{len(parts)} packages {parts[0].package}..{len(parts)}" if parts else f"package {packaged.package}"
        rows.append((alias, source, "available offline" if installed else f"missing: {packaged.install}"))
    for alias, hub_id in HUB_ALIASES.items():
        cached = isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
        rows.append((alias, hub_id, "in local HF cache" if cached else "needs download (not cached)"))
    return rows
