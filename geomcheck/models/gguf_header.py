"""Recognise a GGUF file's architecture from its header, before anything is dequantized.

Dequantizing takes about half a minute per hundred million parameters; a file whose architecture
geomcheck refuses, or transformers cannot dequantize, should fail in milliseconds instead.
"""

from __future__ import annotations

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


def header_architecture(path: Path) -> str:
    """``general.architecture`` of a GGUF file, read from the header only (tensor data stays on disk)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path), "r")
        field = reader.fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except KeyError:
        raise ModelLoadError(str(path), f"{path} has no general.architecture in its GGUF header", "re-export the file with llama.cpp's converter") from None
    except (OSError, ValueError, IndexError) as exc:
        raise ModelLoadError(str(path), f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc})", "re-download the file") from exc


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
