"""Recognise a GGUF file's architecture from its header, before anything is dequantized.

Dequantizing takes from half a minute to a few minutes on a CPU (the tokenizer's conversion grows
with the vocabulary); a file whose architecture geomcheck refuses, or transformers cannot dequantize,
should fail in milliseconds instead, and the first-load message says what to expect.
"""

from __future__ import annotations

import struct
from pathlib import Path

from geomcheck.errors import ModelLoadError, UnsupportedArchitectureError
from geomcheck.models.adapters import check_model_type, supported_model_types

# llama.cpp architecture names that differ from the Hugging Face model_type transformers gives them.
GGUF_TO_MODEL_TYPE = {
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
    "gemma3": "gemma3_text",
    "command-r": "cohere",
}


# Sizes of GGUF's fixed-width value types, by type number (the format's gguf_type enum).
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


class _Header:
    """Reads GGUF's metadata section in order, skipping values it does not need.

    A full parse (the gguf package's reader) builds every field, the tokenizer's vocabulary
    included: 2.5 s for SmolLM2's file, paid on every load. The architecture is the first key
    llama.cpp writes, so reading up to it takes microseconds.
    """

    def __init__(self, handle, size: int) -> None:
        self.handle, self.size = handle, size
        self.order = "<"

    def take(self, count: int) -> bytes:
        data = self.handle.read(count)
        if len(data) != count:
            raise ValueError("the file ends inside its header")
        return data

    def number(self, code: str) -> int:
        return struct.unpack(self.order + code, self.take(struct.calcsize(code)))[0]

    def string(self) -> bytes:
        length = self.number("Q")
        if length > self.size:
            raise ValueError(f"a string of {length} bytes in a file of {self.size}")
        return self.take(length)

    def skip_value(self, kind: int) -> None:
        if kind in _FIXED:
            self.take(_FIXED[kind])
        elif kind == _STRING:
            self.string()
        elif kind == _ARRAY:
            inner, count = self.number("I"), self.number("Q")
            if inner in _FIXED:
                if _FIXED[inner] * count > self.size:
                    raise ValueError(f"an array of {count} values in a file of {self.size} bytes")
                self.handle.seek(_FIXED[inner] * count, 1)
            else:
                for _ in range(count):
                    self.skip_value(inner)
        else:
            raise ValueError(f"unknown value type {kind}")


def header_architecture(path: Path) -> str:
    """``general.architecture`` of a GGUF file, read from the header only (tensor data stays on disk)."""
    architecture = _header_value(path, b"general.architecture", lambda header, kind: header.string().decode("utf-8") if kind == _STRING else None)
    if architecture is None:
        raise ModelLoadError(str(path), f"{path} has no general.architecture in its GGUF header",
                             "re-export the file with llama.cpp's converter")
    return architecture


def header_vocabulary(path: Path) -> int | None:
    """How many tokens the GGUF's tokenizer holds (``tokenizer.ggml.tokens``), read without reading them; None if absent."""

    def count(header: _Header, kind: int) -> int | None:
        if kind != _ARRAY:
            return None
        header.number("I")  # the element type
        return header.number("Q")

    return _header_value(path, b"tokenizer.ggml.tokens", count)


def _header_value(path: Path, wanted: bytes, read):
    """``read(header, kind)`` at the metadata key ``wanted``, skipping every key before it; None when it is absent."""
    try:
        with open(path, "rb") as handle:
            header = _Header(handle, Path(path).stat().st_size)
            if header.take(4) != b"GGUF":
                raise ValueError("no GGUF magic number at the start")
            version = header.number("I")
            if version > 0xFFFF:  # written big-endian
                header.order = ">"
                version = int.from_bytes(version.to_bytes(4, "little"), "big")
            if version not in (1, 2, 3):
                raise ValueError(f"GGUF version {version}; this reader knows versions 1 to 3")
            count_code = "I" if version == 1 else "Q"
            header.number(count_code)  # tensor count
            for _ in range(header.number(count_code)):
                key = header.string()
                kind = header.number("I")
                if key == wanted:
                    return read(header, kind)
                header.skip_value(kind)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(str(path), f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc})", "re-download the file") from exc
    return None


def check_gguf_architecture(path: Path) -> str:
    """The Hugging Face model type of a GGUF file; refuses one geomcheck or transformers cannot handle."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    architecture = header_architecture(path)
    model_type = GGUF_TO_MODEL_TYPE.get(architecture, architecture)
    check_model_type(model_type)
    if architecture not in GGUF_SUPPORTED_ARCHITECTURES and model_type not in GGUF_SUPPORTED_ARCHITECTURES:
        readable = ", ".join(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
        raise UnsupportedArchitectureError(
            model_type,
            supported_model_types(),
            f"{Path(path).name} is a GGUF of architecture {architecture!r}, which the installed transformers cannot "
            f"dequantize (it reads: {readable}); convert the checkpoint to safetensors and pass its directory",
            fixable=False,
        )
    return model_type
