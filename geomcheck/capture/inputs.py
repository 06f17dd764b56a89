"""Token batches to capture on: the bundled corpus, user text, a dataset, single or repeated tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from geomcheck.errors import InputError
from geomcheck.safe_read import ReadLimits, UnsafeReadError, check_confined, read_confined, regular_size, walk_files

InputMode = Literal["corpus", "text", "dataset", "single_token", "repeated_token"]
INPUT_MODES: tuple[str, ...] = ("corpus", "text", "dataset", "single_token", "repeated_token")
DEFAULT_TOKEN_BUDGET = 2_000_000
TEXT_SUFFIXES = (".txt", ".md", ".rst")
# The token budget (2M tokens) needs about 10 MB of English; the caps leave room and stop a sparse
# multi-gigabyte file or a folder of a million files before they are read.
TEXT_LIMITS = ReadLimits(file_bytes=32 << 20, total_bytes=64 << 20, files=10_000)
# A local dataset folder also holds indexes and columns besides the text.
DATASET_BYTES = 1 << 30


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
    # Which of the seeded order's disjoint draws to take: draw k is its sequences k*n ... (k+1)*n - 1, so
    # two draws of one spec never share a sequence (``geomcheck suggest`` fits on draw 0, confirms on 1).
    draw: int = 0
    # The folder every file read for a text or local dataset source must lie in (links included): the
    # spec's project root. None: the source itself (a folder) or the folder holding it (a file).
    root: str | None = field(default=None, compare=False)

    @property
    def shows_source_text(self) -> bool:
        """Whether the tokens come from text a user or a pull request supplied, which reports keep out by default."""
        return self.mode in ("text", "dataset")

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


def text_source_files(source: str, root: str | None = None) -> tuple[list[Path], Path]:
    """The files a text source reads, and the folder they must lie in; refused as a whole when any would escape.

    ``root`` defaults to the source folder itself (or a file's folder): text a caller names directly is
    trusted, links inside it to elsewhere are not. Every file must really lie inside the root and be a
    regular file within TEXT_LIMITS; links that lead nowhere (dangling, loops) hold no text and are
    passed over. Checked from ``stat`` only, so a spec can be validated without reading its inputs.
    """
    path = Path(source).expanduser()
    try:
        if path.is_dir():
            boundary = Path(root) if root is not None else path
            listed = walk_files(path, boundary, TEXT_SUFFIXES, TEXT_LIMITS.files, "text input")
            files = [file for file in listed if not (file.is_symlink() and not file.exists())]
            if not files:
                raise InputError(f"text folder {path} holds no {'/'.join(TEXT_SUFFIXES)} files")
        elif path.exists() or path.is_symlink():
            boundary = Path(root) if root is not None else path.absolute().parent
            files = [path]
        else:
            raise InputError(f"text source {path} does not exist")
        total = 0
        for file in files:
            size = regular_size(file, boundary, "text input")
            if size > TEXT_LIMITS.file_bytes:
                raise InputError(f"text input {file} holds {size:,} bytes, over the limit of {TEXT_LIMITS.file_bytes:,} per file")
            total += size
    except UnsafeReadError as exc:
        raise InputError(str(exc)) from None
    if total > TEXT_LIMITS.total_bytes:
        raise InputError(f"text source {path} holds {total:,} bytes, over the limit of {TEXT_LIMITS.total_bytes:,}; point it at a smaller folder")
    return files, boundary


def read_text_source(source: str, root: str | None = None) -> str:
    """The text of a file, or of every text file under a folder (text_source_files), checked again as each is read.

    The second check is on the open descriptor (read_confined), so a link planted after validation
    escapes no better. Refusals are InputErrors naming the file.
    """
    files, boundary = text_source_files(source, root)
    texts, total = [], 0
    try:
        for file in files:
            data = read_confined(file, boundary, TEXT_LIMITS.file_bytes, "text input")
            total += len(data)
            if total > TEXT_LIMITS.total_bytes:
                raise InputError(f"text source {source} holds more than {TEXT_LIMITS.total_bytes:,} bytes; point it at a smaller folder")
            texts.append(data.decode("utf-8", errors="replace"))
    except UnsafeReadError as exc:
        raise InputError(str(exc)) from None
    return texts[0] if not Path(source).expanduser().is_dir() else "\n\n".join(text.strip() for text in texts)


def local_dataset_path(dataset_id: str, root: str | None) -> Path | None:
    """The local file or folder a dataset id names, if any: ``datasets`` reads such ids from disk, not the hub."""
    candidates = [Path(dataset_id).expanduser()]
    if root is not None and not Path(dataset_id).is_absolute():
        candidates.insert(0, Path(root) / dataset_id)
    for candidate in candidates:
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return None


def check_local_dataset(dataset_id: str, root: str | None) -> None:
    """A dataset id that names local files is confined like a text source: the path and every file under it."""
    local = local_dataset_path(dataset_id, root)
    if local is None:
        return
    boundary = Path(root) if root is not None else (local if local.is_dir() else local.absolute().parent)
    try:
        check_confined(local, boundary, "dataset source")
        files = walk_files(local, boundary, None, TEXT_LIMITS.files, "dataset input") if local.is_dir() else [local]
        total = sum(regular_size(file, boundary, "dataset input") for file in files)
    except UnsafeReadError as exc:
        raise InputError(str(exc)) from None
    if total > DATASET_BYTES:
        raise InputError(f"dataset source {local} holds {total:,} bytes, over the limit of {DATASET_BYTES:,}; point it at a smaller one")


def dataset_text(dataset_id: str, *, max_chars: int = 5_000_000, root: str | None = None) -> str:
    """Text of a Hugging Face dataset's ``text`` column, if the optional ``datasets`` package can load it.

    An id that names local files is confined first (check_local_dataset), since ``datasets`` reads
    whatever a local path holds."""
    check_local_dataset(dataset_id, root)
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
    if ids.size and (int(ids.max()) >= vocab_size or int(ids.min()) < 0):
        # A tokenizer from another model (or edited): the embedding lookup would fail with a bare IndexError.
        raise InputError(f"the tokenizer gives token id {int(ids.max())}, but the model's vocabulary has {vocab_size} entries "
                         "(config.json vocab_size): the tokenizer saved with the checkpoint is not the model's own")
    return TokenBatch(ids.astype(np.int64), bos, spec, description)


def _text_for(spec: InputSpec) -> tuple[str, str]:
    if spec.mode == "corpus":
        return bundled_corpus_text(), "bundled geomcheck corpus"
    if spec.source is None:
        raise InputError(f"input mode {spec.mode!r} needs a source ({'a file or folder' if spec.mode == 'text' else 'a dataset id'})")
    if spec.mode == "text":
        return read_text_source(spec.source, spec.root), f"text from {spec.source}"
    return dataset_text(spec.source, root=spec.root), f"dataset {spec.source}"


def _chunks(text: str, origin: str, spec: InputSpec, rng: np.random.Generator, tokenizer) -> tuple[np.ndarray, str]:
    if not text.strip():
        raise InputError(f"the {origin} is empty")
    tokens = np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    available = len(tokens) // spec.tokens
    wanted = (spec.draw + 1) * spec.sequences
    if available < wanted:
        draws = f" ({spec.draw + 1} disjoint draws of {spec.sequences})" if spec.draw else ""
        raise InputError(
            f"the {origin} has {len(tokens):,} tokens, enough for {available} sequences of {spec.tokens} tokens; "
            f"{wanted} were asked for{draws}"
        )
    chosen = np.sort(rng.permutation(available)[spec.draw * spec.sequences : wanted])
    ids = np.stack([tokens[i * spec.tokens : (i + 1) * spec.tokens] for i in chosen])
    which = f", draw {spec.draw + 1}" if spec.draw else ""
    return ids, f"{origin}: {spec.sequences} chunks of {spec.tokens} tokens (of {available} available{which})"


def _synthetic(spec: InputSpec, rng: np.random.Generator, tokenizer, vocab_size: int) -> tuple[np.ndarray, str]:
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    candidates = np.array([i for i in range(vocab_size) if i not in special], dtype=np.int64)
    if spec.sequences > len(candidates):
        raise InputError(f"{spec.sequences} distinct tokens asked for; the vocabulary has {len(candidates)} ordinary tokens")
    if spec.draw == 0:
        picked = rng.choice(candidates, size=spec.sequences, replace=False)
    else:
        if (spec.draw + 1) * spec.sequences > len(candidates):
            raise InputError(f"{spec.draw + 1} disjoint draws of {spec.sequences} distinct tokens asked for; "
                             f"the vocabulary has {len(candidates)} ordinary tokens")
        picked = rng.permutation(candidates)[spec.draw * spec.sequences : (spec.draw + 1) * spec.sequences]
    if spec.mode == "single_token":
        return picked[:, None], f"{spec.sequences} single-token sequences (seeded draw from the vocabulary)"
    return np.repeat(picked[:, None], spec.tokens, axis=1), f"{spec.sequences} sequences of one token repeated {spec.tokens} times"
