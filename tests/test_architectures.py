"""Every block scheme captured and verified on tiny random models built in memory; adapters declared, inferred, refused."""

from __future__ import annotations

import struct
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from geomcheck.capture import hooks
from geomcheck.capture.inputs import InputSpec, TokenBatch
from geomcheck.capture.sites import BLOCK_POINTS, Point, Site
from geomcheck.errors import UnsupportedArchitectureError, VerificationError
from geomcheck.models import loader
from geomcheck.models.adapters import TABLES, adapter_for, table_for
from geomcheck.models.tiny_random import tiny_model

warnings.filterwarnings("ignore", message=".*")

NO_MID = tuple(p for p in BLOCK_POINTS if p is not Point.RESID_MID)
NO_MID_NO_NORM_MLP = tuple(p for p in NO_MID if p is not Point.NORM_MLP)
NORM_AFTER_ONLY = (Point.ATTN_OUT, Point.RESID_MID, Point.MLP_OUT, Point.RESID_POST)

# model type -> (block points as docs/architectures.md documents them, learned position site?)
CURATED: dict[str, tuple[tuple[Point, ...], bool]] = {
    "gpt2": (BLOCK_POINTS, True),
    "gpt_neo": (BLOCK_POINTS, True),
    "gpt_bigcode": (BLOCK_POINTS, True),
    "opt": (BLOCK_POINTS, True),
    "gptj": (NO_MID_NO_NORM_MLP, False),
    "gpt_neox": (NO_MID, False),
    "bloom": (BLOCK_POINTS, False),
    "falcon": (NO_MID_NO_NORM_MLP, False),
    "phi": (NO_MID_NO_NORM_MLP, False),
    "cohere": (NO_MID_NO_NORM_MLP, False),
    "phi3": (BLOCK_POINTS, False),
    "gemma": (BLOCK_POINTS, False),
    "gemma2": (BLOCK_POINTS, False),
    "gemma3_text": (BLOCK_POINTS, False),
    "olmo2": (NORM_AFTER_ONLY, False),
    "mixtral": (BLOCK_POINTS, False),
    "qwen2_moe": (BLOCK_POINTS, False),
    "starcoder2": (BLOCK_POINTS, False),
    "stablelm": (BLOCK_POINTS, False),
    "granite": (BLOCK_POINTS, False),
    "llama": (BLOCK_POINTS, False),
    "mistral": (BLOCK_POINTS, False),
    "qwen2": (BLOCK_POINTS, False),
    "qwen3": (BLOCK_POINTS, False),
}
# Non-default settings that exercise a scheme's switch: Granite's multiplier must reach the captured contribution.
OVERRIDES = {"granite": {"residual_multiplier": 0.37, "embedding_multiplier": 3.0}}


def random_batch(model: torch.nn.Module, sequences: int = 3, tokens: int = 10) -> TokenBatch:
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = np.random.default_rng(0).integers(3, vocab, (sequences, tokens))
    return TokenBatch(ids=ids, bos=False, spec=InputSpec(sequences=sequences, tokens=tokens), description="random ids")


def capture_all(lm: loader.LoadedModel):
    return hooks.capture(lm, random_batch(lm.model), hooks.CapturePlan(batch_size=2, samples=8, progress=False))


@pytest.mark.parametrize("model_type", sorted(CURATED))
def test_every_site_captured_and_every_block_verified(model_type):
    points, positions = CURATED[model_type]
    lm = loader.from_model(tiny_model(model_type, **OVERRIDES.get(model_type, {})), f"random:{model_type}")
    assert lm.table.origin == "builtin"
    acts = capture_all(lm)
    expected = [Site(None, Point.EMBED)] + ([Site(None, Point.POS_EMBED)] if positions else [])
    expected += [Site(b, p) for b in range(3) for p in points] + [Site(None, Point.FINAL_NORM)]
    assert list(acts.sites) == expected
    assert [v.block for v in acts.verification] == [0, 1, 2]
    assert max(v.rms_error for v in acts.verification) <= 1e-5
    for stats in acts.sites.values():
        assert np.all(stats.norms > 0) and stats.nonfinite == 0


def test_attn_out_is_what_the_residual_receives_under_a_multiplier():
    """Granite adds residual_multiplier * attention: attn_out must carry the factor, resid_mid must agree."""
    lm = loader.from_model(tiny_model("granite", residual_multiplier=0.37), "random:granite")
    raw = []
    lm.table.resolve(lm.table.block_modules(lm.base)[0], "self_attn").register_forward_hook(
        lambda m, a, out: raw.append(out[0].detach().clone()) and None
    )
    acts = capture_all(lm)
    captured = acts.site(0, Point.ATTN_OUT).norms[0]
    np.testing.assert_allclose(captured, 0.37 * torch.linalg.vector_norm(raw[0][0], dim=-1).numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    ("model_type", "wrong"),
    [
        ("llama", {"attn": "input_layernorm"}),  # a module that is not the attention's contribution
        ("opt", {"mlp": "final_layer_norm"}),  # the loose MLP's input norm instead of its fc2
        ("gemma2", {"attn": "self_attn", "mlp": "mlp"}),  # sandwich block without its post-norms
        ("granite", {"residual_scale": None}),  # multiplier forgotten
        ("gptj", {"scheme": "sequential", "resid_mid_at": "mlp"}),  # parallel block read as sequential
    ],
)
def test_a_wrong_table_is_rejected_by_verification(model_type, wrong):
    model = tiny_model(model_type, **OVERRIDES.get(model_type, {}))
    right = loader.from_model(model, f"random:{model_type}")
    lm = replace(right, table=replace(right.table, **wrong))
    with pytest.raises(VerificationError, match="block 0"):
        capture_all(lm)


@pytest.mark.parametrize(("model_type", "scheme", "attn"), [("gemma2", "sequential", "post_attention_layernorm"), ("phi", "parallel", "self_attn")])
def test_inferred_adapter_for_a_type_removed_from_the_registry(model_type, scheme, attn):
    model = tiny_model(model_type)
    without = tuple(t for t in TABLES if model_type not in t.model_types)
    table = adapter_for(model, tables=without)
    assert (table.origin, table.scheme, table.attn) == ("inferred", scheme, attn)
    assert "inferred" in table.describe()
    lm = loader.LoadedModel(loader.ModelRef(f"random:{model_type}", "hub", model_type, True), model, None, table, "memory", 0.0, 0)
    acts = capture_all(lm)
    assert max(v.rms_error for v in acts.verification) <= 1e-5


def test_inferred_adapter_is_named_in_the_notes():
    lm = loader.from_model(tiny_model("ernie4_5"), "random:ernie4_5")  # no built-in table
    assert lm.table.origin == "inferred"
    assert any(note.startswith("adapter inferred") for note in lm.notes)
    assert lm.config_summary()["adapter"] == "inferred"


def test_a_wrong_guess_never_produces_numbers():
    """A block whose output is not resid_pre + attn + mlp (here: rescaled by a hook) has no inferable mapping."""
    model = tiny_model("llama")
    model.base_model.layers[1].register_forward_hook(lambda m, a, out: out * 1.5)
    without = tuple(t for t in TABLES if "llama" not in t.model_types)
    with pytest.raises(UnsupportedArchitectureError, match=r"'llama'.*block 1: relative RMS error.*adapters\.yaml"):
        adapter_for(model, tables=without)


ADAPTERS_YAML = """
adapters:
  - family: my-gemma2
    model_types: [gemma2]
    blocks: layers
    embed: embed_tokens
    final_norm: norm
    norm_attn: input_layernorm
    attn: {attn}
    norm_mlp: pre_feedforward_layernorm
    mlp: [missing_module, post_feedforward_layernorm]
    position_scheme: rotary
"""


def test_user_declared_adapter_file_is_used_and_verified(tmp_path):
    good = tmp_path / "adapters.yaml"
    good.write_text(ADAPTERS_YAML.format(attn="post_attention_layernorm"))
    lm = loader.from_model(tiny_model("gemma2"), "random:gemma2", adapters=(good,))
    assert (lm.table.family, lm.table.origin) == ("my-gemma2", "user")
    assert any("adapter user" in note for note in lm.notes)
    assert max(v.rms_error for v in capture_all(lm).verification) <= 1e-5
    bad = tmp_path / "bad.yaml"
    bad.write_text(ADAPTERS_YAML.format(attn="self_attn"))
    with pytest.raises(UnsupportedArchitectureError, match=r"user table.*block 0: relative RMS error"):
        loader.from_model(tiny_model("gemma2"), "random:gemma2", adapters=(bad,))


def test_malformed_adapter_file_names_the_file(tmp_path):
    from geomcheck.errors import AdapterFileError

    path = tmp_path / "adapters.yaml"
    path.write_text("adapters:\n  - family: x\n    model_types: [x]\n    blocks: layers\n")
    with pytest.raises(AdapterFileError, match=r"adapters\.yaml adapters\.0\.embed"):
        loader.from_model(tiny_model("llama"), "random:llama", adapters=(path,))


@pytest.mark.parametrize(("model_type", "why"), [("bert", "post-norm"), ("roberta", "bidirectional"), ("t5", "encoder-decoder"), ("mamba", "state-space")])
def test_encoders_and_non_decoders_are_refused_with_a_reason(model_type, why):
    with pytest.raises(UnsupportedArchitectureError, match=why) as info:
        table_for(model_type)
    assert not info.value.fixable and "adapters.yaml" not in str(info.value)


def test_unknown_type_points_at_adapters_yaml_not_the_source():
    with pytest.raises(UnsupportedArchitectureError, match=r"adapters\.yaml.*geomcheck\.adapters.*gpt2.*llama") as info:
        table_for("mythical")
    assert "geomcheck/adapters/" not in str(info.value)


def write_gguf(path, architecture: str, vocabulary: int = 0) -> None:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), architecture)
    writer.add_block_count(2)
    if vocabulary:
        writer.add_token_list([f"t{i}" for i in range(vocabulary)])
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize(("architecture", "match"), [("mamba", "state-space"), ("rwkv6", "cannot dequantize")])
def test_gguf_architecture_refused_from_the_header_without_dequantizing(tmp_path, monkeypatch, architecture, match):
    from geomcheck.models import gguf_cache

    def never(*args, **kwargs):
        raise AssertionError("dequantized an unsupported GGUF")

    monkeypatch.setattr(gguf_cache, "dequantized_directory", never)
    monkeypatch.setattr(gguf_cache, "file_sha256", never)
    path = tmp_path / "tiny.gguf"
    write_gguf(path, architecture)
    with pytest.raises(UnsupportedArchitectureError, match=match):
        loader.load(str(path))


def test_gguf_header_of_a_supported_architecture_passes(tmp_path):
    from geomcheck.models.gguf_header import check_gguf_architecture, header_architecture

    path = tmp_path / "ok.gguf"
    write_gguf(path, "qwen2moe")
    assert header_architecture(path) == "qwen2moe"
    assert check_gguf_architecture(path) == "qwen2_moe"


def _raw_gguf(entries: list[bytes], version: int = 3) -> bytes:
    import struct

    return b"GGUF" + struct.pack("<IQQ", version, 0, len(entries)) + b"".join(entries)


def _key(name: str, kind: int, value: bytes) -> bytes:
    import struct

    return struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", kind) + value


def _string(text: str) -> bytes:
    import struct

    return struct.pack("<Q", len(text)) + text.encode()


def test_gguf_header_reader_skips_every_value_type_before_the_architecture(tmp_path):
    """llama.cpp writes the architecture first, but the reader must not depend on it."""
    import struct

    from geomcheck.models.gguf_header import header_architecture

    entries = [
        _key("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + _string("a") + _string("bb") + _string("ccc")),
        _key("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, 2) + struct.pack("<ff", 0.5, 1.5)),
        _key("nested", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 2) + struct.pack("<II", 1, 2)),
        _key("general.file_type", 4, struct.pack("<I", 15)),
        _key("general.flag", 7, b"\x01"),
        _key("general.size", 12, struct.pack("<d", 1.0)),
        _key("general.architecture", 8, _string("llama")),
    ]
    path = tmp_path / "late.gguf"
    path.write_bytes(_raw_gguf(entries))
    assert header_architecture(path) == "llama"


@pytest.mark.parametrize("content, message", [
    (b"GGML" + b"\0" * 20, "not a readable GGUF file .*magic"),
    (_raw_gguf([_key("general.architecture", 8, _string("llama"))])[:30], "not a readable GGUF file .*ends inside"),
    (_raw_gguf([_key("general.name", 8, _string("x"))]), "has no general.architecture"),
    (_raw_gguf([_key("general.name", 8, b"\xff" * 8 + b"x")]), "not a readable GGUF file .*string of"),
    (_raw_gguf([_key("general.name", 99, b"")]), "not a readable GGUF file .*unknown value type 99"),
    (_raw_gguf([_key("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 0, 1 << 40))]), "an array of 1099511627776 values"),
])
def test_a_broken_gguf_header_is_named_not_a_traceback(tmp_path, content, message):
    from geomcheck.errors import ModelLoadError
    from geomcheck.models.gguf_header import header_architecture

    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        header_architecture(path)


def test_the_first_load_message_says_what_is_slow_from_the_file(tmp_path):
    """A large vocabulary (Gemma-3's 262k) makes the first load minutes, not half a minute: read from the header."""
    from geomcheck.models.gguf_cache import first_load_expectation
    from geomcheck.models.gguf_header import header_vocabulary

    small, large = tmp_path / "small.gguf", tmp_path / "large.gguf"
    write_gguf(small, "llama", vocabulary=100)
    write_gguf(large, "llama", vocabulary=150_000)
    assert (header_vocabulary(small), header_vocabulary(large)) == (100, 150_000)
    assert "about half a minute" in first_load_expectation(small)
    assert "150k-token vocabulary: up to a few minutes" in first_load_expectation(large)
    write_gguf(tmp_path / "bare.gguf", "llama")
    assert header_vocabulary(tmp_path / "bare.gguf") is None
