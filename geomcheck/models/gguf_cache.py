"""Dequantize a GGUF once and keep it as safetensors, keyed by the file's hash, so reloads take a second."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from geomcheck.errors import ModelLoadError
from geomcheck.progress import heartbeat

MANIFEST = "geomcheck-manifest.json"
CACHE_FORMAT = 1


def cache_root(override: Path | None = None) -> Path:
    """``$GEOMCHECK_CACHE``, else the XDG cache directory; never inside the project tree."""
    if override is not None:
        return Path(override)
    if os.environ.get("GEOMCHECK_CACHE"):
        return Path(os.environ["GEOMCHECK_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "geomcheck"


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dequantized_directory(gguf_path: Path, root: Path | None = None) -> Path:
    """A Hugging Face directory with the GGUF's weights in fp32 safetensors, built on first use.

    The cache key is the content hash, so a replaced file with the same name never reuses stale
    weights. An entry whose manifest or file sizes disagree is treated as corrupt and rebuilt.
    """
    gguf_path = Path(gguf_path)
    digest = file_sha256(gguf_path)
    entry = cache_root(root) / "gguf" / digest[:24]
    if _entry_is_intact(entry, digest):
        return entry
    if entry.exists():
        print(f"geomcheck: cache entry {entry} is incomplete or corrupt; rebuilding it", file=sys.stderr)
        shutil.rmtree(entry, ignore_errors=True)
    _build_entry(gguf_path, entry, digest)
    return entry


def _entry_is_intact(entry: Path, digest: str) -> bool:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if manifest.get("sha256") != digest or manifest.get("format") != CACHE_FORMAT:
        return False
    for name, size in manifest.get("files", {}).items():
        path = entry / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return bool(manifest.get("files"))


LARGE_VOCABULARY = 100_000


def first_load_expectation(gguf_path: Path) -> str:
    """What the first load will cost, from the file: its size and its vocabulary (the slow part when large).

    Measured on 2 CPU cores: Gemma-3-270M (262k tokens) 42 s on an idle machine (3 s of it the tensors)
    and over 3 minutes on a busy one; the tensors are the small part.
    """
    from geomcheck.models.gguf_header import header_vocabulary

    size = f"{gguf_path.stat().st_size / 1e6:,.0f} MB"
    try:
        vocabulary = header_vocabulary(gguf_path)
    except ModelLoadError:
        vocabulary = None
    if vocabulary is None or vocabulary < LARGE_VOCABULARY:
        return f"{size}; about half a minute on a CPU"
    return (f"{size} with a {vocabulary // 1000}k-token vocabulary: up to a few minutes on a CPU, most of it building "
            "the tokenizer, which grows with the vocabulary")


@contextlib.contextmanager
def _quiet_transformers_bars(quiet: bool):
    """Keep transformers' own progress bars out of logs where geomcheck's heartbeat already says it is alive.

    Its GGUF reader draws a plain tqdm bar, not behind its progress-bar switch (and tqdm reads
    ``TQDM_DISABLE`` only at import), so that module's ``tqdm`` is swapped for a silent one meanwhile.
    """
    from functools import partial

    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    if not quiet:
        yield
        return
    was_enabled, drawn = hf_logging.is_progress_bar_enabled(), getattr(gguf_utils, "tqdm", None)
    hf_logging.disable_progress_bar()
    if drawn is not None:
        gguf_utils.tqdm = partial(drawn, disable=True)
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
        if drawn is not None:
            gguf_utils.tqdm = drawn


def _build_entry(gguf_path: Path, entry: Path, digest: str) -> None:
    """Dequantize into a temporary sibling and rename it into place, so a crash leaves no half entry."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    entry.parent.mkdir(parents=True, exist_ok=True)
    print(f"geomcheck: dequantizing {gguf_path.name} once ({first_load_expectation(gguf_path)}); later loads use {entry}",
          file=sys.stderr)
    staging = Path(tempfile.mkdtemp(prefix=entry.name + ".tmp-", dir=entry.parent))
    try:
        try:
            kwargs = {"gguf_file": gguf_path.name}
            # transformers draws its own bar on a terminal; elsewhere (CI logs, pytest) say every few seconds that it is alive.
            alive = heartbeat("geomcheck: dequantizing") if not sys.stderr.isatty() else contextlib.nullcontext()
            with alive, _quiet_transformers_bars(not sys.stderr.isatty()):
                tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
                model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
        except Exception as exc:  # the GGUF reader raises many unrelated types for a damaged file
            raise ModelLoadError(
                str(gguf_path),
                f"{gguf_path} is not a readable GGUF model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                "re-download the file or reinstall the package that ships it",
            ) from exc
        # The loaded weights are plain fp32 tensors; only the config still claims GGUF quantization.
        model.config.__dict__.pop("quantization_config", None)
        model.hf_quantizer = None
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        files = {p.name: p.stat().st_size for p in staging.iterdir() if p.is_file()}
        manifest = {"format": CACHE_FORMAT, "sha256": digest, "source": str(gguf_path), "files": files}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        try:
            os.replace(staging, entry)
        except OSError:
            if not _entry_is_intact(entry, digest):  # another process finished first, unless it failed
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
