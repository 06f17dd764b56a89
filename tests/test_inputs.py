import numpy as np
import pytest
from tiny import word_tokenizer

from geomcheck.capture import inputs
from geomcheck.errors import InputError

TOKENIZER = word_tokenizer()


def build(spec, bos_default=True):
    return inputs.build_batch(spec, TOKENIZER, bos_token_id=1, default_bos=bos_default, vocab_size=512)


def test_corpus_chunks_are_seeded_and_equal_length():
    a = build(inputs.InputSpec(sequences=4, tokens=32, seed=3))
    b = build(inputs.InputSpec(sequences=4, tokens=32, seed=3))
    c = build(inputs.InputSpec(sequences=4, tokens=32, seed=4))
    assert a.ids.shape == (4, 33) and a.bos and (a.ids[:, 0] == 1).all()
    assert np.array_equal(a.ids, b.ids) and not np.array_equal(a.ids, c.ids)


def test_bos_is_explicit_and_recorded():
    assert not build(inputs.InputSpec(sequences=2, tokens=8), bos_default=False).bos
    off = build(inputs.InputSpec(sequences=2, tokens=8, bos=False))
    assert not off.bos and off.ids.shape == (2, 8)


def test_bundled_corpus_is_large_and_varied():
    text = inputs.bundled_corpus_text()
    assert len(text.split()) > 25_000
    assert '"' in text and ":" in text and "\n1." in text or "\n- " in text


def test_text_folder_and_file(tmp_path):
    (tmp_path / "a.txt").write_text("alpha beta gamma " * 50)
    (tmp_path / "b.md").write_text("delta " * 50)
    batch = build(inputs.InputSpec(mode="text", source=str(tmp_path), sequences=2, tokens=16))
    assert batch.ids.shape == (2, 17) and str(tmp_path) in batch.description


def test_empty_corpus_and_too_few_tokens(tmp_path):
    (tmp_path / "empty.txt").write_text("   \n")
    with pytest.raises(InputError, match="is empty"):
        build(inputs.InputSpec(mode="text", source=str(tmp_path / "empty.txt"), sequences=1, tokens=4))
    (tmp_path / "short.txt").write_text("one two three")
    with pytest.raises(InputError, match="enough for 0 sequences"):
        build(inputs.InputSpec(mode="text", source=str(tmp_path / "short.txt"), sequences=1, tokens=4))
    with pytest.raises(InputError, match="does not exist"):
        build(inputs.InputSpec(mode="text", source=str(tmp_path / "missing"), sequences=1, tokens=4))


def test_single_and_repeated_token_modes():
    single = build(inputs.InputSpec(mode="single_token", sequences=20, seed=1))
    assert single.ids.shape == (20, 1) and not single.bos and len(set(single.ids[:, 0])) == 20
    assert not set(single.ids[:, 0]) & set(TOKENIZER.all_special_ids)
    repeated = build(inputs.InputSpec(mode="repeated_token", sequences=3, tokens=10))
    assert repeated.ids.shape == (3, 11) and (repeated.ids[:, 1:] == repeated.ids[:, 1:2]).all()


def test_budget_and_context_are_checked_before_loading():
    with pytest.raises(InputError, match=r"over the budget of 1,000"):
        inputs.check_budget(inputs.InputSpec(sequences=10, tokens=200), context_length=None, budget=1000)
    with pytest.raises(InputError, match=r"exceed the model's context of 128"):
        inputs.check_budget(inputs.InputSpec(sequences=1, tokens=128), context_length=128)
    inputs.check_budget(inputs.InputSpec(sequences=1, tokens=127), context_length=128)


def test_dataset_mode_without_package_or_network_is_an_input_error():
    with pytest.raises(InputError):
        build(inputs.InputSpec(mode="dataset", source="no-such/dataset", sequences=1, tokens=4))
