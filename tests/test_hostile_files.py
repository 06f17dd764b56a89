"""Files a commit can plant where geomcheck reads whole files (specs, adapters.yaml, baselines): a FIFO,
/dev/zero behind a link or a sparse giant is refused at once, before a byte is read (issue 22, item 2 in part)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from geomcheck.errors import AdapterFileError, SpecError
from geomcheck.gate import baseline
from geomcheck.gate.codec import BaselineError
from geomcheck.models.adapters.user_tables import load_adapter_file
from geomcheck.spec.schema import load_spec


def finishes(function, seconds: float = 20.0):
    """``function()``'s exception, or its result; fails the test instead of hanging when it blocks."""
    outcome: list = []

    def target() -> None:
        try:
            outcome.append(function())
        except Exception as exc:  # the error is what the test inspects
            outcome.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "blocked: the read waited on a FIFO or read without limit"
    return outcome[0]


def hostile(tmp_path: Path, kind: str, name: str) -> Path:
    path = tmp_path / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        os.symlink("/dev/zero", path)
    else:
        with open(path, "wb") as handle:
            handle.truncate(6 << 30)  # sparse: no disk used, MemoryError if read whole
    return path


KINDS = ["fifo", "dev-zero", "sparse-6GB"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_spec_file(tmp_path, kind):
    error = finishes(lambda: load_spec(hostile(tmp_path, kind, "s.yaml")))
    assert isinstance(error, SpecError) and "cannot be read" in str(error), error
    assert ("not a regular file" in str(error)) if kind != "sparse-6GB" else ("over the limit" in str(error))


@pytest.mark.parametrize("kind", KINDS)
def test_an_adapters_file(tmp_path, kind):
    error = finishes(lambda: load_adapter_file(hostile(tmp_path, kind, "adapters.yaml")))
    assert isinstance(error, AdapterFileError) and "adapters.yaml" in str(error), error


@pytest.mark.parametrize("kind", KINDS)
def test_a_baseline_file(tmp_path, kind):
    error = finishes(lambda: baseline.read(hostile(tmp_path, kind, "gate.json")))
    assert isinstance(error, BaselineError) and "gate.json" in str(error) and "--geom-update" in str(error), error


def test_a_baseline_nested_beyond_recursion_is_an_error_not_a_crash(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    error = finishes(lambda: baseline.read(path))
    assert isinstance(error, BaselineError) and "deep.json" in str(error), error


def test_a_checkpoint_whose_tensors_are_misnamed_is_refused_not_loaded_as_random(tiny_dirs, tmp_path):
    """A valid safetensors header with none of the expected names used to load as random weights and pass."""
    import shutil

    import torch
    from safetensors.torch import save_file

    from geomcheck.errors import ModelLoadError
    from geomcheck.models.loader import load

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_dirs["llama"], folder)
    save_file({"something.else": torch.zeros(3)}, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError) as info:
        load(str(folder))
    text = str(info.value)
    assert "weight(s) missing from the checkpoint files" in text and "model.embed_tokens.weight" in text and "Remedy:" in text


def test_a_complete_checkpoint_loads_with_no_note_of_extra_tensors(tiny_dirs):
    from geomcheck.models.loader import load

    loaded = load(str(tiny_dirs["llama"]))
    assert not any("does not use" in note for note in loaded.notes)
