import json
import shutil

import pytest
import torch

from geomcheck.errors import ModelLoadError, UnsupportedArchitectureError
from geomcheck.models import gguf_cache
from geomcheck.models import loader as models


def test_aliases_resolve_without_loading():
    assert models.resolve("gpt2") == models.ModelRef("gpt2", "hub", "openai-community/gpt2")
    assert models.resolve("smollm2-135m").kind == "packaged"
    twin = models.resolve("random:gpt2-medium")
    assert twin.random_init and twin.target == "openai-community/gpt2-medium"
    assert twin.key == "random-gpt2-medium"


def test_hub_id_and_paths(tiny_dirs, tmp_path):
    assert models.resolve("someone/some-model").kind == "hub"
    ref = models.resolve(str(tiny_dirs["llama"]))
    assert ref.kind == "directory" and ref.key == "llama"
    with pytest.raises(ModelLoadError, match="no such file or directory"):
        models.resolve(str(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError, match="not a known alias"):
        models.resolve("no-such-alias")
    text = tmp_path / "weights.txt"
    text.write_text("x")
    with pytest.raises(ModelLoadError, match="not a .gguf file"):
        models.resolve(str(text))


def test_offline_hub_id_fails_fast_with_a_remedy(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError) as info:
        models.load("gpt2")
    message = str(info.value)
    assert "not in the local Hugging Face cache" in message and "Remedy:" in message and "\n" not in message


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_directory_load_and_random_twin(tiny_dirs, family):
    trained = models.load(str(tiny_dirs[family]))
    assert trained.table.family == family and trained.n_blocks == 3
    twin_a = models.load("random:" + str(tiny_dirs[family]), models.LoadOptions(seed=1))
    twin_b = models.load("random:" + str(tiny_dirs[family]), models.LoadOptions(seed=1))
    other = models.load("random:" + str(tiny_dirs[family]), models.LoadOptions(seed=2))
    weights = lambda lm: torch.cat([p.flatten() for p in lm.model.parameters()])  # noqa: E731
    assert torch.equal(weights(twin_a), weights(twin_b)), "random twin must be seeded"
    assert not torch.equal(weights(twin_a), weights(other))
    assert not torch.equal(weights(twin_a), weights(trained))
    assert twin_a.model.config.to_dict()["num_hidden_layers" if family == "llama" else "n_layer"] == 3


def test_unsupported_architecture_lists_supported(tiny_dirs, tmp_path):
    target = tmp_path / "odd"
    shutil.copytree(tiny_dirs["llama"], target)
    config = json.loads((target / "config.json").read_text())
    config["model_type"] = "bert"
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises((UnsupportedArchitectureError, ModelLoadError)) as info:
        models.load(str(target))
    assert "bert" in str(info.value)


def test_supported_list_in_adapter_error():
    from geomcheck.models.adapters import table_for

    with pytest.raises(UnsupportedArchitectureError, match=r"adapters\.yaml.*ArchitectureTable.*gpt2.*llama"):
        table_for("mythical")
    with pytest.raises(UnsupportedArchitectureError, match=r"state-space"):
        table_for("mamba")


def test_pickle_only_checkpoint_is_refused(tiny_dirs, tmp_path):
    target = tmp_path / "pickled"
    shutil.copytree(tiny_dirs["gpt2"], target)
    state = models.load(str(target)).model.state_dict()
    (target / "model.safetensors").unlink()
    torch.save(state, target / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pytorch_model\.bin.*--geom-allow-pickle"):
        models.load(str(target))
    loaded = models.load(str(target), models.LoadOptions(allow_pickle=True))
    assert loaded.n_blocks == 3


def test_remote_code_is_refused(tiny_dirs, tmp_path):
    target = tmp_path / "remote"
    shutil.copytree(tiny_dirs["llama"], target)
    config = json.loads((target / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="auto_map.*--geom-trust-remote-code"):
        models.load(str(target))


def test_corrupt_gguf_is_reported(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="not a readable GGUF"):
        models.load(str(bad), models.LoadOptions(cache_dir=tmp_path / "cache"))


@pytest.mark.real_model
def test_packaged_gguf_cache_is_reused_and_rebuilt_when_corrupt(smollm2, tmp_path):
    gguf = models.PACKAGED["smollm2-135m"].locate()
    entry = gguf_cache.dequantized_directory(gguf)  # warm entry made by the smollm2 fixture
    assert (entry / gguf_cache.MANIFEST).is_file()
    assert gguf_cache.dequantized_directory(gguf) == entry
    copy_root = tmp_path / "cache"
    copied = copy_root / "gguf" / entry.name
    shutil.copytree(entry, copied)
    with open(copied / "model.safetensors", "r+b") as handle:
        handle.truncate(1000)
    rebuilt = gguf_cache.dequantized_directory(gguf, copy_root)
    assert (rebuilt / "model.safetensors").stat().st_size == (entry / "model.safetensors").stat().st_size


@pytest.mark.real_model
def test_packaged_model_predicts_paris(smollm2):
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = smollm2.model(ids).logits
    assert smollm2.tokenizer.decode(logits[0, -1].argmax()) == " Paris"
    assert smollm2.n_blocks == 30 and smollm2.table.family == "llama"
