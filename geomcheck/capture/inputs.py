"""Token batches to capture on: the bundled corpus, user text, a dataset, single or repeated tokens."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from geomcheck.errors import InputError

InputMode = Literal["corpus", "text", "dataset", "single_token", "repeated_token"]
INPUT_MODES: tuple[str, ...] = ("corpus", "text", "dataset", "single_token", "repeated_token")
DEFAULT_TOKEN_BUDGET = 2_000_000
TEXT_SUFFIXES = (".txt", ".md", ".rst")


@dataclass(frozen=True)
class InputSpec:
    """What to feed the model. ``tokens`` counts the tokens after the optional BOS.

    ``bos=None`` means "what the model family expects" (LLaMA yes, GPT-2 no); the resolved choice
    is recorded in the batch because position-0 geometry depends on it.
    """

    mode: InputMode = "corpus"
    source: str | None = None
    sequences: int = 32
    tokens: int = 256
    seed: int = 0
    bos: bool | None = None

    @property
    def length_bound(self) -> int:
        """Positions per sequence at most: ``tokens`` plus one for BOS unless ``bos: false`` rules it out."""
        return self.tokens + (0 if self.bos is False else 1)

    @property
    def token_count(self) -> int:
        return self.sequences * self.length_bound


@dataclass(frozen=True)
class TokenBatch:
    """Equal-length sequences, so positions line up across sequences without padding."""

    ids: np.ndarray
    bos: bool
    spec: InputSpec
    description: str

    @property
    def n_sequences(self) -> int:
        return int(self.ids.shape[0])

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])


def check_budget(spec: InputSpec, *, context_length: int | None, budget: int = DEFAULT_TOKEN_BUDGET) -> None:
    """Refuse oversize requests before any model loads, with the numbers."""
    if spec.sequences < 1 or spec.tokens < 1:
        raise InputError(f"inputs need at least 1 sequence of 1 token; got {spec.sequences} x {spec.tokens}")
    total = spec.sequences * spec.tokens
    if total > budget:
        raise InputError(
            f"inputs ask for {spec.sequences} sequences x {spec.tokens} tokens = {total:,} tokens, "
            f"over the budget of {budget:,}; lower them or raise the budget (--geom-token-budget)"
        )
    length = spec.length_bound
    if context_length is not None and length > context_length:
        plus = " (+1 for BOS)" if length > spec.tokens else ""
        raise InputError(
            f"sequences of {spec.tokens} tokens{plus} = {length} exceed the model's context of {context_length} positions"
        )


def bundled_corpus_text() -> str:
    """The project's own corpus: varied original English (stories, dialogue, manuals, lists, letters)."""
    folder = resources.files("geomcheck") / "corpus"
    parts = [entry.read_text(encoding="utf-8") for entry in sorted(folder.iterdir(), key=lambda e: e.name) if entry.name.endswith(".txt")]
    return "\n\n".join(part.strip() for part in parts)


def read_text_source(source: str) -> str:
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        if not files:
            raise InputError(f"text folder {path} holds no {'/'.join(TEXT_SUFFIXES)} files")
        return "\n\n".join(p.read_text(encoding="utf-8", errors="replace").strip() for p in files)
    if path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    raise InputError(f"text source {path} does not exist")


def dataset_text(dataset_id: str, *, max_chars: int = 5_000_000) -> str:
    """Text of a Hugging Face dataset's ``text`` column, if the optional ``datasets`` package can load it."""
    try:
        import datasets
    except ImportError:
        raise InputError("dataset inputs need the optional package `datasets`: pip install datasets") from None
    try:
        rows = datasets.load_dataset(dataset_id, split="train", streaming=True)
        texts, size = [], 0
        for row in rows:
            texts.append(str(row["text"]))
            size += len(texts[-1])
            if size >= max_chars:
                break
    except (OSError, ValueError, KeyError, ConnectionError) as exc:
        raise InputError(
            f"dataset {dataset_id!r} could not be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "download it on a connected machine first, or pass a text folder"
        ) from exc
    return "\n\n".join(texts)


def build_batch(spec: InputSpec, tokenizer, *, bos_token_id: int | None, default_bos: bool, vocab_size: int) -> TokenBatch:
    """Tokenize and cut the requested sequences; every choice that uses randomness draws from ``spec.seed``."""
    bos = default_bos if spec.bos is None else spec.bos
    if spec.mode == "single_token":
        bos = False if spec.bos is None else spec.bos
    if bos and bos_token_id is None:
        raise InputError("BOS was requested but the tokenizer and config define no bos_token_id; set bos: false")
    rng = np.random.default_rng(spec.seed)
    if spec.mode in ("single_token", "repeated_token"):
        ids, description = _synthetic(spec, rng, tokenizer, vocab_size)
    else:
        text, origin = _text_for(spec)
        ids, description = _chunks(text, origin, spec, rng, tokenizer)
    if bos:
        ids = np.concatenate([np.full((ids.shape[0], 1), bos_token_id, dtype=np.int64), ids], axis=1)
    return TokenBatch(ids.astype(np.int64), bos, spec, description)


def _text_for(spec: InputSpec) -> tuple[str, str]:
    if spec.mode == "corpus":
        return bundled_corpus_text(), "bundled geomcheck corpus"
    if spec.source is None:
        raise InputError(f"input mode {spec.mode!r} needs a source ({'a file or folder' if spec.mode == 'text' else 'a dataset id'})")
    if spec.mode == "text":
        return read_text_source(spec.source), f"text from {spec.source}"
    return dataset_text(spec.source), f"dataset {spec.source}"


def _chunks(text: str, origin: str, spec: InputSpec, rng: np.random.Generator, tokenizer) -> tuple[np.ndarray, str]:
    if not text.strip():
        raise InputError(f"the {origin} is empty")
    tokens = np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    available = len(tokens) // spec.tokens
    if available < spec.sequences:
        raise InputError(
            f"the {origin} has {len(tokens):,} tokens, enough for {available} sequences of {spec.tokens} tokens; "
            f"{spec.sequences} were asked for"
        )
    chosen = np.sort(rng.permutation(available)[: spec.sequences])
    ids = np.stack([tokens[i * spec.tokens : (i + 1) * spec.tokens] for i in chosen])
    return ids, f"{origin}: {spec.sequences} chunks of {spec.tokens} tokens (of {available} available)"


def _synthetic(spec: InputSpec, rng: np.random.Generator, tokenizer, vocab_size: int) -> tuple[np.ndarray, str]:
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    candidates = np.array([i for i in range(vocab_size) if i not in special], dtype=np.int64)
    if spec.sequences > len(candidates):
        raise InputError(f"{spec.sequences} distinct tokens asked for; the vocabulary has {len(candidates)} ordinary tokens")
    picked = rng.choice(candidates, size=spec.sequences, replace=False)
    if spec.mode == "single_token":
        return picked[:, None], f"{spec.sequences} single-token sequences (seeded draw from the vocabulary)"
    return np.repeat(picked[:, None], spec.tokens, axis=1), f"{spec.sequences} sequences of one token repeated {spec.tokens} times"
